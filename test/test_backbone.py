"""ResNet backbones: torchvision's key layout, ImageNet files, checkpoints, a training step."""
import pytest
import torch

from vlmad_ros import types as T
from vlmad_ros.model import load_checkpoint, PlannerConfig, PlannerModel, planning_loss
from vlmad_ros.model import save_checkpoint
from vlmad_ros.model.planner_model import fuse_batch_norms
from vlmad_ros.model.resnet import ResNet

BN = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')


def _conv(name, c_out, c_in, k):
    return [(f'{name}.weight', (c_out, c_in, k, k))]


def _bn(name, c):
    return [(f'{name}.{p}', () if p == 'num_batches_tracked' else (c,)) for p in BN]


def expected_resnet18():
    """
    Keys and shapes of torchvision's resnet18 state_dict (fc aside), from the paper's table.

    Stem 7x7/64; four stages of two basic blocks (two 3x3 convs) at 64, 128, 256, 512 channels;
    the first block of stages 2-4 halves the size and projects its shortcut with a 1x1 conv + BN
    (`downsample.0`, `downsample.1`).
    """
    keys = _conv('conv1', 64, 3, 7) + _bn('bn1', 64)
    c_in = 64
    for stage, planes in enumerate((64, 128, 256, 512), start=1):
        for b in range(2):
            p = f'layer{stage}.{b}'
            keys += _conv(f'{p}.conv1', planes, c_in, 3) + _bn(f'{p}.bn1', planes)
            keys += _conv(f'{p}.conv2', planes, planes, 3) + _bn(f'{p}.bn2', planes)
            if b == 0 and stage > 1:
                keys += _conv(f'{p}.downsample.0', planes, c_in, 1)
                keys += _bn(f'{p}.downsample.1', planes)
            c_in = planes
    return keys


def torchvision_file(path, name='resnet18', seed=0, wrap=False):
    """Write a file laid out like torchvision's ImageNet download: body plus fc (1000 classes)."""
    torch.manual_seed(seed)
    net = ResNet(name)
    for t in net.state_dict().values():         # non-trivial BN statistics too
        if t.is_floating_point():
            t.copy_(torch.randn_like(t) * 0.1 + (1.0 if t.ndim == 1 else 0.0))
    state = dict(net.state_dict())
    state['fc.weight'] = torch.randn(1000, net.out_channels)
    state['fc.bias'] = torch.randn(1000)
    torch.save({'state_dict': state} if wrap else state, path)
    return state


def small_cfg(**kw):
    base = {'backbone': 'resnet18', 'image_width': 64, 'image_height': 64, 'd_model': 32,
            'num_heads': 2, 'ffn_dim': 64, 'decoder_layers': 1}
    base.update(kw)
    return PlannerConfig(**base)


def test_resnet18_keys_and_shapes_are_torchvision_s():
    got = [(k, tuple(v.shape)) for k, v in ResNet('resnet18').state_dict().items()]
    assert got == expected_resnet18()
    assert len(got) == 120          # torchvision's 122 state_dict entries less fc.weight/bias


@pytest.mark.parametrize('name, params', [
    # torchvision's documented parameter counts (11,689,512 / 21,797,672 / 25,557,032) less
    # the 1000-class fc layer (512 * 1000 + 1000, or 2048 * 1000 + 1000 for ResNet-50).
    ('resnet18', 11_689_512 - 513_000),
    ('resnet34', 21_797_672 - 513_000),
    ('resnet50', 25_557_032 - 2_049_000),
])
def test_parameter_counts_match_torchvision(name, params):
    net = ResNet(name)
    assert sum(p.numel() for p in net.parameters()) == params
    x = torch.zeros(1, 3, 100, 65)
    assert net.eval()(x).shape == (1, net.out_channels, 4, 3)    # ceil(H / 32), ceil(W / 32)


@pytest.mark.parametrize('wrap', [False, True])
def test_torchvision_file_loads_strictly_fc_ignored(tmp_path, wrap):
    path = tmp_path / 'resnet18-f37072fd.pth'
    state = torchvision_file(path, wrap=wrap)
    model = PlannerModel(small_cfg(backbone_weights=str(path)))
    body = model.image_encoder.body.state_dict()
    assert set(body) == set(state) - {'fc.weight', 'fc.bias'}
    for k, v in body.items():
        assert torch.equal(v, state[k]), k


def test_wrong_files_are_errors_naming_the_file(tmp_path):
    r50 = tmp_path / 'resnet50-11ad3fa6.pth'
    torchvision_file(r50, 'resnet50')
    with pytest.raises(ValueError, match='resnet50-11ad3fa6.pth.*resnet18.*missing'):
        PlannerModel(small_cfg(backbone_weights=str(r50)))
    missing = tmp_path / 'nowhere' / 'resnet18.pth'
    with pytest.raises(FileNotFoundError, match=f'backbone_weights.*{missing}'):
        PlannerModel(small_cfg(backbone_weights=str(missing)))
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint')
    with pytest.raises(ValueError, match='notes.pth cannot be read with weights_only'):
        PlannerModel(small_cfg(backbone_weights=str(text)))
    partial = tmp_path / 'partial.pth'
    state = torchvision_file(partial)
    del state['layer4.1.bn2.running_var']
    torch.save(state, partial)
    with pytest.raises(ValueError, match=r'partial.pth.*1 missing .*layer4\.1\.bn2\.running_var'):
        PlannerModel(small_cfg(backbone_weights=str(partial)))


def test_imagenet_weights_need_imagenet_normalisation(tmp_path):
    path = tmp_path / 'resnet18.pth'
    torchvision_file(path)
    with pytest.raises(ValueError, match='image_mean/image_std must be the ImageNet'):
        small_cfg(backbone_weights=str(path), image_mean=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match='backbone must be one of'):
        small_cfg(backbone='resnet101')
    with pytest.raises(ValueError, match='>= the backbone stride 32'):
        small_cfg(image_height=16)


def _batch(cfg, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.tensor([[40.0, 0, 32], [0, 40, 32], [0, 0, 1]])
    pose = torch.eye(4)
    pose[:3, :3] = torch.tensor([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])
    v = cfg.num_views
    return {
        T.IMAGES: torch.randint(0, 256, (b, v, 3, cfg.image_height, cfg.image_width),
                                generator=g, dtype=torch.uint8),
        T.INTRINSICS: k.expand(b, v, 3, 3).clone(),
        T.CAM_TO_BASE: pose.expand(b, v, 4, 4).clone(),
        T.EGO: torch.randn(b, 3, generator=g),
        T.COMMAND: torch.randint(0, 3, (b,), generator=g),
        T.TRAJ: torch.randn(b, 6, 2, generator=g) * 5,
        T.HEADING: torch.randn(b, 6, generator=g) * 0.1,
    }


def test_a_training_step_with_resnet18(tmp_path):
    path = tmp_path / 'resnet18.pth'
    torchvision_file(path)
    torch.manual_seed(0)
    model = PlannerModel(small_cfg(backbone_weights=str(path))).train()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = model.image_encoder.body.layer1[0].conv1.weight.detach().clone()
    batch = _batch(model.config)
    losses = []
    for _ in range(3):
        loss, _ = planning_loss(model(batch), batch)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert not torch.equal(before, model.image_encoder.body.layer1[0].conv1.weight)


@pytest.mark.parametrize('backbone', ['resnet18', 'resnet50'])
def test_checkpoint_rebuilds_the_backbone(tmp_path, backbone):
    path = tmp_path / f'{backbone}.pth'
    torchvision_file(path, backbone)
    torch.manual_seed(0)
    model = PlannerModel(small_cfg(backbone=backbone, backbone_weights=str(path))).eval()
    ckpt = save_checkpoint(tmp_path / 'planner.pt', model)
    path.unlink()                     # the checkpoint carries the weights, not the file name
    loaded = load_checkpoint(ckpt)
    assert loaded.config.backbone == backbone and loaded.config.backbone_weights == ''
    batch = _batch(model.config)
    with torch.no_grad():
        want, got = model(batch), loaded(batch)
        fused = fuse_batch_norms(loaded)(batch)
    assert torch.equal(want[T.TRAJ], got[T.TRAJ])
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.modules())
    assert (fused[T.TRAJ] - want[T.TRAJ]).abs().max() < 1e-3


def test_resolution_presets_build(repo_root):
    import yaml
    presets = sorted((repo_root / 'experiments' / 'presets').glob('*.yaml'))
    assert len(presets) == 3
    for path in presets:
        cfg = PlannerConfig(**yaml.safe_load(path.read_text())['model'])
        model = PlannerModel(cfg)
        h, w = model.feature_size((cfg.image_height, cfg.image_width))
        assert f'Feature map {w}x{h} per camera, {6 * w * h} tokens' in path.read_text(), path
