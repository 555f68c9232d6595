"""`vlmad synth` bags: deterministic, the documented layout, readable without rosbags."""
import glob
import json
import math
import pathlib
import subprocess

import numpy as np
import pytest
from vlmad_ros import topics
from vlmad_ros.bagschema import read_messages
from vlmad_ros.rig import CAMERA_NAMES, load_rig
from vlmad_ros.synth.recorder import (
    CAMERA_OFFSETS_S, record_scene, RecordConfig, scene_name)
from vlmad_ros.synth.scenarios import SceneConfig

DURATION = 3.0
CFG = RecordConfig(duration=DURATION, width=320, height=180,
                   scene=SceneConfig(scenario='lead_brake'))


def mcap_messages(bag_dir):
    """(topic, schema, log_time, publish_time, raw bytes, decoded) via mcap-ros2-support."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    (file,) = glob.glob(str(pathlib.Path(bag_dir) / '*.mcap'))
    out = []
    with open(file, 'rb') as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            out.append((channel.topic, schema.name, message.log_time, message.publish_time,
                        bytes(message.data), decoded))
    return out


@pytest.fixture(scope='module')
def bag(tmp_path_factory):
    out = tmp_path_factory.mktemp('synth')
    summary = record_scene(out, seed=7, index=0, cfg=CFG)
    return pathlib.Path(summary['bag']), summary


def test_same_seed_gives_identical_bags_another_seed_does_not(bag, tmp_path):
    first, _ = bag
    again = record_scene(tmp_path / 'again', seed=7, index=0, cfg=CFG)
    other = record_scene(tmp_path / 'other', seed=8, index=0, cfg=CFG)
    a = [m[:5] for m in mcap_messages(first)]
    b = [m[:5] for m in mcap_messages(again['bag'])]
    c = [m[:5] for m in mcap_messages(other['bag'])]
    assert a == b
    (fa,) = glob.glob(str(first / '*.mcap'))
    (fb,) = glob.glob(str(pathlib.Path(again['bag']) / '*.mcap'))
    assert pathlib.Path(fa).read_bytes() == pathlib.Path(fb).read_bytes()
    images = [m[4] for m in a if m[0] == topics.CAMERA_IMAGE_TOPICS[0]]
    assert images != [m[4] for m in c if m[0] == topics.CAMERA_IMAGE_TOPICS[0]]


def test_bag_layout_topics_types_rates_frames(bag):
    path, summary = bag
    msgs = mcap_messages(path)
    by_topic = {}
    for topic, schema, log_time, _, _, decoded in msgs:
        by_topic.setdefault(topic, (schema, []))[1].append((log_time, decoded))
    expected = {topics.TF_STATIC: 'tf2_msgs/msg/TFMessage', topics.TF: 'tf2_msgs/msg/TFMessage',
                topics.ODOM: 'nav_msgs/msg/Odometry',
                topics.COMMAND: 'vlmad_ros/msg/DrivingCommand',
                topics.OBJECTS: 'vlmad_ros/msg/GroundTruthObjectArray',
                topics.TRAFFIC_LIGHTS: 'vlmad_ros/msg/TrafficLightArray',
                topics.KEYFRAME: 'vlmad_ros/msg/Keyframe'}
    for cam in CAMERA_NAMES:
        expected[topics.camera_image_topic(cam)] = 'sensor_msgs/msg/CompressedImage'
        expected[topics.camera_info_topic(cam)] = 'sensor_msgs/msg/CameraInfo'
    assert {t: s for t, (s, _) in by_topic.items()} == expected
    # Log times never go backwards and equal header stamps.
    times = [m[2] for m in msgs]
    assert times == sorted(times)
    for topic, (_, items) in by_topic.items():
        for log_time, msg in items:
            stamp = msg.transforms[0].header.stamp if topic in (topics.TF, topics.TF_STATIC) \
                else msg.header.stamp
            assert stamp.sec * 10 ** 9 + stamp.nanosec == log_time, topic

    def rate(topic):
        t = np.array([lt for lt, _ in by_topic[topic][1]]) / 1e9
        return (len(t) - 1) / (t[-1] - t[0])

    n_sets = int(math.floor((DURATION - max(CAMERA_OFFSETS_S.values())) * 12)) + 1
    assert summary['frames'] == n_sets
    for cam in CAMERA_NAMES:
        assert len(by_topic[topics.camera_image_topic(cam)][1]) == n_sets
        assert rate(topics.camera_image_topic(cam)) == pytest.approx(12.0)
    assert len(by_topic[topics.ODOM][1]) == int(DURATION * 50) + 1
    assert rate(topics.ODOM) == pytest.approx(50.0) and rate(topics.TF) == pytest.approx(50.0)
    assert rate(topics.KEYFRAME) == pytest.approx(2.0)
    assert len(by_topic[topics.TF_STATIC][1]) == 1
    for topic in (topics.COMMAND, topics.OBJECTS, topics.TRAFFIC_LIGHTS):
        assert len(by_topic[topic][1]) == n_sets

    odom = by_topic[topics.ODOM][1][0][1]
    assert (odom.header.frame_id, odom.child_frame_id) == (topics.ODOM_FRAME, topics.BASE_FRAME)
    tf = by_topic[topics.TF][1][0][1].transforms[0]
    assert (tf.header.frame_id, tf.child_frame_id) == (topics.ODOM_FRAME, topics.BASE_FRAME)
    assert by_topic[topics.OBJECTS][1][0][1].header.frame_id == topics.BASE_FRAME
    assert by_topic[topics.TRAFFIC_LIGHTS][1][0][1].header.frame_id == topics.MAP_FRAME
    kf = [m for _, m in by_topic[topics.KEYFRAME][1]]
    assert {k.scenario for k in kf} == {'lead_brake'} and len({k.token for k in kf}) == len(kf)
    assert all(k.scene == scene_name(7, 0) for k in kf)


def test_cameras_fire_in_sequence_with_calibration_from_the_rig(bag):
    path, _ = bag
    rig = load_rig('nuscenes').scaled(320, 180)
    images = {c: [] for c in CAMERA_NAMES}
    infos = {c: [] for c in CAMERA_NAMES}
    static = None
    keyframes = []
    for topic, _, log_time, _, _, msg in mcap_messages(path):
        for cam in CAMERA_NAMES:
            if topic == topics.camera_image_topic(cam):
                images[cam].append((log_time, msg))
            elif topic == topics.camera_info_topic(cam):
                infos[cam].append((log_time, msg))
        if topic == topics.TF_STATIC:
            static = msg
        if topic == topics.KEYFRAME:
            keyframes.append(log_time)
    front = [t for t, _ in images['CAM_FRONT']]
    assert set(keyframes) <= set(front) and keyframes == front[::6]
    for cam in CAMERA_NAMES:
        offsets = np.array([t for t, _ in images[cam]]) - np.array(front)
        assert np.all(offsets == round(CAMERA_OFFSETS_S[cam] * 1e9))
        assert 0 <= CAMERA_OFFSETS_S[cam] < 0.05
        _, img = images[cam][0]
        assert img.format == 'jpeg' and bytes(img.data[:2]) == b'\xff\xd8'
        assert img.header.frame_id == topics.camera_optical_frame(cam)
        _, info = infos[cam][0]
        assert (info.width, info.height, info.distortion_model) == (320, 180, 'plumb_bob')
        np.testing.assert_allclose(np.array(info.k).reshape(3, 3), rig[cam].K)
        np.testing.assert_allclose(np.array(info.d), np.zeros(5))
    tfs = {t.child_frame_id: t for t in static.transforms}
    assert set(tfs) == {topics.camera_optical_frame(c) for c in CAMERA_NAMES} | {
        topics.ODOM_FRAME}
    assert tfs[topics.ODOM_FRAME].header.frame_id == topics.MAP_FRAME   # REP 105
    for cam in CAMERA_NAMES:
        t = tfs[topics.camera_optical_frame(cam)]
        assert t.header.frame_id == topics.BASE_FRAME
        q = t.transform.rotation
        np.testing.assert_allclose((q.w, q.x, q.y, q.z), rig[cam].rotation_wxyz, atol=1e-12)
        np.testing.assert_allclose((t.transform.translation.x, t.transform.translation.y,
                                    t.transform.translation.z), rig[cam].translation)


def test_ground_truth_the_lead_vehicle_ahead_in_base_link_and_the_odometry_agrees(bag):
    path, _ = bag
    odom, objects = {}, []
    for topic, stamp, msg in read_messages(path, [topics.ODOM, topics.OBJECTS]):
        if topic == topics.ODOM:
            odom[stamp] = msg
        else:
            objects.append((stamp, msg))
    stamp0, first = objects[0]
    lead = next(o for o in first.objects if o.id == 'veh_lead')
    assert lead.pose.position.x > 5.0 and abs(lead.pose.position.y) < 1.0
    assert (lead.size.x, lead.size.y) == pytest.approx((4.5, 1.85))
    # Odometry twist is in base_link: forward speed equals the distance driven over time.
    stamps = sorted(odom)
    p = [(odom[s].pose.pose.position.x, odom[s].pose.pose.position.y) for s in stamps]
    dist = sum(math.dist(a, b) for a, b in zip(p, p[1:]))
    mean_v = np.mean([odom[s].twist.twist.linear.x for s in stamps])
    assert dist / ((stamps[-1] - stamps[0]) / 1e9) == pytest.approx(mean_v, rel=0.05)
    # The lead's speed in base_link is close to its map speed (both drive the same lane).
    assert lead.velocity.x > 0 and abs(lead.velocity.y) < 0.5


def test_cli_records_scenes_in_parallel_sqlite3_and_resumes(tmp_path, ros_env):
    out = tmp_path / 'bags'
    cmd = ['vlmad', 'synth', '--scenes', '2', '--seed', '3', '--duration', '1.5', '--out',
           str(out), '--width', '160', '--height', '90', '--workers', '2', '--storage',
           'sqlite3', '--scenario', 'cruise', '--quiet']
    done = subprocess.run(cmd, env=ros_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    bags = sorted(p for p in out.iterdir() if p.is_dir())
    assert [b.name for b in bags] == [scene_name(3, 0), scene_name(3, 1)]
    for b in bags:
        assert 'storage_identifier: sqlite3' in (b / 'metadata.yaml').read_text()
        kinds = {t for t, _, _ in read_messages(b)}
        assert topics.CAMERA_IMAGE_TOPICS[0] in kinds and topics.KEYFRAME in kinds
    summary = json.loads((out / 'synth-3-summary.json').read_text())
    assert [s['scenario'] for s in summary['scenes']] == ['cruise', 'cruise']
    stamps = [(b / 'metadata.yaml').stat().st_mtime_ns for b in bags]
    again = subprocess.run(cmd, env=ros_env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and '2 of 2 scenes already in' in again.stderr   # resumes
    assert [(b / 'metadata.yaml').stat().st_mtime_ns for b in bags] == stamps
    bad = subprocess.run(cmd[:2] + ['--out', str(tmp_path / 'x'), '--duration', '-1'],
                         env=ros_env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and 'duration' in bad.stderr
