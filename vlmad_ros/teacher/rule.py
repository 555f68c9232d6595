"""
The `rule` teacher: deterministic, offline answers from the future trajectory and ground truth.

It reads what a VLM would read off the red line (speed profile, heading change, sideways shift)
and, when the bag carries ground truth, the scene (lights and their stop lines, a lead vehicle,
pedestrians), and writes short varied sentences plus labels that agree with the trajectory.
Every number a sentence states comes from the ground truth at the keyframe (or the future
trajectory for the future action), rounded as `rule_text` documents; the tests parse them
back. It needs no network and is the default teacher of the CLI, the tests and CI. The same
input always gives the same answer (the phrasing is chosen by a hash of the input).
"""
from __future__ import annotations

import dataclasses
import hashlib
import random
from typing import Optional, Tuple

import numpy as np

from vlmad_ros import labels
from vlmad_ros.teacher import rule_text
from vlmad_ros.teacher.base import (LightState, ObjectClass, SceneObject, TeacherInput,
                                    TeacherResult, VEHICLE_CLASSES)
from vlmad_ros.types import Trajectory

# rule-v2: distances from the front bumper, lead speed / safety from the time gap, lane changes
# in the road frame of the stop lines, turns that start or end inside the 3 s window.
RULE_VERSION = 'rule-v2'
BEAR_HEADING = 0.2   # [rad] a heading change this large is worth saying, though not a turn


@dataclasses.dataclass(frozen=True)
class RuleConfig:
    """Thresholds of the rules (SI units); the labels' rules in order of precedence."""

    # control: reverse > stop > move slowly > go straight (first that holds)
    reverse_distance: float = 1.0    # ends this far behind the start -> reverse [m]
    stop_speed: float = 0.5          # speed over the last 0.5 s below this -> stop [m/s]
    stop_distance: float = 1.0       # or less than this travelled in 3 s -> stop [m]
    slow_speed: float = 3.0          # mean or final speed below this -> move slowly [m/s]
    # turn: the heading change over the 3 s, or a turn that starts / ends in the window
    turn_heading: float = 0.5        # heading change beyond this [rad] (~29 deg) -> turn
    turn_around_heading: float = 2.6  # beyond this [rad] (~150 deg) -> turn around
    turn_partial_heading: float = 0.3  # a smaller change [rad] counts while the ego ...
    turn_partial_rate: float = 0.2   # ... still yaws this fast [rad/s] at the start or end
    # lane: a sideways shift across the road of at least half a lane width. A recovery
    # (displaced <= ~1 m, steering back to its own lane centre) stays below it.
    lane_width: float = 3.5          # TownConfig.lane_width [m]
    lane_shift_fraction: float = 0.5  # shift >= this x lane_width -> change lane
    lane_heading: float = 0.35       # heading change (and to the road) within this [rad]
    settle_heading: float = 0.1      # without a stop line: start and end aligned within this
    settle_rate: float = 0.2         # ... and yawing slower than this at the end [rad/s]
    # what the scene sentences talk about
    ego_front: float = 3.342         # base_link (rear axle) to the front bumper [m]
    ahead_range: float = 40.0        # how far ahead lights and lead vehicles matter [m]
    blocker_range: float = 60.0      # a vehicle this far ahead in the lane explains a lane change
    corridor_half_width: float = 2.0  # a vehicle this close to the path is in the ego's lane [m]
    pedestrian_range: float = 25.0   # pedestrians this far ahead matter [m]
    pedestrian_half_width: float = 4.0
    road_range: float = 200.0        # stop lines this far ahead give the road frame [m]
    safe_time_gap: float = 2.0       # "a safe distance" needs this time gap [s] ...
    safe_gap: float = 5.0            # ... and this gap [m] ...
    safe_ttc: float = 4.0            # ... and no closing in faster than this time to contact [s]
    steady_accel: float = 0.7        # |accel| below this [m/s^2] is a steady speed

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if getattr(self, f.name) <= 0:
                raise ValueError(f'RuleConfig.{f.name} must be > 0, got {getattr(self, f.name)}')

    @property
    def lane_shift(self) -> float:
        """Sideways shift of a lane change [m]: half a lane, twice a ~1 m recovery's at most."""
        return self.lane_shift_fraction * self.lane_width


@dataclasses.dataclass(frozen=True)
class Motion:
    """What the trajectory says, in numbers."""

    v0: float            # current speed [m/s]
    v_near: float        # speed over 0.5..1.0 s (what "now" looks like) [m/s]
    v_end: float         # speed over the last 0.5 s [m/s]
    v_mean: float        # distance / 3 s [m/s]
    distance: float      # path length [m]
    x_end: float
    y_end: float
    heading_change: float  # [rad], + = left
    peak_heading: float    # largest |heading| on the way, signed [rad]
    rate_start: float = 0.0  # yaw rate over 0.5..1.0 s [rad/s]
    rate_end: float = 0.0    # yaw rate over 2.5..3.0 s [rad/s]

    @property
    def accel(self) -> float:
        """Mean acceleration from now to the middle of 0.5..1.0 s [m/s^2]."""
        return (self.v_near - self.v0) / 0.75


def motion_of(inp: TeacherInput) -> Motion:
    """Speeds, heading change and yaw rates of the 3 s future (headings ignored below 2 m)."""
    xy = np.asarray(inp.trajectory.xy, dtype=np.float64)
    dt = float(inp.trajectory.dt)
    steps = np.diff(np.vstack([np.zeros((1, 2)), xy]), axis=0)
    seg_speed = np.linalg.norm(steps, axis=1) / dt
    distance = float(seg_speed.sum() * dt)
    v0 = float(inp.speed) if np.isfinite(inp.speed) else float(seg_speed[0])
    headings = np.unwrap(np.asarray(inp.trajectory.heading, dtype=np.float64)) \
        if distance > 2.0 else np.zeros(len(xy))
    heading = float(np.arctan2(np.sin(headings[-1]), np.cos(headings[-1])))
    peak = float(headings[np.argmax(np.abs(headings))])
    return Motion(v0=v0, v_near=float(seg_speed[1]), v_end=float(seg_speed[-1]),
                  v_mean=distance / (dt * len(xy)), distance=distance,
                  x_end=float(xy[-1, 0]), y_end=float(xy[-1, 1]), heading_change=heading,
                  peak_heading=peak, rate_start=float(headings[1] - headings[0]) / dt,
                  rate_end=float(headings[-1] - headings[-2]) / dt)


def path_polyline(trajectory: Trajectory, reach: float) -> np.ndarray:
    """Build the ego's path (origin + waypoints), extended along its final heading to `reach` m."""
    xy = np.vstack([np.zeros((1, 2)), np.asarray(trajectory.xy, dtype=np.float64)])
    length = float(np.linalg.norm(np.diff(xy, axis=0), axis=1).sum())
    heading = float(trajectory.heading[-1]) if length > 1.0 else 0.0
    extra = max(0.0, reach - length)
    end = xy[-1] + extra * np.array([np.cos(heading), np.sin(heading)])
    return np.vstack([xy, end[None]])


def along_path(poly: np.ndarray, point) -> Tuple[float, float, float]:
    """(distance from the path, arc length to the nearest point, side: + left) of a 2D point."""
    p = np.asarray(point, dtype=np.float64)
    best, best_s, side, s0 = np.inf, 0.0, 0.0, 0.0
    for a, b in zip(poly[:-1], poly[1:]):
        d = b - a
        seg = float(np.hypot(*d))
        t = 0.0 if seg < 1e-9 else float(np.clip(np.dot(p - a, d) / (seg * seg), 0.0, 1.0))
        dist = float(np.hypot(*(a + t * d - p)))
        if dist < best:
            best, best_s = dist, s0 + t * seg
            side = float(np.sign(d[0] * (p - a)[1] - d[1] * (p - a)[0])) if seg > 1e-9 else 0.0
        s0 += seg
    return best, best_s, side


@dataclasses.dataclass(frozen=True)
class RoadFrame:
    """The ego's road half from the stop line ahead: centre-line end and the unit vectors."""

    centre: np.ndarray   # stop line end on the centre line, base_link [m]
    right: np.ndarray    # unit vector across the road, centre line -> kerb
    forward: np.ndarray  # unit vector along the road, direction of travel

    def lateral(self, p) -> float:
        """Distance of a point from the centre line towards the kerb [m]."""
        return float(np.dot(np.asarray(p, dtype=np.float64) - self.centre, self.right))

    def heading(self, yaw: float) -> float:
        """Return a base_link yaw relative to the road direction [rad]."""
        rel = yaw - float(np.arctan2(self.forward[1], self.forward[0]))
        return float(np.arctan2(np.sin(rel), np.cos(rel)))


def road_frame(inp: TeacherInput, cfg: RuleConfig) -> Optional[RoadFrame]:
    """Find the nearest stop line ahead across the ego's road half (lines run centre->kerb)."""
    best, best_along = None, np.inf
    for lt in inp.lights or ():
        c, k = (np.asarray(p, dtype=np.float64) for p in lt.stop_line)
        width = float(np.hypot(*(k - c)))
        if width < 1.0:
            continue
        right = (k - c) / width
        forward = np.array([-right[1], right[0]])
        along = float(np.dot(c, forward))        # how far ahead the line is, along the road
        lat = float(np.dot(-c, right))           # where the ego is across the road half
        if forward[0] < np.cos(0.5) or not 0.0 < along <= cfg.road_range \
                or not -0.5 <= lat <= width + 0.5:
            continue
        if along < best_along:
            best, best_along = RoadFrame(c, right, forward), along
    return best


def lane_shift(inp: TeacherInput, m: Motion, road: Optional[RoadFrame],
               cfg: RuleConfig) -> float:
    """
    Sideways shift across the road over the 3 s [m], + = left; 0 when it cannot be told.

    With a stop line ahead the road frame is exact (a manoeuvre cut by the window counts).
    Without one, only a whole manoeuvre is seen: start and end headings aligned, not yawing at
    the end, the shift measured across the final heading.
    """
    end = np.array([m.x_end, m.y_end])
    if m.distance <= 2.0:
        return 0.0
    if abs(m.heading_change) >= cfg.lane_heading:
        return 0.0  # turning: the road it ends on is another one
    if road is not None:
        if abs(road.heading(float(inp.trajectory.heading[-1]))) >= cfg.lane_heading:
            return 0.0
        return road.lateral((0.0, 0.0)) - road.lateral(end)
    if abs(m.heading_change) >= cfg.settle_heading or abs(m.rate_end) >= cfg.settle_rate:
        return 0.0
    normal = np.array([-np.sin(m.heading_change), np.cos(m.heading_change)])
    return float(np.dot(end, normal))


def classify(m: Motion, cfg: RuleConfig, shift: float = 0.0) -> Tuple[int, int, int]:
    """(control, turn, lane) label indices from the motion and the sideways shift."""
    if m.x_end < -cfg.reverse_distance and m.v_mean > 0.2:
        control = 'reverse'
    elif m.v_end < cfg.stop_speed or m.distance < cfg.stop_distance:
        control = 'stop'
    elif m.v_mean < cfg.slow_speed or m.v_end < cfg.slow_speed:
        control = 'move slowly'
    else:
        control = 'go straight'
    lane = 'none'
    if abs(shift) >= cfg.lane_shift and abs(m.heading_change) < cfg.turn_heading:
        lane = 'change lane to the left' if shift > 0 else 'change lane to the right'
    dh = m.heading_change
    turn = 'none'
    if abs(dh) >= cfg.turn_around_heading:
        turn = 'turn around'
    elif abs(dh) >= cfg.turn_heading or (lane == 'none' and _partial_turn(m, cfg)):
        turn = 'turn left' if dh > 0 else 'turn right'
    return (labels.label_index('control_action', control),
            labels.label_index('turn_action', turn),
            labels.label_index('lane_action', lane))


def _partial_turn(m: Motion, cfg: RuleConfig) -> bool:
    """Tell a turn cut by the window: a smaller heading change, still yawing at one end."""
    dh = m.heading_change
    if abs(dh) < cfg.turn_partial_heading:
        return False
    return any(np.sign(r) == np.sign(dh) and abs(r) >= cfg.turn_partial_rate
               for r in (m.rate_start, m.rate_end))


@dataclasses.dataclass(frozen=True)
class Light:
    """The light whose stop line crosses the ego's lane ahead."""

    state: LightState
    distance: float      # front bumper to the stop line along the path [m]
    s: float             # rear axle (base_link) to the stop line along the path [m]


@dataclasses.dataclass(frozen=True)
class Agent:
    """A vehicle or pedestrian ahead, measured from the ego's front bumper along its path."""

    obj: SceneObject
    distance: float      # bumper to the agent's near end (vehicles) or to it (pedestrians) [m]
    side: float = 0.0    # lateral offset from the path [m], + = left

    @property
    def kind(self) -> str:
        return CLASS_NAME.get(self.obj.object_class, 'vehicle')


@dataclasses.dataclass(frozen=True)
class Scene:
    """The parts of the ground truth that explain the ego's behaviour."""

    light: Optional[Light] = None
    lead: Optional[Agent] = None         # vehicle in the path
    pedestrian: Optional[Agent] = None   # nearest one ahead near the path
    blocker: Optional[Agent] = None      # vehicle ahead in the current lane
    free_left: bool = False              # no vehicle within 30 m in the lane to the left
    free_right: bool = False


CLASS_NAME = {ObjectClass.CAR: 'car', ObjectClass.TRUCK: 'truck', ObjectClass.BUS: 'bus',
              ObjectClass.CYCLIST: 'cyclist'}


def _crossing(poly: np.ndarray, a: np.ndarray, b: np.ndarray) -> Optional[Tuple[float, float]]:
    """(arc length, |sin| of the angle between path and line) at the path's first crossing."""
    s0 = 0.0
    for p, q in zip(poly[:-1], poly[1:]):
        d, e = q - p, b - a
        den = d[0] * e[1] - d[1] * e[0]
        seg = float(np.hypot(*d))
        if abs(den) > 1e-9 and seg > 1e-9:
            t = ((a - p)[0] * e[1] - (a - p)[1] * e[0]) / den
            u = ((a - p)[0] * d[1] - (a - p)[1] * d[0]) / den
            if 0.0 <= t <= 1.0 and -0.1 <= u <= 1.1:
                return s0 + t * seg, abs(den) / (seg * float(np.hypot(*e)))
        s0 += seg
    return None


def light_ahead(trajectory: Trajectory, lights, cfg: RuleConfig) -> Optional[Light]:
    """
    Find the first stop line the ego's path crosses (roughly across it) at the bumper or ahead.

    The path is the 3 s future extended along its final heading, so during a turn the light is
    the one of the road the ego turns into, not one straight ahead of its bumper.
    """
    poly = path_polyline(trajectory, cfg.ahead_range + cfg.ego_front)
    poly = np.vstack([[-cfg.ego_front, 0.0], poly])  # lines the bumper just passed count too
    best = None
    for lt in lights or ():
        a, b = (np.asarray(p, dtype=np.float64) for p in lt.stop_line)
        hit = _crossing(poly, a, b)
        if hit is None or hit[1] < 0.8:
            continue  # not crossed, or crossed along it (a line of the cross traffic)
        dist = hit[0] - 2.0 * cfg.ego_front  # the path starts ego_front behind the axle
        if -0.5 < dist <= cfg.ahead_range and (best is None or dist < best.distance):
            best = Light(LightState(lt.state), max(0.0, dist), hit[0] - cfg.ego_front)
    return best


def _lane_free(objects, y_centre: float, half: float) -> bool:
    return not any(o.object_class in VEHICLE_CLASSES and abs(o.y - y_centre) <= half
                   and abs(o.x) <= 30.0 for o in objects)


def scene_of(inp: TeacherInput, cfg: RuleConfig) -> Scene:
    """Light, lead vehicle, pedestrian and lane blocker at the keyframe (front-bumper gaps)."""
    lead = blocker = pedestrian = None
    poly = path_polyline(inp.trajectory, cfg.ahead_range + cfg.ego_front)
    objects = inp.objects or ()
    for obj in objects:
        if obj.x <= 0:
            continue
        dist, s, side = along_path(poly, (obj.x, obj.y))
        if obj.object_class in VEHICLE_CLASSES:
            gap = s - obj.length / 2 - cfg.ego_front
            if dist <= cfg.corridor_half_width and 0.5 < s and gap <= cfg.ahead_range \
                    and (lead is None or gap < lead.distance):
                lead = Agent(obj, gap, side * dist)
            gap_lane = obj.x - obj.length / 2 - cfg.ego_front
            if abs(obj.y) <= cfg.corridor_half_width and 0.0 < gap_lane <= cfg.blocker_range \
                    and (blocker is None or gap_lane < blocker.distance):
                blocker = Agent(obj, gap_lane, obj.y)
        elif obj.object_class == ObjectClass.PEDESTRIAN:
            ahead = s - cfg.ego_front
            if dist <= cfg.pedestrian_half_width and 0.0 < ahead <= cfg.pedestrian_range \
                    and (pedestrian is None or ahead < pedestrian.distance):
                pedestrian = Agent(obj, ahead, side * dist)
    half = cfg.lane_width / 2
    return Scene(light=light_ahead(inp.trajectory, inp.lights, cfg), lead=lead,
                 pedestrian=pedestrian, blocker=blocker,
                 free_left=_lane_free(objects, cfg.lane_width, half),
                 free_right=_lane_free(objects, -cfg.lane_width, half))


class RuleTeacher:
    """Deterministic Teacher; thread-safe (no state)."""

    def __init__(self, config: RuleConfig = RuleConfig()):
        self.config = config
        self.name = RULE_VERSION
        self.prompt_version = RULE_VERSION
        self.image_width = 160  # decode hint: the rules do not look at pixels

    def labels_of(self, inp: TeacherInput) -> Tuple[Motion, Tuple[int, int, int]]:
        """Return the motion and the (control, turn, lane) labels of one keyframe."""
        m = motion_of(inp)
        shift = lane_shift(inp, m, road_frame(inp, self.config), self.config)
        return m, classify(m, self.config, shift)

    def annotate(self, inp: TeacherInput) -> TeacherResult:
        m, (control, turn, lane) = self.labels_of(inp)
        scene = scene_of(inp, self.config)
        seed = hashlib.sha256(np.round(np.asarray(inp.trajectory.xy, np.float64), 2).tobytes()
                              + int(inp.stamp_ns).to_bytes(8, 'little', signed=True)).digest()
        words = rule_text.Words(random.Random(seed), m, scene, self.config,
                                labels.CONTROL_LABELS[control], labels.TURN_LABELS[turn],
                                labels.LANE_LABELS[lane])
        return TeacherResult(
            current_action=words.current(), future_action=words.future(),
            reasoning=words.reasoning(),
            control_action=control, turn_action=turn, lane_action=lane,
            teacher=self.name, prompt_version=self.prompt_version)
