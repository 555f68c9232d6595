"""
Pure pursuit geometry on a polyline path, and the speed a timed path implies.

Frames (REP 103): x forward, y left, yaw counter-clockwise. A pose is (x, y, yaw) of
base_link in the world (odometry) frame.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np


def to_world(xy_local: np.ndarray, pose: Sequence[float]) -> np.ndarray:
    """(N, 2) points in the frame of `pose` -> world frame."""
    x, y, yaw = pose
    c, s = math.cos(yaw), math.sin(yaw)
    pts = np.asarray(xy_local, dtype=np.float64).reshape(-1, 2)
    return np.stack([x + c * pts[:, 0] - s * pts[:, 1], y + s * pts[:, 0] + c * pts[:, 1]], 1)


def to_local(xy_world: np.ndarray, pose: Sequence[float]) -> np.ndarray:
    """(N, 2) world points -> the frame of `pose` (x forward, y left)."""
    x, y, yaw = pose
    c, s = math.cos(yaw), math.sin(yaw)
    d = np.asarray(xy_world, dtype=np.float64).reshape(-1, 2) - (x, y)
    return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], 1)


def path_length(xy: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(np.asarray(xy).reshape(-1, 2), axis=0), axis=1).sum())


def closest_on_path(xy: np.ndarray) -> Tuple[int, float]:
    """Segment index and fraction of the path point closest to the origin (the vehicle)."""
    xy = np.asarray(xy, dtype=np.float64)
    a, b = xy[:-1], xy[1:]
    ab = b - a
    len2 = np.maximum((ab * ab).sum(1), 1e-12)
    t = np.clip((-(a * ab).sum(1)) / len2, 0.0, 1.0)
    proj = a + t[:, None] * ab
    i = int(np.argmin((proj * proj).sum(1)))
    return i, float(t[i])


def lookahead_point(xy: np.ndarray, lookahead: float) -> np.ndarray:
    """
    Return the point `lookahead` metres of arc ahead of the closest path point (vehicle frame).

    Beyond the path's end the last segment is extended, so a short plan still steers.
    """
    xy = np.asarray(xy, dtype=np.float64)
    if len(xy) < 2:
        raise ValueError('a path needs at least 2 points')
    i, t = closest_on_path(xy)
    point = xy[i] + t * (xy[i + 1] - xy[i])
    remaining = float(lookahead)
    for j in range(i, len(xy) - 1):
        end = xy[j + 1]
        seg = float(np.linalg.norm(end - point))
        if seg >= remaining:
            return point + (end - point) * (remaining / max(seg, 1e-12))
        remaining -= seg
        point = end
    # Past the end: extend along the last segment that has a direction.
    for j in range(len(xy) - 1, 0, -1):
        d = xy[j] - xy[j - 1]
        n = float(np.linalg.norm(d))
        if n > 1e-3:
            return point + d / n * remaining
    return point


def pursuit_curvature(target: np.ndarray) -> float:
    """Curvature [1/m] of the arc from the origin, tangent to x, through `target` (2y / d^2)."""
    x, y = float(target[0]), float(target[1])
    d2 = x * x + y * y
    if d2 < 1e-9:
        return 0.0
    return 2.0 * y / d2


def implied_speed(times: np.ndarray, xy: np.ndarray, tau: float) -> float:
    """
    Speed [m/s] of a timed path at `tau` s after its first point.

    Each segment's mean speed is placed at its mid-time and interpolated linearly, clamped
    at both ends. `times` (N,) increasing, `xy` (N, 2).
    """
    times = np.asarray(times, dtype=np.float64)
    xy = np.asarray(xy, dtype=np.float64)
    dt = np.diff(times)
    if np.any(dt <= 0):
        raise ValueError('path times must increase')
    speed = np.linalg.norm(np.diff(xy, axis=0), axis=1) / dt
    mid = times[:-1] + dt / 2
    return float(np.interp(tau, mid, speed))
