"""VLM-AD heads: shapes, gradients, hand-computed losses, and checkpoints with and without them."""
import math

import helpers_vlmad as H
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from vlmad_ros import labels
from vlmad_ros import types as T
from vlmad_ros.model import (build_model, CheckpointError, has_action_head, load_action_head,
                             load_checkpoint, save_checkpoint)
from vlmad_ros.model.checkpoint import default_checkpoint
from vlmad_ros.model.heads import (
    action_loss, ActionHead, alignment_loss, AlignmentHead, light_state_loss, VLMADConfig,
    VLMADHeads)
from vlmad_ros.model.vlmad import VLMADModel


def test_head_shapes_and_gradients():
    torch.manual_seed(0)
    cfg = VLMADConfig(ego_dim=32)
    ego = torch.randn(5, 32, requires_grad=True)
    align = AlignmentHead(cfg)
    assert align(ego).shape == (5, 3, 384)
    action = ActionHead(cfg)
    assert [lg.shape for lg in action(ego)] == [(5, 4), (5, 4), (5, 5)]
    heads = VLMADHeads(cfg)
    batch = {T.TEXT_EMB: torch.randn(5, 3, 384), T.TEXT_VALID: torch.ones(5, dtype=torch.bool),
             T.ACTION_LABELS: torch.tensor([[0, 3, 4]] * 5)}
    loss, logs = heads(ego, batch)
    loss.backward()
    assert set(logs) >= {'align_loss', 'action_loss'}
    assert ego.grad is not None and ego.grad.abs().sum() > 0
    for name, p in heads.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert heads.alignment.decoder.queries.grad.abs().sum() > 0
    # The three queries give three different outputs from one ego feature.
    out = align(ego)
    assert not torch.allclose(out[:, 0], out[:, 1])


def test_alignment_loss_hand_computed():
    # Equal logits: both distributions uniform over 2 dims -> log 2 per text, 3 texts.
    z = torch.zeros(1, 3, 2)
    assert alignment_loss(z, z, torch.tensor([True])).item() == pytest.approx(3 * math.log(2))
    # teacher/0.04 = [ln 3, 0] -> p = [3/4, 1/4]; student/0.1 = [ln 4, 0] -> q = [4/5, 1/5].
    teacher = torch.tensor([0.04 * math.log(3), 0.0]).expand(1, 3, 2)
    student = torch.tensor([0.1 * math.log(4), 0.0]).expand(1, 3, 2)
    expect = -3 * (0.75 * math.log(0.8) + 0.25 * math.log(0.2))
    got = alignment_loss(student, teacher, torch.tensor([True]))
    assert got.item() == pytest.approx(expect, rel=1e-5)
    # A frame without a record does not count, whatever its values.
    s2 = torch.cat([student, torch.randn(1, 3, 2) * 50])
    t2 = torch.cat([teacher, torch.randn(1, 3, 2)])
    assert alignment_loss(s2, t2, torch.tensor([True, False])).item() == pytest.approx(
        expect, rel=1e-5)
    # Temperatures are parameters.
    got = alignment_loss(student * 2, teacher, torch.tensor([True]), student_temp=0.2)
    assert got.item() == pytest.approx(expect, rel=1e-5)


def test_action_loss_hand_computed_ignores_unknown_and_invalid():
    logits = (torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2, 5))
    y = torch.tensor([[0, labels.UNKNOWN, 4], [1, 2, labels.UNKNOWN]])
    # control: 2 frames, ln 4 each; turn: 1 frame, ln 4; lane: 1 frame, ln 5.
    got = action_loss(logits, y, torch.tensor([True, True]))
    assert got.item() == pytest.approx(2 * math.log(4) + math.log(5))
    # Second frame invalid: control 1 frame, turn none, lane 1 frame.
    got = action_loss(logits, y, torch.tensor([True, False]))
    assert got.item() == pytest.approx(math.log(4) + math.log(5))
    # A confident right answer costs ~0.
    sharp = (torch.tensor([[20.0, 0, 0, 0]]), torch.tensor([[0, 0, 0, 20.0]]),
             torch.tensor([[0, 0, 0, 0, 20.0]]))
    assert action_loss(sharp, torch.tensor([[0, 3, 4]]), torch.tensor([True])).item() < 1e-6


def test_weights_and_ablations():
    ego = torch.randn(3, 32)
    batch = {T.TEXT_EMB: torch.randn(3, 3, 384), T.TEXT_VALID: torch.ones(3, dtype=torch.bool),
             T.ACTION_LABELS: torch.tensor([[0, 3, 4]] * 3)}
    torch.manual_seed(1)
    heads = VLMADHeads(VLMADConfig(ego_dim=32))
    loss, logs = heads(ego, batch)
    assert loss.item() == pytest.approx(
        float(logs['align_loss'] + 0.1 * logs['action_loss']), rel=1e-5)
    q1 = VLMADHeads(VLMADConfig(ego_dim=32, action_weight=0.0))
    assert q1.action is None and q1.alignment is not None
    q2 = VLMADHeads(VLMADConfig(ego_dim=32, align_weight=0.0))
    assert q2.alignment is None and q2.action is not None
    assert 'align_loss' not in q2(ego, batch)[1]
    # No valid record in the batch: zero loss, still differentiable (DDP needs every param).
    batch[T.TEXT_VALID] = torch.zeros(3, dtype=torch.bool)
    loss, _ = heads(ego, batch)
    loss.backward()
    assert loss.item() == 0.0
    assert all(p.grad is not None for p in heads.parameters())


@pytest.mark.parametrize('field,value', [('num_heads', 0), ('d_model', 100), ('teacher_temp', 0),
                                         ('action_weight', -1.0), ('dropout', 1.0)])
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f'VLMADConfig.{field}'):
        VLMADConfig(**{field: value})


def test_exported_checkpoint_has_no_heads_and_inference_cost_is_unchanged(tmp_path):
    torch.manual_seed(0)
    cfg = H.tiny_planner_config()
    model = VLMADModel(build_model(cfg), VLMADConfig(ego_dim=cfg.d_model))
    batch = H.make_batch(cfg, batch_size=2)
    loss, logs = model(batch)
    loss.backward()
    assert {'loss_planning', 'align_loss', 'action_loss', 'loss'} <= set(logs)
    assert sum(p.numel() for p in model.heads.parameters()) > 0
    path = model.export(tmp_path / 'planner.pt')
    ckpt = torch.load(path, weights_only=True)
    assert not any(k.startswith(('heads', 'alignment', 'action')) for k in ckpt['state_dict'])
    assert set(ckpt['state_dict']) == set(build_model(cfg).state_dict())
    loaded = load_checkpoint(path)
    plain = build_model(cfg).eval()
    assert sum(p.numel() for p in loaded.parameters()) == sum(
        p.numel() for p in plain.parameters())

    def flops(m):
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            m(batch)
        return counter.get_total_flops()

    assert flops(loaded) == flops(plain) > 0
    model.eval()
    with torch.inference_mode():
        a = model.planner(batch)[T.TRAJ]
        b = loaded(batch)[T.TRAJ]
    assert torch.allclose(a, b, atol=1e-6)


def test_heads_width_must_match_planner():
    cfg = H.tiny_planner_config()
    with pytest.raises(ValueError, match='ego_dim'):
        VLMADModel(build_model(cfg), VLMADConfig(ego_dim=64))


def tiny_heads(cfg):
    """Heads as small as the tiny planner (sub-second CPU steps)."""
    return VLMADConfig(ego_dim=cfg.d_model, d_model=32, ffn_dim=64, num_layers=1)


def test_checkpoint_carries_the_action_head_only_when_asked(tmp_path):
    torch.manual_seed(0)
    cfg = H.tiny_planner_config()
    model = VLMADModel(build_model(cfg), tiny_heads(cfg))
    plain = model.export(tmp_path / 'plain.pt')
    kept = model.export(tmp_path / 'kept.pt', keep_action_head=True)
    # Default: planner only, exactly as before (a format-1 file any older reader accepts).
    assert 'action_head' not in torch.load(plain, weights_only=True)
    assert load_action_head(plain) is None and not has_action_head(plain)
    # Kept: the planner's weights are untouched, the head sits under its own key.
    ckpt = torch.load(kept, weights_only=True)
    assert ckpt['format_version'] == 1
    assert set(ckpt['state_dict']) == set(build_model(cfg).state_dict())
    assert set(ckpt['action_head']) == {'config', 'labels', 'state_dict'}
    assert not any(k.startswith('alignment') for k in ckpt['action_head']['state_dict'])
    a, b = load_checkpoint(plain), load_checkpoint(kept)
    assert type(a) is type(b) and a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    head = load_action_head(kept)
    assert isinstance(head, ActionHead) and not head.training and has_action_head(kept)
    assert head.config == model.heads_config
    model.eval()
    ego = torch.randn(3, cfg.d_model)
    with torch.no_grad():
        for x, y in zip(head(ego), model.heads.action(ego)):
            assert torch.equal(x, y)
    default = default_checkpoint()
    if default is not None:                       # the packaged (older) checkpoint still loads
        assert load_action_head(default) is None and load_checkpoint(default) is not None


def test_action_head_checkpoint_errors_name_the_problem(tmp_path):
    torch.manual_seed(0)
    cfg = H.tiny_planner_config()
    q1 = VLMADModel(build_model(cfg), VLMADConfig(ego_dim=cfg.d_model, action_weight=0.0))
    with pytest.raises(ValueError, match='keep_action_head'):
        q1.export(tmp_path / 'q1.pt', keep_action_head=True)
    with pytest.raises(ValueError, match='ego_dim'):
        save_checkpoint(tmp_path / 'x.pt', build_model(cfg), action_head=ActionHead(
            VLMADConfig(ego_dim=64)))
    model = VLMADModel(build_model(cfg), tiny_heads(cfg))
    path = model.export(tmp_path / 'kept.pt', keep_action_head=True)
    ckpt = torch.load(path, weights_only=True)

    def broken(change, match):
        bad = {**ckpt, 'action_head': dict(ckpt['action_head'])}
        change(bad['action_head'])
        torch.save(bad, tmp_path / 'bad.pt')
        with pytest.raises(CheckpointError, match=match):
            load_action_head(tmp_path / 'bad.pt')
        assert load_checkpoint(tmp_path / 'bad.pt') is not None     # the planner still loads

    broken(lambda h: h.update(labels=dict(h['labels'], control_action=['go', 'stop'])),
           'control_action')
    broken(lambda h: h.update(state_dict={k: v for k, v in h['state_dict'].items()
                                          if not k.startswith('classifiers.2')}),
           r'missing weights \[.classifiers.2')
    broken(lambda h: h.update(config=dict(h['config'], ego_dim=64)), 'ego_dim')
    broken(lambda h: h.update(config=dict(h['config'], colour=1)), 'colour')
    broken(lambda h: h.pop('labels'), 'labels')


def test_light_state_head_trains_the_ego_feature_and_never_ships(tmp_path):
    torch.manual_seed(0)
    cfg = H.tiny_planner_config()
    batch = H.make_batch(cfg, batch_size=4)
    batch[T.LIGHT_STATE] = torch.tensor([0, 1, 2, 3])
    plain = VLMADModel(build_model(cfg), None)
    assert plain.light_head is None and 'light_loss' not in plain(batch)[1]
    model = VLMADModel(build_model(cfg), None, light_weight=0.5)
    loss, logs = model(batch)
    logits = model.light_head(model.planner(batch)['ego_feature'])
    expected = torch.nn.functional.cross_entropy(logits, batch[T.LIGHT_STATE])
    assert logs['light_loss'] == pytest.approx(float(expected), rel=1e-5)
    assert float(loss) == pytest.approx(float(logs['loss_planning'] + 0.5 * expected), rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in model.light_head.parameters())
    # A state outside 0-3 costs nothing; the exported planner has no light head.
    assert float(light_state_loss(logits, torch.tensor([9, 9, 9, 9]))) == 0.0
    ckpt = torch.load(model.export(tmp_path / 'p.pt'), weights_only=True)
    assert set(ckpt['state_dict']) == set(build_model(cfg).state_dict())
