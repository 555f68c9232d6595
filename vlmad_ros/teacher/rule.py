"""
The `rule` teacher: deterministic, offline answers from the future trajectory and ground truth.

It reads what a VLM would read off the red line (speed profile, heading change, lateral offset)
and, when the bag carries ground truth, the scene (a red light ahead, a lead vehicle, a
pedestrian), and writes short varied sentences plus labels that agree with the trajectory:
a stopping path is `stop`, a left turn `turn left`, a lane change `change lane to ...`.
It needs no network and is the default teacher of the CLI, the tests and CI. The same input
always gives the same answer (the phrasing is chosen by a hash of the input).
"""
from __future__ import annotations

import dataclasses
import hashlib
import random
from typing import Optional, Sequence, Tuple

import numpy as np

from vlmad_ros import labels
from vlmad_ros.teacher.base import (LightState, ObjectClass, SceneObject, TeacherInput,
                                    TeacherResult, VEHICLE_CLASSES)

RULE_VERSION = 'rule-v1'
BEAR_HEADING = 0.2   # [rad] a heading change this large is worth saying, though not a turn


@dataclasses.dataclass(frozen=True)
class RuleConfig:
    """Thresholds of the rules (SI units)."""

    stop_speed: float = 0.5          # final speed below this [m/s] -> stop
    stop_distance: float = 1.0       # or less than this travelled in 3 s [m] -> stop
    slow_speed: float = 3.0          # mean speed below this [m/s] -> move slowly
    turn_heading: float = 0.5        # heading change beyond this [rad] (~29 deg) -> turn
    turn_around_heading: float = 2.6  # beyond this [rad] (~150 deg) -> turn around
    lane_offset: float = 1.5         # sideways offset at 3 s [m] of a lane change ...
    lane_heading: float = 0.35       # ... whose final heading change stays below this [rad]
    lane_heading_return: float = 0.6  # ... and below this fraction of the largest on the way
    ahead_range: float = 40.0        # how far ahead lights and lead vehicles matter [m]
    blocker_range: float = 60.0      # a vehicle this far ahead in the lane explains a lane change
    corridor_half_width: float = 2.0  # a vehicle this close to the path is in the ego's lane [m]
    pedestrian_range: float = 25.0   # pedestrians this far ahead matter [m]
    pedestrian_half_width: float = 4.0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if getattr(self, f.name) <= 0:
                raise ValueError(f'RuleConfig.{f.name} must be > 0, got {getattr(self, f.name)}')


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


def motion_of(inp: TeacherInput) -> Motion:
    xy = np.asarray(inp.trajectory.xy, dtype=np.float64)
    dt = float(inp.trajectory.dt)
    steps = np.diff(np.vstack([np.zeros((1, 2)), xy]), axis=0)
    seg_speed = np.linalg.norm(steps, axis=1) / dt
    distance = float(seg_speed.sum() * dt)
    v0 = float(inp.speed) if np.isfinite(inp.speed) else float(seg_speed[0])
    heading = float(inp.trajectory.heading[-1]) if distance > 2.0 else 0.0
    heading = float(np.arctan2(np.sin(heading), np.cos(heading)))
    x_end, y_end = float(xy[-1, 0]), float(xy[-1, 1])
    headings = np.asarray(inp.trajectory.heading, dtype=np.float64) if distance > 2.0 \
        else np.zeros(len(xy))
    peak = float(headings[np.argmax(np.abs(headings))])
    return Motion(v0=v0, v_near=float(seg_speed[1]), v_end=float(seg_speed[-1]),
                  v_mean=distance / (dt * len(xy)), distance=distance, x_end=x_end, y_end=y_end,
                  heading_change=heading, peak_heading=peak)


def path_polyline(inp: TeacherInput, reach: float) -> np.ndarray:
    """Build the ego's path (origin + waypoints), extended along its final heading to `reach` m."""
    xy = np.vstack([np.zeros((1, 2)), np.asarray(inp.trajectory.xy, dtype=np.float64)])
    length = float(np.linalg.norm(np.diff(xy, axis=0), axis=1).sum())
    heading = float(inp.trajectory.heading[-1]) if length > 1.0 else 0.0
    extra = max(0.0, reach - length)
    end = xy[-1] + extra * np.array([np.cos(heading), np.sin(heading)])
    return np.vstack([xy, end[None]])


def along_path(poly: np.ndarray, point) -> Tuple[float, float]:
    """(distance from the path, arc length to the nearest point on it) of a 2D point."""
    p = np.asarray(point, dtype=np.float64)
    best, best_s, s0 = np.inf, 0.0, 0.0
    for a, b in zip(poly[:-1], poly[1:]):
        d = b - a
        seg = float(np.hypot(*d))
        t = 0.0 if seg < 1e-9 else float(np.clip(np.dot(p - a, d) / (seg * seg), 0.0, 1.0))
        dist = float(np.hypot(*(a + t * d - p)))
        if dist < best:
            best, best_s = dist, s0 + t * seg
        s0 += seg
    return best, best_s


@dataclasses.dataclass(frozen=True)
class Scene:
    """The parts of the ground truth that explain the ego's behaviour."""

    light: Optional[Tuple[LightState, float]] = None     # state, distance to stop line
    lead: Optional[Tuple[SceneObject, float]] = None     # vehicle in the path, gap [m]
    pedestrian: Optional[Tuple[SceneObject, float]] = None  # nearest one ahead, distance
    blocker: Optional[Tuple[SceneObject, float]] = None  # vehicle ahead in the current lane


def scene_of(inp: TeacherInput, cfg: RuleConfig) -> Scene:
    light = None
    for lt in inp.lights or ():
        (x1, y1), (x2, y2) = lt.stop_line
        if (y1 > 0.5 and y2 > 0.5) or (y1 < -0.5 and y2 < -0.5):
            continue  # does not cross the ego's lane
        x = x1 if abs(y2 - y1) < 1e-6 else x1 + (x2 - x1) * (0 - y1) / (y2 - y1)
        x = float(np.clip(x, min(x1, x2), max(x1, x2)))
        if 0.0 < x <= cfg.ahead_range and (light is None or x < light[1]):
            light = (LightState(lt.state), x)
    lead = blocker = pedestrian = None
    poly = path_polyline(inp, cfg.ahead_range)
    for obj in inp.objects or ():
        if obj.x <= 0:
            continue
        dist, s = along_path(poly, (obj.x, obj.y))
        if obj.object_class in VEHICLE_CLASSES:
            gap = max(0.0, s - obj.length / 2)
            if dist <= cfg.corridor_half_width and s <= cfg.ahead_range and s > 0.5:
                if lead is None or gap < lead[1]:
                    lead = (obj, gap)
            gap_lane = max(0.0, obj.x - obj.length / 2)
            if abs(obj.y) <= cfg.corridor_half_width and obj.x <= cfg.blocker_range and \
                    (blocker is None or gap_lane < blocker[1]):
                blocker = (obj, gap_lane)
        elif obj.object_class == ObjectClass.PEDESTRIAN:
            if dist <= cfg.pedestrian_half_width and 0.5 < s <= cfg.pedestrian_range:
                if pedestrian is None or s < pedestrian[1]:
                    pedestrian = (obj, s)
    return Scene(light=light, lead=lead, pedestrian=pedestrian, blocker=blocker)


def classify(m: Motion, cfg: RuleConfig) -> Tuple[int, int, int]:
    """(control, turn, lane) label indices from the motion alone."""
    if m.x_end < -cfg.stop_distance and m.v_mean > 0.2:
        control = 'reverse'
    elif m.v_end < cfg.stop_speed or m.distance < cfg.stop_distance:
        control = 'stop'
    elif m.v_mean < cfg.slow_speed or m.v_end < cfg.slow_speed:
        control = 'move slowly'
    else:
        control = 'go straight'
    dh = m.heading_change
    if abs(dh) >= cfg.turn_around_heading:
        turn = 'turn around'
    elif dh >= cfg.turn_heading:
        turn = 'turn left'
    elif dh <= -cfg.turn_heading:
        turn = 'turn right'
    else:
        turn = 'none'
    lane = 'none'
    # A lane change swings the heading out and back: offset sideways, heading mostly returned.
    # (A turn that is only starting has its largest heading at the end, a road curve too.)
    swung_back = abs(dh) <= cfg.lane_heading_return * abs(m.peak_heading)
    if turn == 'none' and abs(m.y_end) >= cfg.lane_offset and abs(dh) < cfg.lane_heading \
            and swung_back and np.sign(m.peak_heading) == np.sign(m.y_end):
        lane = 'change lane to the left' if m.y_end > 0 else 'change lane to the right'
    return (labels.label_index('control_action', control),
            labels.label_index('turn_action', turn),
            labels.label_index('lane_action', lane))


def _kmh(v: float) -> str:
    """Speeds as people say them: to the nearest 5 km/h (at least 5)."""
    return f'{max(5, int(round(v * 3.6 / 5.0)) * 5)} km/h'


def _m(d: float) -> str:
    return f'{max(1, int(round(d)))} m'


def _pick(rng: random.Random, options: Sequence[str]) -> str:
    return options[rng.randrange(len(options))]


_SUBJECT = ('The ego vehicle', 'The ego car', 'Our vehicle')
_CLASS_NAME = {ObjectClass.CAR: 'car', ObjectClass.TRUCK: 'truck', ObjectClass.BUS: 'bus',
               ObjectClass.CYCLIST: 'cyclist'}


class RuleTeacher:
    """Deterministic Teacher; thread-safe (no state)."""

    def __init__(self, config: RuleConfig = RuleConfig()):
        self.config = config
        self.name = RULE_VERSION
        self.prompt_version = RULE_VERSION
        self.image_width = 160  # decode hint: the rules do not look at pixels

    def annotate(self, inp: TeacherInput) -> TeacherResult:
        m = motion_of(inp)
        scene = scene_of(inp, self.config)
        control, turn, lane = classify(m, self.config)
        seed = hashlib.sha256(np.round(np.asarray(inp.trajectory.xy, np.float64), 2).tobytes()
                              + int(inp.stamp_ns).to_bytes(8, 'little', signed=True)).digest()
        rng = random.Random(seed)
        c = labels.CONTROL_LABELS[control]
        t = labels.TURN_LABELS[turn]
        ln = labels.LANE_LABELS[lane]
        return TeacherResult(
            current_action=self._current(rng, m, scene),
            future_action=self._future(rng, m, scene, c, t, ln),
            reasoning=self._reasoning(rng, m, scene, c, t, ln),
            control_action=control, turn_action=turn, lane_action=lane,
            teacher=self.name, prompt_version=self.prompt_version)

    def _current(self, rng: random.Random, m: Motion, scene: Scene) -> str:
        subject = _pick(rng, _SUBJECT)
        if m.v0 < 0.3:
            where = ''
            if scene.light and scene.light[0] == LightState.RED and scene.light[1] < 15:
                where = ' at a red light'
            elif scene.lead and scene.lead[1] < 12:
                where = f' behind a {_CLASS_NAME.get(scene.lead[0].object_class, "vehicle")}'
            return f'{subject} is {_pick(rng, ("stopped", "standing still", "at a standstill"))}' \
                   f'{where}.'
        change = m.v_near - m.v0
        if change < -1.0:
            doing = _pick(rng, ('is slowing down', 'is braking', 'is decelerating'))
            return f'{subject} {doing} from about {_kmh(m.v0)}.'
        if change > 1.0:
            doing = _pick(rng, ('is accelerating', 'is speeding up', 'is picking up speed'))
            return f'{subject} {doing} from about {_kmh(m.v0)}.'
        speed = _kmh(m.v0)
        return f'{subject} ' + _pick(rng, (f'is driving steadily at about {speed}.',
                                           f'is cruising at about {speed}.',
                                           f'is moving at a constant speed of about {speed}.',
                                           f'is travelling smoothly at around {speed}.'))

    def _future(self, rng: random.Random, m: Motion, scene: Scene, control: str, turn: str,
                lane: str) -> str:
        if control == 'reverse':
            return 'It will back up slowly.'
        if control == 'stop':
            if m.v0 < 0.3:
                return _pick(rng, ('It will remain stopped for the next few seconds.',
                                   'It will stay where it is.',
                                   'It will keep waiting without moving.'))
            return _pick(rng, (f'It will come to a stop within about {_m(m.distance)}.',
                               f'It will brake to a halt in roughly {_m(m.distance)}.',
                               f'It will stop after about {_m(m.distance)}.'))
        speed = _kmh(m.v_end)
        if turn == 'turn around':
            return f'It will make a U-turn at about {speed}.'
        if turn in ('turn left', 'turn right'):
            side = turn.split()[1]
            return _pick(rng, (f'It will turn {side} at about {speed}.',
                               f'It will make a {side} turn and continue at about {speed}.',
                               f'It will take the {side} turn ahead.'))
        if lane != 'none':
            side = lane.split()[-1]
            return _pick(rng, (f'It will change into the {side} lane and keep going.',
                               f'It will move over to the {side} lane.',
                               f'It will shift into the lane on its {side}.'))
        if control == 'move slowly' and m.v_end - m.v0 < -1.5:
            return self._slowing(rng, m, scene, speed)
        if control == 'move slowly':
            return _pick(rng, (f'It will continue slowly at about {speed}.',
                               f'It will creep forward at around {speed}.',
                               f'It will keep moving slowly, around {speed}.'))
        if abs(m.heading_change) >= BEAR_HEADING:  # a turn that starts near the horizon
            side = 'left' if m.heading_change > 0 else 'right'
            how = 'slow down and' if m.v_end - m.v0 < -1.5 else 'go on and'
            return f'It will {how} begin to bear {side} at about {speed}.'
        if m.v_end - m.v0 > 1.5:
            return f'It will keep accelerating straight ahead to about {speed}.'
        if m.v_end - m.v0 < -1.5:
            return self._slowing(rng, m, scene, speed)
        return _pick(rng, (f'It will continue straight ahead at about {speed}.',
                           f'It will keep its lane and go straight at around {speed}.',
                           f'It will carry on straight at about {speed}.'))

    @staticmethod
    def _slowing(rng: random.Random, m: Motion, scene: Scene, speed: str) -> str:
        """Say what the ego slows down for, when the scene tells."""
        light = scene.light
        if light is not None and light[0] in (LightState.RED, LightState.YELLOW) \
                and m.x_end <= light[1] + 1.0:
            return _pick(rng, (f'It will keep braking, down to about {speed}, to stop at the '
                               'light ahead.',
                               f'It will slow to about {speed} as it approaches the stop line.'))
        if scene.pedestrian is not None:
            return f'It will slow down to about {speed} for the pedestrian ahead.'
        if scene.lead is not None:
            kind = _CLASS_NAME.get(scene.lead[0].object_class, 'vehicle')
            return f'It will slow down to about {speed} behind the {kind} ahead.'
        return f'It will slow down to about {speed} and continue straight.'

    def _reasoning(self, rng: random.Random, m: Motion, scene: Scene, control: str, turn: str,
                   lane: str) -> str:
        reasons = []
        slowing = control in ('stop', 'move slowly') or m.v_end < m.v0 - 1.5
        light = scene.light
        red = light is not None and light[0] in (LightState.RED, LightState.YELLOW)
        if slowing and red and m.x_end <= light[1] + 1.0:
            colour = 'red' if light[0] == LightState.RED else 'turning yellow'
            reasons.append(_pick(rng, (
                f'The traffic light ahead is {colour}, so it must stop before the stop line '
                f'about {_m(light[1])} ahead.',
                f'It has to stop because the signal about {_m(light[1])} ahead is {colour}.')))
        ped = scene.pedestrian
        if slowing and ped is not None:
            reasons.append(_pick(rng, (
                f'A pedestrian is about {_m(ped[1])} ahead near its path, so it yields.',
                f'It gives way to a pedestrian roughly {_m(ped[1])} ahead.')))
        lead = scene.lead
        if lead is not None and lane == 'none':
            kind = _CLASS_NAME.get(lead[0].object_class, 'vehicle')
            if slowing:
                state = 'stopped' if lead[0].speed < 0.5 else 'moving slowly'
                reasons.append(f'The {kind} about {_m(lead[1])} ahead is {state}, '
                               f'so it keeps a safe distance.')
            else:
                reasons.append(f'It follows the {kind} about {_m(lead[1])} ahead '
                               f'at a safe distance.')
        if lane != 'none':
            side = lane.split()[-1]
            blocker = scene.blocker
            if blocker is not None:
                kind = _CLASS_NAME.get(blocker[0].object_class, 'vehicle')
                state = 'stopped' if blocker[0].speed < 0.5 else 'slower'
                reasons.append(f'It changes to the {side} lane to get around the {state} {kind} '
                               f'about {_m(blocker[1])} ahead in its lane.')
            else:
                reasons.append(f'It moves to the {side} lane to follow its route, '
                               f'and the {side} lane is free.')
        if turn in ('turn left', 'turn right', 'turn around'):
            go = 'green' if light is not None and light[0] == LightState.GREEN else None
            reasons.append(_pick(rng, (
                'Its route continues ' + ('to the left' if turn == 'turn left' else
                                          'to the right' if turn == 'turn right' else
                                          'in the opposite direction') + ' at this junction.',
                'The planned route requires this turn.')) + (' The light is green.' if go else ''))
        if not reasons and abs(m.heading_change) >= BEAR_HEADING and turn == 'none' \
                and lane == 'none':
            reasons.append('The road ahead bends, so it follows its lane'
                           + (' and slows down.' if slowing else '.'))
        if not reasons:
            if control == 'stop':
                reasons.append('It stops because the way ahead is not clear.')
            elif slowing:
                reasons.append(_pick(rng, (
                    'It slows down to keep a safe speed for the road ahead.',
                    'It reduces speed as a precaution.')))
            elif light is not None and light[0] == LightState.GREEN:
                reasons.append('The light ahead is green and the lane is clear, so it proceeds.')
            else:
                reasons.append(_pick(rng, ('The road ahead is clear, so it keeps going.',
                                           'Nothing blocks its lane, so it proceeds normally.',
                                           'There are no obstacles in its path.')))
        return ' '.join(reasons)
