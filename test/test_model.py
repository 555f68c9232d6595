"""The planner model: shapes, camera rays, loss, checkpoints (both kinds) and their errors."""
import numpy as np
import pytest
import torch

from vlmad_ros import types as T
from vlmad_ros.model import (build_model, CheckpointError, EgoMLPPlanner, load_checkpoint,
                             PlannerConfig, PlannerModel, planning_loss, save_checkpoint)
from vlmad_ros.model.checkpoint import FORMAT_VERSION
from vlmad_ros.model.encoder import camera_rays, ImageEncoder
from vlmad_ros.rig import load_rig

pytestmark = pytest.mark.usefixtures('one_torch_thread')


SMALL = {'image_width': 64, 'image_height': 32, 'backbone_channels': (8, 16, 32),
         'backbone_blocks': (0, 1, 0), 'd_model': 32, 'num_heads': 4, 'decoder_layers': 1,
         'ffn_dim': 64}


def make_batch(cfg, b=2, rig='nuscenes', seed=0):
    g = torch.Generator().manual_seed(seed)
    r = load_rig(rig).scaled(cfg.image_width, cfg.image_height)
    return {
        T.IMAGES: torch.randint(0, 256, (b, 6, 3, cfg.image_height, cfg.image_width),
                                generator=g, dtype=torch.uint8),
        T.INTRINSICS: torch.tensor(np.stack([c.K for c in r.cameras]),
                                   dtype=torch.float32).expand(b, 6, 3, 3),
        T.CAM_TO_BASE: torch.tensor(np.stack([c.T_base_cam for c in r.cameras]),
                                    dtype=torch.float32).expand(b, 6, 4, 4),
        T.EGO: torch.tensor([[5.0, 0.1, 0.5]]).repeat(b, 1),
        T.COMMAND: torch.tensor([2, 0][:b] + [1] * max(0, b - 2)),
        T.TRAJ: torch.cumsum(torch.ones(b, 6, 2), dim=1),
        T.HEADING: torch.zeros(b, 6),
    }


def test_forward_shapes_and_ego_feature_dim():
    torch.manual_seed(0)
    cfg = PlannerConfig(**SMALL)
    out = PlannerModel(cfg)(make_batch(cfg))
    assert out[T.TRAJ].shape == (2, 6, 2)
    assert out[T.HEADING].shape == (2, 6)
    assert out['ego_feature'].shape == (2, cfg.d_model)
    assert torch.isfinite(out[T.TRAJ]).all()


def test_ego_mlp_has_the_same_interface():
    cfg = PlannerConfig(kind='ego_mlp', d_model=48, mlp_hidden=64)
    out = EgoMLPPlanner(cfg)(make_batch(PlannerConfig(**SMALL)))
    assert out[T.TRAJ].shape == (2, 6, 2) and out['ego_feature'].shape == (2, 48)


def test_loss_trains_all_parts():
    torch.manual_seed(0)
    cfg = PlannerConfig(**SMALL)
    model = PlannerModel(cfg)
    batch = make_batch(cfg)
    loss, parts = planning_loss(model(batch), batch, cfg.heading_loss_weight)
    assert set(parts) == {'loss_traj', 'loss_heading', 'loss_planning'}
    parts = {k: float(v) for k, v in parts.items()}      # detached tensors: no sync per step
    assert parts['loss_planning'] == pytest.approx(
        parts['loss_traj'] + cfg.heading_loss_weight * parts['loss_heading'], rel=1e-5)
    loss.backward()
    for name in ('image_encoder.body.0.0.weight', 'ray_encoding.mlp.0.weight',
                 'ego_embedding.command.weight', 'head.traj.2.weight'):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = float(loss.detach())
    for _ in range(12):
        loss, _ = planning_loss(model(batch), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first


def test_heading_loss_wraps_angles():
    out = {T.TRAJ: torch.zeros(1, 6, 2), T.HEADING: torch.full((1, 6), np.pi - 0.01)}
    batch = {T.TRAJ: torch.zeros(1, 6, 2), T.HEADING: torch.full((1, 6), -np.pi + 0.01)}
    _, parts = planning_loss(out, batch)
    assert float(parts['loss_heading']) == pytest.approx(0.02, abs=1e-4)


def test_camera_rays_match_the_rig():
    rig = load_rig('nuscenes')
    cam = rig['CAM_FRONT_LEFT']
    u, v = np.array([[10.0, 800.0]]), np.array([[20.0, 450.0]])
    want = cam.pixel_rays(u, v)                                      # (1, 2, 3)
    pix = torch.tensor(np.stack([u, v], axis=-1), dtype=torch.float32)   # (1, 2, 2)
    got = camera_rays(torch.tensor(cam.K, dtype=torch.float32)[None, None],
                      torch.tensor(cam.T_base_cam, dtype=torch.float32)[None, None], pix)
    np.testing.assert_allclose(got[0, 0].numpy(), want, atol=1e-5)
    # CAM_FRONT looks forward (+x), CAM_BACK backward: the encoding sees where cameras look.
    centre = torch.tensor([[[799.5, 449.5]]])
    for name, axis_sign in (('CAM_FRONT', 1), ('CAM_BACK', -1)):
        c = rig[name]
        ray = camera_rays(torch.tensor(c.K, dtype=torch.float32)[None, None],
                          torch.tensor(c.T_base_cam, dtype=torch.float32)[None, None], centre)
        assert float(ray[0, 0, 0, 0, 0]) * axis_sign > 0.95


def test_rig_change_changes_the_plan():
    torch.manual_seed(0)
    cfg = PlannerConfig(**SMALL)
    model = PlannerModel(cfg).eval()
    a = make_batch(cfg, rig='nuscenes')
    b = dict(a)
    b[T.CAM_TO_BASE] = torch.flip(a[T.CAM_TO_BASE], dims=[1])   # cameras swapped around
    with torch.no_grad():
        assert not torch.allclose(model(a)[T.TRAJ], model(b)[T.TRAJ])


@pytest.mark.parametrize('kind', ['camera', 'ego_mlp'])
def test_checkpoint_round_trip(tmp_path, kind):
    torch.manual_seed(1)
    cfg = PlannerConfig(kind=kind, **SMALL)
    model = PlannerModel(cfg) if kind == 'camera' else EgoMLPPlanner(cfg)
    model.eval()
    rig = load_rig('nuscenes')
    path = save_checkpoint(tmp_path / 'm.pt', model, rig=rig, extra={'epoch': 3})
    loaded = load_checkpoint(path)
    assert type(loaded) is type(model)
    assert loaded.config == cfg
    assert loaded.rig == rig and loaded.checkpoint_extra == {'epoch': 3}
    batch = make_batch(PlannerConfig(**SMALL))
    with torch.no_grad():
        for key in (T.TRAJ, T.HEADING, 'ego_feature'):
            torch.testing.assert_close(loaded(batch)[key], model(batch)[key])


def test_checkpoint_keeps_normalisation(tmp_path):
    cfg = PlannerConfig(image_mean=(0.5, 0.5, 0.5), image_std=(0.25, 0.5, 1.0), **SMALL)
    loaded = load_checkpoint(save_checkpoint(tmp_path / 'm.pt', PlannerModel(cfg)))
    assert loaded.config.image_std == (0.25, 0.5, 1.0)
    assert loaded.normalise.std.view(-1).tolist() == [0.25, 0.5, 1.0]


def _write(path, ckpt):
    torch.save(ckpt, path)
    return path


def test_checkpoint_errors_name_the_mismatch(tmp_path):
    cfg = PlannerConfig(**SMALL)
    good = tmp_path / 'good.pt'
    save_checkpoint(good, PlannerModel(cfg))
    ckpt = torch.load(good, weights_only=True)

    with pytest.raises(CheckpointError, match='not found'):
        load_checkpoint(tmp_path / 'nope.pt')
    with pytest.raises(CheckpointError, match='format_version 99'):
        load_checkpoint(_write(tmp_path / 'v.pt', {**ckpt, 'format_version': 99}))
    with pytest.raises(CheckpointError, match=r"missing key\(s\) \['normalization'\]"):
        load_checkpoint(_write(tmp_path / 'k.pt', {k: v for k, v in ckpt.items()
                                                   if k != 'normalization'}))
    bigger = dict(ckpt, config={**ckpt['config'], 'd_model': 64})
    with pytest.raises(CheckpointError, match='shape mismatch .*d_model|shape mismatch'):
        load_checkpoint(_write(tmp_path / 's.pt', bigger))
    unknown = dict(ckpt, config={**ckpt['config'], 'n_wheels': 4})
    with pytest.raises(CheckpointError, match='n_wheels'):
        load_checkpoint(_write(tmp_path / 'u.pt', unknown))
    renamed = dict(ckpt, state_dict={k.replace('head.', 'plan_head.'): v
                                     for k, v in ckpt['state_dict'].items()})
    with pytest.raises(CheckpointError, match=r'missing weights .*head\.traj.*unexpected weights'):
        load_checkpoint(_write(tmp_path / 'r.pt', renamed))
    # Arbitrary pickled objects are refused (weights_only=True).
    with pytest.raises(CheckpointError, match='weights_only'):
        load_checkpoint(_write(tmp_path / 'p.pt',
                               {**ckpt, 'extra': {'obj': CheckpointError('x')}}))
    with pytest.raises(CheckpointError, match='ego_mlp|kind'):
        load_checkpoint(_write(tmp_path / 'm.pt', dict(ckpt, kind='ego_mlp')))
    assert ckpt['format_version'] == FORMAT_VERSION


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match='kind'):
        PlannerConfig(kind='lidar')
    with pytest.raises(ValueError, match='num_heads'):
        PlannerConfig(d_model=30, num_heads=4)
    with pytest.raises(ValueError, match='backbone_blocks'):
        PlannerConfig(backbone_channels=(8, 16), backbone_blocks=(1,))
    with pytest.raises(ValueError, match='image_width'):
        PlannerConfig(image_width=8)
    with pytest.raises(ValueError, match='ego_scale'):
        PlannerConfig(ego_scale=(1.0, 0.0, 1.0))


def test_pretrained_backbone_from_file(tmp_path):
    torch.manual_seed(3)
    enc = ImageEncoder((8, 16, 32), (0, 1, 0), 32)
    torch.save(enc.state_dict(), tmp_path / 'backbone.pt')
    model = PlannerModel(PlannerConfig(backbone_weights=str(tmp_path / 'backbone.pt'), **SMALL))
    torch.testing.assert_close(model.image_encoder.state_dict(), enc.state_dict())
    torch.save(ImageEncoder((8, 16, 64), (0, 1, 0), 32).state_dict(), tmp_path / 'bad.pt')
    with pytest.raises(ValueError, match='backbone_weights.*shape mismatch'):
        PlannerModel(PlannerConfig(backbone_weights=str(tmp_path / 'bad.pt'), **SMALL))


@pytest.mark.parametrize('kind', ['camera', 'ego_mlp'])
def test_use_accel_false_ignores_the_acceleration_and_keeps_the_weights(tmp_path, kind):
    from vlmad_ros.model.vlmad import VLMADModel
    from vlmad_ros.training.train import init_planner
    extra = SMALL if kind == 'camera' else {'kind': 'ego_mlp', 'd_model': 32, 'mlp_hidden': 64}
    torch.manual_seed(0)
    with_accel = build_model(PlannerConfig(**extra))
    cfg = PlannerConfig(**extra, use_accel=False)
    batch = make_batch(PlannerConfig(**SMALL))
    braking = dict(batch, **{T.EGO: torch.tensor([[5.0, 0.1, -3.0]]).repeat(2, 1)})
    assert not torch.allclose(with_accel(batch)[T.TRAJ], with_accel(braking)[T.TRAJ])
    # Fine-tuning may start from a checkpoint that read the acceleration: same weights.
    path = save_checkpoint(tmp_path / 'a.pt', with_accel)
    model = VLMADModel(build_model(cfg))
    init_planner(model, path, cfg)
    plain = model.planner
    assert torch.equal(plain(batch)[T.TRAJ], plain(braking)[T.TRAJ])
    assert load_checkpoint(save_checkpoint(tmp_path / 'b.pt', plain)).config.use_accel is False
    with pytest.raises(ValueError, match='use_accel'):
        PlannerConfig(use_accel=False, ego_dim=2, ego_scale=(10.0, 0.5))


def test_ego_dropout_drops_the_ego_state_in_training_only(tmp_path):
    """Training: some samples plan without their speed; inference always reads it."""
    from vlmad_ros.model.vlmad import VLMADModel
    from vlmad_ros.training.train import init_planner
    torch.manual_seed(0)
    plain = build_model(PlannerConfig(**SMALL))
    cfg = PlannerConfig(**SMALL, ego_dropout=0.5)
    model = VLMADModel(build_model(cfg))
    init_planner(model, save_checkpoint(tmp_path / 'a.pt', plain), cfg)  # may differ on --init
    dropping = model.planner
    batch = make_batch(cfg, b=64)
    standing = dict(batch, **{T.EGO: torch.zeros(64, 3)})  # batch: 5 m/s
    dropping.eval()
    torch.testing.assert_close(dropping(batch)[T.TRAJ], plain.eval()(batch)[T.TRAJ])
    dropping.train()
    torch.manual_seed(1)
    moving_traj = dropping(batch)[T.TRAJ]
    torch.manual_seed(1)
    standing_traj = dropping(standing)[T.TRAJ]
    # The same draw drops the same samples: those plan alike whatever the speed, the rest not.
    same = (moving_traj - standing_traj).abs().flatten(1).amax(1) < 1e-6
    assert 10 < int(same.sum()) < 54
    with pytest.raises(ValueError, match='ego_dropout'):
        PlannerConfig(ego_dropout=1.0)
    with pytest.raises(ValueError, match='ego_dropout'):
        PlannerConfig(kind='ego_mlp', ego_dropout=0.2)


def test_init_may_move_the_zoom_window_but_not_change_the_views(tmp_path):
    """--init from a centred-zoom checkpoint into a lifted one: same weights, lift kept."""
    from vlmad_ros.model.vlmad import VLMADModel
    from vlmad_ros.training.train import init_planner
    centred = build_model(PlannerConfig(**dict(SMALL, zoom=3.0)))
    path = save_checkpoint(tmp_path / 'c.pt', centred)
    lifted = PlannerConfig(**dict(SMALL, zoom=3.0, zoom_lift=0.05))
    model = VLMADModel(build_model(lifted))
    init_planner(model, path, lifted)
    torch.testing.assert_close(model.planner.state_dict(), centred.state_dict())
    saved = load_checkpoint(save_checkpoint(tmp_path / 'l.pt', model.planner)).config
    assert saved.zoom_lift == 0.05
    with pytest.raises(ValueError, match='another model config.*zoom'):
        init_planner(VLMADModel(build_model(PlannerConfig(**dict(SMALL, zoom=2.0)))), path,
                     PlannerConfig(**dict(SMALL, zoom=2.0)))
