"""`vlmad train` killed with SIGKILL and rerun ends where an uninterrupted run ends."""
import json
import os
import signal
import subprocess
import sys
import time

import helpers_data
import pytest
import torch
import yaml

TINY = {
    'model': {'image_width': 64, 'image_height': 32, 'backbone_channels': [8, 16, 16, 32],
              'backbone_blocks': [0, 0, 0, 1], 'd_model': 32, 'num_heads': 4,
              'decoder_layers': 1, 'ffn_dim': 64},
    'vlmad': {'d_model': 32, 'ffn_dim': 64, 'num_layers': 1, 'action_weight': 0.0},
    'train': {'batch_size': 2, 'lr': 3e-3, 'warmup_steps': 2, 'threads': 1, 'log_images': 1,
              'num_workers': 0, 'log_every': 2},
}


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('resume')
    records = {t: (0, 3, 4) for t in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)}
    for name, seed in (('a', 0), ('b', 1), ('c', 2)):
        helpers_data.write_bag(root / 'bags' / name, duration=6.0, reasoning=records,
                               seed=seed)
    (root / 'tiny.yaml').write_text(yaml.safe_dump(TINY))
    return root


def command(data, out):
    """Return the one command both runs use: no --val-data (the scene split), no --resume."""
    return [sys.executable, '-m', 'vlmad_ros.training.train', '--data', str(data / 'bags'),
            '--out', str(out), '--config', str(data / 'tiny.yaml'), '--cache-dir',
            str(data / 'cache'), '--text-cache', str(data / 'text'), '--epochs', '3',
            '--device', 'cpu', '--seed', '3']


ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONHASHSEED='0')


def finish(cmd):
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def kill_after_first_epoch(cmd, out):
    """Start the run and SIGKILL it as soon as epoch 1's state is on disk."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (out / 'train_state.pt').exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def records(out):
    lines = (out / 'metrics.jsonl').read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != 'seconds'} for line in lines]


def test_sigkill_and_rerun_matches_an_uninterrupted_run(data, tmp_path):
    whole, killed = tmp_path / 'whole', tmp_path / 'killed'
    finish(command(data, whole))
    kill_after_first_epoch(command(data, killed), killed)
    interrupted_at = torch.load(killed / 'train_state.pt', weights_only=True)['epoch']
    assert interrupted_at < 3                        # the kill landed before the end
    printed = finish(command(data, killed))          # the same command continues
    assert f'[resume] from epoch {interrupted_at}' in printed
    a = torch.load(whole / 'train_state.pt', weights_only=True)
    b = torch.load(killed / 'train_state.pt', weights_only=True)
    assert a['epoch'] == b['epoch'] == 3 and a['global_step'] == b['global_step']
    for k, v in a['model'].items():
        assert torch.equal(v, b['model'][k]), k
    for name in ('last.pt', 'best.pt', 'checkpoints/epoch_003.pt'):
        sa = torch.load(whole / name, weights_only=True)['state_dict']
        sb = torch.load(killed / name, weights_only=True)['state_dict']
        assert all(torch.equal(v, sb[k]) for k, v in sa.items()), name
    ra, rb = records(whole), records(killed)
    assert [r['epoch'] for r in rb] == [1, 2, 3]     # none lost, none repeated
    assert ra == rb                                  # losses, val metrics, lr, best
    assert 'val' in ra[0]                            # the scene split held bags out
    # Rerunning a finished run changes nothing; another config is refused.
    assert 'already holds all 3 epochs' in finish(command(data, killed))
    proc = subprocess.run(command(data, killed) + ['--lr', '1e-4'], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and '--resume' in proc.stderr
