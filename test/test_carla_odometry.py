"""
Odometry from GNSS + IMU + speedometer (control/odometry.py) and carla_odometry_node over DDS.

The estimator drives known trajectories with the leaderboard's sensor noise; the node runs
against the fake bridge publishing only those sensors (no odometry topic) and carries the
CARLA control node and a stand-in planner.
"""
import math
import subprocess

import numpy as np
import pytest
from vlmad_ros import carla
from vlmad_ros.control.odometry import (
    EARTH_RADIUS, GeoReference, GnssImuOdometry, OdometryConfig)
from vlmad_ros.paths import config_dir
import yaml

DT = 0.05
GNSS_SIGMA_DEG = 5e-6       # the leaderboard's GNSS noise (noise_lat/lon_stddev), ~0.55 m


def test_geo_reference_matches_the_mercator_scale_and_inverts():
    # One degree of longitude at the equator is R pi / 180 metres; north is +y.
    geo = GeoReference(0.0, 0.0)
    assert geo.to_local(0.0, 1.0) == pytest.approx((EARTH_RADIUS * math.pi / 180, 0.0))
    x, y = geo.to_local(0.001, 0.0)
    assert x == 0.0 and y == pytest.approx(111.32, abs=0.01)
    # Away from the equator the map is scaled by cos(lat0) (a town at lat0 = 49 deg).
    geo = GeoReference(49.0, 8.0)
    assert geo.to_local(49.0, 8.0) == (0.0, 0.0)
    assert geo.to_local(49.0, 8.001)[0] == pytest.approx(
        math.cos(math.radians(49)) * EARTH_RADIUS * math.radians(0.001))
    lat, lon = geo.to_geo(123.4, -567.8)
    assert geo.to_local(lat, lon) == pytest.approx((123.4, -567.8), abs=1e-6)
    with pytest.raises(ValueError, match='lat_ref'):
        GeoReference(90.0, 0.0)
    with pytest.raises(ValueError, match='heading_gain'):
        OdometryConfig(heading_gain=1.5)


def drive(trajectory, seconds=40.0, seed=0, speed_bias=0.0):
    """Run the filter on (t -> x, y, yaw, v, w) with noisy sensors; errors after 5 s."""
    rng = np.random.default_rng(seed)
    geo = GeoReference(0.0, 0.0)
    est = GnssImuOdometry(geo)
    pos_err, yaw_err, raw_err = [], [], []
    for k in range(int(seconds / DT)):
        t = k * DT
        x, y, yaw, v, w = trajectory(t)
        lat, lon = geo.to_geo(x, y)
        lat += rng.normal(0, GNSS_SIGMA_DEG)
        lon += rng.normal(0, GNSS_SIGMA_DEG)
        out = est.update(100.0 + t, lat, lon, yaw + rng.normal(0, math.radians(1.0)),
                         w + rng.normal(0, 0.01), v + speed_bias)
        if t >= 5.0:
            pos_err.append(math.hypot(out.x - x, out.y - y))
            yaw_err.append(abs(math.degrees(math.atan2(math.sin(out.yaw - yaw),
                                                       math.cos(out.yaw - yaw)))))
            gx, gy = geo.to_local(lat, lon)
            raw_err.append(math.hypot(gx - x, gy - y))
    return np.array(pos_err), np.array(yaw_err), np.array(raw_err)


def straight(t):
    v = min(1.0 * t, 12.0)                      # accelerates, then cruises north-east
    s = 0.5 * t * t if t < 12.0 else 72.0 + 12.0 * (t - 12.0)
    yaw = math.radians(30.0)
    return s * math.cos(yaw), s * math.sin(yaw), yaw, v, 0.0


def circle(t):
    r, v = 30.0, 8.0                            # 30 m radius, counter-clockwise
    a = v * t / r
    return r * math.sin(a), r - r * math.cos(a), a, v, v / r


@pytest.mark.parametrize('trajectory', [straight, circle])
def test_position_within_half_a_metre_and_heading_within_two_degrees(trajectory):
    pos, yaw, raw = drive(trajectory)
    print(f'{trajectory.__name__}: position max {pos.max():.2f} m (raw GNSS mean '
          f'{raw.mean():.2f} m), heading max {yaw.max():.2f} deg')
    assert pos.max() < 0.5 and yaw.max() < 2.0
    assert pos.mean() < 0.5 * raw.mean()        # the filter beats the raw fixes


def test_a_time_jump_restarts_at_the_fix():
    geo = GeoReference()
    est = GnssImuOdometry(geo)
    est.update(10.0, *geo.to_geo(0.0, 0.0), 0.0, 0.0, 5.0)
    out = est.update(2.0, *geo.to_geo(500.0, 20.0), 1.0, 0.0, 0.0)   # a new route
    assert (out.x, out.y, out.yaw) == pytest.approx((500.0, 20.0, 1.0), abs=1e-6)
    with pytest.raises(ValueError, match='orientation'):
        GnssImuOdometry(geo).update(0.0, 0.0, 0.0, None, 0.0, 0.0)


def test_config_file_equals_the_node_defaults():
    from vlmad_ros.nodes.carla_odometry_node import PARAMETERS
    params = yaml.safe_load((config_dir() / 'carla_odometry.yaml').read_text())
    assert params['/**']['ros__parameters'] == {p.name: p.default for p in PARAMETERS}


def test_a_fix_with_status_unset_is_used_and_no_fix_is_not():
    # carla_ros_bridge never sets NavSatFix.status: the message default must count as a fix.
    from sensor_msgs.msg import NavSatFix, NavSatStatus
    from vlmad_ros.nodes.carla_odometry_node import usable_fix
    assert usable_fix(NavSatFix(latitude=0.1, longitude=0.2))
    assert usable_fix(NavSatFix(status=NavSatStatus(status=NavSatStatus.STATUS_FIX)))
    assert not usable_fix(NavSatFix(status=NavSatStatus(status=NavSatStatus.STATUS_NO_FIX)))
    assert not usable_fix(NavSatFix(latitude=math.nan))


@pytest.mark.ros
def test_bad_geo_reference_stops_the_node_naming_it(ros_env, tmp_path):
    proc = start_odometry(ros_env, tmp_path / 'bad.log', lat_ref=95.0)
    assert proc.wait(timeout=60) == 2
    assert 'lat_ref' in (tmp_path / 'bad.log').read_text()


# ----- the node over DDS ------------------------------------------------------------------------

def start_odometry(env, log_path, **overrides):
    from vlmad_ros.demo import command
    log = open(log_path, 'w')
    proc = subprocess.Popen(command('carla_odometry_node',
                                    str(config_dir() / 'carla_odometry.yaml'), overrides,
                                    carla.odometry_sensor_remappings('hero')),
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log_path, proc.log_file = log_path, log
    return proc


@pytest.mark.ros
def test_the_stack_drives_on_gnss_imu_and_speed_without_an_odometry_topic(ros_env, tmp_path):
    """Fake bridge (sensors, no odometry) -> carla_odometry_node -> planner + control node."""
    from test_carla_control import drive, text
    odom = start_odometry(ros_env, tmp_path / 'odometry.log', use_sim_time=True)
    result, planner, control = drive(
        ros_env, tmp_path, ['--lockstep', '--ticks', '120', '--sensors', '--no-odometry',
                            '--speed', '2', '--odom-subscribers', '1'],
        {'speed': 8.0, 'odom_topic': carla.ESTIMATED_ODOM_TOPIC},
        {'odom_topic': carla.ESTIMATED_ODOM_TOPIC}, others=[odom], timeout=180)
    ticks = result['ticks']
    # Every tick had estimated odometry, a plan made from it and its control in time.
    missed = [t['t'] for t in ticks if not t['accepted']]
    assert result['ignored'] == [] and missed == [], (missed, text(odom)[-2000:])
    assert {round(t['t'], 3) for t in ticks} <= set(planner.odom)
    assert ticks[-1]['v'] > 6.0 and ticks[-1]['x'] > 30.0, ticks[-1]
    errors = [math.hypot(planner.odom[round(t['t'], 3)][0] - t['x'],
                         planner.odom[round(t['t'], 3)][1] - t['y']) for t in ticks[20:]]
    print(f'estimated odometry over DDS: max error {max(errors):.2f} m')
    assert max(errors) < 0.5
