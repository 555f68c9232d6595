"""
`vlmad train`: the planner with (or without) VLM-AD's auxiliary heads, on driving bags.

    vlmad train --data BAG_OR_DIR... --out RUN_DIR [--no-vlm-ad | --q1-only | --q2-only]
                [--model planner|ego_mlp] [--config FILE] [--val-data ...] [--resume]
                [--keep-action-head] [--precision auto|fp32|bf16|fp16] [--compile]
                [--log-every N]
    torchrun --nproc_per_node N -m vlmad_ros.training.train --data ... --out ...   (DDP)

main() reads top to bottom: set-up -> data (training/data.py) -> text targets -> model ->
optimizer (training/loop.py: AdamW, warm-up + cosine) -> resume -> loop (train, validate:
every DDP rank its shard, metrics merged; epoch outputs). RUN_DIR receives config.yaml,
TensorBoard events, metrics.jsonl, deployable planner-only checkpoints
(checkpoints/epoch_NNN.pt, best.pt by validation L2, last.pt) and train_state.pt (model,
heads, optimizer, schedule, scaler, RNG states: training/checkpointing.py). Killed at any
point, the same command continues from the last finished epoch and ends with the weights of
an uninterrupted run. With --keep-action-head (train.keep_action_head) the deployable
checkpoints also carry the Q2 action head, for planner_node's `explain`.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import pathlib
import random
import sys
import time
from typing import Any, Dict, List

import numpy as np
import torch

from vlmad_ros.model.config import PlannerConfig
from vlmad_ros.model.heads import VLMADConfig
from vlmad_ros.model.planner_model import build_model
from vlmad_ros.model.vlmad import VLMADModel
from vlmad_ros.training.checkpointing import (
    append_metrics, atomic_write_text, load_state, METRICS_FILE, restore, rewrite_metrics,
    save_state, STATE_FILE)
from vlmad_ros.training.config import resolve_configs, RUNTIME_FIELDS, TrainConfig
from vlmad_ros.training.data import (
    attach_text_targets, make_loaders, select_training_samples, split_by_scene, TextCollate)
from vlmad_ros.training.loop import (
    compiled, make_optimizer, Precision, train_epoch, val_shard, validate)
from vlmad_ros.training.report import (
    epoch_line, flat_metrics, l2_score, make_writer, path_images)
import yaml


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
    parser.add_argument('--resume', action='store_true',
                        help='continue RUN_DIR/train_state.pt, also with another train config '
                        '(e.g. more --epochs); rerunning the same command continues without it')
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
                      ('text_encoder', str), ('precision', str), ('log_every', int)):
        parser.add_argument('--' + name.replace('_', '-'), type=typ, default=None,
                            help=f'overrides train.{name}')
    parser.add_argument('--compile', action='store_true', default=None,
                        help='torch.compile the training forward (overrides train.torch_compile)')


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


# ----- the run: set-up, data, text targets, model, resume, loop, epoch outputs -----

class UsageError(Exception):
    """A bad option or missing input: main prints it and returns 2."""


@dataclasses.dataclass
class Run:
    """What every part of a run reads: configs, processes, device, precision, output."""

    tc: TrainConfig
    pc: PlannerConfig
    vc: VLMADConfig
    out_dir: pathlib.Path
    dist: Dist
    device: torch.device
    precision: Precision

    @property
    def master(self) -> bool:
        return self.dist.master

    def log(self, msg: str) -> None:
        if self.master:
            print(msg, flush=True)

    def resolved(self, train_bags) -> Dict[str, Any]:
        return {'train': dataclasses.asdict(self.tc), 'model': self.pc.to_dict(),
                'vlmad': self.vc.to_dict(), 'data': [str(p) for p in train_bags]}


def set_up(args) -> Run:
    """Configs, process group, device, threads, seeds and precision."""
    try:
        cfgs = resolve_configs(args)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(err) from err
    tc: TrainConfig = cfgs['train']
    if int(os.environ.get('WORLD_SIZE', '1')) > 1:
        require_caches(args, cfgs['model'])       # before any rank waits for another
    dist_info = init_distributed(torch.device('cuda' if tc.device.startswith('cuda') or (
        tc.device == 'auto' and torch.cuda.is_available()) else 'cpu'))
    try:
        device = resolve_device(tc.device, dist_info.local_rank)
        precision = Precision(tc.precision, tc.amp, device)
    except ValueError as err:
        raise UsageError(err) from err
    if device.type == 'cuda':
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if tc.threads:
        torch.set_num_threads(tc.threads)
    random.seed(tc.seed + dist_info.rank)
    np.random.seed(tc.seed + dist_info.rank)
    torch.manual_seed(tc.seed)             # same initial weights on every rank
    return Run(tc, cfgs['model'], cfgs['vlmad'], pathlib.Path(args.out), dist_info, device,
               precision)


def require_caches(args, pc: PlannerConfig) -> None:
    """
    Refuse a DDP run whose sample caches are missing, naming the command that builds them.

    Decoding inside the run would keep one rank busy while the others wait at a collective
    (NCCL gives up after 10 minutes); `vlmad cache build` decodes on every core beforehand.
    """
    from vlmad_ros.bagschema import bag_paths
    from vlmad_ros.data.dataset import missing_caches
    try:
        bags = bag_paths(args.data) + (bag_paths(args.val_data) if args.val_data else [])
    except FileNotFoundError as err:
        raise UsageError(err) from err
    missing = missing_caches(bags, pc, args.cache_dir or None)
    if missing:
        cmd = cache_build_command(args, *(args.val_data or []))
        raise UsageError(f'{len(missing)} of {len(bags)} bags have no sample cache for this '
                         f'model (first: {missing[0]}); a DDP run does not decode bags. Build '
                         f'them first on every core: {cmd}')


def load_data(run: Run, args):
    """Bags -> datasets (caches built on every core; under DDP built beforehand) and split."""
    from vlmad_ros.bagschema import bag_paths
    from vlmad_ros.data.dataset import BagDataset
    try:
        train_bags = bag_paths(args.data)
        val_bags = bag_paths(args.val_data) if args.val_data else []
    except FileNotFoundError as err:
        raise UsageError(err) from err
    opts = {'cache_dir': args.cache_dir or None, 'verbose': run.master,
            'workers': os.cpu_count() or 1, 'build': not run.dist.enabled}
    datasets = {'train': BagDataset(train_bags, run.pc, **opts),
                'val': BagDataset(val_bags, run.pc, **opts) if val_bags else None}
    full_train = datasets['train']
    if len(full_train) == 0:
        raise UsageError(f'no samples in {args.data} (stats: {full_train.stats.as_dict()})')
    if datasets['val'] is not None:
        train_set, val_set, how = full_train, datasets['val'], '--val-data'
    else:
        train_set, val_set, how = split_by_scene(full_train, run.tc.val_fraction, run.tc.seed)
    run.log(f'[data] train {len(train_set)} samples from {len(train_bags)} bag(s), val '
            f'{len(val_set) if val_set is not None else 0} ({how}); skipped: '
            f'{full_train.stats.skipped_no_future} without 3 s future')
    return full_train, train_set, val_set, train_bags


def cache_build_command(args, *extra: str) -> str:
    """Return the `vlmad cache build` line that prepares this run's data (for refusals)."""
    return ' '.join(['vlmad cache build', *args.data, *extra]
                    + (['--config', args.config] if args.config else [])
                    + (['--cache-dir', args.cache_dir] if args.cache_dir else []))


def _require_all_texts(args, full_train, table, text_cache) -> None:
    """Refuse a DDP run whose teacher texts are not all embedded, naming the command."""
    from vlmad_ros.data.dataset import TEXTS
    texts = {t for c in full_train.caches for rec in c.meta[TEXTS] if rec for t in rec}
    missing = len(texts - set(table))
    if missing:
        cmd = cache_build_command(args, '--text-cache', str(text_cache))
        raise UsageError(f'{missing} of {len(texts)} teacher texts have no embedding in '
                         f'{text_cache}; a DDP run does not encode texts. Embed them first: '
                         f'{cmd} (or pass --text-cache-only to train those frames without '
                         'the alignment loss)')


def text_targets(run: Run, args, full_train, train_bags):
    """Embed the teacher texts once (frozen encoder, cached); may switch the alignment off."""
    from vlmad_ros.data.dataset import TEXTS
    from vlmad_ros.training.text_encoder import default_cache_dir
    table: Dict[str, np.ndarray] = {}
    vc = run.vc
    if vc.use_alignment:
        text_cache = args.text_cache or default_cache_dir([str(p) for p in train_bags])
        # Under DDP every rank reads the cache only: no rank encodes while the others wait
        # at a collective (`vlmad cache build --config` embeds the texts beforehand).
        cache_only = run.tc.text_cache_only or run.dist.enabled
        table = attach_text_targets([full_train], text_cache, run.tc.text_encoder,
                                    log=run.log, cache_only=cache_only)
        if run.dist.enabled and not run.tc.text_cache_only:
            _require_all_texts(args, full_train, table, text_cache)
        if not table and run.tc.text_cache_only and any(
                rec for c in full_train.caches for rec in c.meta[TEXTS]):
            # Teacher texts exist but none is cached: every frame trains without the
            # alignment loss (the action head still reads the records).
            run.log('[text] cache only: no teacher text is cached; training without the '
                    'alignment loss (Q1)')
            run.vc = vc = dataclasses.replace(vc, align_weight=0.0)
        elif not table:
            raise UsageError('the alignment head needs DrivingReasoning records in the '
                             'training bags (run `vlmad annotate`), or pass --no-vlm-ad / '
                             '--q2-only')
        else:
            run.vc = vc = dataclasses.replace(vc, text_dim=len(next(iter(table.values()))))
    n_records = int(sum(np.sum(c.arrays['text_valid']) for c in full_train.caches
                        if c.count)) if full_train.caches else 0
    if vc.use_action and not vc.use_alignment and n_records == 0:
        raise UsageError('the action head needs DrivingReasoning records (run `vlmad '
                         'annotate`), or pass --no-vlm-ad')
    return TextCollate(table, vc.text_dim)


def make_model(run: Run, args) -> VLMADModel:
    """Build the planner + the training-only heads, on the device (NHWC convolutions on CUDA)."""
    vc = run.vc
    model = VLMADModel(build_model(run.pc), vc if vc.use_alignment or vc.use_action else None,
                       run.tc.light_weight)
    if args.init:
        try:
            init_planner(model, args.init, run.pc)
        except (FileNotFoundError, ValueError) as err:
            raise UsageError(f'--init: {err}') from err
        run.log(f'[model] planner weights from {args.init} (heads start fresh)')
    model = model.to(run.device)
    if run.tc.channels_last and run.device.type == 'cuda':
        model = model.to(memory_format=torch.channels_last)
    n_planner = sum(p.numel() for p in model.planner.parameters())
    n_heads = sum(p.numel() for p in model.heads.parameters()) if model.heads else 0
    run.log(f'[model] {run.pc.kind}: {n_planner / 1e6:.2f} M parameters; VLM-AD heads '
            f'{n_heads / 1e6:.2f} M (training only); align_weight={vc.align_weight} '
            f'action_weight={vc.action_weight}; precision {run.precision.name} on '
            f'{run.device}')
    return model


def _same_run(saved: Dict[str, Any], resolved: Dict[str, Any]) -> bool:
    """Whether a saved run's config is this command's (runtime-only fields aside)."""
    def strip(cfg):
        return dict(cfg, train={k: v for k, v in cfg['train'].items()
                                if k not in RUNTIME_FIELDS})
    return strip(saved) == strip(resolved)


def resume_or_start(run: Run, args, resolved, model, optimizer, scheduler) -> Dict[str, Any]:
    """
    Continue RUN_DIR's saved state, or start fresh: returns epoch, global_step, best, history.

    The same command continues its own run (after a kill); --resume also accepts another
    train config (more epochs, another lr); another model, heads or data never continue.
    """
    state_path = run.out_dir / STATE_FILE
    fresh = {'epoch': 0, 'global_step': 0, 'best': float('inf'), 'history': []}
    if not state_path.exists():
        return fresh
    state = load_state(state_path)
    saved = dict(state['config'])
    saved.setdefault('data', resolved['data'])        # states of older versions
    if not (args.resume or _same_run(saved, resolved)):
        raise UsageError(f'{run.out_dir} already holds another run (other options); pass '
                         '--resume to continue it or choose another --out')
    if saved['model'] != resolved['model'] or saved['vlmad'] != resolved['vlmad']:
        raise UsageError(f'--resume: {state_path} was trained with another model/vlmad '
                         'config; start a new --out')
    restore(state, model, optimizer, scheduler, run.precision.scaler)
    history = state.get('history')
    if history is None:                                # states of older versions
        history = [r for r in _read_jsonl(run.out_dir / METRICS_FILE)
                   if r['epoch'] <= state['epoch']]
    if run.master:
        rewrite_metrics(run.out_dir, history)          # drop what a killed epoch appended
    run.log(f'[resume] from epoch {state["epoch"]} (step {state["global_step"]}, best L2 '
            f'{state["best"]:.3f})')
    return {'epoch': state['epoch'], 'global_step': state['global_step'],
            'best': state['best'], 'history': history}


def _read_jsonl(path: pathlib.Path) -> List[Dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _barrier(run: Run) -> None:
    if run.dist.enabled:
        torch.distributed.barrier()


def main(args) -> int:
    try:
        return _main(args)
    except UsageError as err:
        print(f'vlmad train: {err}', file=sys.stderr)
        return 2


def _main(args) -> int:
    run = set_up(args)
    full_train, train_set, val_set, train_bags = load_data(run, args)
    collate = text_targets(run, args, full_train, train_bags)
    # Every rank validates its own shard (master=True: each gets a validation loader).
    train_set, weights = select_training_samples(train_set, run.tc, run.log)
    loaders = make_loaders(train_set, val_shard(val_set, run.dist.rank, run.dist.world),
                           collate, run.tc, run.dist, run.device, True, weights)
    model = make_model(run, args)
    optimizer, scheduler = make_optimizer(model, run.tc, run.tc.epochs * len(loaders.train))
    resolved = run.resolved(train_bags)
    progress = resume_or_start(run, args, resolved, model, optimizer, scheduler)
    if progress['epoch'] >= run.tc.epochs:
        run.log(f'[done] {run.out_dir} already holds all {run.tc.epochs} epochs')
        return 0
    ddp_model = model
    if run.dist.enabled:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[run.device.index] if run.device.type == 'cuda' else None)
    ddp_model = compiled(ddp_model, run.tc.torch_compile, run.log)
    outputs = EpochOutputs(run, model, train_bags, resolved, progress) if run.master else None
    for epoch in range(progress['epoch'], run.tc.epochs):
        t0 = time.time()
        model.train()
        loaders.start_epoch(run.tc.seed, epoch)
        train_logs, progress['global_step'] = train_epoch(
            ddp_model, model, loaders.train, (optimizer, scheduler), run.tc, run.device,
            run.precision, outputs.writer if outputs else None, progress['global_step'],
            f'epoch {epoch + 1}/{run.tc.epochs}')
        val = validate_ranks(run, model, loaders.val)
        if outputs is not None:
            record = {'epoch': epoch + 1, 'step': progress['global_step'],
                      'lr': scheduler.get_last_lr()[0], 'train': train_logs,
                      'seconds': round(time.time() - t0, 1)}
            outputs.end_epoch(record, val, (optimizer, scheduler))
        _barrier(run)
    if outputs is not None:
        outputs.close()
    if run.dist.enabled:
        torch.distributed.destroy_process_group()
    run.log(f'[done] {run.out_dir / "best.pt"} (best val L2 avg {progress["best"]:.3f} m)')
    return 0


def validate_ranks(run: Run, model, val_loader):
    """
    Validate on every rank (its shard) and merge -> (results over the whole set, kept) or None.

    The merge is a collective call: every rank gets the results; rank 0 keeps images.
    """
    if val_loader is None:
        return None
    metrics, kept = validate(model.planner, val_loader, run.device, run.precision.autocast,
                             run.tc.log_images if run.master else 0)
    return metrics.compute(across_ranks=run.dist.enabled), kept


class EpochOutputs:
    """Rank 0's outputs of each epoch: merged validation, deployable checkpoints, state."""

    def __init__(self, run: Run, model, train_bags, resolved, progress):
        self.run, self.model, self.progress, self.resolved = run, model, progress, resolved
        out = run.out_dir
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / 'config.yaml', yaml.safe_dump(resolved, sort_keys=False))
        # purge_step: TensorBoard drops what a killed epoch logged past the saved state.
        self.writer = make_writer(out / 'tensorboard', run.log,
                                  purge_step=progress['global_step'] or None)
        vc, tc = run.vc, run.tc
        self.meta = {'data': resolved['data'], 'seed': tc.seed,
                     'vlm_ad': {'align_weight': vc.align_weight,
                                'action_weight': vc.action_weight},
                     'text_encoder': tc.text_encoder if vc.use_alignment else '',
                     'keep_action_head': tc.keep_action_head}
        self.export = functools.partial(model.export, rig=_first_rig(train_bags),
                                        keep_action_head=tc.keep_action_head)

    def end_epoch(self, record: Dict[str, Any], val, optim) -> None:
        """Log validation (validate_ranks), export (best/epoch/last), save state, metrics."""
        run, out, progress = self.run, self.run.out_dir, self.progress
        meta = dict(self.meta, epoch=record['epoch'])
        if val is not None:
            score = self._validate(record, meta, *val)
            if score < progress['best']:
                progress['best'] = score
                self.export(out / 'best.pt', extra=meta)
                record['best'] = True
        else:
            self.export(out / 'best.pt', extra=meta)
        if run.tc.keep_epoch_checkpoints:
            self.export(out / 'checkpoints' / f'epoch_{record["epoch"]:03d}.pt', extra=meta)
        self.export(out / 'last.pt', extra=meta)
        progress['history'].append(record)
        # The state last: a kill before it replays this epoch, after it continues from it.
        save_state(out / STATE_FILE, self.model, *optim, run.precision.scaler,
                   {'epoch': record['epoch'], 'global_step': progress['global_step'],
                    'best': progress['best']}, self.resolved, progress['history'])
        append_metrics(out, record)
        run.log(epoch_line(record))

    def _validate(self, record, meta, res, kept) -> float:
        writer, step = self.writer, self.progress['global_step']
        record['val'] = res
        for k, v in flat_metrics(res).items():
            if math.isfinite(v):
                writer.add_scalar(k, v, step)
        for i, (one, pred) in enumerate(kept):
            writer.add_image(f'val/front_paths_{i}', path_images(one, pred, 1)[0], step,
                             dataformats='HWC')
        score = l2_score(res)
        meta['val'] = {'l2_avg': score, 'samples': res['samples']}
        return score

    def close(self) -> None:
        self.writer.close()


# Model fields an --init checkpoint may differ in: the weights fit, fine-tuning adapts them
# (jpeg_decode: fine-tune a CPU-decode checkpoint for a car that decodes with nvJPEG).
INIT_MAY_DIFFER = frozenset({'use_accel', 'zoom_lift', 'ego_dropout', 'jpeg_decode'})


def init_planner(model, path, config: PlannerConfig) -> None:
    """Load a deployable checkpoint's planner weights into `model.planner` (configs must match)."""
    from vlmad_ros.model.checkpoint import load_checkpoint
    if not pathlib.Path(path).is_file():
        raise FileNotFoundError(f'{path} not found')
    source = load_checkpoint(path)
    diff = {k: (v, config.to_dict()[k]) for k, v in source.config.to_dict().items()
            if config.to_dict().get(k) != v and k not in INIT_MAY_DIFFER}
    if diff:
        raise ValueError(f'{path} has another model config (checkpoint, --config): {diff}')
    model.planner.load_state_dict(source.state_dict())


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
