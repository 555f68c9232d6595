"""
Open-loop planning metrics: L2 and collision at 1/2/3 s, under both protocols (DESIGN section 5).

One implementation, used by training (validation), `vlmad eval` and the closed-loop tools.
Everything is in base_link (REP 103: x forward, y left), metres. nuScenes papers (ST-P3, VAD,
UniAD) compute the same quantities in their lidar frame; the grid here is square and centred
on the ego, so working in base_link directly gives the same cells without any conversion.

Protocols:
- "avg_over_horizon" (ST-P3 / VAD): the value at t is the mean of the per-step values up to t.
- "at_horizon" (UniAD): the value at t is the per-step value at t.
Per-step collision rates count only steps where the ground-truth ego box itself is free.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np

from vlmad_ros import labels
from vlmad_ros.topics import PLAN_DT, PLAN_STEPS

# BEV occupancy grid (ST-P3): 200 x 200 cells of 0.5 m covering [-50, 50] m in x and y.
GRID_CELLS = 200
GRID_RES = 0.5
GRID_HALF = GRID_CELLS * GRID_RES / 2.0
# nuScenes ego (Renault Zoe) footprint; the box centre sits 0.5 m ahead of the rear axle.
EGO_LENGTH = 4.084
EGO_WIDTH = 1.85
EGO_CENTER_FORWARD = 0.5
# Report horizons [s] and the matching step indices (0.5 s steps: 1 s is index 1).
HORIZONS = (1.0, 2.0, 3.0)
PROTOCOLS = ('avg_over_horizon', 'at_horizon')


def horizon_key(t: float) -> str:
    return f'{t:g}s'


def horizon_step(t: float) -> int:
    """Index of the waypoint at time t (0.5 s -> 0)."""
    k = int(round(t / PLAN_DT)) - 1
    if not 0 <= k < PLAN_STEPS:
        raise ValueError(f'horizon {t} s is outside the {PLAN_STEPS * PLAN_DT} s plan')
    return k


def path_headings(xy: np.ndarray) -> np.ndarray:
    """
    (..., 6, 2) waypoints -> (..., 6) float32 headings: Trajectory.from_xy's rule, batched.

    The first step is measured from the origin; a step shorter than 1 mm keeps the previous
    heading (0 at the start).
    """
    xy = np.asarray(xy, dtype=np.float32)
    prev = np.concatenate([np.zeros_like(xy[..., :1, :]), xy[..., :-1, :]], axis=-2)
    d = xy - prev
    heading = np.arctan2(d[..., 1], d[..., 0])
    still = np.linalg.norm(d, axis=-1) < 1e-3
    heading[..., 0] = np.where(still[..., 0], np.float32(0.0), heading[..., 0])
    for k in range(1, heading.shape[-1]):
        heading[..., k] = np.where(still[..., k], heading[..., k - 1], heading[..., k])
    return heading


# The ego box spans at most its diagonal: its cell window is never wider than this.
EGO_WINDOW = int(np.ceil(np.hypot(EGO_LENGTH, EGO_WIDTH) / GRID_RES)) + 1
_HALF_CORNERS = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])


def _rotations(yaw: np.ndarray):
    """cos, sin of yaw in yaw's own precision (float32 path headings), then as float64."""
    yaw = np.asarray(yaw)
    return np.cos(yaw).astype(np.float64), np.sin(yaw).astype(np.float64)


def _windows(cx, cy, length, width, c, s):
    """
    (M,) oriented boxes -> lo, hi (M, 2): the grid-clipped cell range of their corners.

    The corners go through one 2 x 2 matrix product per box, as a stacked matmul: BLAS may
    fuse multiply-adds, and cells on a box edge must fall on the same side every time.
    """
    half = (_HALF_CORNERS[None] * np.stack([length, width], -1)[:, None, :]) / 2
    rot_t = np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], -2)   # rot.T per box
    corners = np.matmul(half, rot_t) + np.stack([cx, cy], -1)[:, None, :]
    lo = np.floor((corners.min(1) + GRID_HALF) / GRID_RES).astype(int)
    hi = np.floor((corners.max(1) + GRID_HALF) / GRID_RES).astype(int)
    return np.clip(lo, 0, GRID_CELLS - 1), np.clip(hi, 0, GRID_CELLS - 1)


def _centre_cells(cx, cy):
    """(M,) box centres -> (M, 2) cells, and whether each is on the grid."""
    cell = np.floor((np.stack([cx, cy], -1) + GRID_HALF) / GRID_RES).astype(int)
    return cell, np.all((cell >= 0) & (cell < GRID_CELLS), axis=-1)


def _inside(ix, iy, cx, cy, length, width, c, s):
    """Cells (ix, iy) whose centres lie in the box (broadcast; box arrays shaped to match)."""
    px = -GRID_HALF + (ix + 0.5) * GRID_RES - cx
    py = -GRID_HALF + (iy + 0.5) * GRID_RES - cy
    u = c * px + s * py
    v = -s * px + c * py
    return (np.abs(u) <= length / 2) & (np.abs(v) <= width / 2)


def _box_cells(boxes: np.ndarray, c, s, lo, hi, ix, iy):
    """
    Whether cells (M, K, K) are occupied by their boxes (M, 5) as ST-P3 rasterises them.

    A cell is occupied when its centre lies inside the box (polygon fill) within the box's
    clipped corner window, or it holds the box centre: boxes smaller than a cell (a pedestrian
    seen diagonally) still occupy the grid. lo, hi: the boxes' _windows.
    """
    cx, cy, length, width = (boxes[:, i, None, None] for i in range(4))
    inside = _inside(ix, iy, cx, cy, length, width, c[:, None, None], s[:, None, None])
    in_window = ((ix >= lo[:, 0, None, None]) & (ix <= hi[:, 0, None, None])
                 & (iy >= lo[:, 1, None, None]) & (iy <= hi[:, 1, None, None]))
    centre, on_grid = _centre_cells(boxes[:, 0], boxes[:, 1])
    is_centre = ((ix == centre[:, 0, None, None]) & (iy == centre[:, 1, None, None])
                 & on_grid[:, None, None])
    return (inside & in_window) | is_centre


def ego_hits(x, y, heading, boxes) -> np.ndarray:
    """
    Whether the ego box at each pose shares a grid cell with any agent box -> (...) bool.

    x, y, heading: (...) ego poses (rear-axle reference, heading in its own dtype);
    boxes: (..., N, 5) agents x, y, length, width, yaw at the same times (NaN rows absent).
    Only ego/agent pairs whose cell windows overlap are rasterised, in one batch.
    """
    shape = np.shape(x)
    x, y = (np.asarray(v, np.float64).reshape(-1) for v in (x, y))
    ego_c, ego_s = (v.reshape(-1) for v in _rotations(heading))
    boxes = np.asarray(boxes, np.float64)
    boxes = boxes.reshape(len(x), boxes.shape[-2] if boxes.ndim > 1 else 0, 5)
    ecx = x + EGO_CENTER_FORWARD * ego_c
    ecy = y + EGO_CENTER_FORWARD * ego_s
    length, width = np.full_like(ecx, EGO_LENGTH), np.full_like(ecx, EGO_WIDTH)
    ego_lo, ego_hi = _windows(ecx, ecy, length, width, ego_c, ego_s)
    # Candidate pairs: finite agent rows whose window overlaps the ego's.
    pose, agent = np.nonzero(np.all(np.isfinite(boxes), axis=-1))
    a = boxes[pose, agent]
    a_c, a_s = _rotations(a[:, 4])
    a_lo, a_hi = _windows(a[:, 0], a[:, 1], a[:, 2], a[:, 3], a_c, a_s)
    near = np.all((a_lo <= ego_hi[pose]) & (a_hi >= ego_lo[pose]), axis=-1)
    pose, a, a_c, a_s, a_lo, a_hi = (v[near] for v in (pose, a, a_c, a_s, a_lo, a_hi))
    # The ego's cells, on a fixed window from its low corner.
    steps = np.arange(EGO_WINDOW)
    ix = ego_lo[pose, 0, None, None] + steps[None, :, None]
    iy = ego_lo[pose, 1, None, None] + steps[None, None, :]
    ego_box = np.stack([ecx, ecy, length, width], -1)[pose]
    ego = _box_cells(ego_box, ego_c[pose], ego_s[pose], ego_lo[pose], ego_hi[pose], ix, iy)
    agents = _box_cells(a, a_c, a_s, a_lo, a_hi, ix, iy)
    hit = np.zeros(len(x), dtype=bool)
    hit[pose[np.any(ego & agents, axis=(1, 2))]] = True
    return hit.reshape(shape)


def collisions(pred_xy: np.ndarray, gt_xy: np.ndarray, future_boxes: np.ndarray):
    """
    Check a batch: (B, 6, 2), (B, 6, 2), (B, 6, N, 5) -> collide, counted (B, 6) bool.

    The ego box sits at each waypoint facing along the path; future_boxes holds the agents at
    the matching times. counted is False where the ground-truth ego box already collides
    (annotation or footprint artefacts the planner cannot be blamed for): such steps are
    skipped and never collide.
    """
    pred_xy = np.asarray(pred_xy, dtype=np.float64)
    gt_xy = np.asarray(gt_xy, dtype=np.float64)
    boxes = np.asarray(future_boxes, dtype=np.float64)
    if boxes.ndim != 4 or boxes.shape[1] != PLAN_STEPS or boxes.shape[3] != 5 \
            or len(boxes) != len(gt_xy):
        raise ValueError(f'future_boxes must be (B={len(gt_xy)}, {PLAN_STEPS}, N, 5), '
                         f'got {boxes.shape}')
    counted = ~ego_hits(gt_xy[..., 0], gt_xy[..., 1], path_headings(gt_xy), boxes)
    collide = ego_hits(pred_xy[..., 0], pred_xy[..., 1], path_headings(pred_xy), boxes)
    return collide & counted, counted


def l2_errors(pred_xy: np.ndarray, gt_xy: np.ndarray) -> np.ndarray:
    """(..., 6, 2) x2 -> (..., 6) Euclidean distance per step [m]."""
    return np.linalg.norm(np.asarray(pred_xy, np.float64) - np.asarray(gt_xy, np.float64), axis=-1)


def _protocols(per_step: np.ndarray, scale: float = 1.0) -> Dict[str, Dict[str, float]]:
    """(6,) per-step values (NaN where nothing was counted) -> both protocols at 1/2/3 s."""
    out = {}
    for protocol in PROTOCOLS:
        row = {}
        for t in HORIZONS:
            k = horizon_step(t)
            vals = per_step[:k + 1] if protocol == 'avg_over_horizon' else per_step[k:k + 1]
            vals = vals[np.isfinite(vals)]
            row[horizon_key(t)] = float(vals.mean() * scale) if len(vals) else float('nan')
        out[protocol] = row
    return out


# PlanningMetrics.totals: samples, then L2 sums, collisions and counted steps per step.
_TOTALS = 1 + 3 * PLAN_STEPS


def all_reduce_sum(values: np.ndarray) -> np.ndarray:
    """
    Sum a float64 vector over the ranks of the torch.distributed group (as is without one).

    NCCL reduces device tensors only: the vector then travels on this rank's current GPU.
    """
    import torch
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    tensor = torch.from_numpy(np.array(values, dtype=np.float64))
    if dist.get_backend() == 'nccl':
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().numpy()


@dataclasses.dataclass
class PlanningMetrics:
    """
    Accumulates samples; `compute()` gives the JSON shape of `vlmad eval`.

    {"samples": N, "l2": {"avg_over_horizon": {"1s", "2s", "3s"}, "at_horizon": {...}},
     "collision": {same shape}}; L2 in metres, collision in percent.
    """

    l2: List[np.ndarray] = dataclasses.field(default_factory=list)        # (6,) per sample
    collide: List[np.ndarray] = dataclasses.field(default_factory=list)   # (6,) bool
    counted: List[np.ndarray] = dataclasses.field(default_factory=list)   # (6,) bool
    scenarios: List[str] = dataclasses.field(default_factory=list)
    hard: List[bool] = dataclasses.field(default_factory=list)   # in the hard subset
    skipped: int = 0     # samples without a complete 6-step ground truth

    def add(self, pred_xy, gt_xy, future_boxes, scenario: str = '', hard: bool = False) -> bool:
        """Score one sample; returns False (and counts it skipped) without a full future."""
        pred_xy, gt_xy, future_boxes = (np.asarray(_numpy(a), np.float64)[None]
                                        for a in (pred_xy, gt_xy, future_boxes))
        return self.add_batch(pred_xy, gt_xy, future_boxes, [scenario], [hard]) == 1

    def add_batch(self, pred_xy, gt_xy, future_boxes, scenarios: Optional[Sequence[str]] = None,
                  hard: Optional[Sequence[bool]] = None) -> int:
        """
        Score a batch (B, 6, 2), (B, 6, 2), (B, 6, N, 5) (torch tensors accepted) at once.

        Samples without a full 6-step ground truth are counted in `skipped`; returns how many
        were scored.
        """
        pred_xy, gt_xy = (np.asarray(_numpy(a), np.float64) for a in (pred_xy, gt_xy))
        boxes = np.asarray(_numpy(future_boxes), np.float64)
        if pred_xy.shape != gt_xy.shape or pred_xy.shape[1:] != (PLAN_STEPS, 2):
            raise ValueError(f'pred_xy and gt_xy must be (B, {PLAN_STEPS}, 2), '
                             f'got {pred_xy.shape} and {gt_xy.shape}')
        full = np.all(np.isfinite(gt_xy), axis=(1, 2))
        self.skipped += int((~full).sum())
        if not np.all(np.isfinite(pred_xy[full])):
            raise ValueError('pred_xy holds NaN/inf: a planner output must be finite')
        if boxes.ndim == 4 and len(boxes) == len(full):
            boxes = boxes[full]
        collide, counted = collisions(pred_xy[full], gt_xy[full], boxes)
        self.l2.extend(l2_errors(pred_xy[full], gt_xy[full]))
        self.collide.extend(collide)
        self.counted.extend(counted)
        keep = np.flatnonzero(full)
        self.scenarios += [(scenarios[i] or '') if scenarios is not None else '' for i in keep]
        self.hard += [bool(hard[i]) if hard is not None else False for i in keep]
        return len(keep)

    def __len__(self) -> int:
        return len(self.l2)

    def totals(self, mask: Optional[np.ndarray] = None) -> np.ndarray:
        """
        Sum what `compute()` needs: samples, then per step L2, collisions, counted steps.

        Sums and counts, not means: the totals of two accumulators add up to the totals of
        their samples together (what merges DDP ranks).
        """
        sel = np.ones(len(self), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        out = np.zeros(_TOTALS, dtype=np.float64)
        out[0] = sel.sum()
        if out[0]:
            counted = np.stack(self.counted)[sel]
            out[1:] = np.concatenate([np.stack(self.l2)[sel].sum(0),
                                      (np.stack(self.collide)[sel] & counted).sum(0),
                                      counted.sum(0)])
        return out

    def compute(self, mask: Optional[np.ndarray] = None, across_ranks: bool = False) -> Dict:
        """
        Compute the results (JSON shape in the class doc) of the selected samples.

        across_ranks: a collective call on every rank of the torch.distributed group, which
        all-reduces the totals: every rank gets the results over all ranks' samples.
        """
        totals = self.totals(mask)
        if across_ranks:
            totals = all_reduce_sum(totals)
        count = int(totals[0])
        if count == 0:
            nan = np.full(PLAN_STEPS, np.nan)
            return {'samples': 0, 'l2': _protocols(nan), 'collision': _protocols(nan)}
        l2, collide, counted = totals[1:].reshape(3, PLAN_STEPS)
        with np.errstate(invalid='ignore', divide='ignore'):
            rate = np.where(counted > 0, collide / counted, np.nan)
        return {
            'samples': count,
            'l2': _protocols(l2 / count),
            'collision': _protocols(rate, scale=100.0),
            'collision_steps_skipped': int(count * PLAN_STEPS - counted.sum()),
        }

    def compute_hard(self) -> Dict:
        """Compute the hard subset (baselines.is_hard): futures ego state cannot predict."""
        return self.compute(np.array(self.hard, dtype=bool))

    def by_scenario(self) -> Dict[str, Dict]:
        """Results per scenario type (only when the data named scenarios)."""
        names = sorted({s for s in self.scenarios if s})
        scen = np.array(self.scenarios, dtype=object)
        return {name: self.compute(scen == name) for name in names}

    def merge(self, other: 'PlanningMetrics') -> 'PlanningMetrics':
        """Add another accumulator's samples (DDP ranks merge totals: compute(across_ranks))."""
        self.l2 += other.l2
        self.collide += other.collide
        self.counted += other.counted
        self.scenarios += other.scenarios
        self.hard += other.hard
        self.skipped += other.skipped
        return self

    def state(self) -> Dict:
        """Plain arrays (picklable): the per-sample rows, for saving or merging elsewhere."""
        return {'l2': self.l2, 'collide': self.collide, 'counted': self.counted,
                'scenarios': self.scenarios, 'hard': self.hard, 'skipped': self.skipped}

    @classmethod
    def from_state(cls, state: Dict) -> 'PlanningMetrics':
        return cls(l2=list(state['l2']), collide=list(state['collide']),
                   counted=list(state['counted']), scenarios=list(state['scenarios']),
                   hard=list(state.get('hard', [False] * len(state['l2']))),
                   skipped=int(state['skipped']))


# JSON / table names of the label categories (labels.LABEL_SETS order).
ACTION_CATEGORIES: Dict[str, str] = {'control': 'control_action', 'turn': 'turn_action',
                                     'lane': 'lane_action'}


class ActionMetrics:
    """
    The action head against the teacher: one confusion matrix per label category.

    Rows are the teacher's label, columns the head's. Only frames with a teacher record and a
    known label in that category count (the same frames the action loss trains on).
    """

    def __init__(self):
        self.confusion = {short: np.zeros((len(labels.LABEL_SETS[cat]),) * 2, np.int64)
                          for short, cat in ACTION_CATEGORIES.items()}
        self.records = 0          # frames with a teacher record

    def add_batch(self, predicted: Dict[str, np.ndarray], teacher, valid) -> None:
        """predicted: category (control_action ...) -> (B,) label; teacher (B, 3); valid (B,)."""
        teacher = _numpy(teacher).astype(np.int64)
        valid = _numpy(valid).astype(bool)
        self.records += int(valid.sum())
        for i, (short, cat) in enumerate(ACTION_CATEGORIES.items()):
            conf = self.confusion[short]
            y, p = teacher[:, i], _numpy(predicted[cat]).astype(np.int64)
            known = valid & (y >= 0) & (y < len(conf))
            np.add.at(conf, (y[known], p[known]), 1)

    def compute(self) -> Dict:
        """{'frames_with_teacher_record': N, 'control' | 'turn' | 'lane': {...}} (JSON-ready)."""
        out: Dict = {'frames_with_teacher_record': self.records}
        for short, cat in ACTION_CATEGORIES.items():
            conf = self.confusion[short]
            n = int(conf.sum())
            names = labels.LABEL_SETS[cat]
            per_class = {}
            for k, name in enumerate(names):
                teacher = int(conf[k].sum())
                per_class[name] = {'teacher': teacher, 'predicted': int(conf[:, k].sum()),
                                   'correct': int(conf[k, k]),
                                   'recall': conf[k, k] / teacher if teacher else float('nan')}
            out[short] = {'samples': n,
                          'accuracy': float(np.trace(conf) / n) if n else float('nan'),
                          'labels': list(names), 'confusion': conf.tolist(),
                          'per_class': per_class}
        return out


def action_table(res: Dict) -> str:
    """Markdown: accuracy per category, then teacher/head/correct counts per label."""
    lines = ['| category | N | accuracy [%] |', '|---|---:|---:|']
    for short in ACTION_CATEGORIES:
        acc = res[short]['accuracy']
        text = f'{100 * acc:.1f}' if np.isfinite(acc) else '-'
        lines.append(f'| {short} | {res[short]["samples"]} | {text} |')
    lines += ['', '| category | label | teacher | head | correct |', '|---|---|---:|---:|---:|']
    for short in ACTION_CATEGORIES:
        for name, c in res[short]['per_class'].items():
            if c['teacher'] or c['predicted']:
                lines.append(f'| {short} | {name} | {c["teacher"]} | {c["predicted"]} | '
                             f'{c["correct"]} |')
    return '\n'.join(lines)


def _numpy(a) -> np.ndarray:
    if hasattr(a, 'detach'):
        return a.detach().float().cpu().numpy()
    return np.asarray(a)


def markdown_table(results: Dict[str, Dict], title: str = 'model') -> str:
    """Rows = named results (`compute()` dicts); columns = L2 and collision, both protocols."""
    keys = [horizon_key(t) for t in HORIZONS]
    head = ['', 'N']
    for metric, unit in (('L2', 'm'), ('Coll.', '%')):
        for proto, short in (('avg_over_horizon', 'avg'), ('at_horizon', 'at')):
            head += [f'{metric} {k} ({short}) [{unit}]' for k in keys]
    lines = ['| ' + ' | '.join([title] + head[1:]) + ' |',
             '|' + '|'.join(['---'] + ['---:'] * (len(head) - 1)) + '|']
    for name, res in results.items():
        row = [name, str(res['samples'])]
        for metric, fmt in (('l2', '{:.2f}'), ('collision', '{:.2f}')):
            for proto in PROTOCOLS:
                row += [fmt.format(res[metric][proto][k]) for k in keys]
        lines.append('| ' + ' | '.join(row) + ' |')
    return '\n'.join(lines)
