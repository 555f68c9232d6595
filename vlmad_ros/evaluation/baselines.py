"""
The floor of every table: constant velocity, and the rule that defines the hard subset.

A keyframe is *hard* when extrapolating the whole ego state for 3 s (speed, yaw rate and
acceleration held, the car stopping rather than reversing) misses the expert's 3 s position
by more than HARD_CV_ERROR_M: its future cannot be extrapolated from ego history (a light
changing ahead, a lead car starting to brake, a pedestrian stepping out, a turn, a lane
change). Open-loop averages are dominated by easy cruising frames; the hard subset is where
a planner has to see. (Constant velocity alone misses by that much on 61 % of the val
keyframes, mostly smooth speed changes; the full ego state on 35 %.)
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from vlmad_ros import types as T
from vlmad_ros.model.config import PlannerConfig
from vlmad_ros.topics import PLAN_DT, PLAN_STEPS

HARD_CV_ERROR_M = 2.5          # [m] at 3 s
OFFSETS = PLAN_DT * np.arange(1, PLAN_STEPS + 1)   # waypoint times [s]


def constant_velocity_plan(speed: float, yaw_rate: float) -> np.ndarray:
    """(6, 2) base_link waypoints holding speed and yaw rate for 3 s (a circular arc)."""
    v, wz = float(speed), float(yaw_rate)
    if abs(wz) < 1e-3:
        return np.stack([v * OFFSETS, np.zeros_like(OFFSETS)], axis=1)
    r = v / wz
    return np.stack([r * np.sin(wz * OFFSETS), r * (1 - np.cos(wz * OFFSETS))], axis=1)


def constant_acceleration_end(speed: float, yaw_rate: float, accel: float,
                              horizon: float = OFFSETS[-1], steps: int = 300) -> np.ndarray:
    """(2,) base_link position after `horizon` s holding yaw rate and acceleration (v >= 0)."""
    t = np.linspace(0.0, horizon, steps + 1)[:-1]
    dt = horizon / steps
    v = np.maximum(0.0, float(speed) + float(accel) * (t + 0.5 * dt))   # midpoint rule
    yaw = float(yaw_rate) * (t + 0.5 * dt)
    return np.array([np.sum(v * np.cos(yaw)) * dt, np.sum(v * np.sin(yaw)) * dt])


def is_hard(ego, gt_xy) -> bool:
    """Whether the ego state (speed, yaw rate, accel) extrapolated misses 3 s by > 2.5 m."""
    speed, yaw_rate, accel = (float(x) for x in ego[:3])
    end = constant_acceleration_end(speed, yaw_rate, accel)
    return bool(np.hypot(*(np.asarray(gt_xy, dtype=np.float64)[-1] - end)) > HARD_CV_ERROR_M)


class ConstantVelocityPlanner:
    """The Planner interface (run_batch, config, describe) for the constant-velocity floor."""

    def __init__(self):
        # Reads no image; the tiny size only keeps the shared dataset code path.
        self.config = PlannerConfig(kind='ego_mlp', image_width=16, image_height=16)

    def describe(self) -> str:
        return 'constant velocity (speed and yaw rate held 3 s)'

    def run_batch(self, batch: Dict[str, object]) -> Dict[str, np.ndarray]:
        ego = batch[T.EGO].float().numpy()
        traj = np.stack([constant_velocity_plan(e[0], e[1]) for e in ego]).astype(np.float32)
        heading = np.stack([np.full(PLAN_STEPS, 0.0) if abs(e[1]) < 1e-3 else e[1] * OFFSETS
                            for e in ego]).astype(np.float32)
        return {T.TRAJ: traj, T.HEADING: heading}
