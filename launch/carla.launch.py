"""
Planner + path follower on the CARLA ROS bridge (ros-bridge 0.9.x, ROS 2).

Start CARLA, the bridge in synchronous mode and the ego with config/carla/objects.json
(docs/CARLA.md), then: ros2 launch vlmad_ros carla.launch.py checkpoint:=/path/to/model.pt

The planner reads the six bgra8 /carla/<role>/<CAM>/image topics, their camera_info and
/carla/<role>/odometry with reliable QoS and simulation time; the follower turns the plan
into carla_twist_to_control Twists on /carla/<role>/twist (started here unless
twist_to_control:=false). Those settings come from vlmad_ros.carla (the functions the test
suite drives the planner through) on top of the installed config/*.yaml; params_file and the
arguments below that you set come after them (vlmad_ros.launch_args).
"""
from launch import LaunchDescription
from launch.actions import OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from vlmad_ros import carla
from vlmad_ros.launch_args import Arg, declare, node_parameters

ARGS = [
    Arg('checkpoint', str, 'planner checkpoint (.pt)', ('planner_node',)),
    Arg('device', str, 'cpu | cuda | auto', ('planner_node',)),
]
EXTRA = [
    ('role_name', carla.ROLE_NAME, 'ego vehicle role name in objects.json'),
    ('twist_to_control', 'true', 'start carla_twist_to_control (Twist -> control)'),
]


def _nodes(context):
    role = LaunchConfiguration('role_name').perform(context)
    namespace = LaunchConfiguration('namespace')
    planner = dict(carla.planner_parameters(role), publish_markers=True)
    nodes = [
        Node(package='vlmad_ros', executable='planner_node', name='planner_node',
             namespace=namespace, output='screen',
             parameters=node_parameters(context, 'planner_node', ARGS, planner)),
        Node(package='vlmad_ros', executable='path_follower', name='path_follower',
             namespace=namespace, output='screen',
             parameters=node_parameters(context, 'path_follower', ARGS,
                                        carla.follower_parameters()),
             remappings=carla.follower_remappings(role)),
    ]
    if LaunchConfiguration('twist_to_control').perform(context).lower() == 'true':
        nodes.append(Node(package='carla_twist_to_control', executable='carla_twist_to_control',
                          name='carla_twist_to_control', output='screen',
                          parameters=[{'role_name': role, 'use_sim_time': True}]))
    return nodes


def generate_launch_description():
    return LaunchDescription([*declare(ARGS, EXTRA), OpaqueFunction(function=_nodes)])
