"""
The zoom view (digital telephoto of CAM_FRONT): its intrinsics, the view order, and one path.

Key property: a base_link point projects (Camera.project) into the zoom view's camera at the
pixel where it shows in the cropped image, at any decode scale; the dataset and the node
(Planner.views) produce the same arrays for the same message.
"""
import types

import helpers_data
import numpy as np
import pytest
from vlmad_ros import types as T
from vlmad_ros.data import dataset as D
from vlmad_ros.data.reader import read_samples, ReaderConfig
from vlmad_ros.images import encode_jpeg, resize_rgb
from vlmad_ros.model.config import PlannerConfig
from vlmad_ros.planner import (camera_features, camera_views, decode_size, ImageSizeError,
                               order_views, Planner, ViewSpec, zoom_view)
from vlmad_ros.rig import CAMERA_NAMES, load_rig

SIZE = (64, 40)
# Pixels of the 1600x900 CAM_FRONT inside its central 1/3 (so inside every zoom up to 3x),
# far enough apart not to blur into each other, and their ranges [m] ahead of the camera.
PIXELS = [(600.3, 350.2, 20.0), (1000.7, 350.9, 35.0), (800.1, 450.4, 12.0),
          (650.8, 560.6, 8.0), (950.2, 560.3, 50.0)]


def _points():
    """base_link points (x forward, y left, z up) that CAM_FRONT sees at PIXELS."""
    cam = load_rig('nuscenes')['CAM_FRONT']
    u, v, dist = np.array(PIXELS).T
    return np.asarray(cam.translation) + cam.pixel_rays(u, v) * dist[:, None]


POINTS = _points()


@pytest.fixture(scope='module')
def front():
    return load_rig('nuscenes')['CAM_FRONT']


def _dots(camera, points):
    """Draw one white pixel per point (its floor pixel); return the image and pixels."""
    img = np.zeros((camera.height, camera.width, 3), np.uint8)
    uv, depth = camera.project(points)
    assert np.all(depth > 0)
    px = np.floor(uv).astype(int)
    img[px[:, 1], px[:, 0]] = 255
    return img, px


# ----- configuration -----

@pytest.mark.parametrize('zoom', [0.0, 1.01, 2.0, 8.0])
def test_planner_config_zoom_accepts_off_or_1_to_8(zoom):
    cfg = PlannerConfig(zoom=zoom)
    assert cfg.num_views == 6 + (1 if zoom else 0)


@pytest.mark.parametrize('kwargs', [{'zoom': 1.0}, {'zoom': 0.5}, {'zoom': -2.0},
                                    {'zoom': 8.01}, {'zoom': 2.0, 'zoom_camera': 'CAM_TOP'},
                                    {'zoom_lift': 0.1}, {'zoom': 3.0, 'zoom_lift': -0.1},
                                    {'zoom': 3.0, 'zoom_lift': 0.34}])
def test_planner_config_zoom_rejects_the_rest(kwargs):
    with pytest.raises(ValueError, match='PlannerConfig.zoom'):
        PlannerConfig(**kwargs)


def test_view_spec_from_each_source_and_its_key():
    assert ViewSpec.of((64, 40)) == ViewSpec((64, 40))
    assert ViewSpec.of(PlannerConfig(image_width=64, image_height=40)).key() == '64x40'
    spec = ViewSpec.of(PlannerConfig(image_width=64, image_height=40, zoom=2.5))
    assert spec == ViewSpec((64, 40), 2.5, 'CAM_FRONT') and ViewSpec.of(spec) is spec
    assert spec.key() == '64x40+CAM_FRONTx2.5'         # golden: names cache folders
    assert ViewSpec((64, 40), 3.0, 'CAM_BACK').key() == '64x40+CAM_BACKx3'
    lifted = ViewSpec.of(PlannerConfig(image_width=64, image_height=40, zoom=3.0, zoom_lift=0.1))
    assert lifted == ViewSpec((64, 40), 3.0, 'CAM_FRONT', 0.1)
    assert lifted.key() == '64x40+CAM_FRONTx3up0.1'
    assert PlannerConfig(zoom=3.0, zoom_lift=1 / 3).zoom_lift == 1 / 3   # window at the top


def test_decode_size_grows_only_for_the_zoom_camera():
    assert decode_size('CAM_FRONT', ViewSpec(SIZE)) == SIZE
    assert decode_size('CAM_FRONT', ViewSpec(SIZE, 2.5, 'CAM_FRONT')) == (160, 100)
    assert decode_size('CAM_FRONT', ViewSpec((63, 41), 3.0, 'CAM_FRONT')) == (189, 123)
    assert decode_size('CAM_FRONT', ViewSpec(SIZE, 1.5, 'CAM_FRONT', 0.1)) == (96, 60)
    assert decode_size('CAM_BACK', ViewSpec(SIZE, 2.5, 'CAM_FRONT')) == SIZE


# ----- geometry -----

def test_cropped_camera_projects_points_shifted_by_the_window(front):
    crop = front.cropped(300, 200, 640, 360, 'W')
    assert (crop.name, crop.width, crop.height, crop.fx, crop.fy) == ('W', 640, 360, front.fx,
                                                                      front.fy)
    assert (crop.cx, crop.cy) == (front.cx - 300, front.cy - 200)
    np.testing.assert_array_equal(crop.T_base_cam, front.T_base_cam)
    full_uv, depth = front.project(POINTS)
    crop_uv, crop_depth = crop.project(POINTS)
    np.testing.assert_allclose(crop_uv, full_uv - [300, 200], atol=1e-9)
    np.testing.assert_array_equal(depth, crop_depth)
    assert front.cropped(0, 0, 10, 10).name == front.name


@pytest.mark.parametrize('size', [(1600, 900), (800, 450), (200, 113), (161, 91), (320, 180)])
@pytest.mark.parametrize('zoom, lift', [(2.0, 0.0), (3.0, 0.0), (2.7, 0.0), (3.0, 0.09),
                                        (2.0, 0.2)])
def test_zoom_view_intrinsics_are_exact_for_the_crop_at_any_decode_scale(front, size, zoom,
                                                                         lift):
    cam = front.scaled(*size)
    img, px = _dots(cam, POINTS)
    window, crop = zoom_view(front, img, zoom, lift)   # the rig camera, the decoded image
    h, w = img.shape[:2]
    assert (window.width, window.height) == (round(w / zoom), round(h / zoom))
    assert crop.shape == (window.height, window.width, 3)
    assert window.name == 'CAM_FRONT_ZOOM'
    x0, y0 = (w - window.width) // 2, (h - window.height) // 2 - round(lift * h)
    assert y0 >= 0
    np.testing.assert_array_equal(crop, img[y0:y0 + window.height, x0:x0 + window.width])
    uv, _ = window.project(POINTS)
    # Every point lands in the crop, on the very pixel that holds its dot.
    inside = np.all((uv >= 0) & (uv < [window.width, window.height]), axis=1)
    assert inside.all() if lift == 0 else inside.sum() >= 3
    for (u, v), (pu, pv) in zip(uv[inside], px[inside]):
        assert crop[int(np.floor(v)), int(np.floor(u))].max() == 255
        assert (int(np.floor(u)), int(np.floor(v))) == (pu - x0, pv - y0)
    ys, xs = np.nonzero(crop[..., 0])
    assert len(xs) == inside.sum()


def test_camera_views_add_the_zoom_view_at_model_resolution(front):
    img, _ = _dots(front.scaled(320, 180), POINTS)
    plain = camera_views(front, img, ViewSpec(SIZE))
    assert len(plain) == 1
    views = camera_views(front, img, ViewSpec(SIZE, 2.0, 'CAM_FRONT'))
    assert len(views) == 2
    np.testing.assert_array_equal(views[0][0], plain[0][0])
    window, crop = zoom_view(front, img, 2.0)
    image, k, cam_to_base = views[1]
    assert image.shape == (3, SIZE[1], SIZE[0]) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, resize_rgb(crop, SIZE).transpose(2, 0, 1))
    np.testing.assert_allclose(k, window.scaled(*SIZE).K, rtol=1e-6)
    np.testing.assert_allclose(cam_to_base, front.T_base_cam, atol=1e-6)
    # The zoom view magnifies: focal length (per model pixel) twice the whole frame's.
    assert k[0, 0] == pytest.approx(2 * views[0][1][0, 0], rel=0.02)
    back = load_rig('nuscenes')['CAM_BACK']
    assert len(camera_views(back, np.zeros((180, 320, 3), np.uint8),
                            ViewSpec(SIZE, 2.0, 'CAM_FRONT'))) == 1
    with pytest.raises(ImageSizeError):
        zoom_view(front, np.zeros((100, 100, 3), np.uint8), 2.0)


def test_lifted_zoom_view_is_the_window_above_the_centred_one(front):
    img = np.arange(180)[:, None, None].repeat(320, 1).repeat(3, 2).astype(np.uint8)
    centred, lifted = zoom_view(front, img, 3.0)[1], zoom_view(front, img, 3.0, 0.1)[1]
    assert centred[0, 0, 0] - lifted[0, 0, 0] == 18          # 0.1 of 180 rows higher
    top = zoom_view(front, img, 3.0, 0.5)[1]                  # clipped to the frame
    assert top[0, 0, 0] == 0 and top.shape == centred.shape


def test_order_views_puts_whole_frames_in_rig_order_then_the_zoom_view():
    per_camera = [[('a',)], [('b',), ('b-zoom',)], [('c',)]]
    assert order_views(per_camera) == [('a',), ('b',), ('c',), ('b-zoom',)]
    assert order_views([[('a',)], [('b',)]]) == [('a',), ('b',)]


def test_jpeg_path_zoom_view_sees_a_point_where_its_intrinsics_put_it(front):
    """Through JPEG and a reduced-DCT decode: blob centroids within 0.1 px of the projection."""
    cam = front.scaled(640, 360)
    img = np.full((360, 640, 3), 20, np.uint8)
    uv, _ = cam.project(POINTS)
    yy, xx = np.mgrid[0:360, 0:640] + 0.5        # pixel centres
    for u, v in uv:
        blob = np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 6.0 ** 2))
        img = np.maximum(img, (235 * blob).astype(np.uint8)[..., None])
    msg = types.SimpleNamespace(format='jpeg', data=encode_jpeg(img, 95))
    views = camera_features(front, msg, ViewSpec(SIZE, 2.0, 'CAM_FRONT'))
    image, k, cam_to_base = views[1]
    model_cam = front.with_intrinsics(SIZE[0], SIZE[1], k.ravel())
    puv, _ = model_cam.project(POINTS)
    gray = image.astype(np.float64).mean(0) - 20
    yy, xx = np.mgrid[0:SIZE[1], 0:SIZE[0]] + 0.5
    found = 0
    for u, v in puv:
        if not (4 <= u < SIZE[0] - 4 and 4 <= v < SIZE[1] - 4):
            continue
        win = (np.abs(xx - u) < 4) & (np.abs(yy - v) < 4)
        wgt = np.clip(gray * win, 0, None)
        cu, cv = (wgt * xx).sum() / wgt.sum(), (wgt * yy).sum() / wgt.sum()
        assert abs(cu - u) < 0.1 and abs(cv - v) < 0.1, (u, v, cu, cv)
        found += 1
    assert found == len(POINTS)


# ----- the dataset and the node read the same arrays -----

@pytest.fixture(scope='module')
def bag(tmp_path_factory):
    root = tmp_path_factory.mktemp('zoom')
    helpers_data.write_bag(root / 'bag', duration=4.0, image_size=(160, 90), noisy_images=True)
    return root


def test_dataset_and_planner_views_give_identical_arrays(bag, one_torch_thread):
    cfg = PlannerConfig(image_width=SIZE[0], image_height=SIZE[1], zoom=2.0,
                        backbone_channels=(8, 8, 8, 8), d_model=16, num_heads=2, ffn_dim=32)
    ds = D.BagDataset(bag / 'bag', cfg, cache_dir=bag / 'cache')
    planner = Planner.random(cfg)
    samples = list(read_samples(bag / 'bag'))
    assert len(ds) == len(samples) == 3
    for k, s in enumerate(samples):
        item = ds[k]
        assert item[T.IMAGES].shape == (cfg.num_views, 3, SIZE[1], SIZE[0])
        per_camera = [planner.views(cam, msg) for cam, msg in zip(s.rig.cameras, s.images)]
        parts = order_views(per_camera)
        np.testing.assert_array_equal(item[T.IMAGES].numpy(), np.stack([p[0] for p in parts]))
        np.testing.assert_array_equal(item[T.INTRINSICS].numpy(), np.stack([p[1] for p in parts]))
        np.testing.assert_array_equal(item[T.CAM_TO_BASE].numpy(),
                                      np.stack([p[2] for p in parts]))
        # The zoom view is the last one: CAM_FRONT's pose, a longer focal length.
        np.testing.assert_array_equal(item[T.CAM_TO_BASE][-1], item[T.CAM_TO_BASE][0])
        assert item[T.INTRINSICS][-1, 0, 0] > 1.9 * item[T.INTRINSICS][0, 0, 0]
    # The model takes the seven views.
    batch = D.collate([ds[0]])
    out = planner.run_batch({key: batch[key] for key in (T.IMAGES, T.INTRINSICS,
                                                         T.CAM_TO_BASE, T.EGO, T.COMMAND)})
    assert out[T.TRAJ].shape == (1, 6, 2) and np.isfinite(out[T.TRAJ]).all()


def test_cache_key_changes_with_the_zoom(bag):
    rc = ReaderConfig()
    key = D.cache_key(bag / 'bag', SIZE, rc)
    assert D.cache_key(bag / 'bag', PlannerConfig(image_width=64, image_height=40), rc) == key
    zoom2 = PlannerConfig(image_width=64, image_height=40, zoom=2.0)
    zoom3 = PlannerConfig(image_width=64, image_height=40, zoom=3.0)
    keys = {key, D.cache_key(bag / 'bag', zoom2, rc), D.cache_key(bag / 'bag', zoom3, rc),
            D.cache_key(bag / 'bag', ViewSpec(SIZE, 2.0, 'CAM_BACK'), rc)}
    assert len(keys) == 4
    assert list(CAMERA_NAMES)[0] == 'CAM_FRONT'
