"""
CARLA ROS bridge conventions: topic names, the node parameters that fit them, objects.json.

One place for the wiring used by launch/carla.launch.py, by the sim node's bridge mode and by
the test that drives the planner through it, so the three cannot drift.

carla_spawn_objects `spawn_point`s are in ROS convention (x forward, y left, z up; roll,
pitch, yaw in degrees, yaw left-positive), relative to the ego vehicle's origin (the bridge's
`ego_vehicle` frame: the car's centre on the ground; the plan is relative to that frame).
A CARLA camera looks along its body x axis; its image is the REP 103 optical frame
(z forward, x right, y down). Its intrinsics are an ideal pinhole from `fov` (horizontal,
degrees) and the image size: fx = fy = W / (2 tan(fov / 2)), cx = W / 2, cy = H / 2.
"""
from __future__ import annotations

import json
import math
import pathlib
from typing import Dict, List, Tuple

import numpy as np

from vlmad_ros import topics
from vlmad_ros.control.follower import FollowerConfig
from vlmad_ros.control.pid import PIDConfig
from vlmad_ros.rig import (
    Camera, CAMERA_NAMES, CameraRig, matrix_to_quat_wxyz, quat_wxyz_to_matrix)

ROLE_NAME = 'ego_vehicle'
VEHICLE_BLUEPRINT = 'vehicle.tesla.model3'
SENSOR_TICK = 0.05   # [s] 20 Hz, the bridge's usual fixed_delta_seconds

# Optical frame axes expressed in the camera body frame (x forward, y left, z up).
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def image_topic(camera: str, role: str = ROLE_NAME) -> str:
    return f'/carla/{role}/{camera}/image'


def camera_info_topic(camera: str, role: str = ROLE_NAME) -> str:
    return f'/carla/{role}/{camera}/camera_info'


def odometry_topic(role: str = ROLE_NAME) -> str:
    return f'/carla/{role}/odometry'


def twist_topic(role: str = ROLE_NAME) -> str:
    """Input of carla_twist_to_control (-> /carla/<role>/vehicle_control_cmd)."""
    return f'/carla/{role}/twist'


def planner_parameters(role: str = ROLE_NAME, cameras=CAMERA_NAMES) -> Dict[str, object]:
    """planner_node parameters for the bridge: bgra8 Images, CameraInfo, reliable QoS."""
    return {
        'rig': 'carla',
        'cameras': list(cameras),
        'camera_topics': [image_topic(c, role) for c in cameras],
        'camera_transports': ['raw'],
        'use_camera_info': True,
        'camera_info_topics': [camera_info_topic(c, role) for c in cameras],
        'odom_topic': odometry_topic(role),
        'base_frame': role,          # the bridge's TF tree has no base_link
        'reliability': 'reliable',
        'use_sim_time': True,
        # Synchronous mode stamps a tick's sensors alike; a slop of a whole tick (the default
        # 0.05 s) could join a leftover image of the previous tick to this one and lose a set.
        'slop': SENSOR_TICK / 2,
    }


def follower_parameters() -> Dict[str, object]:
    """path_follower parameters for carla_twist_to_control (see control/follower.py)."""
    return {'output_mode': 'carla', 'odom_reliability': 'reliable', 'use_sim_time': True}


CARLA_INTERFACES = ('bridge', 'native')


def bench2drive_topics(role: str = 'hero', interface: str = 'bridge',
                       odom_topic: str = '') -> Dict[str, str]:
    """
    carla_control_node topic parameters for the ROS bridge or CARLA's native ROS 2 interface.

    Both publish cameras under /carla/<role>/<sensor>/ and read the control on
    /carla/<role>/vehicle_control_cmd; only the bridge (driven by the leaderboard's ROS 2
    agent) carries the route and waits for the status topic.
    """
    if interface not in CARLA_INTERFACES:
        raise ValueError(f'interface must be one of {CARLA_INTERFACES}, got {interface!r}')
    bridge = interface == 'bridge'
    return {'control_topic': f'/carla/{role}/vehicle_control_cmd',
            'odom_topic': odom_topic or odometry_topic(role),
            'route_topic': f'/carla/{role}/global_plan' if bridge else '',
            'status_topic': f'/carla/{role}/status' if bridge else ''}


ESTIMATED_ODOM_TOPIC = '/vlmad/odometry'   # carla_odometry_node's output in bench2drive


def odometry_sensor_remappings(role: str = 'hero') -> List[Tuple[str, str]]:
    """carla_odometry_node's inputs from the leaderboard agent's sensors (ids gnss, imu, speed)."""
    return [('gnss', f'/carla/{role}/gnss'), ('imu', f'/carla/{role}/imu'),
            ('speed', f'/carla/{role}/speed'), ('odometry', ESTIMATED_ODOM_TOPIC)]


def vehicle_follower_config(**overrides) -> FollowerConfig:
    """
    Return the controller settings of carla_control_node (plan -> CarlaEgoVehicleControl).

    The speed PID's output is an acceleration demand here, so its gains are in m/s^2 per m/s
    (config/carla_control.yaml holds the same values; test_carla_control checks they agree).
    The feed-forward covers the plan's acceleration and the coasting deceleration of the car
    model below (COAST_DECEL), so the PID only corrects what the model gets wrong.
    """
    values = {'output_mode': 'vehicle', 'accel_feedforward': 1.0, 'accel_horizon': 0.5,
              'coast_accel': COAST_DECEL,
              'pid': PIDConfig(kp=1.0, ki=0.2, kd=0.0, integral_limit=2.0, output_limit=8.0)}
    values.update(overrides)
    return FollowerConfig(**values)


def follower_remappings(role: str = ROLE_NAME) -> List[Tuple[str, str]]:
    return [(topics.relative(topics.ODOM), odometry_topic(role)), ('cmd_vel', twist_topic(role))]


# A stand-in for CARLA's vehicle physics behind carla_twist_to_control (sim_node bridge mode).
FULL_THROTTLE_ACCEL = 4.0   # [m/s^2] a mid-size car at full throttle
BRAKE_DECEL = 8.0           # [m/s^2] full brake
COAST_DECEL = 0.3           # [m/s^2] rolling resistance and drag with no throttle


def twist_to_control_response(linear_x: float, angular_z: float, speed: float, dt: float,
                              wheelbase: float = 2.7) -> Tuple[float, float]:
    """
    Return (speed, yaw rate) a carla_twist_to_control Twist gives a car after `dt` seconds.

    The Twist means: linear.x in (0, 10] = throttle x 10, all zero = full brake, angular.z =
    steering angle [rad]. Reverse is not modelled (a negative linear.x brakes).
    """
    if linear_x == 0.0 and angular_z == 0.0 or linear_x < 0.0:
        accel = -BRAKE_DECEL
    else:
        accel = min(linear_x, 10.0) / 10.0 * FULL_THROTTLE_ACCEL - COAST_DECEL
    target = max(0.0, speed + accel * dt)
    return target, target * math.tan(angular_z) / wheelbase


def vehicle_control_response(throttle: float, steer: float, brake: float, speed: float,
                             dt: float, max_steer_angle: float = 1.22,
                             wheelbase: float = 2.7) -> Tuple[float, float]:
    """
    Return (speed, yaw rate) a CarlaEgoVehicleControl gives a car after `dt` seconds.

    The same stand-in physics as twist_to_control_response: throttle and brake scale the
    full-throttle acceleration and full-brake deceleration, rolling resistance always acts,
    steer in [-1, 1] is -(front-wheel angle) / max_steer_angle (CARLA steers right for +).
    """
    accel = (min(max(throttle, 0.0), 1.0) * FULL_THROTTLE_ACCEL
             - min(max(brake, 0.0), 1.0) * BRAKE_DECEL - COAST_DECEL)
    target = max(0.0, speed + accel * dt)
    angle = -min(max(steer, -1.0), 1.0) * max_steer_angle
    return target, target * math.tan(angle) / wheelbase


def _rpy_deg(rot: np.ndarray) -> Tuple[float, float, float]:
    """Roll, pitch, yaw [deg] with R = Rz(yaw) Ry(pitch) Rx(roll) (ROS / tf convention)."""
    pitch = math.asin(-max(-1.0, min(1.0, rot[2, 0])))
    roll = math.atan2(rot[2, 1], rot[2, 2])
    yaw = math.atan2(rot[1, 0], rot[0, 0])
    return math.degrees(roll), math.degrees(pitch), math.degrees(yaw)


def _rot_from_rpy_deg(roll: float, pitch: float, yaw: float) -> np.ndarray:
    r, p, y = (math.radians(a) for a in (roll, pitch, yaw))
    rx = np.array([[1, 0, 0], [0, math.cos(r), -math.sin(r)], [0, math.sin(r), math.cos(r)]])
    ry = np.array([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])
    rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    return rz @ ry @ rx


def camera_to_sensor(camera: Camera) -> Dict[str, object]:
    """Describe a rig camera as a carla_spawn_objects sensor.camera.rgb entry (fx == fy)."""
    if abs(camera.fx - camera.fy) > 1e-6 * camera.fx:
        raise ValueError(f'camera {camera.name}: CARLA cameras have fx == fy '
                         f'(got {camera.fx}, {camera.fy})')
    r_base_body = camera.rotation @ R_BODY_OPTICAL.T
    roll, pitch, yaw = _rpy_deg(r_base_body)
    x, y, z = camera.translation
    fov = math.degrees(2 * math.atan(camera.width / (2 * camera.fx)))
    return {
        'type': 'sensor.camera.rgb', 'id': camera.name,
        'spawn_point': {k: round(float(v), 4) + 0.0 for k, v in   # + 0.0: no "-0.0"
                        zip(('x', 'y', 'z', 'roll', 'pitch', 'yaw'),
                            (x, y, z, roll, pitch, yaw))},
        'image_size_x': camera.width, 'image_size_y': camera.height,
        'fov': round(fov, 4), 'sensor_tick': SENSOR_TICK,
    }


def sensor_to_camera(sensor: Dict[str, object]) -> Camera:
    """Return the rig camera a sensor.camera.rgb entry produces (ideal pinhole, centred)."""
    sp = sensor['spawn_point']
    w, h = int(sensor['image_size_x']), int(sensor['image_size_y'])
    f = w / (2 * math.tan(math.radians(float(sensor['fov'])) / 2))
    rot = _rot_from_rpy_deg(sp.get('roll', 0.0), sp.get('pitch', 0.0), sp.get('yaw', 0.0))
    return Camera(name=str(sensor['id']), width=w, height=h, fx=f, fy=f, cx=w / 2, cy=h / 2,
                  translation=(float(sp['x']), float(sp['y']), float(sp['z'])),
                  rotation_wxyz=tuple(float(v) for v in matrix_to_quat_wxyz(
                      rot @ R_BODY_OPTICAL)))


def objects_definition(rig: CameraRig, role: str = ROLE_NAME,
                       blueprint: str = VEHICLE_BLUEPRINT) -> Dict[str, object]:
    """Build carla_spawn_objects content: the ego with the rig's cameras and odometry."""
    sensors = [camera_to_sensor(c) for c in rig.cameras]
    sensors += [{'type': 'sensor.pseudo.tf', 'id': 'tf'},
                {'type': 'sensor.pseudo.odom', 'id': 'odometry'},
                {'type': 'sensor.pseudo.speedometer', 'id': 'speedometer'},
                {'type': 'actor.pseudo.control', 'id': 'control'}]
    return {'objects': [
        {'type': 'sensor.pseudo.traffic_lights', 'id': 'traffic_lights'},
        {'type': 'sensor.pseudo.objects', 'id': 'objects'},
        {'type': 'sensor.pseudo.actor_list', 'id': 'actor_list'},
        {'type': blueprint, 'id': role, 'sensors': sensors},
    ]}


def rig_from_objects(path_or_dict, role: str = ROLE_NAME, name: str = 'carla') -> CameraRig:
    """Return the camera rig an objects.json spawns on `role` (CAMERA_NAMES order)."""
    data = path_or_dict
    if not isinstance(data, dict):
        data = json.loads(pathlib.Path(path_or_dict).read_text())
    egos = [o for o in data.get('objects', []) if o.get('id') == role]
    if len(egos) != 1:
        raise ValueError(f'objects definition: need exactly one object with id {role!r}')
    cams = [sensor_to_camera(s) for s in egos[0].get('sensors', [])
            if s.get('type') == 'sensor.camera.rgb']
    return CameraRig.from_dict({'name': name, 'frame_id': role,
                                'cameras': {c.name: c.to_dict() for c in cams}})


def rig_rotation_error_deg(a: Camera, b: Camera) -> float:
    """Angle [deg] between two cameras' orientations (for consistency checks)."""
    rel = quat_wxyz_to_matrix(a.rotation_wxyz).T @ quat_wxyz_to_matrix(b.rotation_wxyz)
    return math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(rel) - 1) / 2))))
