"""planner_node as a user runs it: installed executable, params file, JPEG streams over DDS."""
import math
import time

import helpers_planner as hp
import numpy as np
import pytest

from vlmad_ros.images import encode_jpeg

pytestmark = pytest.mark.ros
SEC = 1_000_000_000


def bad_count(h, key):
    """Count of one kind of skipped input in the node's latest diagnostics."""
    status = h.latest_status('bad inputs')
    return int(status[0].get(key, 0)) if status else 0


def sync_counts(h):
    """Counters of the node's latest 'sync' diagnostics status."""
    status = h.latest_status('sync')
    values = status[0] if status else {}
    return {k: int(values.get(k, 0)) for k in ('sets', 'plans_published', 'replaced_sets')}


def stamp_of(path):
    """Header stamp in nanoseconds."""
    return path.header.stamp.sec * SEC + path.header.stamp.nanosec


def check_path(path, stamps, frame='base_link'):
    """Check one Path against the published set stamps; returns its stamp."""
    stamp = stamp_of(path)
    assert stamp in stamps, 'Path stamp is not the stamp of a published set'
    assert path.header.frame_id == frame
    assert len(path.poses) == 6
    for k, pose in enumerate(path.poses):
        t = pose.header.stamp.sec * SEC + pose.header.stamp.nanosec
        assert t == stamp + (k + 1) * SEC // 2
        q = pose.pose.orientation
        assert math.isclose(q.x ** 2 + q.y ** 2 + q.z ** 2 + q.w ** 2, 1.0, rel_tol=1e-4)
    return stamp


def _startup_error(ros_env, *args) -> str:
    """Start the node with parameter overrides; it must exit non-zero: return its stderr."""
    proc = hp.start_node(ros_env, *args)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, err[-2000:]
    return err


@pytest.mark.slow
def test_paths_bad_inputs_and_silent_camera(ros_env):
    proc = hp.start_node(ros_env, 'allow_random_weights:=true', 'diagnostics_period:=0.3',
                         'stale_timeout:=0.4', 'reliability:=reliable', 'qos_depth:=20')
    h = hp.Harness()
    # Stamps advance 0.1 s per set throughout, like a camera clock (big gaps would make late
    # redeliveries look like time jumping back); only step 2 jumps back on purpose.
    clock = [1_000 * SEC]

    def tick():
        clock[0] += SEC // 10
        return clock[0]
    try:
        clock[0] += h.feed_until_path(proc, clock[0]) * SEC // 10
        h.take_paths()

        # 1. Regular sets: each one gives a Path with six poses and the set's stamp. One set at
        # a time, so this checks function, not speed (the benchmark measures speed on a loaded
        # machine; replacing sets under overload is counted there).
        before = sync_counts(h)
        for k in range(8):
            stamp = tick()
            h.publish_set(stamp)
            assert h.wait_for(lambda: stamp in {stamp_of(p) for p in h.paths}, 15.0), \
                (k, h.latest_status('sync'), h.latest_status('bad inputs'))
            for p in h.take_paths():
                check_path(p, h.published)
        assert h.wait_for(lambda: sync_counts(h)['sets'] - before['sets'] >= 8, 5.0)

        # 2. Bad inputs, each counted and skipped; the node keeps running. One at a time: a
        # set is decoded only when planned, and a newer set may replace a waiting one.
        small = encode_jpeg(np.zeros((480, 640, 3), np.uint8))
        cases = [
            ('CAM_FRONT corrupt_jpeg', {'replace': {'CAM_FRONT': b'\xff\xd8\xff\xe0 not a jpeg'}}),
            ('CAM_FRONT_LEFT wrong_image_size', {'replace': {'CAM_FRONT_LEFT': small}}),
            ('odometry not_finite', {'odom_values': {'twist.twist.linear.x': math.nan}}),
        ]
        for key, kwargs in cases:
            h.publish_set(tick(), **kwargs)
            assert h.wait_for(lambda: bad_count(h, key) >= 1, 15.0), \
                f'{key} not counted: {h.latest_status("bad inputs")}'
        clock[0] -= 100 * SEC                   # time jumps back (a bag loops)
        h.publish_set(tick())
        assert h.wait_for(lambda: bad_count(h, 'sync time_jump_back') >= 1, 15.0)
        assert proc.poll() is None
        time.sleep(0.5)

        # 3. One silent camera: no sets, and diagnostics name it (the others keep streaming).
        def named():
            status = h.latest_status('cameras')
            return status is not None and 'CAM_BACK' in status[1] and \
                status[0]['stale'] == 'CAM_BACK'
        deadline = time.monotonic() + 15.0
        while not named() and time.monotonic() < deadline:
            h.publish_set(tick(), skip=('CAM_BACK',))
            time.sleep(0.1)
        assert named(), f'silent camera not named: {h.latest_status("cameras")}'
        h.take_paths()

        # 4. Back to normal: plans again, same process.
        for k in range(5):
            h.publish_set(tick())
            time.sleep(0.2)
        assert h.wait_for(lambda: len(h.paths) >= 1, 15.0)
        for p in h.take_paths():
            check_path(p, h.published)
        values, _, _ = h.latest_status('inference')
        assert float(values['latency_ms_p50']) > 0
        assert {'decode_ms_p50', 'sync_ms_p50', 'model_ms_p50', 'publish_ms_p50'} <= set(values)
    finally:
        h.close()
        rc, err = hp.stop_node(proc)
    assert rc == 0, err[-2000:]


def test_checkpoint_odom_frame_markers_camera_info(ros_env, tmp_path):
    import torch
    from sensor_msgs.msg import CameraInfo
    from visualization_msgs.msg import MarkerArray
    from vlmad_ros.model import PlannerConfig, PlannerModel, save_checkpoint
    torch.manual_seed(0)
    cfg = PlannerConfig(image_width=96, image_height=56, backbone_channels=(8, 16, 32),
                        backbone_blocks=(0, 0, 1), d_model=32, ffn_dim=64, decoder_layers=1)
    ckpt = save_checkpoint(tmp_path / 'small.pt', PlannerModel(cfg))
    proc = hp.start_node(ros_env, f'checkpoint:={ckpt}', 'plan_frame:=odom',
                         'reliability:=reliable', 'publish_markers:=true',
                         'use_camera_info:=true', 'diagnostics_period:=0.3')
    h = hp.Harness(width=800, height=450)
    markers = h.collect(MarkerArray, '/vlmad/plan_markers')
    info_pub = h.publisher(CameraInfo, '/CAM_FRONT/camera_info')
    try:
        k = h.feed_until_path(proc, 50 * SEC)
        info = CameraInfo(width=800, height=450)
        info.k = [-1.0, 0.0, 400.0, 0.0, 600.0, 225.0, 0.0, 0.0, 1.0]      # fx < 0: rejected
        deadline = time.monotonic() + 20.0
        while not bad_count(h, 'CAM_FRONT bad_camera_info') and time.monotonic() < deadline:
            info_pub.publish(info)
            time.sleep(0.3)
        info.k[0] = 600.0                                                  # now valid
        info_pub.publish(info)
        h.take_paths()
        for j in range(3):
            h.publish_set(50 * SEC + (k + j) * SEC // 10)
            time.sleep(0.2)
        assert h.wait_for(lambda: len(h.paths) > 0, 15.0)
        paths = h.take_paths()
        stamp = paths[-1].header.stamp.sec * SEC + paths[-1].header.stamp.nanosec
        assert paths[-1].header.frame_id == 'odom'
        # The feeder's odometry puts the car at x = 5 m/s * t: the plan starts from there.
        first = paths[-1].poses[0].pose.position
        assert abs(first.x - 5.0 * stamp / SEC) < 40.0
        assert abs(first.x) > 100.0
        assert h.wait_for(lambda: len(markers) > 0, 5.0)
        assert markers[-1].markers[0].header.frame_id == 'odom'
        assert len(markers[-1].markers[0].points) == 6
        assert bad_count(h, 'CAM_FRONT bad_camera_info') >= 1
    finally:
        h.close()
        rc, err = hp.stop_node(proc)
    assert rc == 0, err[-2000:]


@pytest.mark.parametrize('override, name', [
    ('allow_random_weights:=false', 'checkpoint'),
    ('checkpoint:=/nonexistent/planner.pt', 'checkpoint'),
    ('slop:=-1.0', 'slop'),
    ('camera_transports:=[mjpeg]', 'camera_transports'),
    ('rig:=/nonexistent/rig.yaml', 'rig'),
    ('device:=tpu', 'device'),
    ('decoder:=nvjpeg', 'decoder'),    # the GPU decoder on a CPU planner
    ('decoder:=gpu', 'decoder'),       # not a choice: refused while declaring
    ('cuda_graphs:=true', 'cuda_graphs'),
])
def test_bad_parameter_stops_startup_naming_it(ros_env, override, name):
    args = [override] if override.startswith(('allow', 'checkpoint')) else \
        ['allow_random_weights:=true', override]
    if override.startswith('allow'):   # an install without the packaged default checkpoint
        ros_env = dict(ros_env, VLMAD_DEFAULT_CHECKPOINT='/nonexistent/default.pt')
    err = _startup_error(ros_env, *args)
    assert 'invalid parameter' in err and name in err, err[-2000:]
    assert 'Traceback' not in err, err[-2000:]          # the one line, nothing after it
    if override.startswith('allow'):
        assert 'allow_random_weights' in err and 'vlmad train' in err   # says how to get one


EXPLAINED = (1, 0, 4)   # move slowly, turn left, lane none


def small_checkpoint(path, with_head):
    """Write a tiny planner checkpoint whose head (if any) always says 'move slowly, turn left'."""
    import torch
    from vlmad_ros.model import PlannerConfig, PlannerModel, save_checkpoint
    from vlmad_ros.model.heads import ActionHead, VLMADConfig
    torch.manual_seed(0)
    cfg = PlannerConfig(image_width=96, image_height=56, backbone_channels=(8, 16, 32),
                        backbone_blocks=(0, 0, 1), d_model=32, ffn_dim=64, decoder_layers=1)
    head = None
    if with_head:
        head = ActionHead(VLMADConfig(ego_dim=32, d_model=32, ffn_dim=64, num_layers=1))
        with torch.no_grad():   # constant logits: the labels do not depend on the images
            for clf, label in zip(head.classifiers, EXPLAINED):
                clf.weight.zero_()
                clf.bias.copy_(torch.nn.functional.one_hot(torch.tensor(label),
                                                           clf.out_features) * 5.0)
    return save_checkpoint(path, PlannerModel(cfg), action_head=head)


def test_explain_publishes_driving_reasoning_with_each_plan(ros_env, tmp_path):
    from vlmad_ros.msg import DrivingReasoning
    ckpt = small_checkpoint(tmp_path / 'explain.pt', with_head=True)
    proc = hp.start_node(ros_env, f'checkpoint:={ckpt}', 'explain:=true',
                         'reliability:=reliable', 'diagnostics_period:=0.3')
    h = hp.Harness(width=800, height=450)
    reasons = h.collect(DrivingReasoning, '/vlmad/explanation')
    try:
        k = h.feed_until_path(proc, 70 * SEC)
        paths = h.take_paths()                                 # the warm-up's plans count too
        stamps = []
        for j in range(4):
            stamp = 70 * SEC + (k + j) * SEC // 10
            stamps.append(stamp)
            h.publish_set(stamp)
            assert h.wait_for(lambda: stamp in {stamp_of(r) for r in reasons}
                              and stamp in {stamp_of(p) for p in h.paths}, 15.0), j
        paths += h.take_paths()
        # One explanation per plan, with the plan's stamp: the same set of stamps.
        assert h.wait_for(lambda: {stamp_of(r) for r in reasons} == {
            stamp_of(p) for p in paths}, 5.0), (sorted(map(stamp_of, reasons)),
                                                sorted(map(stamp_of, paths)))
        assert len(reasons) == len(paths) and set(stamps) <= {stamp_of(p) for p in paths}
        paths = {stamp_of(p): p for p in paths}
        explained = {stamp_of(r): r for r in reasons}
        for stamp in stamps:
            r, p = explained[stamp], paths[stamp]
            assert r.header.frame_id == p.header.frame_id == 'base_link'
            assert (r.control_action, r.turn_action, r.lane_action) == EXPLAINED
            assert r.control_action == DrivingReasoning.CONTROL_MOVE_SLOWLY
            assert r.current_action.startswith('move slowly (') and 'turn left' in \
                r.current_action and 'no lane change' in r.current_action
            assert r.status == DrivingReasoning.STATUS_OK and r.teacher and not r.reasoning
        assert h.wait_for(lambda: int((h.latest_status('sync') or [{}])[0].get(
            'explanations_published', 0)) >= len(stamps), 5.0)
    finally:
        h.close()
        rc, err = hp.stop_node(proc)
    assert rc == 0, err[-2000:]


def test_explain_without_an_action_head_stops_startup_naming_it(ros_env, tmp_path):
    ckpt = small_checkpoint(tmp_path / 'planner_only.pt', with_head=False)
    err = _startup_error(ros_env, f'checkpoint:={ckpt}', 'explain:=true')
    assert 'invalid parameter' in err and 'explain' in err, err[-2000:]
    assert '--keep-action-head' in err      # says how to get a checkpoint with the head
