"""`vlmad train` end to end on small bags: the loss goes down, checkpoints, resume, DDP (gloo)."""
import argparse
import json
import os
import shutil
import subprocess
import sys

import helpers_data
import pytest
import torch
from vlmad_ros.model import load_action_head, load_checkpoint
from vlmad_ros.training import train
import yaml

TINY = {
    'model': {'image_width': 64, 'image_height': 32, 'backbone_channels': [8, 16, 16, 32],
              'backbone_blocks': [0, 0, 0, 1], 'd_model': 32, 'num_heads': 4,
              'decoder_layers': 1, 'ffn_dim': 64},
    'vlmad': {'d_model': 32, 'ffn_dim': 64, 'num_layers': 1},
    'train': {'batch_size': 4, 'lr': 3e-3, 'warmup_steps': 2, 'threads': 1, 'log_images': 2},
}


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('train')
    records = {t: (0, 3, 4) for t in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)}
    helpers_data.write_bag(root / 'bags' / 'a', duration=6.0, reasoning=records)
    helpers_data.write_bag(root / 'bags' / 'b', duration=5.0, reasoning=records, seed=1)
    (root / 'tiny.yaml').write_text(yaml.safe_dump(TINY))
    return root


def run(argv):
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    return train.main(parser.parse_args(argv))


def common(data, out, *extra):
    return ['--data', str(data / 'bags'), '--out', str(out), '--config', str(data / 'tiny.yaml'),
            '--cache-dir', str(data / 'cache'), '--text-cache', str(data / 'text'), *extra]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tiny_run_lowers_the_loss_and_writes_a_deployable_checkpoint(data, tmp_path):
    out = tmp_path / 'run'
    assert run(common(data, out, '--epochs', '6', '--val-data', str(data / 'bags' / 'b'))) == 0
    log = read_jsonl(out / 'metrics.jsonl')
    assert [r['epoch'] for r in log] == [1, 2, 3, 4, 5, 6]
    first, last = log[0]['train'], log[-1]['train']
    assert last['loss'] < 0.7 * first['loss']
    assert last['loss_planning'] < first['loss_planning']
    assert last['align_loss'] < first['align_loss']
    assert {'l2', 'collision', 'samples'} <= set(log[-1]['val'])
    assert log[-1]['val']['samples'] == 5              # bag b: keyframes 0..2 s
    # Deployable checkpoints hold the planner only.
    for name in ('best.pt', 'last.pt', 'checkpoints/epoch_006.pt'):
        ckpt = torch.load(out / name, weights_only=True)
        assert not any('heads' in k for k in ckpt['state_dict'])
        assert 'action_head' not in ckpt
    assert load_action_head(out / 'best.pt') is None
    model = load_checkpoint(out / 'best.pt')
    assert model.config.d_model == 32 and model.rig is not None
    assert model.checkpoint_extra['vlm_ad'] == {'align_weight': 1.0, 'action_weight': 0.1}
    # TensorBoard: scalars for every loss term, L2, collision and lr; front-camera images.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(out / 'tensorboard')).Reload()
    tags = set(acc.Tags()['scalars'])
    assert {'train/loss', 'train/loss_traj', 'train/align_loss', 'train/action_loss',
            'train/lr', 'val/l2_avg_3s', 'val/collision_at_1s'} <= tags
    assert 'val/front_paths_0' in acc.Tags()['images']
    # Resume: two more epochs continue the same run.
    assert run(common(data, out, '--epochs', '4', '--val-data', str(data / 'bags' / 'b'))) == 2
    assert run(common(data, out, '--epochs', '8', '--val-data', str(data / 'bags' / 'b'),
                      '--resume')) == 0
    assert [r['epoch'] for r in read_jsonl(out / 'metrics.jsonl')][-2:] == [7, 8]


def test_baseline_ablations_and_ego_mlp(data, tmp_path):
    assert run(common(data, tmp_path / 'base', '--epochs', '1', '--no-vlm-ad')) == 0
    rec = read_jsonl(tmp_path / 'base' / 'metrics.jsonl')[0]
    assert rec['val']['samples'] == 7                  # no --val-data: bag a held out whole
    rec = rec['train']
    assert 'align_loss' not in rec and 'action_loss' not in rec
    assert run(common(data, tmp_path / 'q2', '--epochs', '1', '--q2-only')) == 0
    rec = read_jsonl(tmp_path / 'q2' / 'metrics.jsonl')[0]['train']
    # The action head learns from the records although no text is embedded.
    assert rec['action_loss'] > 0.1 and 'align_loss' not in rec
    assert run(common(data, tmp_path / 'mlp', '--epochs', '1', '--model', 'ego_mlp')) == 0
    assert load_checkpoint(tmp_path / 'mlp' / 'best.pt').config.kind == 'ego_mlp'
    cfg = yaml.safe_load((tmp_path / 'mlp' / 'config.yaml').read_text())
    assert cfg['vlmad']['ego_dim'] == cfg['model']['d_model']


def test_keep_action_head_ships_the_trained_head(data, tmp_path, capsys):
    out = tmp_path / 'kept'
    assert run(common(data, out, '--epochs', '1', '--q2-only', '--keep-action-head')) == 0
    trained = torch.load(out / 'train_state.pt', weights_only=True)['model']
    for name in ('best.pt', 'last.pt', 'checkpoints/epoch_001.pt'):
        head = load_action_head(out / name)
        assert head is not None, name
        for k, v in head.state_dict().items():          # the weights training ended with
            assert torch.equal(v, trained[f'heads.action.{k}']), (name, k)
    model = load_checkpoint(out / 'best.pt')              # still the planner alone
    assert model.config.d_model == head.config.ego_dim == 32
    assert model.checkpoint_extra['keep_action_head'] is True
    assert yaml.safe_load((out / 'config.yaml').read_text())['train']['keep_action_head']
    # Nothing to keep without the action head: refused up front, naming the field.
    for flag in ('--no-vlm-ad', '--q1-only'):
        assert run(common(data, tmp_path / 'x', '--keep-action-head', flag)) == 2
        assert 'keep_action_head' in capsys.readouterr().err


def test_bad_options_name_the_field(data, tmp_path, capsys):
    bad = tmp_path / 'bad.yaml'
    bad.write_text(yaml.safe_dump({'train': {'lr': -1.0}}))
    assert run(common(data, tmp_path / 'x', '--config', str(bad))) == 2
    assert 'TrainConfig.lr' in capsys.readouterr().err
    bad.write_text(yaml.safe_dump({'optim': {}}))
    assert run(common(data, tmp_path / 'x', '--config', str(bad))) == 2
    assert 'optim' in capsys.readouterr().err
    assert run(['--data', str(tmp_path / 'nothing'), '--out', str(tmp_path / 'y')]) == 2


@pytest.mark.slow
def test_ddp_two_cpu_processes_gloo(data, tmp_path):
    out = tmp_path / 'ddp'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    argv = common(data, out, '--epochs', '2', '--cache-dir', str(tmp_path / 'cache'))
    argv[argv.index('--text-cache') + 1] = str(tmp_path / 'text')    # this run's own, empty
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node',
           '2', '-m', 'vlmad_ros.training.train', *argv]
    # No rank decodes bags while the others wait: without caches the run names the command.
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and 'vlmad cache build' in proc.stderr, proc.stderr[-3000:]
    build = [sys.executable, '-m', 'vlmad_ros.cli', 'cache', 'build', str(data / 'bags'),
             '--config', str(data / 'tiny.yaml'), '--cache-dir', str(tmp_path / 'cache'),
             '--text-cache', str(tmp_path / 'text')]
    assert subprocess.run(build, env=env, timeout=300).returncode == 0
    # Nor does a rank encode texts: with the image caches but no text embeddings, refused.
    shutil.move(tmp_path / 'text', tmp_path / 'text.built')
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and 'teacher texts have no embedding' in proc.stderr, \
        proc.stderr[-3000:]
    shutil.move(tmp_path / 'text.built', tmp_path / 'text')
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = read_jsonl(out / 'metrics.jsonl')
    assert [r['epoch'] for r in log] == [1, 2]          # rank 0 alone writes
    # Bags of 7 + 5 samples; the scene split holds the first bag of the seeded order (a, 7
    # samples) out whole: each rank gets ceil(5 / 2) = 3 per epoch, in one step of 4. Both
    # ranks validate (4 + 3 samples); their merged totals count all 7.
    assert log[0]['step'] == 1 and log[0]['val']['samples'] == 7
    assert load_checkpoint(out / 'best.pt') is not None


def test_init_starts_from_a_checkpoint_and_refuses_another_config(data, tmp_path, capsys):
    first = tmp_path / 'first'
    assert run(common(data, first, '--epochs', '1', '--no-vlm-ad')) == 0
    source = load_checkpoint(first / 'best.pt')
    second = tmp_path / 'second'
    # lr so small the weights cannot move visibly in one epoch: they must be the source's.
    assert run(common(data, second, '--epochs', '1', '--no-vlm-ad', '--lr', '1e-12',
                      '--init', str(first / 'best.pt'))) == 0
    assert 'planner weights from' in capsys.readouterr().out
    started = load_checkpoint(second / 'best.pt')
    for (name, a), b in zip(source.state_dict().items(), started.state_dict().values()):
        if a.is_floating_point() and 'running' not in name:
            assert torch.allclose(a, b, atol=1e-6), name
    other = dict(TINY, model=dict(TINY['model'], d_model=64))
    (tmp_path / 'other.yaml').write_text(yaml.safe_dump(other))
    argv = common(data, tmp_path / 'third', '--epochs', '1', '--init', str(first / 'best.pt'))
    argv[argv.index('--config') + 1] = str(tmp_path / 'other.yaml')
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert '--init' in err and 'd_model' in err
    assert run(common(data, tmp_path / 'fourth', '--init', str(tmp_path / 'missing.pt'))) == 2
    assert 'not found' in capsys.readouterr().err
