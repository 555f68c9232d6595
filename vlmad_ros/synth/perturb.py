"""
Recovery data: the expert is knocked off its line now and then and records how it returns.

Imitation learning from an expert that never leaves its lane teaches nothing about coming back
(compounding error, DAgger's argument; ChauffeurNet's perturbed trajectories). Here the ego is
displaced sideways, turned and sped up or slowed down at a keyframe, and the expert steers
back onto its lane centre along a smooth curve (agents.Vehicle.start_lateral_move) while IDM
brings the speed back. The displacement itself is instantaneous and never recorded as motion:
keyframes whose 3 s future contains a perturbation are not emitted (their labels would teach
the jump), and the keyframe after it comes `lead` seconds later, so the odometry that gives
its ego state (speed, yaw rate, acceleration) already belongs to the recovery.

The schedule is drawn up front from its own random stream: a scene without perturbations is
the same scene, and the recorder knows which keyframes to skip before it renders them.
"""
from __future__ import annotations

import dataclasses
import math
from typing import List

import numpy as np

from vlmad_ros.synth.agents import Vehicle

PLAN_HORIZON_S = 3.0     # a keyframe's future; perturbations inside it drop the keyframe


class PerturbConfigError(ValueError):
    """A bad PerturbConfig value; `field` names it so a front end can name its own flag."""

    def __init__(self, field: str, message: str):
        super().__init__(f'PerturbConfig.{field} {message}')
        self.field = field


@dataclasses.dataclass(frozen=True)
class PerturbConfig:
    """How often and how hard the ego is perturbed (0 rate = never)."""

    per_keyframe: float = 0.0           # probability that a keyframe starts a perturbation
    min_gap_s: float = 4.0              # between two perturbations [s]
    start_after_s: float = 2.0          # none in the first seconds of a scene
    lateral_m: float = 1.0              # |offset| drawn in [0.25, lateral_m] [m], either side
    heading_rad: float = 0.15           # heading error drawn in [-heading_rad, heading_rad]
    speed_frac: float = 0.3             # speed scaled by a factor in [1 - f, 1 + f]
    recover_s: tuple = (2.0, 3.5)       # time to get back to the lane centre [s]
    lead_s: tuple = (0.25, 0.45)        # perturbation this long before its keyframe [s]
    min_speed: float = 2.0              # only while moving at least this fast [m/s]

    def __post_init__(self):
        if not 0.0 <= self.per_keyframe <= 1.0:
            raise PerturbConfigError('per_keyframe',
                                     f'must be in [0, 1], got {self.per_keyframe}')
        for name in ('min_gap_s', 'start_after_s', 'lateral_m', 'heading_rad', 'speed_frac',
                     'min_speed'):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise PerturbConfigError(name, f'must be >= 0, got {getattr(self, name)}')
        if self.lateral_m and self.lateral_m < 0.25:
            raise PerturbConfigError('lateral_m',
                                     f'must be 0 or >= 0.25, got {self.lateral_m}')
        for name in ('recover_s', 'lead_s'):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise PerturbConfigError(name, f'must be 0 < lo <= hi, got {(lo, hi)}')

    @property
    def enabled(self) -> bool:
        return self.per_keyframe > 0


@dataclasses.dataclass(frozen=True)
class Perturbation:
    """One knock: at time t, offset [m], heading error [rad], speed factor, recovery time [s]."""

    t: float
    offset: float
    heading: float
    speed_factor: float
    recover_s: float


def schedule(cfg: PerturbConfig, rng: np.random.Generator, duration: float,
             keyframe_period: float) -> List[Perturbation]:
    """Draw the perturbations of one scene, each just before a keyframe."""
    out: List[Perturbation] = []
    if not cfg.enabled:
        return out
    n_keyframes = int(math.floor(duration / keyframe_period + 1e-9)) + 1
    for k in range(n_keyframes):
        t_key = k * keyframe_period
        draws = rng.random(7)       # always seven draws: the stream does not depend on skips
        if draws[0] >= cfg.per_keyframe:
            continue
        t = t_key - _between(cfg.lead_s, draws[1])
        if t < cfg.start_after_s or (out and t - out[-1].t < cfg.min_gap_s):
            continue
        side = 1.0 if draws[2] < 0.5 else -1.0
        out.append(Perturbation(
            t=t, offset=side * _between((0.25, max(0.25, cfg.lateral_m)), draws[3]),
            heading=cfg.heading_rad * (2 * draws[4] - 1),
            speed_factor=1.0 + cfg.speed_frac * (2 * draws[5] - 1),
            recover_s=_between(cfg.recover_s, draws[6])))
    return out


def _between(lo_hi, u: float) -> float:
    lo, hi = lo_hi
    return lo + (hi - lo) * float(u)


def overlaps_future(events: List[Perturbation], t_key: float,
                    horizon: float = PLAN_HORIZON_S) -> bool:
    """Whether a perturbation happens in (t_key, t_key + horizon]: the keyframe is dropped."""
    return any(t_key < e.t <= t_key + horizon + 1e-9 for e in events)


def apply(ego: Vehicle, event: Perturbation, min_speed: float) -> bool:
    """Knock the ego (an expert-driven Vehicle) off its line; False when it is not possible."""
    if ego.v < min_speed or ego.lc_t >= 0 or ego.stalled:
        return False          # standing, or already in a lane change / recovery
    v = ego.v * event.speed_factor
    ego.v = v
    # Heading error = lateral speed / forward speed along the lane.
    ego.start_lateral_move(ego.d + event.offset, v * math.tan(event.heading), event.recover_s)
    ego.update_pose(0.0)      # dt = 0: the jump is not a yaw rate
    return True
