"""
`vlmad synth --dagger CKPT`: a planner drives windows of a scene, the expert takes over.

The bag is checked against its own odometry and keyframes: the planner really drove in its
windows (the odometry leaves the expert's plain recording of the same scene), every keyframe has
an expert-only future and past, and after each hand-over the expert brings the car back.
"""
import argparse
import math

import numpy as np
import pytest
import torch
from vlmad_ros import topics
from vlmad_ros.bagschema import read_messages
from vlmad_ros.model import build_model, PlannerConfig, save_checkpoint
from vlmad_ros.synth import dagger
from vlmad_ros.synth.agents import DriverParams, Vehicle
from vlmad_ros.synth.dagger import DaggerConfig
from vlmad_ros.synth.recorder import record_scene, RecordConfig
from vlmad_ros.synth.scenarios import SceneConfig

NS = 1_000_000_000
T0 = 1_700_000_000 * NS


def test_schedule_alternates_planner_and_expert_within_the_scene():
    cfg = DaggerConfig(checkpoint='x', learner_s=(2.0, 3.0), expert_s=(4.0, 5.0),
                       start_after_s=1.0)
    windows = dagger.schedule(cfg, np.random.default_rng(0), 30.0)
    assert windows[0][0] == 1.0 and len(windows) >= 3
    for a, b in windows:
        assert 2.0 <= b - a <= 3.0 or b == 30.0
    for (_, b), (a, _) in zip(windows, windows[1:]):
        assert 4.0 <= a - b <= 5.0
    assert windows == dagger.schedule(cfg, np.random.default_rng(0), 30.0)


@pytest.mark.parametrize('t_key, kept', [
    (0.5, False),     # its 3 s future reaches into the window [3, 5]
    (0.0, False),     # the window starts at the end of its (closed) 3 s future
    (-0.5, True),     # the future ends before the window
    (4.0, False),     # inside the window
    (5.1, False),     # 0.1 s after the hand-over, within the lead
    (5.3, True),      # after the lead, the next window starts at 12 > 8.3
    (9.0, False),     # its future reaches the next window
])
def test_keeps_wants_an_expert_only_future_and_recent_past(t_key, kept):
    windows = [[3.0, 5.0], [12.0, 14.0]]
    assert dagger.keeps(windows, t_key, lead_s=0.25) is kept


@pytest.mark.parametrize('kwargs, field', [
    ({'learner_s': (0.0, 1.0)}, 'learner_s'), ({'expert_s': (3.0, 2.0)}, 'expert_s'),
    ({'lead_s': -1.0}, 'lead_s'), ({'max_offset_m': math.nan}, 'max_offset_m')])
def test_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DaggerConfig(**kwargs)


def test_hand_over_starts_a_recovery_from_the_planners_pose():
    from vlmad_ros.synth.scenarios import make_world
    world = make_world(np.random.default_rng(1), SceneConfig(scenario='cruise'))
    for _ in range(40):
        world.step(0.05)
    e = world.ego
    assert isinstance(e, Vehicle) and isinstance(e.params, DriverParams)
    e.d, e.yaw = 1.2, e.yaw + 0.1           # where a drifting planner left it
    dagger.hand_over(e, 2.5)
    assert e.lc_t == 0.0 and e.lc_d0 == pytest.approx(1.2) and e.lc_v0 > 0
    offsets = []
    for _ in range(80):                     # 4 s of the expert
        world.step(0.05)
        offsets.append(abs(world.ego.d))
    assert max(offsets[:5]) > 1.0 and offsets[-1] < 0.05


@pytest.fixture(scope='module')
def recorded(tmp_path_factory):
    """One scene recorded plainly and with a random-weight planner driving its windows."""
    root = tmp_path_factory.mktemp('dagger')
    torch.manual_seed(0)
    model = build_model(PlannerConfig(image_width=32, image_height=24, zoom=2.0,
                                      backbone_channels=(8, 8, 8, 8), d_model=16, num_heads=2,
                                      ffn_dim=32, decoder_layers=1))
    ckpt = save_checkpoint(root / 'tiny.pt', model)
    common = {'duration': 10.0, 'width': 160, 'height': 90, 'odom_hz': 20.0,
              'keyframe_images_only': True, 'scene': SceneConfig(scenario='cruise')}
    cfg = DaggerConfig(checkpoint=str(ckpt), learner_s=(2.0, 2.0), expert_s=(5.0, 5.0),
                       render_width=160, render_height=90)
    plain = record_scene(root / 'plain', 4, 0, RecordConfig(**common))
    driven = record_scene(root / 'dagger', 4, 0, RecordConfig(dagger=cfg, **common))
    return plain, driven, cfg


def _odometry(summary):
    return {stamp: (m.pose.pose.position.x, m.pose.pose.position.y)
            for topic, stamp, m in read_messages(summary['bag']) if topic == topics.ODOM}


def _keyframe_times(summary):
    return [(stamp - T0) / NS for topic, stamp, _ in
            read_messages(summary['bag']) if topic == topics.KEYFRAME]


def test_the_planner_drives_its_windows_and_hands_over(recorded):
    plain, driven, cfg = recorded
    assert driven['learner_s'] >= 1.0 and driven['handovers'] >= 1   # windows may end early
    assert 'learner_s' not in plain
    a, b = _odometry(plain), _odometry(driven)
    assert a.keys() == b.keys()
    first_window_start = T0 + int(cfg.start_after_s * NS)     # scene index 0 starts at T0
    before = [s for s in a if s < first_window_start]
    after = [s for s in a if s > first_window_start + 2 * NS]
    # The expert's seconds before the first window are the plain recording's, to the bit.
    assert all(a[s] == b[s] for s in before)
    # A random planner does not drive like the expert.
    gap = max(math.dist(a[s], b[s]) for s in after)
    assert gap > 1.0, gap


def test_every_keyframe_has_an_expert_only_future_and_past(recorded):
    _, driven, cfg = recorded
    windows = dagger.schedule(cfg, np.random.default_rng([4, 0, dagger.DAGGER_STREAM]), 10.0)
    times = _keyframe_times(driven)
    assert times, 'no keyframe kept'
    for t in times:
        # Early window ends only shorten windows: the drawn schedule is the strictest test.
        assert not any(a <= t + 3.0 and t < a for a, _ in windows), t
    assert len(times) < len(_keyframe_times(recorded[0]))


def test_cli_names_a_missing_checkpoint(tmp_path, capsys):
    from vlmad_ros.synth import cli
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(['--out', str(tmp_path / 'x'), '--dagger',
                              str(tmp_path / 'missing.pt'), '--quiet'])
    assert cli.main(args) == 2
    assert '--dagger' in capsys.readouterr().err


def test_cli_names_a_bad_window_flag(tmp_path, capsys):
    from vlmad_ros.synth import cli
    (tmp_path / 'driver.pt').write_bytes(b'')
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(['--out', str(tmp_path / 'x'), '--dagger',
                              str(tmp_path / 'driver.pt'), '--dagger-expert-s', '5', '2',
                              '--quiet'])
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert '--dagger-expert-s' in err and 'DaggerConfig' not in err
