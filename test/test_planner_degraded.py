"""
planner_node with degraded sensors, over DDS between real processes.

The missing_camera policy (fill / stop) for corrupt, wrongly sized and silent cameras,
odometry outages and jumps, and the real path_follower stopping the car when plans stop.
"""
import os
import subprocess
import threading
import time

import helpers_planner as hp
import numpy as np
import pytest

from vlmad_ros.images import encode_jpeg

pytestmark = pytest.mark.ros
SEC = 1_000_000_000
CORRUPT = b'\xff\xd8\xff\xe0 not a jpeg'
W, H = 320, 180          # the nuScenes rig's 16:9 at a fifth: fast to encode and decode
FOUR_THREE = encode_jpeg(np.zeros((480, 640, 3), np.uint8))     # 640x480 among 16:9 cameras


def small_checkpoint(tmp_path):
    """Save a tiny camera planner (96x56 input): the node plans in milliseconds on a CPU."""
    import torch
    from vlmad_ros.model import PlannerConfig, PlannerModel, save_checkpoint
    torch.manual_seed(0)
    cfg = PlannerConfig(image_width=96, image_height=56, backbone_channels=(8, 16, 32),
                        backbone_blocks=(0, 0, 1), d_model=32, ffn_dim=64, decoder_layers=1)
    return save_checkpoint(tmp_path / 'small.pt', PlannerModel(cfg))


class Clock:
    """Stamps that advance with the wall clock, as a camera driver's do."""

    def __init__(self, start_ns):
        self.start_ns, self.t0 = start_ns, time.monotonic()

    def now(self):
        return self.start_ns + int((time.monotonic() - self.t0) * SEC)


def stream(h, clock, seconds, period=0.1, cameras_only=False, **kwargs):
    """Publish sets for `seconds`; returns (Paths received, diagnostics seen) meanwhile."""
    h.take_paths()
    first = len(h.diagnostics)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cameras_only:
            publish_cameras(h, clock.now())
        else:
            h.publish_set(clock.now(), **kwargs)
        time.sleep(period)
    return h.take_paths(), h.diagnostics[first:]


def publish_cameras(h, stamp_ns):
    """Publish the six cameras of a set without its odometry (an odometry outage)."""
    from sensor_msgs.msg import CompressedImage
    f = h.feeder
    for pub, frames in zip(f.pubs, f.jpegs):
        msg = CompressedImage(format='jpeg', data=frames[0])
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, SEC)
        pub.publish(msg)


def statuses(diagnostics, suffix):
    """(values, message, level) of every status named ...suffix in these arrays."""
    return [({kv.key: kv.value for kv in st.values}, st.message, st.level)
            for arr in diagnostics for st in arr.status if st.name.endswith(suffix)]


def counter(h, status, key):
    found = h.latest_status(status)
    return int(found[0].get(key, 0)) if found else 0


def test_fill_plans_on_with_corrupt_wrong_size_and_silent_cameras(ros_env, tmp_path):
    from diagnostic_msgs.msg import DiagnosticStatus as DS
    proc = hp.start_node(ros_env, f'checkpoint:={small_checkpoint(tmp_path)}',
                         'missing_camera:=fill', 'max_missing_cameras:=2',
                         'reliability:=reliable', 'qos_depth:=20',
                         'diagnostics_period:=0.2', 'stale_timeout:=0.4')
    h = hp.Harness(width=W, height=H)
    try:
        k = h.feed_until_path(proc, 1_000 * SEC)
        clock = Clock(1_000 * SEC + (k + 1) * SEC // 10)
        stream(h, clock, 1.0)

        # Two corrupt cameras: plans keep coming, WARN names both and why.
        paths, diags = stream(h, clock, 2.0, replace={'CAM_BACK': CORRUPT,
                                                      'CAM_FRONT_LEFT': CORRUPT})
        assert len(paths) >= 5, h.latest_status('cameras')
        warned = [m for v, m, lvl in statuses(diags, 'cameras') if lvl == DS.WARN]
        assert any('CAM_BACK corrupt_jpeg' in m and 'CAM_FRONT_LEFT corrupt_jpeg' in m
                   for m in warned), statuses(diags, 'cameras')[-3:]
        assert counter(h, 'sync', 'sets_filled') >= 5

        # 640x480 among 16:9 cameras: not the rig's calibration, filled black with a WARN;
        # the same aspect at another size is resized with scaled intrinsics (no fill).
        paths, diags = stream(h, clock, 1.5, replace={'CAM_FRONT': FOUR_THREE})
        assert len(paths) >= 5
        assert any('CAM_FRONT wrong_image_size' in m for _, m, lvl in statuses(diags, 'cameras')
                   if lvl == DS.WARN), statuses(diags, 'cameras')[-3:]
        wide = encode_jpeg(np.full((360, 640, 3), 80, np.uint8))
        stream(h, clock, 0.5, replace={'CAM_FRONT': wide})      # sets in flight drain
        filled = counter(h, 'sync', 'sets_filled')
        paths, diags = stream(h, clock, 1.5, replace={'CAM_FRONT': wide})
        assert len(paths) >= 5 and statuses(diags, 'cameras')[-1][2] == DS.OK
        assert counter(h, 'sync', 'sets_filled') == filled

        # A silent camera: after stale_timeout the sets go on without it.
        paths, diags = stream(h, clock, 2.5, skip=('CAM_BACK',))
        assert len(paths) >= 5
        stale = [v for v, m, lvl in statuses(diags, 'cameras')
                 if lvl == DS.WARN and 'CAM_BACK stale' in m]
        assert stale and stale[-1]['CAM_BACK state'] == 'stale'
        assert stale[-1]['stale'] == 'CAM_BACK'

        # Three cameras bad, beyond max_missing_cameras: no plans, ERROR names them.
        stream(h, clock, 0.5, replace=dict.fromkeys(('CAM_BACK', 'CAM_FRONT', 'CAM_BACK_LEFT'),
                                                    CORRUPT))
        stopped = counter(h, 'sync', 'sets_stopped')
        paths, diags = stream(h, clock, 1.5, replace=dict.fromkeys(
            ('CAM_BACK', 'CAM_FRONT', 'CAM_BACK_LEFT'), CORRUPT))
        assert paths == []
        assert counter(h, 'sync', 'sets_stopped') > stopped
        errors = [m for _, m, lvl in statuses(diags, 'cameras') if lvl == DS.ERROR]
        assert errors and all(f'{c} corrupt_jpeg' in errors[-1]
                              for c in ('CAM_BACK', 'CAM_FRONT', 'CAM_BACK_LEFT')), errors[-1:]
        odometry_checks(h, clock)
    finally:
        h.close()
        rc, err = hp.stop_node(proc)
    assert rc == 0, err[-2000:]


def odometry_checks(h, clock):
    """No odometry: no plans and ERROR; back: plans, estimator reset; a pose jump resets it."""
    from diagnostic_msgs.msg import DiagnosticStatus as DS
    stream(h, clock, 1.0)
    resets = counter(h, 'bad inputs', 'odometry outage_reset')
    stream(h, clock, 0.3, cameras_only=True)
    paths, diags = stream(h, clock, 1.2, cameras_only=True)
    assert paths == []
    assert any(lvl == DS.ERROR and 'odometry stale' in m
               for _, m, lvl in statuses(diags, 'cameras')), statuses(diags, 'cameras')[-2:]
    paths, _ = stream(h, clock, 1.5)
    assert len(paths) >= 5
    assert counter(h, 'bad inputs', 'odometry outage_reset') == resets + 1
    jumps = counter(h, 'bad inputs', 'odometry pose_jump_reset')
    h.publish_set(clock.now(), odom_values={'pose.pose.position.x': 1e6})
    paths, _ = stream(h, clock, 1.5)
    assert len(paths) >= 5
    assert counter(h, 'bad inputs', 'odometry pose_jump_reset') >= jumps + 1


class Timed:
    """Arrival times (monotonic) of Paths and of the follower's diagnostics."""

    def __init__(self, h):
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Path
        self.paths, self.follower = [], []
        self._lock = threading.Lock()
        h.node.create_subscription(Path, '/vlmad/plan', self._on_path, 50)
        h.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 200)

    def _on_path(self, msg):
        with self._lock:
            self.paths.append(time.monotonic())

    def _on_diag(self, msg):
        for st in msg.status:
            if st.name.endswith('path follower'):
                with self._lock:
                    self.follower.append((time.monotonic(), st.message))


def follower_odometry(h, clock, stop):
    """Publish the follower's odometry at 50 Hz, on the feeder's clock and track."""
    from nav_msgs.msg import Odometry
    pub = h.publisher(Odometry, '/follower/odom')
    while not stop.is_set():
        stamp = clock.now()
        msg = Odometry()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, SEC)
        msg.header.frame_id, msg.child_frame_id = 'odom', 'base_link'
        msg.pose.pose.position.x = 5.0 * stamp / SEC
        msg.pose.pose.orientation.w = 1.0
        msg.twist.twist.linear.x = 5.0
        pub.publish(msg)
        time.sleep(0.02)


def test_stop_policy_and_the_follower_stops_within_half_a_second(ros_env, tmp_path):
    from diagnostic_msgs.msg import DiagnosticStatus as DS
    from vlmad_ros.paths import config_dir
    planner = hp.start_node(ros_env, f'checkpoint:={small_checkpoint(tmp_path)}',
                            'missing_camera:=stop', 'reliability:=reliable', 'qos_depth:=20',
                            'diagnostics_period:=0.2', 'stale_timeout:=0.4')
    follower = subprocess.Popen(
        ['path_follower', '--ros-args', '--params-file',
         os.path.join(config_dir(), 'path_follower.yaml'),
         '-p', 'odom_topic:=/follower/odom', '-p', 'diagnostics_period:=0.02'],
        env=ros_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    h = hp.Harness(width=W, height=H)
    timed = Timed(h)
    stop = threading.Event()
    try:
        k = h.feed_until_path(planner, 2_000 * SEC)
        clock = Clock(2_000 * SEC + (k + 1) * SEC // 10)
        odom = threading.Thread(target=follower_odometry, args=(h, clock, stop), daemon=True)
        odom.start()
        paths, _ = stream(h, clock, 2.0)
        assert len(paths) >= 10
        assert timed.follower and 'timed out' not in timed.follower[-1][1]

        # One corrupt camera under stop: no plan from the first bad set on.
        t_bad = time.monotonic()
        paths, diags = stream(h, clock, 1.5, replace={'CAM_BACK_RIGHT': CORRUPT})
        last_plan = max(timed.paths)
        assert last_plan < t_bad + 0.3, 'plans went on with a corrupt camera under stop'
        stops = [t for t, m in timed.follower if t > last_plan and 'plans timed out' in m]
        assert stops, timed.follower[-3:]
        delay = stops[0] - last_plan
        print(f'follower stop {1e3 * delay:.0f} ms after the last plan arrived')
        assert delay <= 0.5, f'the follower began stopping {delay:.3f} s after the last plan'
        errors = [m for _, m, lvl in statuses(diags, 'cameras') if lvl == DS.ERROR]
        assert errors and 'CAM_BACK_RIGHT corrupt_jpeg' in errors[-1] and \
            'missing_camera=stop' in errors[-1]

        # The camera heals: plans again, the follower follows again.
        paths, _ = stream(h, clock, 1.5)
        assert len(paths) >= 5
        assert 'timed out' not in timed.follower[-1][1]
    finally:
        stop.set()
        h.close()
        rc, err = hp.stop_node(planner)
        rc_f, err_f = hp.stop_node(follower)
    assert rc == 0, err[-2000:]
    assert rc_f == 0, err_f[-2000:]
