"""
`vlmad eval`: open-loop L2 and collision of a planner on recorded drives (DESIGN section 5).

    vlmad eval --data BAG_OR_DIR... [--checkpoint C | --plans PLANS_BAG] [--json OUT]

The trajectories scored come from a checkpoint (run here), from Paths recorded off any
planner (`ros2 bag record /vlmad/plan`: a rosbag2 folder or one .mcap, matched to the samples
by stamp), or, without either, from the packaged default checkpoint. Prints a markdown table
(and one per scenario type when the bags name scenarios) and writes JSON:
{"samples": N, "l2": {"avg_over_horizon": {"1s", "2s", "3s"}, "at_horizon": {...}},
 "collision": {same shape}, ...}; L2 in metres, collision in percent.

A checkpoint that carries the VLM-AD action head (`vlmad train --keep-action-head`) is also
scored against the teacher's labels of the data (DrivingReasoning records): "action_head" holds
the accuracy, per-class counts and confusion matrix of control, turn and lane.
"""
from __future__ import annotations

import argparse
import bisect
import collections
import dataclasses
import json
import pathlib
import sys
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from vlmad_ros import stamps
from vlmad_ros import topics
from vlmad_ros import types as T
from vlmad_ros.bagschema import bag_paths, read_messages
from vlmad_ros.evaluation.baselines import ConstantVelocityPlanner, HARD_CV_ERROR_M, is_hard
from vlmad_ros.evaluation.metrics import (action_table, ActionMetrics, markdown_table,
                                          PlanningMetrics)
from vlmad_ros.topics import PLAN_DT, PLAN_STEPS

NS = 1_000_000_000
EXACT_NS = 1_000_000          # a plan stamped with the set's stamp, up to rounding
MODEL_INPUTS = (T.IMAGES, T.INTRINSICS, T.CAM_TO_BASE, T.EGO, T.COMMAND)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--data', nargs='+', required=True, metavar='BAG_OR_DIR',
                        help='rosbag2 folders, .mcap files, or folders holding them')
    src = parser.add_mutually_exclusive_group()
    src.add_argument('--checkpoint', default='',
                     help='planner checkpoint to run (default: the packaged default.pt)')
    src.add_argument('--baseline', choices=('constant-velocity',), default='',
                     help='score a baseline instead of a checkpoint (the floor)')
    src.add_argument('--plans', default='', metavar='PLANS_BAG',
                     help='score recorded nav_msgs/Path messages instead of running a model')
    parser.add_argument('--plan-topic', default=topics.PLAN, help='Path topic in --plans')
    parser.add_argument('--stamp-tolerance', type=float, default=0.05, metavar='S',
                        help='max |plan stamp - sample stamp| when no plan carries the exact '
                             'stamp of the camera set [s]')
    parser.add_argument('--json', default='', metavar='OUT', help='write the results here')
    parser.add_argument('--device', default='cpu', help='cpu, cuda, cuda:N or auto')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--name', default='', help='row label in the table')
    parser.add_argument('--cache-dir', default='',
                        help='decoded-sample cache (default: $VLMAD_CACHE or ~/.cache/vlmad_ros)')


# ----- recorded plans -----

@dataclasses.dataclass
class RecordedPlan:
    stamp_ns: int
    frame: str
    offsets: np.ndarray       # (M,) seconds after stamp of each pose
    xy: np.ndarray            # (M, 2) in `frame`


def read_plans(path, topic: str = topics.PLAN) -> Tuple[List[RecordedPlan], Dict[str, int]]:
    """All Paths on `topic` of a bag, sorted by stamp; bad ones counted by reason."""
    plans: List[RecordedPlan] = []
    bad: Dict[str, int] = collections.Counter()
    for _, _, msg in read_messages(path, topics=[topic]):
        try:
            stamp = stamps.to_ns(msg.header.stamp)
            poses = list(msg.poses)
            xy = np.array([[p.pose.position.x, p.pose.position.y] for p in poses], np.float64)
            off = np.array([stamps.to_ns(p.header.stamp) - stamp for p in poses],
                           np.float64) / NS
        except (AttributeError, TypeError, ValueError):
            bad['not_a_path'] += 1
            continue
        if len(poses) == 0:
            bad['empty_path'] += 1
            continue
        if not np.all(np.isfinite(xy)):
            bad['non_finite_pose'] += 1
            continue
        if np.allclose(off, 0.0):
            off = PLAN_DT * np.arange(1, len(poses) + 1)      # poses without their own stamps
        plans.append(RecordedPlan(stamp, msg.header.frame_id.lstrip('/'), off, xy.reshape(-1, 2)))
    if not plans and not bad:
        raise ValueError(f'--plans: no messages on {topic} in {path}')
    plans.sort(key=lambda p: p.stamp_ns)
    return plans, bad


def plan_waypoints(plan: RecordedPlan, pose_at=None) -> Optional[np.ndarray]:
    """
    Return (6, 2) waypoints in base_link at the plan stamp, at +0.5..3 s; None if too short.

    Poses at other times are interpolated (a plan may include its start or use another
    spacing). Plans in the odometry/map frame need pose_at(stamp_ns) -> (xy, yaw) of base_link.
    """
    want = PLAN_DT * np.arange(1, PLAN_STEPS + 1)
    off, xy = plan.offsets, plan.xy
    if len(off) == PLAN_STEPS and np.allclose(off, want, atol=1e-3):
        pts = xy
    else:
        order = np.argsort(off)
        off, xy = off[order], xy[order]
        if off[-1] < want[-1] - 1e-3:
            return None
        if off[0] > 0:   # the path starts in the future: it starts from the ego at offset 0
            origin = np.zeros((1, 2)) if _is_base(plan.frame) else None
            if origin is None:
                origin = pose_at(plan.stamp_ns)[0][None] if pose_at else None
            if origin is None:
                return None
            off, xy = np.concatenate([[0.0], off]), np.vstack([origin, xy])
        pts = np.stack([np.interp(want, off, xy[:, 0]), np.interp(want, off, xy[:, 1])], 1)
    if _is_base(plan.frame):
        return pts
    if pose_at is None:
        return None
    p0, yaw0 = pose_at(plan.stamp_ns)
    c, s = np.cos(yaw0), np.sin(yaw0)
    d = pts - p0
    return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], 1)


def _is_base(frame: str) -> bool:
    return frame in ('', topics.BASE_FRAME)


class PlanMatcher:
    """Finds the recorded plan made from a sample's camera set."""

    def __init__(self, plans: List[RecordedPlan], tolerance_s: float):
        self.plans = plans
        self.stamps = [p.stamp_ns for p in plans]
        self.tolerance_ns = int(tolerance_s * NS)

    def match(self, candidates: Iterable[int], reference: int) -> Optional[RecordedPlan]:
        """Pick the plan stamped with one of the set's stamps, else the nearest to reference."""
        for stamp in candidates:
            plan = self._nearest(stamp, EXACT_NS)
            if plan is not None:
                return plan
        return self._nearest(reference, self.tolerance_ns)

    def _nearest(self, stamp: int, tol: int) -> Optional[RecordedPlan]:
        i = bisect.bisect_left(self.stamps, stamp)
        best = None
        for j in (i - 1, i):
            if 0 <= j < len(self.stamps) and abs(self.stamps[j] - stamp) <= tol:
                if best is None or abs(self.stamps[j] - stamp) < abs(best.stamp_ns - stamp):
                    best = self.plans[j]
        return best


def _odometry_pose_fn(bag):
    """pose_at(stamp_ns) for one data bag, from its odometry (plans in the odom/map frame)."""
    from vlmad_ros.data.geometry import OdometryTrack, yaw_from_quat_wxyz
    from vlmad_ros.data.rosmsgs import quat_wxyz
    rows = []
    for _, _, msg in read_messages(bag, topics=[topics.ODOM]):
        p = msg.pose.pose
        rows.append((stamps.to_ns(msg.header.stamp), p.position.x, p.position.y,
                     yaw_from_quat_wxyz(quat_wxyz(p.orientation))))
    if not rows:
        return None
    rows.sort()
    track = OdometryTrack.from_lists([r[0] for r in rows], [r[1:3] for r in rows],
                                     [r[3] for r in rows], [0.0] * len(rows), [0.0] * len(rows))

    def pose_at(stamp_ns):
        (xy,), (yaw,) = track.pose_at(stamp_ns)
        return xy, float(yaw)
    return pose_at


# ----- scoring -----

@dataclasses.dataclass
class EvalReport:
    metrics: PlanningMetrics
    source: str
    unmatched: Dict[str, int] = dataclasses.field(default_factory=collections.Counter)
    read_stats: Dict = dataclasses.field(default_factory=dict)
    actions: Optional[ActionMetrics] = None      # the action head vs the teacher, if any

    def to_json(self) -> Dict:
        res = self.metrics.compute()
        res['by_scenario'] = self.metrics.by_scenario()
        res['hard'] = self.metrics.compute_hard()
        res['hard_rule'] = (f'the ego state (speed, yaw rate, acceleration) extrapolated '
                            f'misses the 3 s position by > {HARD_CV_ERROR_M} m')
        res['source'] = self.source
        res['samples_without_plan'] = dict(self.unmatched)
        res['samples_without_full_future'] = self.metrics.skipped
        res['read_stats'] = self.read_stats
        if self.actions is not None:
            res['action_head'] = self.actions.compute()
        return res


def evaluate_plans(bags: Sequence[pathlib.Path], plans_path, topic: str = topics.PLAN,
                   tolerance_s: float = 0.05) -> EvalReport:
    """Score recorded Paths against the samples of the data bags."""
    from vlmad_ros.bagschema import BagError
    from vlmad_ros.data.reader import ReadStats, skip_bag
    plans, bad = read_plans(plans_path, topic)
    matcher = PlanMatcher(plans, tolerance_s)
    report = EvalReport(PlanningMetrics(), f'plans {plans_path} ({topic})')
    report.unmatched.update({f'bad_plan_{k}': v for k, v in bad.items()})
    stats = ReadStats()
    for bag in bags:
        try:
            _score_bag_plans(bag, matcher, report, stats)
        except BagError as err:   # named on stderr and in the report's read stats
            skip_bag(err, stats)
    report.read_stats = stats.as_dict()
    return report


def _score_bag_plans(bag, matcher: 'PlanMatcher', report: EvalReport, stats) -> None:
    from vlmad_ros.data.reader import read_samples
    pose_at = None
    for raw in read_samples(bag, stats=stats):
        set_stamps = [raw.stamp_ns, max(stamps.to_ns(m.header.stamp) for m in raw.images)]
        plan = matcher.match(set_stamps, raw.stamp_ns)
        if plan is None:
            report.unmatched['no_plan_at_stamp'] += 1
            continue
        if not _is_base(plan.frame) and pose_at is None:
            pose_at = _odometry_pose_fn(bag)
        xy = plan_waypoints(plan, pose_at)
        if xy is None:
            report.unmatched['plan_unusable'] += 1
            continue
        report.metrics.add(xy, raw.trajectory.xy, raw.future_boxes, raw.scenario,
                           is_hard(raw.ego.as_array(), raw.trajectory.xy))


def evaluate_planner(bags: Sequence[pathlib.Path], planner, batch_size: int = 8,
                     cache_dir=None) -> EvalReport:
    """
    Run a Planner (vlmad_ros.planner) on every sample of the bags and score it.

    An explaining planner's action head is scored too, against the teacher's labels.
    """
    import torch
    from vlmad_ros.data.dataset import BagDataset, collate, SCENARIO
    dataset = BagDataset(bags, planner.config, cache_dir=cache_dir)
    report = EvalReport(PlanningMetrics(), planner.describe(),
                        actions=ActionMetrics() if getattr(planner, 'explains', False) else None)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
    for batch in loader:
        inputs = {k: batch[k] for k in MODEL_INPUTS}
        out = planner.run_batch(inputs)
        egos, gts = batch[T.EGO].numpy(), batch[T.TRAJ].numpy()
        hard = [is_hard(e, gt) for e, gt in zip(egos, gts)]
        report.metrics.add_batch(out[T.TRAJ], batch[T.TRAJ], batch[T.FUTURE_BOXES],
                                 batch[SCENARIO], hard)
        if report.actions is not None:
            predicted = {cat: out[key].argmax(-1) for cat, key in T.ACTION_PROBS.items()}
            report.actions.add_batch(predicted, batch[T.ACTION_LABELS], batch[T.TEXT_VALID])
    report.read_stats = dataset.stats.as_dict()
    return report


def json_safe(obj):
    """NaN/inf (a metric with nothing to count) become null: strict JSON readers accept it."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def print_report(report: EvalReport, name: str, out=sys.stdout) -> None:
    res = report.metrics.compute()
    print(f'# open-loop planning metrics: {report.source}', file=out)
    print(markdown_table({name: res, f'{name}, hard subset': report.metrics.compute_hard()}),
          file=out)
    per = report.metrics.by_scenario()
    if per:
        print('\n## by scenario', file=out)
        print(markdown_table(per, title='scenario'), file=out)
    notes = []
    if report.unmatched:
        notes.append(f'samples without a usable plan: {dict(report.unmatched)}')
    if report.metrics.skipped:
        notes.append(f'samples without a full 3 s future: {report.metrics.skipped}')
    for why in (report.read_stats or {}).get('skipped_bags', []):
        notes.append(f'skipped bag {why}')
    if res.get('collision_steps_skipped'):
        notes.append(f'collision steps skipped (ground truth collides): '
                     f'{res["collision_steps_skipped"]}')
    if report.actions is not None:
        acts = report.actions.compute()
        if acts['frames_with_teacher_record']:
            print(f'\n## action head vs teacher ({acts["frames_with_teacher_record"]} frames '
                  'with a teacher record)', file=out)
            print(action_table(acts), file=out)
        else:
            notes.append('the checkpoint carries an action head, but the data has no teacher '
                         'labels to score it against (vlmad annotate)')
    for note in notes:
        print(f'\n{note}', file=out)


def _carries_action_head(checkpoint: str) -> bool:
    """Score the action head whenever the checkpoint to run (given or default) has one."""
    from vlmad_ros.model.checkpoint import default_checkpoint, has_action_head
    path = checkpoint or default_checkpoint()
    return bool(path) and pathlib.Path(path).is_file() and has_action_head(path)


def main(args) -> int:
    if args.batch_size < 1:
        print(f'--batch-size must be >= 1, got {args.batch_size}', file=sys.stderr)
        return 2
    try:
        bags = bag_paths(args.data)
        if args.plans:
            if not pathlib.Path(args.plans).exists():
                raise FileNotFoundError(f'--plans: {args.plans} does not exist')
            report = evaluate_plans(bags, args.plans, args.plan_topic, args.stamp_tolerance)
            name = args.name or pathlib.Path(args.plans).name
        elif args.baseline:
            report = evaluate_planner(bags, ConstantVelocityPlanner(), args.batch_size,
                                      args.cache_dir or None)
            name = args.name or args.baseline
        else:
            from vlmad_ros.planner import Planner
            planner = Planner.from_options(args.checkpoint, device=args.device,
                                           explain=_carries_action_head(args.checkpoint))
            report = evaluate_planner(bags, planner, args.batch_size, args.cache_dir or None)
            name = args.name or (pathlib.Path(args.checkpoint).name if args.checkpoint
                                 else 'default.pt')
    except (FileNotFoundError, ValueError) as err:
        print(f'vlmad eval: {err}', file=sys.stderr)
        return 2
    print_report(report, name)
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(json_safe(report.to_json()), indent=2) + '\n')
        print(f'\nwrote {path}')
    if len(report.metrics) == 0:
        print('vlmad eval: no sample was scored', file=sys.stderr)
        return 1
    return 0
