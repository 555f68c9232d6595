"""
Validation under DDP: two gloo processes validate their shards and merge the metric totals.

The merged results must be the single-process results over the same validation set.
"""
import contextlib
import json
import math
import os
import pathlib
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from vlmad_ros.data.dataset import BagDataset, collate
from vlmad_ros.model import PlannerConfig
from vlmad_ros.model.planner_model import build_model
from vlmad_ros.training.loop import val_shard, validate

CONFIG = {'image_width': 64, 'image_height': 32, 'backbone_channels': (8, 16, 32),
          'backbone_blocks': (0, 1, 0), 'd_model': 32, 'num_heads': 4, 'decoder_layers': 1,
          'ffn_dim': 64}


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    import helpers_data            # not on the torchrun children's path (they need no bags)
    root = tmp_path_factory.mktemp('val_ddp')
    helpers_data.write_bag(root / 'a', duration=6.0)
    helpers_data.write_bag(root / 'b', duration=5.5, seed=1)
    return root


def results(root, rank=0, world=1):
    """Validate a seeded planner on rank's shard of both bags; merged totals -> results."""
    torch.manual_seed(0)
    cfg = PlannerConfig(**CONFIG)
    planner = build_model(cfg)
    dataset = BagDataset([root / 'a', root / 'b'], cfg, cache_dir=root / 'cache')
    shard = val_shard(dataset, rank, world)
    # One sample per batch: each prediction is computed alike in both runs.
    loader = torch.utils.data.DataLoader(shard, batch_size=1, collate_fn=collate)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)       # as the ranks: the same kernels give the same predictions
    try:
        metrics, _ = validate(planner, loader, torch.device('cpu'), contextlib.nullcontext)
    finally:
        torch.set_num_threads(threads)
    return len(shard), metrics.compute(across_ranks=world > 1)


def rank_main(root):
    """One torchrun process (as `vlmad train` runs): its shard, merged, to rankN.json."""
    dist.init_process_group('gloo')
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        n, res = results(root, rank, world)
        (root / f'rank{rank}.json').write_text(json.dumps({'shard': n, 'results': res}))
    finally:
        dist.destroy_process_group()


def assert_same(merged, single):
    """Compare counts and collision rates exactly, L2 to its last bits (summation order)."""
    assert merged['samples'] == single['samples']
    assert merged['collision_steps_skipped'] == single['collision_steps_skipped']
    for proto in ('avg_over_horizon', 'at_horizon'):
        for key, value in single['collision'][proto].items():
            got = merged['collision'][proto][key]
            assert got == value or (math.isnan(got) and math.isnan(value))
        assert merged['l2'][proto] == pytest.approx(single['l2'][proto], rel=1e-12)


def test_two_gloo_ranks_merge_to_the_single_process_results(bags, tmp_path):
    # Build the sample caches once, so that the ranks only read them.
    n, single = results(bags)
    assert n == single['samples'] and n % 2 == 1          # uneven shards, nothing padded
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node',
           '2', __file__, str(bags)]
    proc = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((bags / f'rank{r}.json').read_text()) for r in range(2)]
    assert [r['shard'] for r in ranks] == [(n + 1) // 2, n // 2]
    for r in ranks:
        assert_same(r['results'], single)
    # Without the merge, rank 0 would report its shard alone.
    assert results(bags, 0, 2)[1]['samples'] == (n + 1) // 2
    # The set exercises what the merge adds up: collisions and skipped ground-truth steps.
    assert single['collision']['avg_over_horizon']['2s'] > 0
    assert single['collision_steps_skipped'] > 0


if __name__ == '__main__':
    rank_main(pathlib.Path(sys.argv[1]))
