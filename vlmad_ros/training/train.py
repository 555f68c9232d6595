"""
`vlmad train`: the planner with (or without) VLM-AD's auxiliary heads, on driving bags.

    vlmad train --data BAG_OR_DIR... --out RUN_DIR [--no-vlm-ad | --q1-only | --q2-only]
                [--model planner|ego_mlp] [--config FILE] [--val-data ...] [--resume]
                [--keep-action-head]
    torchrun --nproc_per_node N -m vlmad_ros.training.train --data ... --out ...   (DDP)

Reads top to bottom like nanoGPT's train.py: config -> data -> text targets -> model ->
optimizer (AdamW, warm-up + cosine) -> loop (train, validate with the shared metrics,
checkpoint). RUN_DIR receives config.yaml, TensorBoard events, metrics.jsonl, deployable
planner-only checkpoints (checkpoints/epoch_NNN.pt, best.pt by validation L2, last.pt) and
train_state.pt (model + heads + optimizer, for --resume). With --keep-action-head
(train.keep_action_head) the deployable checkpoints also carry the Q2 action head, for
planner_node's `explain`.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import os
import pathlib
import random
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from vlmad_ros import types as T
from vlmad_ros.evaluation.metrics import PlanningMetrics
from vlmad_ros.model.config import PlannerConfig
from vlmad_ros.model.heads import VLMADConfig
from vlmad_ros.model.planner_model import build_model
from vlmad_ros.model.vlmad import VLMADModel
import yaml

MODEL_INPUTS = (T.IMAGES, T.INTRINSICS, T.CAM_TO_BASE, T.EGO, T.COMMAND)
STATE_FILE = 'train_state.pt'


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
    val_fraction: float = 0.1     # held out of --data when no --val-data is given
    seed: int = 0
    num_workers: int = 0          # DataLoader workers (the sample cache is memory-mapped)
    device: str = 'cpu'           # cpu, cuda, cuda:N, auto
    amp: bool = True              # mixed precision, CUDA only
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

    def __post_init__(self):
        for name in ('epochs', 'batch_size'):
            if int(getattr(self, name)) < 1:
                raise ValueError(f'TrainConfig.{name} must be >= 1, got {getattr(self, name)}')
        for name in ('warmup_steps', 'num_workers', 'threads', 'log_images'):
            if int(getattr(self, name)) < 0:
                raise ValueError(f'TrainConfig.{name} must be >= 0, got {getattr(self, name)}')
        if not self.lr > 0:
            raise ValueError(f'TrainConfig.lr must be > 0, got {self.lr}')
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError('TrainConfig.min_lr_ratio must be in [0, 1], got '
                             f'{self.min_lr_ratio}')
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError('TrainConfig.weight_decay and grad_clip must be >= 0')
        if not 0 <= self.val_fraction < 1:
            raise ValueError('TrainConfig.val_fraction must be in [0, 1), got '
                             f'{self.val_fraction}')


def _from_dict(cls, d: Optional[Dict], what: str):
    d = dict(d or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f'{what}: unknown field(s) {unknown} (known: {sorted(known)})')
    return cls(**d)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--data', nargs='+', required=True, metavar='BAG_OR_DIR',
                        help='training bags (folders, .mcap files, or folders holding them)')
    parser.add_argument('--out', required=True, metavar='RUN_DIR', help='run directory')
    parser.add_argument('--val-data', nargs='+', default=None, metavar='BAG_OR_DIR',
                        help='validation bags (default: a val_fraction split of --data)')
    parser.add_argument('--config', default='', metavar='FILE',
                        help='YAML with sections train:, model:, vlmad: (dataclass fields)')
    parser.add_argument('--model', choices=('planner', 'ego_mlp'), default=None,
                        help='camera planner (default) or the ego-state-only MLP baseline')
    parser.add_argument('--backbone', default=None, help='overrides model.backbone: cnn, '
                        'resnet18, resnet34 or resnet50')
    parser.add_argument('--backbone-weights', default=None, metavar='FILE',
                        help='overrides model.backbone_weights: a local torchvision ImageNet '
                        'file (e.g. ~/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth)')
    aux = parser.add_mutually_exclusive_group()
    aux.add_argument('--no-vlm-ad', action='store_true', help='planning loss only (baseline)')
    aux.add_argument('--q1-only', action='store_true', help='alignment head only (no actions)')
    aux.add_argument('--q2-only', action='store_true', help='action head only (no text)')
    parser.add_argument('--resume', action='store_true', help='continue RUN_DIR/train_state.pt')
    parser.add_argument('--init', default='', metavar='CHECKPOINT',
                        help="start the planner from this checkpoint's weights (same model "
                        'config; a new run: optimizer, schedule and heads start fresh)')
    parser.add_argument('--keep-action-head', action='store_true', default=None,
                        help='store the trained action head in the checkpoints too, so the '
                             'planner can explain its plans (overrides train.keep_action_head)')
    parser.add_argument('--cache-dir', default='',
                        help='decoded-sample cache (default: $VLMAD_CACHE or ~/.cache/vlmad_ros)')
    parser.add_argument('--text-cache', default='',
                        help='text-embedding cache folder (default: beside the first --data)')
    parser.add_argument('--text-cache-only', action='store_true',
                        help='never load the text encoder: use the cached embeddings only')
    for name, typ in (('epochs', int), ('batch_size', int), ('lr', float), ('seed', int),
                      ('device', str), ('threads', int), ('num_workers', int),
                      ('text_encoder', str)):
        parser.add_argument('--' + name.replace('_', '-'), type=typ, default=None,
                            help=f'overrides train.{name}')


def resolve_configs(args) -> Dict[str, Any]:
    """Config file, then command-line overrides -> TrainConfig, PlannerConfig, VLMADConfig."""
    raw: Dict[str, Any] = {}
    if args.config:
        path = pathlib.Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f'--config: {path} not found')
        raw = yaml.safe_load(path.read_text()) or {}
        unknown = sorted(set(raw) - {'train', 'model', 'vlmad'})
        if unknown:
            raise ValueError(f'--config {path}: unknown section(s) {unknown} '
                             '(use train:, model:, vlmad:)')
    train = dict(raw.get('train') or {})
    for name in ('epochs', 'batch_size', 'lr', 'seed', 'device', 'threads', 'num_workers',
                 'text_encoder', 'keep_action_head'):
        if getattr(args, name, None) is not None:
            train[name] = getattr(args, name)
    if getattr(args, 'text_cache_only', False):
        train['text_cache_only'] = True
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


# ----- distributed -----

@dataclasses.dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device: torch.device) -> Dist:
    """Join the process group torchrun describes (WORLD_SIZE/RANK/LOCAL_RANK); gloo on CPU."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world <= 1:
        return Dist()
    import torch.distributed as dist
    dist.init_process_group(backend='nccl' if device.type == 'cuda' else 'gloo')
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get('LOCAL_RANK', '0')))


def resolve_device(name: str, local_rank: int) -> torch.device:
    name = name.strip().lower()
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    if name.startswith('cuda'):
        if not torch.cuda.is_available():
            raise ValueError(f'train.device: {name!r} requested but CUDA is not available')
        if name == 'cuda':   # an explicit index: torch.cuda.set_device needs one
            name = f'cuda:{local_rank if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0}'
    elif name != 'cpu':
        raise ValueError(f'train.device must be cpu, cuda, cuda:N or auto, got {name!r}')
    return torch.device(name)


# ----- data and text targets -----

def attach_text_targets(datasets, cache_dir, encoder: str, device: str = 'cpu',
                        log=print, cache_only: bool = False) -> Dict[str, np.ndarray]:
    """Embed every teacher text of the datasets once (cached on disk): text -> vector."""
    from vlmad_ros.data.dataset import TEXTS
    from vlmad_ros.training.text_encoder import TextEmbeddingCache
    texts: List[str] = []
    for ds in datasets:
        for cache in ds.caches:
            for rec in cache.meta[TEXTS]:
                if rec:
                    texts.extend(rec)
    if not texts:
        return {}
    cache = TextEmbeddingCache(cache_dir, encoder, device)
    if cache_only:
        table = cache.cached(texts)
        missing = len(set(texts)) - len(table)
        log(f'[text] cache only: {len(table)} distinct texts found, {missing} missing (their '
            f'frames train without the alignment loss), cache {cache.path}')
        return table
    table = cache.embed_unique(texts)
    log(f'[text] {len(table)} distinct texts, {cache.encoded} newly encoded by '
        f'{cache.encoder_id} ({cache.dim}-d), cache {cache.path}')
    return table


class TextCollate:
    """
    dataset.collate + TEXT_EMB (B, 3, D) looked up from the precomputed table.

    Without a table (no alignment head: baseline or Q2 only) the embeddings stay zero and
    TEXT_VALID keeps saying which frames have a teacher record, for the action head.
    """

    def __init__(self, table: Dict[str, np.ndarray], dim: int):
        self.table = table
        self.dim = dim

    def __call__(self, items):
        from vlmad_ros.data.dataset import collate, TEXTS
        batch = collate(items)
        emb = np.zeros((len(items), 3, self.dim), np.float32)
        valid = batch[T.TEXT_VALID].clone()
        for b, texts in enumerate(batch.pop(TEXTS)):
            if not (valid[b] and self.table):
                continue
            if all(t in self.table for t in texts):
                emb[b] = np.stack([self.table[t] for t in texts])
            else:
                valid[b] = False
        batch[T.TEXT_EMB] = torch.from_numpy(emb)
        batch[T.TEXT_VALID] = valid
        return batch


def split_dataset(dataset, fraction: float, seed: int):
    """Random (seeded) train/val split of one dataset's samples."""
    n = len(dataset)
    n_val = int(round(n * fraction)) if fraction > 0 else 0
    if n_val == 0 or n - n_val < 1:
        return dataset, None
    perm = np.random.default_rng(seed).permutation(n)
    return (torch.utils.data.Subset(dataset, perm[n_val:].tolist()),
            torch.utils.data.Subset(dataset, sorted(perm[:n_val].tolist())))


# ----- schedule, evaluation, images -----

def lr_lambda(tc: TrainConfig, total_steps: int):
    """Linear warm-up, then cosine from 1 to min_lr_ratio over the remaining steps."""
    def f(step: int) -> float:
        if step < tc.warmup_steps:
            return (step + 1) / tc.warmup_steps
        progress = (step - tc.warmup_steps) / max(1, total_steps - tc.warmup_steps)
        progress = min(1.0, progress)
        return tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return f


@torch.no_grad()
def validate(planner: torch.nn.Module, loader, device: torch.device, autocast, keep: int = 0):
    """
    Run the planner alone (as deployed) over the validation set -> PlanningMetrics.

    Also returns up to `keep` (batch, pred) pairs of one sample each, spread over the set
    (for the TensorBoard images: the first samples are often one standing scene).
    """
    from vlmad_ros.data.dataset import SCENARIO
    was_training = planner.training
    planner.eval()
    metrics = PlanningMetrics()
    kept = []
    stride = max(1, len(loader) // keep) if keep else 0
    for i, batch in enumerate(loader):
        inputs = {k: batch[k].to(device) for k in MODEL_INPUTS}
        with autocast():
            out = planner(inputs)
        pred = out[T.TRAJ].float().cpu()
        metrics.add_batch(pred, batch[T.TRAJ], batch[T.FUTURE_BOXES], batch[SCENARIO])
        if stride and i % stride == 0 and len(kept) < keep:
            j = len(pred) // 2
            kept.append(({k: batch[k][j:j + 1] for k in (T.IMAGES, T.INTRINSICS,
                                                         T.CAM_TO_BASE, T.TRAJ)},
                         pred[j:j + 1]))
    planner.train(was_training)
    return metrics, kept


def path_images(batch, pred: torch.Tensor, count: int) -> List[np.ndarray]:
    """Front camera with the ground-truth (green) and predicted (red) paths, (H, W, 3) uint8."""
    from vlmad_ros.rig import Camera, CAMERA_NAMES, matrix_to_quat_wxyz
    from vlmad_ros.teacher.overlay import draw_path
    from vlmad_ros.types import Trajectory
    out = []
    front = CAMERA_NAMES.index('CAM_FRONT')
    for b in range(min(count, len(pred))):
        img = batch[T.IMAGES][b, front].permute(1, 2, 0).numpy()
        k = batch[T.INTRINSICS][b, front].numpy().astype(np.float64)
        tbc = batch[T.CAM_TO_BASE][b, front].numpy().astype(np.float64)
        cam = Camera('CAM_FRONT', img.shape[1], img.shape[0], k[0, 0], k[1, 1], k[0, 2],
                     k[1, 2], tuple(tbc[:3, 3]), tuple(matrix_to_quat_wxyz(tbc[:3, :3])))
        width = max(1, img.shape[1] // 100)
        img = draw_path(img, cam, Trajectory.from_xy(batch[T.TRAJ][b].numpy()),
                        color=(0, 220, 0), width=width)
        img = draw_path(img, cam, Trajectory.from_xy(pred[b].numpy()), color=(255, 0, 0),
                        width=width)
        out.append(img)
    return out


def flat_metrics(res: Dict, prefix: str = 'val/') -> Dict[str, float]:
    out = {}
    for metric in ('l2', 'collision'):
        for proto, short in (('avg_over_horizon', 'avg'), ('at_horizon', 'at')):
            for key, v in res[metric][proto].items():
                out[f'{prefix}{metric}_{short}_{key}'] = v
    return out


def l2_score(res: Dict) -> float:
    """Model selection: mean of the 1/2/3 s L2 under the average protocol (lower is better)."""
    return float(np.mean(list(res['l2']['avg_over_horizon'].values())))


# ----- main -----

def main(args) -> int:
    try:
        cfgs = resolve_configs(args)
    except (FileNotFoundError, ValueError) as err:
        print(f'vlmad train: {err}', file=sys.stderr)
        return 2
    tc: TrainConfig = cfgs['train']
    pc: PlannerConfig = cfgs['model']
    vc: VLMADConfig = cfgs['vlmad']
    use_heads = vc.use_alignment or vc.use_action
    out_dir = pathlib.Path(args.out)
    state_path = out_dir / STATE_FILE
    if state_path.exists() and not args.resume:
        print(f'vlmad train: {out_dir} already holds a run; pass --resume to continue it or '
              'choose another --out', file=sys.stderr)
        return 2

    # -- processes, device, seeds
    dist_info = init_distributed(torch.device('cuda' if tc.device.startswith('cuda') or (
        tc.device == 'auto' and torch.cuda.is_available()) else 'cpu'))
    try:
        device = resolve_device(tc.device, dist_info.local_rank)
    except ValueError as err:
        print(f'vlmad train: {err}', file=sys.stderr)
        return 2
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    random.seed(tc.seed + dist_info.rank)
    np.random.seed(tc.seed + dist_info.rank)
    torch.manual_seed(tc.seed)             # same initial weights on every rank
    master = dist_info.master

    def log(msg: str) -> None:
        if master:
            print(msg, flush=True)

    use_amp = tc.amp and device.type == 'cuda'

    def autocast():
        if not use_amp:
            return contextlib.nullcontext()
        return torch.autocast('cuda', dtype=torch.float16)

    # -- data (rank 0 builds the sample caches first; the others then read them)
    from vlmad_ros.bagschema import bag_paths
    from vlmad_ros.data.dataset import BagDataset, TEXTS
    from vlmad_ros.training.text_encoder import default_cache_dir
    cache_dir = args.cache_dir or None
    try:
        train_bags = bag_paths(args.data)
        val_bags = bag_paths(args.val_data) if args.val_data else []
    except FileNotFoundError as err:
        print(f'vlmad train: {err}', file=sys.stderr)
        return 2
    datasets = {}
    for turn in ((0,) if not dist_info.enabled else (0, 1)):
        if (turn == 0) == master:
            datasets['train'] = BagDataset(train_bags, pc, cache_dir, verbose=master)
            datasets['val'] = (BagDataset(val_bags, pc, cache_dir, verbose=master)
                               if val_bags else None)
        if dist_info.enabled:
            torch.distributed.barrier()
    full_train = datasets['train']
    if len(full_train) == 0:
        print(f'vlmad train: no samples in {args.data} (stats: {full_train.stats.as_dict()})',
              file=sys.stderr)
        return 2
    if datasets['val'] is not None:
        train_set, val_set = full_train, datasets['val']
    else:
        train_set, val_set = split_dataset(full_train, tc.val_fraction, tc.seed)
    log(f'[data] train {len(train_set)} samples from {len(train_bags)} bag(s), val '
        f'{len(val_set) if val_set is not None else 0}; skipped: '
        f'{full_train.stats.skipped_no_future} without 3 s future')

    # -- text targets (frozen encoder, embedded once, cached beside the data)
    table: Dict[str, np.ndarray] = {}
    text_dim = vc.text_dim
    if vc.use_alignment:
        text_cache = args.text_cache or default_cache_dir([str(p) for p in train_bags])
        for turn in ((0,) if not dist_info.enabled else (0, 1)):
            if (turn == 0) == master:
                table = attach_text_targets([full_train], text_cache, tc.text_encoder,
                                            log=log, cache_only=tc.text_cache_only)
            if dist_info.enabled:
                torch.distributed.barrier()
        if not table and tc.text_cache_only and any(
                rec for c in full_train.caches for rec in c.meta[TEXTS]):
            # Teacher texts exist but none is cached: every frame trains without the
            # alignment loss (the action head still reads the records).
            log('[text] cache only: no teacher text is cached; training without the '
                'alignment loss (Q1)')
            vc = dataclasses.replace(vc, align_weight=0.0)
            use_heads = vc.use_alignment or vc.use_action
        elif not table:
            print('vlmad train: the alignment head needs DrivingReasoning records in the '
                  'training bags (run `vlmad annotate`), or pass --no-vlm-ad / --q2-only',
                  file=sys.stderr)
            return 2
        else:
            text_dim = len(next(iter(table.values())))
            vc = dataclasses.replace(vc, text_dim=text_dim)
    n_records = int(sum(np.sum(c.arrays['text_valid']) for c in full_train.caches
                        if c.count)) if full_train.caches else 0
    if vc.use_action and not vc.use_alignment and n_records == 0:
        print('vlmad train: the action head needs DrivingReasoning records (run `vlmad '
              'annotate`), or pass --no-vlm-ad', file=sys.stderr)
        return 2
    collate = TextCollate(table, text_dim)
    sampler = (torch.utils.data.distributed.DistributedSampler(
        train_set, dist_info.world, dist_info.rank, shuffle=True, seed=tc.seed)
        if dist_info.enabled else None)
    generator = torch.Generator()
    train_loader = torch.utils.data.DataLoader(
        train_set, batch_size=tc.batch_size, shuffle=sampler is None, sampler=sampler,
        generator=generator, num_workers=tc.num_workers, collate_fn=collate, drop_last=False,
        persistent_workers=tc.num_workers > 0)
    val_loader = (torch.utils.data.DataLoader(val_set, batch_size=tc.batch_size,
                                              collate_fn=collate, num_workers=tc.num_workers)
                  if val_set is not None and master else None)

    # -- model: planner + training-only heads
    model = VLMADModel(build_model(pc), vc if use_heads else None)
    if args.init:
        try:
            init_planner(model, args.init, pc)
        except (FileNotFoundError, ValueError) as err:
            print(f'vlmad train: --init: {err}', file=sys.stderr)
            return 2
        log(f'[model] planner weights from {args.init} (heads start fresh)')
    model = model.to(device)
    n_planner = sum(p.numel() for p in model.planner.parameters())
    n_heads = sum(p.numel() for p in model.heads.parameters()) if model.heads else 0
    log(f'[model] {pc.kind}: {n_planner / 1e6:.2f} M parameters; VLM-AD heads '
        f'{n_heads / 1e6:.2f} M (training only); align_weight={vc.align_weight} '
        f'action_weight={vc.action_weight}')

    # -- optimizer: AdamW (no decay on norms, biases, queries), warm-up + cosine
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and 'queries' not in name else no_decay).append(p)
    optimizer = torch.optim.AdamW([{'params': decay, 'weight_decay': tc.weight_decay},
                                   {'params': no_decay, 'weight_decay': 0.0}], lr=tc.lr)
    total_steps = tc.epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(tc, total_steps))
    scaler = torch.amp.GradScaler('cuda', enabled=use_amp)

    start_epoch, global_step, best = 0, 0, float('inf')
    resolved = {'train': dataclasses.asdict(tc), 'model': pc.to_dict(), 'vlmad': vc.to_dict()}
    if args.resume and state_path.exists():
        state = torch.load(state_path, map_location='cpu', weights_only=True)
        if state['config']['model'] != resolved['model'] or \
                state['config']['vlmad'] != resolved['vlmad']:
            print(f'vlmad train: --resume: {state_path} was trained with another model/vlmad '
                  'config; start a new --out', file=sys.stderr)
            return 2
        model.load_state_dict(state['model'])
        optimizer.load_state_dict(state['optimizer'])
        scheduler.load_state_dict(state['scheduler'])
        scaler.load_state_dict(state['scaler'])
        start_epoch, global_step, best = state['epoch'], state['global_step'], state['best']
        log(f'[resume] from epoch {start_epoch} (step {global_step}, best L2 {best:.3f})')
    ddp_model = model
    if dist_info.enabled:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == 'cuda' else None)

    writer = None
    if master:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / 'config.yaml').write_text(yaml.safe_dump(resolved, sort_keys=False))
        writer = make_writer(out_dir / 'tensorboard', log)
    rig = _first_rig(train_bags) if master else None
    meta = {'data': [str(p) for p in train_bags], 'seed': tc.seed,
            'vlm_ad': {'align_weight': vc.align_weight, 'action_weight': vc.action_weight},
            'text_encoder': tc.text_encoder if vc.use_alignment else '',
            'keep_action_head': tc.keep_action_head}
    export = functools.partial(model.export, rig=rig, keep_action_head=tc.keep_action_head)

    # -- loop
    for epoch in range(start_epoch, tc.epochs):
        t0 = time.time()
        model.train()
        if sampler is not None:
            sampler.set_epoch(epoch)
        generator.manual_seed(tc.seed * 1000 + epoch)   # same order after --resume
        train_logs, global_step = train_epoch(
            ddp_model, model, train_loader, (optimizer, scheduler, scaler), tc, device,
            autocast, writer, global_step, f'epoch {epoch + 1}/{tc.epochs}')

        record: Dict[str, Any] = {'epoch': epoch + 1, 'step': global_step,
                                  'lr': scheduler.get_last_lr()[0],
                                  'train': train_logs, 'seconds': round(time.time() - t0, 1)}
        if master:
            ckpt_dir = out_dir / 'checkpoints'
            meta_epoch = dict(meta, epoch=epoch + 1)
            if val_loader is not None:
                metrics, kept = validate(model.planner, val_loader, device, autocast,
                                         tc.log_images)
                res = metrics.compute()
                record['val'] = res
                for k, v in flat_metrics(res).items():
                    if math.isfinite(v):
                        writer.add_scalar(k, v, global_step)
                for i, (one, pred) in enumerate(kept):
                    writer.add_image(f'val/front_paths_{i}', path_images(one, pred, 1)[0],
                                     global_step, dataformats='HWC')
                score = l2_score(res)
                meta_epoch['val'] = {'l2_avg': score, 'samples': res['samples']}
                if score < best:
                    best = score
                    export(out_dir / 'best.pt', extra=meta_epoch)
                    record['best'] = True
            else:
                export(out_dir / 'best.pt', extra=meta_epoch)
            if tc.keep_epoch_checkpoints:
                export(ckpt_dir / f'epoch_{epoch + 1:03d}.pt', extra=meta_epoch)
            export(out_dir / 'last.pt', extra=meta_epoch)
            torch.save({'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
                        'scheduler': scheduler.state_dict(), 'scaler': scaler.state_dict(),
                        'epoch': epoch + 1, 'global_step': global_step, 'best': best,
                        'config': resolved}, state_path.with_suffix('.tmp'))
            state_path.with_suffix('.tmp').replace(state_path)
            with open(out_dir / 'metrics.jsonl', 'a') as f:
                f.write(json.dumps(record) + '\n')
            log(epoch_line(record))
        if dist_info.enabled:
            torch.distributed.barrier()
    if writer is not None:
        writer.close()
    if dist_info.enabled:
        torch.distributed.destroy_process_group()
    log(f'[done] {out_dir / "best.pt"} (best val L2 avg {best:.3f} m)')
    return 0


def init_planner(model, path, config: PlannerConfig) -> None:
    """Load a deployable checkpoint's planner weights into `model.planner` (configs must match)."""
    from vlmad_ros.model.checkpoint import load_checkpoint
    if not pathlib.Path(path).is_file():
        raise FileNotFoundError(f'{path} not found')
    source = load_checkpoint(path)
    if source.config.to_dict() != config.to_dict():
        diff = {k: (v, config.to_dict()[k]) for k, v in source.config.to_dict().items()
                if config.to_dict().get(k) != v}
        raise ValueError(f'{path} has another model config (checkpoint, --config): {diff}')
    model.planner.load_state_dict(source.state_dict())


def train_epoch(ddp_model, model, loader, optim, tc: TrainConfig, device, autocast, writer,
                global_step: int, desc: str):
    """One pass over the training data; returns the epoch's mean losses and the step count."""
    from tqdm import tqdm
    optimizer, scheduler, scaler = optim
    sums: Dict[str, float] = {}
    counts: Dict[str, int] = {}
    bar = tqdm(loader, desc=desc, disable=writer is None, mininterval=2.0, dynamic_ncols=True,
               file=sys.stdout)
    for batch in bar:
        batch = {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v)
                 for k, v in batch.items()}
        with autocast():
            loss, logs = ddp_model(batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if tc.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        global_step += 1
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + float(v)
            counts[k] = counts.get(k, 0) + 1
        if writer is not None:     # rank 0 only
            writer.add_scalar('train/lr', scheduler.get_last_lr()[0], global_step)
            for k, v in logs.items():
                writer.add_scalar(f'train/{k}', float(v), global_step)
            bar.set_postfix(loss=f'{logs["loss"]:.3f}', refresh=False)
    return {k: sums[k] / counts[k] for k in sums}, global_step


def epoch_line(record: Dict[str, Any]) -> str:
    """Format the one log line of an epoch: losses, validation L2 and collisions, time."""
    train_logs = record['train']
    val_txt = ''
    if 'val' in record:
        r = record['val']
        val_txt = (' | val L2 avg 1/2/3 s '
                   + '/'.join(f'{v:.2f}' for v in r['l2']['avg_over_horizon'].values())
                   + ' m, coll. '
                   + '/'.join(f'{v:.2f}' for v in r['collision']['avg_over_horizon'].values())
                   + ' %')
    nan = float('nan')
    return (f'[epoch {record["epoch"]}] loss {train_logs.get("loss", nan):.3f} '
            f'(plan {train_logs.get("loss_planning", nan):.3f}'
            + (f', align {train_logs["align_loss"]:.3f}' if 'align_loss' in train_logs else '')
            + (f', action {train_logs["action_loss"]:.3f}' if 'action_loss' in train_logs
               else '')
            + f'){val_txt} [{record["seconds"]} s]')


class _NoWriter:
    """Stands in for SummaryWriter where TensorBoard does not import (metrics.jsonl stays)."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def make_writer(path: pathlib.Path, log=print):
    """Return TensorBoard's SummaryWriter, or a no-op with a warning where it is broken."""
    try:
        from torch.utils.tensorboard import SummaryWriter
        return SummaryWriter(str(path))
    except Exception as err:  # a tensorboard/protobuf/numpy mismatch must not stop training
        log(f'[warn] TensorBoard unavailable ({type(err).__name__}: {err}); '
            'metrics.jsonl still records every epoch')
        return _NoWriter()


def _first_rig(bags):
    """Return the rig of the first sample (native resolution), stored in checkpoints."""
    from vlmad_ros.data.reader import read_samples
    for bag in bags:
        for raw in read_samples(bag):
            return raw.rig
    return None


if __name__ == '__main__':
    parser = argparse.ArgumentParser(prog='vlmad train (torchrun)')
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
