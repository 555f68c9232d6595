"""Training-sample choices: keyframes labelled past a lamp change, hard keyframes drawn more."""
import helpers_annotate as h
import numpy as np
import pytest
import torch
from vlmad_ros.data.dataset import BagDataset
from vlmad_ros.evaluation.baselines import is_hard
from vlmad_ros.teacher.cli import reader_config
from vlmad_ros.training.config import TrainConfig
from vlmad_ros.training.data import (is_visible_start, sample_array, select_training_samples,
                                     WeightedEpochSampler)


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('lights')
    h.write_drive_bag(root / 'bag', h.brake_to_stop(), duration_s=8.0, size=(64, 36),
                      red_light_at=23.0, green_at_s=4.0)
    return BagDataset(root / 'bag', (64, 36), cache_dir=root / 'cache',
                      reader_config=reader_config('CAM_FRONT'))


def test_light_changes_are_left_out_and_hard_keyframes_weighted(dataset):
    changes = sample_array(dataset, 'light_change')
    lines = []
    kept, weights = select_training_samples(
        torch.utils.data.Subset(dataset, list(range(len(dataset)))),
        TrainConfig(drop_light_changes=True, hard_weight=4.0), lines.append)
    assert 0 < changes.sum() < len(dataset) and len(kept) == len(dataset) - changes.sum()
    assert not sample_array(kept, 'light_change').any()
    stamps = {int(kept[i]['stamp_ns']) for i in range(len(kept))}
    assert stamps == set(sample_array(dataset, 'stamp_ns')[~changes].tolist())
    hard = np.array([is_hard(e, t) for e, t in zip(sample_array(kept, 'ego'),
                                                   sample_array(kept, 'traj'))])
    assert hard.any() and (~hard).any()
    assert weights.tolist() == [4.0 if x else 1.0 for x in hard]
    assert 'left out' in lines[0] and 'hard' in lines[1]


def test_defaults_keep_every_keyframe_and_the_plain_shuffle(dataset):
    kept, weights = select_training_samples(dataset, TrainConfig(), print)
    assert kept is dataset and weights is None
    with pytest.raises(ValueError, match='hard_weight'):
        TrainConfig(hard_weight=0.0)
    with pytest.raises(ValueError, match='start_weight'):
        TrainConfig(start_weight=-1.0)


def test_visible_starts_are_standing_keyframes_the_expert_leaves_for_a_reason_in_view():
    ego = np.array([[0.1, 0, 0], [0.1, 0, 0], [0.1, 0, 0], [3.0, 0, 0]], np.float32)
    ends = [4.0, 4.0, 0.2, 9.0]                     # 3 s endpoints ahead [m]
    traj = np.stack([np.c_[np.linspace(e / 6, e, 6), np.zeros(6)] for e in ends])
    change = np.array([False, True, False, False])  # the second starts for a lamp not yet lit
    assert is_visible_start(ego, traj, change).tolist() == [True, False, False, False]


def test_start_and_hard_weights_multiply(dataset):
    lines = []
    _, weights = select_training_samples(dataset, TrainConfig(hard_weight=2.0, start_weight=5.0),
                                         lines.append)
    ego, traj = sample_array(dataset, 'ego'), sample_array(dataset, 'traj')
    hard = np.array([is_hard(e, t) for e, t in zip(ego, traj)])
    start = is_visible_start(ego, traj, sample_array(dataset, 'light_change'))
    np.testing.assert_array_equal(weights, np.where(hard, 2.0, 1.0) * np.where(start, 5.0, 1.0))
    assert [line.split()[1] for line in lines] == ['hard_weight', 'start_weight']


def test_weighted_sampler_follows_the_weights_and_splits_one_epoch_over_ranks():
    weights = np.r_[np.ones(50), np.full(50, 4.0)]
    one = WeightedEpochSampler(weights, seed=3)
    draws = []
    for epoch in range(20):
        one.set_epoch(epoch)
        draws += list(one)
    heavy = np.mean(np.array(draws) >= 50)
    assert heavy == pytest.approx(0.8, abs=0.03)            # 4 * 50 / (4 * 50 + 50)
    one.set_epoch(7)
    ranks = [WeightedEpochSampler(weights, seed=3, rank=r, world=3) for r in range(3)]
    for r in ranks:
        r.set_epoch(7)
    merged = [None] * len(weights)
    for r, sampler in enumerate(ranks):
        merged[r::3] = list(sampler)
    assert merged == list(one) and sum(len(r) for r in ranks) == len(weights)
    one.set_epoch(8)
    assert list(one) != merged
