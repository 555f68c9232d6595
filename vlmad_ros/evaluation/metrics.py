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
from vlmad_ros.types import Trajectory

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
    """(6, 2) waypoints -> (6,) headings along the path (the rule of Trajectory.from_xy)."""
    return Trajectory.from_xy(xy).heading


def box_corners(cx: float, cy: float, length: float, width: float, yaw: float) -> np.ndarray:
    """(4, 2) corners of an oriented box, counter-clockwise."""
    c, s = np.cos(yaw), np.sin(yaw)
    half = np.array([[length, width], [-length, width], [-length, -width], [length, -width]]) / 2
    rot = np.array([[c, -s], [s, c]])
    return half @ rot.T + np.array([cx, cy])


def box_cells(cx: float, cy: float, length: float, width: float, yaw: float) -> np.ndarray:
    """
    Grid cells (M, 2) as (ix, iy) whose centres lie inside the box (polygon fill, as ST-P3).

    The cell holding the box centre is always included, so boxes smaller than a cell
    (a pedestrian seen diagonally) still occupy the grid. Cells outside the grid are dropped.
    """
    corners = box_corners(cx, cy, length, width, yaw)
    lo = np.floor((corners.min(0) + GRID_HALF) / GRID_RES).astype(int)
    hi = np.floor((corners.max(0) + GRID_HALF) / GRID_RES).astype(int)
    lo = np.clip(lo, 0, GRID_CELLS - 1)
    hi = np.clip(hi, 0, GRID_CELLS - 1)
    ix, iy = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing='ij')
    ix, iy = ix.ravel(), iy.ravel()
    # Cell centres in the box's own frame.
    px = -GRID_HALF + (ix + 0.5) * GRID_RES - cx
    py = -GRID_HALF + (iy + 0.5) * GRID_RES - cy
    c, s = np.cos(yaw), np.sin(yaw)
    u = c * px + s * py
    v = -s * px + c * py
    inside = (np.abs(u) <= length / 2) & (np.abs(v) <= width / 2)
    cells = np.stack([ix[inside], iy[inside]], axis=1)
    centre = np.floor((np.array([cx, cy]) + GRID_HALF) / GRID_RES).astype(int)
    if np.all((centre >= 0) & (centre < GRID_CELLS)):
        cells = np.vstack([cells, centre[None]])
    return cells


def occupancy_grid(boxes: np.ndarray) -> np.ndarray:
    """(N, 5) agent boxes x, y, length, width, yaw (NaN rows absent) -> (200, 200) bool grid."""
    grid = np.zeros((GRID_CELLS, GRID_CELLS), dtype=bool)
    for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 5):
        if not np.all(np.isfinite(box)):
            continue
        cells = box_cells(*box)
        grid[cells[:, 0], cells[:, 1]] = True
    return grid


def ego_cells(x: float, y: float, heading: float) -> np.ndarray:
    """Cells under the ego box with its rear-axle reference at (x, y) facing `heading`."""
    cx = x + EGO_CENTER_FORWARD * np.cos(heading)
    cy = y + EGO_CENTER_FORWARD * np.sin(heading)
    return box_cells(cx, cy, EGO_LENGTH, EGO_WIDTH, heading)


def ego_collides(grid: np.ndarray, x: float, y: float, heading: float) -> bool:
    cells = ego_cells(x, y, heading)
    return bool(grid[cells[:, 0], cells[:, 1]].any()) if len(cells) else False


def collisions(pred_xy: np.ndarray, gt_xy: np.ndarray, future_boxes: np.ndarray):
    """
    One sample: -> (collide (6,) bool, counted (6,) bool).

    pred_xy, gt_xy: (6, 2) waypoints; future_boxes: (6, N, 5) agents at the matching times.
    counted[k] is False where the ground-truth ego box already collides at step k (annotation
    or footprint artefacts the planner cannot be blamed for); such steps are skipped.
    """
    pred_xy = np.asarray(pred_xy, dtype=np.float64)
    gt_xy = np.asarray(gt_xy, dtype=np.float64)
    boxes = np.asarray(future_boxes, dtype=np.float64)
    if boxes.ndim != 3 or boxes.shape[0] != PLAN_STEPS or boxes.shape[2] != 5:
        raise ValueError(f'future_boxes must be ({PLAN_STEPS}, N, 5), got {boxes.shape}')
    pred_heading = path_headings(pred_xy)
    gt_heading = path_headings(gt_xy)
    collide = np.zeros(PLAN_STEPS, dtype=bool)
    counted = np.ones(PLAN_STEPS, dtype=bool)
    for k in range(PLAN_STEPS):
        grid = occupancy_grid(boxes[k])
        if not grid.any():
            continue
        if ego_collides(grid, gt_xy[k, 0], gt_xy[k, 1], gt_heading[k]):
            counted[k] = False
            continue
        collide[k] = ego_collides(grid, pred_xy[k, 0], pred_xy[k, 1], pred_heading[k])
    return collide, counted


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
        pred_xy = np.asarray(pred_xy, dtype=np.float64)
        gt_xy = np.asarray(gt_xy, dtype=np.float64)
        if pred_xy.shape != (PLAN_STEPS, 2) or gt_xy.shape != (PLAN_STEPS, 2):
            raise ValueError(f'pred_xy and gt_xy must be ({PLAN_STEPS}, 2), '
                             f'got {pred_xy.shape} and {gt_xy.shape}')
        if not np.all(np.isfinite(gt_xy)):
            self.skipped += 1
            return False
        if not np.all(np.isfinite(pred_xy)):
            raise ValueError('pred_xy holds NaN/inf: a planner output must be finite')
        collide, counted = collisions(pred_xy, gt_xy, future_boxes)
        self.l2.append(l2_errors(pred_xy, gt_xy))
        self.collide.append(collide)
        self.counted.append(counted)
        self.scenarios.append(scenario or '')
        self.hard.append(bool(hard))
        return True

    def add_batch(self, pred_xy, gt_xy, future_boxes, scenarios: Optional[Sequence[str]] = None,
                  hard: Optional[Sequence[bool]] = None):
        """Batched arrays (B, 6, 2), (B, 6, 2), (B, 6, N, 5); torch tensors are accepted."""
        pred_xy, gt_xy, future_boxes = (_numpy(a) for a in (pred_xy, gt_xy, future_boxes))
        for b in range(len(pred_xy)):
            self.add(pred_xy[b], gt_xy[b], future_boxes[b],
                     scenarios[b] if scenarios is not None else '',
                     bool(hard[b]) if hard is not None else False)

    def __len__(self) -> int:
        return len(self.l2)

    def compute(self, mask: Optional[np.ndarray] = None) -> Dict:
        n = len(self.l2)
        sel = np.ones(n, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        count = int(sel.sum())
        if count == 0:
            nan = np.full(PLAN_STEPS, np.nan)
            return {'samples': 0, 'l2': _protocols(nan), 'collision': _protocols(nan)}
        l2 = np.stack(self.l2)[sel]
        collide = np.stack(self.collide)[sel]
        counted = np.stack(self.counted)[sel]
        n_counted = counted.sum(0)
        with np.errstate(invalid='ignore', divide='ignore'):
            rate = np.where(n_counted > 0, (collide & counted).sum(0) / n_counted, np.nan)
        return {
            'samples': count,
            'l2': _protocols(l2.mean(0)),
            'collision': _protocols(rate, scale=100.0),
            'collision_steps_skipped': int((~counted).sum()),
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
        """Add another accumulator's samples (e.g. gathered from DDP ranks)."""
        self.l2 += other.l2
        self.collide += other.collide
        self.counted += other.counted
        self.scenarios += other.scenarios
        self.hard += other.hard
        self.skipped += other.skipped
        return self

    def state(self) -> Dict:
        """Plain arrays (picklable, for torch.distributed.all_gather_object)."""
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
