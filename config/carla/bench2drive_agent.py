"""
vlmad_ros as a Bench2Drive / CARLA leaderboard 2.0 ROS 2 agent (docs/BENCH2DRIVE.md).

    leaderboard_evaluator.py --agent=$(ros2 pkg prefix vlmad_ros)/share/vlmad_ros/config/carla/\
bench2drive_agent.py --agent-config="" --track=SENSORS ...

ROS2Agent (leaderboard/autoagents/ros2_agent.py) starts carla_ros_bridge in passive synchronous
mode and `ros2 launch vlmad_ros bench2drive.launch.py`, spawns the sensors below through the
bridge, publishes the route on /carla/hero/global_plan and waits for /carla/hero/status; the
control comes back on /carla/hero/vehicle_control_cmd, stamped with the simulation time.

The cameras are config/carla/objects.json's six (the planner's rig), converted from ROS
(y left, yaw counter-clockwise) to the leaderboard's CARLA convention (y right, yaw clockwise).
The launch arguments are read from the environment because ROS2Agent asks for the entry point
in its constructor, before setup() sees --agent-config: VLMAD_CHECKPOINT (empty: the packaged
planner), VLMAD_DEVICE (cpu), VLMAD_ODOM_TOPIC (nav_msgs/Odometry; see the document: the
leaderboard's sensors include no odometry).

Runs inside the leaderboard (carla, leaderboard, rclpy importable); not run by vlmad_ros's tests.
"""
import json
import os

from ament_index_python.packages import get_package_share_directory
from leaderboard.autoagents.autonomous_agent import Track
from leaderboard.autoagents.ros2_agent import ROS2Agent


def get_entry_point():
    return 'VlmadRos2Agent'


def camera_sensors():
    """The rig's six cameras as leaderboard sensor specs (CARLA coordinates)."""
    share = get_package_share_directory('vlmad_ros')
    with open(os.path.join(share, 'config', 'carla', 'objects.json')) as f:
        objects = json.load(f)['objects']
    ego = next(o for o in objects if o.get('id') == 'ego_vehicle')
    out = []
    for s in ego['sensors']:
        if s['type'] != 'sensor.camera.rgb':
            continue
        p = s['spawn_point']
        out.append({'type': 'sensor.camera.rgb', 'id': s['id'],
                    'x': p['x'], 'y': -p['y'], 'z': p['z'],
                    'roll': p['roll'], 'pitch': -p['pitch'], 'yaw': -p['yaw'],
                    'width': s['image_size_x'], 'height': s['image_size_y'], 'fov': s['fov']})
    return out


class VlmadRos2Agent(ROS2Agent):
    """Six cameras, IMU, GNSS and speedometer; the stack is bench2drive.launch.py."""

    def setup(self, path_to_conf_file):
        self.track = Track.SENSORS

    def get_ros_entrypoint(self):
        params = {'role_name': 'hero',
                  'checkpoint': os.environ.get('VLMAD_CHECKPOINT', '') or '""',
                  'device': os.environ.get('VLMAD_DEVICE', 'cpu')}
        if os.environ.get('VLMAD_ODOM_TOPIC'):
            params['odom_topic'] = os.environ['VLMAD_ODOM_TOPIC']
        return {'package': 'vlmad_ros', 'launch_file': 'bench2drive.launch.py',
                'parameters': params}

    def sensors(self):
        return camera_sensors() + [
            {'type': 'sensor.other.imu', 'id': 'imu', 'x': 0.0, 'y': 0.0, 'z': 0.0,
             'roll': 0.0, 'pitch': 0.0, 'yaw': 0.0, 'sensor_tick': 0.05},
            {'type': 'sensor.other.gnss', 'id': 'gnss', 'x': 0.0, 'y': 0.0, 'z': 0.0,
             'roll': 0.0, 'pitch': 0.0, 'yaw': 0.0, 'sensor_tick': 0.05},
            {'type': 'sensor.speedometer', 'id': 'speed', 'reading_frequency': 20},
        ]
