"""
Record synthetic scenes as rosbag2, in the layout of docs/BAG_LAYOUT.md.

One bag per scene. The world steps at the odometry rate (50 Hz); each camera fires at 12 Hz
with its own small delay after CAM_FRONT (like nuScenes' cameras, within 42 ms) and sees the
world as it is at its own stamp (agent poses interpolated between physics steps). Messages are
written in stamp order; same seed and index -> the same bytes.
"""
from __future__ import annotations

import collections
import dataclasses
import heapq
import math
import pathlib
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from vlmad_ros import topics
from vlmad_ros.bagschema import BagWriter, msg_class
from vlmad_ros.data import rosmsgs
from vlmad_ros.data.geometry import quat_wxyz_from_yaw
from vlmad_ros.images import encode_jpeg
from vlmad_ros.rig import CAMERA_NAMES, CameraRig, load_rig
from vlmad_ros.synth import dagger, perturb
from vlmad_ros.synth.dagger import DaggerConfig
from vlmad_ros.synth.perturb import PerturbConfig
from vlmad_ros.synth.render import make_style, RenderConfig, SceneRenderer
from vlmad_ros.synth.scenarios import make_world, SceneConfig
from vlmad_ros.synth.world import interpolate, ObjectState, Snapshot, World

NS = 1_000_000_000
GROUND_TRUTH_RADIUS = 80.0     # agents recorded around the ego [m] (World.objects' default)
LIGHTS_TYPE = 'vlmad_ros/msg/TrafficLightArray'
LIGHT_TYPE = 'vlmad_ros/msg/TrafficLight'

# Delay of each camera after CAM_FRONT [s]: they fire clockwise, as the nuScenes lidar sweeps.
CAMERA_OFFSETS_S: Dict[str, float] = {
    'CAM_FRONT': 0.0, 'CAM_FRONT_RIGHT': 0.0085, 'CAM_BACK_RIGHT': 0.017,
    'CAM_BACK': 0.025, 'CAM_BACK_LEFT': 0.0335, 'CAM_FRONT_LEFT': 0.042}


@dataclasses.dataclass(frozen=True)
class RecordConfig:
    """How scenes are recorded."""

    duration: float = 20.0        # [s] per scene (nuScenes scenes are 20 s)
    width: int = 1600             # camera image size [px]
    height: int = 900
    rig: str = 'nuscenes'         # rig name or yaml path
    camera_hz: float = 12.0
    odom_hz: float = 50.0         # also the physics step
    keyframe_every: int = 6       # camera frames per keyframe (12 Hz / 6 = 2 Hz)
    jpeg_quality: int = 90
    storage: str = 'mcap'
    start_time_s: int = 1_700_000_000   # stamp of scene 0's first message; +1000 s per index
    # Render cameras only for keyframes (ground truth, commands and odometry stay at their
    # rates): a training set at a sixth of the render cost. Replay-style bags keep all.
    keyframe_images_only: bool = False
    perturb: PerturbConfig = PerturbConfig()     # recovery data (off by default)
    dagger: DaggerConfig = DaggerConfig()        # a planner drives windows (off by default)
    scene: SceneConfig = SceneConfig()
    render: RenderConfig = RenderConfig()

    def __post_init__(self):
        if not (math.isfinite(self.duration) and self.duration > 0):
            raise ValueError(f'RecordConfig.duration must be > 0 s, got {self.duration}')
        if not (16 <= self.width <= 8192 and 16 <= self.height <= 8192):
            raise ValueError(f'RecordConfig.width/height must be in [16, 8192], got '
                             f'{self.width}x{self.height}')
        if not 0 < self.camera_hz <= self.odom_hz:
            raise ValueError(f'RecordConfig.camera_hz must be in (0, odom_hz], got '
                             f'{self.camera_hz}')
        if self.keyframe_every < 1:
            raise ValueError(f'RecordConfig.keyframe_every must be >= 1, got '
                             f'{self.keyframe_every}')
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f'RecordConfig.jpeg_quality must be in [1, 100], got '
                             f'{self.jpeg_quality}')
        if self.storage not in ('mcap', 'sqlite3'):
            raise ValueError(f'RecordConfig.storage must be mcap or sqlite3, got {self.storage!r}')


def scene_name(seed: int, index: int) -> str:
    return f'synth-{seed}-{index:04d}'


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """Independent stream per (seed, scene index): same scenes whatever the worker count."""
    return np.random.default_rng([int(seed), int(index)])


def layout() -> List[Tuple[str, str]]:
    """Topics and types of a synthetic bag (declared up front, in this order)."""
    out = [(topics.TF_STATIC, rosmsgs.TF_MESSAGE), (topics.TF, rosmsgs.TF_MESSAGE),
           (topics.ODOM, rosmsgs.ODOMETRY)]
    for image, info in zip(topics.CAMERA_IMAGE_TOPICS, topics.CAMERA_INFO_TOPICS):
        out += [(image, rosmsgs.COMPRESSED_IMAGE), (info, rosmsgs.CAMERA_INFO)]
    out += [(topics.COMMAND, rosmsgs.COMMAND), (topics.OBJECTS, rosmsgs.OBJECTS),
            (topics.TRAFFIC_LIGHTS, LIGHTS_TYPE), (topics.KEYFRAME, rosmsgs.KEYFRAME)]
    return out


def objects_msg(stamp_ns: int, ego: Tuple[float, float, float], objects: List[ObjectState],
                radius: float = GROUND_TRUTH_RADIUS):
    """Build the GroundTruthObjectArray in base_link of the ego pose `ego` (map x, y, yaw)."""
    x0, y0, yaw0 = ego
    c, s = math.cos(yaw0), math.sin(yaw0)
    out = []
    for o in objects:
        dx, dy = o.x - x0, o.y - y0
        if math.hypot(dx, dy) > radius:
            continue
        out.append(rosmsgs.ground_truth_object(
            o.id, o.cls, (c * dx + s * dy, -s * dx + c * dy, o.z),
            quat_wxyz_from_yaw(o.yaw - yaw0),
            (o.length, o.width, o.height), (c * o.vx + s * o.vy, -s * o.vx + c * o.vy, 0.0)))
    return rosmsgs.ground_truth_objects(stamp_ns, topics.BASE_FRAME, out)


def lights_msg(stamp_ns: int, world: World, states: Dict) -> object:
    """Build the TrafficLightArray (map frame) with every light of the town."""
    point = msg_class('geometry_msgs/msg/Point')
    light_cls = msg_class(LIGHT_TYPE)
    lights = []
    for lid, _, p0, p1, node, d in world.lights():
        lights.append(light_cls(id=lid, state=int(states[(node, d)]),
                                stop_line_start=point(x=float(p0[0]), y=float(p0[1]), z=0.0),
                                stop_line_end=point(x=float(p1[0]), y=float(p1[1]), z=0.0)))
    return msg_class(LIGHTS_TYPE)(header=rosmsgs.header(stamp_ns, topics.MAP_FRAME),
                                  lights=lights)


class _StampOrderedWriter:
    """
    Write messages in stamp order although they are produced out of it.

    A camera set is produced when its last camera has fired, after odometry stamped between
    its cameras; messages wait in a heap until nothing earlier can still come.
    """

    def __init__(self, bag: BagWriter):
        self.bag = bag
        self.pending: List[tuple] = []       # heap of (stamp, order, seq, topic, msg)
        self.seq = 0
        self.counts: Dict[str, int] = {}

    def push(self, stamp: int, order: int, topic: str, msg) -> None:
        heapq.heappush(self.pending, (stamp, order, self.seq, topic, msg))
        self.seq += 1

    def flush(self, until_ns: Optional[int]) -> None:
        """Write everything stamped before `until_ns` (all if None), in stamp order."""
        while self.pending and (until_ns is None or self.pending[0][0] < until_ns):
            stamp, _, _, topic, msg = heapq.heappop(self.pending)
            self.bag.write(topic, msg, stamp)
            self.counts[topic] = self.counts.get(topic, 0) + 1


def _scene_rig(cfg: RecordConfig) -> CameraRig:
    """Return the rig's six cameras in CAMERA_NAMES order, at the recording's resolution."""
    rig = load_rig(cfg.rig)
    if [c for c in CAMERA_NAMES if c not in rig.names]:
        raise ValueError(f'rig {cfg.rig!r} must have the cameras {list(CAMERA_NAMES)}')
    rig = CameraRig(rig.name, tuple(rig[c] for c in CAMERA_NAMES), rig.frame_id)
    return rig.scaled(cfg.width, cfg.height)


def record_scene(out_dir, seed: int, index: int, cfg: RecordConfig = RecordConfig(),
                 progress: Optional[Callable[[int], None]] = None,
                 overwrite: bool = False) -> Dict:
    """Simulate, render and write one scene's bag at out_dir/<scene name>; return a summary."""
    name = scene_name(seed, index)
    path = pathlib.Path(out_dir) / name
    world = make_world(scene_rng(seed, index), cfg.scene)
    rig = _scene_rig(cfg)
    style = make_style(np.random.default_rng(world.style_seed))
    renderer = SceneRenderer(world.town, rig, style, cfg.render)
    t0_ns = int(cfg.start_time_s + 1000 * index) * NS
    dt = 1.0 / cfg.odom_hz
    n_steps = int(round(cfg.duration * cfg.odom_hz))
    offsets = [CAMERA_OFFSETS_S.get(c.name, 0.0) for c in rig.cameras]
    # Every camera of the last set fires within the recording.
    n_frames = int(math.floor((cfg.duration - max(offsets)) * cfg.camera_hz + 1e-9)) + 1
    knocks = perturb.schedule(cfg.perturb, np.random.default_rng([int(seed), int(index), 7]),
                              cfg.duration, cfg.keyframe_every / cfg.camera_hz)
    pending_knocks = list(knocks)
    applied = []
    learner = dagger.make_learner(cfg.dagger, cfg.rig, 1.0 / cfg.odom_hz, cfg.jpeg_quality,
                                  seed, index, cfg.duration)

    def ns(t: float) -> int:
        return t0_ns + int(round(t * NS))

    with BagWriter(path, storage=cfg.storage, overwrite=overwrite) as bag:
        for topic, msgtype in layout():
            bag.add_topic(topic, msgtype)
        out = _StampOrderedWriter(bag)
        static = [rosmsgs.transform_stamped(t0_ns, topics.BASE_FRAME,
                                            topics.camera_optical_frame(c.name), c.translation,
                                            c.rotation_wxyz) for c in rig.cameras]
        static.append(rosmsgs.map_to_odom(t0_ns))
        out.push(t0_ns, 0, topics.TF_STATIC, rosmsgs.tf_message(static))
        history: collections.deque = collections.deque(maxlen=8)   # (snapshot, command)
        frame_k = 0
        for step in range(n_steps + 1):
            if step > 0 and learner is not None:
                learner.step(world, dt)
            elif step > 0:
                world.step(dt)
            while pending_knocks and pending_knocks[0].t <= world.t + 0.5 * dt:
                event = pending_knocks.pop(0)
                if learner is None or not learner.active(world.t):
                    if perturb.apply(world.ego, event, cfg.perturb.min_speed):
                        applied.append(event)
            history.append((world.snapshot(), int(world.route_command())))
            now = history[-1][0].t
            # Camera sets whose last camera has fired by now.
            while frame_k < n_frames:
                t_set = frame_k / cfg.camera_hz
                if t_set + max(offsets) > now + 1e-9 and step < n_steps:
                    break
                keyframe = _is_keyframe(cfg, frame_k, t_set, knocks) and (
                    learner is None or learner.keeps(t_set))
                _render_set(out.push, renderer, rig, cfg, world, name, frame_k, t_set, offsets,
                            history, ns, keyframe=keyframe)
                frame_k += 1
                if progress is not None:
                    progress(1)
            _push_ego_motion(out, world, ns(world.t))
            # Later sets are stamped after now - max offset: everything before is final.
            out.flush(ns(now - max(offsets) - dt))
        out.flush(None)
    inf = world.infractions
    return {'bag': str(path), 'scene': name, 'scenario': world.scenario, 'frames': frame_k,
            'counts': out.counts, 'collisions': len(inf.collisions),
            'red_lights': len(inf.red_lights), 'route_m': round(world.route_progress(), 2),
            'perturbations': len(applied), **(learner.summary() if learner else {})}


def _push_ego_motion(out: _StampOrderedWriter, world: World, stamp: int) -> None:
    """Queue the ego's odometry and its odom -> base_link transform at `stamp`."""
    e = world.ego
    tw = world.ego_twist()
    odom, tf = rosmsgs.ego_motion(stamp, (e.x, e.y, 0.0), quat_wxyz_from_yaw(e.yaw),
                                  (tw['vx'], tw['vy'], 0.0), (0.0, 0.0, tw['wz']))
    out.push(stamp, 1, topics.ODOM, odom)
    out.push(stamp, 1, topics.TF, tf)


def _is_keyframe(cfg: RecordConfig, k: int, t_set: float, knocks) -> bool:
    """Every keyframe_every-th set, unless a perturbation falls inside its 3 s future."""
    return k % cfg.keyframe_every == 0 and not perturb.overlaps_future(knocks, t_set)


def _at(history, t: float) -> Tuple[Snapshot, int]:
    """Snapshot (interpolated) and route command at time t from the recent history."""
    snaps = [h[0] for h in history]
    for (a, ca), (b, _) in zip(history, list(history)[1:]):
        if a.t <= t <= b.t:
            return interpolate(a, b, t), ca
    if t <= snaps[0].t:
        return snaps[0], history[0][1]
    return snaps[-1], history[-1][1]


def _render_set(push, renderer, rig, cfg, world, name, k, t_set, offsets, history, ns,
                keyframe: bool) -> None:
    """Camera set k (each camera at its own stamp): images, infos, ground truth, keyframe."""
    set_stamp = ns(t_set)
    ref, cmd = _at(history, t_set)
    if keyframe or not cfg.keyframe_images_only:
        snaps = [_at(history, t_set + off)[0] for off in offsets]
        images = renderer.render_snapshots(snaps)
        for cam, img, off in zip(rig.cameras, images, offsets):
            stamp = ns(t_set + off)
            jpeg = encode_jpeg(img, cfg.jpeg_quality)
            push(stamp, 2, topics.camera_image_topic(cam.name), rosmsgs.compressed_image(
                stamp, topics.camera_optical_frame(cam.name), jpeg))
            push(stamp, 3, topics.camera_info_topic(cam.name), rosmsgs.camera_info(stamp, cam))
    push(set_stamp, 4, topics.COMMAND, rosmsgs.driving_command(set_stamp, cmd))
    push(set_stamp, 5, topics.OBJECTS, objects_msg(set_stamp, ref.ego, ref.objects))
    push(set_stamp, 6, topics.TRAFFIC_LIGHTS, lights_msg(set_stamp, world, ref.lights))
    if keyframe:
        push(set_stamp, 7, topics.KEYFRAME, rosmsgs.keyframe(
            set_stamp, topics.BASE_FRAME, f'{name}-{k // cfg.keyframe_every:03d}', name,
            world.scenario))
