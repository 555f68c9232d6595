"""
docs/REPLAY.md end to end.

A recorded bag is replayed on its clock into planner_node (use_sim_time, as
launch/nuscenes_replay.launch.py sets it), the plans are recorded and `vlmad eval --plans`
scores them. `ros2 bag play/record` are replaced by helpers_replay (not installable here).
"""
import json
import subprocess
import sys

from helpers_replay import play
from helpers_sim import log_text, start, stop
import pytest

from vlmad_ros import topics
from vlmad_ros.rig import CAMERA_NAMES

pytest.importorskip('rclpy')
pytestmark = pytest.mark.ros


@pytest.mark.slow
def test_replayed_bag_plans_score_with_vlmad_eval(ros_env, tmp_path):
    import rclpy
    from nav_msgs.msg import Path
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import serialize_message
    from vlmad_ros.bagschema import BagWriter
    data = tmp_path / 'bags'
    subprocess.run([sys.executable, '-m', 'vlmad_ros.cli', 'synth', '--scenes', '1', '--seed',
                    '7', '--duration', '6', '--width', '192', '--height', '108', '--out',
                    str(data), '--quiet'], env=ros_env, check=True, timeout=300)
    bag = next(p for p in data.iterdir() if (p / 'metadata.yaml').is_file())
    # The replay launch's planner: planner.yaml + use_sim_time (+ random weights for the test).
    planner = start('planner_node', ros_env, {'use_sim_time': True, 'allow_random_weights': True,
                                              'reliability': 'best_effort', 'num_threads': 1},
                    tmp_path / 'planner.log')
    plans = []
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node('replay_player', context=context)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        node.create_subscription(Path, topics.PLAN, plans.append,
                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        wanted = [topics.camera_image_topic(c) for c in CAMERA_NAMES] + [
            topics.ODOM, topics.COMMAND]
        # Half speed, as REPLAY.md advises for a planner slower than the cameras.
        sent = play(node, executor, bag, wanted, rate=0.5)
        for _ in range(100):   # the last sets' plans
            executor.spin_once(timeout_sec=0.02)
    finally:
        rclpy.shutdown(context=context)
        stop(planner)
    assert sent > 300, sent
    assert len(plans) >= 20, log_text(planner)
    plans_bag = tmp_path / 'plans'
    with BagWriter(plans_bag) as writer:   # what `ros2 bag record /vlmad/plan` keeps
        writer.add_topic(topics.PLAN, 'nav_msgs/msg/Path')
        for msg in plans:
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            writer.write_raw(topics.PLAN, serialize_message(msg), stamp)
    out = tmp_path / 'eval.json'
    proc = subprocess.run([sys.executable, '-m', 'vlmad_ros.cli', 'eval', '--data', str(bag),
                           '--plans', str(plans_bag), '--json', str(out)], env=ros_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result['samples'] > 0, result
    assert result['l2']['avg_over_horizon']['3s'] >= 0.0
