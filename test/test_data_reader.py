"""
Bags -> keyframe samples.

Targets from a known motion, calibration, commands, teacher records, dropped frames and
crashed recordings.
"""
import helpers_data
import numpy as np
import pytest
from vlmad_ros import stamps
from vlmad_ros.bagschema import read_messages
from vlmad_ros.data.reader import read_samples, ReaderConfig, ReadStats
from vlmad_ros.rig import CAMERA_NAMES, load_rig
from vlmad_ros.types import Command

NS = helpers_data.NS


def _t(stamp_ns):
    return (stamp_ns - helpers_data.T0_NS) / NS


@pytest.fixture(scope='module')
def plain_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp('reader') / 'bag'
    info = helpers_data.write_bag(path, duration=5.0, reasoning={0.0: (1, 3, 4), 0.5: None,
                                                                 1.0: 'unset'})
    return path, info


def _surviving(path):
    """Return the last odometry stamp and the image stamps a (cut) bag still holds."""
    odom_end, images = 0, set()
    for topic, stamp, _ in read_messages(path, raw=True):
        if topic == '/odom':
            odom_end = max(odom_end, stamp)
        elif topic.endswith('image_rect_compressed'):
            images.add(stamp)
    return odom_end, images


def test_future_waypoints_equal_the_known_trajectory(plain_bag):
    path, _ = plain_bag
    stats = ReadStats()
    samples = list(read_samples(path, stats=stats))
    # Keyframes at 0..4.5 s, odometry until 5.0 s: only t0 <= 2.0 s has the full 3 s future.
    assert [_t(s.stamp_ns) for s in samples] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert (stats.keyframes, stats.samples, stats.skipped_no_future) == (10, 5, 5)
    assert stats.skipped_no_images == stats.skipped_no_calibration == 0
    for s in samples:
        t0 = _t(s.stamp_ns)
        xy, heading = helpers_data.future_in_base(t0)
        np.testing.assert_allclose(s.trajectory.xy, xy, atol=1e-4)
        np.testing.assert_allclose(s.trajectory.heading, heading, atol=1e-6)
        # Ego state: the odometry message the synchronizer put in the set (within slop).
        assert 0 <= s.ego_stamp_ns - s.stamp_ns < 0.05 * NS
        assert (s.ego_stamp_ns - helpers_data.T0_NS) % 20_000_000 == 0       # a 50 Hz message
        t_odom = _t(s.ego_stamp_ns)
        assert s.ego.speed == pytest.approx(helpers_data.V0 + helpers_data.ACCEL * t_odom)
        assert s.ego.yaw_rate == pytest.approx(helpers_data.YAW_RATE)
        if t0 > 0.3:
            assert s.ego.accel == pytest.approx(helpers_data.ACCEL, abs=1e-9)
        assert s.scenario == 'lead_vehicle_brakes' and s.scene == 'test_scene'
        assert s.token == f'kf_{t0:.1f}'


def test_images_and_calibration_of_the_keyframe_set(plain_bag):
    path, info = plain_bag
    rig = load_rig('nuscenes').scaled(64, 36)
    for s in read_samples(path):
        for c, (cam, msg) in enumerate(zip(CAMERA_NAMES, s.images)):
            stamp = s.stamp_ns + c * helpers_data.CAM_OFFSET_NS   # cameras fire in sequence
            assert stamps.to_ns(msg.header.stamp) == stamp
            assert bytes(msg.data) == info['jpeg'][(cam, stamp)]
        for got, want in zip(s.rig.cameras, rig.cameras):
            assert got.name == want.name and (got.width, got.height) == (64, 36)
            np.testing.assert_allclose(got.K, want.K)
            np.testing.assert_allclose(got.T_base_cam, want.T_base_cam, atol=1e-12)
        images, scaled = s.decode((32, 18))
        assert all(i.shape == (18, 32, 3) for i in images)
        np.testing.assert_allclose(scaled['CAM_FRONT'].K, rig.scaled(32, 18)['CAM_FRONT'].K)


def test_future_boxes_in_current_base_link(plain_bag):
    path, _ = plain_bag
    for s in read_samples(path):
        t0 = _t(s.stamp_ns)
        assert s.future_boxes.shape == (6, 2, 5)
        assert s.box_ids == ['car_1', 'ped_1']
        for k in range(6):
            t = t0 + 0.5 * (k + 1)
            car = helpers_data.agent_in_base('car_1', t, t0)
            np.testing.assert_allclose(s.future_boxes[k, 0, :2], car[:2], atol=1e-4)
            assert np.cos(s.future_boxes[k, 0, 4] - car[2]) == pytest.approx(1.0, abs=1e-8)
            np.testing.assert_allclose(s.future_boxes[k, 0, 2:4], [4.5, 1.9])
            if t < 2.98:     # the pedestrian leaves the ground truth at 3.0 s
                ped = helpers_data.agent_in_base('ped_1', t, t0)
                np.testing.assert_allclose(s.future_boxes[k, 1, :2], ped[:2], atol=1e-4)
            else:
                assert np.isnan(s.future_boxes[k, 1]).all()


def test_command_from_endpoint_without_a_command_topic(plain_bag):
    path, _ = plain_bag
    for s in read_samples(path):
        assert not s.command_from_bag
        assert s.command == (Command.LEFT if s.trajectory.xy[-1, 1] > 2 else Command.STRAIGHT)
    assert {s.command for s in read_samples(path)} == {Command.LEFT}


def test_command_from_the_bag_wins(tmp_path):
    path = tmp_path / 'bag'
    helpers_data.write_bag(path, duration=4.0,
                           commands=[(0.0, Command.RIGHT), (1.2, Command.STRAIGHT)])
    got = {_t(s.stamp_ns): (s.command, s.command_from_bag) for s in read_samples(path)}
    assert got == {0.0: (Command.RIGHT, True), 0.5: (Command.RIGHT, True),
                   1.0: (Command.RIGHT, True)}
    helpers_data.write_bag(tmp_path / 'bag2', duration=5.0, commands=[(1.2, Command.STRAIGHT)])
    got = {_t(s.stamp_ns): (s.command, s.command_from_bag)
           for s in read_samples(tmp_path / 'bag2')}
    assert got[1.0] == (Command.LEFT, False)         # before the first command: endpoint rule
    assert got[1.5] == got[2.0] == (Command.STRAIGHT, True)


def test_reasoning_matched_by_stamp(plain_bag):
    path, _ = plain_bag
    stats = ReadStats()
    samples = {_t(s.stamp_ns): s for s in read_samples(path, stats=stats)}
    rec = samples[0.0].reasoning
    assert rec.texts == ('now 0.0', 'next 0.0', 'because 0.0')
    assert rec.labels == (1, 3, 4) and rec.teacher == 'rule-v1'
    assert samples[0.5].reasoning is None            # the teacher failed on this one
    assert all(samples[t].reasoning is None for t in (1.0, 1.5, 2.0))
    # 0.5 failed, 1.0 never set its status; nothing else is bad (map -> odom on /tf_static
    # is REP 105, not a bad message)
    assert stats.bad_messages == {'reasoning_failed': 1, 'reasoning_status_unset': 1}


def test_missing_camera_frame_skips_that_keyframe(tmp_path):
    path = tmp_path / 'bag'
    helpers_data.write_bag(path, duration=5.0, drop={('CAM_BACK', 6)})   # keyframe at 0.5 s
    stats = ReadStats()
    times = [_t(s.stamp_ns) for s in read_samples(path, stats=stats)]
    assert times == [0.0, 1.0, 1.5, 2.0]
    assert stats.skipped_no_images == 1


def test_sqlite3_bag_reads_the_same(tmp_path, plain_bag):
    helpers_data.write_bag(tmp_path / 'bag', duration=5.0, storage='sqlite3')
    a = [s.trajectory.xy for s in read_samples(tmp_path / 'bag')]
    b = [s.trajectory.xy for s in read_samples(plain_bag[0])]
    assert len(a) == len(b) == 5
    np.testing.assert_array_equal(np.stack(a), np.stack(b))


def test_crashed_recording_yields_every_complete_sample(tmp_path):
    """A recording cut mid-write (no metadata.yaml, MCAP without summary, partial record)."""
    path = tmp_path / 'bag'
    helpers_data.write_bag(path, duration=8.0, image_size=(160, 90), noisy_images=True)
    full = {s.stamp_ns: s for s in read_samples(path)}
    (mcap,) = path.glob('*.mcap')
    data = mcap.read_bytes()
    mcap.write_bytes(data[:int(len(data) * 0.6)])
    (path / 'metadata.yaml').unlink()
    # What survived, read straight from the file: odometry and the images of each keyframe.
    odom_end, images = _surviving(path)
    complete = [t0 for t0 in sorted(full) if t0 + 3 * NS <= odom_end and all(
        t0 + c * helpers_data.CAM_OFFSET_NS in images for c in range(6))]
    stats = ReadStats()
    got = list(read_samples(path, stats=stats))
    assert 0 < len(complete) < len(full)
    assert [s.stamp_ns for s in got] == complete
    for s in got:
        np.testing.assert_array_equal(s.trajectory.xy, full[s.stamp_ns].trajectory.xy)
        want = [bytes(m.data) for m in full[s.stamp_ns].images]
        assert [bytes(m.data) for m in s.images] == want
    assert stats.skipped_no_future > 0


def test_reader_config_names_bad_fields():
    with pytest.raises(ValueError, match='slop'):
        ReaderConfig(slop=0)
    with pytest.raises(ValueError, match='queue_size'):
        ReaderConfig(queue_size=0)
    with pytest.raises(ValueError, match='image_topics'):
        ReaderConfig(image_topics=('/a',))


def test_recorder_killed_mid_write_yields_its_complete_samples(tmp_path):
    from vlmad_ros.bagschema import partial_path
    """SIGKILL a process while it records (no close, no metadata.yaml, a half chunk)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    path = tmp_path / 'bag'
    code = ('import helpers_data, sys; helpers_data.write_bag(sys.argv[1], duration=30.0, '
            'image_size=(160, 90), noisy_images=True)')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, '-c', code, str(path)], env=env)
    path = partial_path(path)    # where BagWriter writes until it closes
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            files = list(path.glob('*.mcap')) if path.exists() else []
            if files and files[0].stat().st_size > 12_000_000:
                break
            assert proc.poll() is None, 'the recorder finished before it could be killed'
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert not (path / 'metadata.yaml').exists()
    odom_end, images = _surviving(path)
    keyframes = [helpers_data.T0_NS + int(round(t * 12)) * NS // 12
                 for t in helpers_data.keyframe_times(30.0)]
    complete = [t0 for t0 in keyframes if t0 + 3 * NS <= odom_end and all(
        t0 + c * helpers_data.CAM_OFFSET_NS in images for c in range(6))]
    got = list(read_samples(path))
    assert len(complete) >= 3 and [s.stamp_ns for s in got] == complete
    for s in got:
        xy, _ = helpers_data.future_in_base(_t(s.stamp_ns))
        np.testing.assert_allclose(s.trajectory.xy, xy, atol=1e-4)
