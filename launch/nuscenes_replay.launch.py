"""
The planner on replayed bags (converted nuScenes or synthetic), on the bag's clock.

    ros2 launch vlmad_ros nuscenes_replay.launch.py checkpoint:=/path/to/model.pt
    ros2 bag play --clock 100 BAG          # another terminal: publishes /clock from the bag
    ros2 bag record -o plans /vlmad/plan   # optional: keep the plans for `vlmad eval --plans`

The bags use the planner's default topics (six CompressedImage, odometry, route command), so no
remapping is needed. This launch sets use_sim_time (diagnostics and rates follow the bag's
clock) on top of the installed config/planner.yaml; params_file and the arguments below that
you set come after it (vlmad_ros.launch_args).
"""
from launch import LaunchDescription
from launch.actions import OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from vlmad_ros.launch_args import Arg, declare, node_parameters

ARGS = [
    Arg('checkpoint', str, 'planner checkpoint (.pt)'),
    Arg('rig', str, 'nuscenes | carla | path to a rig yaml'),
    Arg('device', str, 'cpu | cuda | auto'),
    Arg('reliability', str, 'best_effort matches any publisher; reliable waits for every '
                            'message (bag play is reliable)'),
]
SETTINGS = {'use_sim_time': True}


def _nodes(context):
    return [Node(package='vlmad_ros', executable='planner_node', name='planner_node',
                 namespace=LaunchConfiguration('namespace'), output='screen',
                 parameters=node_parameters(context, 'planner_node', ARGS, SETTINGS))]


def generate_launch_description():
    return LaunchDescription([*declare(ARGS), OpaqueFunction(function=_nodes)])
