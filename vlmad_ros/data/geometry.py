"""
Planar ego motion from odometry: poses at any instant, frames, finite differences.

Frames (REP 103): the odometry frame (map) and base_link (x forward, y left). The planner's
targets are planar (x, y, yaw), so everything here is 2D except the quaternion helpers.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

import numpy as np

from vlmad_ros.ego import EgoStateEstimator
from vlmad_ros.rig import quat_wxyz_to_matrix
from vlmad_ros.types import EgoState, PLAN_DT, PLAN_STEPS, Trajectory

NS = 1_000_000_000
# How far before the first / after the last odometry message a pose may still be asked for.
ODOM_EDGE_TOLERANCE_S = 0.03


def wrap_angle(a):
    """Angles into [-pi, pi)."""
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def yaw_from_quat_wxyz(q: Sequence[float]) -> float:
    """Heading (rotation about z) of a (w, x, y, z) quaternion."""
    w, x, y, z = (float(v) for v in q)
    return float(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))


def quat_wxyz_from_yaw(yaw: float) -> Tuple[float, float, float, float]:
    """Return the (w, x, y, z) quaternion of a rotation by yaw about z."""
    return (float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2)))


def pose_matrix(translation: Sequence[float], rotation_wxyz: Sequence[float]) -> np.ndarray:
    """4x4 homogeneous transform from a translation and a (w, x, y, z) quaternion."""
    t = np.eye(4)
    t[:3, :3] = quat_wxyz_to_matrix(rotation_wxyz)
    t[:3, 3] = translation
    return t


def to_local(xy: np.ndarray, origin_xy: Sequence[float], origin_yaw: float) -> np.ndarray:
    """World (N, 2) points into the frame at origin_xy with heading origin_yaw."""
    c, s = np.cos(origin_yaw), np.sin(origin_yaw)
    d = np.asarray(xy, dtype=np.float64) - np.asarray(origin_xy, dtype=np.float64)
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], axis=-1)


def finite_difference_twist(t_ns: np.ndarray, xy: np.ndarray, yaw: np.ndarray,
                            half_window_s: float = 0.05) -> Tuple[np.ndarray, np.ndarray]:
    """
    Body-frame velocity (N, 2) and yaw rate (N,) from poses by central differences.

    The neighbours used are the farthest ones within +-half_window_s (at least the adjacent
    ones), so poses a few ms apart (nuScenes cameras firing in sequence) do not amplify noise.
    """
    t = (np.asarray(t_ns, dtype=np.int64) - int(t_ns[0])) / NS
    n = len(t)
    if n < 2:
        return np.zeros((n, 2)), np.zeros(n)
    lo = np.searchsorted(t, t - half_window_s, side='left')
    hi = np.searchsorted(t, t + half_window_s, side='right') - 1
    idx = np.arange(n)
    lo = np.minimum(lo, np.maximum(idx - 1, 0))
    hi = np.maximum(hi, np.minimum(idx + 1, n - 1))
    dt = np.maximum(t[hi] - t[lo], 1e-6)
    v_world = (xy[hi] - xy[lo]) / dt[:, None]
    yaw_rate = wrap_angle(yaw[hi] - yaw[lo]) / dt
    c, s = np.cos(yaw), np.sin(yaw)
    v_body = np.stack([c * v_world[:, 0] + s * v_world[:, 1],
                       -s * v_world[:, 0] + c * v_world[:, 1]], axis=1)
    return v_body, yaw_rate


@dataclasses.dataclass
class OdometryTrack:
    """Odometry messages of one bag as arrays, sorted by stamp; poses in the odometry frame."""

    t_ns: np.ndarray      # (N,) int64 header stamps
    xy: np.ndarray        # (N, 2)
    yaw: np.ndarray       # (N,) unwrapped
    speed: np.ndarray     # (N,) twist.linear.x in base_link
    yaw_rate: np.ndarray  # (N,) twist.angular.z

    @classmethod
    def from_lists(cls, t_ns, xy, yaw, speed, yaw_rate) -> 'OdometryTrack':
        t = np.asarray(t_ns, dtype=np.int64)
        order = np.argsort(t, kind='stable')
        t = t[order]
        keep = np.concatenate([[True], np.diff(t) > 0]) if len(t) else np.zeros(0, bool)
        sel = order[keep]
        return cls(t_ns=t[keep], xy=np.asarray(xy, np.float64).reshape(-1, 2)[sel],
                   yaw=np.unwrap(np.asarray(yaw, np.float64)[sel]),
                   speed=np.asarray(speed, np.float64)[sel],
                   yaw_rate=np.asarray(yaw_rate, np.float64)[sel])

    def __len__(self) -> int:
        return len(self.t_ns)

    def covers(self, t_ns: int) -> bool:
        tol = int(ODOM_EDGE_TOLERANCE_S * NS)
        return len(self) > 0 and self.t_ns[0] - tol <= t_ns <= self.t_ns[-1] + tol

    def pose_at(self, t_ns) -> Tuple[np.ndarray, np.ndarray]:
        """Interpolated (x, y) and yaw at stamps t_ns (linear; clamped at the ends)."""
        t = np.atleast_1d(np.asarray(t_ns, dtype=np.int64))
        rel = (t - self.t_ns[0]).astype(np.float64)
        base = (self.t_ns - self.t_ns[0]).astype(np.float64)
        x = np.interp(rel, base, self.xy[:, 0])
        y = np.interp(rel, base, self.xy[:, 1])
        yaw = np.interp(rel, base, self.yaw)
        return np.stack([x, y], axis=1), yaw

    def ego_state(self, t_ns: int) -> Optional[EgoState]:
        """
        Ego state as the planner node sees it at t_ns: its estimator fed the odometry so far.

        The last message at or before t_ns gives speed and yaw rate; acceleration comes from
        the node's EgoStateEstimator over the preceding messages (the past only), so training
        inputs and live inputs are computed by the same code.
        """
        i = int(np.searchsorted(self.t_ns, t_ns, side='right')) - 1
        if i < 0:
            return None
        estimator = EgoStateEstimator()
        start = int(np.searchsorted(self.t_ns, self.t_ns[i] - int(estimator.max_dt * NS) - 1))
        state = None
        for k in range(start, i + 1):
            state = estimator.update((self.t_ns[k] - self.t_ns[0]) / NS, float(self.speed[k]),
                                     float(self.yaw_rate[k]))
        return state

    def future_trajectory(self, t0_ns: int, steps: int = PLAN_STEPS,
                          dt: float = PLAN_DT) -> Optional[Trajectory]:
        """Waypoints at t0 + dt..steps*dt in base_link at t0; None without the full future."""
        times = t0_ns + (np.arange(1, steps + 1) * dt * NS).astype(np.int64)
        if len(self) < 2 or not (self.covers(t0_ns) and self.covers(int(times[-1]))):
            return None
        (p0,), (yaw0,) = self.pose_at(t0_ns)
        xy, yaw = self.pose_at(times)
        return Trajectory(xy=to_local(xy, p0, yaw0), heading=wrap_angle(yaw - yaw0), dt=dt)

    def relative_pose(self, t_from_ns: int, t_to_ns: int) -> np.ndarray:
        """3x3 planar transform of base_link at t_from into base_link at t_to."""
        xy, yaw = self.pose_at([t_to_ns, t_from_ns])
        return se2_inverse(se2(xy[0], yaw[0])) @ se2(xy[1], yaw[1])


def se2(xy: Sequence[float], yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, xy[0]], [s, c, xy[1]], [0.0, 0.0, 1.0]])


def se2_inverse(m: np.ndarray) -> np.ndarray:
    r = m[:2, :2]
    out = np.eye(3)
    out[:2, :2] = r.T
    out[:2, 2] = -r.T @ m[:2, 2]
    return out
