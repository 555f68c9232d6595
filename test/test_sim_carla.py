"""
The CARLA ROS bridge path, without CARLA.

sim_node publishes what the bridge publishes (bgra8 Image under /carla/ego_vehicle/<CAM>/image,
camera_info, /carla/ego_vehicle/odometry, reliable) and reads carla_twist_to_control's Twist;
planner_node and path_follower run with the parameters and remappings that
launch/carla.launch.py takes from vlmad_ros.carla. Also: objects.json and the CARLA rig agree.
"""
import ast
import json
import math
import time

from helpers_sim import log_text, start, stop
import numpy as np
import pytest

from vlmad_ros import carla, topics
from vlmad_ros.paths import config_dir, share_dir
from vlmad_ros.rig import CAMERA_NAMES, load_rig

LAUNCH = share_dir() / 'launch' / 'carla.launch.py'


def test_objects_json_spawns_the_carla_rig():
    """carla_spawn_objects would create exactly the cameras the planner's rig describes."""
    objects = json.loads((config_dir() / 'carla' / 'objects.json').read_text())
    spawned = carla.rig_from_objects(objects)
    # The same cameras at 800x450 (same aspect and field of view as the rig's 1600x900).
    size = (spawned.cameras[0].width, spawned.cameras[0].height)
    rig = load_rig('carla').scaled(*size)
    assert spawned.names == rig.names == list(CAMERA_NAMES)
    for a in rig.cameras:
        b = spawned[a.name]
        assert (b.width, b.height) == (a.width, a.height) == size
        assert b.fx == pytest.approx(a.fx, rel=1e-4) and b.fy == pytest.approx(a.fy, rel=1e-4)
        assert (b.cx, b.cy) == pytest.approx((a.cx, a.cy), abs=0.5)
        assert np.allclose(b.translation, a.translation, atol=1e-3)
        assert carla.rig_rotation_error_deg(a, b) < 0.01
        assert a.fx == pytest.approx(a.fy)   # CARLA pixels are square
    ego = [o for o in objects['objects'] if o['id'] == carla.ROLE_NAME][0]
    types = {s['type'] for s in ego['sensors']}
    assert {'sensor.pseudo.odom', 'sensor.camera.rgb'} <= types
    assert next(s for s in ego['sensors'] if s['type'] == 'sensor.pseudo.odom')['id'] == \
        'odometry'   # -> /carla/ego_vehicle/odometry


def test_rig_round_trips_through_spawn_points():
    rig = load_rig('nuscenes').scaled(800, 450)
    back = carla.rig_from_objects(carla.objects_definition(rig))
    for a in rig.cameras:
        # CARLA cameras are centred pinholes: the pose and fx survive (to objects.json's
        # 4 decimals: 0.1 mm, 1e-4 degrees).
        assert carla.rig_rotation_error_deg(a, back[a.name]) < 1e-3
        assert np.allclose(back[a.name].translation, a.translation, atol=1e-4)
        assert back[a.name].fx == pytest.approx(a.fx, rel=1e-5)


def test_carla_launch_takes_its_wiring_from_the_package():
    tree = ast.parse(LAUNCH.read_text())
    calls = {f'{n.func.value.id}.{n.func.attr}' for n in ast.walk(tree)
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and isinstance(n.func.value, ast.Name)}
    assert {'carla.planner_parameters', 'carla.follower_parameters',
            'carla.follower_remappings'} <= calls
    p = carla.planner_parameters()
    assert p['camera_topics'][0] == '/carla/ego_vehicle/CAM_FRONT/image'
    assert p['camera_transports'] == ['raw'] and p['reliability'] == 'reliable'
    assert p['use_sim_time'] is True and p['odom_topic'] == '/carla/ego_vehicle/odometry'
    assert p['base_frame'] == 'ego_vehicle'          # a frame of the bridge's TF tree
    assert ('cmd_vel', '/carla/ego_vehicle/twist') in carla.follower_remappings()


def test_twist_to_control_stand_in():
    """The bridge mode's car answers carla_twist_to_control's convention."""
    v, w = carla.twist_to_control_response(10.0, 0.0, 5.0, 0.1)     # full throttle
    assert v == pytest.approx(5.0 + 0.1 * (carla.FULL_THROTTLE_ACCEL - carla.COAST_DECEL))
    v, _ = carla.twist_to_control_response(0.0, 0.0, 5.0, 0.1)      # all zero: brake
    assert v == pytest.approx(5.0 - 0.1 * carla.BRAKE_DECEL)
    v, w = carla.twist_to_control_response(1e-3, 0.2, 5.0, 0.1)     # coast, steer left
    assert v < 5.0 and w == pytest.approx(v * math.tan(0.2) / 2.7)


@pytest.mark.ros
@pytest.mark.slow
def test_planner_and_follower_drive_through_the_bridge_topics(ros_env, tmp_path):
    rclpy = pytest.importorskip('rclpy')
    from nav_msgs.msg import Path
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    planner = start('planner_node', ros_env,
                    {**carla.planner_parameters(), 'allow_random_weights': True,
                     'num_threads': 1}, tmp_path / 'planner.log')
    follower = start('path_follower', ros_env, carla.follower_parameters(),
                     tmp_path / 'follower.log', remappings=carla.follower_remappings())
    seen = {}
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('carla_topic_probe', context=context)
    node.create_subscription(
        Image, carla.image_topic('CAM_FRONT'), lambda m: seen.setdefault('image', m),
        QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE))
    node.create_subscription(Path, topics.PLAN, lambda m: seen.setdefault('plan', m),
                             QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE))
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    sim = start('sim_node', ros_env, {
        'bridge_topics': True, 'rig': 'carla', 'episodes': ['cruise:11'], 'duration': 2.0,
        'startup_timeout': 60.0, 'result_file': str(tmp_path / 'result.json')},
        tmp_path / 'sim.log')
    try:
        deadline = time.monotonic() + 180
        while sim.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert sim.poll() == 0, log_text(sim) + log_text(planner)
    finally:
        rclpy.shutdown(context=context)
        stop(sim, planner, follower)
    result = json.loads((tmp_path / 'result.json').read_text())['scenarios'][0]
    # 2 s, a camera set every 0.2 s: every set reached the planner as bgra8 Image and got a Path.
    assert result['plans'] == 10 and result['plans_missed'] == 0, result
    image = seen['image']
    assert image.encoding == 'bgra8' and image.step == 4 * image.width
    assert image.header.frame_id == 'cam_front_optical_frame'
    assert seen['plan'].header.frame_id == 'ego_vehicle'   # the bridge's frame, not base_link
    assert 'raw' in log_text(planner) and '/carla/ego_vehicle/odometry' in log_text(planner)
    assert 'no command' not in log_text(sim)   # the follower answered on the remapped topics
