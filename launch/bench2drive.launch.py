"""
Bench2Drive / CARLA leaderboard 2.0 ROS 2 agent entry point: planner + CARLA control node.

Bench2Drive's ROS 2 agent (leaderboard/autoagents/ros2_agent.py) starts carla_ros_bridge in
passive synchronous mode and then `ros2 launch vlmad_ros bench2drive.launch.py` (see
config/carla/bench2drive_agent.py and docs/BENCH2DRIVE.md). The planner reads the six bgra8
/carla/<role>/<CAM>/image topics, their camera_info and the odometry; carla_control_node turns
each plan into a CarlaEgoVehicleControl stamped with its tick on
/carla/<role>/vehicle_control_cmd, the route (/carla/<role>/global_plan) into the planner's
command, and publishes /carla/<role>/status, which the agent waits for.

interface:=native runs the same stack on CARLA's own ROS 2 interface (CarlaUE4.sh --ros2):
the same camera and control topic names; no route topic (the command stays STRAIGHT unless
something publishes /vlmad/command).

The leaderboard gives no odometry: unless `odom_topic` names one, carla_odometry_node makes it
from the agent's GNSS, IMU and speedometer (/carla/<role>/{gnss,imu,speed}) on /vlmad/odometry,
with the town's geo-reference `lat_ref` / `lon_ref`.
"""
from launch import LaunchDescription
from launch.actions import OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from vlmad_ros import carla
from vlmad_ros.launch_args import Arg, declare, node_parameters

ARGS = [
    Arg('checkpoint', str, 'planner checkpoint (empty: the packaged default)', ('planner_node',)),
    Arg('device', str, 'cpu | cuda | auto', ('planner_node',)),
    Arg('lat_ref', float, "the town's geo-reference latitude [deg]", ('carla_odometry_node',)),
    Arg('lon_ref', float, "the town's geo-reference longitude [deg]", ('carla_odometry_node',)),
]
EXTRA = [
    ('role_name', 'hero', 'ego role name (the leaderboard spawns "hero")'),
    ('interface', 'bridge', 'bridge (carla_ros_bridge) | native (CARLA --ros2)'),
    ('odom_topic', '', 'nav_msgs/Odometry (empty: estimated from GNSS, IMU and speedometer by '
                       'carla_odometry_node)'),
]


def _nodes(context):
    arg = {name: LaunchConfiguration(name).perform(context)
           for name in ('role_name', 'interface', 'odom_topic')}
    namespace = LaunchConfiguration('namespace')
    odom = arg['odom_topic'] or carla.ESTIMATED_ODOM_TOPIC
    topics = carla.bench2drive_topics(arg['role_name'], arg['interface'], odom)
    planner = dict(carla.planner_parameters(arg['role_name']), odom_topic=topics['odom_topic'])
    nodes = [] if arg['odom_topic'] else [
        Node(package='vlmad_ros', executable='carla_odometry_node', name='carla_odometry_node',
             namespace=namespace, output='screen',
             remappings=carla.odometry_sensor_remappings(arg['role_name']),
             parameters=node_parameters(context, 'carla_odometry_node', ARGS,
                                        {'use_sim_time': True}))]
    return nodes + [
        Node(package='vlmad_ros', executable='planner_node', name='planner_node',
             namespace=namespace, output='screen',
             parameters=node_parameters(context, 'planner_node', ARGS, planner)),
        Node(package='vlmad_ros', executable='carla_control_node', name='carla_control_node',
             namespace=namespace, output='screen',
             parameters=node_parameters(context, 'carla_control_node', ARGS,
                                        dict(topics, use_sim_time=True))),
    ]


def generate_launch_description():
    return LaunchDescription([*declare(ARGS, EXTRA), OpaqueFunction(function=_nodes)])
