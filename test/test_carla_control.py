"""
The CARLA control path: the follower's vehicle control, carla_control_node over DDS.

The node runs against a fake bridge process (test/helpers_fake_bridge.py) speaking the bridge's
topics, and in the whole stack with planner_node.
"""
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from vlmad_ros import carla
from vlmad_ros.control.follower import FollowerConfig, PathFollower, Status, TimedPath
from vlmad_ros.paths import config_dir
import yaml

TEST_DIR = os.path.dirname(os.path.abspath(__file__))
T0, DT = 100.0, 0.05
OFFSETS = 0.5 * np.arange(1, 7)


# ----- the controller, no ROS -------------------------------------------------------------------

def straight_path(t, speed):
    return TimedPath(np.concatenate([[t], t + OFFSETS]),
                     np.stack([np.concatenate([[0.0], speed * OFFSETS]), np.zeros(7)], 1))


def test_vehicle_output_brakes_in_proportion_and_steers_the_carla_way():
    f = PathFollower(carla.vehicle_follower_config())
    f.set_path(straight_path(0.0, 10.0))
    go = f.update(0.0, (0.0, 0.0, 0.0), 2.0).vehicle
    assert go.throttle > 0.2 and go.brake == 0.0
    brakes = []
    for speed in (12.0, 14.0, 18.0):        # faster than the plan: brake harder the faster
        f = PathFollower(carla.vehicle_follower_config(pid={'kp': 1.0, 'ki': 0.0}))
        f.set_path(straight_path(0.0, 10.0))
        brakes.append(f.update(0.0, (0.0, 0.0, 0.0), speed).vehicle.brake)
    assert 0.0 < brakes[0] < brakes[1] < brakes[2] < 1.0, brakes
    left = PathFollower(carla.vehicle_follower_config())
    xy = np.stack([np.linspace(0, 20, 7), np.linspace(0, 4, 7) ** 2 / 4], 1)   # bends left
    left.set_path(TimedPath(np.concatenate([[0.0], OFFSETS]), xy))
    assert left.update(0.0, (0.0, 0.0, 0.0), 5.0).vehicle.steer < -0.01   # CARLA: left < 0


def test_vehicle_output_full_brake_on_plan_loss_and_at_standstill():
    f = PathFollower(carla.vehicle_follower_config())
    assert f.update(0.0, (0.0, 0.0, 0.0), 5.0).vehicle.brake == 1.0          # no plan yet
    f.set_path(straight_path(0.0, 10.0))
    cmd = f.update(2.0, (0.0, 0.0, 0.0), 5.0)                               # plan 2 s old
    assert cmd.status == Status.PLAN_TIMEOUT and cmd.vehicle.brake == 1.0
    assert f.stop_command(Status.PLAN_TIMEOUT, 2.1, 5.0).vehicle.throttle == 0.0
    f.set_path(straight_path(3.0, 0.0))                                     # plan says stop
    assert f.update(3.0, (0.0, 0.0, 0.0), 0.1).vehicle.brake == 1.0
    with pytest.raises(ValueError, match='throttle_accel'):
        FollowerConfig(output_mode='vehicle', throttle_accel=0.0)


def test_vehicle_response_and_the_controller_agree_on_signs():
    v, w = carla.vehicle_control_response(1.0, 0.0, 0.0, 5.0, 0.1)
    assert v == pytest.approx(5.0 + 0.1 * (carla.FULL_THROTTLE_ACCEL - carla.COAST_DECEL))
    v, w = carla.vehicle_control_response(0.0, -0.2, 0.5, 5.0, 0.1)       # brake, steer left
    assert v == pytest.approx(5.0 - 0.1 * (0.5 * carla.BRAKE_DECEL + carla.COAST_DECEL))
    assert w > 0.0


def test_config_file_equals_the_node_defaults():
    from vlmad_ros.nodes.carla_control_node import PARAMETERS
    params = yaml.safe_load((config_dir() / 'carla_control.yaml').read_text())
    params = params['/**']['ros__parameters']
    flat = {k: v for k, v in params.items() if k != 'pid'}
    flat.update({f'pid.{k}': v for k, v in params['pid'].items()})
    assert flat == {p.name: p.default for p in PARAMETERS}


# ----- the node over DDS ------------------------------------------------------------------------


def start_control(env, log_path, **overrides):
    from vlmad_ros.demo import command
    log = open(log_path, 'w')
    proc = subprocess.Popen(command('carla_control_node', str(config_dir() / 'carla_control.yaml'),
                                    overrides), env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log_path, proc.log_file = log_path, log
    return proc


def start_bridge(env, out, *args):
    # Six bgra8 images a tick overflow Fast DDS's default 512 kB shared-memory segment and
    # reliable delivery then stalls on retransmissions (BENCHMARKS.md, 'Large images'): the
    # publisher gets the large-message profile, as a CARLA bridge needs it (BENCH2DRIVE.md).
    env = dict(env, FASTDDS_DEFAULT_PROFILES_FILE=str(config_dir() / 'fastdds_large_messages.xml'))
    log = open(str(out) + '.log', 'w')
    proc = subprocess.Popen([sys.executable, os.path.join(TEST_DIR, 'helpers_fake_bridge.py'),
                             '--out', str(out), *args], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    proc.log_path, proc.log_file = str(out) + '.log', log
    return proc


def stop(*procs):
    from helpers_sim import stop as stop_procs
    stop_procs(*procs)


def text(proc):
    with open(proc.log_path) as f:
        return f.read()


class FakePlanner:
    """The test's stand-in planner: answers each odometry tick with a straight plan."""

    def __init__(self, speed=8.0, stop_at=math.inf, odom_topic='/carla/hero/odometry'):
        import rclpy
        from nav_msgs.msg import Odometry, Path
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from vlmad_ros.msg import DrivingCommand
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('test_planner', context=self.context)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.node.create_publisher(Path, '/vlmad/plan', reliable)
        self.speed, self.stop_at, self.odom_topic = speed, stop_at, odom_topic
        self.plans, self.odom, self.commands = [], {}, []
        self.node.create_subscription(Odometry, odom_topic, self.on_odom, reliable)
        self.node.create_subscription(DrivingCommand, '/vlmad/command', self.commands.append, 50)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def on_odom(self, msg):
        from geometry_msgs.msg import PoseStamped
        from nav_msgs.msg import Path
        t = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self.odom[round(t, 3)] = (msg.pose.pose.position.x, msg.pose.pose.position.y)
        if self.speed is None or t >= self.stop_at - 1e-6:
            return
        path = Path()
        path.header.stamp, path.header.frame_id = msg.header.stamp, 'base_link'
        for k, dt in enumerate(OFFSETS):
            p = PoseStamped()
            ns = int(round((t + dt) * 1e9))
            p.header.stamp.sec, p.header.stamp.nanosec = divmod(ns, 1_000_000_000)
            p.pose.position.x, p.pose.orientation.w = self.speed * dt, 1.0
            path.poses.append(p)
        self.pub.publish(path)
        self.plans.append((t, time.monotonic()))

    def spin_while(self, proc, timeout):
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            assert time.monotonic() < deadline, 'the fake bridge did not finish'
            self.executor.spin_once(timeout_sec=0.01)

    def wait_for_control(self, proc, timeout=30.0):
        """Return once the control node subscribes to the plans (discovery done)."""
        deadline = time.monotonic() + timeout
        while self.pub.get_subscription_count() < 1:
            assert proc.poll() is None and time.monotonic() < deadline, text(proc)
            self.executor.spin_once(timeout_sec=0.05)

    def wait_for_odometry_graph(self, proc, subscribers=2, timeout=30.0):
        """Return once the odometry topic has a publisher and `subscribers` subscribers."""
        deadline = time.monotonic() + timeout
        while (self.node.count_publishers(self.odom_topic) < 1
               or self.node.count_subscribers(self.odom_topic) < subscribers):
            assert proc.poll() is None and time.monotonic() < deadline, text(proc)
            self.executor.spin_once(timeout_sec=0.05)

    def close(self):
        import rclpy
        rclpy.shutdown(context=self.context)


def drive(ros_env, tmp_path, bridge_args, planner_kw, control_kw=None, timeout=90,
          others=()):
    """Run the fake bridge against the control node, the test's planner and `others`."""
    control = start_control(ros_env, tmp_path / 'control.log', **(control_kw or {}))
    planner = FakePlanner(**planner_kw)
    planner.wait_for_control(control)
    if others:   # an odometry source between the bridge and the planners
        planner.wait_for_odometry_graph(control)
    bridge = start_bridge(ros_env, tmp_path / 'bridge.json', '--odom-subscribers', '2',
                          *bridge_args)
    try:
        planner.spin_while(bridge, timeout)
        assert bridge.returncode == 0, text(bridge)
        assert control.poll() is None, text(control)
        assert all(p.poll() is None for p in others), [text(p) for p in others]
    finally:
        planner.close()
        stop(bridge, control, *others)
    return json.loads((tmp_path / 'bridge.json').read_text()), planner, control


@pytest.mark.ros
def test_every_control_carries_the_simulation_time_of_its_tick(ros_env, tmp_path):
    result, planner, control = drive(ros_env, tmp_path, ['--lockstep', '--ticks', '60'],
                                     {'speed': 8.0})
    ticks = result['ticks']
    assert result['ignored'] == [], result['ignored'][:5]
    assert all(t['accepted'] for t in ticks), [t['t'] for t in ticks if not t['accepted']][:5]
    # Every tick was answered by the control made from its own plan: the car accelerates.
    assert {round(t['t'], 3) for t in ticks} <= {round(t, 3) for t, _ in planner.plans}
    assert ticks[-1]['v'] > 3.0 and max(t['brake'] for t in ticks[5:]) == 0.0


@pytest.mark.ros
def test_plan_silence_becomes_a_full_brake_within_half_a_second(ros_env, tmp_path):
    stop_at = T0 + 30 * DT
    result, planner, control = drive(
        ros_env, tmp_path, ['--lockstep', '--ticks', '70', '--speed', '8'],
        {'speed': 8.0, 'stop_at': stop_at})
    ticks = result['ticks']
    assert result['ignored'] == [] and all(t['accepted'] for t in ticks)
    silent = [t for t in ticks if t['t'] >= stop_at - 1e-6]
    first = silent[0]
    # The last plan answered tick 29; tick 30 waits for a plan that never comes.
    assert first['brake'] == 1.0 and first['throttle'] == 0.0
    assert first['wall_ctl'] - first['wall_pub'] <= 0.5, first
    assert all(t['brake'] == 1.0 for t in silent)
    assert silent[-1]['v'] == 0.0 and silent[0]['v'] > 7.0


@pytest.mark.ros
def test_route_progress_announces_the_turn(ros_env, tmp_path):
    result, planner, control = drive(
        ros_env, tmp_path, ['--route', 'left', '--drive', 'route', '--speed', '20',
                            '--start-s', '30', '--ticks', '110'], {'speed': None})
    from vlmad_ros.types import Command
    seen = []
    for msg in planner.commands:
        t = round(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, 3)
        if t in planner.odom:
            seen.append((planner.odom[t], Command(msg.command)))
    assert len(seen) > 80, len(seen)
    before = {c for (x, y), c in seen if y < 1.0 and x < 58.0}
    approach = {c for (x, y), c in seen if y < 1.0 and x > 62.0}
    turning = {c for (x, y), c in seen if 0.5 < y < 9.5}
    after = {c for (x, y), c in seen if y > 31.0}
    assert before == {Command.STRAIGHT} and approach == {Command.LEFT}
    assert turning == {Command.LEFT} and after == {Command.STRAIGHT}


@pytest.mark.ros
def test_bad_parameter_and_missing_carla_msgs_stop_the_node(ros_env, tmp_path):
    proc = start_control(ros_env, tmp_path / 'bad.log', plan_silence_timeout=-1.0)
    assert proc.wait(timeout=60) == 2
    proc.log_file.close()
    assert 'plan_silence_timeout' in text(proc)
    env = dict(ros_env)
    env['PYTHONPATH'] = os.pathsep.join(p for p in env['PYTHONPATH'].split(os.pathsep)
                                        if 'carla_msgs' not in p)
    proc = start_control(env, tmp_path / 'missing.log')
    assert proc.wait(timeout=60) == 3
    proc.log_file.close()
    assert 'carla_msgs is not importable' in text(proc)


@pytest.mark.ros
@pytest.mark.slow
def test_whole_stack_keeps_20_hz_in_lockstep(ros_env, tmp_path):
    """Fake bridge + planner_node (packaged checkpoint) + carla_control_node, lockstep."""
    from helpers_sim import start as start_node
    planner = start_node('planner_node', ros_env, {**carla.planner_parameters(role='hero'),
                                                   'num_threads': 1},
                         tmp_path / 'planner.log')
    control = start_control(ros_env, tmp_path / 'control.log')
    probe = FakePlanner(speed=None)     # records plan stamps only
    from nav_msgs.msg import Path
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    plans = []
    probe.node.create_subscription(Path, '/vlmad/plan', lambda m: plans.append(
        round(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9, 3)),
        QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    bridge = start_bridge(ros_env, tmp_path / 'bridge.json', '--lockstep', '--ticks', '200',
                          '--odom-subscribers', '3', '--speed', '5')
    try:
        probe.spin_while(bridge, 240)
        assert bridge.returncode == 0, text(bridge)
    finally:
        probe.close()
        stop(bridge, control, planner)
    result = json.loads((tmp_path / 'bridge.json').read_text())
    ticks = result['ticks']
    assert result['ignored'] == [] and all(t['accepted'] for t in ticks)
    planned = [i for i, t in enumerate(ticks) if round(t['t'], 3) in set(plans)]
    assert planned, text(planner)[-2000:]
    # Once warm, every tick is answered by its plan: the model loads before the first plan, and
    # the first few forward passes after it may still miss a tick on a loaded machine (three
    # right after the first plan were missed once beside another job), so count from the 10th.
    assert len(planned) >= 10, text(planner)[-2000:]
    steady = ticks[planned[9]:]
    answered = len(planned) - 9
    assert len(steady) >= 100 and answered == len(steady), (answered, len(steady))
    wall = steady[-1]['wall_ctl'] - steady[0]['wall_pub']
    rate = (len(steady) - 1) / wall
    latency = np.percentile([t['wall_ctl'] - t['wall_pub'] for t in steady], 95)
    print(f'lockstep: {len(steady)} ticks at {rate:.1f} Hz, tick-to-control p95 '
          f'{1e3 * latency:.1f} ms')
    # The bridge paces to 20 Hz of wall time at most; 2 shared cores under other load have
    # measured 18.3-19.9 Hz here (docs/BENCH2DRIVE.md), so the bound leaves room for load.
    assert rate >= 15.0, (rate, latency)


def test_bench2drive_topics_for_the_bridge_and_the_native_interface():
    bridge = carla.bench2drive_topics('hero', 'bridge')
    assert bridge == {'control_topic': '/carla/hero/vehicle_control_cmd',
                      'odom_topic': '/carla/hero/odometry',
                      'route_topic': '/carla/hero/global_plan',
                      'status_topic': '/carla/hero/status'}
    native = carla.bench2drive_topics('hero', 'native', '/ekf/odom')
    assert native['route_topic'] == native['status_topic'] == ''
    assert native['odom_topic'] == '/ekf/odom'
    with pytest.raises(ValueError, match='interface'):
        carla.bench2drive_topics('hero', 'rosbridge')
