"""
DAgger-style recovery data: a learned planner drives stretches of a scene, the expert takes over.

Perturbations (perturb.py) show the expert recovering from random knocks; a learned planner
fails in its own ways (drifting out of the lane, standing at a green light, starting a turn
early). Here the planner of a checkpoint drives the ego in windows of a few seconds, fed as
planner_node feeds it (six rendered cameras as JPEG, its ego state, the route command) through
the path follower; at the end of each window the expert takes the car over from wherever the
planner left it and steers back onto its lane centre (the perturbations' recovery curve),
and that is what gets recorded as labels: the expert's way out of the learner's states, the
aggregation step of DAgger (Ross et al., 2011) with the expert's recorded trajectory as label.

A keyframe is kept only when its 3 s future is entirely the expert's and it comes at least
`lead_s` after a hand-over (its ego history then belongs to the expert too); a window ends
early when the planner leaves the lane by more than `max_offset_m`.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import types
from typing import List, Optional, Tuple

import numpy as np

from vlmad_ros.synth.perturb import PLAN_HORIZON_S

DAGGER_STREAM = 11      # the schedule's random stream: (seed, index, 11)


@dataclasses.dataclass(frozen=True)
class DaggerConfig:
    """Which planner drives, and when (no checkpoint: the expert drives throughout)."""

    checkpoint: str = ''
    learner_s: Tuple[float, float] = (2.5, 5.0)   # each window of the planner [s]
    expert_s: Tuple[float, float] = (4.5, 7.0)    # the expert between windows [s]
    start_after_s: float = 1.0
    recover_s: Tuple[float, float] = (2.0, 3.5)   # back onto the lane centre [s]
    lead_s: float = 0.25             # keyframes start this long after a hand-over [s]
    max_offset_m: float = 2.5        # a window ends early this far from the lane centre
    plan_period_s: float = 0.2       # the planner plans at this period (sim_node's)
    render_width: int = 800          # cameras rendered for the planner
    render_height: int = 450

    def __post_init__(self):
        for name in ('learner_s', 'expert_s', 'recover_s'):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f'DaggerConfig.{name} must be 0 < lo <= hi, got {(lo, hi)}')
        for name in ('start_after_s', 'lead_s', 'max_offset_m', 'plan_period_s'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f'DaggerConfig.{name} must be >= 0, got {value}')

    @property
    def enabled(self) -> bool:
        return bool(self.checkpoint)


def schedule(cfg: DaggerConfig, rng: np.random.Generator, duration: float
             ) -> List[List[float]]:
    """Draw the planner's windows [start, end] of one scene (the expert drives between)."""
    out: List[List[float]] = []
    t = cfg.start_after_s
    while t < duration:
        end = t + float(rng.uniform(*cfg.learner_s))
        out.append([t, min(end, duration)])
        t = end + float(rng.uniform(*cfg.expert_s))
    return out


def keeps(windows: List[List[float]], t_key: float, lead_s: float,
          horizon: float = PLAN_HORIZON_S) -> bool:
    """Whether a keyframe at t_key has an expert-only future and an expert-only recent past."""
    return not any(a <= t_key + horizon and t_key < b + lead_s for a, b in windows)


def hand_over(ego, recover_s: float) -> None:
    """Let the expert take the ego over from the planner's pose: back to the lane centre."""
    _, _, heading = ego.path.pose_at(ego.s)
    error = math.atan2(math.sin(ego.yaw - heading), math.cos(ego.yaw - heading))
    ego.start_lateral_move(ego.d, ego.v * math.sin(error), recover_s)
    ego.update_pose(0.0)        # dt = 0: the re-anchoring is not a yaw rate


@functools.lru_cache(maxsize=2)
def _load_planner(checkpoint: str):
    import torch
    from vlmad_ros.planner import Planner
    torch.set_num_threads(1)    # recorded scenes run one per worker process
    return Planner.from_checkpoint(checkpoint)


class Learner:
    """Drives the ego of one scene in its windows: plans, follows, hands over, counts."""

    def __init__(self, cfg: DaggerConfig, rig: str, dt: float, jpeg_quality: int,
                 rng: np.random.Generator, duration: float):
        from vlmad_ros.control.follower import FollowerConfig, PathFollower
        from vlmad_ros.ego import EgoStateEstimator
        from vlmad_ros.sim.closed_loop import LoopConfig, PlannerPolicy
        self.cfg, self.dt = cfg, dt
        loop = LoopConfig(physics_dt=dt, camera_period=cfg.plan_period_s,
                          image_width=cfg.render_width, image_height=cfg.render_height,
                          jpeg_quality=jpeg_quality, rig=rig)
        self.policy = PlannerPolicy(_load_planner(cfg.checkpoint), loop)
        self.follower = PathFollower(FollowerConfig())
        self.estimator = EgoStateEstimator()
        self.windows = schedule(cfg, rng, duration)
        self.plan_every = max(1, int(round(cfg.plan_period_s / dt)))
        self.rng = rng
        self.driving = False
        self.seconds = 0.0
        self.handovers = 0
        self.early_ends = 0
        self._k = 0

    def active(self, t: float) -> bool:
        return any(a <= t + 1e-9 < b for a, b in self.windows)

    def keeps(self, t_key: float) -> bool:
        return keeps(self.windows, t_key, self.cfg.lead_s)

    def step(self, world, dt: float) -> None:
        """Advance the world by dt: the planner drives inside a window, the expert outside."""
        e = world.ego
        if self._k % self.plan_every == 0:      # the ego history stays warm all the time
            self._ego = self.estimator.update(world.t, float(e.v), float(e.yaw_rate))
        self._k += 1
        driving = self.active(world.t)
        if driving and abs(float(e.d)) > self.cfg.max_offset_m:
            self._end_window(world.t)
            driving = False
            self.early_ends += 1
        if self.driving and not driving:
            hand_over(e, float(self.rng.uniform(*self.cfg.recover_s)))
            self.handovers += 1
        elif driving and not self.driving:
            self.follower.reset()
        self.driving = driving
        world.step(dt, self._control(world) if driving else None)
        if driving:
            self.seconds += dt

    def _end_window(self, t: float) -> None:
        for w in self.windows:
            if w[0] <= t < w[1]:
                w[1] = t

    def _control(self, world):
        from vlmad_ros.control.follower import TimedPath
        from vlmad_ros.evaluation.baselines import OFFSETS
        from vlmad_ros.sim.closed_loop import ego_control
        e = world.ego
        pose = (float(e.x), float(e.y), float(e.yaw))
        if (self._k - 1) % self.plan_every == 0 or self.follower.path is None:
            view = types.SimpleNamespace(world=world, command=world.route_command)
            plan = np.asarray(self.policy.plan(view, self._ego), dtype=np.float64)
            self.follower.set_path(TimedPath.from_base_link(world.t, OFFSETS, plan, pose))
        cmd = self.follower.update(world.t, pose, float(e.v))
        return ego_control(cmd, float(e.v), self.dt, self.follower.config)

    def summary(self) -> dict:
        return {'learner_s': round(self.seconds, 2), 'handovers': self.handovers,
                'early_ends': self.early_ends}


def make_learner(cfg: DaggerConfig, rig: str, dt: float, jpeg_quality: int, seed: int,
                 index: int, duration: float) -> Optional[Learner]:
    """Return the scene's learner (None without a checkpoint), on its own random stream."""
    if not cfg.enabled:
        return None
    rng = np.random.default_rng([int(seed), int(index), DAGGER_STREAM])
    return Learner(cfg, rig, dt, jpeg_quality, rng, duration)
