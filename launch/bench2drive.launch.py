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
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from vlmad_ros import carla


def _nodes(context):
    arg = {name: LaunchConfiguration(name).perform(context)
           for name in ('role_name', 'checkpoint', 'device', 'interface', 'odom_topic',
                        'lat_ref', 'lon_ref')}
    share = FindPackageShare('vlmad_ros').perform(context)
    odom = arg['odom_topic'] or carla.ESTIMATED_ODOM_TOPIC
    topics = carla.bench2drive_topics(arg['role_name'], arg['interface'], odom)
    planner = carla.planner_parameters(arg['role_name'])
    planner.update(checkpoint=arg['checkpoint'], device=arg['device'],
                   odom_topic=topics['odom_topic'])
    estimator = [] if arg['odom_topic'] else [
        Node(package='vlmad_ros', executable='carla_odometry_node', name='carla_odometry_node',
             output='screen', remappings=carla.odometry_sensor_remappings(arg['role_name']),
             parameters=[f'{share}/config/carla_odometry.yaml',
                         {'lat_ref': float(arg['lat_ref']), 'lon_ref': float(arg['lon_ref']),
                          'use_sim_time': True}])]
    return estimator + [
        Node(package='vlmad_ros', executable='planner_node', name='planner_node',
             output='screen', parameters=[f'{share}/config/planner.yaml', planner]),
        Node(package='vlmad_ros', executable='carla_control_node', name='carla_control_node',
             output='screen',
             parameters=[f'{share}/config/carla_control.yaml', topics, {'use_sim_time': True}]),
    ]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('role_name', default_value='hero',
                              description='ego role name (the leaderboard spawns "hero")'),
        DeclareLaunchArgument('checkpoint', default_value='',
                              description='planner checkpoint (empty: the packaged default)'),
        DeclareLaunchArgument('device', default_value='cpu', description='cpu | cuda | auto'),
        DeclareLaunchArgument('interface', default_value='bridge',
                              description='bridge (carla_ros_bridge) | native (CARLA --ros2)'),
        DeclareLaunchArgument('odom_topic', default_value='',
                              description='nav_msgs/Odometry (empty: estimated from GNSS, IMU '
                                          'and speedometer by carla_odometry_node)'),
        DeclareLaunchArgument('lat_ref', default_value='0.0',
                              description="the town's geo-reference latitude [deg]"),
        DeclareLaunchArgument('lon_ref', default_value='0.0',
                              description="the town's geo-reference longitude [deg]"),
        OpaqueFunction(function=_nodes),
    ])
