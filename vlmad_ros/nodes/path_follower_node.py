"""
path_follower: nav_msgs/Path (vlmad/plan) + nav_msgs/Odometry (odom) -> Twist (cmd_vel).

Thin ROS layer over vlmad_ros.control.PathFollower. The controller runs on the odometry's
clock (the plan stamps are sensor stamps, so plan age and the waypoint timing need no
use_sim_time agreement). By default one command is published per odometry message, which is
what a lockstep simulator (and CARLA in synchronous mode) needs; control_trigger:=timer runs
at control_rate instead. A watchdog on the node clock stops the car when odometry stops.

Topic names are relative, so a namespace (`-r __ns:=/car1`) moves them all; /diagnostics stays
global. The controller's parameters (FollowerConfig: speeds, limits, lookahead, timeouts, pid.*)
can be set at run time (`ros2 param set`) and take effect at the next command; a value the
controller rejects is refused with its reason. The node-level ones are read-only.

With the CARLA ROS bridge set output_mode:=carla and remap cmd_vel to
/carla/ego_vehicle/twist (the carla_twist_to_control input); see docs/CARLA.md.

Callbacks run in one single-threaded executor: plan, odometry and timers never overlap.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import math
import sys
from typing import Dict, List, Optional, Tuple

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Twist, TwistStamped
from nav_msgs.msg import Odometry, Path
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile
from std_msgs.msg import Header

from vlmad_ros import stamps, topics
from vlmad_ros.control.follower import (
    Command, FollowerConfig, OUTPUT_MODES, PathFollower, Status)
from vlmad_ros.control.pid import PIDConfig
from vlmad_ros.control.plan_input import OdomHistory, path_to_timed, yaw_of
from vlmad_ros.nodes.common import (build, clock_s, declare, diagnostic_name, LogThrottle, Param,
                                    ParameterError, params_of, RELIABILITY, run_node)

NODE_NAME = 'path_follower'
CONTROL_TRIGGERS = ('odom', 'timer')


@dataclasses.dataclass
class NodeConfig:
    """Node-level parameters, read-only (the controller's own are FollowerConfig, live)."""

    control_trigger: str = 'odom'   # 'odom': one command per odometry; 'timer': control_rate
    stamped_cmd_vel: bool = False   # TwistStamped (stamp = the odometry it answers) not Twist
    ack_plans: bool = False         # publish each accepted plan's header on plan_ack_topic
    control_rate: float = 20.0      # [Hz] timer trigger only
    base_frame: str = topics.BASE_FRAME
    odom_reliability: str = 'reliable'
    plan_reliability: str = 'reliable'
    diagnostics_period: float = 1.0  # [s] node clock
    plan_topic: str = topics.relative(topics.PLAN)
    odom_topic: str = topics.relative(topics.ODOM)
    cmd_vel_topic: str = topics.relative(topics.CMD_VEL)
    plan_ack_topic: str = topics.relative(topics.PLAN_ACK)

    def __post_init__(self):
        for name in ('control_rate', 'diagnostics_period'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f'{name} must be finite and > 0, got {value}')
        for name in ('base_frame', 'plan_topic', 'odom_topic', 'cmd_vel_topic',
                     'plan_ack_topic'):
            if not getattr(self, name):
                raise ValueError(f'{name} must not be empty')


DESCRIPTIONS = {
    'output_mode': "'velocity' (linear.x speed, angular.z yaw rate) or 'carla' "
                   '(carla_twist_to_control: throttle demand 0..10, steering angle)',
    'control_trigger': "'odom': one command per odometry message; 'timer': control_rate Hz",
    'plan_timeout': 'seconds without a fresh plan (by its stamp) before stopping',
    'odom_timeout': 'seconds without odometry (node clock) before stopping',
    'stamped_cmd_vel': 'publish geometry_msgs/TwistStamped stamped with the odometry it '
                       'answers (lockstep simulators) instead of Twist',
    'ack_plans': 'publish the header of every plan received on plan_ack_topic, so a lockstep '
                 'simulator sends the next odometry only once the plan is here',
    'lookahead_min': 'pure pursuit lookahead at standstill [m]',
    'lookahead_time': 'lookahead grows by this times speed [s]',
    'max_curvature': 'curvature limit [1/m]',
    'max_accel': 'acceleration limit [m/s^2]',
    'max_decel': 'deceleration limit, also used to stop on plan loss [m/s^2]',
    'plan_topic': 'input nav_msgs/Path', 'odom_topic': 'input nav_msgs/Odometry',
    'cmd_vel_topic': 'output Twist (TwistStamped with stamped_cmd_vel)',
    'plan_ack_topic': 'output std_msgs/Header per plan (with ack_plans)',
}
CHOICES = {'output_mode': OUTPUT_MODES, 'control_trigger': CONTROL_TRIGGERS,
           'odom_reliability': tuple(sorted(RELIABILITY)),
           'plan_reliability': tuple(sorted(RELIABILITY))}
# The controller's parameters apply live; output_mode changes what the output means: read-only.
CONTROLLER = [f.name for f in dataclasses.fields(FollowerConfig) if f.name not in
              ('pid', 'output_mode')]
PID_PARAMS = [f'pid.{f.name}' for f in dataclasses.fields(PIDConfig)]
PARAMETERS: Tuple[Param, ...] = tuple(
    params_of(FollowerConfig, DESCRIPTIONS, choices=CHOICES, live=CONTROLLER)
    + params_of(PIDConfig, DESCRIPTIONS, prefix='pid.', live=PID_PARAMS)
    + params_of(NodeConfig, DESCRIPTIONS, choices=CHOICES))
BY_NAME = {p.name: p for p in PARAMETERS}


def follower_config(values: Dict[str, object]) -> FollowerConfig:
    """Build FollowerConfig (and its PIDConfig) from parameters; errors name the parameter."""
    pid = build(PIDConfig, values, prefix='pid.')
    return dataclasses.replace(build(FollowerConfig, values), pid=pid)


class PathFollowerNode(Node):
    """Parameters -> PathFollower; plan/odometry in, Twist and diagnostics out."""

    def __init__(self):
        super().__init__(NODE_NAME)
        self.values = declare(self, PARAMETERS)
        self.node_config = build(NodeConfig, self.values)
        self.follower = PathFollower(follower_config(self.values))
        self.history = OdomHistory()
        self.counts: Dict[str, int] = collections.Counter()
        self.odom_frame: Optional[str] = None
        self.child_frame: Optional[str] = None
        self.last_odom: Optional[Tuple[float, Tuple[float, float, float], float]] = None
        self.last_odom_clock: Optional[float] = None
        self.last_cmd: Optional[Command] = None
        self.last_plan_stamp: Optional[float] = None
        self.pending_plan = None
        self.throttle = LogThrottle(5.0)
        self._create_interfaces()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        c = self.follower.config
        self.get_logger().info(
            f'path_follower: output_mode={c.output_mode}, trigger='
            f'{self.node_config.control_trigger}, plan_timeout={c.plan_timeout} s')

    def _create_interfaces(self) -> None:
        n = self.node_config

        def qos(reliability: str) -> QoSProfile:
            return QoSProfile(depth=10, reliability=RELIABILITY[reliability])

        self.pub_cmd = self.create_publisher(
            TwistStamped if n.stamped_cmd_vel else Twist, n.cmd_vel_topic, 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
        self.pub_ack = (self.create_publisher(Header, n.plan_ack_topic, qos('reliable'))
                        if n.ack_plans else None)
        self.create_subscription(Path, n.plan_topic, self.on_plan, qos(n.plan_reliability))
        self.create_subscription(Odometry, n.odom_topic, self.on_odom, qos(n.odom_reliability))
        if n.control_trigger == 'timer':
            self.create_timer(1.0 / n.control_rate, self.on_timer)
        self.create_timer(0.1, self.watchdog)
        self.create_timer(n.diagnostics_period, self.publish_diagnostics)

    def _on_set_parameters(self, params: List[rclpy.parameter.Parameter]) -> SetParametersResult:
        """Apply controller parameters live; refuse what the controller would reject."""
        values = dict(self.values)
        try:
            for p in params:
                if p.name in BY_NAME:
                    values[p.name] = BY_NAME[p.name].check(p.value)
            config = follower_config(values)
        except ParameterError as err:
            return SetParametersResult(successful=False, reason=str(err))
        self.values = values
        self.follower.config = config
        self.follower.pid.config = config.pid
        names = ', '.join(f'{p.name}={p.value}' for p in params)
        self.get_logger().info(f'parameters applied: {names}')
        return SetParametersResult(successful=True)

    def on_plan(self, msg) -> None:
        if self.pub_ack is not None:
            self.pub_ack.publish(msg.header)
        t = stamps.to_s(msg.header.stamp)
        if self.last_plan_stamp is not None and t < self.last_plan_stamp:
            self._time_jump()   # a plan older than the last one: time went back
        self.last_plan_stamp = t
        latest = self.history.latest
        if latest is None or t > latest + 1e-6:
            # Made from odometry we have not seen yet (a lockstep simulator may deliver
            # the plan first): anchor it when that odometry arrives.
            self.pending_plan = msg
            return
        self._use_plan(msg)

    def _use_plan(self, msg) -> None:
        try:
            base_frames = [self.node_config.base_frame] + (
                [self.child_frame] if self.child_frame else [])
            path = path_to_timed(msg, base_frames, self.odom_frame,
                                 self.history)
        except ValueError as err:
            self._bad('plan', str(err))
            return
        self.follower.set_path(path)
        self.counts['plans'] += 1

    def on_odom(self, msg) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        t = stamps.to_s(msg.header.stamp)
        values = (p.x, p.y, q.x, q.y, q.z, q.w, msg.twist.twist.linear.x)
        if not all(math.isfinite(v) for v in values):
            self._bad('odom', 'non_finite_odometry')
            return
        self.odom_frame = msg.header.frame_id.lstrip('/') or None
        self.child_frame = msg.child_frame_id.lstrip('/') or None
        pose = (p.x, p.y, yaw_of(q))
        if self.last_odom is not None and not (
                0 <= t - self.last_odom[0] <= self.follower.config.plan_timeout):
            self._time_jump()
        self.history.add(t, *pose)
        self.last_odom = (t, pose, msg.twist.twist.linear.x)
        self.last_odom_clock = clock_s(self)
        self.counts['odom'] += 1
        if (self.pending_plan is not None
                and stamps.to_s(self.pending_plan.header.stamp) <= t + 1e-6):
            self._use_plan(self.pending_plan)
            self.pending_plan = None
        if self.node_config.control_trigger == 'odom':
            self.control(t)

    def _time_jump(self) -> None:
        """Time jumped (a new episode, a bag loop): nothing before it applies now."""
        self.follower.reset()
        self.history = OdomHistory()
        self.last_odom = None
        self.counts['time_jumps'] += 1

    def on_timer(self) -> None:
        if self.last_odom is None or self.last_odom_clock is None:
            return
        if self._odom_silence() > self.follower.config.odom_timeout:
            return   # the watchdog is stopping the car: no following command between its stops
        # The odometry clock, advanced by the node-clock time since the last odometry.
        self.control(self.last_odom[0] + max(clock_s(self) - self.last_odom_clock, 0.0))

    def control(self, now: float) -> None:
        _, pose, speed = self.last_odom
        cmd = self.follower.update(now, pose, speed)
        self._publish(cmd, self.last_odom[0])

    def watchdog(self) -> None:
        """Stop the car when odometry stops (node clock: sim time pauses with the sim)."""
        if self.last_odom_clock is None or self.last_odom is None:
            return
        silent = self._odom_silence()
        if silent > self.follower.config.odom_timeout:
            # Decelerate at max_decel on the odometry clock carried forward by the silence.
            t, _, speed = self.last_odom
            self._publish(self.follower.stop_command(Status.NO_ODOM, t + silent, speed), t)

    def _odom_silence(self) -> float:
        """Seconds without odometry (node clock, cross-checked with the last stamp)."""
        now = clock_s(self)
        since_receipt = now - self.last_odom_clock
        since_stamp = now - self.last_odom[0]
        # Both measures must say silent: a clock that has only just started (sim time before
        # its first /clock) or that runs on another time base than the stamps must not stop
        # the car alone, nor answer a lockstep simulator's odometry with a stop.
        return min(since_receipt, since_stamp) if since_stamp >= 0 else since_receipt

    def _publish(self, cmd: Command, odom_stamp: float) -> None:
        twist = Twist()
        twist.linear.x = float(cmd.linear_x)
        twist.angular.z = float(cmd.angular_z)
        if self.node_config.stamped_cmd_vel:
            msg = TwistStamped(twist=twist)
            ns = int(round(odom_stamp * 1e9))
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, 1_000_000_000)
            msg.header.frame_id = self.node_config.base_frame
            self.pub_cmd.publish(msg)
        else:
            self.pub_cmd.publish(twist)
        if self.last_cmd is None or cmd.status != self.last_cmd.status:
            log = (self.get_logger().info if cmd.status in (Status.FOLLOWING, Status.STOPPED)
                   else self.get_logger().warn)
            log(f'path_follower: {cmd.status.value}')
        self.last_cmd = cmd
        self.counts['commands'] += 1

    def _bad(self, kind: str, reason: str) -> None:
        self.counts[f'bad_{kind}.{reason}'] += 1
        self.throttle(self.get_logger().warn, f'{kind}.{reason}', f'skipping {kind}: {reason}')

    def publish_diagnostics(self) -> None:
        status = DiagnosticStatus()
        status.name = diagnostic_name(self, 'path follower')
        status.hardware_id = 'vlmad_ros'
        cmd = self.last_cmd
        state = self.follower.status if cmd is None else cmd.status
        ok = state in (Status.FOLLOWING, Status.STOPPED)
        status.level = DiagnosticStatus.OK if ok else DiagnosticStatus.WARN
        status.message = state.value
        now = self.last_odom[0] if self.last_odom else math.nan
        values = {
            'plan_age_s': f'{self.follower.plan_age(now):.3f}',
            'plan_timeout_s': str(self.follower.config.plan_timeout),
            'output_mode': self.follower.config.output_mode,
            'target_speed': f'{cmd.target_speed:.3f}' if cmd else 'nan',
            'command_linear_x': f'{cmd.linear_x:.3f}' if cmd else 'nan',
            'command_angular_z': f'{cmd.angular_z:.4f}' if cmd else 'nan',
            'counts': json.dumps(dict(sorted(self.counts.items()))),
        }
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [status]
        self.pub_diag.publish(arr)


def main(args=None) -> int:
    return run_node(NODE_NAME, PathFollowerNode, args)


if __name__ == '__main__':
    sys.exit(main())
