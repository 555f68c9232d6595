"""PathFollower without ROS: tracking, speed from waypoint timing, limits, plan loss."""
import math

from helpers_control import KinematicBicycle, VehicleState
import numpy as np
import pytest

from vlmad_ros.control.follower import FollowerConfig, PathFollower, Status, TimedPath
from vlmad_ros.control.pid import PID, PIDConfig
from vlmad_ros.control.pure_pursuit import (
    implied_speed, lookahead_point, pursuit_curvature, to_local, to_world)

DT = 0.05   # 20 Hz control, as the sim's physics step
OFFSETS = 0.5 * np.arange(1, 7)


def circle_plan(state, t, radius, speed):
    """Plan along a circle (centre (0, R)) from the closest point to `state`."""
    phi = math.atan2(state.y - radius, state.x)
    phis = phi + speed * OFFSETS / radius
    xy = np.stack([radius * np.cos(phis), radius + radius * np.sin(phis)], 1)
    start = (radius * math.cos(phi), radius + radius * math.sin(phi))
    return TimedPath(np.concatenate([[t], t + OFFSETS]), np.vstack([[start], xy]))


def drive(follower, car, steps, plan_fn, plan_every=4):
    log = []
    for k in range(steps):
        t = k * DT
        if plan_fn is not None and k % plan_every == 0:
            path = plan_fn(car.state, t)
            if path is not None:
                follower.set_path(path)
        s = car.state
        cmd = follower.update(t, (s.x, s.y, s.yaw), s.speed)
        car.step(DT, cmd.linear_x, cmd.angular_z)
        log.append((t, car.state, cmd))
    return log


def test_frames_round_trip():
    pose = (3.0, -2.0, 0.7)
    pts = np.array([[1.0, 2.0], [-4.0, 0.5]])
    assert np.allclose(to_local(to_world(pts, pose), pose), pts)
    assert np.allclose(to_world([[1.0, 0.0]], (0, 0, math.pi / 2)), [[0.0, 1.0]])


def test_lookahead_and_curvature_on_a_known_arc():
    radius = 20.0
    a = np.linspace(0, 1.0, 50)
    arc = np.stack([radius * np.sin(a), radius * (1 - np.cos(a))], 1)   # left turn from origin
    target = lookahead_point(arc, 5.0)
    assert np.linalg.norm(target) == pytest.approx(5.0, rel=0.01)
    assert pursuit_curvature(target) == pytest.approx(1 / radius, rel=0.01)
    # Past the end the last segment is extended.
    line = np.array([[0.0, 0.0], [1.0, 0.0]])
    assert np.allclose(lookahead_point(line, 4.0), [4.0, 0.0])


def test_implied_speed_from_waypoint_timing():
    times = np.concatenate([[0.0], OFFSETS])
    xs = np.concatenate([[0.0], 4.0 * OFFSETS])       # 4 m/s throughout
    xy = np.stack([xs, np.zeros_like(xs)], 1)
    assert implied_speed(times, xy, 0.0) == pytest.approx(4.0)
    assert implied_speed(times, xy, 2.0) == pytest.approx(4.0)
    xs = np.array([0.0, 2.5, 4.5, 6.0, 7.0, 7.5, 7.5])   # braking 5 -> 0 m/s
    xy = np.stack([xs, np.zeros_like(xs)], 1)
    assert implied_speed(times, xy, 0.25) == pytest.approx(5.0)
    assert implied_speed(times, xy, 2.75) == pytest.approx(0.0)
    assert implied_speed(times, xy, 1.0) == pytest.approx(3.5)


def test_tracks_a_circle_within_tolerance():
    radius, speed = 30.0, 8.0
    car = KinematicBicycle(VehicleState(speed=0.0))
    log = drive(PathFollower(), car, 400, lambda s, t: circle_plan(s, t, radius, speed))
    settled = log[200:]
    cte = [abs(math.hypot(s.x, s.y - radius) - radius) for _, s, _ in settled]
    speeds = [s.speed for _, s, _ in settled]
    assert max(cte) < 0.15, f'cross-track error {max(cte):.3f} m'
    assert abs(np.mean(speeds) - speed) < 0.3
    accels = np.diff([s.speed for _, s, _ in log]) / DT
    assert accels.max() <= FollowerConfig().max_accel + 0.3


def braking_plan(state, t, stop_x):
    """Plan what a planner would: brake at constant deceleration to stand still at stop_x."""
    remaining = max(stop_x - state.x, 0.0)
    v0 = max(state.speed, 0.0)
    if remaining < 0.05 or v0 < 0.05:
        xs = np.full(6, state.x + remaining)
    else:
        decel = v0 * v0 / (2 * remaining)
        tau = np.minimum(OFFSETS, v0 / decel)
        xs = state.x + v0 * tau - 0.5 * decel * tau ** 2
    return TimedPath(np.concatenate([[t], t + OFFSETS]),
                     np.stack([np.concatenate([[state.x], xs]), np.zeros(7)], 1))


def test_stops_where_the_plan_stops():
    """Cruising at 6 m/s, then plans that brake to stand still at x = 30 m."""
    car = KinematicBicycle(VehicleState(speed=6.0))

    def plan(state, t):
        if t < 2.0:
            xs = state.x + 6.0 * OFFSETS
            return TimedPath(np.concatenate([[t], t + OFFSETS]),
                             np.stack([np.concatenate([[state.x], xs]), np.zeros(7)], 1))
        return braking_plan(state, t, 30.0)

    log = drive(PathFollower(), car, 300, plan)
    final = log[-1][1]
    assert final.speed < 0.05
    assert 28.0 < final.x < 31.0, f'stopped at {final.x:.2f} m, the plan said 30 m'
    assert log[-1][2].status == Status.STOPPED
    assert abs(final.y) < 1e-6


def test_stops_when_plans_stop_arriving():
    radius, speed = 50.0, 8.0
    car = KinematicBicycle(VehicleState(speed=speed))
    follower = PathFollower(FollowerConfig(plan_timeout=1.0, max_decel=6.0))

    def plan(state, t):
        return circle_plan(state, t, radius, speed) if t < 3.0 else None

    log = drive(follower, car, 160, plan)
    by_t = {round(t, 2): (s, c) for t, s, c in log}
    assert by_t[3.5][1].status == Status.FOLLOWING    # last plan at 2.8 s: still fresh
    assert by_t[4.0][1].status == Status.PLAN_TIMEOUT
    assert by_t[4.0][0].speed > 4.0                  # braking, not a wall
    assert log[-1][1].speed == pytest.approx(0.0, abs=1e-6)
    assert log[-1][2].linear_x == 0.0
    # Brought to a stop within speed / decel (+ lag) after the timeout.
    stop_t = next(t for t, s, _ in log if t > 3.8 and s.speed < 1e-3)
    assert stop_t < 3.8 + speed / 6.0 + 0.8


def test_no_plan_means_no_motion():
    f = PathFollower()
    cmd = f.update(0.0, (0.0, 0.0, 0.0), 0.0)
    assert cmd.status == Status.NO_PLAN and cmd.linear_x == 0.0


def test_carla_output_convention():
    """carla_twist_to_control: throttle demand, steering angle, all-zero Twist = brake."""
    f = PathFollower(FollowerConfig(output_mode='carla'))
    xs = np.concatenate([[0.0], 8.0 * OFFSETS])
    ys = 0.02 * xs ** 2                                  # curving left
    f.set_path(TimedPath(np.concatenate([[0.0], OFFSETS]), np.stack([xs, ys], 1)))
    cmd = f.update(0.05, (0.0, 0.0, 0.0), 2.0)          # slower than the plan: throttle
    assert 0 < cmd.linear_x <= 10.0 and cmd.angular_z > 0 and not cmd.brake
    assert cmd.angular_z <= f.config.max_steer_angle
    stop = PathFollower(FollowerConfig(output_mode='carla'))
    stop.set_path(TimedPath(np.concatenate([[0.0], OFFSETS]), np.zeros((7, 2))))
    cmd = stop.update(0.05, (0.0, 0.0, 0.0), 5.0)
    assert cmd.brake and cmd.linear_x == 0.0 and cmd.angular_z == 0.0


@pytest.mark.parametrize('field,value', [
    ('max_accel', 0.0), ('plan_timeout', -1.0), ('lookahead_max', 1.0),
    ('output_mode', 'throttle'), ('max_curvature', math.nan)])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        FollowerConfig(**{field: value})


def test_pid_integral_is_clamped():
    pid = PID(PIDConfig(kp=0.0, ki=1.0, kd=0.0, integral_limit=0.5))
    for _ in range(100):
        out = pid.update(1.0, 0.1)
    assert out == pytest.approx(0.5)
    with pytest.raises(ValueError, match='pid.kp'):
        PIDConfig(kp=-1.0)


def test_log_throttle_reports_once_per_period_and_counts_the_rest():
    from vlmad_ros.nodes.common import LogThrottle
    now = [0.0]
    got = []
    throttle = LogThrottle(5.0, clock=lambda: now[0])
    for t in (0.0, 1.0, 2.0, 6.0):
        now[0] = t
        throttle(got.append, 'bad_plan', 'skipping plan')
    throttle(got.append, 'other', 'skipping odom')
    assert got == ['skipping plan', 'skipping plan (2 more since the last report)',
                   'skipping odom']


def test_log_throttle_mixes_severities_on_a_real_rclpy_logger():
    """Log warnings, errors and info through one throttle: rclpy ties a severity to a call site."""
    from rclpy.logging import get_logger
    from vlmad_ros.nodes.common import LogThrottle
    logger = get_logger('log_throttle_test')
    throttle = LogThrottle(0.0)
    for k in range(2):
        assert throttle(logger.warning, f'w{k}', 'a warning')
        assert throttle(logger.error, f'e{k}', 'an error')
        assert throttle(logger.info, f'i{k}', 'some info')
