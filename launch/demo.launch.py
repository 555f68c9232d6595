"""
The closed-loop demo under ros2 launch: sim_node + planner_node + path_follower.

    ros2 launch vlmad_ros demo.launch.py [checkpoint:=model.pt] [short:=true] [out:=demo_out]

The same processes and parameters as `vlmad demo` (vlmad_ros.demo.node_parameters); the
simulator prints the closed-loop table when its episodes are done and the launch shuts down.
`vlmad demo` additionally renders demo.gif and summary.png from the traces in `out`.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from vlmad_ros import demo


def _nodes(context):
    share = FindPackageShare('vlmad_ros').perform(context)
    checkpoint = LaunchConfiguration('checkpoint').perform(context)
    short = LaunchConfiguration('short').perform(context).lower() == 'true'
    random_weights = False
    if not checkpoint:
        from vlmad_ros.model.checkpoint import default_checkpoint
        packaged = default_checkpoint()
        random_weights = packaged is None
        checkpoint = '' if packaged is None else str(packaged)
    params = demo.node_parameters(
        LaunchConfiguration('out').perform(context), checkpoint, random_weights,
        demo.SHORT_EPISODES if short else demo.EPISODES,
        demo.SHORT_DURATION_S if short else demo.DURATION_S)
    files = {'planner_node': 'planner.yaml', 'path_follower': 'path_follower.yaml',
             'sim_node': 'sim.yaml'}
    nodes = {name: Node(package='vlmad_ros', executable=name, name=name, output='screen',
                        parameters=[f'{share}/config/{files[name]}', params[name]])
             for name in files}
    return list(nodes.values()) + [RegisterEventHandler(OnProcessExit(
        target_action=nodes['sim_node'], on_exit=[EmitEvent(event=Shutdown())]))]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('checkpoint', default_value='',
                              description='planner checkpoint (empty: the packaged default, '
                                          'else random weights)'),
        DeclareLaunchArgument('short', default_value='false',
                              description='one short episode instead of the demo set'),
        DeclareLaunchArgument('out', default_value='demo_out',
                              description='results.json and traces go here'),
        OpaqueFunction(function=_nodes),
    ])
