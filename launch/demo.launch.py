"""
The closed-loop demo under ros2 launch: sim_node + planner_node + path_follower.

    ros2 launch vlmad_ros demo.launch.py [checkpoint:=model.pt] [short:=true] [out:=demo_out]
    ros2 launch vlmad_ros demo.launch.py namespace:=car1 frame_prefix:=car1/ out:=car1_out

The same processes and parameters as `vlmad demo` (vlmad_ros.demo.node_parameters, on top of
the installed config/*.yaml); params_file and a checkpoint you set come after them
(vlmad_ros.launch_args). The simulator prints the closed-loop table when its episodes are done
and the launch shuts down. `vlmad demo` also renders demo.gif and summary.png from `out`.
"""
from launch import LaunchDescription
from launch.actions import EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from vlmad_ros import demo
from vlmad_ros.launch_args import Arg, declare, node_parameters

ARGS = [Arg('checkpoint', str, 'planner checkpoint (.pt); none set and none in the files: the '
                               'packaged default, else random weights', ('planner_node',))]
EXTRA = [
    ('short', 'false', 'one short episode instead of the demo set'),
    ('out', 'demo_out', 'results.json and traces go here'),
    ('frame_prefix', '', "prepended to the car's frames (car1/ -> car1/odom, car1/base_link): "
                         'several demos, each in its namespace, on one /tf'),
]


def _settings(context):
    """Return the demo's own parameters per node (vlmad_ros.demo), as `vlmad demo` sets them."""
    checkpoint = LaunchConfiguration('checkpoint').perform(context)
    short = LaunchConfiguration('short').perform(context).lower() == 'true'
    random_weights = False
    if not checkpoint:
        from vlmad_ros.model.checkpoint import default_checkpoint
        packaged = default_checkpoint()
        random_weights = packaged is None
        checkpoint = '' if packaged is None else str(packaged)
    return demo.node_parameters(
        LaunchConfiguration('out').perform(context), checkpoint, random_weights,
        demo.SHORT_EPISODES if short else demo.EPISODES,
        demo.SHORT_DURATION_S if short else demo.DURATION_S,
        frame_prefix=LaunchConfiguration('frame_prefix').perform(context))


def _nodes(context):
    settings = _settings(context)
    nodes = {name: Node(package='vlmad_ros', executable=name, name=name, output='screen',
                        namespace=LaunchConfiguration('namespace'),
                        parameters=node_parameters(context, name, ARGS, settings[name]))
             for name in ('planner_node', 'path_follower', 'sim_node')}
    return list(nodes.values()) + [RegisterEventHandler(OnProcessExit(
        target_action=nodes['sim_node'], on_exit=[EmitEvent(event=Shutdown())]))]


def generate_launch_description():
    return LaunchDescription([*declare(ARGS, EXTRA), OpaqueFunction(function=_nodes)])
