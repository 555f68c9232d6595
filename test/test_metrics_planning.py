"""Planning metrics (DESIGN section 5) on hand-made cases."""
import math

import numpy as np
import pytest
from vlmad_ros.evaluation import metrics as M


def straight(speed=5.0, y=0.0):
    """(6, 2) waypoints of constant speed along x, at lateral offset y."""
    t = 0.5 * np.arange(1, 7)
    return np.stack([speed * t, np.full(6, y)], axis=1)


def no_boxes():
    return np.full((6, 1, 5), np.nan)


def boxes_at(steps, box):
    """Place the same agent box at the given future steps, absent elsewhere."""
    out = np.full((6, 1, 5), np.nan)
    for k in steps:
        out[k, 0] = box
    return out


def test_offset_of_d_metres_gives_l2_d_under_both_protocols():
    gt = straight()
    for d in (0.0, 1.0, 2.5):
        m = M.PlanningMetrics()
        m.add(gt + np.array([0.0, d]), gt, no_boxes())
        res = m.compute()
        assert res['samples'] == 1
        for proto in M.PROTOCOLS:
            for key in ('1s', '2s', '3s'):
                assert res['l2'][proto][key] == pytest.approx(d)
                assert res['collision'][proto][key] == 0.0


def test_protocols_differ_as_defined():
    gt = straight()
    # Error grows by 1 m per step: steps 1..6 -> errors 1..6 m.
    pred = gt + np.stack([np.arange(1, 7), np.zeros(6)], axis=1)
    m = M.PlanningMetrics()
    m.add(pred, gt, no_boxes())
    res = m.compute()['l2']
    # UniAD: the value at t (1 s is step 2, 3 s is step 6).
    assert res['at_horizon'] == pytest.approx({'1s': 2.0, '2s': 4.0, '3s': 6.0})
    # ST-P3/VAD: mean over the steps up to t.
    assert res['avg_over_horizon'] == pytest.approx({'1s': 1.5, '2s': 2.5, '3s': 3.5})


def test_straight_path_through_a_box_collides():
    gt = straight(speed=10.0, y=5.0)          # the expert drove 5 m to the left
    pred = straight(speed=10.0, y=0.0)        # the planner goes straight ahead
    box = [15.0, 0.0, 4.0, 2.0, 0.3]          # a parked car at x = 15 m (step 3 is at x = 15)
    coll, counted = M.collisions(pred, gt, boxes_at(range(6), box))
    assert counted.all()
    assert coll.tolist() == [False, False, True, False, False, False]


def test_ego_box_geometry():
    # The ego reaches 4.084/2 - 0.5 = 1.542 m behind the waypoint: a box whose front edge
    # is at -1.6 m is clear (cells are tested at their centres, 0.5 m apart)...
    clear = np.array([[-2.6, 0.0, 2.0, 2.0, 0.0]])
    assert not M.ego_collides(M.occupancy_grid(clear), 0.0, 0.0, 0.0)
    # ...and in front it reaches 2.542 m: a box starting at +2.0 m is hit.
    front = np.array([[3.0, 0.0, 2.0, 2.0, 0.0]])
    assert M.ego_collides(M.occupancy_grid(front), 0.0, 0.0, 0.0)
    # Width 1.85 m: a box 1.6 m to the side (edge at 1.1 m) is clear, at 1.2 m (edge 0.7) hit.
    assert not M.ego_collides(M.occupancy_grid(np.array([[0.5, 1.6, 1.0, 1.0, 0.0]])), 0, 0, 0)
    assert M.ego_collides(M.occupancy_grid(np.array([[0.5, 1.2, 1.0, 1.0, 0.0]])), 0, 0, 0)


def test_heading_from_path_rotates_the_ego_box():
    # A box 2.2 m to the left of the waypoint: clear when driving along x (half width
    # 0.925), hit when the path turns to face +y (half length + shift reaches 2.542 m).
    grid = M.occupancy_grid(np.array([[0.0, 2.2, 0.6, 0.6, 0.0]]))
    assert not M.ego_collides(grid, 0.0, 0.0, 0.0)
    assert M.ego_collides(grid, 0.0, 0.0, math.pi / 2)
    assert M.path_headings(np.stack([np.zeros(6), np.arange(1, 7)], 1))[3] == pytest.approx(
        math.pi / 2)


def test_steps_where_ground_truth_collides_are_skipped():
    gt = straight()
    pred = straight()                          # identical: the planner did what the expert did
    box = [7.5, 0.0, 4.0, 2.0, 0.0]            # a box on the expert's own path at step 3
    coll, counted = M.collisions(pred, gt, boxes_at([2], box))
    assert counted.tolist() == [True, True, False, True, True, True]
    assert not coll.any()
    m = M.PlanningMetrics()
    m.add(pred, gt, boxes_at([2], box))
    # Another sample collides at step 3 while its ground truth is clear.
    m.add(straight(y=0.0), straight(y=6.0), boxes_at([2], box))
    res = m.compute()
    assert res['collision_steps_skipped'] == 1
    col = res['collision']
    # Step 3 (1.5 s) counts only the second sample: 100 %; other steps 0 %.
    assert col['at_horizon'] == pytest.approx({'1s': 0.0, '2s': 0.0, '3s': 0.0})
    assert col['avg_over_horizon']['2s'] == pytest.approx(100.0 / 4)
    assert col['avg_over_horizon']['3s'] == pytest.approx(100.0 / 6)


def test_collision_at_horizon_and_percent():
    box = [10.0, 0.0, 4.0, 2.0, 0.0]           # step 4 (2 s) of a 5 m/s straight path
    m = M.PlanningMetrics()
    m.add(straight(), straight(y=6.0), boxes_at([3], box))
    m.add(straight(y=6.0), straight(y=6.0), boxes_at([3], box))
    res = m.compute()['collision']
    assert res['at_horizon'] == pytest.approx({'1s': 0.0, '2s': 50.0, '3s': 0.0})
    assert res['avg_over_horizon'] == pytest.approx({'1s': 0.0, '2s': 12.5, '3s': 50.0 / 6})


def test_samples_without_full_future_are_skipped():
    m = M.PlanningMetrics()
    gt = straight()
    gt[5] = np.nan
    assert not m.add(straight(), gt, no_boxes())
    assert m.skipped == 1 and len(m) == 0
    assert m.compute()['samples'] == 0
    with pytest.raises(ValueError, match='pred_xy'):
        m.add(np.zeros((5, 2)), straight(), no_boxes())


def test_small_box_still_occupies_a_cell_and_outside_grid_ignored():
    grid = M.occupancy_grid(np.array([[3.0, 3.0, 0.3, 0.3, 0.7], [80.0, 0.0, 4.0, 2.0, 0.0]]))
    assert grid.sum() == 1
    assert M.occupancy_grid(np.full((3, 5), np.nan)).sum() == 0


def test_scenarios_batches_and_table():
    m = M.PlanningMetrics()
    gt = np.stack([straight(), straight()])
    pred = gt + np.array([0.0, 1.0])
    import torch
    m.add_batch(torch.as_tensor(pred), torch.as_tensor(gt), np.full((2, 6, 2, 5), np.nan),
                ['red_light', 'turn'])
    m2 = M.PlanningMetrics.from_state(m.state())
    m2.add(gt[0] + np.array([0.0, 3.0]), gt[0], no_boxes(), 'turn')
    per = m2.by_scenario()
    assert per['red_light']['l2']['at_horizon']['3s'] == pytest.approx(1.0)
    assert per['turn']['samples'] == 2
    assert per['turn']['l2']['at_horizon']['3s'] == pytest.approx(2.0)
    table = M.markdown_table({'all': m2.compute(), **per})
    assert table.count('\n') == 4 and '| turn | 2 |' in table
