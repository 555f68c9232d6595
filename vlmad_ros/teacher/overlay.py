"""
The VLM-AD prompt image: the ego's future path drawn onto the front camera as a red line.

The path (ego origin, then the 6 future waypoints, on the ground plane) is densified, clipped
against the camera's near plane in 3D (so points behind the camera never wrap around), projected
with the rig's Camera.project, clipped to the image in 2D, and drawn anti-aliased: a coverage
mask rendered at 4x supersampling over the path's bounding box only, then box-filtered down.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from vlmad_ros.rig import Camera
from vlmad_ros.types import Trajectory

RED = (255, 0, 0)
NEAR_PLANE_M = 1.0     # clip the path this far in front of the camera
STEP_M = 0.25          # densify the path so perspective curves smoothly
SUPERSAMPLE = 4


def default_line_width(image_width: int) -> int:
    """About 8 px at 1600 wide: visible at full size and after a VLM's own downscaling."""
    return max(2, int(round(image_width / 200)))


def path_points(trajectory: Trajectory, ground_z: float = 0.0, step: float = STEP_M) -> np.ndarray:
    """
    (N, 3) base_link points from the ego origin through the waypoints, about `step` apart.

    A Catmull-Rom spline through the origin and the 6 waypoints (the path leaves the origin
    along the ego's heading, x), so a turn is drawn as a curve, not as 6 straight pieces.
    """
    ctrl = np.vstack([np.zeros((1, 2)), np.asarray(trajectory.xy, dtype=np.float64)])
    first = np.linalg.norm(ctrl[1] - ctrl[0])
    before = np.array([[-max(first, 1e-3), 0.0]])
    after = 2 * ctrl[-1:] - ctrl[-2:-1]
    p = np.vstack([before, ctrl, after])
    out = [ctrl[:1]]
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        n = max(1, int(np.ceil(np.linalg.norm(p2 - p1) / step)))
        t = (np.arange(1, n + 1) / n)[:, None]
        out.append(0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                          + (3 * p1 - p0 - 3 * p2 + p3) * t ** 3))
    pts = np.vstack(out)
    return np.hstack([pts, np.full((len(pts), 1), ground_z)])


def _clip_near(points_cam_depth: np.ndarray, points: np.ndarray,
               near: float) -> List[np.ndarray]:
    """Split a 3D polyline into pieces in front of the near plane (depth >= near)."""
    pieces, cur = [], []
    for i in range(len(points)):
        d = points_cam_depth[i]
        if i > 0:
            d0 = points_cam_depth[i - 1]
            if (d0 >= near) != (d >= near):  # crossing: add the intersection
                t = (near - d0) / (d - d0)
                cur.append(points[i - 1] + t * (points[i] - points[i - 1]))
                if d < near:
                    pieces.append(np.array(cur))
                    cur = []
        if d >= near:
            cur.append(points[i])
    if cur:
        pieces.append(np.array(cur))
    return [p for p in pieces if len(p) >= 2]


def _clip_segment(p: np.ndarray, q: np.ndarray, lo: np.ndarray,
                  hi: np.ndarray) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Liang-Barsky: the part of segment p->q inside the box [lo, hi], or None."""
    d = q - p
    t0, t1 = 0.0, 1.0
    for k in range(2):
        for pk, qk in ((-d[k], p[k] - lo[k]), (d[k], hi[k] - p[k])):
            if abs(pk) < 1e-12:
                if qk < 0:
                    return None
                continue
            r = qk / pk
            if pk < 0:
                t0 = max(t0, r)
            else:
                t1 = min(t1, r)
            if t0 > t1:
                return None
    return p + t0 * d, p + t1 * d


def project_path(camera: Camera, trajectory: Trajectory, ground_z: float = 0.0,
                 margin: float = 0.0, near: float = NEAR_PLANE_M) -> List[np.ndarray]:
    """Pixel polylines (each (M, 2)) of the path inside the image (grown by `margin` px)."""
    pts = path_points(trajectory, ground_z)
    _, depth = camera.project(pts)
    lo = np.array([-margin, -margin])
    hi = np.array([camera.width + margin, camera.height + margin])
    polylines = []
    for piece in _clip_near(depth, pts, near):
        uv, _ = camera.project(piece)
        cur: List[np.ndarray] = []
        for a, b in zip(uv[:-1], uv[1:]):
            seg = _clip_segment(a, b, lo, hi)
            if seg is None:
                if len(cur) >= 2:
                    polylines.append(np.array(cur))
                cur = []
                continue
            s, e = seg
            if cur and np.allclose(cur[-1], s):
                cur.append(e)
            else:
                if len(cur) >= 2:
                    polylines.append(np.array(cur))
                cur = [s, e]
        if len(cur) >= 2:
            polylines.append(np.array(cur))
    return polylines


def draw_path(image: np.ndarray, camera: Camera, trajectory: Trajectory,
              color: Sequence[int] = RED, width: Optional[int] = None,
              ground_z: float = 0.0) -> np.ndarray:
    """
    Return a copy of `image` (H, W, 3) uint8 with the future path drawn as an anti-aliased line.

    `camera` must describe `image` (same size; use Camera.scaled after resizing).
    """
    h, w = image.shape[:2]
    if (camera.width, camera.height) != (w, h):
        raise ValueError(f'camera is {camera.width}x{camera.height}, image is {w}x{h}')
    width = default_line_width(w) if width is None else int(width)
    if width < 1:
        raise ValueError(f'width must be >= 1 px, got {width}')
    out = np.array(image, dtype=np.uint8, copy=True)
    lines = project_path(camera, trajectory, ground_z, margin=width)
    if not lines:
        return out
    allpts = np.vstack(lines)
    x0 = int(max(0, np.floor(allpts[:, 0].min() - width)))
    y0 = int(max(0, np.floor(allpts[:, 1].min() - width)))
    x1 = int(min(w, np.ceil(allpts[:, 0].max() + width) + 1))
    y1 = int(min(h, np.ceil(allpts[:, 1].max() + width) + 1))
    if x1 <= x0 or y1 <= y0:
        return out
    s = SUPERSAMPLE
    mask = Image.new('L', ((x1 - x0) * s, (y1 - y0) * s), 0)
    draw = ImageDraw.Draw(mask)
    r = width * s / 2.0
    for line in lines:
        pts = [((u - x0) * s, (v - y0) * s) for u, v in line]
        draw.line(pts, fill=255, width=int(round(width * s)), joint='curve')
        for cx, cy in (pts[0], pts[-1]):  # round caps
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    alpha = np.asarray(mask.resize((x1 - x0, y1 - y0), Image.BOX), dtype=np.float32)[..., None]
    alpha /= 255.0
    region = out[y0:y1, x0:x1].astype(np.float32)
    col = np.asarray(color, dtype=np.float32)
    blended = region * (1.0 - alpha) + col * alpha + 0.5
    out[y0:y1, x0:x1] = np.clip(blended, 0, 255).astype(np.uint8)
    return out


def red_mask(image: np.ndarray, min_red: int = 200, max_other: int = 60) -> np.ndarray:
    """Pixels that are clearly the overlay's red (tests and checks of sent images)."""
    img = np.asarray(image).astype(np.int16)
    return (img[..., 0] >= min_red) & (img[..., 1] <= max_other) & (img[..., 2] <= max_other)
