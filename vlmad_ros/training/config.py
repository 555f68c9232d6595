"""`vlmad train` configuration: TrainConfig and the config file + command line resolution."""
from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Dict, Optional

from vlmad_ros.model.config import PlannerConfig
from vlmad_ros.model.heads import VLMADConfig
import yaml

PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')


@dataclasses.dataclass
class TrainConfig:
    """Optimisation and bookkeeping; model and heads have their own dataclasses."""

    epochs: int = 10
    batch_size: int = 16          # per process
    lr: float = 1e-3              # AdamW peak learning rate
    min_lr_ratio: float = 0.05    # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0        # max gradient norm; 0 disables
    # Held out of --data when no --val-data is given, by whole bags (scenes): neighbouring
    # frames of one scene never sit on both sides.
    val_fraction: float = 0.1
    seed: int = 0
    num_workers: int = -1         # DataLoader workers; -1 = spare CPUs (0 under 4, max 8)
    device: str = 'cpu'           # cpu, cuda, cuda:N, auto
    # auto: bf16 autocast on CUDA where supported (else fp16 + GradScaler), fp32 on CPU.
    precision: str = 'auto'
    amp: bool = True              # False forces fp32 (older configs); prefer `precision`
    channels_last: bool = True    # NHWC convolutions on CUDA (ignored on CPU)
    torch_compile: bool = False   # torch.compile the training forward (--compile)
    log_every: int = 20           # steps between loss read-backs (TensorBoard, progress bar)
    threads: int = 0              # torch CPU threads per process; 0 = torch default
    text_encoder: str = 'minilm'  # 'minilm' or 'clip:<local dir>' (training/text_encoder.py)
    # Use only the embeddings already in the text cache and never load the encoder (machines
    # without its weights); frames whose texts are missing train without the alignment loss.
    text_cache_only: bool = False
    log_images: int = 4           # validation samples drawn to TensorBoard per epoch
    keep_epoch_checkpoints: bool = True
    # Also store the trained Q2 action head in the deployable checkpoints (planner_node
    # `explain`); off so that default checkpoints stay planner-only.
    keep_action_head: bool = False
    # Leave out keyframes whose light ahead turns from stop to go (or back) within the 3 s
    # future: their labels answer a lamp change the images do not show yet.
    drop_light_changes: bool = False
    # Draw keyframes whose future the ego state cannot extrapolate (the benchmark's hard subset:
    # a light, a braking lead, a pedestrian) this many times as often as the others.
    hard_weight: float = 1.0
    # Draw keyframes where the ego stands and the expert moves off, with the light ahead not
    # changing within the future (the reason to go is in the images: a green light, a lead car
    # or a pedestrian gone), this many times as often. Without its acceleration input a planner
    # must see why to start, and such keyframes are 0.5 % of the synthetic train split.
    start_weight: float = 1.0
    # Weight of a training-only auxiliary loss: the light governing the path (none, red,
    # yellow, green, from the bags' ground truth) predicted from the ego feature. 0 = off.
    light_weight: float = 0.0

    def __post_init__(self):
        for name in ('epochs', 'batch_size', 'log_every'):
            if int(getattr(self, name)) < 1:
                raise ValueError(f'TrainConfig.{name} must be >= 1, got {getattr(self, name)}')
        for name in ('warmup_steps', 'threads', 'log_images'):
            if int(getattr(self, name)) < 0:
                raise ValueError(f'TrainConfig.{name} must be >= 0, got {getattr(self, name)}')
        if int(self.num_workers) < -1:
            raise ValueError('TrainConfig.num_workers must be >= 0 or -1 (auto), got '
                             f'{self.num_workers}')
        if self.precision not in PRECISIONS:
            raise ValueError(f'TrainConfig.precision must be one of {PRECISIONS}, got '
                             f'{self.precision!r}')
        if not self.lr > 0:
            raise ValueError(f'TrainConfig.lr must be > 0, got {self.lr}')
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError('TrainConfig.min_lr_ratio must be in [0, 1], got '
                             f'{self.min_lr_ratio}')
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError('TrainConfig.weight_decay and grad_clip must be >= 0')
        if self.light_weight < 0:
            raise ValueError(f'TrainConfig.light_weight must be >= 0, got {self.light_weight}')
        for name in ('hard_weight', 'start_weight'):
            if not getattr(self, name) > 0:
                raise ValueError(f'TrainConfig.{name} must be > 0, got {getattr(self, name)}')
        if not 0 <= self.val_fraction < 1:
            raise ValueError('TrainConfig.val_fraction must be in [0, 1), got '
                             f'{self.val_fraction}')

    def workers(self, world: int = 1) -> int:
        """Count the DataLoader workers per process: as configured, or the spare CPUs."""
        if self.num_workers >= 0:
            return self.num_workers
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (
            os.cpu_count() or 1)
        per_process = cpus // max(1, world)
        # Two or three cores: a worker competes with the training step for them.
        return 0 if per_process < 4 else min(8, per_process - 1)


# Fields that change how fast a run goes, not what it computes: a rerun that differs only in
# these still continues the run (same command on another machine).
RUNTIME_FIELDS = ('num_workers', 'threads', 'log_every', 'log_images', 'torch_compile')


def _from_dict(cls, d: Optional[Dict], what: str):
    d = dict(d or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f'{what}: unknown field(s) {unknown} (known: {sorted(known)})')
    return cls(**d)


TRAIN_OVERRIDES = ('epochs', 'batch_size', 'lr', 'seed', 'device', 'threads', 'num_workers',
                   'text_encoder', 'keep_action_head', 'precision', 'log_every')


SECTIONS = ('train', 'model', 'vlmad')


def _read_file(name: str, including: tuple = ()) -> Dict[str, Any]:
    """
    Read a config file; `base: OTHER.yaml` (relative to the file) is read first.

    An experiment is then its base recipe plus the fields it changes, section by section.
    """
    if not name:
        return {}
    path = pathlib.Path(name)
    if not path.is_file():
        what = f'base of {including[-1]}' if including else '--config'
        raise FileNotFoundError(f'{what}: {path} not found')
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f'--config {path}: expected a mapping with train:, model:, vlmad:')
    unknown = sorted(set(raw) - {'base', *SECTIONS})
    if unknown:
        raise ValueError(f'--config {path}: unknown section(s) {unknown} '
                         '(use base:, train:, model:, vlmad:)')
    if 'base' not in raw:
        return raw
    base = path.parent / str(raw['base'])
    if base.resolve() in {p.resolve() for p in (*including, path)}:
        raise ValueError(f'--config {path}: base {base} includes itself')
    merged = _read_file(str(base), (*including, path))
    return {section: {**(merged.get(section) or {}), **(raw.get(section) or {})}
            for section in SECTIONS}


def resolve_configs(args) -> Dict[str, Any]:
    """Config file, then command-line overrides -> TrainConfig, PlannerConfig, VLMADConfig."""
    raw = _read_file(args.config)
    train = dict(raw.get('train') or {})
    for name in TRAIN_OVERRIDES:
        if getattr(args, name, None) is not None:
            train[name] = getattr(args, name)
    if getattr(args, 'text_cache_only', False):
        train['text_cache_only'] = True
    if getattr(args, 'compile', None):
        train['torch_compile'] = True
    model = dict(raw.get('model') or {})
    if args.model:
        model['kind'] = 'camera' if args.model == 'planner' else 'ego_mlp'
    for name in ('backbone', 'backbone_weights'):
        if getattr(args, name, None) is not None:
            model[name] = getattr(args, name)
    vlmad = dict(raw.get('vlmad') or {})
    if args.no_vlm_ad:
        vlmad.update(align_weight=0.0, action_weight=0.0)
    elif args.q1_only:
        vlmad['action_weight'] = 0.0
    elif args.q2_only:
        vlmad['align_weight'] = 0.0
    tc = _from_dict(TrainConfig, train, 'train')
    pc = _from_dict(PlannerConfig, model, 'model')
    vlmad.setdefault('ego_dim', pc.d_model)
    vc = _from_dict(VLMADConfig, vlmad, 'vlmad')
    if tc.keep_action_head and not vc.use_action:
        raise ValueError('train.keep_action_head (--keep-action-head) needs the action head: '
                         'vlmad.action_weight > 0, not --no-vlm-ad or --q1-only')
    return {'train': tc, 'model': pc, 'vlmad': vc}
