"""
carla_control_node: nav_msgs/Path + odometry -> carla_msgs/CarlaEgoVehicleControl; route command.

The CARLA end of the stack, for the ROS bridge in synchronous mode (Bench2Drive's ROS 2 agent,
docs/BENCH2DRIVE.md) and CARLA's native ROS 2 interface. Thin over plain objects:
control.follower.PathFollower (the path follower's controller, output_mode 'vehicle':
throttle / steer / brake) and control.route.RouteTracker (CarlaRoute -> DrivingCommand).

One control per tick, stamped with that tick's simulation time: a plan (stamped with its sensor
set) is answered at once with a control carrying the plan's stamp, which the leaderboard
requires to match the simulation time within 1 ms. A tick (odometry) left unanswered for
`plan_silence_timeout` seconds of steady (wall) time gets a full-brake control with its own
stamp, and while plans stay silent every new tick gets one at once: the car stops when the
planner does, whether simulated time runs on (free-running CARLA) or waits for the control
(synchronous mode). Steady time, not /clock, because a lockstep simulator's clock stands still
while it waits. A late plan for a tick already answered is not answered twice (the leaderboard
ignores a repeated stamp).

carla_msgs is imported when the node starts (it is not a dependency of vlmad_ros: the CARLA
bridge's workspace provides it); without it the node exits with code 3 and says where to get it.

Callbacks run in one single-threaded executor: plan, odometry, route and timers never overlap.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import math
import sys
import time
from typing import Dict, Optional, Tuple

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import Odometry, Path
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool

from vlmad_ros import stamps
from vlmad_ros.carla import vehicle_follower_config
from vlmad_ros.control.follower import Command, FollowerConfig, PathFollower, Status
from vlmad_ros.control.pid import PIDConfig
from vlmad_ros.control.plan_input import OdomHistory, path_to_timed, yaw_of
from vlmad_ros.control.route import RouteConfig, RouteTracker
from vlmad_ros.msg import DrivingCommand
from vlmad_ros.nodes.common import declare, diagnostic_name, ParameterError, params_of, run_node

NODE_NAME = 'carla_control_node'
RELIABILITY = ('reliable', 'best_effort')
MISSING_CARLA_MSGS = (
    'carla_msgs is not importable: source the CARLA ROS bridge workspace that provides it '
    '(ros-carla-msgs, leaderboard-2.0 branch for CarlaRoute) before starting this node '
    '(docs/BENCH2DRIVE.md)')


@dataclasses.dataclass
class NodeConfig:
    """Topics and timing of the node (the controller's own settings are FollowerConfig)."""

    control_topic: str = '/carla/hero/vehicle_control_cmd'
    odom_topic: str = '/carla/hero/odometry'
    route_topic: str = '/carla/hero/global_plan'   # '' : no route, no command published
    status_topic: str = '/carla/hero/status'       # '' : none (Bench2Drive waits for it)
    plan_topic: str = 'vlmad/plan'
    command_topic: str = 'vlmad/command'
    plan_silence_timeout: float = 0.3   # [s] steady time: an unanswered tick gets a full brake
    base_frame: str = 'base_link'
    reliability: str = 'reliable'       # odometry and plan subscriptions
    route_lookahead: float = 40.0       # [m] a manoeuvre this far ahead becomes the command
    lane_change_as_turn: bool = False   # CHANGELANELEFT/RIGHT -> LEFT/RIGHT
    diagnostics_period: float = 1.0     # [s] steady time

    def __post_init__(self):
        for name in ('control_topic', 'odom_topic', 'plan_topic', 'command_topic',
                     'base_frame'):
            if not getattr(self, name):
                raise ValueError(f'{name} must not be empty')
        for name in ('plan_silence_timeout', 'route_lookahead', 'diagnostics_period'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f'{name} must be finite and > 0, got {value}')
        if self.reliability not in RELIABILITY:
            raise ValueError(f'reliability must be one of {RELIABILITY}, got '
                             f'{self.reliability!r}')


DESCRIPTIONS = {
    'control_topic': 'output carla_msgs/CarlaEgoVehicleControl',
    'odom_topic': 'input nav_msgs/Odometry (one message per simulation tick)',
    'route_topic': "input carla_msgs/CarlaRoute (transient local); '': no route, no command",
    'status_topic': "output std_msgs/Bool, latched (Bench2Drive waits for it); '': none",
    'plan_topic': 'input nav_msgs/Path', 'command_topic': 'output vlmad_ros/DrivingCommand',
    'plan_silence_timeout': 'seconds of steady time an unanswered tick waits before a full '
                            'brake',
    'reliability': 'odometry and plan subscription reliability',
    'route_lookahead': 'a manoeuvre this far ahead on the route becomes the command [m]',
    'lane_change_as_turn': 'CHANGELANELEFT/RIGHT become LEFT/RIGHT (else no command)',
    'diagnostics_period': 'diagnostics period [s, steady time]',
}
# The controller's own parameters are the path follower's (FollowerConfig, pid.*), with the
# vehicle-mode defaults of carla.vehicle_follower_config; output_mode is fixed to 'vehicle'.
PARAMETERS = tuple(
    params_of(NodeConfig, DESCRIPTIONS, choices={'reliability': RELIABILITY})
    + params_of(FollowerConfig, {}, defaults=vehicle_follower_config(), exclude=('output_mode',))
    + params_of(PIDConfig, {}, prefix='pid.', defaults=vehicle_follower_config().pid))


def build_configs(values: Dict[str, object]) -> Tuple[NodeConfig, FollowerConfig]:
    """Validate parameter values into configs; ValueError names the parameter."""
    node = NodeConfig(**{f.name: values[f.name] for f in dataclasses.fields(NodeConfig)})
    pid = PIDConfig(**{k[4:]: v for k, v in values.items() if k.startswith('pid.')})
    fields = {f.name for f in dataclasses.fields(FollowerConfig)} - {'pid', 'output_mode'}
    follower = vehicle_follower_config(pid=pid, **{k: values[k] for k in fields})
    return node, follower


def import_carla_msgs():
    """(CarlaEgoVehicleControl, CarlaRoute); ImportError with what to do when missing."""
    try:
        from carla_msgs.msg import CarlaEgoVehicleControl, CarlaRoute
    except ImportError as err:
        raise ImportError(f'{MISSING_CARLA_MSGS} ({err})') from None
    return CarlaEgoVehicleControl, CarlaRoute


class CarlaControlNode(Node):
    """Plan + odometry -> vehicle control every tick; route -> command; status for the agent."""

    def __init__(self):
        super().__init__(NODE_NAME)
        control_type, route_type = import_carla_msgs()
        try:
            self.setup(control_type, route_type)
        except ValueError as err:
            raise ParameterError(str(err)) from None

    def setup(self, control_type, route_type) -> None:
        """Declare and validate the parameters, then the publishers, subscriptions, timers."""
        self.cfg, follower_cfg = build_configs(declare(self, PARAMETERS))
        self.follower = PathFollower(follower_cfg)
        self.route_config = RouteConfig(lookahead=self.cfg.route_lookahead,
                                        lane_change_as_turn=self.cfg.lane_change_as_turn)
        self.control_type, self.command_type = control_type, DrivingCommand
        self.history = OdomHistory()
        self.route: Optional[RouteTracker] = None
        self.counts: Dict[str, int] = collections.Counter()
        self.last_odom = None          # (stamp, pose, speed)
        self.last_tick_wall: Optional[float] = None
        self.last_plan_wall = time.monotonic()   # start-up counts as silence
        self.last_answered: Optional[float] = None
        self.pending_plan = None
        self.last_cmd: Optional[Command] = None
        self.odom_frame: Optional[str] = None
        self.child_frame: Optional[str] = None
        qos = QoSProfile(depth=10, reliability=(
            ReliabilityPolicy.RELIABLE if self.cfg.reliability == 'reliable'
            else ReliabilityPolicy.BEST_EFFORT))
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        c = self.cfg
        self.pub_control = self.create_publisher(control_type, c.control_topic, 10)
        self.pub_command = self.create_publisher(DrivingCommand, c.command_topic, 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_subscription(Path, c.plan_topic, self.on_plan, qos)
        self.create_subscription(Odometry, c.odom_topic, self.on_odom, qos)
        if c.route_topic:
            self.create_subscription(route_type, c.route_topic, self.on_route, latched)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(0.02, self.watchdog, clock=steady)
        self.create_timer(c.diagnostics_period, self.publish_diagnostics, clock=steady)
        if c.status_topic:
            self.pub_status = self.create_publisher(Bool, c.status_topic, latched)
            self.pub_status.publish(Bool(data=True))
        self.get_logger().info(
            f'{NODE_NAME}: {c.plan_topic} + {c.odom_topic} -> {c.control_topic}; route '
            f'{c.route_topic or "(none)"} -> {c.command_topic}; full brake after '
            f'{c.plan_silence_timeout} s without a plan')

    # ---- inputs ---------------------------------------------------------------------------

    def on_route(self, msg) -> None:
        xy = [[p.position.x, p.position.y] for p in msg.poses]
        try:
            self.route = RouteTracker(xy, list(msg.road_options), self.route_config)
        except ValueError as err:
            self.counts['bad_route'] += 1
            self.get_logger().warning(f'ignoring the route: {err}')
            return
        self.counts['routes'] += 1
        self.get_logger().info(f'route: {len(xy)} poses, {self.route.length:.0f} m')

    def on_odom(self, msg) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        t, speed = stamps.to_s(msg.header.stamp), msg.twist.twist.linear.x
        if not all(math.isfinite(v) for v in (p.x, p.y, q.x, q.y, q.z, q.w, speed)):
            self.counts['bad_odom'] += 1
            return
        if self.last_odom is not None and t < self.last_odom[0]:
            self._time_jump()
        self.odom_frame = msg.header.frame_id.lstrip('/') or None
        self.child_frame = msg.child_frame_id.lstrip('/') or None
        pose = (p.x, p.y, yaw_of(q))
        self.history.add(t, *pose)
        self.last_odom, self.last_tick_wall = (t, pose, speed), time.monotonic()
        self.counts['ticks'] += 1
        if self.route is not None:
            self.route.update(p.x, p.y)
            self._publish_command(msg.header.stamp)
        pending, self.pending_plan = self.pending_plan, None
        if pending is not None and stamps.to_s(pending.header.stamp) <= t + 1e-6:
            self._use_plan(pending)
        elif pending is not None:
            self.pending_plan = pending
        if self._silent():
            self.stop(t)

    def on_plan(self, msg) -> None:
        self.last_plan_wall = time.monotonic()
        self.counts['plans'] += 1
        latest = self.history.latest
        if latest is None or stamps.to_s(msg.header.stamp) > latest + 1e-6:
            self.pending_plan = msg      # its odometry has not arrived yet
            return
        self._use_plan(msg)

    def _use_plan(self, msg) -> None:
        t = stamps.to_s(msg.header.stamp)
        base_frames = [self.cfg.base_frame] + ([self.child_frame] if self.child_frame else [])
        try:
            self.follower.set_path(path_to_timed(msg, base_frames, self.odom_frame,
                                                 self.history))
        except ValueError as err:
            self.counts[f'bad_plan.{err}'] += 1
            return
        if self._answered(t):
            self.counts['late_plans'] += 1     # its tick already got a (stop) control
            return
        pose = self.history.pose_at(t)
        speed = self.last_odom[2]
        self._publish(self.follower.update(t, pose, speed), t)

    # ---- ticks without plans ----------------------------------------------------------------

    def _silent(self) -> bool:
        return time.monotonic() - self.last_plan_wall > self.cfg.plan_silence_timeout

    def _answered(self, t: float) -> bool:
        return self.last_answered is not None and t <= self.last_answered + 1e-6

    def watchdog(self) -> None:
        """Give a tick unanswered for plan_silence_timeout (steady time) a full brake."""
        if self.last_odom is None or self._answered(self.last_odom[0]):
            return
        if time.monotonic() - self.last_tick_wall > self.cfg.plan_silence_timeout:
            self.stop(self.last_odom[0])

    def stop(self, t: float) -> None:
        if self._answered(t):
            return
        self.counts['stops'] += 1
        self._publish(self.follower.stop_command(Status.PLAN_TIMEOUT, t, self.last_odom[2]), t)

    def _time_jump(self) -> None:
        """Time went back (a new route or a restarted simulator): nothing before applies."""
        self.follower.reset()
        self.history = OdomHistory()
        self.last_answered, self.pending_plan, self.last_odom = None, None, None
        self.counts['time_jumps'] += 1

    # ---- outputs --------------------------------------------------------------------------

    def _publish(self, cmd: Command, t: float) -> None:
        msg = self.control_type()
        stamps.write_s(msg.header.stamp, t)
        msg.header.frame_id = self.cfg.base_frame
        v = cmd.vehicle
        msg.throttle, msg.steer, msg.brake = float(v.throttle), float(v.steer), float(v.brake)
        msg.hand_brake, msg.reverse, msg.manual_gear_shift, msg.gear = False, False, False, 0
        self.pub_control.publish(msg)
        self.last_answered = t
        self.counts['controls'] += 1
        if self.last_cmd is None or cmd.status != self.last_cmd.status:
            # One call site per severity: rclpy refuses a site whose severity changes.
            if cmd.status in (Status.FOLLOWING, Status.STOPPED):
                self.get_logger().info(f'{NODE_NAME}: {cmd.status.value}')
            else:
                self.get_logger().warning(f'{NODE_NAME}: {cmd.status.value}')
        self.last_cmd = cmd

    def _publish_command(self, stamp) -> None:
        msg = self.command_type(command=int(self.route.command()))
        msg.header.stamp = stamp
        msg.header.frame_id = self.cfg.base_frame
        self.pub_command.publish(msg)

    def publish_diagnostics(self) -> None:
        cmd = self.last_cmd
        state = self.follower.status if cmd is None else cmd.status
        ok = state in (Status.FOLLOWING, Status.STOPPED)
        values = {
            'control': (f'throttle {cmd.vehicle.throttle:.3f} steer {cmd.vehicle.steer:.3f} '
                        f'brake {cmd.vehicle.brake:.3f}') if cmd else 'none',
            'last_stamp': f'{self.last_answered:.3f}' if self.last_answered is not None
            else 'none',
            'route_progress_m': f'{self.route.progress:.1f}' if self.route else 'no route',
            'route_command': self.route.command().name if self.route else 'none',
            'counts': json.dumps(dict(sorted(self.counts.items()))),
        }
        status = DiagnosticStatus(
            name=diagnostic_name(self, 'CARLA control'), hardware_id='vlmad_ros',
            level=DiagnosticStatus.OK if ok else DiagnosticStatus.WARN, message=state.value,
            values=[KeyValue(key=k, value=v) for k, v in values.items()])
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)


def main(args=None) -> int:
    try:
        import_carla_msgs()
    except ImportError as err:
        print(f'[{NODE_NAME}] {err}', file=sys.stderr, flush=True)
        return 3
    return run_node(NODE_NAME, CarlaControlNode, args)


if __name__ == '__main__':
    sys.exit(main())
