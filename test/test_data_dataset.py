"""The torch Dataset: batch keys and shapes, decoded images, DataLoader workers, the cache."""
import helpers_data
import numpy as np
import pytest
import torch
from vlmad_ros import types
from vlmad_ros.data import dataset as D
from vlmad_ros.data.reader import read_samples
from vlmad_ros.images import decode_jpeg, resize_rgb
import yaml

SIZE = (48, 32)   # (width, height): a model resolution with another aspect ratio


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp('ds')
    helpers_data.write_bag(root / 'bags' / 'a', duration=5.0, reasoning={0.5: (2, 3, 4)})
    # A second recording without the pedestrian: fewer agents, so collate must pad.
    saved = dict(helpers_data.AGENTS)
    helpers_data.AGENTS.pop('ped_1')
    try:
        helpers_data.write_bag(root / 'bags' / 'b', duration=4.0, seed=1)
    finally:
        helpers_data.AGENTS.clear()
        helpers_data.AGENTS.update(saved)
    return root


def test_items_have_the_batch_keys(bags):
    ds = D.BagDataset(bags / 'bags', SIZE, cache_dir=bags / 'cache')
    assert len(ds) == 5 + 3
    assert ds.stats.samples == 8 and ds.stats.skipped_no_future == 5 + 5
    item = ds[0]
    assert item[types.IMAGES].shape == (6, 3, 32, 48) and item[types.IMAGES].dtype == torch.uint8
    assert item[types.INTRINSICS].shape == (6, 3, 3)
    assert item[types.CAM_TO_BASE].shape == (6, 4, 4)
    assert item[types.EGO].shape == (3,) and item[types.COMMAND].dtype == torch.int64
    assert item[types.TRAJ].shape == (6, 2) and item[types.HEADING].shape == (6,)
    assert item[types.FUTURE_BOXES].shape == (6, 2, 5)
    assert ds[6][types.FUTURE_BOXES].shape == (6, 1, 5)
    assert item[types.ACTION_LABELS].tolist() == [255, 255, 255]
    assert not item[types.TEXT_VALID]
    second = ds[1]
    assert second[types.TEXT_VALID] and second[types.ACTION_LABELS].tolist() == [2, 3, 4]
    assert second[D.TEXTS] == ('now 0.5', 'next 0.5', 'because 0.5')
    assert second[D.SCENARIO] == 'lead_vehicle_brakes' and second[D.TOKEN] == 'kf_0.5'


def test_items_equal_the_reader_samples(bags):
    ds = D.BagDataset(bags / 'bags' / 'a', SIZE, cache_dir=bags / 'cache')
    for k, s in enumerate(read_samples(bags / 'bags' / 'a')):
        item = ds[k]
        assert item[D.STAMP] == s.stamp_ns
        np.testing.assert_array_equal(item[types.TRAJ].numpy(), s.trajectory.xy)
        np.testing.assert_array_equal(item[types.EGO].numpy(), s.ego.as_array())
        assert item[types.COMMAND].item() == int(s.command)
        np.testing.assert_array_equal(item[types.FUTURE_BOXES].numpy(), s.future_boxes)
        for c, msg in enumerate(s.images):
            want = resize_rgb(decode_jpeg(bytes(msg.data), SIZE), SIZE)
            np.testing.assert_array_equal(item[types.IMAGES][c].permute(1, 2, 0).numpy(), want)
            cam = s.rig.cameras[c].scaled(*SIZE)
            np.testing.assert_allclose(item[types.INTRINSICS][c].numpy(), cam.K, rtol=1e-6)
            np.testing.assert_allclose(item[types.CAM_TO_BASE][c].numpy(), cam.T_base_cam,
                                       atol=1e-6)
    # Intrinsics follow the resize: fx scales with width, fy with height.
    full = s.rig.cameras[0]
    assert item[types.INTRINSICS][0, 0, 0].item() == pytest.approx(full.fx * 48 / 64, rel=1e-6)
    assert item[types.INTRINSICS][0, 1, 1].item() == pytest.approx(full.fy * 32 / 36, rel=1e-6)


def test_dataloader_workers_match_in_process(bags):
    ds = D.BagDataset(bags / 'bags', SIZE, cache_dir=bags / 'cache')
    plain = [D.collate([ds[i] for i in range(k, min(k + 3, len(ds)))])
             for k in range(0, len(ds), 3)]
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, collate_fn=D.collate)
    for a, b in zip(plain, loader):
        for key, value in a.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value.nan_to_num(-7), b[key].nan_to_num(-7)), key
            else:
                assert value == b[key]
    mixed = plain[2]               # items 6, 7 from bag b have 1 agent; padded batch has 2
    assert mixed[types.FUTURE_BOXES].shape == (2, 6, 1, 5)
    batch = D.collate([ds[4], ds[5]])
    assert batch[types.FUTURE_BOXES].shape == (2, 6, 2, 5)
    assert torch.isnan(batch[types.FUTURE_BOXES][1, :, 1]).all()
    assert not torch.isnan(batch[types.FUTURE_BOXES][1, :, 0]).any()


def test_cache_is_reused_and_follows_the_bag(bags, monkeypatch):
    built = []
    real = D.build_cache
    monkeypatch.setattr(D, 'build_cache', lambda *a, **k: built.append(a[0]) or real(*a, **k))
    cache = bags / 'cache2'
    D.BagDataset(bags / 'bags' / 'a', SIZE, cache_dir=cache)
    D.BagDataset(bags / 'bags' / 'a', SIZE, cache_dir=cache)
    assert len(built) == 1
    D.BagDataset(bags / 'bags' / 'a', (40, 24), cache_dir=cache)    # another resolution
    assert len(built) == 2
    assert not list(cache.glob('*.tmp-*'))


def test_image_size_is_validated(bags):
    with pytest.raises(ValueError, match='image_size'):
        D.BagDataset(bags / 'bags', (4, 4), cache_dir=bags / 'cache')
    with pytest.raises(ValueError, match='image_size'):
        D.BagDataset(bags / 'bags', 'big', cache_dir=bags / 'cache')


def test_loader_benchmark_reports_every_stage(bags, tmp_path):
    from vlmad_ros.data.bench import loader_benchmark
    config = tmp_path / 'tiny.yaml'
    config.write_text(yaml.safe_dump({'model': {
        'image_width': 32, 'image_height': 24, 'backbone_channels': [8, 8, 8, 8],
        'backbone_blocks': [0, 0, 0, 1], 'd_model': 16, 'num_heads': 2, 'decoder_layers': 1,
        'ffn_dim': 32}, 'vlmad': {'d_model': 16, 'ffn_dim': 32, 'num_layers': 1}}))
    result = loader_benchmark([bags / 'bags' / 'a'], image_size=(32, 24), workers=1,
                              batch_size=2, repeats=1, train_config=str(config),
                              train_steps=1)
    assert result['samples'] == 5
    for key in ('read_samples_per_s', 'digest_samples_per_s', 'decode_resize_samples_per_s',
                'decode_resize_cpu_ms_per_sample', 'cache_build_samples_per_s',
                'loader_samples_per_s', 'jpeg_loader_samples_per_s', 'train_samples_per_s'):
        assert result[key] > 0, key


def test_corrupt_image_skips_the_sample_and_is_counted(tmp_path):
    helpers_data.write_bag(tmp_path / 'bag', duration=5.0, corrupt={('CAM_BACK_LEFT', 12)})
    ds = D.BagDataset(tmp_path / 'bag', SIZE, cache_dir=tmp_path / 'cache')
    assert [ds[i][D.TOKEN] for i in range(len(ds))] == ['kf_0.0', 'kf_0.5', 'kf_1.5', 'kf_2.0']
    assert ds.stats.bad_messages == {'image_corrupt_jpeg': 1}
    assert ds.stats.samples == 4
