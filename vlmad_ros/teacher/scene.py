"""
Privileged ground truth for the teacher: agents and traffic lights at a keyframe, in base_link.

GroundTruthObjectArray comes in base_link (synthetic bags) or in the odometry frame (map/odom);
TrafficLightArray stop lines are in the map frame. Both are moved into base_link at the
keyframe with the ego pose from the odometry (data.geometry.OdometryTrack, the same track the
dataset reader builds its future waypoints from). Works on rclpy and rosbags messages.
"""
from __future__ import annotations

import bisect
from typing import List, Optional, Sequence, Tuple

import numpy as np

from vlmad_ros import stamps
from vlmad_ros import topics
from vlmad_ros.bagschema import read_messages
from vlmad_ros.data.geometry import NS, OdometryTrack, se2, se2_inverse, yaw_from_quat_wxyz
from vlmad_ros.data.rosmsgs import quat_wxyz
from vlmad_ros.teacher.base import LightState, ObjectClass, SceneObject, TrafficLightAhead
from vlmad_ros.teacher.rule import light_ahead, RuleConfig
from vlmad_ros.types import Trajectory

OBJECTS_TOLERANCE_S = 0.15   # use the objects message nearest the keyframe within this
LIGHTS_MAX_AGE_S = 1.0       # light states older than this at the keyframe are not used
_BASE = topics.BASE_FRAME
_WORLD = (topics.MAP_FRAME, topics.ODOM_FRAME)


def _object_class(value: int) -> ObjectClass:
    try:
        return ObjectClass(int(value))
    except ValueError:
        return ObjectClass.OTHER


def objects_from_msg(msg, to_base: Optional[np.ndarray]) -> Tuple[SceneObject, ...]:
    """Agents of one GroundTruthObjectArray; `to_base` maps its frame into base_link (3x3)."""
    m = np.eye(3) if to_base is None else to_base
    rot = float(np.arctan2(m[1, 0], m[0, 0]))
    out = []
    for o in msg.objects:
        p = m @ np.array([o.pose.position.x, o.pose.position.y, 1.0])
        v = m[:2, :2] @ np.array([o.velocity.x, o.velocity.y])
        yaw = yaw_from_quat_wxyz(quat_wxyz(o.pose.orientation)) + rot
        out.append(SceneObject(x=float(p[0]), y=float(p[1]), length=float(o.size.x),
                               width=float(o.size.y), yaw=float(np.arctan2(np.sin(yaw),
                                                                           np.cos(yaw))),
                               object_class=_object_class(o.object_class),
                               vx=float(v[0]), vy=float(v[1])))
    return tuple(out)


def lights_from_msg(msg, world_to_base: np.ndarray) -> Tuple[TrafficLightAhead, ...]:
    """Lights of one TrafficLightArray with their stop lines moved into base_link."""
    out = []
    for lt in msg.lights:
        ends = []
        for p in (lt.stop_line_start, lt.stop_line_end):
            q = world_to_base @ np.array([p.x, p.y, 1.0])
            ends.append((float(q[0]), float(q[1])))
        try:
            state = LightState(int(lt.state))
        except ValueError:
            state = LightState.UNKNOWN
        out.append(TrafficLightAhead(state=state, stop_line=(ends[0], ends[1])))
    return tuple(out)


def world_to_base(track: OdometryTrack, t_ns: int) -> Optional[np.ndarray]:
    """3x3 transform of odometry-frame points into base_link at t_ns (None off the track)."""
    if len(track) == 0 or not track.covers(t_ns):
        return None
    (xy,), (yaw,) = track.pose_at(t_ns)
    return se2_inverse(se2(xy, yaw))


def _lights_index(lights: Sequence[Tuple[int, object]], t0: int) -> Optional[int]:
    """Index of the (stamp, msg) in force at t0: the last one by then, at most 1 s old."""
    j = bisect.bisect_right([e[0] for e in lights], t0 + int(0.01 * NS)) - 1
    return j if j >= 0 and t0 - lights[j][0] <= LIGHTS_MAX_AGE_S * NS else None


def light_over_horizon(lights: Sequence[Tuple[int, object]], track: OdometryTrack, t0: int,
                       trajectory: Trajectory, cfg: RuleConfig = RuleConfig()
                       ) -> Tuple[LightState, bool]:
    """
    Return the state of the light governing the ego's path at t0, and whether it changes.

    The state is UNKNOWN where no light's stop line crosses the path within the rule teacher's
    range. `changes`: it turns from stop to go (or back) within the trajectory's horizon. Such
    a keyframe's future answers a lamp change that its images cannot show yet: the expert
    starts while the lamp is still red or brakes while it is still green. Trained on, they teach
    "red sometimes means go". Yellow and red both mean stop, so yellow -> red is no change.
    `lights` are (stamp, TrafficLightArray) in time order.
    """
    to_base = world_to_base(track, t0) if len(lights) else None
    if to_base is None:
        return LightState.UNKNOWN, False
    j = _lights_index(lights, t0)
    if j is None:
        return LightState.UNKNOWN, False
    now = light_ahead(trajectory, lights_from_msg(lights[j][1], to_base), cfg)
    if now is None:
        return LightState.UNKNOWN, False
    return now.state, _changes(lights[j + 1:], to_base, t0, trajectory, now.state, cfg)


def _changes(later: Sequence[Tuple[int, object]], to_base: np.ndarray, t0: int,
             trajectory: Trajectory, state: LightState, cfg: RuleConfig) -> bool:
    go = state == LightState.GREEN
    end = t0 + int(round(float(trajectory.times[-1]) * NS))
    for stamp, msg in later:
        if stamp > end:
            break
        light = light_ahead(trajectory, lights_from_msg(msg, to_base), cfg)
        if light is not None and (light.state == LightState.GREEN) != go:
            return True
    return False


class SceneIndex:
    """Ground-truth messages of one source by stamp; `at(t0)` gives the scene at a keyframe."""

    def __init__(self, track: Optional[OdometryTrack] = None):
        self.track = track
        self._objects: List[Tuple[int, object]] = []
        self._lights: List[Tuple[int, object]] = []

    def add_objects(self, msg) -> None:
        self._insert(self._objects, stamps.to_ns(msg.header.stamp), msg)

    def add_lights(self, msg) -> None:
        self._insert(self._lights, stamps.to_ns(msg.header.stamp), msg)

    @staticmethod
    def _insert(items: list, stamp: int, msg) -> None:
        if items and stamp >= items[-1][0]:
            items.append((stamp, msg))
        else:
            bisect.insort(items, (stamp, msg), key=lambda e: e[0])

    @property
    def has_truth(self) -> bool:
        return bool(self._objects or self._lights)

    def prune_before(self, t_ns: int) -> None:
        """Forget messages that no keyframe at or after t_ns can use (live node)."""
        keep = t_ns - int(max(OBJECTS_TOLERANCE_S, LIGHTS_MAX_AGE_S) * NS)
        for items in (self._objects, self._lights):
            i = bisect.bisect_left([e[0] for e in items], keep)
            del items[:max(0, i - 1)]

    def at(self, t0: int) -> Tuple[Optional[tuple], Optional[tuple]]:
        """(objects, lights) at keyframe t0 in base_link; None where the truth is missing."""
        objects = lights = None
        if self._objects:
            times_ns = [e[0] for e in self._objects]
            i = bisect.bisect_left(times_ns, t0)
            cands = [j for j in (i - 1, i) if 0 <= j < len(times_ns)]
            j = min(cands, key=lambda k: abs(times_ns[k] - t0))
            if abs(times_ns[j] - t0) <= OBJECTS_TOLERANCE_S * NS:
                objects = self._objects_in_base(times_ns[j], self._objects[j][1], t0)
        if self._lights and self.track is not None:
            j = _lights_index(self._lights, t0)
            to_base = world_to_base(self.track, t0)
            if j is not None and to_base is not None:
                lights = lights_from_msg(self._lights[j][1], to_base)
        return objects, lights

    def _objects_in_base(self, stamp: int, msg, t0: int) -> Optional[tuple]:
        frame = str(msg.header.frame_id).lstrip('/')
        if frame in _WORLD:
            to_base = world_to_base(self.track, t0) if self.track is not None else None
            return None if to_base is None else objects_from_msg(msg, to_base)
        if frame not in (_BASE, ''):
            return None
        if self.track is not None and stamp != t0 and self.track.covers(stamp) \
                and self.track.covers(t0):
            return objects_from_msg(msg, self.track.relative_pose(stamp, t0))
        return objects_from_msg(msg, None)


def read_scene_index(path, odom_topic: str = topics.ODOM, objects_topic: str = topics.OBJECTS,
                     lights_topic: str = topics.TRAFFIC_LIGHTS) -> SceneIndex:
    """One pass over a bag's small topics (no images) into a SceneIndex."""
    rows = []
    objects, lights = [], []
    for topic, _, msg in read_messages(path, topics=[odom_topic, objects_topic, lights_topic]):
        try:
            if topic == odom_topic:
                p = msg.pose.pose
                rows.append((stamps.to_ns(msg.header.stamp), float(p.position.x),
                             float(p.position.y), yaw_from_quat_wxyz(quat_wxyz(p.orientation)),
                             float(msg.twist.twist.linear.x), float(msg.twist.twist.angular.z)))
            elif topic == objects_topic:
                objects.append(msg)
            else:
                lights.append(msg)
        except (AttributeError, TypeError, ValueError):
            continue  # the dataset reader counts malformed messages; the scene just lacks them
    rows.sort()
    track = OdometryTrack.from_lists([r[0] for r in rows], [r[1:3] for r in rows],
                                     [r[3] for r in rows], [r[4] for r in rows],
                                     [r[5] for r in rows])
    index = SceneIndex(track)
    for msg in objects:
        index.add_objects(msg)
    for msg in lights:
        index.add_lights(msg)
    return index
