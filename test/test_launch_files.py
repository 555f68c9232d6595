"""
Every launch file through the real launch service: params_file is honoured, a set argument wins.

Each test starts one installed launch file as `ros2 launch` would (helpers_launch.py: launch's
LaunchService), asks the started nodes for their parameters over DDS, then stops the launch
with SIGINT and expects a clean exit. Order of precedence checked (vlmad_ros.launch_args):
installed config < the launch file's own settings < params_file < arguments the user set.
"""
import pytest
import yaml

pytest.importorskip('launch_ros', reason='launch_ros is not on PyPI; make setup installs it from '
                                         '../shared/ros-wheels (see README.md)')
pytestmark = pytest.mark.ros

from helpers_launch import Launched  # noqa: E402, I100
from vlmad_ros.paths import share_dir  # noqa: E402


@pytest.fixture
def launch(ros_env, tmp_path):
    """start(launch file name, params_file sections or None, **arguments) -> Launched."""
    started = []

    def start(name, sections=None, **args):
        if sections is not None:
            params = tmp_path / f'my_{name}.yaml'
            params.write_text(yaml.safe_dump(
                {key: {'ros__parameters': values} for key, values in sections.items()}))
            args['params_file'] = str(params)
        env = dict(ros_env, ROS_LOG_DIR=str(tmp_path / 'ros_log'))
        started.append(Launched(share_dir() / 'launch' / name, args, env,
                                tmp_path / f'{name}.log'))
        return started[-1]

    yield start
    for launched in started:
        launched.close()


def stopped_cleanly(launched):
    code = launched.stop()
    return code == 0 or print(launched.log()[-3000:])


def test_planner_launch(launch):
    launched = launch('planner.launch.py',
                      {'/**/planner_node': {'rig': 'carla', 'device': 'auto', 'num_threads': 2}},
                      device='cpu', allow_random_weights='true', namespace='car1')
    got = launched.parameters('/car1/planner_node',
                              ['rig', 'device', 'allow_random_weights', 'num_threads', 'slop'])
    assert got == {'rig': 'carla',                  # params_file (the launch passes no rig)
                   'device': 'cpu',                 # set argument beats params_file
                   'allow_random_weights': True,    # typed: a bool, not the string 'true'
                   'num_threads': 2,                # params_file beats the installed config
                   'slop': 0.05}                    # installed config/planner.yaml
    assert stopped_cleanly(launched)


def test_annotator_launch_keeps_strings_strings(launch):
    launched = launch('annotator.launch.py',
                      {'/annotator_node': {'rig': 'carla', 'model': 'from-file'}}, model='1.5')
    got = launched.parameters('/annotator_node', ['rig', 'model', 'teacher'])
    assert got == {'rig': 'carla', 'model': '1.5', 'teacher': 'rule'}
    assert stopped_cleanly(launched)


def test_annotator_launch_lets_the_bag_close_before_sigterm():
    """ros2 launch's default escalation (SIGTERM 5 s after SIGINT) would cut shutdown_timeout."""
    import importlib.util
    from vlmad_ros.nodes.annotator_node import PARAMETERS
    spec = importlib.util.spec_from_file_location(
        'annotator_launch', share_dir() / 'launch' / 'annotator.launch.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    longest = next(p for p in PARAMETERS if p.name == 'shutdown_timeout').bounds[1]
    assert module.SIGTERM_TIMEOUT_S >= longest + 5.0   # the bag closes after the requests


def test_nuscenes_replay_launch(launch):
    launched = launch('nuscenes_replay.launch.py',
                      {'/**/planner_node': {'rig': 'carla', 'reliability': 'reliable'}},
                      reliability='best_effort')
    got = launched.parameters('/planner_node', ['rig', 'reliability', 'use_sim_time'])
    assert got == {'rig': 'carla', 'reliability': 'best_effort',
                   'use_sim_time': True}            # the replay's own setting: the bag's clock
    assert stopped_cleanly(launched)


def test_carla_launch(launch):
    launched = launch('carla.launch.py',
                      {'/**/planner_node': {'reliability': 'best_effort', 'device': 'auto'},
                       '/path_follower': {'max_speed': 9.0}},
                      device='cpu', twist_to_control='false')
    got = launched.parameters('/planner_node', ['rig', 'reliability', 'device', 'use_sim_time'])
    assert got == {'rig': 'carla', 'use_sim_time': True,   # the CARLA settings of the launch
                   'reliability': 'best_effort',           # params_file beats them
                   'device': 'cpu'}                        # a set argument beats params_file
    got = launched.parameters('/path_follower', ['output_mode', 'max_speed'])
    assert got == {'output_mode': 'carla', 'max_speed': 9.0}
    assert stopped_cleanly(launched)


def test_demo_launch(launch, tmp_path):
    from vlmad_ros.model.checkpoint import default_checkpoint
    packaged = default_checkpoint()
    if packaged is None:
        pytest.skip('no packaged checkpoint installed')
    launched = launch('demo.launch.py',
                      {'/sim_node': {'duration': 30.0},
                       '/**/planner_node': {'checkpoint': '/nonexistent/from_file.pt'}},
                      checkpoint=str(packaged), short='true', out=str(tmp_path / 'demo_out'),
                      frame_prefix='car7/')
    assert launched.parameters('/sim_node', ['duration', 'exit_when_done', 'frame_prefix']) == {
        'duration': 30.0,            # params_file beats the demo's short duration
        'exit_when_done': True,      # the demo's own setting
        'frame_prefix': 'car7/'}
    assert launched.parameters('/planner_node', ['checkpoint', 'use_sim_time', 'base_frame']) == {
        'checkpoint': str(packaged), 'use_sim_time': True, 'base_frame': 'car7/base_link'}
    assert launched.parameters('/path_follower', ['base_frame']) == {
        'base_frame': 'car7/base_link'}
    assert stopped_cleanly(launched)


def test_a_bad_argument_stops_the_launch_naming_it(launch):
    launched = launch('planner.launch.py', allow_random_weights='maybe')
    assert launched.proc.wait(60) != 0
    assert "allow_random_weights:='maybe' is not true or false" in launched.log()
