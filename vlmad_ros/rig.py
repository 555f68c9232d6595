"""
Camera rigs: intrinsics and extrinsics of the six surround cameras, and projection.

One implementation used everywhere: the model's ray encoding, the synthetic renderer, the
annotator's path overlay, the nuScenes converter and CameraInfo messages.

Frames (REP 103): base_link x forward, y left, z up. A camera's optical frame is z forward,
x right, y down (REP 103 "_optical"). `T_base_cam` maps optical-frame points into base_link.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import List, Sequence, Tuple

import numpy as np
from vlmad_ros.paths import config_dir
import yaml

# The nuScenes channel order. Every per-camera list in the package follows it.
CAMERA_NAMES: Tuple[str, ...] = (
    'CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT',
    'CAM_BACK', 'CAM_BACK_LEFT', 'CAM_BACK_RIGHT')


def quat_wxyz_to_matrix(q: Sequence[float]) -> np.ndarray:
    """Rotation matrix of a (w, x, y, z) quaternion (normalised here)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def matrix_to_quat_wxyz(rot: np.ndarray) -> np.ndarray:
    """(w, x, y, z) quaternion of a rotation matrix, w >= 0."""
    m = np.asarray(rot, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.array(q)
    return q if q[0] >= 0 else -q


@dataclasses.dataclass(frozen=True)
class Camera:
    """A pinhole camera: intrinsics for `width` x `height` and its pose on the car."""

    name: str
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    translation: Tuple[float, float, float]        # optical centre in base_link [m]
    rotation_wxyz: Tuple[float, float, float, float]  # optical frame in base_link

    def __post_init__(self):
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f'camera {self.name}: width/height must be > 0, got '
                             f'{self.width}x{self.height}')
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f'camera {self.name}: fx/fy must be > 0, got {self.fx}, {self.fy}')
        if len(self.translation) != 3 or len(self.rotation_wxyz) != 4:
            raise ValueError(f'camera {self.name}: translation needs 3 values, rotation_wxyz 4')

    @property
    def K(self) -> np.ndarray:  # noqa: N802 (the usual name)
        """3x3 intrinsic matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def rotation(self) -> np.ndarray:
        """3x3 rotation, optical frame -> base_link."""
        return quat_wxyz_to_matrix(self.rotation_wxyz)

    @property
    def T_base_cam(self) -> np.ndarray:  # noqa: N802
        """4x4 transform of optical-frame points into base_link."""
        t = np.eye(4)
        t[:3, :3] = self.rotation
        t[:3, 3] = self.translation
        return t

    def scaled(self, width: int, height: int) -> 'Camera':
        """Return the same camera at another resolution (intrinsics scaled, pose unchanged)."""
        sx, sy = width / self.width, height / self.height
        return dataclasses.replace(
            self, width=int(width), height=int(height), fx=self.fx * sx, fy=self.fy * sy,
            cx=self.cx * sx, cy=self.cy * sy)

    def cropped(self, x0: int, y0: int, width: int, height: int, name: str = '') -> 'Camera':
        """Return the camera of a pixel window (x0, y0, w, h): same pose, shifted centre."""
        return dataclasses.replace(self, name=name or self.name, width=int(width),
                                   height=int(height), cx=self.cx - x0, cy=self.cy - y0)

    def with_intrinsics(self, width: int, height: int, k: Sequence[float]) -> 'Camera':
        """Replace intrinsics (e.g. from a CameraInfo `k`, row-major 3x3)."""
        k = np.asarray(k, dtype=np.float64).reshape(3, 3)
        return dataclasses.replace(self, width=int(width), height=int(height), fx=float(k[0, 0]),
                                   fy=float(k[1, 1]), cx=float(k[0, 2]), cy=float(k[1, 2]))

    def project(self, points_base: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """
        Project (N, 3) base_link points. Returns pixels (N, 2) and depth (N,) along z.

        Points with depth <= 0 are behind the camera: their pixels are meaningless; callers
        clip against the near plane first (the renderer and the path overlay do).
        """
        pts = np.asarray(points_base, dtype=np.float64).reshape(-1, 3)
        cam = (pts - np.asarray(self.translation)) @ self.rotation  # (N, 3) optical frame
        depth = cam[:, 2]
        safe = np.where(np.abs(depth) < 1e-9, 1e-9, depth)
        u = self.fx * cam[:, 0] / safe + self.cx
        v = self.fy * cam[:, 1] / safe + self.cy
        return np.stack([u, v], axis=1), depth

    def pixel_rays(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Return unit viewing rays in base_link for pixel coordinates (any shape) -> (..., 3)."""
        x = (np.asarray(u, dtype=np.float64) - self.cx) / self.fx
        y = (np.asarray(v, dtype=np.float64) - self.cy) / self.fy
        d = np.stack([x, y, np.ones_like(x)], axis=-1) @ self.rotation.T
        return d / np.linalg.norm(d, axis=-1, keepdims=True)

    def to_dict(self) -> dict:
        return {'width': self.width, 'height': self.height,
                'intrinsics': {'fx': self.fx, 'fy': self.fy, 'cx': self.cx, 'cy': self.cy},
                'translation': [float(v) for v in self.translation],
                'rotation_wxyz': [float(v) for v in self.rotation_wxyz]}

    @classmethod
    def from_dict(cls, name: str, d: dict) -> 'Camera':
        try:
            k = d['intrinsics']
            return cls(name=name, width=int(d['width']), height=int(d['height']),
                       fx=float(k['fx']), fy=float(k['fy']), cx=float(k['cx']), cy=float(k['cy']),
                       translation=tuple(float(v) for v in d['translation']),
                       rotation_wxyz=tuple(float(v) for v in d['rotation_wxyz']))
        except KeyError as err:
            raise ValueError(f'camera {name}: missing key {err}') from None


@dataclasses.dataclass(frozen=True)
class CameraRig:
    """The cameras of one car, in CAMERA_NAMES order."""

    name: str
    cameras: Tuple[Camera, ...]
    frame_id: str = 'base_link'

    def __post_init__(self):
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ValueError(f'rig {self.name}: duplicate camera names {names}')

    @property
    def names(self) -> List[str]:
        return [c.name for c in self.cameras]

    def __getitem__(self, name: str) -> Camera:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(f'rig {self.name} has no camera {name!r} (has {self.names})')

    def __len__(self) -> int:
        return len(self.cameras)

    def scaled(self, width: int, height: int) -> 'CameraRig':
        cameras = tuple(c.scaled(width, height) for c in self.cameras)
        return dataclasses.replace(self, cameras=cameras)

    def replace_camera(self, camera: Camera) -> 'CameraRig':
        return dataclasses.replace(
            self, cameras=tuple(camera if c.name == camera.name else c for c in self.cameras))

    def to_dict(self) -> dict:
        return {'name': self.name, 'frame_id': self.frame_id,
                'cameras': {c.name: c.to_dict() for c in self.cameras}}

    @classmethod
    def from_dict(cls, d: dict) -> 'CameraRig':
        if not isinstance(d, dict) or 'cameras' not in d:
            raise ValueError('a rig needs a "cameras" mapping')
        cams = d['cameras']
        order = [n for n in CAMERA_NAMES if n in cams] + [n for n in cams if n not in CAMERA_NAMES]
        return cls(name=str(d.get('name', 'rig')), frame_id=str(d.get('frame_id', 'base_link')),
                   cameras=tuple(Camera.from_dict(n, cams[n]) for n in order))

    @classmethod
    def load(cls, path) -> 'CameraRig':
        path = pathlib.Path(path)
        if not path.is_file():
            raise FileNotFoundError(f'rig file not found: {path}')
        with open(path) as f:
            return cls.from_dict(yaml.safe_load(f))

    def save(self, path) -> None:
        with open(path, 'w') as f:
            yaml.safe_dump(self.to_dict(), f, sort_keys=False)


def load_rig(name_or_path: str) -> CameraRig:
    """Load a rig by name ('nuscenes', 'carla') from config/rigs, or from a yaml path."""
    path = pathlib.Path(name_or_path)
    if path.suffix in ('.yaml', '.yml') or path.is_file():
        return CameraRig.load(path)
    return CameraRig.load(config_dir() / 'rigs' / f'{name_or_path}.yaml')
