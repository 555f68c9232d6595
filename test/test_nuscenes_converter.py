"""nuScenes -> rosbag2 round trip on a dataset in nuScenes' own format, loaded by the devkit."""
import subprocess
import sys

import helpers_nuscenes
import numpy as np
import pytest
from vlmad_ros import stamps
from vlmad_ros import topics
from vlmad_ros.bagschema import read_messages
from vlmad_ros.data import nuscenes_converter
from vlmad_ros.data.reader import read_samples, ReadStats
from vlmad_ros.rig import CAMERA_NAMES, quat_wxyz_to_matrix
from vlmad_ros.types import Command

US = 1000


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp('nuscenes')
    ds = helpers_nuscenes.make_dataset(root / 'data')
    bags = nuscenes_converter.convert(root / 'data', helpers_nuscenes.VERSION, root / 'bags',
                                      verbose=False)
    return ds, bags


def _by_topic(bag):
    out = {}
    for topic, log_ns, msg in read_messages(bag):
        out.setdefault(topic, []).append((log_ns, msg))
    return out


def _rows(ds, table, **where):
    return [r for r in ds.tables[table] if all(r[k] == v for k, v in where.items())]


def test_one_bag_per_scene(converted):
    ds, bags = converted
    assert [b.name for b in bags] == ds.scene_names
    assert all((b / 'metadata.yaml').is_file() for b in bags)


def test_images_are_the_jpeg_files_byte_for_byte(converted):
    ds, bags = converted
    msgs = _by_topic(bags[0])
    scene = _rows(ds, 'scene', name='scene-0001')[0]
    samples = {s['token'] for s in _rows(ds, 'sample', scene_token=scene['token'])}
    for cam, topic in zip(CAMERA_NAMES, topics.CAMERA_IMAGE_TOPICS):
        sds = sorted((sd for sd in ds.tables['sample_data'] if sd['sample_token'] in samples
                      and sd['filename'].split('/')[1] == cam), key=lambda sd: sd['timestamp'])
        got = msgs[topic]
        assert len(got) == len(sds) == 72          # 6 s at 12 Hz: keyframes and sweeps
        for (log_ns, msg), sd in zip(got, sds):
            assert stamps.to_ns(msg.header.stamp) == log_ns == sd['timestamp'] * US
            assert msg.format == 'jpeg'
            assert msg.header.frame_id == topics.camera_optical_frame(cam)
            assert bytes(msg.data) == (ds.root / sd['filename']).read_bytes()


def test_calibration_round_trip(converted):
    ds, bags = converted
    msgs = _by_topic(bags[0])
    (_, static), = msgs[topics.TF_STATIC]
    tf = {t.child_frame_id: t for t in static.transforms}
    for cam, info_topic in zip(CAMERA_NAMES, topics.CAMERA_INFO_TOPICS):
        cs = _rows(ds, 'calibrated_sensor', token=f'cs_{cam}')[0]
        t = tf[topics.camera_optical_frame(cam)]
        assert t.header.frame_id == topics.BASE_FRAME
        tr, q = t.transform.translation, t.transform.rotation
        np.testing.assert_allclose([tr.x, tr.y, tr.z], cs['translation'], atol=1e-12)
        np.testing.assert_allclose([q.w, q.x, q.y, q.z], cs['rotation'], atol=1e-12)
        infos = msgs[info_topic]
        assert len(infos) == 72
        info = infos[0][1]
        assert (info.width, info.height) == (160, 90)
        np.testing.assert_allclose(np.reshape(info.k, (3, 3)), cs['camera_intrinsic'],
                                   atol=1e-12)
        assert info.header.frame_id == topics.camera_optical_frame(cam)


def test_odometry_is_ego_pose_with_finite_difference_velocity(converted):
    ds, bags = converted
    msgs = _by_topic(bags[0])
    scene = _rows(ds, 'scene', name='scene-0001')[0]
    samples = {s['token'] for s in _rows(ds, 'sample', scene_token=scene['token'])}
    poses = {}
    for sd in ds.tables['sample_data']:
        if sd['sample_token'] in samples:
            ep = _rows(ds, 'ego_pose', token=sd['ego_pose_token'])[0]
            poses[ep['timestamp'] * US] = ep
    odom = msgs[topics.ODOM]
    assert [stamps.to_ns(m.header.stamp) for _, m in odom] == sorted(poses)
    for _, m in odom:
        ep = poses[stamps.to_ns(m.header.stamp)]
        p, q = m.pose.pose.position, m.pose.pose.orientation
        assert (m.header.frame_id, m.child_frame_id) == (topics.ODOM_FRAME, topics.BASE_FRAME)
        np.testing.assert_allclose([p.x, p.y, p.z], ep['translation'], atol=1e-9)
        np.testing.assert_allclose([q.w, q.x, q.y, q.z], ep['rotation'], atol=1e-12)
        tw = m.twist.twist   # in base_link: straight ahead at the known speed and yaw rate
        assert tw.linear.x == pytest.approx(helpers_nuscenes.SPEED, abs=0.01)
        assert tw.linear.y == pytest.approx(0.0, abs=0.03)
        assert tw.angular.z == pytest.approx(helpers_nuscenes.YAW_RATE, abs=1e-3)
    assert len(msgs[topics.TF]) == len(odom)
    for (_, m), (_, tf) in zip(odom, msgs[topics.TF]):   # REP 105: odom -> base_link
        (t,) = tf.transforms
        assert (t.header.frame_id, t.child_frame_id) == (topics.ODOM_FRAME, topics.BASE_FRAME)
        assert t.transform.translation.x == m.pose.pose.position.x
    (_, static), = msgs[topics.TF_STATIC]
    map_odom = [t for t in static.transforms if t.child_frame_id == topics.ODOM_FRAME]
    assert [t.header.frame_id for t in map_odom] == [topics.MAP_FRAME]
    assert (map_odom[0].transform.rotation.w, map_odom[0].transform.translation.x) == (1.0, 0.0)


def test_keyframes_and_boxes_in_base_link(converted):
    ds, bags = converted
    msgs = _by_topic(bags[0])
    scene = _rows(ds, 'scene', name='scene-0001')[0]
    samples = sorted(_rows(ds, 'sample', scene_token=scene['token']),
                     key=lambda s: s['timestamp'])
    keyframes = [m for _, m in msgs[topics.KEYFRAME]]
    assert [k.token for k in keyframes] == [s['token'] for s in samples]
    front = {sd['sample_token']: sd['timestamp'] for sd in ds.tables['sample_data']
             if sd['is_key_frame'] and 'CAM_FRONT/' in sd['filename']}
    assert [stamps.to_ns(k.header.stamp) for k in keyframes] == [
        front[s['token']] * US for s in samples]
    assert {k.scene for k in keyframes} == {'scene-0001'}
    objects = [m for _, m in msgs[topics.OBJECTS]]
    assert len(objects) == len(samples)
    cls = objects[0].objects[0]
    for sample, arr in zip(samples, objects):
        assert stamps.to_ns(arr.header.stamp) == sample['timestamp'] * US
        assert arr.header.frame_id == topics.BASE_FRAME
        x, y, yaw = helpers_nuscenes.ego_pose((sample['timestamp'] - helpers_nuscenes.T0_US)
                                              / 1e6)
        rot = quat_wxyz_to_matrix(helpers_nuscenes.quat_yaw(yaw))
        anns = {a['instance_token']: a for a in _rows(ds, 'sample_annotation',
                                                      sample_token=sample['token'])}
        assert sorted(o.id for o in arr.objects) == sorted(anns)
        for obj in arr.objects:
            ann = anns[obj.id]
            expect = rot.T @ (np.array(ann['translation']) - [x, y, 0.0])
            p = obj.pose.position
            np.testing.assert_allclose([p.x, p.y, p.z], expect, atol=1e-6)
            box_yaw = 2 * np.arctan2(ann['rotation'][3], ann['rotation'][0])
            q = obj.pose.orientation
            got_yaw = 2 * np.arctan2(q.z, q.w)
            assert np.cos(got_yaw - (box_yaw - yaw)) == pytest.approx(1.0, abs=1e-9)
            w, length, h = ann['size']
            assert (obj.size.x, obj.size.y, obj.size.z) == pytest.approx((length, w, h))
            if 'car_moving' in obj.id:
                assert obj.object_class == cls.CLASS_CAR
                v = rot.T @ np.array([3.0, 0.0, 0.0])   # 3 m/s along global x
                np.testing.assert_allclose([obj.velocity.x, obj.velocity.y], v[:2], atol=1e-6)
            elif 'pedestrian' in obj.id:
                assert obj.object_class == cls.CLASS_PEDESTRIAN
            else:
                assert obj.object_class == cls.CLASS_TRUCK


def test_reader_waypoints_equal_the_known_circle(converted):
    """Future waypoints from the converted odometry equal the analytic trajectory."""
    _, bags = converted
    stats = ReadStats()
    samples = list(read_samples(bags[0], stats=stats))
    # 12 keyframes at 0..5.5 s; odometry ends at ~5.96 s: those before 2.96 s have 3 s ahead.
    assert (stats.keyframes, stats.samples, stats.skipped_no_future) == (12, 6, 6)
    for s in samples:
        t0 = (s.stamp_ns / US - helpers_nuscenes.T0_US) / 1e6
        x0, y0, yaw0 = helpers_nuscenes.ego_pose(t0)
        xs, ys, yaws = helpers_nuscenes.ego_pose(t0 + 0.5 * np.arange(1, 7))
        c, s_ = np.cos(yaw0), np.sin(yaw0)
        expect = np.stack([c * (xs - x0) + s_ * (ys - y0), -s_ * (xs - x0) + c * (ys - y0)], 1)
        np.testing.assert_allclose(s.trajectory.xy, expect, atol=2e-3)
        np.testing.assert_allclose(s.trajectory.heading, yaws - yaw0, atol=1e-5)
        assert s.ego.speed == pytest.approx(helpers_nuscenes.SPEED, abs=0.01)
        assert s.command == s.command.LEFT       # the circle turns left by > 2 m in 3 s
        assert s.command_from_bag                # the converter wrote it


def test_one_route_command_per_keyframe_before_its_first_image(converted):
    """The endpoint rule per sample, stamped 1 ms before the sample's earliest image."""
    ds, bags = converted
    msgs = _by_topic(bags[0])
    scene = _rows(ds, 'scene', name='scene-0001')[0]
    samples = sorted(_rows(ds, 'sample', scene_token=scene['token']),
                     key=lambda s: s['timestamp'])
    first_image = {}
    for sd in ds.tables['sample_data']:
        if sd['is_key_frame'] and sd['filename'].split('/')[1] in CAMERA_NAMES:
            t = first_image.get(sd['sample_token'], sd['timestamp'])
            first_image[sd['sample_token']] = min(t, sd['timestamp'])
    commands = [m for _, m in msgs[topics.COMMAND]]
    assert [stamps.to_ns(c.header.stamp) for c in commands] == [
        first_image[s['token']] * US - nuscenes_converter.COMMAND_LEAD_NS for s in samples]
    # The circle moves 4.4 m left in 3 s (the 6 keyframes with 3 s ahead); the log ends
    # 0.46 s after the last keyframe, whose endpoint is 0.5 m to the left: STRAIGHT.
    assert [c.command for c in commands[:6]] == [Command.LEFT] * 6
    assert commands[-1].command == Command.STRAIGHT


def test_endpoint_command_from_the_pose_three_seconds_on():
    t_ns = np.arange(0, 61) * 100_000_000          # 6 s at 10 Hz
    t = t_ns / 1e9
    for lateral, expect in ((0.0, 'STRAIGHT'), (0.5, 'LEFT'), (-0.5, 'RIGHT')):
        xyz = np.stack([10.0 * t, lateral * t ** 2, 0.0 * t], 1)   # |y| = 4.5 m at 3 s
        quats = np.tile([1.0, 0.0, 0.0, 0.0], (len(t), 1))         # heading stays +x
        got = nuscenes_converter.endpoint_command(0, t_ns, xyz, quats)
        assert got.name == expect, lateral


def test_cli_converts_selected_scenes_and_names_bad_ones(tmp_path, converted):
    ds, _ = converted
    out = tmp_path / 'bags'
    cmd = [sys.executable, '-m', 'vlmad_ros.cli', 'convert-nuscenes', '--dataroot',
           str(ds.root), '--version', helpers_nuscenes.VERSION, '--out', str(out)]
    done = subprocess.run(cmd + ['--scenes', 'scene-0002'], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert [p.name for p in out.iterdir() if p.is_dir()] == ['scene-0002']
    assert 'scene-0002: 4 keyframes, 144 images' in done.stdout


def test_keyframes_only_keeps_every_training_sample_and_drops_the_sweeps(tmp_path, converted):
    """--keyframes-only: the samples' images alone; the reader yields the same samples."""
    ds, bags = converted
    out = tmp_path / 'bags'
    done = subprocess.run([sys.executable, '-m', 'vlmad_ros.cli', 'convert-nuscenes',
                           '--dataroot', str(ds.root), '--version', helpers_nuscenes.VERSION,
                           '--out', str(out), '--scenes', 'scene-0001', '--keyframes-only'],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    small, full = _by_topic(out / 'scene-0001'), _by_topic(bags[0])
    keyframes = len(full[topics.KEYFRAME])
    for topic in topics.CAMERA_IMAGE_TOPICS:
        assert len(small[topic]) == keyframes < len(full[topic])
    for topic in (topics.ODOM, topics.KEYFRAME, topics.COMMAND, topics.OBJECTS):
        assert len(small[topic]) == len(full[topic])
    a, b = list(read_samples(out / 'scene-0001')), list(read_samples(bags[0]))
    assert [s.stamp_ns for s in a] == [s.stamp_ns for s in b] and len(a) == 6
    for x, y in zip(a, b):
        assert [bytes(m.data) for m in x.images] == [bytes(m.data) for m in y.images]
        np.testing.assert_array_equal(x.trajectory.xy, y.trajectory.xy)
        assert x.command == y.command and x.ego == y.ego


def test_unknown_scene_is_named(tmp_path, converted, capsys):
    import argparse
    ds, _ = converted
    parser = argparse.ArgumentParser()
    nuscenes_converter.add_arguments(parser)
    args = parser.parse_args(['--dataroot', str(ds.root), '--version', helpers_nuscenes.VERSION,
                              '--out', str(tmp_path / 'bags'), '--scenes', 'scene-9999'])
    assert nuscenes_converter.main(args) == 2
    err = capsys.readouterr().err
    assert '--scenes' in err and 'scene-9999' in err and 'scene-0001' in err
    assert not (tmp_path / 'bags').exists()
