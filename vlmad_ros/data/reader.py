"""
rosbag2 driving logs -> samples at keyframes (what the dataset caches and evaluation reads).

Two passes over a bag, so memory stays bounded whatever its length:
1. everything but the images: keyframe marks, odometry, calibration, ground-truth objects,
   route commands, teacher records (small);
2. the camera images and the odometry through the planner node's ApproximateTimeSynchronizer
   (vlmad_ros.sync, same inputs in the same order, same parameters), keeping the set whose
   reference camera (CAM_FRONT) carries a keyframe's stamp; its odometry message gives the ego
   state, as live; each sample is yielded as soon as its set is complete.
Targets come from the future of the log: six waypoints at +0.5..3.0 s from the odometry in
base_link at the keyframe (samples without the full 3 s are skipped and counted) and the
agents' boxes at those instants, moved into the keyframe's base_link. A recording that ended
in a crash (no metadata.yaml, an MCAP cut mid-record) yields every sample it holds in full,
with a warning naming it. A bag that lacks a camera or odometry topic, holds one with another
type, or whose messages do not decode raises BagError naming the bag (read_bags and the
dataset skip it with that message). A sidecar bag (teacher records of `vlmad annotate`) is read
with its source bag as one (vlmad_ros.bagschema): its records replace the source's.
"""
from __future__ import annotations

import collections
import dataclasses
import pathlib
import struct
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from vlmad_ros import stamps
from vlmad_ros import topics
from vlmad_ros.bagschema import (BagError, check_topics, read_messages, topic_types, typestore,
                                 warn)
from vlmad_ros.data import rosmsgs
from vlmad_ros.data.geometry import (NS, OdometryTrack, se2, wrap_angle, yaw_from_quat_wxyz)
from vlmad_ros.data.rosmsgs import camera_from_msgs, quat_wxyz
from vlmad_ros.images import compressed_to_rgb, ImageConversionError, resize_rgb
from vlmad_ros.labels import UNKNOWN
from vlmad_ros.rig import CAMERA_NAMES, CameraRig
from vlmad_ros.sync import ApproximateTimeSynchronizer
from vlmad_ros.teacher.scene import light_over_horizon
from vlmad_ros.types import (Command, command_from_endpoint, EgoState, Observation,
                             ReasoningRecord, Sample, Targets, Trajectory)

# A keyframe or teacher record refers to a camera set by its exact stamp; allow rounding.
STAMP_MATCH_TOLERANCE_NS = 1_000_000


@dataclasses.dataclass(frozen=True)
class ReaderConfig:
    """Topics of the bag layout and the synchronizer settings (those of the planner node)."""

    camera_names: Tuple[str, ...] = CAMERA_NAMES
    image_topics: Tuple[str, ...] = topics.CAMERA_IMAGE_TOPICS
    info_topics: Tuple[str, ...] = topics.CAMERA_INFO_TOPICS
    odom_topic: str = topics.ODOM
    keyframe_topic: str = topics.KEYFRAME
    objects_topic: str = topics.OBJECTS
    lights_topic: str = topics.TRAFFIC_LIGHTS
    command_topic: str = topics.COMMAND
    reasoning_topic: str = topics.REASONING
    tf_static_topic: str = topics.TF_STATIC
    base_frame: str = topics.BASE_FRAME
    slop: float = 0.05                # [s] max stamp spread of a set (planner_node default)
    queue_size: int = 10              # per input (planner_node default)
    objects_tolerance_s: float = 0.15  # future boxes: nearest GroundTruthObjectArray within this

    def __post_init__(self):
        n = len(self.camera_names)
        if n == 0 or len(self.image_topics) != n or len(self.info_topics) != n:
            raise ValueError('ReaderConfig: camera_names, image_topics and info_topics must be '
                             f'non-empty and of equal length, got {n}, {len(self.image_topics)}, '
                             f'{len(self.info_topics)}')
        if not self.slop > 0:
            raise ValueError(f'ReaderConfig.slop must be > 0 s, got {self.slop}')
        if self.queue_size < 1:
            raise ValueError(f'ReaderConfig.queue_size must be >= 1, got {self.queue_size}')
        if not self.objects_tolerance_s > 0:
            raise ValueError('ReaderConfig.objects_tolerance_s must be > 0, got '
                             f'{self.objects_tolerance_s}')


@dataclasses.dataclass
class RawSample:
    """One keyframe with its images still JPEG-compressed (decoding is the dataset's job)."""

    stamp_ns: int
    token: str
    scene: str
    scenario: str
    images: List[object]              # CompressedImage messages, rig order
    rig: CameraRig                    # calibration at the images' native size
    ego: EgoState
    command: Command
    command_from_bag: bool
    trajectory: Trajectory
    future_boxes: np.ndarray          # (6, N, 5) x, y, length, width, yaw; NaN where absent
    box_ids: List[str]
    reasoning: Optional[ReasoningRecord]
    ego_stamp_ns: int = 0             # the odometry message of the synchronized set
    # The light governing the path at t0 (teacher.base.LightState; UNKNOWN = none within
    # 40 m), and whether it turns from stop to go (or back) within the 3 s future: then the
    # future answers a lamp change the images do not show yet (teacher.scene.light_over_horizon).
    light_state: int = 0
    light_change: bool = False

    def decode(self, size: Optional[Tuple[int, int]] = None
               ) -> Tuple[List[np.ndarray], CameraRig]:
        """RGB images resized to size=(width, height) and the rig scaled to match."""
        out = []
        for msg in self.images:
            if size is None:
                out.append(compressed_to_rgb(msg))
            else:
                out.append(resize_rgb(compressed_to_rgb(msg, min_size=size), size))
        rig = self.rig if size is None else self.rig.scaled(*size)
        return out, rig

    def to_sample(self, size: Optional[Tuple[int, int]] = None) -> Sample:
        images, rig = self.decode(size)
        obs = Observation(images=images, rig=rig, ego=self.ego, command=self.command,
                          stamp_ns=self.stamp_ns)
        targets = Targets(trajectory=self.trajectory, future_boxes=self.future_boxes,
                          reasoning=self.reasoning, scenario=self.scenario)
        return Sample(observation=obs, targets=targets, token=self.token)


@dataclasses.dataclass
class ReadStats:
    """What a read kept and why it dropped the rest (reported by the dataset and the CLI)."""

    keyframes: int = 0
    samples: int = 0
    skipped_no_future: int = 0        # odometry does not reach keyframe + 3 s
    skipped_no_images: int = 0        # no complete synchronized camera set at the keyframe
    skipped_no_odometry: int = 0      # no odometry at or before the keyframe
    skipped_no_calibration: int = 0   # a camera lacks CameraInfo or its /tf_static transform
    bad_messages: Dict[str, int] = dataclasses.field(default_factory=collections.Counter)
    skipped_bags: List[str] = dataclasses.field(default_factory=list)   # 'path: why'

    def add(self, other: 'ReadStats') -> None:
        for f in dataclasses.fields(self):
            if f.name == 'bad_messages':
                self.bad_messages.update(other.bad_messages)
            elif f.name == 'skipped_bags':
                self.skipped_bags.extend(other.skipped_bags)
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d['bad_messages'] = dict(self.bad_messages)
        return d


@dataclasses.dataclass
class _Objects:
    """One GroundTruthObjectArray as arrays (in its own header frame)."""

    stamp_ns: int
    in_base: bool                     # base_link at stamp_ns (else the odometry frame)
    ids: List[str]
    xy: np.ndarray                    # (M, 2)
    yaw: np.ndarray                   # (M,)
    lw: np.ndarray                    # (M, 2) length, width
    vel: np.ndarray                   # (M, 2)


class _Context:
    """Pass 1: everything in the bag except the images."""

    def __init__(self, config: ReaderConfig, stats: ReadStats):
        self.config = config
        self.stats = stats
        self.keyframes: Dict[int, object] = {}
        self.odom: List[tuple] = []
        self.infos: Dict[str, List[Tuple[int, object]]] = collections.defaultdict(list)
        self.static: Dict[str, object] = {}
        self.objects: List[_Objects] = []
        self.lights: List[Tuple[int, object]] = []
        self.commands: List[Tuple[int, int]] = []
        self.reasoning: Dict[int, ReasoningRecord] = {}
        self.track: Optional[OdometryTrack] = None

    def read(self, path) -> None:
        cfg = self.config
        handlers = {cfg.keyframe_topic: self._keyframe, cfg.odom_topic: self._odom,
                    cfg.tf_static_topic: self._tf_static, cfg.objects_topic: self._objects,
                    cfg.lights_topic: self._lights,
                    cfg.command_topic: self._command, cfg.reasoning_topic: self._reasoning}
        for info in cfg.info_topics:
            handlers[info] = self._info
        for topic, _, msg in read_messages(path, topics=list(handlers)):
            try:
                handlers[topic](topic, msg)
            except (AttributeError, ValueError, TypeError, KeyError):
                self.stats.bad_messages[topic] += 1
        rows = sorted(self.odom)
        self.track = OdometryTrack.from_lists(
            [r[0] for r in rows], [r[1:3] for r in rows], [r[3] for r in rows],
            [r[4] for r in rows], [r[5] for r in rows])
        self.objects.sort(key=lambda o: o.stamp_ns)
        self.lights.sort(key=lambda e: e[0])
        self.commands.sort()

    def _keyframe(self, _, msg) -> None:
        self.keyframes[stamps.to_ns(msg.header.stamp)] = msg

    def _odom(self, _, msg) -> None:
        p = msg.pose.pose
        yaw = yaw_from_quat_wxyz(quat_wxyz(p.orientation))
        tw = msg.twist.twist
        row = (stamps.to_ns(msg.header.stamp), float(p.position.x), float(p.position.y), yaw,
               float(tw.linear.x), float(tw.angular.z))
        if not np.all(np.isfinite(row[1:])):
            raise ValueError('non-finite odometry')
        self.odom.append(row)

    def _info(self, topic, msg) -> None:
        self.infos[topic].append((stamps.to_ns(msg.header.stamp), msg))

    def _tf_static(self, _, msg) -> None:
        # Cameras hang off base_frame; other static edges (REP 105's map -> odom) are not
        # needed here. A camera under another parent is counted as skipped_no_calibration.
        for t in msg.transforms:
            if t.header.frame_id.lstrip('/') == self.config.base_frame:
                self.static[t.child_frame_id.lstrip('/')] = t

    def _objects(self, _, msg) -> None:
        frame = msg.header.frame_id.lstrip('/')
        in_base = frame == self.config.base_frame
        if not in_base and frame not in (topics.MAP_FRAME, topics.ODOM_FRAME):
            raise ValueError(f'objects in unsupported frame {frame!r}')
        objs = msg.objects
        self.objects.append(_Objects(
            stamp_ns=stamps.to_ns(msg.header.stamp), in_base=in_base, ids=[o.id for o in objs],
            xy=np.array([[o.pose.position.x, o.pose.position.y] for o in objs]).reshape(-1, 2),
            yaw=np.array([yaw_from_quat_wxyz(quat_wxyz(o.pose.orientation)) for o in objs]),
            lw=np.array([[o.size.x, o.size.y] for o in objs]).reshape(-1, 2),
            vel=np.nan_to_num(np.array([[o.velocity.x, o.velocity.y] for o in objs])
                              .reshape(-1, 2))))

    def _lights(self, _, msg) -> None:
        self.lights.append((stamps.to_ns(msg.header.stamp), msg))

    def _command(self, _, msg) -> None:
        if int(msg.command) not in {int(c) for c in Command}:   # UNKNOWN (255): no route given
            self.stats.bad_messages['command_unknown'] += 1
            return
        self.commands.append((stamps.to_ns(msg.header.stamp), int(Command(msg.command))))

    def _reasoning(self, _, msg) -> None:
        if int(msg.status) != int(msg.STATUS_OK):    # FAILED, or UNKNOWN: status never set
            failed = int(msg.status) == int(msg.STATUS_FAILED)
            why = 'reasoning_failed' if failed else 'reasoning_status_unset'
            self.stats.bad_messages[why] += 1
            return
        self.reasoning[stamps.to_ns(msg.header.stamp)] = ReasoningRecord(
            texts=(str(msg.current_action), str(msg.future_action), str(msg.reasoning)),
            labels=(int(msg.control_action), int(msg.turn_action), int(msg.lane_action)),
            teacher=str(msg.teacher), prompt_version=str(msg.prompt_version))

    # ----- per keyframe -----

    def rig(self, images: Sequence[object], t0: int) -> Optional[CameraRig]:
        cams = []
        for name, info_topic, img in zip(self.config.camera_names, self.config.info_topics,
                                         images):
            infos = self.infos.get(info_topic)
            tf = self.static.get(img.header.frame_id.lstrip('/'))
            if not infos or tf is None:
                return None
            info = min(infos, key=lambda e: abs(e[0] - t0))[1]
            cams.append(camera_from_msgs(name, info, tf))
        return CameraRig(name='bag', cameras=tuple(cams), frame_id=self.config.base_frame)

    def command(self, t0: int, trajectory: Trajectory) -> Tuple[Command, bool]:
        """Return the bag's latest route command at t0, else the nuScenes endpoint rule."""
        i = _last_at_or_before([c[0] for c in self.commands], t0 + STAMP_MATCH_TOLERANCE_NS)
        if i >= 0:
            return Command(self.commands[i][1]), True
        return command_from_endpoint(trajectory.xy[-1]), False

    def reasoning_at(self, t0: int) -> Optional[ReasoningRecord]:
        if not self.reasoning:
            return None
        stamp = min(self.reasoning, key=lambda s: abs(s - t0))
        return self.reasoning[stamp] if abs(stamp - t0) <= STAMP_MATCH_TOLERANCE_NS else None

    def future_boxes(self, t0: int, trajectory: Trajectory) -> Tuple[np.ndarray, List[str]]:
        """Agents at t0 + 0.5..3 s as (6, N, 5) in base_link at t0 (NaN where absent)."""
        object_ns = np.array([o.stamp_ns for o in self.objects], dtype=np.int64)
        tol = int(self.config.objects_tolerance_s * NS)
        per_step: List[Dict[str, np.ndarray]] = []
        (p0,), (yaw0,) = self.track.pose_at(t0)
        to_t0 = np.linalg.inv(se2(p0, yaw0))
        for t in trajectory.times:
            target = t0 + int(round(t * NS))
            boxes: Dict[str, np.ndarray] = {}
            if len(object_ns):
                i = int(np.argmin(np.abs(object_ns - target)))
                if abs(int(object_ns[i]) - target) <= tol:
                    boxes = self._boxes_in(self.objects[i], target, to_t0)
            per_step.append(boxes)
        ids: List[str] = []
        for boxes in per_step:
            ids.extend(k for k in boxes if k not in ids)
        out = np.full((len(per_step), len(ids), 5), np.nan, dtype=np.float32)
        for k, boxes in enumerate(per_step):
            for j, obj_id in enumerate(ids):
                if obj_id in boxes:
                    out[k, j] = boxes[obj_id]
        return out, ids

    def _boxes_in(self, objs: _Objects, target_ns: int,
                  to_t0: np.ndarray) -> Dict[str, np.ndarray]:
        """Boxes of one message advanced by their velocity to target_ns, in base_link at t0."""
        if not objs.ids:
            return {}
        dt = (target_ns - objs.stamp_ns) / NS
        xy = objs.xy + objs.vel * dt
        if objs.in_base:
            (p, ), (yaw, ) = self.track.pose_at(objs.stamp_ns)
            frame = to_t0 @ se2(p, yaw)
        else:
            frame = to_t0
        rot_yaw = np.arctan2(frame[1, 0], frame[0, 0])
        pts = xy @ frame[:2, :2].T + frame[:2, 2]
        yaw = wrap_angle(objs.yaw + rot_yaw)
        return {obj_id: np.array([pts[j, 0], pts[j, 1], objs.lw[j, 0], objs.lw[j, 1], yaw[j]])
                for j, obj_id in enumerate(objs.ids)}


def _last_at_or_before(times_ns: Sequence[int], t: int) -> int:
    return int(np.searchsorted(np.asarray(times_ns, dtype=np.int64), t, side='right')) - 1


def read_samples(path, config: Optional[ReaderConfig] = None,
                 stats: Optional[ReadStats] = None) -> Iterator[RawSample]:
    """Yield the keyframe samples of one bag (folder or .mcap) in time order; count the rest."""
    config = config or ReaderConfig()
    stats = stats if stats is not None else ReadStats()
    required, optional = expected_topics(config)
    types = topic_types(path)
    if config.keyframe_topic not in types:   # nothing to read: no layout to check
        warn(f'{path} has no {config.keyframe_topic} topic: no samples from it')
        return
    check_topics(path, required, optional, types)
    ctx = _Context(config, stats)
    ctx.read(path)
    stats.keyframes += len(ctx.keyframes)

    # Keyframes that can become samples: odometry now and 3 s later (images checked in pass 2).
    wanted: Dict[int, tuple] = {}
    for t0 in sorted(ctx.keyframes):
        if not len(ctx.track) or ctx.track.t_ns[0] > t0 + int(config.slop * NS):
            stats.skipped_no_odometry += 1
            continue
        traj = ctx.track.future_trajectory(t0)
        if traj is None:
            stats.skipped_no_future += 1
            continue
        wanted[t0] = (ctx.keyframes[t0], traj)
    if not wanted:
        return
    wanted_stamps = np.array(sorted(wanted), dtype=np.int64)

    # The node's inputs: the cameras in rig order, then the odometry.
    inputs = list(config.image_topics) + [config.odom_topic]
    sync = ApproximateTimeSynchronizer(len(inputs), config.queue_size, config.slop)
    index = {topic: i for i, topic in enumerate(inputs)}
    found, uncalibrated = set(), set()
    store = typestore()
    # Images stay CDR bytes until their set is a keyframe's (5 of 6 sets are not).
    for topic, _, data in read_messages(path, topics=inputs, raw=True):
        try:
            stamp = cdr_header_stamp(data)
        except ValueError:
            stats.bad_messages[topic] += 1
            continue
        matched = sync.add(index[topic], stamp, data)
        if matched is None:
            continue
        ref = cdr_header_stamp(matched[1][0])
        k = int(np.argmin(np.abs(wanted_stamps - ref)))
        t0 = int(wanted_stamps[k])
        if abs(t0 - ref) > STAMP_MATCH_TOLERANCE_NS or t0 in found or t0 in uncalibrated:
            continue
        try:
            images = [store.deserialize_cdr(d, 'sensor_msgs/msg/CompressedImage')
                      for d in matched[1][:-1]]
        except Exception:  # rosbags raises several types on corrupt CDR
            stats.bad_messages['image_corrupt_cdr'] += 1
            continue
        odom_stamp = cdr_header_stamp(matched[1][-1])
        sample = _make_sample(ctx, t0, wanted[t0], images, odom_stamp)
        if sample is None:
            uncalibrated.add(t0)
            continue
        found.add(t0)
        stats.samples += 1
        yield sample
    stats.skipped_no_calibration += len(uncalibrated)
    stats.skipped_no_images += len(wanted) - len(found) - len(uncalibrated)


def expected_topics(config: ReaderConfig) -> Tuple[Dict[str, str], Dict[str, str]]:
    """Topics a bag must have (cameras, odometry) and those whose type is checked if present."""
    required = {t: rosmsgs.COMPRESSED_IMAGE for t in config.image_topics}
    required.update({t: rosmsgs.CAMERA_INFO for t in config.info_topics})
    required[config.odom_topic] = rosmsgs.ODOMETRY
    optional = {config.keyframe_topic: rosmsgs.KEYFRAME, config.objects_topic: rosmsgs.OBJECTS,
                config.command_topic: rosmsgs.COMMAND, config.reasoning_topic: rosmsgs.REASONING,
                config.tf_static_topic: rosmsgs.TF_MESSAGE, config.lights_topic: rosmsgs.LIGHTS}
    return required, optional


def cdr_header_stamp(data) -> int:
    """Stamp (ns) of a CDR-serialized message that starts with std_msgs/Header, unparsed."""
    if len(data) < 12 or data[1] not in (0, 1):
        raise ValueError('not a CDR message with a header')
    sec, nanosec = struct.unpack_from('<iI' if data[1] == 1 else '>iI', data, 4)
    return sec * NS + nanosec


def _make_sample(ctx: _Context, t0: int, wanted: tuple, images: list,
                 odom_stamp: int) -> Optional[RawSample]:
    keyframe, traj = wanted
    rig = ctx.rig(images, t0)
    if rig is None:
        return None
    ego = ctx.track.ego_state(odom_stamp)
    command, from_bag = ctx.command(t0, traj)
    boxes, ids = ctx.future_boxes(t0, traj)
    light_state, light_change = light_over_horizon(ctx.lights, ctx.track, t0, traj)
    return RawSample(stamp_ns=t0, token=str(keyframe.token), scene=str(keyframe.scene),
                     scenario=str(keyframe.scenario), images=list(images), rig=rig, ego=ego,
                     command=command, command_from_bag=from_bag, trajectory=traj,
                     future_boxes=boxes, box_ids=ids, reasoning=ctx.reasoning_at(t0),
                     ego_stamp_ns=odom_stamp, light_state=int(light_state),
                     light_change=light_change)


def read_bags(paths, config: Optional[ReaderConfig] = None,
              stats: Optional[ReadStats] = None) -> Iterator[RawSample]:
    """Yield the samples of several bags; an unreadable bag is skipped, named on stderr."""
    for path in paths:
        try:
            yield from read_samples(pathlib.Path(path), config, stats)
        except BagError as err:
            skip_bag(err, stats)


def skip_bag(err: BagError, stats: Optional[ReadStats] = None) -> None:
    """Say which bag is skipped and why (stderr), and count it."""
    warn(f'skipping bag {err}')
    if stats is not None:
        stats.skipped_bags.append(str(err))


def action_labels(record: Optional[ReasoningRecord]) -> np.ndarray:
    """(3,) int64 control/turn/lane labels; UNKNOWN without a record."""
    if record is None:
        return np.full(3, UNKNOWN, dtype=np.int64)
    return np.asarray(record.labels, dtype=np.int64)


__all__ = ['BagError', 'ImageConversionError', 'RawSample', 'ReadStats', 'ReaderConfig',
           'action_labels',
           'read_bags', 'read_samples', 'skip_bag']
