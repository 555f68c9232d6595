"""
Planning metrics (DESIGN section 5) on hand-made cases.

The batched collision check is compared with the per-sample rasteriser it replaced (kept
here as the reference, `ref_collisions`); run this file to time both on a batch of 256.
"""
import math
import sys
import time

import numpy as np
import pytest
from vlmad_ros.evaluation import metrics as M
from vlmad_ros.types import Trajectory


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
    coll, counted = M.collisions(pred[None], gt[None], boxes_at(range(6), box)[None])
    assert counted.all()
    assert coll.tolist() == [[False, False, True, False, False, False]]


def test_ego_box_geometry():
    # The ego reaches 4.084/2 - 0.5 = 1.542 m behind the waypoint: a box whose front edge
    # is at -1.6 m is clear (cells are tested at their centres, 0.5 m apart)...
    assert not M.ego_hits(0.0, 0.0, 0.0, [[-2.6, 0.0, 2.0, 2.0, 0.0]])
    # ...and in front it reaches 2.542 m: a box starting at +2.0 m is hit.
    assert M.ego_hits(0.0, 0.0, 0.0, [[3.0, 0.0, 2.0, 2.0, 0.0]])
    # Width 1.85 m: a box 1.6 m to the side (edge at 1.1 m) is clear, at 1.2 m (edge 0.7) hit.
    assert not M.ego_hits(0.0, 0.0, 0.0, [[0.5, 1.6, 1.0, 1.0, 0.0]])
    assert M.ego_hits(0.0, 0.0, 0.0, [[0.5, 1.2, 1.0, 1.0, 0.0]])


def test_heading_from_path_rotates_the_ego_box():
    # A box 2.2 m to the left of the waypoint: clear when driving along x (half width
    # 0.925), hit when the path turns to face +y (half length + shift reaches 2.542 m).
    box = [[0.0, 2.2, 0.6, 0.6, 0.0]]
    assert not M.ego_hits(0.0, 0.0, 0.0, box)
    assert M.ego_hits(0.0, 0.0, math.pi / 2, box)
    assert M.path_headings(np.stack([np.zeros(6), np.arange(1, 7)], 1))[3] == pytest.approx(
        math.pi / 2)


def test_steps_where_ground_truth_collides_are_skipped():
    gt = straight()
    pred = straight()                          # identical: the planner did what the expert did
    box = [7.5, 0.0, 4.0, 2.0, 0.0]            # a box on the expert's own path at step 3
    coll, counted = M.collisions(pred[None], gt[None], boxes_at([2], box)[None])
    assert counted.tolist() == [[True, True, False, True, True, True]]
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
    # A 0.3 m box at (3, 3) holds no cell centre; its centre cell (centre (3.25, 3.25)) counts.
    # The ego's edge at y = 3.23 m is clear of the box itself (it reaches 3.21 m) but covers
    # that cell centre: a hit.
    small = [3.0, 3.0, 0.3, 0.3, 0.7]
    assert M.ego_hits(2.75, 3.23 + M.EGO_WIDTH / 2, 0.0, [small])
    assert not M.ego_hits(2.75, 3.26 + M.EGO_WIDTH / 2, 0.0, [small])
    far = [80.0, 0.0, 4.0, 2.0, 0.0]
    assert not M.ego_hits(78.0, 0.0, 0.0, [far])      # off the grid: neither is rasterised
    assert not M.ego_hits(0.0, 0.0, 0.0, np.full((3, 5), np.nan))


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


# ----- the reference: the per-sample rasteriser (one 200 x 200 grid per step) -----

def ref_box_cells(cx, cy, length, width, yaw):
    """Grid cells (M, 2) whose centres lie in the box, plus the centre's cell (on the grid)."""
    c, s = np.cos(yaw), np.sin(yaw)
    half = np.array([[length, width], [-length, width], [-length, -width], [length, -width]]) / 2
    corners = half @ np.array([[c, -s], [s, c]]).T + np.array([cx, cy])
    lo = np.clip(np.floor((corners.min(0) + M.GRID_HALF) / M.GRID_RES).astype(int), 0, 199)
    hi = np.clip(np.floor((corners.max(0) + M.GRID_HALF) / M.GRID_RES).astype(int), 0, 199)
    ix, iy = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing='ij')
    ix, iy = ix.ravel(), iy.ravel()
    px = -M.GRID_HALF + (ix + 0.5) * M.GRID_RES - cx
    py = -M.GRID_HALF + (iy + 0.5) * M.GRID_RES - cy
    u = c * px + s * py
    v = -s * px + c * py
    inside = (np.abs(u) <= length / 2) & (np.abs(v) <= width / 2)
    cells = np.stack([ix[inside], iy[inside]], axis=1)
    centre = np.floor((np.array([cx, cy]) + M.GRID_HALF) / M.GRID_RES).astype(int)
    if np.all((centre >= 0) & (centre < M.GRID_CELLS)):
        cells = np.vstack([cells, centre[None]])
    return cells


def ref_ego_collides(grid, x, y, heading):
    cells = ref_box_cells(x + M.EGO_CENTER_FORWARD * np.cos(heading),
                          y + M.EGO_CENTER_FORWARD * np.sin(heading),
                          M.EGO_LENGTH, M.EGO_WIDTH, heading)
    return bool(grid[cells[:, 0], cells[:, 1]].any()) if len(cells) else False


def ref_collisions(pred_xy, gt_xy, future_boxes):
    """(B, 6, 2), (B, 6, 2), (B, 6, N, 5) -> collide, counted (B, 6): one sample at a time."""
    collide = np.zeros(np.shape(gt_xy)[:2], dtype=bool)
    counted = np.ones_like(collide)
    for b, (pred, gt, boxes) in enumerate(zip(pred_xy, gt_xy, future_boxes)):
        pred_heading = Trajectory.from_xy(pred).heading
        gt_heading = Trajectory.from_xy(gt).heading
        for k in range(6):
            grid = np.zeros((M.GRID_CELLS, M.GRID_CELLS), dtype=bool)
            for box in boxes[k]:
                if np.all(np.isfinite(box)):
                    cells = ref_box_cells(*box)
                    grid[cells[:, 0], cells[:, 1]] = True
            if not grid.any():
                continue
            if ref_ego_collides(grid, gt[k, 0], gt[k, 1], gt_heading[k]):
                counted[b, k] = False
                continue
            collide[b, k] = ref_ego_collides(grid, pred[k, 0], pred[k, 1], pred_heading[k])
    return collide, counted


def random_case(rng, batch, agents, snap=False):
    """Curving expert paths, noisy plans, agents around them (30 % padding rows)."""
    t = 0.5 * np.arange(1, 7)
    speed, curve = rng.uniform(0, 12, (batch, 1)), rng.uniform(-0.4, 0.4, (batch, 1))
    gt = np.stack([speed * t * np.cos(curve * t), speed * t * np.sin(curve * t)], -1)
    gt[rng.random(batch) < 0.1] = 0.0                       # standing still
    pred = gt + rng.normal(0, 1.5, gt.shape)
    lows, highs = [-5, -8, 0.0, 0.0, -4], [40, 8, 8, 3, 4]
    boxes = rng.uniform(lows, highs, (batch, 6, agents, 5))
    if snap:       # poses on cell centres and edges, yaw in 45 degree steps: touching boxes
        gt, pred = np.round(gt * 4) / 4, np.round(pred * 4) / 4
        boxes[..., :4] = np.round(boxes[..., :4] * 4) / 4
        boxes[..., 4] = np.round(boxes[..., 4] / (np.pi / 4)) * (np.pi / 4)
    boxes[rng.random((batch, 6, agents)) < 0.3] = np.nan
    boxes[..., 0, 2] = np.where(rng.random((batch, 6)) < 0.1, np.nan, boxes[..., 0, 2])
    return pred, gt, boxes


@pytest.mark.parametrize('seed,snap', [(0, False), (1, False), (2, True), (3, True)])
def test_batched_collisions_equal_the_per_sample_reference(seed, snap):
    pred, gt, boxes = random_case(np.random.default_rng(seed), 48, 12, snap)
    collide, counted = M.collisions(pred, gt, boxes)
    ref = ref_collisions(pred, gt, boxes)
    assert collide.any() and not counted.all()       # the cases exercise both outcomes
    np.testing.assert_array_equal(collide, ref[0])
    np.testing.assert_array_equal(counted, ref[1])


def hand_made_cases():
    """Touching, rotated, tiny, off-grid, empty and padded boxes (B = 9, N = 3)."""
    gt = np.stack([straight(y=6.0)] * 9)
    pred = np.stack([straight(), straight(), straight(y=0.75 + M.EGO_WIDTH / 2), straight(),
                     np.stack([np.arange(1, 7), np.arange(1, 7)], 1) * 2.5, straight(),
                     straight(speed=40.0), np.zeros((6, 2)), straight()])
    boxes = np.full((9, 6, 3, 5), np.nan)
    # Rear edge 2 mm inside the ego's nose (2.542 m ahead), between cell centres: no hit.
    edge = 2.5 + 5.0 * 0.5 * np.arange(1, 7) + 0.04
    boxes[0, :, 0] = np.stack([edge + 1.0, np.zeros(6), np.full(6, 2.0), np.ones(6),
                               np.zeros(6)], 1)
    boxes[1, :, 0] = boxes[0, :, 0] - [0.29, 0, 0, 0, 0]    # edge on a cell centre: hit
    boxes[2, :, 0] = [[x, 0.25, 4.0, 1.0, 0.0] for x in 2.5 * np.arange(1, 7)]  # on edge
    boxes[3, :, 0] = [[x, 2.0, 4.0, 1.0, a] for x, a in zip(
        2.5 * np.arange(1, 7), np.pi / 4 * np.arange(6))]    # rotating next to the path
    boxes[4, :, 1] = [[2.5 * k + 2.0, 2.5 * k - 2.0, 3.0, 1.5, np.pi / 4] for k in range(1, 7)]
    boxes[5, :, 2] = [[2.5 * k + 3.0, 1.2, 0.2, 0.2, 0.7] for k in range(1, 7)]  # tiny
    boxes[6, :, :2] = [[50.0, 0.0, 6.0, 3.0, 0.0], [-50.0, 49.9, 1.0, 1.0, 0.3]]  # grid rim
    boxes[7, :, 0] = [0.5, 0.0, 4.0, 2.0, np.pi / 2]        # standing ego, its own spot
    boxes[8, :, 0, :4] = [7.5, 0.0, 4.0, 2.0]               # yaw missing: a padding row
    return pred, gt, boxes


def test_batched_collisions_equal_the_reference_on_hand_made_cases():
    pred, gt, boxes = hand_made_cases()
    collide, counted = M.collisions(pred, gt, boxes)
    ref = ref_collisions(pred, gt, boxes)
    np.testing.assert_array_equal(collide, ref[0])
    np.testing.assert_array_equal(counted, ref[1])
    assert not collide[0].any() and collide[1].all() and collide[2].all()
    assert collide[7].all() and not collide[8].any()
    empty = np.zeros((9, 6, 0, 5))
    assert not M.collisions(pred, gt, empty)[0].any() and M.collisions(pred, gt, empty)[1].all()
    assert M.collisions(pred[:0], gt[:0], boxes[:0])[0].shape == (0, 6)


def test_path_headings_are_trajectory_headings_batched():
    pred, gt, _ = random_case(np.random.default_rng(4), 32, 1)
    pred[3, 2:4] = pred[3, 1]                                # standing still mid-path
    for xy in (pred, gt):
        expect = np.stack([Trajectory.from_xy(one).heading for one in xy])
        np.testing.assert_array_equal(M.path_headings(xy), expect)


def bench(batch=256, agents=40, repeats=5):
    """Median seconds of the reference and of the batched check on one random batch."""
    pred, gt, boxes = random_case(np.random.default_rng(0), batch, agents)
    times = {'reference': [], 'batched': []}
    for _ in range(repeats):
        for name, fn in (('reference', ref_collisions), ('batched', M.collisions)):
            start = time.perf_counter()
            fn(pred, gt, boxes)
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


if __name__ == '__main__':
    args = [int(a) for a in sys.argv[1:]] + [256, 40, 5][len(sys.argv) - 1:]
    ref, new = bench(*args).values()
    print(f'B={args[0]}, N={args[1]} agent rows (30 % padding), median of {args[2]}: '
          f'reference {ref:.3f} s, batched {new:.4f} s, speed-up x{ref / new:.1f}')
