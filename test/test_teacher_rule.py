"""The rule teacher: labels agree with the trajectory; scene ground truth explains it."""
import numpy as np
import pytest
from vlmad_ros import labels
from vlmad_ros.rig import load_rig
from vlmad_ros.teacher.base import (LightState, ObjectClass, SceneObject, TeacherInput,
                                    TrafficLightAhead)
from vlmad_ros.teacher.rule import RULE_VERSION, RuleConfig, RuleTeacher
from vlmad_ros.types import Trajectory

T = 0.5 * np.arange(1, 7)
CAM = load_rig('nuscenes')['CAM_FRONT'].scaled(160, 90)
IMG = np.zeros((90, 160, 3), np.uint8)


def ask(xy, speed=float('nan'), **kw):
    inp = TeacherInput(image=IMG, camera=CAM, trajectory=Trajectory.from_xy(xy), speed=speed,
                       stamp_ns=kw.pop('stamp_ns', 0), **kw)
    res = RuleTeacher().annotate(inp)
    assert res.ok and res.teacher == RULE_VERSION == res.prompt_version
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


def test_a_turn_starting_at_the_horizon_is_a_turn_not_a_lane_change():
    v, radius, t_turn = 9.0, 10.0, 2.5   # 0.45 rad by 3 s, still yawing at 0.9 rad/s
    th = np.maximum(0.0, v * (T - t_turn) / radius)
    x = np.where(T <= t_turn, v * T, v * t_turn + radius * np.sin(th))
    y = np.where(T <= t_turn, 0.0, radius * (1 - np.cos(th)))
    inp = TeacherInput(image=IMG, camera=CAM, trajectory=Trajectory(np.stack([x, y], 1), th),
                       speed=v)
    res = RuleTeacher().annotate(inp)
    lab = tuple(labels.label_text(c, i) for c, i in
                zip(labels.LABEL_SETS, (res.control_action, res.turn_action, res.lane_action)))
    assert lab == ('go straight', 'turn left', 'none')
    assert 'start turning left' in res.future_action
    # the end of a right turn: 0.4 rad left to go, yawing fast at the start
    th = np.minimum(0.4, 0.2 * T / 0.5) * -1
    xy = np.cumsum(np.stack([4.0 * np.cos(th), 4.0 * np.sin(th)], 1), axis=0) * 0.5
    res, lab = ask(xy, speed=4.0)
    assert lab[1:] == ('turn right', 'none') and 'finish its right turn' in res.future_action


def test_scene_explains_the_stop():
    red = TrafficLightAhead(state=LightState.RED, stop_line=((15.0, 0.2), (15.0, -6.8)))
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


# ----- lane changes against recoveries, in the road frame of a stop line and without -----

W = RuleConfig().lane_width


def road_light(yaw, lateral, ahead=80.0):
    """Stop line across the road half, seen from `lateral` m right of the centre, `yaw` off."""
    c, s = np.cos(-yaw), np.sin(-yaw)
    ends = []
    for y_road in (0.0, -2 * W):
        p = np.array([ahead, y_road + lateral])
        ends.append((float(c * p[0] - s * p[1]), float(s * p[0] + c * p[1])))
    return TrafficLightAhead(state=LightState.GREEN, stop_line=tuple(ends))


def in_base_link(road_xy, yaw0, lateral0):
    """Road-frame points (x along, y left of the ego's start lane position) -> base_link."""
    p = np.asarray(road_xy, float) - [0.0, 0.0]
    c, s = np.cos(-yaw0), np.sin(-yaw0)
    return np.stack([c * p[:, 0] - s * p[:, 1], s * p[:, 0] + c * p[:, 1]], 1)


def recovery(offset=1.0, yaw=0.15, v=9.0, overshoot=0.0):
    """Displaced `offset` m left and `yaw` rad off, back on the lane centre within 3 s."""
    t = np.concatenate([[0.0], T])
    # lateral position: from +offset with slope v*yaw, to 0 (optionally past it and back)
    y = offset * (1 + 1.8 * t) * np.exp(-1.8 * t) + v * yaw * t * np.exp(-1.8 * t) \
        - overshoot * np.sin(np.pi * t / 3)
    y[-1] = 0.0
    road = np.stack([v * t, y - offset], 1)           # relative to the start point
    xy = in_base_link(road, yaw, offset)
    heading = np.arctan2(np.diff(y), v * 0.5) - yaw
    return xy[1:], heading


@pytest.mark.parametrize('offset, yaw', [(1.0, 0.15), (-1.0, -0.15), (1.0, -0.15),
                                         (-0.6, 0.1), (0.8, 0.0)])
@pytest.mark.parametrize('with_line', [True, False])
def test_a_recovery_is_not_a_lane_change(offset, yaw, with_line):
    xy, heading = recovery(offset, yaw)
    lights = (road_light(yaw, 1.75 * 3 - offset),) if with_line else None
    inp = TeacherInput(image=IMG, camera=CAM, trajectory=Trajectory(xy, heading), speed=9.0,
                       lights=lights, objects=())
    res = RuleTeacher().annotate(inp)
    lab = labels.label_text('lane_action', res.lane_action), \
        labels.label_text('turn_action', res.turn_action)
    assert lab == ('none', 'none'), (xy.round(2).tolist(), res.future_action)


@pytest.mark.parametrize('sign, lane', [(1, 'change lane to the left'),
                                        (-1, 'change lane to the right')])
def test_a_lane_change_in_the_road_frame(sign, lane):
    """
    Label a lane change in the road frame of the stop line ahead.

    Half-way through a lane change the ego is already turned off the road: base_link y alone
    would point the other way; the stop line's road frame does not.
    """
    yaw = 0.18 * sign
    t = np.concatenate([[0.0], T])
    y = sign * W / 2 * (1 - np.cos(np.pi * (t + 1.5) / 4.5)) - sign * W / 2 * (
        1 - np.cos(np.pi * 1.5 / 4.5))
    road = np.stack([9.0 * t, y], 1)
    xy = in_base_link(road, yaw, 0.0)[1:]
    heading = np.arctan2(np.diff(y), 4.5) - yaw
    start_lateral = W * 1.5 - sign * W / 2 * (1 - np.cos(np.pi * 1.5 / 4.5))
    inp = TeacherInput(image=IMG, camera=CAM, trajectory=Trajectory(xy, heading), speed=9.0,
                       lights=(road_light(yaw, start_lateral),), objects=())
    res = RuleTeacher().annotate(inp)
    assert labels.label_text('lane_action', res.lane_action) == lane
    assert lane.split()[-1] in res.future_action


def test_a_stop_at_a_red_light():
    red = TrafficLightAhead(state=LightState.RED, stop_line=((18.0, 0.2), (18.0, -6.8)))
    res, lab = ask(braking(v0=9.0, decel=4.0), speed=9.0, lights=(red,), objects=())
    assert lab == ('stop', 'none', 'none')
    assert 'red' in res.reasoning and '15 m' in res.reasoning   # 18 m - the 3.3 m bonnet
