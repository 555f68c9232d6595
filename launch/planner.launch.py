"""
The planner: six cameras + odometry -> /vlmad/plan (nav_msgs/Path).

    ros2 launch vlmad_ros planner.launch.py checkpoint:=/path/to/model.pt
    ros2 launch vlmad_ros planner.launch.py rig:=carla use_sim_time:=true namespace:=car1
    ros2 launch vlmad_ros planner.launch.py allow_random_weights:=true   # untrained: tests only

Every other parameter comes from params_file (default: the installed config/planner.yaml, whose
`/**/planner_node` key matches any namespace). Topic remappings: odom_topic, plan_topic.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = [
    ('params_file', PathJoinSubstitution([FindPackageShare('vlmad_ros'), 'config',
                                          'planner.yaml']), 'planner_node parameter file'),
    ('checkpoint', '', 'planner checkpoint (.pt); empty: the packaged default if installed'),
    ('allow_random_weights', 'false', 'run untrained weights when there is no checkpoint'),
    ('rig', 'nuscenes', 'nuscenes | carla | path to a rig yaml'),
    ('device', 'cpu', 'cpu | cuda | cuda:N | auto'),
    ('use_sim_time', 'false', 'use /clock (bags played with --clock, CARLA)'),
    ('namespace', '', 'namespace of the node (and of its relative topics)'),
    ('odom_topic', '/odom', 'remap the odometry input'),
    ('plan_topic', '/vlmad/plan', 'remap the plan output'),
]


def generate_launch_description():
    cfg = {name: LaunchConfiguration(name) for name, _, _ in ARGUMENTS}
    return LaunchDescription([
        *[DeclareLaunchArgument(name, default_value=default, description=text)
          for name, default, text in ARGUMENTS],
        Node(package='vlmad_ros', executable='planner_node', name='planner_node',
             namespace=cfg['namespace'], output='screen', emulate_tty=True,
             parameters=[cfg['params_file'], {
                 'checkpoint': cfg['checkpoint'],
                 'allow_random_weights': ParameterValue(cfg['allow_random_weights'],
                                                        value_type=bool),
                 'rig': cfg['rig'],
                 'device': cfg['device'],
                 'use_sim_time': ParameterValue(cfg['use_sim_time'], value_type=bool),
             }],
             remappings=[('/odom', cfg['odom_topic']), ('/vlmad/plan', cfg['plan_topic'])]),
    ])
