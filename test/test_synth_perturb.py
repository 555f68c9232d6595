"""
Recovery perturbations in `vlmad synth`: the schedule, the Hermite lateral move, the bags.

A perturbed bag is checked against its own odometry (decoded by our reader) and against a
replay of the same world stepped here with the package's own perturb.apply, so the lateral
offset from the lane centre (not in the bag) can be followed through each recovery.
"""
import hashlib
import math
import pathlib

import numpy as np
import pytest
from vlmad_ros import topics
from vlmad_ros.bagschema import read_messages
from vlmad_ros.data.reader import read_samples
from vlmad_ros.synth import perturb
from vlmad_ros.synth.agents import DriverParams, LANE_CHANGE_TIME, Vehicle
from vlmad_ros.synth.perturb import Perturbation, PerturbConfig
from vlmad_ros.synth.recorder import (
    CAMERA_OFFSETS_S, record_scene, RecordConfig, scene_rng)
from vlmad_ros.synth.scenarios import make_world, SceneConfig

NS = 1_000_000_000
SEED, INDEX, DURATION, ODOM_HZ = 3, 0, 8.0, 20.0
CFG = RecordConfig(duration=DURATION, width=160, height=90, odom_hz=ODOM_HZ,
                   keyframe_images_only=True, perturb=PerturbConfig(per_keyframe=1.0),
                   scene=SceneConfig(scenario='cruise'))
PLAIN = RecordConfig(duration=DURATION, width=160, height=90, odom_hz=ODOM_HZ,
                     scene=SceneConfig(scenario='cruise'))


def _bag_file(summary):
    (f,) = pathlib.Path(summary['bag']).glob('*.mcap')
    return f


def _by_topic(summary):
    out = {}
    for topic, stamp, msg in read_messages(summary['bag']):
        out.setdefault(topic, []).append((stamp, msg))
    return out


def _t0_ns(cfg=CFG, index=INDEX):
    return int(cfg.start_time_s + 1000 * index) * NS


def _odom_poses(msgs):
    """(N, 4) t [s from scene start], x, y, yaw of the odometry."""
    rows = []
    for stamp, m in msgs:
        p, q = m.pose.pose.position, m.pose.pose.orientation
        rows.append((stamp, p.x, p.y, 2 * math.atan2(q.z, q.w)))
    out = np.array(rows, dtype=np.float64)
    out[:, 0] = (out[:, 0] - _t0_ns()) / NS
    return out


def _lateral_steps(poses):
    """Sideways part of each odometry step, in the frame of its mid heading [m] (N - 1,)."""
    d = np.diff(poses[:, 1:3], axis=0)
    mid = poses[:-1, 3] + 0.5 * np.angle(np.exp(1j * np.diff(poses[:, 3])))
    return -np.sin(mid) * d[:, 0] + np.cos(mid) * d[:, 1]


def _knocks():
    return perturb.schedule(CFG.perturb, np.random.default_rng([SEED, INDEX, 7]), DURATION,
                            CFG.keyframe_every / CFG.camera_hz)


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp('perturb')
    return {'perturbed': record_scene(root / 'p', SEED, INDEX, CFG),
            'plain': record_scene(root / 'plain', SEED, INDEX, PLAIN)}


# ----- config and schedule -----

@pytest.mark.parametrize('kwargs, field', [
    ({'per_keyframe': 1.5}, 'per_keyframe'), ({'per_keyframe': -0.1}, 'per_keyframe'),
    ({'min_gap_s': -1.0}, 'min_gap_s'), ({'speed_frac': float('nan')}, 'speed_frac'),
    ({'lateral_m': 0.1}, 'lateral_m'), ({'recover_s': (2.0, 1.0)}, 'recover_s'),
    ({'lead_s': (0.0, 0.3)}, 'lead_s')])
def test_perturb_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f'PerturbConfig.{field}'):
        PerturbConfig(**kwargs)
    assert not PerturbConfig().enabled and PerturbConfig(per_keyframe=0.1).enabled


def test_schedule_is_deterministic_bounded_and_spaced():
    cfg = PerturbConfig(per_keyframe=0.6, lateral_m=1.2, heading_rad=0.2, speed_frac=0.25)
    runs = [perturb.schedule(cfg, np.random.default_rng([9, k, 7]), 120.0, 0.5) for k in (0, 0, 1)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert perturb.schedule(PerturbConfig(), np.random.default_rng(0), 120.0, 0.5) == []
    events = runs[0] + runs[2]
    assert len(events) > 20
    for e in events:
        lead = -e.t % 0.5          # the knock comes lead_s before a keyframe
        assert cfg.lead_s[0] - 1e-9 <= lead <= cfg.lead_s[1] + 1e-9
        assert e.t >= cfg.start_after_s
        assert 0.25 <= abs(e.offset) <= cfg.lateral_m
        assert abs(e.heading) <= cfg.heading_rad
        assert 1 - cfg.speed_frac <= e.speed_factor <= 1 + cfg.speed_frac
        assert cfg.recover_s[0] <= e.recover_s <= cfg.recover_s[1]
    for run in runs:
        assert all(b.t - a.t >= cfg.min_gap_s for a, b in zip(run, run[1:]))
    assert {e.offset > 0 for e in events} == {True, False}     # both sides


def test_schedule_golden_for_the_benchmark_train_rate():
    """The train split's knocks (seed 1, scene 0): a change here changes the training data."""
    got = perturb.schedule(PerturbConfig(per_keyframe=0.12),
                           np.random.default_rng([1, 0, 7]), 20.0, 0.5)
    want = [(2.057484626148791, 0.25616224380261987, 0.14564363404246372,
             0.7787472968249095, 2.1093020295759137),
            (13.080908462251237, -0.3239028482904329, -0.14187290117447188,
             0.8425115737243565, 3.2594655573214295)]
    np.testing.assert_allclose([dataclass_tuple(e) for e in got], want, rtol=0, atol=1e-12)


def dataclass_tuple(e):
    return (e.t, e.offset, e.heading, e.speed_factor, e.recover_s)


def test_overlaps_future_is_the_half_open_3s_window():
    e = [Perturbation(t=5.0, offset=0.5, heading=0.0, speed_factor=1.0, recover_s=2.0)]
    assert perturb.overlaps_future(e, 2.0)            # exactly at the horizon: dropped
    assert perturb.overlaps_future(e, 4.5)
    assert not perturb.overlaps_future(e, 5.0)        # the knock is in its past
    assert not perturb.overlaps_future(e, 1.99)       # beyond 3 s
    assert not perturb.overlaps_future([], 1.0)
    assert perturb.overlaps_future(e, 3.5, horizon=1.5)
    assert not perturb.overlaps_future(e, 3.0, horizon=1.5)


# ----- the lateral move -----

def _bare_vehicle():
    return Vehicle(id='v', cls=0, length=4.5, width=1.9, height=1.5, colour=0, nodes=[],
                   lanes=[], params=DriverParams(), v=8.0)


@pytest.mark.parametrize('d0, v0, duration', [
    (3.5, 0.0, LANE_CHANGE_TIME), (-3.5, 0.0, LANE_CHANGE_TIME), (0.8, 1.2, 2.5),
    (-0.6, 0.4, 3.0)])
def test_hermite_move_starts_at_d0_v0_and_ends_on_the_centre_at_rest(d0, v0, duration):
    veh = _bare_vehicle()
    veh.start_lateral_move(d0, v0, duration)
    assert (veh.d, veh.v_lat, veh.lc_t) == (d0, v0, 0.0)
    dt = 0.001
    trace = [(0.0, veh.d, veh.v_lat)]
    while veh.lc_t >= 0:
        veh.advance(dt)
        trace.append((trace[-1][0] + dt, veh.d, veh.v_lat))
    t, d, v = np.array(trace).T
    assert t[-1] == pytest.approx(duration, abs=1.5 * dt)
    assert d[-1] == 0.0 and v[-1] == 0.0
    # v_lat is the derivative of d; smooth ends: lateral speed -> 0 at the end.
    np.testing.assert_allclose(np.gradient(d[:-1], t[:-1])[1:-1], v[1:-2], atol=2e-3)
    assert abs(v[-2]) < 0.01 and abs(d[-2]) < 1e-5
    # Closed form at half time: d0 / 2 + T v0 / 8.
    half = np.argmin(np.abs(t - duration / 2))
    assert d[half] == pytest.approx(d0 / 2 + duration * v0 / 8, abs=5e-3)
    if v0 == 0.0:   # a lane change: monotone, symmetric speed profile, zero speed at the start
        assert np.all(np.diff(np.abs(d)) <= 1e-12)
        assert abs(v[1]) < 0.01
        assert np.max(np.abs(v)) == pytest.approx(1.5 * abs(d0) / duration, rel=1e-3)


def test_a_lane_change_in_the_world_moves_exactly_one_lane_width():
    world = make_world(np.random.default_rng(1), SceneConfig(scenario='stopped_vehicle'))
    e, width = world.ego, world.town.cfg.lane_width
    before = None
    for _ in range(200):
        pose, lane = (e.x, e.y), e.lanes[e.leg]
        world.step(0.05)
        if e.lc_t >= 0:
            before = (pose, lane)
            break
    assert before is not None, 'the expert never changed lane'
    (x0, y0), lane0 = before
    assert abs(e.lanes[e.leg] - lane0) == 1
    # The pose before the change, seen from the new lane: exactly one lane width aside.
    _, lat, _ = e.path.project(np.array([[x0, y0]]), e.s - 5.0, e.s + 5.0)
    assert abs(float(lat[0])) == pytest.approx(width, abs=1e-6)
    # One step (0.05 s) into the move: d and v_lat on the Hermite from (width, 0) to (0, 0).
    u = 0.05 / LANE_CHANGE_TIME
    assert abs(e.d) == pytest.approx(width * (1 - 3 * u * u + 2 * u ** 3), abs=1e-9)
    assert abs(e.v_lat) == pytest.approx(6 * width * u * (1 - u) / LANE_CHANGE_TIME, abs=1e-9)
    speeds = []
    while e.lc_t >= 0:
        world.step(0.05)
        speeds.append(e.v_lat)
    assert e.d == 0.0 and e.v_lat == 0.0 and abs(speeds[-2]) < 0.05
    assert max(abs(s) for s in speeds) > 1.0          # it did move sideways in between


def test_apply_knocks_the_ego_and_refuses_when_slow_or_changing_lane():
    world = make_world(scene_rng(SEED, INDEX), SceneConfig(scenario='cruise'))
    for _ in range(40):
        world.step(0.05)
    e = world.ego
    v, h = e.v, e.path.pose_at(e.s)[2]
    event = Perturbation(t=world.t, offset=-0.7, heading=0.1, speed_factor=0.8, recover_s=3.0)
    assert e.v > 2.0 and perturb.apply(e, event, min_speed=2.0)
    assert e.d == pytest.approx(-0.7) and e.v == pytest.approx(0.8 * v)
    assert e.v_lat == pytest.approx(e.v * math.tan(0.1))
    assert math.remainder(e.yaw - h - 0.1, 2 * math.pi) == pytest.approx(0.0, abs=1e-9)
    assert e.lc_time == 3.0
    assert not perturb.apply(e, event, min_speed=2.0)           # already recovering
    slow = make_world(scene_rng(SEED, INDEX), SceneConfig(scenario='cruise')).ego
    assert not perturb.apply(slow, event, min_speed=slow.v + 1.0) and slow.d == 0.0


# ----- recorded bags -----

def test_perturbed_bag_has_no_keyframe_whose_future_holds_a_knock(bags):
    summary, knocks = bags['perturbed'], _knocks()
    assert summary['perturbations'] == len(knocks) >= 2
    msgs = _by_topic(summary)
    t0 = _t0_ns()
    kf = [(s - t0) / NS for s, _ in msgs[topics.KEYFRAME]]
    want = [k * 0.5 for k in range(int(DURATION * 2) + 1)
            if k * 0.5 <= DURATION - max(CAMERA_OFFSETS_S.values())
            and not perturb.overlaps_future(knocks, k * 0.5)]
    assert kf == pytest.approx(want, abs=1e-9) and len(kf) >= 3
    # Every knock is a sideways jump of the odometry; nothing else is.
    poses = _odom_poses(msgs[topics.ODOM])
    lat = _lateral_steps(poses)
    jumps = poses[1:, 0][np.abs(lat) > 0.1]
    assert len(jumps) == len(knocks)
    for t, e in zip(jumps, knocks):
        assert abs(t - e.t) <= 0.5 / ODOM_HZ + 1e-9
    assert np.all(np.abs(lat[np.abs(lat) <= 0.1]) < 0.05)
    # No keyframe's 3 s future contains a jump: neither in the odometry nor in the samples.
    for t in kf:
        window = (poses[1:, 0] > t + 1e-6) & (poses[1:, 0] <= t + 3.0 + 1e-6)
        assert np.all(np.abs(lat[window]) < 0.05), t
    samples = list(read_samples(summary['bag']))
    assert len(samples) >= 2
    for s in samples:
        xy = np.vstack([[0.0, 0.0], s.trajectory.xy])
        heading = np.concatenate([[0.0], s.trajectory.heading])
        poses_s = np.column_stack([np.zeros(7), xy, heading])
        assert np.all(np.abs(_lateral_steps(poses_s)) < 0.3), s.token


def test_recovery_returns_the_ego_to_its_lane_and_keyframes_record_it(bags):
    """Replay the scene with perturb.apply: the bag's odometry is that world, and |d| -> 0."""
    summary, knocks = bags['perturbed'], _knocks()
    world = make_world(scene_rng(SEED, INDEX), CFG.scene)
    dt = 1.0 / ODOM_HZ
    pending, trace = list(knocks), []
    for step in range(int(round(DURATION * ODOM_HZ)) + 1):
        if step > 0:
            world.step(dt)
        while pending and pending[0].t <= world.t + 0.5 * dt:
            assert perturb.apply(world.ego, pending.pop(0), CFG.perturb.min_speed)
        trace.append((world.t, world.ego.x, world.ego.y, world.ego.d))
    trace = np.array(trace)
    poses = _odom_poses(_by_topic(summary)[topics.ODOM])
    np.testing.assert_array_equal(poses[:, 1:3], trace[:, 1:3])
    t, d = trace[:, 0], trace[:, 3]
    stamps = [(s.stamp_ns - _t0_ns()) / NS for s in read_samples(summary['bag'])]
    recovering = 0
    for e in knocks:
        during = (t >= e.t - 0.5 * dt) & (t < e.t + e.recover_s - dt)
        after = (t >= e.t + e.recover_s + dt) & (t < e.t + e.recover_s + 0.5)
        assert abs(d[during][0]) == pytest.approx(abs(e.offset), abs=1e-9)
        assert np.all(d[after] == 0.0)
        # Keyframes inside the recovery, still off the lane centre, became samples.
        recovering += sum(1 for s in stamps if e.t < s < e.t + e.recover_s
                          and abs(np.interp(s, t, d)) > 0.1)
    assert recovering >= 1
    assert np.all(d[t < knocks[0].t - dt] == 0.0)


def test_keyframe_images_only_keeps_odometry_and_ground_truth_rates(bags):
    p, plain = _by_topic(bags['perturbed']), _by_topic(bags['plain'])
    t0 = _t0_ns()
    kf = [s for s, _ in p[topics.KEYFRAME]]
    for cam in CAMERA_OFFSETS_S:
        for topic in (topics.camera_image_topic(cam), topics.camera_info_topic(cam)):
            stamps = [s for s, _ in p[topic]]
            assert stamps == [k + int(round(CAMERA_OFFSETS_S[cam] * NS)) for k in kf], topic
            assert len(plain[topic]) == bags['plain']['frames'] > len(stamps)
    n_odom = int(round(DURATION * ODOM_HZ)) + 1
    for topic in (topics.ODOM, topics.TF):
        assert len(p[topic]) == len(plain[topic]) == n_odom
    for topic in (topics.OBJECTS, topics.COMMAND, topics.TRAFFIC_LIGHTS):
        assert [s for s, _ in p[topic]] == [s for s, _ in plain[topic]]
        assert len(p[topic]) == bags['perturbed']['frames']
    # Before the first knock the perturbed scene is the plain scene.
    first = _knocks()[0].t
    po, pl = _odom_poses(p[topics.ODOM]), _odom_poses(plain[topics.ODOM])
    before = po[:, 0] < first - 0.5 / ODOM_HZ
    assert before.sum() > 10
    np.testing.assert_array_equal(po[before], pl[before])
    assert not np.array_equal(po, pl)
    assert [s - t0 for s, _ in p[topics.KEYFRAME]][0] >= 0


def test_perturbed_recording_is_deterministic(bags, tmp_path):
    again = record_scene(tmp_path / 'again', SEED, INDEX, CFG)
    assert _bag_file(again).read_bytes() == _bag_file(bags['perturbed']).read_bytes()


def _message_digests(summary):
    """sha256 of (topic, log time, raw CDR) over images and over everything else."""
    from mcap.reader import make_reader
    images, rest = hashlib.sha256(), hashlib.sha256()
    with open(_bag_file(summary), 'rb') as f:
        for _, channel, m in make_reader(f).iter_messages():
            h = images if 'image' in channel.topic else rest
            h.update(channel.topic.encode() + m.log_time.to_bytes(8, 'little') + m.data)
    return rest.hexdigest(), images.hexdigest()


def test_perturb_off_records_the_same_bytes_as_before_perturbations_existed(tmp_path):
    """
    Golden: a lane-change scene recorded as before recovery perturbations existed.

    The digests are those of stopped_vehicle seed 4 as the code of commit ef86797^ recorded
    it; the non-image digest was re-taken once when the bags moved to REP 105 frames
    (Odometry and /tf in odom, a static map -> odom), the image digest never changed.
    Perturbations off, with any other knob, the bag must stay identical.
    """
    cfg = RecordConfig(duration=4.5, width=96, height=54, odom_hz=20.0,
                       scene=SceneConfig(scenario='stopped_vehicle'))
    off = RecordConfig(duration=4.5, width=96, height=54, odom_hz=20.0,
                       scene=SceneConfig(scenario='stopped_vehicle'),
                       perturb=PerturbConfig(per_keyframe=0.0, lateral_m=2.0, min_gap_s=1.0))
    a = record_scene(tmp_path / 'a', 4, 0, cfg)
    b = record_scene(tmp_path / 'b', 4, 0, off)
    assert a['perturbations'] == b['perturbations'] == 0
    assert _bag_file(a).read_bytes() == _bag_file(b).read_bytes()
    assert _message_digests(a) == (
        'a77b5a46ebf2a91e825954e3f95a25d0e495c980d6a4cccc28807c35f031544e',
        '34065e878aa566ef55cfac1e6d00c66ec256b1c901b8078c0557d1fd2fb8fc7b')


def _synth_args(*argv):
    import argparse
    from vlmad_ros.synth import cli
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_synth_flags_set_the_knock_sizes_and_default_to_the_benchmark_ones():
    from vlmad_ros.synth.cli import config_from_args
    assert config_from_args(_synth_args('--perturb', '0.12')).perturb == \
        PerturbConfig(per_keyframe=0.12)              # the train split's knocks, unchanged
    got = config_from_args(_synth_args(
        '--perturb', '0.15', '--perturb-lateral', '3', '--perturb-heading', '0.3',
        '--perturb-recover-s', '2.5', '4')).perturb
    assert got == PerturbConfig(per_keyframe=0.15, lateral_m=3.0, heading_rad=0.3,
                                recover_s=(2.5, 4.0))
    events = perturb.schedule(got, np.random.default_rng([4, 0, 7]), 400.0, 0.5)
    assert max(abs(e.offset) for e in events) > 2.0     # knocks beyond the default 1 m


@pytest.mark.parametrize('argv, flag', [
    (('--perturb', '1.5'), '--perturb'), (('--perturb-lateral', '0.1'), '--perturb-lateral'),
    (('--perturb-heading', '-0.1'), '--perturb-heading'),
    (('--perturb-recover-s', '3', '2'), '--perturb-recover-s')])
def test_vlmad_synth_refuses_a_bad_knock_naming_its_flag(argv, flag, tmp_path, capsys):
    from vlmad_ros.synth.cli import main
    assert main(_synth_args('--out', str(tmp_path / 'out'), *argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'vlmad synth: {flag}:'), err
    assert not (tmp_path / 'out').exists()          # nothing recorded
