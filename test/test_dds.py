"""Two processes over real DDS with the colcon-built messages."""
import os
import subprocess
import sys
import time

from conftest import TEST_DIR
import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
pytestmark = pytest.mark.ros


def test_domain_is_private_to_this_run():
    """Every run (make test, colcon test) has its own domain and localhost-only discovery."""
    assert os.environ.get('ROS_DOMAIN_ID', '').isdigit(), 'run the suite via make test'
    assert os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE') == 'LOCALHOST'   # Jazzy and later
    assert os.environ.get('ROS_LOCALHOST_ONLY') == '1'                      # Humble


def test_reasoning_and_full_size_image_cross_processes(ros_env):
    from helpers_dds_publisher import LATCHED, picture, reasoning
    from sensor_msgs.msg import CompressedImage
    from vlmad_ros.images import compressed_to_rgb
    from vlmad_ros.msg import DrivingReasoning

    proc = subprocess.Popen([sys.executable, str(TEST_DIR / 'helpers_dds_publisher.py')],
                            env=ros_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    got = {}
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node('vlmad_test_subscriber', context=context)
        node.create_subscription(DrivingReasoning, '/vlmad/reasoning',
                                 lambda m: got.setdefault('reasoning', m), LATCHED)
        node.create_subscription(CompressedImage, '/CAM_FRONT/image_rect_compressed',
                                 lambda m: got.setdefault('image', m), LATCHED)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + 30
        while len(got) < 2 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
            assert proc.poll() is None, 'publisher process died'
    finally:
        rclpy.shutdown(context=context)
        proc.stdin.close()
        proc.wait(timeout=10)
    assert set(got) == {'reasoning', 'image'}, f'received only {sorted(got)}'
    sent = reasoning()
    r = got['reasoning']
    for field in ('current_action', 'future_action', 'reasoning', 'teacher', 'prompt_version'):
        assert getattr(r, field) == getattr(sent, field)
    assert (r.control_action, r.turn_action, r.lane_action) == (
        DrivingReasoning.CONTROL_STOP, DrivingReasoning.TURN_NONE, DrivingReasoning.LANE_NONE)
    assert (r.header.stamp.sec, r.header.stamp.nanosec) == (17, 500_000_000)
    rgb = compressed_to_rgb(got['image'])
    assert rgb.shape == (900, 1600, 3)
    assert np.abs(rgb.astype(int) - picture()).mean() < 3
