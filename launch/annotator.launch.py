"""
The live annotator next to a replayed bag: teacher records on the reasoning topic and in a bag.

    ros2 launch vlmad_ros annotator.launch.py output_bag:=reasoning_bag
    ros2 bag play BAG                      # another terminal

    # a VLM instead of the rule teacher (key in $OPENAI_API_KEY, never logged or recorded):
    ros2 launch vlmad_ros annotator.launch.py teacher:=openai model:=gpt-4o output_bag:=out

Keyframes wait until 3 s of odometry after them have arrived, so records appear 3 s (plus
the teacher's answer time) behind the bag. Offline, `vlmad annotate` does the same on bag files.
Parameters come from the installed config/annotator.yaml, then params_file, then the arguments
below that you set (vlmad_ros.launch_args); an argument you leave out passes nothing.

On Ctrl-C the node gets `shutdown_timeout` (10 s by default) for queued teacher requests and
then closes its bag; ros2 launch's own escalation (SIGTERM after 5 s, SIGKILL 5 s later) would
cut that short, so this launch waits SIGTERM_TIMEOUT_S before SIGTERM and SIGKILL_TIMEOUT_S more
before SIGKILL. Keep shutdown_timeout below SIGTERM_TIMEOUT_S.
"""
from launch import LaunchDescription
from launch.actions import OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from vlmad_ros.launch_args import Arg, declare, node_parameters

SIGTERM_TIMEOUT_S = 30.0   # > shutdown_timeout + closing the bag
SIGKILL_TIMEOUT_S = 10.0
ARGS = [
    Arg('teacher', str, 'rule | openai'),
    Arg('output_bag', str, 'new bag folder for the records'),
    Arg('base_url', str, 'openai teacher: API root'),
    Arg('model', str, 'openai teacher: model'),
    Arg('api_key_env', str, 'openai teacher: variable holding the key'),
    Arg('rig', str, 'nuscenes | carla | path to a rig yaml'),
    Arg('use_sim_time', bool, 'use /clock (ros2 bag play --clock)'),
]


def _nodes(context):
    return [Node(package='vlmad_ros', executable='annotator_node', name='annotator_node',
                 namespace=LaunchConfiguration('namespace'), output='screen',
                 parameters=node_parameters(context, 'annotator_node', ARGS),
                 sigterm_timeout=str(SIGTERM_TIMEOUT_S),
                 sigkill_timeout=str(SIGKILL_TIMEOUT_S))]


def generate_launch_description():
    return LaunchDescription([*declare(ARGS), OpaqueFunction(function=_nodes)])
