"""
The GPU decoder path (planner_node `decoder: nvjpeg`): views on tensors, the decoder itself.

The views of a (3, H, W) tensor go through the same camera_views as numpy images: same
intrinsics and poses, pixels within a few grey levels of the CPU resize, and the packaged
planner plans from them what it plans from the CPU decoder's views. NvJpegDecoder refuses a CPU
device and a missing torchvision by naming `decoder`. Where CUDA and torchvision exist (a GPU
machine), nvJPEG itself is checked: pixels, a corrupt frame in a set, PNG and raw images.
"""
import types

import numpy as np
import pytest
import torch
from vlmad_ros.bench.feeder import road_scene
from vlmad_ros.gpu_decode import NvJpegDecoder
from vlmad_ros.images import decode_jpeg, encode_jpeg, ImageConversionError, rgb_to_image_msg
from vlmad_ros.model.config import PlannerConfig
from vlmad_ros.planner import (camera_features, camera_views, features_from_parts, order_views,
                               Planner, ViewSpec)
from vlmad_ros.rig import load_rig
from vlmad_ros.types import EgoState

RIG = load_rig('nuscenes')
EGO = EgoState(speed=8.0, yaw_rate=0.0, accel=0.0)


def _frames():
    return [road_scene(1600, 900, seed=100 * i) for i in range(6)]


def _chw(rgb: np.ndarray, device='cpu') -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous().to(device)


def _jpeg_msg(rgb: np.ndarray):
    return types.SimpleNamespace(format='jpeg', data=encode_jpeg(rgb, 90))


def _gpu_decoder():
    if not torch.cuda.is_available():
        pytest.skip('needs CUDA')
    try:
        return NvJpegDecoder(torch.device('cuda'))
    except ValueError as err:
        pytest.skip(str(err))


@pytest.mark.parametrize('spec', [ViewSpec((192, 112)),
                                  ViewSpec((128, 72), 3.0, 'CAM_FRONT', 0.05)])
def test_tensor_views_match_numpy_views(spec):
    """Same calibration exactly; pixels within a few grey levels of PIL's resize."""
    cam = RIG['CAM_FRONT']
    rgb = road_scene(1600, 900, seed=3)
    ref = camera_views(cam, rgb, spec)
    got = camera_views(cam, _chw(rgb), spec)
    assert len(got) == len(ref) == (2 if spec.zoom else 1)
    for (img_r, k_r, t_r), (img_g, k_g, t_g) in zip(ref, got):
        assert torch.is_tensor(img_g) and img_g.dtype == torch.uint8
        assert tuple(img_g.shape) == img_r.shape
        np.testing.assert_array_equal(k_g, k_r)
        np.testing.assert_array_equal(t_g, t_r)
        diff = np.abs(img_g.numpy().astype(int) - img_r.astype(int))
        assert diff.mean() < 0.6 and diff.max() <= 12, (diff.mean(), diff.max())


def test_packaged_planner_plans_alike_from_full_size_tensor_views():
    """
    The GPU path's inputs (whole-frame decode, tensor resize) against the CPU decoder's.

    What is left between nvJPEG and this test is the IDCT's rounding; the device check
    (experiments/gpu_check_issue12.sh) compares nvJPEG itself.
    """
    planner = Planner.from_options()
    msgs = [_jpeg_msg(f) for f in _frames()]
    cpu_views = [planner.views(c, m) for c, m in zip(RIG.cameras, msgs)]
    full = [camera_views(c, _chw(decode_jpeg(m.data)), planner.view_spec)
            for c, m in zip(RIG.cameras, msgs)]
    a, _ = planner.plan_views(cpu_views, EGO, 2)
    b, _ = planner.plan_views(full, EGO, 2)
    assert np.abs(a.xy - b.xy).max() < 0.25, np.abs(a.xy - b.xy).max()
    assert np.abs(a.xy[-1]).max() > 1.0          # a plan that goes somewhere


def test_full_jpeg_decode_is_the_gpu_path_on_the_cpu():
    """
    jpeg_decode: full (the checkpoint's choice) decodes whole frames and resizes as on the GPU.

    Training and planner_node's CPU decoder then give a checkpoint for `decoder: nvjpeg` the
    same pixels as the GPU path, up to the IDCT's rounding; cached apart from 'dct' views.
    """
    cam = RIG['CAM_FRONT']
    msg = _jpeg_msg(road_scene(1600, 900, seed=5))
    full = ViewSpec((128, 72), 3.0, 'CAM_FRONT', 0.05, jpeg_decode='full')
    dct = ViewSpec((128, 72), 3.0, 'CAM_FRONT', 0.05)
    assert full.key() != dct.key() and full.key().endswith('-full')
    assert ViewSpec.of(PlannerConfig(jpeg_decode='full')).jpeg_decode == 'full'
    got = camera_features(cam, msg, full)
    want = camera_views(cam, _chw(decode_jpeg(msg.data, exact=True)), full)
    assert len(got) == len(want) == 2
    for g, w in zip(got, want):
        assert isinstance(g[0], np.ndarray) and g[0].flags.c_contiguous
        np.testing.assert_array_equal(g[0], w[0].numpy())
        np.testing.assert_array_equal(g[1], w[1])
    zoom_dct = camera_features(cam, msg, dct)[1][0]
    assert np.abs(zoom_dct.astype(int) - got[1][0].astype(int)).mean() > 0.5   # not the same
    with pytest.raises(ValueError, match='jpeg_decode'):
        PlannerConfig(jpeg_decode='gpu')


def test_features_stack_tensor_and_numpy_views_on_the_tensor_device():
    """A GPU-decoded set may hold a black numpy view of a missing camera (fill)."""
    spec = ViewSpec((64, 40))
    views = [camera_views(c, _chw(road_scene(1600, 900, i)), spec) for i, c in
             enumerate(RIG.cameras[:2])]
    views += [camera_views(c, road_scene(1600, 900, 9), spec) for c in RIG.cameras[2:]]
    feats = features_from_parts(order_views(views), EGO, 2)
    assert torch.is_tensor(feats['images']) and tuple(feats['images'].shape) == (6, 3, 40, 64)
    only_numpy = features_from_parts(order_views(
        [camera_views(c, road_scene(1600, 900, 9), spec) for c in RIG.cameras]), EGO, 2)
    assert isinstance(only_numpy['images'], np.ndarray)


def test_decoder_refuses_a_cpu_device_naming_the_parameter():
    with pytest.raises(ValueError, match=r'^decoder: nvjpeg .*device: cuda'):
        NvJpegDecoder(torch.device('cpu'))


def test_decoder_without_torchvision_names_the_parameter():
    try:
        import torchvision.io  # noqa: F401
        pytest.skip('torchvision imports here')
    except Exception:
        pass
    with pytest.raises(ValueError, match=r'^decoder: nvjpeg needs torchvision'):
        NvJpegDecoder(torch.device('cuda'))


def test_nvjpeg_pixels_match_libjpeg_turbo():
    gpu = _gpu_decoder()
    frames = _frames()
    out = gpu.decode([_jpeg_msg(f) for f in frames])
    for rgb, img in zip(frames, out):
        assert img.device.type == 'cuda' and tuple(img.shape) == (3, 900, 1600)
        ref = decode_jpeg(encode_jpeg(rgb, 90)).astype(int)
        diff = np.abs(img.permute(1, 2, 0).cpu().numpy().astype(int) - ref)
        assert diff.mean() < 1.5, diff.mean()


def test_nvjpeg_set_with_a_corrupt_png_and_raw_camera():
    """One bad JPEG fails only its camera; PNG and raw Images are decoded on the CPU."""
    gpu = _gpu_decoder()
    frames = _frames()
    msgs = [_jpeg_msg(f) for f in frames]
    msgs[1] = types.SimpleNamespace(format='jpeg', data=msgs[1].data[:2000])   # truncated
    msgs[2] = types.SimpleNamespace(format='jpeg', data=b'\xff\xd8 not a jpeg')
    from PIL import Image
    import io
    buf = io.BytesIO()
    Image.fromarray(frames[3]).save(buf, format='PNG')
    msgs[3] = types.SimpleNamespace(format='png', data=buf.getvalue())
    msgs[4] = rgb_to_image_msg(frames[4], 'bgr8', types.SimpleNamespace())
    spec = ViewSpec((192, 112))
    out = gpu.views(RIG.cameras, msgs, spec)
    assert isinstance(out[2], ImageConversionError) and out[2].reason == 'corrupt_jpeg'
    for i in (0, 3, 4, 5):
        assert isinstance(out[i], list) and out[i][0][0].device.type == 'cuda', i
        ref = camera_views(RIG.cameras[i], frames[i], spec)[0][0]
        assert np.abs(out[i][0][0].cpu().numpy().astype(int) - ref).mean() < 2.0
    # A truncated JPEG: nvJPEG either refuses it or fills the missing rows (as libjpeg does).
    assert isinstance(out[1], ImageConversionError) or out[1][0][0].shape == (3, 112, 192)


def test_nvjpeg_views_match_the_full_jpeg_decode_on_the_cpu():
    """A checkpoint trained with jpeg_decode: full sees nearly the same pixels on the GPU."""
    gpu = _gpu_decoder()
    spec = ViewSpec((128, 72), 3.0, 'CAM_FRONT', 0.05, jpeg_decode='full')
    msgs = [_jpeg_msg(f) for f in _frames()]
    for cam, msg, views in zip(RIG.cameras, msgs, gpu.views(RIG.cameras, msgs, spec)):
        for got, want in zip(views, camera_features(cam, msg, spec)):
            diff = np.abs(got[0].cpu().numpy().astype(int) - want[0].astype(int))
            assert diff.mean() < 1.0, (cam.name, diff.mean())


def test_packaged_planner_plans_alike_with_nvjpeg():
    gpu = _gpu_decoder()
    planner = Planner.from_options(device='cuda')
    msgs = [_jpeg_msg(f) for f in _frames()]
    a, _ = planner.plan_views([planner.views(c, m) for c, m in zip(RIG.cameras, msgs)], EGO, 2)
    b, _ = planner.plan_views(gpu.views(RIG.cameras, msgs, planner.view_spec), EGO, 2)
    assert np.abs(a.xy - b.xy).max() < 0.25, np.abs(a.xy - b.xy).max()


def test_cuda_graphs_plan_as_the_eager_model():
    """planner_node cuda_graphs: the replayed graph plans what the eager model plans."""
    gpu = _gpu_decoder()
    msgs = [_jpeg_msg(f) for f in _frames()]
    plans = []
    for graphs in (False, True):
        planner = Planner.from_options(device='cuda', cuda_graphs=graphs)
        views = gpu.views(RIG.cameras, msgs, planner.view_spec)
        for _ in range(3):                   # compile, record, replay
            traj, _ = planner.plan_views(views, EGO, 2)
        plans.append(traj.xy)
    assert np.abs(plans[0] - plans[1]).max() < 1e-3
