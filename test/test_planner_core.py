"""The ROS-free planner: feature builder, Planner object, pose maths and run-time helpers."""
import threading

import numpy as np
import pytest
import torch

from vlmad_ros import labels
from vlmad_ros import types as T
from vlmad_ros.images import decode_jpeg, encode_jpeg
from vlmad_ros.model import PlannerConfig, PlannerModel, save_checkpoint
from vlmad_ros.model.checkpoint import default_checkpoint
from vlmad_ros.model.heads import ActionHead, VLMADConfig
from vlmad_ros.planner import (blank_views, check_image, EgoStateEstimator, features_from_parts,
                               ImageSizeError, LatestWins, plan_poses, Planner, prepare_batch,
                               prepare_camera, prepare_features, resolve_device, RollingStats,
                               ViewSpec)
from vlmad_ros.rig import load_rig
from vlmad_ros.types import Command, EgoState, Explanation, Observation, Trajectory

pytestmark = pytest.mark.usefixtures('one_torch_thread')


SMALL = PlannerConfig(image_width=96, image_height=56, backbone_channels=(8, 16, 32),
                      backbone_blocks=(0, 0, 1), d_model=32, ffn_dim=64, decoder_layers=1)


def observation(size=(1600, 900), seed=0, rig='nuscenes'):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) for _ in range(6)]
    return Observation(images=images, rig=load_rig(rig), ego=EgoState(5.0, 0.1, 0.2),
                       command=Command.LEFT)


def test_features_at_model_resolution_with_scaled_intrinsics():
    obs = observation()
    f = prepare_features(obs, (192, 112))
    assert f[T.IMAGES].shape == (6, 3, 112, 192) and f[T.IMAGES].dtype == np.uint8
    cam = obs.rig.cameras[0]
    np.testing.assert_allclose(f[T.INTRINSICS][0][0, 0], cam.fx * 192 / 1600, rtol=1e-6)
    np.testing.assert_allclose(f[T.INTRINSICS][0][1, 2], cam.cy * 112 / 900, rtol=1e-6)
    np.testing.assert_allclose(f[T.CAM_TO_BASE][3], obs.rig.cameras[3].T_base_cam, atol=1e-6)
    assert f[T.COMMAND] == int(Command.LEFT)
    np.testing.assert_allclose(f[T.EGO], [5.0, 0.1, 0.2])


def test_reduced_dct_decode_gives_the_same_features_as_full_size():
    # The node decodes 1600x900 JPEGs at 1/8 scale (200x113); training may read full frames.
    cam = load_rig('nuscenes').cameras[0]
    y, x = np.mgrid[0:900, 0:1600]
    rgb = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    jpeg = encode_jpeg(rgb, 95)
    small = decode_jpeg(jpeg, (192, 112))
    assert small.shape[:2] == (113, 200)
    img_small, k_small, _ = prepare_camera(cam, small, (192, 112))
    img_full, k_full, _ = prepare_camera(cam, decode_jpeg(jpeg), (192, 112))
    np.testing.assert_array_equal(k_small, k_full)
    assert np.abs(img_small.astype(int) - img_full.astype(int)).mean() < 12


def test_wrong_image_size_is_rejected_by_name():
    cam = load_rig('nuscenes')['CAM_BACK']
    with pytest.raises(ImageSizeError, match='CAM_BACK.*640x480'):
        check_image(cam, np.zeros((480, 640, 3), np.uint8))
    with pytest.raises(ImageSizeError, match='uint8'):
        check_image(cam, np.zeros((900, 1600, 3), np.float32))
    check_image(cam, np.zeros((450, 800, 3), np.uint8))     # same frame at half size: fine


def test_blank_views_keep_the_calibration_of_a_real_image():
    rig = load_rig('nuscenes')
    cam = rig['CAM_FRONT']
    real = prepare_camera(cam, np.full((450, 800, 3), 90, np.uint8), (96, 56))
    blank = blank_views(cam, ViewSpec((96, 56)))
    assert len(blank) == 1 and blank[0][0].shape == (3, 56, 96) and not blank[0][0].any()
    np.testing.assert_allclose(blank[0][1], real[1])
    np.testing.assert_allclose(blank[0][2], real[2])
    zoomed = blank_views(cam, ViewSpec((96, 56), zoom=2.0, zoom_camera='CAM_FRONT'))
    assert len(zoomed) == 2 and not zoomed[1][0].any()


def test_node_path_and_training_path_build_identical_batches():
    obs = observation(size=(800, 450))
    training = prepare_features(obs, SMALL.image_size)
    parts = [prepare_camera(c, img, SMALL.image_size)
             for c, img in zip(obs.rig.cameras, obs.images)]
    node = features_from_parts(parts, obs.ego, obs.command)
    assert training.keys() == node.keys()
    for key in training:
        np.testing.assert_array_equal(training[key], node[key])


def test_planner_plans_observations():
    planner = Planner.random(SMALL)
    trajs = planner.plan_batch([observation(seed=1), observation(seed=2, rig='carla')])
    assert all(isinstance(t, Trajectory) and t.xy.shape == (6, 2) for t in trajs)
    assert np.all(np.isfinite(trajs[1].xy))
    assert planner.plan(observation(seed=1)).xy == pytest.approx(trajs[0].xy, abs=1e-4)


def test_batch_norm_folding_keeps_outputs(tmp_path):
    torch.manual_seed(0)
    model = PlannerModel(SMALL)
    model.train()
    batch = prepare_batch([observation(seed=3), observation(seed=4)], SMALL)
    for _ in range(3):        # give the batch norms non-trivial running statistics
        model(batch)
    model.eval()
    with torch.no_grad():
        want = model(batch)[T.TRAJ].numpy()
    got = Planner(model).run_batch(batch)[T.TRAJ]
    np.testing.assert_allclose(got, want, atol=1e-4)
    path = save_checkpoint(tmp_path / 'm.pt', model)
    np.testing.assert_allclose(Planner.from_checkpoint(path).run_batch(batch)[T.TRAJ], want,
                               atol=1e-4)


def test_explaining_planner_labels_equal_the_head_on_the_ego_feature(tmp_path):
    torch.manual_seed(0)
    model = PlannerModel(SMALL)
    model.train()
    obs = [observation(seed=5), observation(seed=6), observation(seed=7, rig='carla')]
    batch = prepare_batch(obs, SMALL)
    model(batch)                         # non-trivial batch-norm statistics (folded at load)
    model.eval()
    head = ActionHead(VLMADConfig(ego_dim=SMALL.d_model, d_model=32, ffn_dim=64, num_layers=1))
    with torch.no_grad():
        for clf in head.classifiers:    # sharper logits than the init: no near-ties
            clf.weight.mul_(20.0)
    head.eval()
    path = save_checkpoint(tmp_path / 'explain.pt', model, action_head=head)
    planner = Planner.from_checkpoint(path, explain=True)
    assert planner.explains and 'action head' in planner.describe()
    with torch.no_grad():               # the reference: the head module on the ego feature
        out = model(batch)
        want = [lg.softmax(-1).numpy() for lg in head(out[T.EGO_FEATURE])]
    got = planner.explain_batch(obs)
    assert len(got) == 3
    for i, (traj, expl) in enumerate(got):
        assert isinstance(traj, Trajectory) and isinstance(expl, Explanation)
        np.testing.assert_allclose(traj.xy, out[T.TRAJ][i].numpy(), atol=1e-4)
        for c, cat in enumerate(labels.LABEL_SETS):
            np.testing.assert_allclose(expl.probs[cat], want[c][i], atol=1e-4)
            assert expl.labels[cat] == int(np.argmax(want[c][i]))
            assert expl.text(cat) == labels.LABEL_SETS[cat][expl.labels[cat]]
    one_traj, one = planner.explain(obs[0])
    assert one.labels == got[0][1].labels
    # run_batch carries the probabilities only when explaining; planning is unchanged.
    plain = Planner.from_checkpoint(path)
    assert not plain.explains
    assert set(plain.run_batch(batch)) == {T.TRAJ, T.HEADING, T.EGO_FEATURE}
    np.testing.assert_allclose(plain.plan(obs[0]).xy, one_traj.xy, atol=1e-5)
    with pytest.raises(RuntimeError, match='explain=True'):
        plain.explain(obs[0])
    headless = save_checkpoint(tmp_path / 'plain.pt', model)
    with pytest.raises(ValueError, match='^explain: .*--keep-action-head'):
        Planner.from_checkpoint(headless, explain=True)
    assert Planner.random(SMALL, explain=True).explain(obs[0])[1].labels.keys() == set(
        labels.LABEL_SETS)


def test_from_options_refuses_without_a_checkpoint():
    if default_checkpoint() is not None:
        assert Planner.from_options().source == str(default_checkpoint())
        return
    with pytest.raises(FileNotFoundError, match='vlmad train.*allow_random_weights'):
        Planner.from_options()
    assert Planner.from_options(allow_random_weights=True).source == 'random weights'
    with pytest.raises(FileNotFoundError, match='checkpoint: file not found'):
        Planner.from_options(checkpoint='/nonexistent.pt')


def test_device_and_fp16_are_validated():
    assert resolve_device('auto').type in ('cpu', 'cuda')
    with pytest.raises(ValueError, match='device'):
        resolve_device('tpu')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='device'):
            resolve_device('cuda')
        with pytest.raises(ValueError, match='fp16'):
            Planner.random(SMALL, fp16=True)
    with pytest.raises(ValueError, match='^cuda_graphs: needs device: cuda'):
        Planner.random(SMALL, cuda_graphs=True)


def test_plan_poses_in_base_link_and_odometry_frame():
    traj = Trajectory.from_xy([[1.0 * k, 0.0] for k in range(1, 7)])
    poses = plan_poses(traj)
    np.testing.assert_allclose(poses[:, :2], traj.xy)
    np.testing.assert_allclose(poses[:, 3:], [[0, 0, 0, 1]] * 6, atol=1e-12)
    # Car at (10, 5) facing +y (yaw 90 deg): forward waypoints go up the y axis.
    yaw = np.pi / 2
    poses = plan_poses(traj, (10.0, 5.0, 0.0), (0, 0, np.sin(yaw / 2), np.cos(yaw / 2)))
    np.testing.assert_allclose(poses[:, 0], 10.0, atol=1e-9)
    np.testing.assert_allclose(poses[:, 1], 5.0 + np.arange(1, 7), atol=1e-9)
    np.testing.assert_allclose(poses[0, 3:], [0, 0, np.sin(yaw / 2), np.cos(yaw / 2)], atol=1e-9)


def test_ego_state_estimator_differences_speed():
    est = EgoStateEstimator(min_dt=0.1)
    states = [est.update(t * 0.02, 5.0 + 2.0 * t * 0.02, 0.1) for t in range(30)]
    assert states[0].accel == 0.0
    assert states[-1].accel == pytest.approx(2.0, rel=1e-6)
    assert est.update(0.0, 3.0, 0.0).accel == 0.0            # time went back: restart


def test_latest_wins_replaces_and_counts():
    slot = LatestWins()
    assert slot.put(1) is False
    assert slot.put(2) is True
    assert slot.take(0.01) == 2 and slot.take(0.01) is None
    assert slot.replaced == 1
    got = []
    t = threading.Thread(target=lambda: got.append(slot.take(2.0)))
    t.start()
    slot.put(3)
    t.join(2.0)
    assert got == [3]


def test_rolling_stats_percentiles():
    stats = RollingStats(size=100)
    for v in range(1000):
        stats.add(v)
    p50, p95 = stats.percentiles((50, 95))
    assert p50 == pytest.approx(949.5) and p95 == pytest.approx(994.05)
    assert np.isnan(RollingStats().percentiles((50,))[0])
