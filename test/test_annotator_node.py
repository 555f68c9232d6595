"""annotator_node over DDS: the installed executable, fed a drive, answering and recording."""
import math
import os
import re
import shutil
import signal
import subprocess
import time
import warnings

import helpers_annotate as h
import pytest
from vlmad_ros import labels
from vlmad_ros.bagschema import read_messages
from vlmad_ros.teacher.rule import RULE_VERSION

rclpy = pytest.importorskip('rclpy')
pytestmark = pytest.mark.ros

NS = 1_000_000_000
KEY = 'sk-node-secret-5566'


def start_node(env, *params):
    exe = shutil.which('annotator_node', path=env.get('PATH'))
    assert exe, 'annotator_node is not installed (make setup)'
    args = [exe, '--ros-args']
    for p in params:
        args += ['-p', p]
    # faulthandler: a node that hangs on shutdown dumps every thread's stack (see stop()).
    return subprocess.Popen(args, env=dict(env, PYTHONFAULTHANDLER='1'), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


class Drive:
    """A test node publishing a drive (front camera 4 Hz, CameraInfo, odometry 20 Hz)."""

    def __init__(self, context):
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import CameraInfo, CompressedImage
        from vlmad_ros.msg import DrivingReasoning
        self.node = rclpy.create_node('annotator_test_driver', context=context)
        self.image = self.node.create_publisher(CompressedImage,
                                                '/CAM_FRONT/image_rect_compressed', 50)
        self.info = self.node.create_publisher(CameraInfo, '/CAM_FRONT/camera_info', 50)
        self.odom = self.node.create_publisher(Odometry, '/odom', 200)
        self.received = []
        self.node.create_subscription(DrivingReasoning, '/vlmad/reasoning',
                                      self.received.append, 50)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def spin(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.01)

    def wait_connected(self, proc, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert proc.poll() is None, proc.stdout.read()
            if min(p.get_subscription_count() for p in (self.image, self.info, self.odom)) \
                    and self.node.count_publishers('/vlmad/reasoning'):
                return
            self.spin(0.1)
        raise AssertionError('annotator_node did not connect')

    def play(self, pose, seconds=6.0, speed=2.0):
        """Publish `seconds` of drive at `speed` x real time (stamps from the drive)."""
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import CameraInfo, CompressedImage
        from vlmad_ros.images import encode_jpeg
        from vlmad_ros.rig import load_rig
        cam = load_rig('nuscenes')['CAM_FRONT'].scaled(320, 180)
        jpeg = encode_jpeg(h.road_image(320, 180), quality=80)
        events = [(int(i * NS / 20), 'odom') for i in range(int(seconds * 20) + 1)]
        events += [(int(i * NS / 4), 'cam') for i in range(int(seconds * 4) + 1)]
        start = time.monotonic()
        for t, kind in sorted(events):
            while time.monotonic() - start < t / NS / speed:
                self.executor.spin_once(timeout_sec=0.002)
            stamp_ns = h.START_NS + t
            sec, nsec = divmod(stamp_ns, NS)
            if kind == 'odom':
                x, y, yaw, v = pose(t / NS)
                m = Odometry()
                m.header.stamp.sec, m.header.stamp.nanosec = sec, nsec
                m.header.frame_id, m.child_frame_id = 'map', 'base_link'
                m.pose.pose.position.x, m.pose.pose.position.y = float(x), float(y)
                q = m.pose.pose.orientation
                q.z, q.w = float(math.sin(yaw / 2)), float(math.cos(yaw / 2))
                m.twist.twist.linear.x = float(v)
                self.odom.publish(m)
                continue
            img = CompressedImage()
            img.header.stamp.sec, img.header.stamp.nanosec = sec, nsec
            img.header.frame_id, img.format, img.data = 'cam_front_optical_frame', 'jpeg', jpeg
            info = CameraInfo()
            info.header = img.header
            info.width, info.height = cam.width, cam.height
            info.k = [float(v) for v in cam.K.reshape(-1)]
            self.info.publish(info)
            self.image.publish(img)


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


def stop(proc, timeout=10):
    """
    SIGINT, and again, then SIGTERM, as ros2 launch escalates; the node must close its bag.

    In 2 of 7 full-suite runs (never alone) the first SIGINT did not wake rclpy.spin (a dump
    showed the main thread still in wait_for_ready_callbacks): the repeat is a user's second
    Ctrl-C. A node that outlives all three dumps its threads into the failure.
    """
    for sig in (signal.SIGINT, signal.SIGINT, signal.SIGTERM):
        proc.send_signal(sig)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            warnings.warn(f'annotator_node still running {timeout} s after {sig.name}')
            continue
        return proc.returncode, out
    proc.send_signal(signal.SIGABRT)
    out, _ = proc.communicate(timeout=10)
    pytest.fail(f'annotator_node did not exit after SIGINT, SIGINT, SIGTERM; its threads:\n'
                f'{out[-6000:]}')


def test_rule_teacher_publishes_and_records_one_record_per_keyframe(ros_env, context, tmp_path):
    bag = tmp_path / 'reasoning_bag'
    proc = start_node(ros_env, f'output_bag:={bag}', 'image_width:=320')
    try:
        drive = Drive(context)
        drive.wait_connected(proc)
        drive.play(h.brake_to_stop())
        end = time.monotonic() + 20
        while len(drive.received) < 7 and time.monotonic() < end:
            drive.spin(0.1)
    finally:
        code, out = stop(proc)
    assert code == 0, out
    want = [h.START_NS + k * NS // 2 for k in range(7)]   # keyframes with 3 s of future
    got = [m.header.stamp.sec * NS + m.header.stamp.nanosec for m in drive.received]
    assert got == want, out
    assert all(m.status == 0 and m.teacher == RULE_VERSION for m in drive.received)
    assert labels.CONTROL_LABELS[drive.received[-1].control_action] == 'stop'
    recorded = [(s, m) for _, s, m in read_messages(bag, topics=['/vlmad/reasoning'])]
    assert [s for s, _ in recorded] == want
    assert [m.current_action for _, m in recorded] == [m.current_action for m in drive.received]
    assert re.search(r'summary: 13 keyframes from 25 frames: 7 annotated', out), out


def test_busy_teacher_overflow_counted_and_pending_recorded_failed(ros_env, context,
                                                                   tmp_path):
    bag = tmp_path / 'reasoning_bag'
    env = dict(ros_env, NODE_TEST_KEY=KEY)
    with h.ChatServer(lambda r: ('sleep', 6.0, h.good())) as srv:
        proc = start_node(env, f'output_bag:={bag}', 'teacher:=openai',
                          f'base_url:={srv.base_url}', 'api_key_env:=NODE_TEST_KEY',
                          'queue_size:=1', 'concurrency:=1', 'shutdown_timeout:=0.5',
                          'timeout:=10.0', 'use_cache:=false', 'image_width:=320')
        try:
            drive = Drive(context)
            drive.wait_connected(proc)
            drive.play(h.cruise(), speed=3.0)
            drive.spin(0.5)
        finally:
            code, out = stop(proc)
    assert code == 0, out
    assert KEY not in out
    m = re.search(r'summary: 13 keyframes from 25 frames: 0 annotated, (\d) failed '
                  r"\{'shutdown': \d\}, (\d+) dropped \(queue full\)", out)
    assert m, out
    failed, dropped = int(m.group(1)), int(m.group(2))
    assert failed in (1, 2) and failed + dropped == 7, out   # 7 keyframes had 3 s of future
    recorded = [msg for _, _, msg in read_messages(bag, topics=['/vlmad/reasoning'])]
    assert [(r.status, r.failure_reason) for r in recorded] == [(1, 'shutdown')] * failed
    assert all((r.control_action, r.turn_action, r.lane_action) == (255,) * 3 for r in recorded)
    assert srv.requests and srv.requests[0]['headers']['Authorization'] == f'Bearer {KEY}'
    assert os.path.isdir(bag)


def test_bad_parameter_names_itself(ros_env, tmp_path):
    proc = start_node(ros_env, 'teacher:=gpt5')
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "teacher: must be one of ['rule', 'openai']" in out, out
