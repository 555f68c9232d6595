"""
The constant-velocity floor and the hard subset: closed forms, metrics, and `vlmad eval`.

The eval bags come from helpers_data (closed-form motion), so the expected scores follow from
the motion itself, not from the code under test.
"""
import json
import subprocess

import helpers_data as HD
import numpy as np
import pytest
import torch
from vlmad_ros import types as T
from vlmad_ros.data.reader import read_samples
from vlmad_ros.evaluation.baselines import (constant_acceleration_end, constant_velocity_plan,
                                            ConstantVelocityPlanner, HARD_CV_ERROR_M, is_hard,
                                            OFFSETS)
from vlmad_ros.evaluation.metrics import PlanningMetrics

TIMES = 0.5 * np.arange(1, 7)


def test_offsets_are_the_six_waypoint_times():
    np.testing.assert_allclose(OFFSETS, TIMES)
    assert HARD_CV_ERROR_M == 2.5        # golden: the hard subset's definition


@pytest.mark.parametrize('speed', [0.0, 4.0, 13.5])
def test_straight_plan_holds_the_speed_on_the_x_axis(speed):
    plan = constant_velocity_plan(speed, 0.0)
    assert plan.shape == (6, 2)
    np.testing.assert_allclose(plan, np.column_stack([speed * TIMES, np.zeros(6)]), atol=1e-12)
    # Below the yaw-rate threshold it is the straight line; just above, nearly so.
    np.testing.assert_allclose(constant_velocity_plan(speed, 5e-4), plan, atol=1e-12)
    near = constant_velocity_plan(speed, 1.01e-3)
    np.testing.assert_allclose(near[:, 0], plan[:, 0], atol=1e-3)
    np.testing.assert_allclose(near[:, 1], speed * 1.01e-3 * TIMES ** 2 / 2, rtol=1e-3,
                               atol=1e-9)


@pytest.mark.parametrize('speed, yaw_rate', [(6.0, 0.4), (10.0, -0.15), (3.0, 1.2)])
def test_arc_plan_is_the_circle_of_radius_v_over_w(speed, yaw_rate):
    plan = constant_velocity_plan(speed, yaw_rate)
    r = speed / yaw_rate
    centre = np.array([0.0, r])
    np.testing.assert_allclose(np.linalg.norm(plan - centre, axis=1), abs(r), rtol=1e-12)
    # Arc length speed * t: the chord from the origin subtends yaw_rate * t.
    chords = np.linalg.norm(plan, axis=1)
    np.testing.assert_allclose(chords, 2 * abs(r) * np.abs(np.sin(yaw_rate * TIMES / 2)),
                               rtol=1e-12)
    assert np.all(np.sign(plan[:, 1]) == np.sign(yaw_rate))        # left for positive w
    mirrored = constant_velocity_plan(speed, -yaw_rate)
    np.testing.assert_allclose(mirrored, plan * [1, -1], atol=1e-12)


def test_constant_acceleration_end_matches_closed_form_and_stops_at_zero():
    np.testing.assert_allclose(constant_acceleration_end(8.0, 0.0, -2.0), [15.0, 0.0],
                               atol=1e-9)                            # 8*3 - 3^2
    np.testing.assert_allclose(constant_acceleration_end(8.0, 0.0, -4.0), [8.0, 0.0],
                               atol=1e-3)                            # stops at 2 s: 8^2 / 8
    np.testing.assert_allclose(constant_acceleration_end(8.0, 0.1, 0.0),
                               constant_velocity_plan(8.0, 0.1)[-1], atol=1e-4)


def test_is_hard_thresholds_the_3s_miss_of_the_ego_state_at_2_5_m():
    cv = constant_velocity_plan(8.0, 0.1)
    assert not is_hard((8.0, 0.1, 0.0), cv)
    for miss, hard in ((2.4, False), (2.6, True)):
        gt = cv.copy()
        gt[-1] += miss * np.array([0.6, 0.8])
        assert is_hard((8.0, 0.1, 0.0), gt) is hard
        gt_early = cv.copy()
        gt_early[2] += miss * 5           # only the 3 s waypoint counts
        assert not is_hard((8.0, 0.1, 0.0), gt_early)
    braking = np.column_stack([8.0 * TIMES - 2 * TIMES ** 2, np.zeros(6)])   # 4 m/s^2
    assert not is_hard((8.0, 0.0, -4.0), braking)     # already braking: ego history says so
    assert is_hard((8.0, 0.0, 0.0), braking)          # starts to brake: misses by 16 m


def test_constant_velocity_planner_runs_a_batch_like_a_planner():
    planner = ConstantVelocityPlanner()
    ego = torch.tensor([[5.0, 0.0, 1.0], [7.0, 0.3, -2.0]])
    out = planner.run_batch({T.EGO: ego})
    assert out[T.TRAJ].shape == (2, 6, 2) and out[T.TRAJ].dtype == np.float32
    np.testing.assert_allclose(out[T.TRAJ][0], constant_velocity_plan(5.0, 0.0), rtol=1e-6)
    np.testing.assert_allclose(out[T.TRAJ][1], constant_velocity_plan(7.0, 0.3), rtol=1e-6)
    np.testing.assert_allclose(out[T.HEADING][0], 0.0)
    np.testing.assert_allclose(out[T.HEADING][1], 0.3 * TIMES, rtol=1e-6)
    assert 'constant velocity' in planner.describe()
    assert planner.config.kind == 'ego_mlp'


# ----- the hard subset in the metrics -----

def _metrics(rows):
    m = PlanningMetrics()
    boxes = np.full((6, 1, 5), np.nan)
    for offset, hard, scenario in rows:
        gt = constant_velocity_plan(8.0, 0.0)
        m.add(gt + [offset, 0.0], gt, boxes, scenario, hard)
    return m


def test_compute_hard_is_compute_on_the_hard_samples_only():
    rows = [(1.0, True, 'a'), (3.0, False, 'a'), (5.0, True, 'b'), (0.5, False, 'b')]
    m = _metrics(rows)
    hard = m.compute_hard()
    assert hard['samples'] == 2
    assert hard['l2']['at_horizon']['3s'] == pytest.approx(3.0)      # mean of 1 and 5
    assert hard == _metrics([r for r in rows if r[1]]).compute()
    assert m.compute()['samples'] == 4 and m.compute()['l2']['at_horizon']['3s'] == 2.375
    none = _metrics([(1.0, False, '')]).compute_hard()
    assert none['samples'] == 0 and np.isnan(none['l2']['at_horizon']['3s'])
    assert PlanningMetrics().compute_hard()['samples'] == 0


def test_hard_flags_survive_add_batch_merge_and_state():
    m = PlanningMetrics()
    gt = np.stack([constant_velocity_plan(6.0, 0.0)] * 3)
    boxes = np.full((3, 6, 1, 5), np.nan)
    m.add_batch(torch.from_numpy(gt + 1.0), gt, boxes, ['x', 'y', 'x'], [True, False, True])
    m.add_batch(gt, gt, boxes)                        # no flags: not hard
    assert m.hard == [True, False, True, False, False, False]
    other = _metrics([(2.0, True, 'z')])
    m.merge(other)
    assert m.hard[-1] is True and len(m) == 7 and m.compute_hard()['samples'] == 3
    back = PlanningMetrics.from_state(m.state())
    assert back.hard == m.hard and back.compute_hard() == m.compute_hard()
    assert back.by_scenario() == m.by_scenario()
    old = m.state()
    del old['hard']                                   # a state from before the hard flags
    assert PlanningMetrics.from_state(old).hard == [False] * 7


# ----- vlmad eval --baseline constant-velocity -----

@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    """Write an easy bag (gentle acceleration) and a hard one (1.5 m/s^2)."""
    root = tmp_path_factory.mktemp('eval_cv')
    HD.write_bag(root / 'bags' / 'easy', duration=5.0, image_size=(32, 18))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(HD, 'ACCEL', 1.5)
        HD.write_bag(root / 'bags' / 'hard', duration=5.0, image_size=(32, 18))
    return root


def _expected_ego_error(bag):
    """Return the ego state's extrapolation miss at 3 s per sample."""
    return np.array([np.linalg.norm(constant_acceleration_end(*s.ego.as_array())
                                    - s.trajectory.xy[-1]) for s in read_samples(bag)])


def _expected_3s_error(bag):
    """Constant velocity's miss at 3 s per sample, from the samples' ego state and future."""
    return np.array([np.linalg.norm(constant_velocity_plan(s.ego.speed, s.ego.yaw_rate)[-1]
                                    - s.trajectory.xy[-1]) for s in read_samples(bag)])


def test_eval_baseline_reports_all_and_hard_in_json(bags, tmp_path, ros_env):
    out = tmp_path / 'cv.json'
    proc = subprocess.run(['vlmad', 'eval', '--data', str(bags / 'bags'), '--baseline',
                           'constant-velocity', '--json', str(out), '--cache-dir',
                           str(tmp_path / 'cache')], env=ros_env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = proc.stdout
    assert '| constant-velocity |' in printed and '| constant-velocity, hard subset |' in printed
    res = json.loads(out.read_text())
    easy = _expected_3s_error(bags / 'bags' / 'easy')
    hard = _expected_3s_error(bags / 'bags' / 'hard')
    # Closed form: 0.5 a t^2 at 3 s is 2.25 m (easy) or 6.75 m (hard), give or take the turn.
    assert np.all(np.abs(easy - 2.25) < 0.3) and np.all(np.abs(hard - 6.75) < 0.5)
    assert np.all(easy < HARD_CV_ERROR_M) and np.all(hard > HARD_CV_ERROR_M)
    assert res['samples'] == len(easy) + len(hard) == 10
    # Both bags accelerate evenly: the ego state's own extrapolation predicts them, so the
    # hard subset (ego state, not constant velocity) counts only what that misses.
    misses = np.concatenate([_expected_ego_error(bags / 'bags' / n) for n in ('easy', 'hard')])
    assert res['hard']['samples'] == int(np.sum(misses > HARD_CV_ERROR_M))
    assert res['l2']['at_horizon']['3s'] == pytest.approx(
        np.concatenate([easy, hard]).mean(), abs=0.006)
    assert 'constant velocity' in res['source'] and '2.5 m' in res['hard_rule']
    assert 'acceleration' in res['hard_rule']
    assert res['by_scenario']['lead_vehicle_brakes']['samples'] == 10
