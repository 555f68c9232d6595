"""sim_node + planner_node + path_follower over DDS: lockstep, results, determinism."""
import json
import subprocess

from helpers_sim import log_text, start, stop
import pytest

pytest.importorskip('rclpy')
pytestmark = pytest.mark.ros

PLANNER = {'allow_random_weights': True, 'odom_topic': 'vlmad/sim/planner_odom',
           'reliability': 'reliable', 'use_sim_time': True, 'num_threads': 1}
FOLLOWER = {'stamped_cmd_vel': True, 'ack_plans': True, 'use_sim_time': True}


def run_sim(ros_env, tmp_path, name, **overrides):
    params = {'episodes': ['lead_brake:5'], 'duration': 3.0, 'startup_timeout': 60.0,
              'plan_ack_topic': 'vlmad/follower/plan_ack',
              'result_file': str(tmp_path / f'{name}.json'), **overrides}
    sim = start('sim_node', ros_env, params, tmp_path / f'{name}.log')
    try:
        rc = sim.wait(timeout=180)
    except subprocess.TimeoutExpired:
        stop(sim)
        raise AssertionError('sim_node did not finish:\n' + log_text(sim))
    stop(sim)
    assert rc == 0, log_text(sim)
    return json.loads((tmp_path / f'{name}.json').read_text()), log_text(sim)


@pytest.mark.slow
def test_lockstep_episode_is_complete_and_repeatable(ros_env, tmp_path):
    """Two runs of one scene give identical results; every camera set got its plan."""
    planner = start('planner_node', ros_env, PLANNER, tmp_path / 'planner.log')
    follower = start('path_follower', ros_env, FOLLOWER, tmp_path / 'follower.log')
    try:
        first, log = run_sim(ros_env, tmp_path, 'first')
        # The same planner and follower again: time jumps back, both must start over.
        second, _ = run_sim(ros_env, tmp_path, 'second')
    finally:
        stop(planner, follower)
    a, b = first['scenarios'][0], second['scenarios'][0]
    # 3 s with a camera set every 0.2 s: 15 sets, each answered by a Path.
    assert a['plans'] == 15 and a['plans_missed'] == 0, a
    assert a['duration'] == pytest.approx(3.0)
    assert a['route_length'] > 0 and 0 <= a['route_completion'] <= 100
    assert a['driving_score'] == pytest.approx(a['route_completion'] * a['infraction_penalty'])
    for key in ('route_progress', 'collisions_vehicle', 'collisions_pedestrian', 'red_lights',
                'off_road_events', 'driving_score'):
        assert a[key] == b[key], key
    assert first['summary']['scenarios'] == 1
    assert '| lead_brake | 5 |' in log     # the table the node prints


@pytest.mark.parametrize('param,value,name', [
    ('camera_period', 0.15, 'camera_period'), ('episodes', ['flying:1'], 'scenario'),
    ('physics_dt', -0.1, 'physics_dt'), ('rig', 'no_such_rig', 'rig')])
def test_bad_parameters_stop_start_up_naming_them(ros_env, tmp_path, param, value, name):
    sim = start('sim_node', ros_env, {param: value}, tmp_path / 'sim.log')
    rc = sim.wait(timeout=60)
    stop(sim)
    out = log_text(sim)
    assert rc == 2, out
    assert 'invalid parameter' in out and name in out, out


def test_gives_up_when_no_planner_appears(ros_env, tmp_path):
    sim = start('sim_node', ros_env, {'startup_timeout': 2.0, 'episodes': ['cruise:1']},
                tmp_path / 'sim.log')
    rc = sim.wait(timeout=60)
    stop(sim)
    assert rc == 3 and 'planner/follower not found' in log_text(sim)
