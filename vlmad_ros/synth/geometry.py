"""
Plane geometry for the synthetic world: paths with arc length, boxes, overlap tests.

Everything is in the map frame (REP 103: x east, y north, z up), metres and radians.
"""
from __future__ import annotations

import bisect
import math
from typing import Tuple

import numpy as np

# Unit vectors of the four grid headings: 0 east, 1 north, 2 west, 3 south.
DIRS = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
DIR_NAMES = ('E', 'N', 'W', 'S')


def wrap_angle(a):
    """Angle(s) wrapped into [-pi, pi)."""
    return (np.asarray(a) + np.pi) % (2.0 * np.pi) - np.pi


def _wrap(a: float) -> float:
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def right_of(d: int) -> np.ndarray:
    """Return the unit vector to the right of grid heading `d` (where traffic keeps)."""
    return DIRS[(d + 3) % 4]


def bezier(p0, h0, p1, h1, n: int = 16) -> np.ndarray:
    """
    Cubic Bezier from p0 (heading h0) to p1 (heading h1): (n, 2) points incl. both ends.

    Control arms of 0.55 x the corner radius make a quarter turn close to a circular arc.
    """
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    t0 = np.array([math.cos(h0), math.sin(h0)])
    t1 = np.array([math.cos(h1), math.sin(h1)])
    chord = float(np.linalg.norm(p1 - p0))
    arm = 0.55 * chord / math.sqrt(2.0) if abs(wrap_angle(h1 - h0)) > 0.1 else chord / 3.0
    c0, c1 = p0 + t0 * arm, p1 - t1 * arm
    t = np.linspace(0.0, 1.0, n)[:, None]
    return ((1 - t) ** 3) * p0 + 3 * ((1 - t) ** 2) * t * c0 + 3 * (1 - t) * t * t * c1 \
        + t ** 3 * p1


class Path:
    """A polyline parameterised by arc length s, with headings and curvature per vertex."""

    def __init__(self, points: np.ndarray):
        pts = np.asarray(points, dtype=np.float64)
        keep = np.ones(len(pts), bool)
        keep[1:] = np.linalg.norm(np.diff(pts, axis=0), axis=1) > 1e-6
        pts = pts[keep]
        if len(pts) < 2:
            raise ValueError('a path needs at least two distinct points')
        self.points = pts
        seg = np.diff(pts, axis=0)
        self.seg_len = np.linalg.norm(seg, axis=1)
        self.s = np.concatenate([[0.0], np.cumsum(self.seg_len)])
        self.seg_heading = np.arctan2(seg[:, 1], seg[:, 0])
        # Vertex headings: mean of the adjoining segments (unwrapped), so yaw varies smoothly.
        sh = np.unwrap(self.seg_heading)
        vh = np.empty(len(pts))
        vh[0], vh[-1] = sh[0], sh[-1]
        vh[1:-1] = 0.5 * (sh[:-1] + sh[1:])
        self.vertex_heading = vh
        # Curvature at vertices: heading change over the mean adjoining segment length.
        curv = np.zeros(len(pts))
        if len(pts) > 2:
            curv[1:-1] = np.diff(sh) / (0.5 * (self.seg_len[:-1] + self.seg_len[1:]))
        self.curvature = curv

        # Plain-float copies for the scalar fast path (one vehicle per call).
        self._s_list = self.s.tolist()
        self._pts_list = pts.tolist()
        self._len_list = self.seg_len.tolist()
        self._sh_list = self.seg_heading.tolist()

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def _index(self, s) -> Tuple[np.ndarray, np.ndarray]:
        s = np.clip(np.asarray(s, dtype=np.float64), 0.0, self.s[-1])
        i = np.clip(np.searchsorted(self.s, s, side='right') - 1, 0, len(self.seg_len) - 1)
        frac = (s - self.s[i]) / self.seg_len[i]
        return i, frac

    def pose(self, s) -> Tuple[np.ndarray, np.ndarray]:
        """
        Position (..., 2) and heading (...) at arc length s (clamped to the path).

        The heading is the segment's, blended with the neighbour's within a metre of a
        vertex (so yaw turns smoothly through connectors and stays exact along straights).
        """
        i, frac = self._index(s)
        p = self.points[i] + (self.points[i + 1] - self.points[i]) * np.asarray(frac)[..., None]
        sh, ln = self.seg_heading, self.seg_len
        n = len(ln)
        d0 = np.asarray(frac) * ln[i]
        d1 = ln[i] - d0
        h = sh[i].copy() if np.ndim(i) else np.array(sh[i])
        prev = np.maximum(i - 1, 0)
        nxt = np.minimum(i + 1, n - 1)
        b0 = np.minimum(np.minimum(0.5 * ln[prev], 0.5 * ln[i]), 1.0)
        b1 = np.minimum(np.minimum(0.5 * ln[nxt], 0.5 * ln[i]), 1.0)
        w0 = np.where((i > 0) & (d0 < b0), 1.0 - d0 / np.maximum(b0, 1e-9), 0.0)
        w1 = np.where((i < n - 1) & (d1 < b1), 1.0 - d1 / np.maximum(b1, 1e-9), 0.0)
        h = h + 0.5 * w0 * wrap_angle(sh[prev] - sh[i]) + 0.5 * w1 * wrap_angle(sh[nxt] - sh[i])
        return p, wrap_angle(h)

    def pose_at(self, s: float) -> Tuple[float, float, float]:
        """Scalar pose(): x, y, heading at arc length s (clamped), without numpy overhead."""
        sl = self._s_list
        s = min(max(s, 0.0), sl[-1])
        n = len(sl) - 1
        i = min(max(bisect.bisect_right(sl, s) - 1, 0), n - 1)
        ln = self._len_list
        f = (s - sl[i]) / ln[i]
        (x0, y0), (x1, y1) = self._pts_list[i], self._pts_list[i + 1]
        sh = self._sh_list
        h = sh[i]
        d0, d1 = f * ln[i], (1.0 - f) * ln[i]
        if i > 0:
            b = min(0.5 * ln[i - 1], 0.5 * ln[i], 1.0)
            if d0 < b:
                h += 0.5 * (1.0 - d0 / b) * _wrap(sh[i - 1] - sh[i])
        if i < n - 1:
            b = min(0.5 * ln[i + 1], 0.5 * ln[i], 1.0)
            if d1 < b:
                h += 0.5 * (1.0 - d1 / b) * _wrap(sh[i + 1] - sh[i])
        return x0 + (x1 - x0) * f, y0 + (y1 - y0) * f, _wrap(h)

    def max_curvature(self, s0: float, s1: float) -> Tuple[float, float]:
        """Largest |curvature| on [s0, s1] and the arc length where it occurs."""
        sel = (self.s >= s0) & (self.s <= s1)
        if not np.any(sel):
            return 0.0, s1
        c = np.abs(self.curvature[sel])
        k = int(np.argmax(c))
        return float(c[k]), float(self.s[sel][k])

    def project(self, xy: np.ndarray, s_min: float = 0.0, s_max: float = math.inf
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        Arc length, signed lateral offset (left positive) and path heading of (N, 2) points.

        Only segments overlapping [s_min, s_max] are searched (a window keeps a path that
        passes the same place twice unambiguous and keeps it fast).
        """
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        lo = max(0, int(np.searchsorted(self.s, s_min, side='right')) - 1)
        hi = min(len(self.seg_len), int(np.searchsorted(self.s, s_max, side='left')) + 1)
        hi = max(hi, lo + 1)
        a = self.points[lo:hi]                        # (M, 2) segment starts
        seg = self.points[lo + 1:hi + 1] - a          # (M, 2)
        ln = self.seg_len[lo:hi]
        rel = xy[:, None, :] - a[None]                # (N, M, 2)
        t = np.clip((rel * seg[None]).sum(-1) / (ln * ln)[None], 0.0, 1.0)   # (N, M)
        closest = a[None] + t[..., None] * seg[None]
        dist2 = ((xy[:, None, :] - closest) ** 2).sum(-1)
        k = np.argmin(dist2, axis=1)
        rows = np.arange(len(xy))
        s = self.s[lo + k] + t[rows, k] * ln[k]
        cross = seg[k, 0] * rel[rows, k, 1] - seg[k, 1] * rel[rows, k, 0]
        lat = np.sign(cross) * np.sqrt(dist2[rows, k])
        return s, lat, self.seg_heading[lo + k]


def box_corners(x, y, yaw, length, width) -> np.ndarray:
    """Footprint corners (..., 4, 2), counter-clockwise from front-left."""
    x, y, yaw = np.asarray(x, float), np.asarray(y, float), np.asarray(yaw, float)
    c, s = np.cos(yaw), np.sin(yaw)
    hl, hw = np.asarray(length, float) / 2, np.asarray(width, float) / 2
    lx = np.stack([hl, -hl, -hl, hl], axis=-1)
    ly = np.stack([hw, hw, -hw, -hw], axis=-1)
    px = x[..., None] + c[..., None] * lx - s[..., None] * ly
    py = y[..., None] + s[..., None] * lx + c[..., None] * ly
    return np.stack([px, py], axis=-1)


def boxes_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Separating-axis test of box `a` (4, 2) against boxes `b` (N, 4, 2) -> (N,) bool."""
    a = np.asarray(a, float)
    b = np.asarray(b, float).reshape(-1, 4, 2)
    if len(b) == 0:
        return np.zeros(0, bool)
    overlap = np.ones(len(b), bool)
    axes_a = np.stack([a[1] - a[0], a[3] - a[0]])                       # (2, 2)
    axes_b = np.stack([b[:, 1] - b[:, 0], b[:, 3] - b[:, 0]], axis=1)    # (N, 2, 2)
    for axes in (np.broadcast_to(axes_a, (len(b), 2, 2)), axes_b):
        for k in range(2):
            ax = axes[:, k]                                               # (N, 2)
            pa = np.einsum('jd,nd->nj', a, ax)                            # (N, 4)
            pb = np.einsum('njd,nd->nj', b, ax)
            overlap &= (pa.max(1) >= pb.min(1)) & (pb.max(1) >= pa.min(1))
    return overlap


def segments_cross(p0, p1, q0, q1) -> bool:
    """Whether segment p0-p1 properly intersects segment q0-q1."""
    def orient(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    d1, d2 = orient(q0, q1, p0), orient(q0, q1, p1)
    d3, d4 = orient(p0, p1, q0), orient(p0, p1, q1)
    return (d1 * d2 < 0) and (d3 * d4 < 0)
