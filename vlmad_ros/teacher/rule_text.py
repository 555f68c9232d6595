"""
The rule teacher's sentences (Q1): current action, future action, reasoning.

Numbers follow fixed rules so that tests can read them back and compare them with the ground
truth they came from:

- speeds are "N km/h": to the nearest 1 km/h below 10 km/h, else to the nearest 5 km/h;
- distances are "N m" to the nearest metre, "less than 1 m" below 0.5 m;
- current_action states the ego speed now (odometry) and, when stopped, the distance to what
  it waits for; future_action states speeds over the last 0.5 s of the 3 s future and the
  path length travelled; each reasoning sentence names one thing (the light, the lead
  vehicle, a pedestrian, the lane-change blocker) with that thing's distance from the ego's
  front bumper, its state or speed.

"A safe distance" is only said when the time gap, the gap and the time to contact all are
(RuleConfig.safe_*); a small or closing gap is called what it is.
"""
from __future__ import annotations

import random
from typing import List, Optional, Sequence, TYPE_CHECKING

from vlmad_ros.teacher.base import LightState

if TYPE_CHECKING:  # pragma: no cover
    from vlmad_ros.teacher.rule import Agent, Motion, RuleConfig, Scene

STOPPED = 0.3      # [m/s] the ego is "stopped" below this
AGENT_STOPPED = 0.5  # [m/s] another vehicle is "stopped" below this
_SUBJECT = ('The ego vehicle', 'The ego car', 'Our vehicle')
_COLOUR = {LightState.RED: 'red', LightState.YELLOW: 'yellow', LightState.GREEN: 'green'}


def kmh(v: float) -> str:
    """Speeds as people say them: nearest 1 km/h below 10 km/h, else nearest 5 km/h."""
    k = abs(v) * 3.6
    return f'{int(round(k))} km/h' if k < 9.5 else f'{int(round(k / 5.0)) * 5} km/h'


def metres(d: float) -> str:
    """Distances to the nearest metre; 'less than 1 m' below half a metre."""
    return 'less than 1 m' if d < 0.5 else f'{int(round(d))} m'


def pick(rng: random.Random, options: Sequence[str]) -> str:
    return options[rng.randrange(len(options))]


class Words:
    """One keyframe's sentences; the rng only chooses among equally true phrasings."""

    def __init__(self, rng: random.Random, m: 'Motion', scene: 'Scene', cfg: 'RuleConfig',
                 control: str, turn: str, lane: str):
        self.rng, self.m, self.scene, self.cfg = rng, m, scene, cfg
        self.control, self.turn, self.lane = control, turn, lane
        self.slowing = control in ('stop', 'move slowly') and m.v_end < m.v0 - 0.5 \
            or m.v_end < m.v0 - 1.5

    # ----- facts the sentences depend on -----
    def red_light(self):
        lt = self.scene.light
        return lt if lt is not None and lt.state in (LightState.RED, LightState.YELLOW) else None

    def stops_before(self, light) -> bool:
        """Tell whether the ego's front stays behind the stop line (+1 m) for the whole 3 s."""
        return self.m.distance + self.cfg.ego_front <= light.s + 1.0

    def lead_safe(self, lead: 'Agent') -> bool:
        """Time gap, gap and time to contact all comfortable."""
        v0, cfg = max(self.m.v0, 0.0), self.cfg
        closing = v0 - max(lead.obj.vx, 0.0)
        return lead.distance >= max(cfg.safe_gap, cfg.safe_time_gap * v0) and \
            (closing <= 0.1 or lead.distance / closing >= cfg.safe_ttc)

    # ----- current action -----
    def current(self) -> str:
        m, rng = self.m, self.rng
        subject = pick(rng, _SUBJECT)
        if m.v0 < STOPPED:
            return f'{subject} {self._waiting()}.'
        if m.accel >= self.cfg.steady_accel:
            doing = pick(rng, ('is accelerating', 'is speeding up', 'is picking up speed'))
            return f'{subject} {doing} from about {kmh(m.v0)}.'
        if m.accel <= -self.cfg.steady_accel:
            doing = pick(rng, ('is slowing down', 'is braking', 'is decelerating'))
            return f'{subject} {doing} from about {kmh(m.v0)}.'
        speed = kmh(m.v0)
        return f'{subject} ' + pick(rng, (f'is driving steadily at about {speed}.',
                                          f'is cruising at about {speed}.',
                                          f'is moving at a constant speed of about {speed}.',
                                          f'is travelling smoothly at around {speed}.'))

    def _waiting(self) -> str:
        still = pick(self.rng, ('is stopped', 'is standing still', 'is at a standstill'))
        light, lead = self.red_light(), self.scene.lead
        if lead is not None and lead.distance < 10.0 and \
                (light is None or lead.distance < light.distance):
            state = 'stopped ' if lead.obj.speed < AGENT_STOPPED else ''
            return f'{still} {metres(lead.distance)} behind a {state}{lead.kind}'
        if light is not None and light.distance < 10.0:
            return f'{still} at the {_COLOUR[light.state]} light, ' \
                   f'{metres(light.distance)} before the stop line'
        return still

    # ----- future action -----
    def future(self) -> str:
        m, rng = self.m, self.rng
        if self.control == 'reverse':
            return f'It will back up about {metres(m.distance)}.'
        if self.control == 'stop':
            if m.v0 < STOPPED:
                return pick(rng, ('It will remain stopped for the next few seconds.',
                                  'It will stay where it is.',
                                  'It will keep waiting without moving.'))
            if m.distance < 0.5:
                return 'It will come to a stop almost at once.'
            return pick(rng, (f'It will come to a stop within about {metres(m.distance)}.',
                              f'It will brake to a halt in roughly {metres(m.distance)}.',
                              f'It will stop after about {metres(m.distance)}.'))
        speed = kmh(m.v_end)
        if self.turn == 'turn around':
            return f'It will make a U-turn and reach about {speed}.'
        if self.turn in ('turn left', 'turn right'):
            return self._turning(self.turn.split()[1], speed)
        if self.lane != 'none':
            side = self.lane.split()[-1]
            return pick(rng, (f'It will change into the {side} lane at about {speed}.',
                              f'It will move over to the {side} lane, ending at about {speed}.',
                              f'It will shift into the lane on its {side} at about {speed}.'))
        if m.v0 < STOPPED:
            return f'It will move off and reach about {speed} within 3 seconds.'
        if self.slowing:
            return self._slowing(speed)
        if self.control == 'move slowly':
            return pick(rng, (f'It will continue slowly at about {speed}.',
                              f'It will creep forward at around {speed}.',
                              f'It will keep moving slowly, around {speed}.'))
        if abs(m.heading_change) >= 0.2:  # a gentle curve, not a turn nor a lane change
            side = 'left' if m.heading_change > 0 else 'right'
            return f'It will bear slightly {side} and go on at about {speed}.'
        if m.v_end - m.v0 > 1.5:
            return f'It will keep accelerating straight ahead to about {speed}.'
        return pick(rng, (f'It will continue straight ahead at about {speed}.',
                          f'It will keep its lane and go straight at around {speed}.',
                          f'It will carry on straight at about {speed}.'))

    def _turning(self, side: str, speed: str) -> str:
        m = self.m
        sign = 1.0 if side == 'left' else -1.0
        if abs(m.heading_change) < self.cfg.turn_heading and sign * m.rate_end >= \
                self.cfg.turn_partial_rate:
            return f'It will start turning {side} and slow to about {speed}.' \
                if m.v_end < m.v0 - 1.0 else f'It will start turning {side} at about {speed}.'
        if abs(m.heading_change) < self.cfg.turn_heading:
            return f'It will finish its {side} turn and straighten up at about {speed}.'
        return pick(self.rng, (f'It will turn {side} and leave the turn at about {speed}.',
                               f'It will make a {side} turn and continue at about {speed}.',
                               f'It will take the {side} turn ahead, ending at about {speed}.'))

    def _slowing(self, speed: str) -> str:
        """Say what the ego slows down for, when the scene tells."""
        light, scene = self.red_light(), self.scene
        if light is not None and self.stops_before(light):
            return pick(self.rng, (f'It will keep braking, down to about {speed}, to stop at '
                                   'the light ahead.',
                                   f'It will slow to about {speed} as it approaches the stop '
                                   'line.'))
        if scene.pedestrian is not None:
            return f'It will slow down to about {speed} for the pedestrian ahead.'
        if scene.lead is not None:
            return f'It will slow down to about {speed} behind the {scene.lead.kind} ahead.'
        return f'It will slow down to about {speed} and continue straight.'

    # ----- reasoning -----
    def reasoning(self) -> str:
        reasons = [r for r in (self._light_reason(), self._pedestrian_reason(),
                               self._lead_reason(), self._lane_reason(), self._turn_reason())
                   if r]
        return ' '.join(reasons) if reasons else self._default_reason()

    def _light_reason(self) -> Optional[str]:
        light, m = self.scene.light, self.m
        if light is None:
            return None
        d, colour = metres(light.distance), _COLOUR.get(light.state)
        if colour is None:
            return None
        if light.state == LightState.GREEN:
            if self.slowing and self.turn == 'none':
                return None  # something else slows it; a green light explains nothing
            return pick(self.rng, (f'The light about {d} ahead is green, so it may go on.',
                                   f'The signal {d} ahead shows green.'))
        if self.stops_before(light):
            if m.v0 < STOPPED and m.distance < 1.0:
                return f'It waits because the light {d} ahead is {colour}.'
            return pick(self.rng, (
                f'The traffic light ahead is {colour}, so it must stop before the stop line '
                f'about {d} ahead.',
                f'It has to stop because the signal about {d} ahead is {colour}.'))
        if m.v0 < STOPPED or self.slowing:
            return f'The light {d} ahead is still {colour} now; it moves on as it changes.'
        return f'The light about {d} ahead is {colour}, but it is too close to stop safely.'

    def _pedestrian_reason(self) -> Optional[str]:
        ped = self.scene.pedestrian
        if ped is None or not (self.slowing or ped.distance < 15.0):
            return None
        where = 'in its path' if abs(ped.side) < 1.0 else \
            f'to the {"left" if ped.side > 0 else "right"} of its path'
        act = 'so it yields' if self.slowing else 'so it watches them'
        return pick(self.rng, (f'A pedestrian is about {metres(ped.distance)} ahead, {where}, '
                               f'{act}.',
                               f'There is a pedestrian {where} roughly '
                               f'{metres(ped.distance)} ahead, {act}.'))

    def _lead_reason(self) -> Optional[str]:
        lead = self.scene.lead
        if lead is None or self.lane != 'none':
            return None
        d, kind = metres(lead.distance), lead.kind
        moving = 'is stopped' if lead.obj.speed < AGENT_STOPPED else \
            f'is moving at about {kmh(lead.obj.speed)}'
        if lead.distance < 1.0:
            return f'The {kind} ahead is only {d} from its front bumper and {moving[3:]}, far ' \
                   'too close.'
        if self.m.v0 < STOPPED:
            return f'It waits behind the {kind} {d} ahead, which {moving}.'
        if self.lead_safe(lead):
            if self.slowing:
                return f'The {kind} about {d} ahead {moving}, so it slows down early.'
            return f'It follows the {kind} about {d} ahead, which {moving}, at a safe distance.'
        if self.slowing:
            return f'The {kind} only {d} ahead {moving}, so it brakes to open the gap.'
        return f'The {kind} only {d} ahead {moving}; the gap is short, so it is ready to brake.'

    def _lane_reason(self) -> Optional[str]:
        if self.lane == 'none':
            return None
        side = self.lane.split()[-1]
        blocker = self.scene.blocker
        if blocker is not None:
            if blocker.obj.speed < AGENT_STOPPED:
                state = 'stopped '
            elif blocker.obj.speed < self.m.v0 - 0.5:
                state = 'slower '
            else:
                state = ''
            return (f'It changes to the {side} lane to get around the {state}{blocker.kind} '
                    f'about {metres(blocker.distance)} ahead in its lane.')
        free = self.scene.free_left if side == 'left' else self.scene.free_right
        return f'It moves to the {side} lane' + (
            f', and the {side} lane is free around it.' if free else ' into a gap in traffic.')

    def _turn_reason(self) -> Optional[str]:
        if self.turn not in ('turn left', 'turn right', 'turn around'):
            return None
        way = {'turn left': 'to the left', 'turn right': 'to the right'}.get(
            self.turn, 'in the opposite direction')
        return pick(self.rng, (f'Its route continues {way} at this junction.',
                               'The planned route requires this turn.'))

    def _default_reason(self) -> str:
        m, rng = self.m, self.rng
        reasons: List[str] = []
        if abs(m.heading_change) >= 0.2:
            side = 'left' if m.heading_change > 0 else 'right'
            reasons.append(f'Its path bends slightly to the {side}, so it follows it'
                           + (' and slows down.' if self.slowing else '.'))
        elif self.control == 'stop':
            reasons.append('It holds its position for now.')
        elif self.slowing:
            reasons.append(pick(rng, ('It slows down to keep a safe speed for the road ahead.',
                                      'It reduces speed as a precaution.')))
        else:
            reasons.append(pick(rng, ('The road ahead is clear, so it keeps going.',
                                      'Nothing blocks its lane, so it proceeds normally.',
                                      'There are no obstacles in its path.')))
        return ' '.join(reasons)
