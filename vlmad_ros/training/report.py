"""What a run reports: epoch lines, TensorBoard scalars and images, the model-selection score."""
from __future__ import annotations

import pathlib
from typing import Any, Dict, List

import numpy as np
import torch

from vlmad_ros import types as T


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
    """Flatten the L2 / collision tables into TensorBoard tags."""
    out = {}
    for metric in ('l2', 'collision'):
        for proto, short in (('avg_over_horizon', 'avg'), ('at_horizon', 'at')):
            for key, v in res[metric][proto].items():
                out[f'{prefix}{metric}_{short}_{key}'] = v
    return out


def l2_score(res: Dict) -> float:
    """Model selection: mean of the 1/2/3 s L2 under the average protocol (lower is better)."""
    return float(np.mean(list(res['l2']['avg_over_horizon'].values())))


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
            + (f', light {train_logs["light_loss"]:.3f}' if 'light_loss' in train_logs
               else '')
            + f'){val_txt} [{record["seconds"]} s]')


class _NoWriter:
    """Stands in for SummaryWriter where TensorBoard does not import (metrics.jsonl stays)."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def make_writer(path: pathlib.Path, log=print, purge_step=None):
    """Return TensorBoard's SummaryWriter, or a no-op with a warning where it is broken."""
    try:
        from torch.utils.tensorboard import SummaryWriter
        return SummaryWriter(str(path), purge_step=purge_step)
    except Exception as err:  # a tensorboard/protobuf/numpy mismatch must not stop training
        log(f'[warn] TensorBoard unavailable ({type(err).__name__}: {err}); '
            'metrics.jsonl still records every epoch')
        return _NoWriter()
