"""
Numpy renderer of the six surround cameras (no OpenGL needed).

The ground is flat and the ego never pitches or rolls, so every camera pixel below the
horizon always sees the same base_link ground point: those points are computed once per
camera, and per frame they are moved into the map (a rotation and a shift) and coloured from
the town's ground class map through a per-scene palette with distance haze. Buildings,
vehicles, pedestrians and traffic lights are boxes: their faces are transformed into the
camera frame, back faces dropped, clipped at the near plane, projected with
`vlmad_ros.rig.Camera.project`'s pinhole model and painted far to near (painter's algorithm
over objects, ordered by the distance to each object's nearest point) with PIL.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from vlmad_ros.rig import Camera, CameraRig
from vlmad_ros.synth.agents import (
    CLASS_BUS, CLASS_PEDESTRIAN, CLASS_TRUCK, EGO_CENTER_OFFSET, EGO_LENGTH, EGO_WIDTH)
from vlmad_ros.synth.geometry import box_corners, DIRS, right_of
from vlmad_ros.synth.town import GREEN, N_GROUND_CLASSES, RED, Town, YELLOW_LIGHT
from vlmad_ros.synth.world import ObjectState, Snapshot, World

FOG_BITS = 3
FOG_LEVELS = 1 << FOG_BITS


@dataclasses.dataclass(frozen=True)
class RenderConfig:
    """View range (the image size is the rig's: scale the rig first)."""

    draw_distance: float = 130.0   # objects farther than this are not drawn [m]
    ground_distance: float = 400.0  # ground beyond this is horizon haze [m]
    near: float = 0.3              # near clipping plane [m]

    def __post_init__(self):
        if self.near <= 0 or self.draw_distance <= self.near:
            raise ValueError(f'RenderConfig.near must be > 0 and < draw_distance, got '
                             f'{self.near}, {self.draw_distance}')
        if self.ground_distance <= 0:
            raise ValueError(f'RenderConfig.ground_distance must be > 0, got '
                             f'{self.ground_distance}')


@dataclasses.dataclass(frozen=True)
class Style:
    """Colours and light of one scene (time of day, weather, paint)."""

    sky_top: Tuple[int, int, int]
    sky_horizon: Tuple[int, int, int]
    ground: np.ndarray            # (N_GROUND_CLASSES, 3) float
    buildings: np.ndarray         # (8, 3)
    cars: np.ndarray              # (12, 3)
    clothes: np.ndarray           # (8, 3)
    sun: np.ndarray               # (3,) unit vector towards the sun (map frame)
    ambient: float
    haze_distance: float          # distance of full haze [m]


def make_style(rng: np.random.Generator) -> Style:
    """Draw a random scene look: clear noon, overcast, dusk; colours jittered per scene."""
    kind = int(rng.choice(3, p=[0.5, 0.3, 0.2]))
    if kind == 0:
        top, hor, amb, haze = (60, 120, 210), (175, 205, 235), 0.55, 420.0
    elif kind == 1:
        top, hor, amb, haze = (135, 140, 150), (195, 198, 202), 0.75, 260.0
    else:
        top, hor, amb, haze = (70, 70, 130), (235, 160, 110), 0.5, 300.0
    jitter = rng.uniform(-12, 12, 3)
    top = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(top, jitter))
    hor = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(hor, jitter))
    asphalt = rng.uniform(70, 115)
    ground = np.array([
        [rng.uniform(60, 100), rng.uniform(100, 140), rng.uniform(50, 80)],  # grass
        [rng.uniform(150, 185)] * 3,                                            # sidewalk
        [asphalt, asphalt, asphalt + 4],                                        # road
        [235, 235, 230],                                                        # white
        [230, 190, 40],                                                         # yellow
        [rng.uniform(120, 150)] * 3,                                            # plaza
        [asphalt - 9, asphalt - 9, asphalt - 7],                             # patches
    ])
    if kind == 2:
        ground = ground * np.array([1.05, 0.85, 0.75])
    buildings = rng.uniform(60, 220, (8, 3))
    buildings[:, 2] = buildings[:, 1] * rng.uniform(0.8, 1.1, 8)
    cars = np.concatenate([rng.uniform(20, 240, (8, 3)),
                           [[235, 235, 235], [25, 25, 28], [150, 150, 155], [180, 30, 30]]])
    clothes = rng.uniform(20, 220, (8, 3))
    az, el = rng.uniform(0, 2 * np.pi), (rng.uniform(0.4, 1.1) if kind != 2 else 0.15)
    sun = np.array([math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), math.sin(el)])
    return Style(top, hor, ground, buildings, cars, clothes, sun, amb, haze)


# Box faces as corner indices (corners: 0-3 bottom ccw from +x+y, 4-7 top), outward normals.
_FACES = np.array([[0, 3, 7, 4], [1, 0, 4, 5], [2, 1, 5, 6], [3, 2, 6, 7], [4, 7, 6, 5]])
_FACE_NORMALS = np.array([[1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0], [0, 0, 1]], float)


def box_faces(cx, cy, z0, yaw, length, width, height) -> Tuple[np.ndarray, np.ndarray]:
    """Faces (B, 5, 4, 3) and outward normals (B, 5, 3) of upright boxes (map frame)."""
    cx, cy, z0, yaw = (np.asarray(a, float).reshape(-1) for a in (cx, cy, z0, yaw))
    hl = np.asarray(length, float).reshape(-1) / 2
    hw = np.asarray(width, float).reshape(-1) / 2
    h = np.asarray(height, float).reshape(-1)
    lx = np.stack([hl, -hl, -hl, hl], 1)
    ly = np.stack([hw, hw, -hw, -hw], 1)
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    x = cx[:, None] + c * lx - s * ly
    y = cy[:, None] + s * lx + c * ly
    corners = np.empty((len(cx), 8, 3))
    corners[:, :4, 0] = x
    corners[:, 4:, 0] = x
    corners[:, :4, 1] = y
    corners[:, 4:, 1] = y
    corners[:, :4, 2] = z0[:, None]
    corners[:, 4:, 2] = (z0 + h)[:, None]
    faces = corners[:, _FACES]                       # (B, 5, 4, 3)
    n = np.empty((len(cx), 5, 3))
    cyaw, syaw = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    n[..., 0] = cyaw * _FACE_NORMALS[:, 0] - syaw * _FACE_NORMALS[:, 1]
    n[..., 1] = syaw * _FACE_NORMALS[:, 0] + cyaw * _FACE_NORMALS[:, 1]
    n[..., 2] = _FACE_NORMALS[:, 2]
    return faces, n


@dataclasses.dataclass
class Parts:
    """Polygons of one frame: (F, 4, 3) map-frame quads with colours, normals and groups."""

    faces: np.ndarray
    normals: np.ndarray
    colours: np.ndarray        # (F, 3) float, before shading
    group: np.ndarray          # (F,) int: object index (painter's order unit)
    order: np.ndarray          # (F,) int: drawing order within the object
    shade: np.ndarray          # (F,) bool: apply sun shading (lamps glow unshaded)
    # Per object: nearest-point geometry (centre x, y, z, half extents, yaw).
    obj_centre: np.ndarray     # (G, 3)
    obj_half: np.ndarray       # (G, 3)
    obj_yaw: np.ndarray        # (G,)

    @staticmethod
    def concat(parts: Sequence['Parts']) -> 'Parts':
        parts = [p for p in parts if len(p.faces)]
        if not parts:
            z = np.zeros((0,))
            return Parts(np.zeros((0, 4, 3)), np.zeros((0, 3)), np.zeros((0, 3)),
                         z.astype(int), z.astype(int), z.astype(bool), np.zeros((0, 3)),
                         np.zeros((0, 3)), z)
        offsets = np.cumsum([0] + [len(p.obj_yaw) for p in parts[:-1]])
        return Parts(
            np.concatenate([p.faces for p in parts]), np.concatenate([p.normals for p in parts]),
            np.concatenate([p.colours for p in parts]),
            np.concatenate([p.group + o for p, o in zip(parts, offsets)]),
            np.concatenate([p.order for p in parts]), np.concatenate([p.shade for p in parts]),
            np.concatenate([p.obj_centre for p in parts]),
            np.concatenate([p.obj_half for p in parts]),
            np.concatenate([p.obj_yaw for p in parts]))


def _boxes_to_parts(boxes: np.ndarray, colours: np.ndarray, group: np.ndarray,
                    order: np.ndarray, n_groups: int, obj: Tuple[np.ndarray, ...],
                    skip_top: bool = False) -> Parts:
    """Boxes (B, 7: cx, cy, z0, yaw, l, w, h) -> Parts (5 faces each, or 4 without tops)."""
    faces, normals = box_faces(*boxes.T)
    nf = 4 if skip_top else 5
    faces, normals = faces[:, :nf], normals[:, :nf]
    b = len(boxes)
    return Parts(faces.reshape(-1, 4, 3), normals.reshape(-1, 3),
                 np.repeat(colours, nf, axis=0), np.repeat(group, nf),
                 np.repeat(order, nf), np.ones(b * nf, bool), *obj)


@functools.lru_cache(maxsize=16)
def _camera_geometry(cam: Camera, ground_distance: float):
    """
    Per-pixel viewing rays of a camera and where they meet the ground (read-only arrays).

    Depends on the camera alone, not on the town or its style, so every scene a process
    records reuses it (it was 2 s of each scene's start-up at 800x450).
    """
    w, h = cam.width, cam.height
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    rays = cam.pixel_rays(u, v)                               # (H, W, 3) base_link
    origin = np.asarray(cam.translation, float)
    dz = rays[..., 2]
    t = np.where(dz < -1e-6, -origin[2] / np.minimum(dz, -1e-6), np.inf)
    dist = t * np.sqrt(rays[..., 0] ** 2 + rays[..., 1] ** 2)
    ground = dist < ground_distance
    rows = np.nonzero(ground.any(axis=1))[0]
    r0 = int(rows[0]) if len(rows) else h
    for a in (rays, t, dist, ground):
        a.setflags(write=False)
    return rays, t, dist, ground, r0


class SceneRenderer:
    """Renders the cameras of a rig (at the rig's image size) for one town and style."""

    def __init__(self, town: Town, rig: CameraRig, style: Style,
                 cfg: RenderConfig = RenderConfig()):
        self.town = town
        self.cfg = cfg
        self.rig = rig
        self.style = style
        lut = np.empty((N_GROUND_CLASSES, FOG_LEVELS, 3))
        haze = np.array(style.sky_horizon, float)
        for f in range(FOG_LEVELS):
            w = (f / (FOG_LEVELS - 1)) ** 1.5
            lut[:, f] = style.ground * (1 - w) + haze * w
        self.ground_lut = np.clip(lut, 0, 255).astype(np.uint8).reshape(-1, 3)
        # The same colours packed in uint32 (R, G, B, 0 in memory order): one gather per pixel.
        rgbx = np.zeros((len(self.ground_lut), 4), np.uint8)
        rgbx[:, :3] = self.ground_lut
        self.ground_lut32 = rgbx.view(np.uint32).reshape(-1)
        self.tex = town.ground.reshape(-1)
        self.tex_w, self.tex_h = town.ground.shape[1], town.ground.shape[0]
        self._cams = [self._prepare_camera(c) for c in self.rig.cameras]
        self._static = self._static_parts()

    # ----- per camera precomputation -----
    def _prepare_camera(self, cam: Camera) -> dict:
        rays, t, dist, ground, r0 = _camera_geometry(cam, self.cfg.ground_distance)
        origin = np.asarray(cam.translation, float)
        # Sky gradient by elevation of the viewing ray.
        elev = np.clip(rays[..., 2], -1, 1)
        a = np.clip(elev / 0.5, 0, 1)[..., None] ** 0.7
        sky = (np.array(self.style.sky_horizon) * (1 - a) + np.array(self.style.sky_top) * a)
        background = np.ascontiguousarray(sky.astype(np.uint8))
        gx = (origin[0] + t * rays[..., 0])[r0:]
        gy = (origin[1] + t * rays[..., 1])[r0:]
        far = ~ground[r0:]
        gx, gy = np.where(far, 0.0, gx), np.where(far, 0.0, gy)
        fog = np.clip(dist[r0:] / self.style.haze_distance * (FOG_LEVELS - 1), 0,
                      FOG_LEVELS - 1).astype(np.int32)
        # Beyond the ground distance (and the few sky pixels in the ground rows): full haze,
        # which is the sky's horizon colour.
        fog[far] = FOG_LEVELS - 1
        inv = 1.0 / self.town.tex_res
        return {'cam': cam, 'r0': r0, 'bg': background, 'origin': origin,
                'gx_tex': (gx * inv).astype(np.float32).reshape(-1),
                'gy_tex': (gy * inv).astype(np.float32).reshape(-1),
                'fog': fog.reshape(-1), 'R': cam.rotation, 't': origin}

    # ----- geometry of a frame -----
    def _static_parts(self) -> dict:
        """Build buildings and traffic-light heads (map frame); lamp colours change per frame."""
        town, st = self.town, self.style
        bl = town.buildings
        boxes = np.array([[b.x, b.y, 0.0, 0.0, b.lx, b.ly, b.height] for b in bl]).reshape(-1, 7)
        cols = st.buildings[[b.colour for b in bl]] if bl else np.zeros((0, 3))
        obj = (np.c_[boxes[:, 0], boxes[:, 1], boxes[:, 6] / 2], boxes[:, [4, 5, 6]] / 2,
               np.zeros(len(boxes)))
        buildings = _boxes_to_parts(boxes, cols, np.arange(len(boxes)), np.zeros(len(boxes), int),
                                    len(boxes), obj)
        # Traffic lights: per approach a far-side overhead head and a near-side kerb head.
        heads = []
        cfg = town.cfg
        for node, sig in town.signals.items():
            c = town.centre(node)
            for d in sig.arms:
                fwd, right = DIRS[d], right_of(d)
                far = c + fwd * (cfg.box - 0.5) + right * cfg.lane_width
                pole = c + fwd * (cfg.box - 0.5) + right * (cfg.half_road + 1.5)
                near = c - fwd * (cfg.box + cfg.crosswalk) + right * (cfg.half_road + 1.0)
                heads.append((node, d, far, pole, near))
        self._heads = heads
        return {'buildings': buildings}

    def _light_parts(self, states: Dict[Tuple[Tuple[int, int], int], int], ego_xy) -> Parts:
        boxes, cols, groups, orders, objc, objh, objy = [], [], [], [], [], [], []
        lamp_faces, lamp_cols, lamp_groups = [], [], []
        g = 0
        dark = np.array([30.0, 30.0, 32.0])
        for node, d, far, pole, near in self._heads:
            if math.hypot(far[0] - ego_xy[0], far[1] - ego_xy[1]) > self.cfg.draw_distance:
                continue
            yaw = math.atan2(DIRS[d][1], DIRS[d][0])
            state = states.get((node, d), 0)
            arm_mid = 0.5 * (far + pole)
            arm_len = float(np.linalg.norm(pole - far))
            for head, z0, pole_xy in ((far, 4.6, pole), (near, 2.4, None)):
                items = [(head[0], head[1], z0, yaw, 0.5, 0.7, 1.7)]
                if pole_xy is not None:
                    items.append((pole_xy[0], pole_xy[1], 0.0, yaw, 0.3, 0.3, 6.6))
                    items.append((arm_mid[0], arm_mid[1], 6.3, yaw, 0.2, arm_len, 0.2))
                else:
                    items.append((head[0], head[1], 0.0, yaw, 0.2, 0.2, z0))
                for k, it in enumerate(items):
                    boxes.append(it)
                    cols.append(dark if k == 0 else np.array([90.0, 90.0, 95.0]))
                    groups.append(g)
                    orders.append(0 if k == 0 else -1)
                # Three lamps on the face towards approaching traffic.
                back = -DIRS[d]
                face_c = np.array([head[0], head[1]]) + back * 0.27
                for k, (lamp_state, on, off) in enumerate((
                        (RED, (255, 40, 30), (70, 20, 20)),
                        (YELLOW_LIGHT, (255, 200, 0), (70, 55, 15)),
                        (GREEN, (40, 255, 90), (15, 60, 25)))):
                    zc = z0 + 1.7 - 0.3 - 0.55 * k
                    lat = right_of(d) * 0.22
                    p = [face_c - lat, face_c + lat]
                    quad = np.array([[p[0][0], p[0][1], zc + 0.22], [p[1][0], p[1][1], zc + 0.22],
                                     [p[1][0], p[1][1], zc - 0.22], [p[0][0], p[0][1], zc - 0.22]])
                    lamp_faces.append(quad)
                    lamp_cols.append(on if state == lamp_state else off)
                    lamp_groups.append((g, back))
                objc.append((head[0], head[1], z0 + 0.85))
                objh.append((0.25, 0.35, 0.85))
                objy.append(yaw)
                g += 1
        if not boxes:
            return Parts.concat([])
        boxes = np.array(boxes)
        parts = _boxes_to_parts(boxes, np.array(cols), np.array(groups), np.array(orders), g,
                                (np.array(objc), np.array(objh), np.array(objy)))
        lamps = Parts(np.array(lamp_faces),
                      np.array([[b[0], b[1], 0.0] for _, b in lamp_groups]),
                      np.array(lamp_cols, float), np.array([gg for gg, _ in lamp_groups]),
                      np.ones(len(lamp_faces), int), np.zeros(len(lamp_faces), bool),
                      np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0))
        return Parts(np.concatenate([parts.faces, lamps.faces]),
                     np.concatenate([parts.normals, lamps.normals]),
                     np.concatenate([parts.colours, lamps.colours]),
                     np.concatenate([parts.group, lamps.group]),
                     np.concatenate([parts.order, lamps.order]),
                     np.concatenate([parts.shade, lamps.shade]),
                     parts.obj_centre, parts.obj_half, parts.obj_yaw)

    def _agent_parts(self, objects: Sequence[ObjectState]) -> Parts:
        st = self.style
        boxes, cols, groups, orders = [], [], [], []
        objc, objh, objy = [], [], []
        for g, o in enumerate(objects):
            c, s = math.cos(o.yaw), math.sin(o.yaw)
            if o.cls == CLASS_PEDESTRIAN:
                cloth = st.clothes[o.colour % len(st.clothes)]
                boxes += [(o.x, o.y, 0.0, o.yaw, 0.3, 0.45, 0.85),
                          (o.x, o.y, 0.85, o.yaw, 0.32, 0.55, 0.65),
                          (o.x, o.y, 1.5, o.yaw, 0.22, 0.22, 0.25)]
                cols += [cloth * 0.5, cloth, np.array([220.0, 180, 150])]
                orders += [0, 1, 2]
            else:
                paint = st.cars[o.colour % len(st.cars)]
                h = o.height
                boxes.append((o.x, o.y, 0.12, o.yaw, o.length - 0.5, o.width - 0.2, 0.35))
                cols.append(np.array([25.0, 25, 25]))
                if o.cls in (CLASS_TRUCK, CLASS_BUS):
                    boxes.append((o.x, o.y, 0.4, o.yaw, o.length, o.width, h - 0.4))
                    cols.append(paint if o.cls == CLASS_BUS else np.array([200.0, 200, 195]))
                    cab = 1.6 if o.cls == CLASS_TRUCK else 0.4
                    fx = o.x + c * (o.length / 2 - cab / 2)
                    fy = o.y + s * (o.length / 2 - cab / 2)
                    boxes.append((fx + c * 0.03, fy + s * 0.03, 0.4 + (h - 0.4) * 0.45, o.yaw,
                                  cab, o.width + 0.02, (h - 0.4) * 0.4))
                    cols.append(np.array([40.0, 50, 60]) if o.cls == CLASS_BUS else paint)
                    orders += [0, 1, 2]
                else:
                    body_h = 0.55 * h - 0.3
                    boxes.append((o.x, o.y, 0.3, o.yaw, o.length, o.width, body_h))
                    cols.append(paint)
                    ox = -0.08 * o.length
                    boxes.append((o.x + c * ox, o.y + s * ox, 0.3 + body_h, o.yaw,
                                  0.52 * o.length, o.width - 0.15, h - 0.3 - body_h))
                    cols.append(paint * 0.35 + np.array([20.0, 30, 45]))
                    orders += [0, 1, 2]
            n_new = len(boxes) - len(groups)
            groups += [g] * n_new
            objc.append((o.x, o.y, o.height / 2))
            objh.append((o.length / 2, o.width / 2, o.height / 2))
            objy.append(o.yaw)
        if not boxes:
            return Parts.concat([])
        return _boxes_to_parts(np.array(boxes), np.array(cols), np.array(groups),
                               np.array(orders), len(objects),
                               (np.array(objc), np.array(objh), np.array(objy)))

    def frame_parts(self, ego_pose: Tuple[float, float, float], objects: Sequence[ObjectState],
                    lights: Dict[Tuple[Tuple[int, int], int], int]) -> Parts:
        """Every polygon within the draw distance of the ego for one instant (map frame)."""
        b = self._static['buildings']
        ex, ey = ego_pose[0], ego_pose[1]
        d = np.hypot(b.obj_centre[:, 0] - ex, b.obj_centre[:, 1] - ey) - \
            np.linalg.norm(b.obj_half[:, :2], axis=1)
        keep_g = np.nonzero(d < self.cfg.draw_distance)[0]
        remap = -np.ones(len(d), int)
        remap[keep_g] = np.arange(len(keep_g))
        fsel = remap[b.group] >= 0
        buildings = Parts(b.faces[fsel], b.normals[fsel], b.colours[fsel], remap[b.group[fsel]],
                          b.order[fsel], b.shade[fsel], b.obj_centre[keep_g], b.obj_half[keep_g],
                          b.obj_yaw[keep_g])
        near_objs = [o for o in objects
                     if math.hypot(o.x - ex, o.y - ey) < self.cfg.draw_distance]
        return Parts.concat([buildings, self._light_parts(lights, (ex, ey)),
                             self._agent_parts(near_objs)])

    # ----- drawing -----
    def render_snapshots(self, snaps: Sequence[Snapshot]) -> List[np.ndarray]:
        """One RGB image per camera; camera k sees the world as in snaps[k]."""
        out = []
        cache: Dict[int, Parts] = {}
        for k, snap in enumerate(snaps):
            key = id(snap)
            if key not in cache:
                cache[key] = self.frame_parts(snap.ego, snap.objects, snap.lights)
            out.append(self.render_camera(k, snap.ego, cache[key]))
        return out

    def render_camera(self, k: int, ego_pose: Tuple[float, float, float], parts: Parts
                      ) -> np.ndarray:
        pc = self._cams[k]
        cam: Camera = pc['cam']
        img = pc['bg'].copy()
        self._ground(pc, ego_pose, img)
        if len(parts.faces):
            self._draw_parts(pc, cam, ego_pose, parts, img)
        return img

    def _ground(self, pc: dict, ego_pose, img: np.ndarray) -> None:
        """Colour the ground rows: base_link ground points -> map texels -> packed RGB LUT."""
        ex, ey, yaw = ego_pose
        inv = 1.0 / self.town.tex_res
        c, s = np.float32(math.cos(yaw)), np.float32(math.sin(yaw))
        ox, oy = self.town.tex_origin
        gx, gy = pc['gx_tex'], pc['gy_tex']          # ground points in texels (base axes)
        mx = gx * c
        mx -= gy * s
        mx += np.float32((ex - ox) * inv)
        my = gx * s
        my += gy * c
        my += np.float32((ey - oy) * inv)
        np.clip(mx, 0, self.tex_w - 1, out=mx)
        np.clip(my, 0, self.tex_h - 1, out=my)
        idx = my.astype(np.int32)
        idx *= self.tex_w
        idx += mx.astype(np.int32)
        cls = self.tex.take(idx).astype(np.int32)
        cls <<= FOG_BITS
        cls |= pc['fog']
        packed = self.ground_lut32.take(cls)
        rows = img[pc['r0']:].reshape(-1, 3)
        rows[:] = packed.view(np.uint8).reshape(-1, 4)[:, :3]

    def _draw_parts(self, pc: dict, cam: Camera, ego_pose, parts: Parts, img: np.ndarray) -> None:
        ex, ey, yaw = ego_pose
        c, s = math.cos(yaw), math.sin(yaw)
        # map -> base_link -> optical: p_opt = R_cam^T (R_yaw^T (p - e) - t_cam)
        r_yaw = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        r_map_opt = r_yaw @ pc['R']                       # optical axes in the map frame
        cam_map = np.array([ex, ey, 0.0]) + r_yaw @ pc['t']
        pts = (parts.faces.reshape(-1, 3) - cam_map) @ r_map_opt   # (F*4, 3) optical frame
        pts = pts.reshape(-1, 4, 3)
        centre = parts.faces.mean(axis=1) - cam_map
        visible = (parts.normals * centre).sum(1) < 0.0
        z = pts[..., 2]
        visible &= z.max(axis=1) > self.cfg.near
        if not np.any(visible):
            return
        # Objects far to near by the distance from the camera to their nearest point.
        rel = cam_map[None] - parts.obj_centre
        cy_, sy_ = np.cos(parts.obj_yaw), np.sin(parts.obj_yaw)
        lx = rel[:, 0] * cy_ + rel[:, 1] * sy_
        ly = -rel[:, 0] * sy_ + rel[:, 1] * cy_
        local = np.stack([lx, ly, rel[:, 2]], 1)
        nearest = np.linalg.norm(local - np.clip(local, -parts.obj_half, parts.obj_half), axis=1)
        idx = np.nonzero(visible)[0]
        rank = -nearest[parts.group[idx]]
        idx = idx[np.lexsort((parts.order[idx], rank))]
        # Shading: ambient + sun on the face normal.
        st = self.style
        lit = st.ambient + (1 - st.ambient) * np.clip(parts.normals[idx] @ st.sun, 0, 1)
        cols = np.where(parts.shade[idx][:, None], parts.colours[idx] * lit[:, None],
                        parts.colours[idx])
        cols = np.clip(cols, 0, 255).astype(np.uint8)
        w, h = cam.width, cam.height
        fx, fy, cx, cy = cam.fx, cam.fy, cam.cx, cam.cy
        near = self.cfg.near
        lim = 8.0 * max(w, h)
        # Project every face at once; faces crossing the near plane are clipped one by one.
        p = pts[idx]                                           # (V, 4, 3)
        z = p[..., 2]
        cross = z.min(axis=1) <= near
        zs = np.where(cross[:, None], 1.0, z)
        u = np.clip(fx * p[..., 0] / zs + cx, -lim, lim)
        v = np.clip(fy * p[..., 1] / zs + cy, -lim, lim)
        onscreen = cross | ~((u.max(1) < 0) | (u.min(1) > w) | (v.max(1) < 0) | (v.min(1) > h))
        uv = np.stack([u, v], axis=-1).tolist()
        colours = [tuple(c) for c in cols.tolist()]
        pil = Image.fromarray(img)
        draw = ImageDraw.Draw(pil)
        for n in np.nonzero(onscreen)[0].tolist():
            if cross[n]:
                poly = _clip_near(p[n], near)
                if len(poly) < 3:
                    continue
                pu = np.clip(fx * poly[:, 0] / poly[:, 2] + cx, -lim, lim)
                pv = np.clip(fy * poly[:, 1] / poly[:, 2] + cy, -lim, lim)
                if pu.max() < 0 or pu.min() > w or pv.max() < 0 or pv.min() > h:
                    continue
                draw.polygon(list(zip(pu.tolist(), pv.tolist())), fill=colours[n])
            else:
                draw.polygon([tuple(q) for q in uv[n]], fill=colours[n])
        img[...] = np.asarray(pil)


def _clip_near(poly: np.ndarray, near: float) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon (optical frame) against z >= near."""
    out = []
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        ina, inb = a[2] >= near, b[2] >= near
        if ina:
            out.append(a)
        if ina != inb:
            t = (near - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out).reshape(-1, 3)


MOSAIC_ORDER = (('CAM_FRONT_LEFT', 'CAM_FRONT', 'CAM_FRONT_RIGHT'),
                ('CAM_BACK_LEFT', 'CAM_BACK', 'CAM_BACK_RIGHT'))


def mosaic(images: Dict[str, np.ndarray]) -> np.ndarray:
    """Front row left-to-right, back row as seen from behind (nuScenes viewer layout)."""
    return np.concatenate([np.concatenate([images[n] for n in row], axis=1)
                           for row in MOSAIC_ORDER], axis=0)


def render_bev(town: Town, style: Style, ego_pose, objects: Sequence[ObjectState],
               lights: Optional[Dict] = None, size: int = 400, extent: float = 50.0,
               route_xy: Optional[np.ndarray] = None) -> np.ndarray:
    """Top-down view around the ego (x forward = up), `extent` metres each side."""
    ex, ey, yaw = ego_pose
    res = 2 * extent / size
    jj, ii = np.meshgrid(np.arange(size), np.arange(size))
    bx = extent - (ii + 0.5) * res          # forward = image up
    by = extent - (jj + 0.5) * res          # left = image left
    c, s = math.cos(yaw), math.sin(yaw)
    mx = ex + c * bx - s * by
    my = ey + s * bx + c * by
    ox, oy = town.tex_origin
    tx = np.clip(((mx - ox) / town.tex_res).astype(int), 0, town.ground.shape[1] - 1)
    ty = np.clip(((my - oy) / town.tex_res).astype(int), 0, town.ground.shape[0] - 1)
    img = np.clip(style.ground[town.ground[ty, tx]], 0, 255).astype(np.uint8)
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)

    def to_px(xy):
        dx, dy = xy[..., 0] - ex, xy[..., 1] - ey
        fwd, left = c * dx + s * dy, -s * dx + c * dy
        return np.stack([(extent - left) / res, (extent - fwd) / res], -1)

    for b in town.buildings:
        if abs(b.x - ex) > extent + 40 or abs(b.y - ey) > extent + 40:
            continue
        corners = np.array([[b.x - b.lx / 2, b.y - b.ly / 2], [b.x + b.lx / 2, b.y - b.ly / 2],
                            [b.x + b.lx / 2, b.y + b.ly / 2], [b.x - b.lx / 2, b.y + b.ly / 2]])
        draw.polygon([tuple(p) for p in to_px(corners).tolist()],
                     fill=tuple(int(v) for v in style.buildings[b.colour]))
    if route_xy is not None and len(route_xy) > 1:
        draw.line([tuple(p) for p in to_px(np.asarray(route_xy)).tolist()], fill=(40, 120, 255),
                  width=3)
    if lights:
        colours = {RED: (255, 0, 0), YELLOW_LIGHT: (255, 200, 0), GREEN: (0, 220, 0)}
        for (node, d), state in lights.items():
            p0, p1 = town.stop_line(node, d)
            draw.line([tuple(p) for p in to_px(np.stack([p0, p1])).tolist()],
                      fill=colours.get(state, (128, 128, 128)), width=3)
    for o in objects:
        corners = box_corners(o.x, o.y, o.yaw, o.length, o.width)
        colour = (255, 140, 0) if o.cls == CLASS_PEDESTRIAN else (30, 30, 200)
        draw.polygon([tuple(p) for p in to_px(corners).tolist()], fill=colour, outline=(0, 0, 0))
    ego = box_corners(ex + c * EGO_CENTER_OFFSET, ey + s * EGO_CENTER_OFFSET, yaw, EGO_LENGTH,
                      EGO_WIDTH)
    draw.polygon([tuple(p) for p in to_px(ego).tolist()], fill=(220, 20, 20), outline=(0, 0, 0))
    return np.asarray(pil).copy()


class Renderer:
    """
    World -> camera images in rig order, at the rig's resolution (the live simulator's view).

    The scene renderer (ground lookup tables, static geometry) is built on the first frame of
    each town; the look comes from the world's `style_seed`.
    """

    def __init__(self, rig: CameraRig, cfg: RenderConfig = RenderConfig()):
        self.rig = rig
        self.cfg = cfg
        self._scene: Optional[SceneRenderer] = None
        self._town: Optional[Town] = None

    def scene(self, world: World) -> SceneRenderer:
        if self._scene is None or self._town is not world.town:
            style = make_style(np.random.default_rng(world.style_seed))
            self._scene = SceneRenderer(world.town, self.rig, style, self.cfg)
            self._town = world.town
        return self._scene

    def render(self, world: World) -> List[np.ndarray]:
        snap = world.snapshot()
        return self.scene(world).render_snapshots([snap] * len(self.rig))
