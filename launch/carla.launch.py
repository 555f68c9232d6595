"""
Planner + path follower on the CARLA ROS bridge (ros-bridge 0.9.x, ROS 2).

Start CARLA, the bridge in synchronous mode and the ego with config/carla/objects.json
(docs/CARLA.md), then: ros2 launch vlmad_ros carla.launch.py checkpoint:=/path/to/model.pt

The planner reads the six bgra8 /carla/<role>/<CAM>/image topics, their camera_info and
/carla/<role>/odometry with reliable QoS and simulation time; the follower turns the plan
into carla_twist_to_control Twists on /carla/<role>/twist (started here unless
twist_to_control:=false). The parameter values and remappings come from vlmad_ros.carla, the
same functions the test suite drives the planner through.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from vlmad_ros import carla


def _nodes(context):
    role = LaunchConfiguration('role_name').perform(context)
    share = FindPackageShare('vlmad_ros').perform(context)
    planner_params = carla.planner_parameters(role)
    planner_params['checkpoint'] = LaunchConfiguration('checkpoint').perform(context)
    planner_params['device'] = LaunchConfiguration('device').perform(context)
    planner_params['publish_markers'] = True
    nodes = [
        Node(package='vlmad_ros', executable='planner_node', name='planner_node',
             output='screen',
             parameters=[f'{share}/config/planner.yaml', planner_params]),
        Node(package='vlmad_ros', executable='path_follower', name='path_follower',
             output='screen',
             parameters=[f'{share}/config/path_follower.yaml', carla.follower_parameters()],
             remappings=carla.follower_remappings(role)),
    ]
    if LaunchConfiguration('twist_to_control').perform(context).lower() == 'true':
        nodes.append(Node(package='carla_twist_to_control', executable='carla_twist_to_control',
                          name='carla_twist_to_control', output='screen',
                          parameters=[{'role_name': role, 'use_sim_time': True}]))
    return nodes


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('role_name', default_value=carla.ROLE_NAME,
                              description='ego vehicle role name in objects.json'),
        DeclareLaunchArgument('checkpoint', default_value='',
                              description='planner checkpoint (empty: the packaged default)'),
        DeclareLaunchArgument('device', default_value='cpu', description='cpu | cuda | auto'),
        DeclareLaunchArgument('twist_to_control', default_value='true',
                              description='start carla_twist_to_control (Twist -> control)'),
        OpaqueFunction(function=_nodes),
    ])
