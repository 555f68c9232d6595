"""The rule teacher: labels agree with the trajectory; scene ground truth explains it."""
import numpy as np
import pytest
from vlmad_ros import labels
from vlmad_ros.rig import load_rig
from vlmad_ros.teacher.base import (LightState, ObjectClass, SceneObject, TeacherInput,
                                    TrafficLightAhead)
from vlmad_ros.teacher.rule import RuleTeacher
from vlmad_ros.types import Trajectory

T = 0.5 * np.arange(1, 7)
CAM = load_rig('nuscenes')['CAM_FRONT'].scaled(160, 90)
IMG = np.zeros((90, 160, 3), np.uint8)


def ask(xy, speed=float('nan'), **kw):
    inp = TeacherInput(image=IMG, camera=CAM, trajectory=Trajectory.from_xy(xy), speed=speed,
                       stamp_ns=kw.pop('stamp_ns', 0), **kw)
    res = RuleTeacher().annotate(inp)
    assert res.ok and res.teacher == 'rule-v1'
    for text in (res.current_action, res.future_action, res.reasoning):
        assert text and len(text) < 400
    return res, tuple(labels.label_text(c, i) for c, i in
                      zip(labels.LABEL_SETS, (res.control_action, res.turn_action,
                                              res.lane_action)))


def braking(v0=8.0, decel=3.0):
    t = np.minimum(T, v0 / decel)
    return np.stack([v0 * t - 0.5 * decel * t * t, 0 * T], 1)


def arc(v, radius, sign=1):
    th = v * T / radius
    return np.stack([radius * np.sin(th), sign * radius * (1 - np.cos(th))], 1)


def lane_change(v=10.0, offset=3.5):
    return np.stack([v * T, offset * (1 - np.cos(np.pi * T / 3)) / 2], 1)


def test_stopping_is_stop():
    res, lab = ask(braking(), speed=8.0)
    assert lab == ('stop', 'none', 'none')
    assert 'stop' in res.future_action.lower() or 'halt' in res.future_action.lower()
    _, lab = ask(np.zeros((6, 2)), speed=0.0)
    assert lab[0] == 'stop'


@pytest.mark.parametrize('sign, turn', [(1, 'turn left'), (-1, 'turn right')])
def test_turns(sign, turn):
    res, lab = ask(arc(6.0, 12.0, sign), speed=6.0)
    assert lab[1] == turn and lab[2] == 'none'
    assert turn.split()[1] in res.future_action


@pytest.mark.parametrize('offset, lane', [(3.5, 'change lane to the left'),
                                          (-3.5, 'change lane to the right')])
def test_lane_change(offset, lane):
    res, lab = ask(lane_change(offset=offset), speed=10.0)
    assert lab == ('go straight', 'none', lane)
    assert lane.split()[-1] in res.future_action


def test_cruise_slow_reverse_and_u_turn():
    assert ask(np.stack([10 * T, 0 * T], 1), speed=10.0)[1] == ('go straight', 'none', 'none')
    assert ask(np.stack([2 * T, 0 * T], 1), speed=2.0)[1][0] == 'move slowly'
    assert ask(np.stack([-1.5 * T, 0 * T], 1), speed=-1.5)[1][0] == 'reverse'
    assert ask(arc(4.0, 3.5), speed=4.0)[1][1] == 'turn around'
    # A gentle curve with the road is neither a turn nor a lane change.
    assert ask(arc(10.0, 200.0), speed=10.0)[1] == ('go straight', 'none', 'none')


def test_a_turn_starting_at_the_horizon_is_not_a_lane_change():
    v, radius, t_turn = 9.0, 10.0, 2.5   # 0.45 rad by 3 s
    th = np.maximum(0.0, v * (T - t_turn) / radius)
    x = np.where(T <= t_turn, v * T, v * t_turn + radius * np.sin(th))
    y = np.where(T <= t_turn, 0.0, radius * (1 - np.cos(th)))
    res, lab = ask(np.stack([x, y], 1), speed=v)
    assert lab == ('go straight', 'none', 'none')
    assert 'bear left' in res.future_action


def test_scene_explains_the_stop():
    red = TrafficLightAhead(state=LightState.RED, stop_line=((12.0, -3.0), (12.0, 3.0)))
    res, lab = ask(braking(), speed=8.0, lights=(red,), objects=())
    assert lab[0] == 'stop' and 'red' in res.reasoning
    ped = SceneObject(x=9.0, y=1.0, length=0.6, width=0.6, yaw=0.0,
                      object_class=ObjectClass.PEDESTRIAN, vy=-1.2)
    res, _ = ask(braking(), speed=8.0, objects=(ped,), lights=())
    assert 'pedestrian' in res.reasoning
    lead = SceneObject(x=14.0, y=0.2, length=4.5, width=1.9, yaw=0.0,
                       object_class=ObjectClass.CAR)
    res, _ = ask(braking(), speed=8.0, objects=(lead,), lights=())
    assert 'car' in res.reasoning and 'stopped' in res.reasoning
    res, lab = ask(lane_change(), speed=10.0, objects=(lead,), lights=())
    assert lab[2] == 'change lane to the left' and 'get around' in res.reasoning


def test_deterministic_but_varied():
    a = ask(np.stack([10 * T, 0 * T], 1), speed=10.0, stamp_ns=1)[0]
    b = ask(np.stack([10 * T, 0 * T], 1), speed=10.0, stamp_ns=1)[0]
    assert a == b
    texts = {ask(np.stack([10 * T, 0 * T], 1), speed=10.0, stamp_ns=s)[0].current_action
             for s in range(30)}
    assert len(texts) >= 3
