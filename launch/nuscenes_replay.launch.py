"""
The planner on replayed bags (converted nuScenes or synthetic), on the bag's clock.

    ros2 launch vlmad_ros nuscenes_replay.launch.py checkpoint:=/path/to/model.pt
    ros2 bag play --clock 100 BAG          # another terminal: publishes /clock from the bag
    ros2 bag record -o plans /vlmad/plan   # optional: keep the plans for `vlmad eval --plans`

The bags use the planner's default topics (six CompressedImage, /odom, /vlmad/command), so no
remapping is needed; use_sim_time makes diagnostics and rates follow the bag's clock.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    params_file = PathJoinSubstitution([FindPackageShare('vlmad_ros'), 'config', 'planner.yaml'])
    return LaunchDescription([
        DeclareLaunchArgument('checkpoint', default_value='',
                              description='planner checkpoint (empty: the packaged default)'),
        DeclareLaunchArgument('rig', default_value='nuscenes',
                              description='nuscenes | carla | path to a rig yaml'),
        DeclareLaunchArgument('device', default_value='cpu', description='cpu | cuda | auto'),
        DeclareLaunchArgument('reliability', default_value='best_effort',
                              description='best_effort matches any publisher; reliable '
                                          'waits for every message (bag play is reliable)'),
        Node(package='vlmad_ros', executable='planner_node', name='planner_node',
             output='screen',
             parameters=[params_file, {
                 'use_sim_time': True,
                 'checkpoint': LaunchConfiguration('checkpoint'),
                 'rig': LaunchConfiguration('rig'),
                 'device': LaunchConfiguration('device'),
                 'reliability': LaunchConfiguration('reliability'),
             }]),
    ])
