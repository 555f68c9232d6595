"""
The reader and the dataset on a real `vlmad synth` recording (the layout contract).

Targets are checked against the bag's own odometry and ground truth, decoded with
mcap-ros2-support rather than our reader.
"""
import math

import numpy as np
import pytest
from vlmad_ros import types
from vlmad_ros.data.dataset import BagDataset, SCENARIO
from vlmad_ros.data.reader import read_samples, ReadStats


@pytest.fixture(scope='module')
def synth_bag(tmp_path_factory):
    import argparse
    from vlmad_ros.synth import cli
    out = tmp_path_factory.mktemp('synth')
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(['--scenes', '1', '--seed', '5', '--duration', '4.5', '--width',
                              '160', '--height', '90', '--scenario', 'lead_brake',
                              '--out', str(out / 'bags'), '--quiet'])
    assert cli.main(args) == 0
    (bag,) = [p for p in (out / 'bags').iterdir() if p.is_dir()]
    return bag


def _decoded(bag, topic):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    (f,) = bag.glob('*.mcap')
    with open(f, 'rb') as fh:
        reader = make_reader(fh, decoder_factories=[DecoderFactory()])
        return [m for _, _, _, m in reader.iter_decoded_messages(topics=[topic])]


def _ns(stamp):
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def test_synth_keyframes_become_samples(synth_bag):
    stats = ReadStats()
    samples = list(read_samples(synth_bag, stats=stats))
    keyframes = _decoded(synth_bag, '/vlmad/keyframe')
    odom = {_ns(m.header.stamp): m for m in _decoded(synth_bag, '/odom')}
    end = max(odom)
    expected = [_ns(k.header.stamp) for k in keyframes
                if _ns(k.header.stamp) + 3_000_000_000 <= end]
    assert [s.stamp_ns for s in samples] == expected and len(expected) >= 3
    assert stats.skipped_no_future == len(keyframes) - len(expected)
    for s in samples:
        assert s.scenario == 'lead_brake' and s.command_from_bag
        p0 = odom[s.stamp_ns].pose.pose
        yaw0 = 2 * math.atan2(p0.orientation.z, p0.orientation.w)
        for k in range(6):      # 50 Hz odometry: every waypoint falls on a message
            p = odom[s.stamp_ns + (k + 1) * 500_000_000].pose.pose
            dx, dy = p.position.x - p0.position.x, p.position.y - p0.position.y
            want = (math.cos(yaw0) * dx + math.sin(yaw0) * dy,
                    -math.sin(yaw0) * dx + math.cos(yaw0) * dy)
            np.testing.assert_allclose(s.trajectory.xy[k], want, atol=1e-4)
        assert 0 <= s.ego_stamp_ns - s.stamp_ns < 50_000_000     # the set's odometry
        assert s.ego.speed == pytest.approx(odom[s.ego_stamp_ns].twist.twist.linear.x)
        assert s.future_boxes.shape[:1] == (6,) and s.future_boxes.shape[2] == 5


def test_synth_dataset_items(synth_bag, tmp_path):
    ds = BagDataset(synth_bag, (64, 40), cache_dir=tmp_path)
    assert len(ds) == ds.stats.samples >= 3
    item = ds[0]
    assert item[types.IMAGES].shape == (6, 3, 40, 64)
    assert item[types.IMAGES].float().std() > 5          # a rendered street, not a blank frame
    assert item[SCENARIO] == 'lead_brake'
    assert np.isfinite(item[types.TRAJ].numpy()).all()
