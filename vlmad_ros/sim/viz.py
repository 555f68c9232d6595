"""
Pictures of closed-loop episodes: a camera mosaic beside a bird's-eye view.

The mosaic and the BEV are the synthetic renderer's (vlmad_ros.synth.render: ego-centred,
heading up, route in blue, stop lines in their light's colour, agents); on top go the ego
(green) and the plan it is following (yellow, the planner's Path). Frames go into a GIF
(Pillow, no ffmpeg needed) and a summary PNG.
"""
from __future__ import annotations

import math
import pathlib
import textwrap
from typing import List, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vlmad_ros.images import decode_jpeg, resize_rgb
from vlmad_ros.sim.episode_trace import Tick, Trace
from vlmad_ros.synth.agents import EGO_CENTER_OFFSET, EGO_LENGTH, EGO_WIDTH
from vlmad_ros.synth.geometry import box_corners
from vlmad_ros.synth.render import make_style, mosaic, MOSAIC_ORDER, render_bev
from vlmad_ros.synth.world import ObjectState
from vlmad_ros.topics import PLAN_DT, PLAN_STEPS

PLAN_HORIZON_S = PLAN_DT * PLAN_STEPS

COMMANDS = {0: 'LEFT', 1: 'RIGHT', 2: 'STRAIGHT'}
BEV_HALF_EXTENT = 30.0   # [m] each side of the ego


def _font(size: int = 12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:   # Pillow < 10.1
        return ImageFont.load_default()


def scene_look(world):
    """Return the renderer's style of a scene (colours of ground and buildings)."""
    return make_style(np.random.default_rng(world.style_seed))


def camera_mosaic(jpegs: Sequence[bytes], names: Sequence[str], tile=(240, 135)) -> np.ndarray:
    """Six JPEGs at `tile` size in the renderer's 2 x 3 viewer layout -> (2h, 3w, 3) uint8."""
    images = {n: resize_rgb(decode_jpeg(j), tile) for n, j in zip(names, jpegs)}
    blank = np.zeros((tile[1], tile[0], 3), np.uint8)
    return mosaic({n: images.get(n, blank) for row in MOSAIC_ORDER for n in row})


def bev(town, style, tick: Tick, size: int = 270,
        half_extent: float = BEV_HALF_EXTENT) -> np.ndarray:
    """Draw the renderer's BEV of a tick plus the ego (green) and its plan (yellow)."""
    x, y, yaw = tick.ego[:3]
    objects = [ObjectState('', int(cls_id), ax, ay, 0.0, ayaw, max(length, 0.6),
                           max(width, 0.6), 1.5, 0.0, 0.0, 0)
               for ax, ay, ayaw, length, width, cls_id in tick.agents]
    lights = {((int(i), int(j)), int(d)): int(state) for state, i, j, d in tick.lights}
    route = np.asarray(tick.route, float) if len(tick.route) > 1 else None
    img = Image.fromarray(render_bev(town, style, (x, y, yaw), objects, lights, size,
                                     half_extent, route))
    draw = ImageDraw.Draw(img)
    res = 2 * half_extent / size
    c, s = math.cos(yaw), math.sin(yaw)

    def to_px(pts_map: np.ndarray) -> List[tuple]:   # as render_bev: forward up, left left
        d = np.asarray(pts_map, float).reshape(-1, 2) - (x, y)
        f = c * d[:, 0] + s * d[:, 1]
        lft = -s * d[:, 0] + c * d[:, 1]
        return list(zip((half_extent - lft) / res, (half_extent - f) / res))

    # The ego: base_link is the rear axle, the box centre ahead of it (synth.agents).
    ego = box_corners(x + EGO_CENTER_OFFSET * c, y + EGO_CENTER_OFFSET * s, yaw, EGO_LENGTH,
                      EGO_WIDTH)
    draw.polygon(to_px(ego), fill=(40, 220, 80), outline=(0, 0, 0))
    if tick.plan:
        plan = np.array(tick.plan, float)
        pm = np.stack([x + c * plan[:, 0] - s * plan[:, 1], y + s * plan[:, 0] + c * plan[:, 1]],
                      1)
        pts = to_px(np.vstack([[x, y], pm]))
        draw.line(pts, fill=(255, 230, 0), width=2)
        for px, py in pts[1:]:
            draw.ellipse((px - 2.5, py - 2.5, px + 2.5, py + 2.5), fill=(255, 230, 0))
    return np.asarray(img)


def frame(trace: Trace, k: int, town, style, caption: str = '') -> np.ndarray:
    """Mosaic + BEV + a caption line for tick k of a trace."""
    tick = trace.ticks[k]
    cams = camera_mosaic(trace.images[k], trace.camera_names)
    side = bev(town, style, tick, size=cams.shape[0])
    body = np.concatenate([cams, side], axis=1)
    bar = Image.new('RGB', (body.shape[1], 20), (20, 20, 20))
    plan_state = 'plan' if tick.plan else 'NO PLAN'
    text = (f'{trace.scenario}:{trace.seed}  t={tick.t:5.1f} s  v={tick.ego[3]:4.1f} m/s  '
            f'command {COMMANDS.get(tick.command, tick.command)}  {plan_state}  {caption}')
    ImageDraw.Draw(bar).text((6, 3), text, fill=(240, 240, 240), font=_font(12))
    return np.concatenate([np.asarray(bar), body], axis=0)


def write_gif(frames: Sequence[np.ndarray], path, fps: float = 5.0) -> pathlib.Path:
    """Animated GIF with Pillow (no ffmpeg needed); frames are (H, W, 3) uint8."""
    path = pathlib.Path(path)
    if not frames:
        raise ValueError('no frames to write')
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], loop=0,
                   duration=int(round(1000.0 / fps)), optimize=False)
    return path


def text_panel(lines: Sequence[str], width: int, font_size: int = 13) -> np.ndarray:
    """Wrap text onto a dark panel -> (H, width, 3) uint8."""
    font = _font(font_size)
    chars = max(20, int(width / (font_size * 0.55)))
    wrapped: List[str] = []
    for line in lines:
        wrapped += textwrap.wrap(line, chars) or ['']
    height = 10 + (font_size + 4) * len(wrapped)
    img = Image.new('RGB', (width, height), (28, 28, 32))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(wrapped):
        draw.text((8, 5 + i * (font_size + 4)), line, fill=(235, 235, 235), font=font)
    return np.asarray(img)


def summary_png(panels: Sequence[np.ndarray], path) -> pathlib.Path:
    """Stack panels vertically (padded to the widest) into one PNG."""
    width = max(p.shape[1] for p in panels)
    padded = [np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0))) for p in panels]
    path = pathlib.Path(path)
    Image.fromarray(np.concatenate(padded, axis=0)).save(path)
    return path


def key_tick(trace: Trace) -> int:
    """Return the tick to show in the summary: the middle one with a plan and a 3 s future."""
    if not trace.ticks:
        raise ValueError('empty trace')
    period = trace.ticks[1].t - trace.ticks[0].t if len(trace.ticks) > 1 else 1.0
    last = max(0, len(trace.ticks) - 1 - int(math.ceil(PLAN_HORIZON_S / period)))
    candidates = [i for i in range(last + 1) if trace.ticks[i].plan] or [0]
    return candidates[len(candidates) // 2]


def driven_future(trace: Trace, k: int) -> Optional[np.ndarray]:
    """Where the ego actually went in the 3 s after tick k: (6, 2) in its base_link then."""
    times = np.array([t.t for t in trace.ticks])
    want = trace.ticks[k].t + PLAN_DT * np.arange(1, PLAN_STEPS + 1)
    if want[-1] > times[-1] + 1e-6:
        return None
    ego = np.array([t.ego for t in trace.ticks])
    xs, ys = np.interp(want, times, ego[:, 0]), np.interp(want, times, ego[:, 1])
    x, y, yaw = trace.ticks[k].ego[:3]
    c, s = math.cos(yaw), math.sin(yaw)
    dx, dy = xs - x, ys - y
    return np.stack([c * dx + s * dy, -s * dx + c * dy], 1)


def teacher_view(trace: Trace, k: int, rig, town):
    """
    Run the rule teacher on tick k as VLM-AD's annotator would, on the future actually driven.

    Returns (front image with the red future path, TeacherResult), or None without a 3 s
    future. The planner itself has no reasoning output (the VLM-AD heads are training-only);
    this shows what the teacher says about the closed-loop behaviour.
    """
    from vlmad_ros.teacher.base import (LightState, ObjectClass, SceneObject, TeacherInput,
                                        TrafficLightAhead)
    from vlmad_ros.teacher.overlay import draw_path
    from vlmad_ros.teacher.rule import RuleTeacher
    from vlmad_ros.types import Trajectory
    future = driven_future(trace, k)
    if future is None or 'CAM_FRONT' not in trace.camera_names:
        return None
    tick = trace.ticks[k]
    image = decode_jpeg(trace.images[k][trace.camera_names.index('CAM_FRONT')])
    camera = rig['CAM_FRONT'].scaled(image.shape[1], image.shape[0])
    x, y, yaw = tick.ego[:3]
    c, s = math.cos(yaw), math.sin(yaw)

    def local(px, py):
        return c * (px - x) + s * (py - y), -s * (px - x) + c * (py - y)

    objects = []
    for ax, ay, ayaw, length, width, cls_id in tick.agents:
        lx, ly = local(ax, ay)
        objects.append(SceneObject(lx, ly, length, width, ayaw - yaw, ObjectClass(int(cls_id))))
    lights = []
    for st, i, j, d in tick.lights:
        p0, p1 = town.stop_line((int(i), int(j)), int(d))
        lights.append(TrafficLightAhead(LightState(int(st)), (local(*p0), local(*p1))))
    traj = Trajectory.from_xy(future)
    inp = TeacherInput(image=image, camera=camera, trajectory=traj, speed=tick.ego[3],
                       objects=tuple(objects), lights=tuple(lights))
    return draw_path(image, camera, traj), RuleTeacher().annotate(inp)
