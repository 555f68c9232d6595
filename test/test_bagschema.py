"""rosbag2 files with our messages, written and read without ROS (rosbags), MCAP and sqlite3."""
import numpy as np
import pytest
from vlmad_ros import bagschema
from vlmad_ros import stamps as ros_stamps
from vlmad_ros.paths import msg_dir
import yaml


def _reasoning(stamp_ns):
    cls = bagschema.msg_class('vlmad_ros/msg/DrivingReasoning')
    header = bagschema.msg_class('std_msgs/msg/Header')(
        stamp=bagschema.ns_to_stamp(stamp_ns), frame_id='base_link')
    return cls(header=header, current_action='Driving straight at 8 m/s.',
               future_action='Slowing down for the red light.',
               reasoning='The light ahead is red.',
               control_action=cls.CONTROL_MOVE_SLOWLY, turn_action=cls.TURN_NONE,
               lane_action=cls.LANE_NONE, teacher='rule-v1', prompt_version='v1',
               status=cls.STATUS_OK, failure_reason='')


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_reasoning_round_trip(tmp_path, storage):
    bag = tmp_path / 'bag'
    stamps = [1_000_000_000 + k * 500_000_000 for k in range(5)]
    with bagschema.BagWriter(bag, storage=storage) as writer:
        writer.add_topic('/vlmad/reasoning', 'vlmad_ros/msg/DrivingReasoning')
        for s in stamps:
            writer.write('/vlmad/reasoning', _reasoning(s), s)
    meta = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert meta['storage_identifier'] == storage
    assert meta['message_count'] == 5
    read = list(bagschema.read_messages(bag))
    assert [s for _, s, _ in read] == stamps
    for (topic, stamp, msg), s in zip(read, stamps):
        assert topic == '/vlmad/reasoning'
        assert ros_stamps.to_ns(msg.header.stamp) == s
        assert msg.reasoning == 'The light ahead is red.'
        assert msg.control_action == msg.CONTROL_MOVE_SLOWLY == 1


def test_bag_stores_our_msg_definitions(tmp_path):
    """The definition in the bag is our .msg file, so other tools decode our types."""
    from mcap.reader import make_reader
    bag = tmp_path / 'bag'
    with bagschema.BagWriter(bag) as writer:
        writer.write('/vlmad/reasoning', _reasoning(5), 5)
    (mcap_file,) = bag.glob('*.mcap')
    with open(mcap_file, 'rb') as f:
        schemas = make_reader(f).get_summary().schemas.values()
    (schema,) = [s for s in schemas if s.name == 'vlmad_ros/msg/DrivingReasoning']
    ours = (msg_dir() / 'DrivingReasoning.msg').read_text()
    first_part = schema.data.decode().split('\n====')[0]
    assert first_part.strip() == ours.strip()


def test_independent_reader_decodes(tmp_path):
    """Decode our DrivingReasoning with mcap + mcap-ros2-support (not rosbags)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    bag = tmp_path / 'bag'
    with bagschema.BagWriter(bag) as writer:
        writer.write('/vlmad/reasoning', _reasoning(7), 7)
    (mcap_file,) = bag.glob('*.mcap')
    with open(mcap_file, 'rb') as f:
        decoded = [m for _, _, _, m in make_reader(
            f, decoder_factories=[DecoderFactory()]).iter_decoded_messages()]
    assert decoded[0].future_action == 'Slowing down for the red light.'
    assert decoded[0].lane_action == 4


def test_truncated_mcap_yields_complete_messages(tmp_path):
    bag = tmp_path / 'bag'
    msg = _reasoning(0)
    msg.reasoning = 'x' * 100_000   # rosbags flushes 1 MB chunks: make several
    with bagschema.BagWriter(bag) as writer:
        for k in range(50):
            writer.write('/vlmad/reasoning', msg, k)
    (mcap_file,) = bag.glob('*.mcap')
    data = mcap_file.read_bytes()
    cut = tmp_path / 'crashed.mcap'
    cut.write_bytes(data[: len(data) * 2 // 3])   # a crash while recording: no summary, cut record
    read = list(bagschema.read_messages(cut))
    assert 5 < len(read) < 50
    assert [s for _, s, _ in read] == list(range(len(read)))


def test_writer_refuses_to_overwrite(tmp_path):
    (tmp_path / 'bag').mkdir()
    with pytest.raises(FileExistsError):
        bagschema.BagWriter(tmp_path / 'bag')


def test_writer_leaves_no_bag_on_exception(tmp_path):
    """A bag is whole or absent: an exception inside `with` removes the partial bag."""
    bag = tmp_path / 'bag'
    with pytest.raises(RuntimeError):
        with bagschema.BagWriter(bag) as writer:
            writer.write('/vlmad/reasoning', _reasoning(1), 1)
            assert (tmp_path / 'bag.partial' / 'bag').is_dir() and not bag.exists()
            raise RuntimeError('interrupted')
    assert not list(tmp_path.iterdir())


def test_writer_publishes_on_close_and_overwrites_only_when_asked(tmp_path):
    bag = tmp_path / 'bag'
    with bagschema.BagWriter(bag) as writer:
        writer.write('/vlmad/reasoning', _reasoning(1), 1)
    assert (bag / 'metadata.yaml').is_file() and sorted(p.name for p in tmp_path.iterdir()) == [
        'bag']
    files = sorted(p.name for p in bag.iterdir())   # named after the bag, not its .partial
    assert files[-1] == 'metadata.yaml' and files[0].startswith('bag')
    assert 'partial' not in files[0]
    with pytest.raises(FileExistsError):
        bagschema.BagWriter(bag)
    with bagschema.BagWriter(bag, overwrite=True) as writer:
        writer.write('/vlmad/reasoning', _reasoning(2), 2)
        writer.write('/vlmad/reasoning', _reasoning(3), 3)
    assert [s for _, s, _ in bagschema.read_messages(bag)] == [2, 3]


def test_bag_paths_expands_folders(tmp_path):
    for name in ('a', 'b'):
        with bagschema.BagWriter(tmp_path / 'set' / name) as writer:
            writer.write('/x', _reasoning(1), 1)
    assert [p.name for p in bagschema.bag_paths([tmp_path / 'set'])] == ['a', 'b']
    with pytest.raises(FileNotFoundError):
        bagschema.bag_paths([tmp_path / 'missing'])


def test_images_in_bags(tmp_path):
    from vlmad_ros.images import compressed_to_rgb, rgb_to_compressed_msg
    cls = bagschema.msg_class('sensor_msgs/msg/CompressedImage')
    header = bagschema.msg_class('std_msgs/msg/Header')(
        stamp=bagschema.ns_to_stamp(3), frame_id='cam_front_optical_frame')
    rgb = np.full((90, 160, 3), 120, np.uint8)
    msg = rgb_to_compressed_msg(rgb, msg=cls(header=header, format='', data=np.zeros(0, np.uint8)))
    with bagschema.BagWriter(tmp_path / 'bag') as writer:
        writer.write('/CAM_FRONT/image_rect_compressed', msg, 3)
    (_, _, back), = bagschema.read_messages(tmp_path / 'bag')
    assert abs(int(compressed_to_rgb(back).mean()) - 120) <= 2


def test_tf_static_is_recorded_latched(tmp_path):
    """ros2 bag play offers /tf_static transient local, as tf2 listeners expect."""
    tf = bagschema.msg_class('tf2_msgs/msg/TFMessage')(transforms=[])
    with bagschema.BagWriter(tmp_path / 'bag') as writer:
        writer.write('/tf_static', tf, 1)
        writer.write('/tf', tf, 1)
    meta = yaml.safe_load((tmp_path / 'bag' / 'metadata.yaml').read_text())
    qos = {t['topic_metadata']['name']: t['topic_metadata']['offered_qos_profiles']
           for t in meta['rosbag2_bagfile_information']['topics_with_message_count']}
    (profile,) = yaml.safe_load(qos['/tf_static'])   # rosbag2 v8 stores a YAML string
    assert (profile['durability'], profile['reliability']) == (1, 1)  # transient local, reliable
    assert not yaml.safe_load(qos['/tf'] or '[]')


# ----- sidecars: a small bag that adds topics to its source bag -----

def _odom_bag(path, stamps, reasoning=()):
    """Write a source bag: odometry at `stamps`, and its own teacher records at `reasoning`."""
    from vlmad_ros.data import rosmsgs
    with bagschema.BagWriter(path) as bag:
        for s in sorted(set(stamps) | set(reasoning)):
            if s in reasoning:
                bag.write('/vlmad/reasoning', _reasoning(s), s)
            if s in stamps:
                bag.write('/odom', rosmsgs.odometry(s, 'odom', 'base_link', (s * 1e-9, 0, 0),
                                                    (1, 0, 0, 0), (1, 0, 0), (0, 0, 0)), s)


def _sidecar(path, source, stamps, storage='mcap'):
    data = bagschema.sidecar_data(source, path, teacher='rule-v2')
    with bagschema.BagWriter(path, storage=storage, custom_data=data) as bag:
        bag.add_topic('/vlmad/reasoning', 'vlmad_ros/msg/DrivingReasoning')
        for s in stamps:
            bag.write('/vlmad/reasoning', _reasoning(s), s)


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_sidecar_reads_as_one_bag_with_its_source(tmp_path, storage):
    odom = [k * 100_000_000 for k in range(1, 21)]
    _odom_bag(tmp_path / 'src' / 'drive', odom, reasoning=(300_000_000,))
    side = tmp_path / 'out' / 'drive'
    _sidecar(side, tmp_path / 'src' / 'drive', [500_000_000, 1_000_000_000], storage)
    meta = yaml.safe_load((side / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert meta['custom_data'] == {
        'vlmad.sidecar.source': '../../src/drive', 'vlmad.sidecar.teacher': 'rule-v2',
        'vlmad.sidecar.source_absolute': str((tmp_path / 'src' / 'drive').resolve())}
    assert meta['message_count'] == 2, 'the sidecar holds only its own topics'
    assert bagschema.sidecar_source(side) == (tmp_path / 'src' / 'drive').resolve()
    assert bagschema.sidecar_source(tmp_path / 'src' / 'drive') is None
    assert bagschema.topic_types(side) == {'/odom': 'nav_msgs/msg/Odometry',
                                           '/vlmad/reasoning': 'vlmad_ros/msg/DrivingReasoning'}
    read = [(t, s) for t, s, _ in bagschema.read_messages(side)]
    # Log-time order; the source's own record (0.3 s) is replaced; a record before the odometry
    # of its stamp, as the copy layout writes it.
    want = sorted([('/odom', s) for s in odom] + [('/vlmad/reasoning', s) for s in
                                                  (500_000_000, 1_000_000_000)],
                  key=lambda e: (e[1], e[0] == '/odom'))
    assert read == want
    assert [s for _, s, _ in bagschema.read_messages(side, topics=['/odom'])] == odom
    assert list(bagschema.read_messages(side, topics=['/nothing/here'])) == []
    assert list(bagschema.read_messages(tmp_path / 'src' / 'drive', topics=['/nope'])) == []


def test_sidecar_follows_its_source_and_names_it_when_gone(tmp_path):
    _odom_bag(tmp_path / 'data' / 'src' / 'drive', [100, 200])
    _sidecar(tmp_path / 'data' / 'out' / 'drive', tmp_path / 'data' / 'src' / 'drive', [150])
    # Both listed: the source is read through its sidecar only, never twice.
    assert bagschema.bag_paths([tmp_path / 'data']) == [tmp_path / 'data' / 'out' / 'drive']
    # The sidecar moved alone: the absolute path finds the source.
    alone = tmp_path / 'elsewhere' / 'drive'
    alone.parent.mkdir()
    (tmp_path / 'data' / 'out' / 'drive').rename(alone)
    assert [s for _, s, _ in bagschema.read_messages(alone)] == [100, 150, 200]
    alone.rename(tmp_path / 'data' / 'out' / 'drive')
    # Both moved together: the relative path finds it.
    (tmp_path / 'data').rename(tmp_path / 'moved')
    side = tmp_path / 'moved' / 'out' / 'drive'
    assert [s for _, s, _ in bagschema.read_messages(side)] == [100, 150, 200]
    # The source gone: an error names the sidecar and the bag it needs.
    import shutil
    shutil.rmtree(tmp_path / 'moved' / 'src')
    missing = r'out/drive: a sidecar of .*data/src/drive, which is missing'
    with pytest.raises(bagschema.BagError, match=missing):
        bagschema.topic_types(side)
    assert bagschema.bag_paths([side]) == [side]
