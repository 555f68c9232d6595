"""
Checkpoints: config + weights + rig + input normalisation + a format version, in one file.

Only plain types and tensors are stored, so loading uses torch.load(weights_only=True) (no
pickle code runs). Every mismatch is reported by name instead of a bare load_state_dict error.

A checkpoint may also carry the trained VLM-AD action head (key 'action_head': its VLMADConfig,
label sets and weights; `vlmad train --keep-action-head`) so the planner can explain its plans.
It is an optional key, so format 1 readers ignore it and planner-only checkpoints stay
planner-only: load_checkpoint() always returns the planner alone, load_action_head() the head.
"""
from __future__ import annotations

import os
import pathlib
from typing import Any, Dict, Optional

import torch
from torch import nn

from vlmad_ros import labels
from vlmad_ros.model.config import MODEL_KINDS, PlannerConfig
from vlmad_ros.model.heads import ActionHead, VLMADConfig
from vlmad_ros.model.planner_model import build_model
from vlmad_ros.paths import PACKAGE_DIR
from vlmad_ros.rig import CameraRig

FORMAT_VERSION = 1
REQUIRED_KEYS = ('format_version', 'kind', 'config', 'state_dict', 'normalization')
ACTION_HEAD_KEY = 'action_head'      # optional: {'config', 'labels', 'state_dict'}
# Shipped inside the package; used when no checkpoint is configured and the file exists.
# VLMAD_DEFAULT_CHECKPOINT points elsewhere (a fleet's own default; tests of an install without).
DEFAULT_CHECKPOINT = PACKAGE_DIR / 'checkpoints' / 'default.pt'


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the mismatch."""


def default_checkpoint() -> Optional[pathlib.Path]:
    """Return the default checkpoint, or None when it is not installed."""
    path = pathlib.Path(os.environ.get('VLMAD_DEFAULT_CHECKPOINT', '') or DEFAULT_CHECKPOINT)
    return path if path.is_file() else None


def _cpu_state(module: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def save_checkpoint(path, model: nn.Module, rig: Optional[CameraRig] = None,
                    extra: Optional[Dict[str, Any]] = None,
                    action_head: Optional[ActionHead] = None) -> pathlib.Path:
    """
    Write model (PlannerModel or EgoMLPPlanner) with its config; extra: plain-typed metadata.

    action_head (with its VLMADConfig as `action_head.config`) is stored only when given, so
    a deployable checkpoint carries it only when training was asked to keep it.
    """
    cfg: PlannerConfig = model.config
    state = _cpu_state(model)
    ckpt = {
        'format_version': FORMAT_VERSION,
        'kind': cfg.kind,
        'config': cfg.to_dict(),
        'state_dict': state,
        'normalization': {'mean': list(cfg.image_mean), 'std': list(cfg.image_std)},
        'rig': rig.to_dict() if rig is not None else None,
        'extra': dict(extra or {}),
    }
    if action_head is not None:
        head_cfg: VLMADConfig = action_head.config
        if head_cfg.ego_dim != cfg.d_model:
            raise ValueError(f"action head ego_dim ({head_cfg.ego_dim}) must equal the planner's "
                             f'd_model ({cfg.d_model})')
        ckpt[ACTION_HEAD_KEY] = {
            'config': head_cfg.to_dict(),
            'labels': {k: list(v) for k, v in labels.LABEL_SETS.items()},
            'state_dict': _cpu_state(action_head),
        }
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    torch.save(ckpt, tmp)
    tmp.replace(path)            # never leave a half-written checkpoint under the real name
    return path


def load_weights_only(path, what: str, error=ValueError, missing=FileNotFoundError):
    """
    torch.load of tensors and plain types only: never runs pickled code from a file.

    A missing file raises `missing`, an unreadable one `error`, each naming `what` (the
    parameter or kind of file) and the path.
    """
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise missing(f'{what}: file not found: {path}')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise error(f'{what}: {path} cannot be read with weights_only=True: '
                    f'{type(err).__name__}: {err}') from None


def read_checkpoint(path) -> Dict[str, Any]:
    """Load the raw checkpoint dict and validate its structure."""
    path = pathlib.Path(path)
    ckpt = load_weights_only(path, 'checkpoint', CheckpointError, CheckpointError)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'checkpoint {path}: expected a dict, got {type(ckpt).__name__}')
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f'checkpoint {path}: missing key(s) {missing}')
    version = ckpt['format_version']
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise CheckpointError(f'checkpoint {path}: format_version {version!r} is not supported '
                              f'(this vlmad_ros reads 1..{FORMAT_VERSION})')
    if ckpt['kind'] not in MODEL_KINDS:
        raise CheckpointError(f'checkpoint {path}: kind {ckpt["kind"]!r} not in {MODEL_KINDS}')
    return ckpt


def _check_state(path, what: str, own: Dict[str, torch.Tensor],
                 state: Dict[str, torch.Tensor]) -> None:
    """Name missing/unexpected weights and shape mismatches instead of load_state_dict's dump."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
              for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f'missing weights {missing[:8]}' + (' ...' if len(missing) > 8 else ''))
        if unexpected:
            parts.append(f'unexpected weights {unexpected[:8]}'
                         + (' ...' if len(unexpected) > 8 else ''))
        if shapes:
            parts.append('shape mismatch ' + '; '.join(shapes[:8]))
        raise CheckpointError(f'checkpoint {path} does not match {what}: ' + ', '.join(parts))


def load_checkpoint(path, map_location='cpu') -> nn.Module:
    """
    Rebuild the model a checkpoint describes (either kind), weights loaded, in eval mode.

    The rig and extra metadata are attached as `model.rig` (CameraRig or None) and
    `model.checkpoint_extra`. An action head in the file is left out (load_action_head).
    """
    path = pathlib.Path(path)
    ckpt = read_checkpoint(path)
    cfg_dict = dict(ckpt['config'])
    if cfg_dict.get('kind', ckpt['kind']) != ckpt['kind']:
        raise CheckpointError(f'checkpoint {path}: kind {ckpt["kind"]!r} disagrees with '
                              f'config.kind {cfg_dict.get("kind")!r}')
    cfg_dict['kind'] = ckpt['kind']
    cfg_dict['backbone_weights'] = ''          # the weights come from the checkpoint itself
    norm = ckpt['normalization']
    try:
        cfg_dict['image_mean'] = list(norm['mean'])
        cfg_dict['image_std'] = list(norm['std'])
        cfg = PlannerConfig.from_dict(cfg_dict)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f'checkpoint {path}: invalid config/normalization: {err}') from None
    model = build_model(cfg)
    _check_state(path, f'its {cfg.kind} config', model.state_dict(), ckpt['state_dict'])
    model.load_state_dict(ckpt['state_dict'])
    # Normalisation is authoritative in 'normalization'; the buffers must agree with it.
    if cfg.kind == 'camera':
        mean = model.normalise.mean.view(-1).tolist()
        std = model.normalise.std.view(-1).tolist()
        if not (torch.allclose(torch.tensor(mean), torch.tensor(cfg.image_mean))
                and torch.allclose(torch.tensor(std), torch.tensor(cfg.image_std))):
            raise CheckpointError(f'checkpoint {path}: normalization {norm} disagrees with the '
                                  f'stored buffers mean={mean} std={std}')
    try:
        model.rig = CameraRig.from_dict(ckpt['rig']) if ckpt.get('rig') else None
    except ValueError as err:
        raise CheckpointError(f'checkpoint {path}: invalid rig: {err}') from None
    model.checkpoint_extra = dict(ckpt.get('extra') or {})
    return model.to(map_location).eval()


def has_action_head(path) -> bool:
    """Return whether the checkpoint carries an action head (cheap check before loading it)."""
    return read_checkpoint(path).get(ACTION_HEAD_KEY) is not None


def load_action_head(path, map_location='cpu') -> Optional[ActionHead]:
    """
    Rebuild the VLM-AD action head a checkpoint carries, in eval mode; None when it has none.

    The head's `config` is its VLMADConfig. Label sets that differ from this vlmad_ros's
    (vlmad_ros.labels) are an error: the class indices would mean other actions.
    """
    path = pathlib.Path(path)
    ckpt = read_checkpoint(path)
    stored = ckpt.get(ACTION_HEAD_KEY)
    if stored is None:
        return None
    if not isinstance(stored, dict) or not {'config', 'labels', 'state_dict'} <= set(stored):
        raise CheckpointError(f'checkpoint {path}: {ACTION_HEAD_KEY} needs config, labels and '
                              'state_dict')
    want = {k: list(v) for k, v in labels.LABEL_SETS.items()}
    if stored['labels'] != want:
        have = stored['labels'] if isinstance(stored['labels'], dict) else {}
        differ = sorted(k for k in set(want) | set(have) if have.get(k) != want.get(k))
        raise CheckpointError(f'checkpoint {path}: action head labels differ from this '
                              f"version's in {differ}: " + '; '.join(
                                  f'{k} {have.get(k)} vs {want.get(k)}' for k in differ))
    try:
        cfg = VLMADConfig.from_dict(dict(stored['config']))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f'checkpoint {path}: invalid action head config: {err}') from None
    d_model = ckpt['config'].get('d_model')
    if cfg.ego_dim != d_model:
        raise CheckpointError(f'checkpoint {path}: action head ego_dim {cfg.ego_dim} != the '
                              f"planner's d_model {d_model}")
    head = ActionHead(cfg)
    _check_state(path, 'its action head config', head.state_dict(), stored['state_dict'])
    head.load_state_dict(stored['state_dict'])
    return head.to(map_location).eval()
