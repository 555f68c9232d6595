"""
Bags other tools can read.

MCAP via the `mcap` reader and `mcap-ros2-support` (not rosbags); metadata.yaml as rosbag2
(`ros2 bag info/play`) parses it.
"""
import collections

import helpers_data
import helpers_nuscenes
import numpy as np
import pytest
from vlmad_ros import topics
from vlmad_ros.bagschema import read_messages
from vlmad_ros.data import nuscenes_converter
from vlmad_ros.rig import CAMERA_NAMES
from vlmad_ros.types import Command
import yaml


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp('interop')
    helpers_nuscenes.make_dataset(root / 'nuscenes', scenes=(('scene-0001', 3.0),))
    converted, = nuscenes_converter.convert(root / 'nuscenes', helpers_nuscenes.VERSION,
                                            root / 'converted', verbose=False)
    layout = root / 'layout'
    helpers_data.write_bag(layout, duration=3.0, commands=[(0.0, Command.STRAIGHT)],
                           reasoning={0.0: (0, 3, 4)})
    return [converted, layout]


def _decode_all(bag):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    (mcap_file,) = bag.glob('*.mcap')
    out = collections.defaultdict(list)
    with open(mcap_file, 'rb') as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        header = reader.get_header()
        summary = reader.get_summary()
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            out[channel.topic].append((message.log_time, decoded))
    return header, summary, out


@pytest.mark.parametrize('which', [0, 1], ids=['converted', 'layout'])
def test_mcap_ros2_support_decodes_every_message(bags, which):
    bag = bags[which]
    header, summary, decoded = _decode_all(bag)
    assert header.profile == 'ros2'
    assert {s.encoding for s in summary.schemas.values()} == {'ros2msg'}
    assert {c.message_encoding for c in summary.channels.values()} == {'cdr'}
    ours = collections.Counter(t for t, _, _ in read_messages(bag, raw=True))
    assert {t: len(v) for t, v in decoded.items()} == dict(ours)
    for topic in topics.CAMERA_IMAGE_TOPICS:
        stamps = [s for s, _ in decoded[topic]]
        rate = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1e9)
        assert rate == pytest.approx(12.0, rel=0.02)
        img = decoded[topic][0][1]
        assert img.format == 'jpeg' and bytes(img.data[:2]) == b'\xff\xd8'
    for topic in topics.CAMERA_INFO_TOPICS:
        assert len(decoded[topic][0][1].k) == 9
    assert decoded[topics.ODOM][0][1].child_frame_id == 'base_link'
    static = {t.child_frame_id for t in decoded[topics.TF_STATIC][0][1].transforms}
    assert {topics.camera_optical_frame(c) for c in CAMERA_NAMES} <= static
    assert static <= {topics.camera_optical_frame(c) for c in CAMERA_NAMES} | {topics.ODOM_FRAME}
    # Our own message types, decoded from the definitions stored in the bag.
    rosbags_objects = [m for t, _, m in read_messages(bag, topics=[topics.OBJECTS])]
    for (_, a), b in zip(decoded[topics.OBJECTS], rosbags_objects):
        assert [o.id for o in a.objects] == [o.id for o in b.objects]
        np.testing.assert_allclose([o.pose.position.x for o in a.objects],
                                   [o.pose.position.x for o in b.objects])
        assert [o.object_class for o in a.objects] == [o.object_class for o in b.objects]
    assert decoded[topics.KEYFRAME][0][1].header.frame_id == 'base_link'
    if which == 1:
        assert decoded[topics.COMMAND][0][1].command == int(Command.STRAIGHT)
        reasoning = decoded[topics.REASONING][0][1]
        assert reasoning.turn_action == 3 and reasoning.reasoning == 'because 0.0'


def _check_rosbag2_metadata(info: dict) -> int:
    """Check the fields and types rosbag2_storage's YAML decoder reads (yaml.hpp), by version."""
    version = info['version']
    assert isinstance(version, int) and version >= 1
    assert isinstance(info['storage_identifier'], str)
    assert isinstance(info['duration']['nanoseconds'], int)
    assert isinstance(info['starting_time']['nanoseconds_since_epoch'], int)
    assert isinstance(info['message_count'], int)
    for entry in info['topics_with_message_count']:
        meta = entry['topic_metadata']
        assert all(isinstance(meta[k], str) for k in ('name', 'type', 'serialization_format'))
        if version >= 4:
            assert isinstance(meta['offered_qos_profiles'], str)   # a YAML document in a string
            qos = yaml.safe_load(meta['offered_qos_profiles'])
            assert qos is None or isinstance(qos, list)
        if version >= 7:
            assert meta['type_description_hash'].startswith('RIHS01_')
        assert isinstance(entry['message_count'], int)
    assert all(isinstance(p, str) for p in info['relative_file_paths'])
    if version >= 3:
        assert isinstance(info['compression_format'], str)
        assert isinstance(info['compression_mode'], str)
    if version >= 5:
        for f in info['files']:
            assert isinstance(f['path'], str)
            assert isinstance(f['starting_time']['nanoseconds_since_epoch'], int)
            assert isinstance(f['duration']['nanoseconds'], int)
            assert isinstance(f['message_count'], int)
    if version >= 6:
        assert info['custom_data'] is None or isinstance(info['custom_data'], dict)
    if version >= 8:
        assert isinstance(info['ros_distro'], str)
    return version


@pytest.mark.parametrize('which', [0, 1], ids=['converted', 'layout'])
def test_metadata_yaml_is_what_ros2_bag_expects(bags, which):
    bag = bags[which]
    doc = yaml.safe_load((bag / 'metadata.yaml').read_text())
    info = doc['rosbag2_bagfile_information']
    assert _check_rosbag2_metadata(info) in (8, 9)
    assert info['storage_identifier'] == 'mcap'
    assert info['relative_file_paths'] == [f['path'] for f in info['files']]
    assert all((bag / p).is_file() for p in info['relative_file_paths'])
    stamps = collections.defaultdict(list)
    for topic, stamp, _ in read_messages(bag / info['relative_file_paths'][0], raw=True):
        stamps[topic].append(stamp)              # the file itself, not the metadata
    counts = {e['topic_metadata']['name']: e['message_count']
              for e in info['topics_with_message_count']}
    assert counts == {t: len(s) for t, s in stamps.items()}
    assert info['message_count'] == sum(counts.values()) == info['files'][0]['message_count']
    first = min(min(s) for s in stamps.values())
    last = max(max(s) for s in stamps.values())
    assert info['starting_time']['nanoseconds_since_epoch'] == first
    assert info['duration']['nanoseconds'] == last - first
    types = {e['topic_metadata']['name']: e['topic_metadata']['type']
             for e in info['topics_with_message_count']}
    assert types[topics.OBJECTS] == 'vlmad_ros/msg/GroundTruthObjectArray'
    assert types[topics.ODOM] == 'nav_msgs/msg/Odometry'
    assert all(types[t] == 'sensor_msgs/msg/CompressedImage' for t in topics.CAMERA_IMAGE_TOPICS)
    assert {e['topic_metadata']['serialization_format']
            for e in info['topics_with_message_count']} == {'cdr'}
