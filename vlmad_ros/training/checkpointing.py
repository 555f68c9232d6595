"""Run state for resume (atomic, with RNG states) and the per-epoch outputs of a run."""
from __future__ import annotations

import json
import os
import pathlib
import random
from typing import Any, Dict, List

import numpy as np
import torch

STATE_FILE = 'train_state.pt'
METRICS_FILE = 'metrics.jsonl'


def atomic_save(obj, path: pathlib.Path) -> None:
    """torch.save to a temporary file, then rename: a kill leaves the old file or the new."""
    tmp = path.with_name(path.name + '.tmp')
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write_text(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + '.tmp')
    with open(tmp, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def rng_states() -> Dict[str, Any]:
    """Every generator training draws from (dropout, shuffles in user code), as tensors."""
    states = {'torch': torch.get_rng_state(),
              'numpy': torch.tensor(np.frombuffer(
                  json.dumps(_numpy_state()).encode(), np.uint8).copy()),
              'python': torch.tensor(np.frombuffer(
                  json.dumps(_python_state()).encode(), np.uint8).copy())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state()
    return states


def _numpy_state():
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)]


def _python_state():
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def set_rng_states(states: Dict[str, Any]) -> None:
    """Restore what rng_states() saved (weights_only loads: JSON bytes, not pickles)."""
    torch.set_rng_state(states['torch'])
    name, keys, pos, has_gauss, gauss = json.loads(bytes(states['numpy'].tolist()).decode())
    np.random.set_state((name, np.array(keys, np.uint32), pos, has_gauss, gauss))
    version, internal, gauss = json.loads(bytes(states['python'].tolist()).decode())
    random.setstate((version, tuple(internal), gauss))
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states['cuda'])


def save_state(path: pathlib.Path, model, optimizer, scheduler, scaler, progress: Dict,
               config: Dict, history: List[Dict]) -> None:
    """Everything a rerun needs to continue bit for bit, written atomically."""
    atomic_save({'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
                 'scheduler': scheduler.state_dict(), 'scaler': scaler.state_dict(),
                 'rng': rng_states(), 'config': config, 'history': history, **progress}, path)


def load_state(path: pathlib.Path) -> Dict[str, Any]:
    """Read a training state written by save_state (tensors and plain types only)."""
    from vlmad_ros.model.checkpoint import load_weights_only
    return load_weights_only(path, 'training state')


def restore(state: Dict[str, Any], model, optimizer, scheduler, scaler) -> None:
    """Load a saved state into the live objects (after they are built as for a new run)."""
    model.load_state_dict(state['model'])
    optimizer.load_state_dict(state['optimizer'])
    scheduler.load_state_dict(state['scheduler'])
    scaler.load_state_dict(state['scaler'])
    set_rng_states(state['rng'])


def rewrite_metrics(out_dir: pathlib.Path, history: List[Dict]) -> None:
    """metrics.jsonl = the epochs the state holds: none lost or repeated by a kill."""
    atomic_write_text(out_dir / METRICS_FILE, ''.join(json.dumps(r) + '\n' for r in history))


def append_metrics(out_dir: pathlib.Path, record: Dict) -> None:
    with open(out_dir / METRICS_FILE, 'a') as f:
        f.write(json.dumps(record) + '\n')
        f.flush()
        os.fsync(f.fileno())
