"""The optimisation loop: precision, optimizer and schedule, one epoch, validation."""
from __future__ import annotations

import contextlib
import math
import sys
from typing import Dict

import torch

from vlmad_ros import types as T
from vlmad_ros.evaluation.metrics import PlanningMetrics

MODEL_INPUTS = (T.IMAGES, T.INTRINSICS, T.CAM_TO_BASE, T.EGO, T.COMMAND)


class Precision:
    """Autocast dtype and the GradScaler (fp16 only) of a run, from TrainConfig.precision."""

    def __init__(self, name: str, amp: bool, device: torch.device):
        if name == 'auto':
            name = 'fp32'
            if amp and device.type == 'cuda':
                name = 'bf16' if torch.cuda.is_bf16_supported() else 'fp16'
        if name == 'fp16' and device.type != 'cuda':
            raise ValueError('train.precision fp16 needs CUDA (use bf16 or fp32 on CPU)')
        self.name = name
        self.device_type = device.type
        self.dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(name)
        self.scaler = torch.amp.GradScaler('cuda', enabled=name == 'fp16')

    def autocast(self):
        """Mixed precision context (a no-op for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def lr_lambda(tc, total_steps: int):
    """Linear warm-up, then cosine from 1 to min_lr_ratio over the remaining steps."""
    def f(step: int) -> float:
        if step < tc.warmup_steps:
            return (step + 1) / tc.warmup_steps
        progress = (step - tc.warmup_steps) / max(1, total_steps - tc.warmup_steps)
        progress = min(1.0, progress)
        return tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return f


def make_optimizer(model: torch.nn.Module, tc, total_steps: int):
    """Build AdamW (no decay on norms, biases, queries) and its warm-up + cosine schedule."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and 'queries' not in name else no_decay).append(p)
    optimizer = torch.optim.AdamW([{'params': decay, 'weight_decay': tc.weight_decay},
                                   {'params': no_decay, 'weight_decay': 0.0}], lr=tc.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(tc, total_steps))
    return optimizer, scheduler


class LossMeans:
    """
    Running means of the step logs, kept as tensors on the device: no host sync per step.

    Accuracy logs are NaN on batches without a known label; they average over the batches
    that have one. Losses average over every step (a NaN loss shows).
    """

    def __init__(self):
        self.sums: Dict[str, torch.Tensor] = {}
        self.counts: Dict[str, torch.Tensor] = {}

    def add(self, logs: Dict[str, torch.Tensor]) -> None:
        for k, v in logs.items():
            v = v.detach().float()
            n = torch.ones_like(v)
            if k.startswith('action_acc'):
                n = torch.isfinite(v).float()
                v = torch.nan_to_num(v, nan=0.0)
            self.sums[k] = self.sums[k] + v if k in self.sums else v
            self.counts[k] = self.counts[k] + n if k in self.counts else n

    def read(self) -> Dict[str, float]:
        """Means as floats: one device-to-host copy for all of them."""
        if not self.sums:
            return {}
        keys = sorted(self.sums)
        means = torch.stack([self.sums[k] / self.counts[k] for k in keys]).cpu().tolist()
        return dict(zip(keys, means))


def train_step(ddp_model, model, batch, optimizer, scheduler, precision: Precision,
               grad_clip: float):
    """One optimisation step; returns the step's logs as device tensors."""
    with precision.autocast():
        loss, logs = ddp_model(batch)
    optimizer.zero_grad(set_to_none=True)
    scaler = precision.scaler
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return logs


def train_epoch(ddp_model, model, loader, optim, tc, device, precision: Precision, writer,
                global_step: int, desc: str):
    """
    One pass over the training data; returns the epoch's mean losses and the step count.

    Losses stay on the device; every `tc.log_every` steps their window means are read back
    once for TensorBoard and the progress bar.
    """
    from tqdm import tqdm
    optimizer, scheduler = optim
    epoch, window = LossMeans(), LossMeans()
    bar = tqdm(loader, desc=desc, disable=writer is None, mininterval=2.0, dynamic_ncols=True,
               file=sys.stdout)
    for batch in bar:
        batch = {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v)
                 for k, v in batch.items()}
        logs = train_step(ddp_model, model, batch, optimizer, scheduler, precision,
                          tc.grad_clip)
        global_step += 1
        epoch.add(logs)
        if writer is None:
            continue
        window.add(logs)
        if global_step % tc.log_every == 0:
            _write_window(writer, bar, window.read(), scheduler, global_step)
            window = LossMeans()
    if writer is not None and window.sums:       # the epoch's last, partial window
        _write_window(writer, bar, window.read(), scheduler, global_step)
    return epoch.read(), global_step


def _write_window(writer, bar, means: Dict[str, float], scheduler, step: int) -> None:
    writer.add_scalar('train/lr', scheduler.get_last_lr()[0], step)
    for k, v in means.items():
        writer.add_scalar(f'train/{k}', v, step)
    bar.set_postfix(loss=f'{means.get("loss", float("nan")):.3f}', refresh=False)


def val_shard(dataset, rank: int, world: int):
    """
    Select this rank's part of the validation set: every world-th sample from `rank` on.

    Unlike DistributedSampler no sample is repeated to even the shards out, so the ranks'
    metric totals add up to the whole set's (PlanningMetrics.compute(across_ranks=True)).
    """
    if dataset is None or world <= 1:
        return dataset
    return torch.utils.data.Subset(dataset, range(rank, len(dataset), world))


@torch.no_grad()
def validate(planner: torch.nn.Module, loader, device: torch.device, autocast,
             keep: int = 0):
    """
    Run the planner alone (as deployed) over the (rank's) validation set -> PlanningMetrics.

    Under DDP each rank runs its val_shard; `compute(across_ranks=True)` on every rank merges
    them. Also returns up to `keep` (batch, pred) pairs of one sample each, spread over the
    set (for the TensorBoard images: the first samples are often one standing scene).
    """
    from vlmad_ros.data.dataset import SCENARIO
    was_training = planner.training
    planner.eval()
    metrics = PlanningMetrics()
    kept = []
    stride = max(1, len(loader) // keep) if keep else 0
    for i, batch in enumerate(loader):
        inputs = {k: batch[k].to(device, non_blocking=True) for k in MODEL_INPUTS}
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


def compiled(module: torch.nn.Module, enabled: bool, log=print):
    """Wrap the training forward in torch.compile where asked (eager module kept for export)."""
    if not enabled:
        return module
    log('[model] torch.compile: the first steps compile (minutes on large models)')
    return torch.compile(module)
