"""The installed path_follower node over DDS: tracks a plan in lockstep, stops on plan loss."""
import math
import subprocess
import time

from helpers_service import call_until_answered
import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
pytestmark = pytest.mark.ros

DT = 0.05
OFFSETS = 0.5 * np.arange(1, 7)


class Harness:
    """The test side: odometry of a simulated car, plans, the Twist and diagnostics out."""

    def __init__(self):
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import Twist
        from nav_msgs.msg import Odometry, Path
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('follower_test', context=self.context)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_odom = self.node.create_publisher(Odometry, '/odom', reliable)
        self.pub_plan = self.node.create_publisher(Path, '/vlmad/plan', reliable)
        self.twists, self.diags = [], []
        self.sub_cmd = self.node.create_subscription(Twist, '/cmd_vel', self.twists.append, 10)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self.diags.append, 10)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, cond, timeout, proc):
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, 'timed out waiting for the node'
            assert proc.poll() is None, 'path_follower died'
            self.executor.spin_once(timeout_sec=0.02)

    def wait_connected(self, proc, plans=True):
        """Wait until the follower reads odometry (and plans) and its commands reach us."""
        self.spin_until(lambda: self.pub_odom.get_subscription_count() > 0
                        and (not plans or self.pub_plan.get_subscription_count() > 0)
                        and self.sub_cmd.get_publisher_count() > 0, 20, proc)

    def odom(self, t, state):
        from nav_msgs.msg import Odometry
        msg = Odometry()
        msg.header.stamp = stamp(t)
        msg.header.frame_id, msg.child_frame_id = 'odom', 'base_link'
        msg.pose.pose.position.x, msg.pose.pose.position.y = state.x, state.y
        msg.pose.pose.orientation.z = math.sin(state.yaw / 2)
        msg.pose.pose.orientation.w = math.cos(state.yaw / 2)
        msg.twist.twist.linear.x = state.speed
        self.pub_odom.publish(msg)

    def plan(self, t, xy_base):
        from geometry_msgs.msg import PoseStamped
        from nav_msgs.msg import Path
        msg = Path()
        msg.header.stamp, msg.header.frame_id = stamp(t), 'base_link'
        for k, (x, y) in enumerate(xy_base):
            pose = PoseStamped()
            pose.header.stamp, pose.header.frame_id = stamp(t + OFFSETS[k]), 'base_link'
            pose.pose.position.x, pose.pose.position.y = float(x), float(y)
            pose.pose.orientation.w = 1.0
            msg.poses.append(pose)
        self.pub_plan.publish(msg)

    def close(self):
        rclpy.shutdown(context=self.context)


def stamp(t):
    from builtin_interfaces.msg import Time
    ns = int(round(t * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def start_follower(ros_env, *params):
    args = ['path_follower', '--ros-args', '-p', 'diagnostics_period:=0.5']
    for p in params:
        args += ['-p', p]
    return subprocess.Popen(args, env=ros_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_tracks_a_lane_change_and_stops_on_plan_loss(ros_env):
    """Lockstep: odometry -> one Twist -> bicycle step. Plans at 5 Hz until t = 4 s, then none."""
    from helpers_control import KinematicBicycle, VehicleState
    proc = start_follower(ros_env, 'plan_timeout:=1.0')
    h = Harness()
    try:
        h.wait_connected(proc)
        car = KinematicBicycle(VehicleState(speed=5.0))
        speed, lane_y = 5.0, 3.5
        log = []
        for k in range(int(8.0 / DT)):
            t = k * DT
            if k % 4 == 0 and t < 4.0:
                # The target path in the world: y = 0 until x = 10, then a smooth shift to 3.5 m.
                xs_w = car.state.x + speed * OFFSETS
                ys_w = lane_y / (1 + np.exp(-(xs_w - 18.0) / 2.0))
                c, s = math.cos(car.state.yaw), math.sin(car.state.yaw)
                dx, dy = xs_w - car.state.x, ys_w - car.state.y
                h.plan(t, np.stack([c * dx + s * dy, -s * dx + c * dy], 1))
            n = len(h.twists)
            h.odom(t, car.state)
            h.spin_until(lambda: len(h.twists) > n, 10, proc)
            cmd = h.twists[n]
            car.step(DT, cmd.linear.x, cmd.angular.z)
            log.append((t, car.state))
        h.spin_until(lambda: any('timed out' in d.status[0].message for d in h.diags), 10, proc)
    finally:
        h.close()
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    by_t = {round(t, 2): s for t, s in log}
    # Changed lanes: at x ~ 30 m the car is in the left lane (y = 3.5 m) within 0.3 m.
    at_3s = by_t[3.5]
    assert abs(at_3s.y - lane_y / (1 + math.exp(-(at_3s.x - 18.0) / 2.0))) < 0.3, at_3s
    assert abs(by_t[3.9].speed - speed) < 0.7   # the lane change adds some arc length
    # Last plan stamped 3.8 s: the timeout (1 s) stops the car, then it stands still.
    assert by_t[4.7].speed > 4.0
    assert by_t[5.2].speed < by_t[4.9].speed - 1.0
    assert log[-1][1].speed == 0.0
    assert 'plans timed out' in out


@pytest.mark.parametrize('param,name', [
    ('max_accel:=-1.0', 'max_accel'), ('output_mode:=throttle', 'output_mode'),
    ('plan_timeout:=fast', 'plan_timeout'), ('pid.kp:=-2.0', 'pid.kp')])
def test_bad_parameter_stops_start_up_naming_it(ros_env, param, name):
    proc = start_follower(ros_env, param)
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 2, out
    assert 'invalid parameter' in out and name in out, out


def test_timer_trigger_runs_at_control_rate_and_stops_without_odometry(ros_env):
    """control_trigger:=timer: commands at control_rate; odometry silence -> a stop, reported."""
    # One plan for the whole run: plan_timeout keeps it valid, so only the odometry stops it.
    proc = start_follower(ros_env, 'control_trigger:=timer', 'control_rate:=20.0',
                          'odom_timeout:=0.5', 'plan_timeout:=3.0')
    h = Harness()
    try:
        h.wait_connected(proc, plans=False)
        from helpers_control import VehicleState
        t0 = time.time()   # the node runs on the wall clock here: stamps follow it
        state = VehicleState(speed=5.0)
        h.plan(t0, np.stack([5.0 * OFFSETS, np.zeros(6)], 1))
        start = time.monotonic()
        while time.monotonic() - start < 1.5:
            t = time.time()
            state.x = 5.0 * (t - t0)
            h.odom(t, state)
            h.executor.spin_once(timeout_sec=0.1)
        n_moving = len(h.twists)
        h.spin_until(lambda: any('odometry timed out' in d.status[0].message
                                 for d in h.diags), 10, proc)
        # From 5 m/s at max_decel (6 m/s^2): standstill ~0.8 s later, commands only falling.
        h.spin_until(lambda: h.twists[-1].linear.x == 0.0, 5, proc)
        stopping = [tw.linear.x for tw in h.twists[n_moving:]]
    finally:
        h.close()
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    # ~1.5 s at 20 Hz (the odometry came at ~10 Hz): well above one command per odometry.
    assert n_moving >= 20, n_moving
    assert any(tw.linear.x > 3.0 for tw in h.twists[:n_moving])
    assert h.twists[-1].linear.x < h.twists[n_moving - 1].linear.x
    assert h.twists[-1].linear.x == 0.0    # stopped, not just slower
    # No following command between the stop commands (the timer used to interleave them).
    assert all(b <= a + 0.05 for a, b in zip(stopping, stopping[1:])), stopping
    assert 'odometry timed out' in out


def set_parameters(h, proc, **values):
    """Call /path_follower/set_parameters from the test process; one result per value."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter
    client = h.node.create_client(SetParameters, '/path_follower/set_parameters')
    request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                for k, v in values.items()])

    def wait(future, seconds):
        try:
            h.spin_until(future.done, seconds, proc)
        except AssertionError:
            assert proc.poll() is None, 'path_follower died'
        return future.done()
    return call_until_answered(client, request, wait, timeout=30.0).results


def test_controller_parameters_apply_at_run_time_and_bad_ones_are_refused(ros_env):
    """max_speed set while driving caps the speed from the next command; bad values refused."""
    from helpers_control import KinematicBicycle, VehicleState
    proc = start_follower(ros_env)
    h = Harness()
    try:
        h.wait_connected(proc)
        car = KinematicBicycle(VehicleState(speed=5.0))
        speeds, commands = [], []
        for k in range(int(4.0 / DT)):
            t = k * DT
            if k == int(2.0 / DT):
                (ok,) = set_parameters(h, proc, max_speed=2.0)
                assert ok.successful, ok.reason
            if k % 4 == 0:   # straight ahead at 5 m/s
                h.plan(t, np.stack([5.0 * OFFSETS, np.zeros(6)], 1))
            n = len(h.twists)
            h.odom(t, car.state)
            h.spin_until(lambda: len(h.twists) > n, 10, proc)
            car.step(DT, h.twists[n].linear.x, h.twists[n].angular.z)
            speeds.append(car.state.speed)
            commands.append(h.twists[n].linear.x)
        bad, read_only = set_parameters(h, proc, max_accel=-1.0, control_trigger='timer')
    finally:
        h.close()
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    assert abs(speeds[int(1.9 / DT)] - 5.0) < 0.3          # before: the plan's 5 m/s
    # After: commands fall at max_decel (6 m/s^2, 0.5 s from 5 to 2 m/s), then stay capped.
    assert max(commands[int(2.6 / DT):]) <= 2.0 + 1e-6, commands
    assert abs(speeds[-1] - 2.0) < 0.1
    assert not bad.successful and 'max_accel' in bad.reason
    assert not read_only.successful                          # node-level: read-only
    assert 'parameters applied: max_speed=2.0' in out
