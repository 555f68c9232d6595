"""Rule teacher texts: every number and state a sentence states, read back against the truth."""
import re
import subprocess

import numpy as np
import pytest
from vlmad_ros import labels
from vlmad_ros.rig import load_rig
from vlmad_ros.synth.agents import EGO_CENTER_OFFSET, EGO_LENGTH
from vlmad_ros.synth.town import TownConfig
from vlmad_ros.teacher.base import (LightState, ObjectClass, SceneObject, TeacherInput,
                                    TrafficLightAhead)
from vlmad_ros.teacher.rule import RuleConfig, RuleTeacher
from vlmad_ros.types import Trajectory

T = 0.5 * np.arange(1, 7)
CAM = load_rig('nuscenes')['CAM_FRONT'].scaled(160, 90)
IMG = np.zeros((90, 160, 3), np.uint8)
FRONT = EGO_CENTER_OFFSET + EGO_LENGTH / 2     # rear axle -> front bumper of the synthetic ego
COLOURS = {'red': LightState.RED, 'yellow': LightState.YELLOW, 'green': LightState.GREEN}
KINDS = {'car': ObjectClass.CAR, 'truck': ObjectClass.TRUCK, 'bus': ObjectClass.BUS}


def test_config_matches_the_world():
    assert RuleConfig().ego_front == pytest.approx(FRONT, abs=1e-3)
    assert RuleConfig().lane_width == TownConfig().lane_width


# ----- reading numbers back -----

def kmh_ok(said: int, v: float) -> bool:
    """Check the rounding of rule_text.kmh: 1 km/h below 10 km/h, else 5 km/h."""
    return abs(said - v * 3.6) <= (0.5 if said < 10 else 2.5) + 1e-6


def metres_ok(text: str, d: float) -> bool:
    if text == 'less than 1':
        return d < 0.5 + 1e-6
    return abs(int(text) - d) <= 0.5 + 1e-6


def numbers(sentence: str):
    """(metres, km/h) stated in a sentence, as strings / ints."""
    kmh = [int(k) for k in re.findall(r'(\d+) km/h', sentence)]
    m = re.findall(r'(less than 1|\d+) m\b', sentence)
    return m, kmh


def sentences(text: str):
    return [s for s in re.split(r'(?<=\.)\s+', text) if s]


class Truth:
    """What one keyframe's ground truth says, computed here on straight-ahead scenes."""

    def __init__(self, xy, v0, lights=(), objects=()):
        xy = np.asarray(xy, float)
        steps = np.diff(np.vstack([[0, 0], xy]), axis=0)
        speed = np.linalg.norm(steps, axis=1) / 0.5
        self.v0, self.v_end, self.travel = v0, speed[-1], float(speed.sum() * 0.5)
        self.lights = lights
        self.vehicles = [o for o in objects if o.object_class in KINDS.values()]
        self.peds = [o for o in objects if o.object_class == ObjectClass.PEDESTRIAN]

    def light(self):
        """(state, bumper distance) of the nearest stop line across y = 0 (straight paths)."""
        ahead = [(lt.stop_line[0][0] - FRONT, lt.state) for lt in self.lights
                 if lt.stop_line[0][0] - FRONT > -0.5]
        return min(ahead)[::-1] if ahead else None

    def vehicle_gaps(self):
        return {o: o.x - o.length / 2 - FRONT for o in self.vehicles}


def check(res, truth: Truth):
    """Every number and state in the three answers against the truth; returns the sentences."""
    for s in sentences(res.current_action):
        m, kmh = numbers(s)
        assert all(kmh_ok(k, truth.v0) for k in kmh), (s, truth.v0)
        if 'light' in s:
            state, dist = truth.light()
            assert all(metres_ok(x, dist) for x in m) and _colour(s) == state, s
        elif m:
            assert any(all(metres_ok(x, g) for x in m) for g in truth.vehicle_gaps().values()), s
    for s in sentences(res.future_action):
        m, kmh = numbers(s)
        assert all(kmh_ok(k, truth.v_end) for k in kmh), (s, truth.v_end)
        assert all(metres_ok(x, truth.travel) for x in m), (s, truth.travel)
    for s in sentences(res.reasoning):
        check_reason(s, truth)
    return sentences(res.current_action + ' ' + res.future_action + ' ' + res.reasoning)


def _colour(s: str):
    found = [state for word, state in COLOURS.items() if re.search(rf'\b{word}\b', s)]
    assert len(found) == 1, s
    return found[0]


def check_reason(s: str, truth: Truth):
    m, kmh = numbers(s)
    if 'light' in s or 'signal' in s:
        state, dist = truth.light()
        assert _colour(s) == state and all(metres_ok(x, dist) for x in m) and not kmh, s
    elif 'pedestrian' in s:
        ped = min(truth.peds, key=lambda p: p.x)
        assert all(metres_ok(x, ped.x - FRONT) for x in m), s
        side = 'in its path' if abs(ped.y) < 1.0 else \
            f'to the {"left" if ped.y > 0 else "right"}'
        assert side in s, s
    elif any(re.search(rf'\b{k}\b', s) for k in KINDS):
        kind = next(k for k in KINDS if re.search(rf'\b{k}\b', s))
        cands = [(o, g) for o, g in truth.vehicle_gaps().items()
                 if o.object_class == KINDS[kind] and all(metres_ok(x, g) for x in m)]
        assert cands, s
        obj, gap = cands[0]
        assert all(kmh_ok(k, obj.speed) for k in kmh), s
        if 'stopped' in s:
            assert obj.speed < 0.5, s
        if 'safe' in s:
            closing = truth.v0 - obj.vx
            assert gap >= max(5.0, 2.0 * truth.v0) and (closing <= 0.1 or gap / closing >= 4), s
        if gap < 2.0:
            assert 'safe' not in s and ('close' in s or 'too' in s), s
    else:
        assert not m and not kmh, f'a number without its subject: {s}'


# ----- scenes -----

def ask(xy, speed, stamp=0, lights=(), objects=()):
    traj = Trajectory.from_xy(xy)
    inp = TeacherInput(image=IMG, camera=CAM, trajectory=traj, speed=speed, stamp_ns=stamp,
                       lights=tuple(lights), objects=tuple(objects))
    res = RuleTeacher().annotate(inp)
    lab = tuple(labels.label_text(c, i) for c, i in
                zip(labels.LABEL_SETS, (res.control_action, res.turn_action, res.lane_action)))
    return res, lab, Truth(xy, speed, lights, objects)


def profile(v0, accel, stop=True):
    """Straight line, constant acceleration (stopping at 0 when `stop`)."""
    t = np.minimum(T, v0 / -accel) if accel < 0 and stop else T
    return np.stack([v0 * t + 0.5 * accel * t * t, 0 * T], 1)


def light(x, state):
    return TrafficLightAhead(state=state, stop_line=((x, 0.2), (x, -6.8)))


def car(x, y=0.0, v=0.0, kind=ObjectClass.CAR, length=4.5):
    return SceneObject(x=x, y=y, length=length, width=1.9, yaw=0.0, object_class=kind, vx=v)


def ped(x, y):
    return SceneObject(x=x, y=y, length=0.6, width=0.6, yaw=0.0,
                       object_class=ObjectClass.PEDESTRIAN, vy=-1.3)


SCENES = {
    'cruise': (profile(10.0, 0.0), 10.0, (), ()),
    'cruise_green': (profile(9.0, 0.0), 9.0, (light(30.0, LightState.GREEN),), ()),
    'brake_red': (profile(9.0, -3.0), 9.0, (light(20.0, LightState.RED),), ()),
    'slow_yellow': (profile(9.0, -1.8), 9.0, (light(35.0, LightState.YELLOW),), ()),
    'yellow_too_close': (profile(10.0, 0.0), 10.0, (light(6.0, LightState.YELLOW),), ()),
    'wait_red': (np.zeros((6, 2)), 0.0, (light(4.5, LightState.RED),), ()),
    'move_off': (profile(0.0, 2.0), 0.0, (light(4.5, LightState.RED),), ()),
    'accelerate': (profile(5.0, 1.5), 5.0, (), ()),
    'creep': (profile(2.0, 0.0), 2.0, (), ()),
    'follow_safe': (profile(8.0, 0.0), 8.0, (), (car(30.0, 0.3, 8.0),)),
    'follow_close': (profile(8.0, 0.0), 8.0, (), (car(12.0, 0.0, 7.0, ObjectClass.TRUCK, 7.5),)),
    'brake_for_lead': (profile(8.0, -2.5), 8.0, (), (car(16.0, 0.0, 0.0),)),
    'collision': (profile(6.0, 0.0), 6.0, (), (car(FRONT + 2.25 - 0.3, 0.0, 1.0),)),
    'touching': (profile(4.0, -1.0), 4.0, (), (car(FRONT + 2.25 + 0.7, 0.0, 2.0),)),
    'queue': (np.zeros((6, 2)), 0.0, (), (car(FRONT + 2.25 + 2.0, 0.0, 0.0),)),
    'ped_left': (profile(8.0, -2.0), 8.0, (), (ped(14.0, 2.5),)),
    'ped_right': (profile(8.0, -2.0), 8.0, (), (ped(11.0, -2.0),)),
    'ped_in_path': (profile(7.0, -2.5), 7.0, (), (ped(15.0, 0.2),)),
    'stop_plain': (profile(3.0, -3.0), 3.0, (), ()),
    'reverse': (profile(-1.5, 0.0), -1.5, (), ()),
}


@pytest.mark.parametrize('name', sorted(SCENES))
def test_every_stated_number_and_state_matches_the_truth(name):
    xy, v0, lights, objects = SCENES[name]
    said = set()
    for stamp in range(12):   # several phrasings of the same scene
        res, _, truth = ask(xy, v0, stamp, lights, objects)
        said.update(check(res, truth))
    assert said


def test_the_scene_is_named():
    """Each cause is in the reasoning, with its numbers (read back by check)."""
    expect = {'brake_red': 'red', 'slow_yellow': 'yellow', 'wait_red': 'red',
              'move_off': 'still red', 'yellow_too_close': 'too close to stop',
              'follow_safe': 'safe distance', 'follow_close': 'the gap is short',
              'brake_for_lead': 'stopped', 'collision': 'far too close',
              'touching': 'close', 'queue': 'waits behind', 'ped_left': 'left of its path',
              'ped_right': 'right of its path', 'ped_in_path': 'in its path',
              'cruise_green': 'green'}
    for name, words in expect.items():
        xy, v0, lights, objects = SCENES[name]
        res = ask(xy, v0, 3, lights, objects)[0]
        assert words in res.reasoning, (name, res.reasoning)


@pytest.mark.parametrize('name', ['collision', 'touching', 'follow_close'])
def test_a_close_gap_is_never_safe(name):
    xy, v0, lights, objects = SCENES[name]
    for stamp in range(20):
        res = ask(xy, v0, stamp, lights, objects)[0]
        assert 'safe' not in (res.current_action + res.future_action + res.reasoning).lower()


def test_rounding():
    from vlmad_ros.teacher.rule_text import kmh, metres
    said = (kmh(2.0), kmh(2.7), kmh(9.7), kmh(0.4))
    assert said == ('7 km/h', '10 km/h', '35 km/h', '1 km/h')
    assert (metres(0.3), metres(0.6), metres(12.49)) == ('less than 1 m', '1 m', '12 m')


# ----- real synthetic data -----

@pytest.fixture(scope='module')
def synth_bags(tmp_path_factory):
    out = tmp_path_factory.mktemp('synth')
    for scenario, seed in (('stopped_vehicle', 8), ('lead_brake', 2)):
        subprocess.run(['vlmad', 'synth', '--scenes', '1', '--seed', str(seed), '--duration',
                        '10', '--width', '320', '--height', '180', '--workers', '1',
                        '--scenario', scenario, '--quiet', '--out', str(out / scenario)],
                       check=True)
    return sorted(out.glob('*/synth-*-0000'))


def test_synthetic_texts_agree_with_odometry_and_objects(synth_bags):
    from vlmad_ros.data.reader import read_samples
    from vlmad_ros.teacher.cli import reader_config, teacher_input
    from vlmad_ros.teacher.scene import read_scene_index
    lanes = set()
    for bag in synth_bags:
        scene = read_scene_index(bag)
        for sample in read_samples(bag, reader_config('CAM_FRONT')):
            inp = teacher_input(sample, 'CAM_FRONT', scene, 160)
            res = RuleTeacher().annotate(inp)
            truth = Truth(inp.trajectory.xy, inp.speed)
            for s in sentences(res.current_action):
                assert all(kmh_ok(k, truth.v0) for k in numbers(s)[1]), s
            for s in sentences(res.future_action):
                assert all(kmh_ok(k, truth.v_end) for k in numbers(s)[1]), s
            close = [o for o in inp.objects or () if o.object_class in KINDS.values()
                     and abs(o.y) < 1.5 and 0 < o.x - o.length / 2 - FRONT < 5.0]
            if close:
                assert 'safe' not in res.reasoning, res.reasoning
            lanes.add(labels.label_text('lane_action', res.lane_action))
    assert 'change lane to the left' in lanes
