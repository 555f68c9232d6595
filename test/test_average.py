"""`vlmad average`: the mean of several checkpoints of one model, and what it refuses."""
import subprocess

from helpers_vlmad import tiny_planner_config
import pytest
import torch
from vlmad_ros.model.average import average_checkpoints
from vlmad_ros.model.checkpoint import (CheckpointError, load_action_head, load_checkpoint,
                                        save_checkpoint)
from vlmad_ros.model.heads import ActionHead, VLMADConfig
from vlmad_ros.model.planner_model import build_model
from vlmad_ros.rig import load_rig


def seeded_checkpoint(path, seed, head=True, **cfg_kw):
    """Save a tiny camera planner (and action head) with weights drawn from `seed`."""
    torch.manual_seed(seed)
    cfg = tiny_planner_config(**cfg_kw)
    model = build_model(cfg)
    with torch.no_grad():               # batch-norm statistics differ between seeds too
        for name, buf in model.named_buffers():
            if buf.is_floating_point() and 'running' in name:
                buf.uniform_(0.5, 1.5)
    action = ActionHead(VLMADConfig(ego_dim=cfg.d_model, d_model=32, ffn_dim=64,
                                    num_layers=1)) if head else None
    rig = load_rig('nuscenes').scaled(cfg.image_width, cfg.image_height)
    return save_checkpoint(path, model, rig, extra={'seed': seed}, action_head=action)


def vlmad_average(*args):
    return subprocess.run(['vlmad', 'average', *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_the_soup_holds_the_mean_of_every_weight_and_loads_as_a_planner(tmp_path):
    paths = [seeded_checkpoint(tmp_path / f's{k}.pt', k) for k in range(3)]
    result = vlmad_average(*paths, '--out', tmp_path / 'soup.pt')
    assert result.returncode == 0, result.stderr
    assert 'mean of 3 checkpoints, with an action head' in result.stdout
    soup = load_checkpoint(tmp_path / 'soup.pt')
    members = [load_checkpoint(p) for p in paths]
    for key, value in soup.state_dict().items():
        stack = torch.stack([m.state_dict()[key].double() for m in members])
        if value.is_floating_point():
            assert torch.allclose(value.double(), stack.mean(0), atol=1e-6), key
            if 'running' in key:
                assert not torch.allclose(stack[0], stack[1]), key  # a mean of different ones
        else:
            assert torch.equal(value, members[0].state_dict()[key]), key
    heads = [load_action_head(p) for p in paths]
    for key, value in load_action_head(tmp_path / 'soup.pt').state_dict().items():
        mean = torch.stack([h.state_dict()[key].double() for h in heads]).mean(0)
        assert torch.allclose(value.double(), mean, atol=1e-6), key
    assert [m['seed'] for m in soup.checkpoint_extra['averaged_from']] == [0, 1, 2]
    assert soup.rig.to_dict() == members[0].rig.to_dict()


def test_an_action_head_missing_from_one_file_is_left_out(tmp_path):
    a = seeded_checkpoint(tmp_path / 'a.pt', 0)
    b = seeded_checkpoint(tmp_path / 'b.pt', 1, head=False)
    result = vlmad_average(a, b, '--out', tmp_path / 'soup.pt')
    assert result.returncode == 0, result.stderr
    assert 'without an action head' in result.stdout
    assert load_action_head(tmp_path / 'soup.pt') is None


def test_checkpoints_of_other_models_are_refused_by_name(tmp_path):
    a = seeded_checkpoint(tmp_path / 'a.pt', 0)
    wider = seeded_checkpoint(tmp_path / 'wider.pt', 1, d_model=64, ffn_dim=128)
    result = vlmad_average(a, wider, '--out', tmp_path / 'soup.pt')
    assert result.returncode == 2
    assert 'wider.pt describes another model' in result.stderr and 'config' in result.stderr
    assert not (tmp_path / 'soup.pt').exists()
    missing = vlmad_average(a, tmp_path / 'nope.pt', '--out', tmp_path / 'soup.pt')
    assert missing.returncode == 2 and 'nope.pt' in missing.stderr
    with pytest.raises(CheckpointError, match='at least two'):
        average_checkpoints([a])
