"""The VLM-AD prompt image: the 3 s future path as a red, anti-aliased, clipped line."""
import numpy as np
import pytest
from vlmad_ros.rig import load_rig
from vlmad_ros.teacher.overlay import default_line_width, draw_path, project_path, red_mask
from vlmad_ros.types import Trajectory

T = 0.5 * np.arange(1, 7)


@pytest.fixture(scope='module')
def front():
    return load_rig('nuscenes')['CAM_FRONT']


def grey(cam):
    return np.full((cam.height, cam.width, 3), 90, np.uint8)


def test_straight_path_is_red_below_the_horizon_and_centred(front):
    assert (front.width, front.height) == (1600, 900)
    out = draw_path(grey(front), front, Trajectory.from_xy(np.stack([8 * T, 0 * T], 1)))
    mask = red_mask(out)
    assert mask.sum() > 1000, 'the line must be clearly visible at 1600x900'
    rows, cols = np.nonzero(mask)
    assert rows.min() > front.cy, 'a ground path stays below the horizon'
    assert abs(np.median(cols) - front.cx) < 40, 'straight ahead projects near the centre'
    # Anti-aliased: partially covered pixels blend red into the background.
    edge = (out[..., 0] > 95) & (out[..., 0] < 245) & (out[..., 1] < 90)
    assert edge.sum() > 50
    # The input is not modified.
    assert red_mask(grey(front)).sum() == 0


def test_left_turn_bends_left(front):
    radius, v = 12.0, 6.0
    th = v * T / radius
    xy = np.stack([radius * np.sin(th), radius * (1 - np.cos(th))], 1)
    mask = red_mask(draw_path(grey(front), front, Trajectory.from_xy(xy)))
    cols = np.nonzero(mask)[1]
    assert mask.sum() > 500 and np.median(cols) < front.cx - 100


def test_points_behind_the_camera_are_clipped_not_wrapped(front):
    # Reversing: the whole path is behind the front camera; nothing may be drawn.
    back = Trajectory.from_xy(np.stack([-2 * T, 0 * T], 1))
    assert red_mask(draw_path(grey(front), front, back)).sum() == 0
    assert project_path(front, back) == []
    # A path starting behind the camera (base_link origin) and going far: pieces are inside.
    far = Trajectory.from_xy(np.stack([30 * T, 0 * T], 1))
    for line in project_path(front, far):
        assert np.all(line[:, 0] >= 0) and np.all(line[:, 0] <= front.width)
        assert np.all(line[:, 1] >= 0) and np.all(line[:, 1] <= front.height)


def test_small_image_uses_a_scaled_camera(front):
    cam = front.scaled(320, 180)
    out = draw_path(grey(cam), cam, Trajectory.from_xy(np.stack([8 * T, 0 * T], 1)))
    assert red_mask(out).sum() > 30
    assert default_line_width(320) == 2 and default_line_width(1600) == 8
    with pytest.raises(ValueError, match='camera is 1600x900'):
        draw_path(grey(cam), front, Trajectory.from_xy(np.stack([8 * T, 0 * T], 1)))
