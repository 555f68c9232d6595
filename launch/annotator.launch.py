"""
The live annotator next to a replayed bag: teacher records on /vlmad/reasoning and in a bag.

    ros2 launch vlmad_ros annotator.launch.py output_bag:=reasoning_bag
    ros2 bag play BAG                      # another terminal

    # a VLM instead of the rule teacher (key in $OPENAI_API_KEY, never logged or recorded):
    ros2 launch vlmad_ros annotator.launch.py teacher:=openai model:=gpt-4o output_bag:=out

Keyframes wait until 3 s of odometry after them have arrived, so records appear 3 s (plus
the teacher's answer time) behind the bag. Offline, `vlmad annotate` does the same on bag files.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    params_file = PathJoinSubstitution([FindPackageShare('vlmad_ros'), 'config',
                                        'annotator.yaml'])
    args = [
        ('teacher', 'rule', 'rule | openai'),
        ('output_bag', '', 'new bag folder for the records (empty: publish only)'),
        ('base_url', 'https://api.openai.com/v1', 'openai teacher: API root'),
        ('model', 'gpt-4o', 'openai teacher: model'),
        ('api_key_env', 'OPENAI_API_KEY', 'openai teacher: variable holding the key'),
        ('rig', 'nuscenes', 'nuscenes | carla | path to a rig yaml'),
    ]
    return LaunchDescription([
        *[DeclareLaunchArgument(name, default_value=default, description=text)
          for name, default, text in args],
        Node(package='vlmad_ros', executable='annotator_node', name='annotator_node',
             output='screen',
             parameters=[params_file, {'use_sim_time': True},
                         {name: LaunchConfiguration(name) for name, _, _ in args}]),
    ])
