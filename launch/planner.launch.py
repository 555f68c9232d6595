"""
The planner: six cameras + odometry -> a nav_msgs/Path plan.

    ros2 launch vlmad_ros planner.launch.py checkpoint:=/path/to/model.pt
    ros2 launch vlmad_ros planner.launch.py params_file:=my.yaml device:=cuda namespace:=car1
    ros2 launch vlmad_ros planner.launch.py device:=cuda decoder:=nvjpeg cuda_graphs:=true
    ros2 launch vlmad_ros planner.launch.py allow_random_weights:=true   # untrained: tests only

Parameters come from the installed config/planner.yaml, then params_file, then the arguments
below that you set (vlmad_ros.launch_args); an argument you leave out passes nothing.
"""
from launch import LaunchDescription
from launch.actions import OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from vlmad_ros.launch_args import Arg, declare, node_parameters

ARGS = [
    Arg('checkpoint', str, 'planner checkpoint (.pt)'),
    Arg('allow_random_weights', bool, 'run untrained weights when there is no checkpoint'),
    Arg('rig', str, 'nuscenes | carla | path to a rig yaml'),
    Arg('device', str, 'cpu | cuda | cuda:N | auto'),
    Arg('decoder', str, 'JPEG decoding: cpu | nvjpeg (GPU; device:=cuda)'),
    Arg('cuda_graphs', bool, 'replay the model as CUDA graphs (device:=cuda)'),
    Arg('fp16', bool, 'half precision (CUDA only)'),
    Arg('use_sim_time', bool, 'use /clock (bags played with --clock, CARLA)'),
    Arg('odom_topic', str, 'odometry input topic'),
    Arg('plan_topic', str, 'plan output topic'),
]


def _nodes(context):
    return [Node(package='vlmad_ros', executable='planner_node', name='planner_node',
                 namespace=LaunchConfiguration('namespace'), output='screen', emulate_tty=True,
                 parameters=node_parameters(context, 'planner_node', ARGS))]


def generate_launch_description():
    return LaunchDescription([*declare(ARGS), OpaqueFunction(function=_nodes)])
