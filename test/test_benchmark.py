"""
The fixed synthetic benchmark: its spec (splits, closed-loop episodes) and `vlmad benchmark`.

The CLI runs as installed, on a tiny split (--scale 0.05: one scene) and a random-weights
checkpoint written here; closed loop is left to test_sim_closed_loop (it takes minutes).
"""
import collections
import json
import os
import subprocess

import pytest
import torch
from vlmad_ros.benchmark import spec
from vlmad_ros.benchmark.cli import markdown, summary_row
from vlmad_ros.model import build_model, save_checkpoint
from vlmad_ros.model.config import PlannerConfig
from vlmad_ros.synth.scenarios import SCENARIOS


def test_closed_loop_test_split_has_four_fixed_episodes_per_scenario():
    episodes = spec.closed_loop_episodes('test')
    assert len(episodes) >= 28
    per = collections.Counter(e.scenario for e in episodes)
    assert set(per) == set(SCENARIOS) and min(per.values()) >= 4
    assert all(e.duration == spec.CLOSED_LOOP_DURATION_S == 25.0 for e in episodes)
    # Golden: the first episodes (a change must come with a new BENCHMARK_VERSION).
    assert [(e.scenario, e.seed) for e in episodes[:6]] == [
        ('cruise', 7000), ('cruise', 7001), ('cruise', 7002), ('cruise', 7003),
        ('green_light', 7100), ('green_light', 7101)]
    assert spec.BENCHMARK_VERSION == 'synth-v1'
    assert episodes == spec.closed_loop_episodes('test')
    assert len({(e.scenario, e.seed) for e in episodes}) == len(episodes)


def test_val_and_test_episodes_are_disjoint_and_splits_use_distinct_seeds():
    val, test = spec.closed_loop_episodes('val'), spec.closed_loop_episodes('test')
    val2 = spec.closed_loop_episodes('val2')
    assert len(val) == 2 * len(SCENARIOS) and len(val2) == 4 * len(SCENARIOS)
    seeds = [{e.seed for e in split} for split in (val, val2, test)]
    assert sum(map(len, seeds)) == len(set().union(*seeds))
    seeds = [s.seed for s in spec.SPLITS.values()]
    assert len(set(seeds)) == len(seeds) == 3
    assert spec.SPLITS['train'].perturb > 0
    assert spec.SPLITS['val'].perturb == spec.SPLITS['test'].perturb == 0.0
    with pytest.raises(ValueError, match='closed-loop split'):
        spec.closed_loop_episodes('train')


def test_split_synth_args_golden_and_scaled():
    assert spec.SPLITS['val'].synth_args() == [
        '--scenes', '24', '--seed', '500', '--duration', '20.0', '--width', '800',
        '--height', '450', '--odom-hz', '20.0', '--perturb', '0.0', '--keyframe-images-only']
    assert spec.SPLITS['val'].synth_args(0.05)[:2] == ['--scenes', '1']
    assert spec.SPLITS['train'].synth_args(0.5)[:4] == ['--scenes', '200', '--seed', '1']
    assert '0.12' in spec.SPLITS['train'].synth_args()


@pytest.fixture(scope='module')
def data(tmp_path_factory, ros_env_module):
    root = tmp_path_factory.mktemp('benchmark')
    cmd = ['vlmad', 'benchmark', '--make-data', str(root / 'data'), '--splits', 'val',
           '--scale', '0.05', '--workers', '1']
    first = subprocess.run(cmd, env=ros_env_module, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    bag_files = sorted((root / 'data' / 'val').rglob('*.mcap'))
    stamp = [f.stat().st_mtime_ns for f in bag_files]
    second = subprocess.run(cmd, env=ros_env_module, capture_output=True, text=True,
                            timeout=120)
    return {'root': root, 'first': first, 'second': second, 'bags': bag_files,
            'mtimes': stamp}


@pytest.fixture(scope='module')
def ros_env_module():
    env = dict(os.environ)
    env['PYTHONUNBUFFERED'] = '1'
    return env


def test_make_data_records_an_annotated_split_once(data):
    val = data['root'] / 'data' / 'val'
    done = json.loads((val / 'DONE').read_text())
    assert done == {'version': 'synth-v1', 'split': 'val', 'scale': 0.05}
    assert len(data['bags']) == 1 and data['bags'][0].parent.name == 'synth-500-0000'
    assert not (data['root'] / 'data' / 'raw').exists()
    from vlmad_ros.bagschema import read_messages
    topics = collections.Counter(t for t, _, _ in read_messages(data['bags'][0].parent))
    assert topics['/vlmad/reasoning'] > 0                   # annotated by the rule teacher
    assert topics['/vlmad/keyframe'] == 40                   # 20 s at 2 Hz, nothing perturbed
    assert topics['/CAM_FRONT/image_rect_compressed'] == 40  # keyframe images only
    assert topics['/odom'] == 401                            # 20 s at 20 Hz
    # A second call finds the split complete and leaves it alone.
    assert data['second'].returncode == 0
    assert 'already complete' in data['second'].stdout
    assert [f.stat().st_mtime_ns for f in data['bags']] == data['mtimes']


def test_open_loop_run_scores_the_checkpoint_and_the_floor(data, tmp_path, ros_env_module):
    cfg = PlannerConfig(image_width=32, image_height=24, zoom=2.0,
                        backbone_channels=(8, 8, 8, 8), d_model=16, num_heads=2, ffn_dim=32,
                        decoder_layers=1)
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / 'tiny.pt', build_model(cfg))
    out = tmp_path / 'results.json'
    proc = subprocess.run(
        ['vlmad', 'benchmark', '--data', str(data['root'] / 'data'), '--split', 'val',
         '--open-loop-only', '--checkpoint', str(ckpt), '--json', str(out),
         '--cache-dir', str(tmp_path / 'cache')],
        env=ros_env_module, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '### Open loop, val split (synth-v1)' in proc.stdout
    assert '| tiny.pt |' in proc.stdout and '| constant velocity |' in proc.stdout
    assert '### Closed loop' not in proc.stdout
    res = json.loads(out.read_text())
    assert res['version'] == 'synth-v1' and res['split'] == 'val'
    assert set(res['open_loop']) == {'tiny.pt', 'constant velocity'}
    assert 'closed_loop' not in res
    n = res['open_loop']['constant velocity']['all']['samples']
    assert n == 35                           # keyframes 0..17 s have a 3 s future
    for name, r in res['open_loop'].items():
        assert r['all']['samples'] == n, name
        assert 0 <= r['hard']['samples'] <= n
        assert set(r['by_scenario']) <= set(SCENARIOS) and r['by_scenario']
    # The same hard subset for every planner: it depends on the data alone.
    assert res['open_loop']['tiny.pt']['hard']['samples'] == \
        res['open_loop']['constant velocity']['hard']['samples']
    assert 0 < res['open_loop']['constant velocity']['hard']['samples'] < n
    rows = [ln for ln in markdown(res).splitlines() if ln.startswith('| ')][1:]
    assert [r.split(' | ')[0] for r in rows] == ['| tiny.pt', '| constant velocity']
    assert all(r in proc.stdout for r in rows)
    row = summary_row(res, 'constant velocity')
    assert set(row) == {'l2_avg', 'hard_l2_avg'} and row['l2_avg'] >= 0
