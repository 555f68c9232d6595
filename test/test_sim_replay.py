"""
docs/REPLAY.md end to end.

A recorded bag is replayed on its clock into planner_node (use_sim_time, as
launch/nuscenes_replay.launch.py sets it), the plans are recorded and `vlmad eval --plans`
scores them. `ros2 bag play/record` are replaced by helpers_replay (not installable here).
A converted nuScenes bag, replayed the same way, plans what `vlmad eval --checkpoint` plans
offline.
"""
import json
import subprocess
import sys

from helpers_replay import play
from helpers_sim import log_text, start, stop
import pytest

from vlmad_ros import topics

pytest.importorskip('rclpy')
pytestmark = pytest.mark.ros


@pytest.mark.slow
def test_replayed_bag_plans_score_with_vlmad_eval(ros_env, tmp_path):
    data = tmp_path / 'bags'
    subprocess.run([sys.executable, '-m', 'vlmad_ros.cli', 'synth', '--scenes', '1', '--seed',
                    '7', '--duration', '6', '--width', '192', '--height', '108', '--out',
                    str(data), '--quiet'], env=ros_env, check=True, timeout=300)
    bag = next(p for p in data.iterdir() if (p / 'metadata.yaml').is_file())
    # The replay launch's planner: planner.yaml + use_sim_time (+ random weights for the test).
    # Half speed, as REPLAY.md advises for a planner slower than the cameras.
    plans, sent, planner = _replay(bag, {'use_sim_time': True, 'allow_random_weights': True,
                                         'reliability': 'best_effort', 'num_threads': 1},
                                   ros_env, tmp_path, rate=0.5)
    assert sent > 300, sent
    assert len(plans) >= 20, log_text(planner)
    plans_bag = _record_plans(plans, tmp_path / 'plans')
    out = tmp_path / 'eval.json'
    proc = subprocess.run([sys.executable, '-m', 'vlmad_ros.cli', 'eval', '--data', str(bag),
                           '--plans', str(plans_bag), '--json', str(out)], env=ros_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result['samples'] > 0, result
    assert result['l2']['avg_over_horizon']['3s'] >= 0.0


def _record_plans(plans, path):
    """Write received Paths as `ros2 bag record /vlmad/plan` keeps them."""
    from rclpy.serialization import serialize_message
    from vlmad_ros.bagschema import BagWriter
    with BagWriter(path) as writer:
        writer.add_topic(topics.PLAN, 'nav_msgs/msg/Path')
        for msg in plans:
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            writer.write_raw(topics.PLAN, serialize_message(msg), stamp)
    return path


def _replay(bag, planner_params, ros_env, tmp_path, rate):
    """Play the bag's cameras, odometry and commands on its clock; return the Paths."""
    import rclpy
    from nav_msgs.msg import Path
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    planner = start('planner_node', ros_env, planner_params, tmp_path / 'planner.log')
    plans = []
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node('replay_player', context=context)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        node.create_subscription(Path, topics.PLAN, plans.append,
                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        wanted = list(topics.CAMERA_IMAGE_TOPICS) + [topics.ODOM, topics.COMMAND]
        sent = play(node, executor, bag, wanted, rate=rate)
        for _ in range(100):   # the last sets' plans
            executor.spin_once(timeout_sec=0.02)
    finally:
        rclpy.shutdown(context=context)
        stop(planner)
    return plans, sent, planner


@pytest.mark.slow
def test_replayed_nuscenes_bag_plans_as_vlmad_eval_does(ros_env, tmp_path):
    """
    A converted nuScenes bag, replayed into planner_node, plans what `vlmad eval` plans.

    Same checkpoint, same bag: the node (staggered cameras synchronised live, odometry,
    the converter's route commands, bag clock) and the offline reader must give the same
    metrics on the same keyframes.
    """
    import helpers_nuscenes
    import torch
    from helpers_vlmad import tiny_planner_config
    from vlmad_ros.data import nuscenes_converter
    from vlmad_ros.model import build_model, save_checkpoint
    helpers_nuscenes.make_dataset(tmp_path / 'data', scenes=(('scene-0001', 6.0),))
    (bag,) = nuscenes_converter.convert(tmp_path / 'data', helpers_nuscenes.VERSION,
                                        tmp_path / 'bags', verbose=False)
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / 'tiny.pt', build_model(tiny_planner_config()))
    plans, sent, planner = _replay(bag, {'use_sim_time': True, 'checkpoint': str(ckpt),
                                         'reliability': 'reliable', 'num_threads': 1},
                                   ros_env, tmp_path, rate=0.3)
    assert len(plans) >= 30, log_text(planner)
    results = {}
    for name, source in (('replay', ['--plans', str(_record_plans(plans, tmp_path / 'p'))]),
                         ('offline', ['--checkpoint', str(ckpt)])):
        out = tmp_path / f'{name}.json'
        proc = subprocess.run([sys.executable, '-m', 'vlmad_ros.cli', 'eval', '--data',
                               str(bag), *source, '--json', str(out)], env=ros_env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        results[name] = json.loads(out.read_text())
    replay, offline = results['replay'], results['offline']
    assert replay['samples'] == offline['samples'] == 6, (replay, offline)
    for horizon, value in offline['l2']['at_horizon'].items():
        assert replay['l2']['at_horizon'][horizon] == pytest.approx(value, abs=1e-3), horizon
