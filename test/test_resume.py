"""
Crashes mid-write, full disks and unreadable bags (issue 14, items 2 and 3).

Real processes (`python -m vlmad_ros.cli ...`) are SIGKILLed at seeded random moments while
they write real rosbag2/MCAP files; the same command is rerun after each kill. Every bag
that the listing (bag_paths) returns must then be complete (the keyframes of an uninterrupted
run, no more, no less); unfinished ones sit in `<name>.partial` and are skipped by name. The
full-disk test writes into a 2 MB tmpfs (root), or, where mounting is refused, under a 2 MB
RLIMIT_FSIZE (EFBIG instead of ENOSPC).
"""
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import helpers_data
import helpers_nuscenes
import numpy as np
import pytest
from vlmad_ros import topics
from vlmad_ros.bagschema import bag_paths, BagError, BagWriter, msg_class, read_messages
from vlmad_ros.data import nuscenes_converter, rosmsgs
from vlmad_ros.data.reader import read_bags, read_samples, ReadStats

SEED = 14
KILLS = 3
SYNTH = ['synth', '--scenes', '3', '--seed', '3', '--duration', '4', '--width', '96',
         '--height', '54', '--keyframe-images-only', '--odom-hz', '20', '--quiet']


def _cli(*args):
    return [sys.executable, '-m', 'vlmad_ros.cli', *map(str, args)]


def _run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


def _contents(out):
    """Bag name -> (keyframe stamps, reasoning stamps) of every bag the listing returns."""
    try:
        bags = bag_paths([out])
    except FileNotFoundError:
        return {}
    got = {}
    for bag in bags:
        kf, rs = [], []
        for topic, stamp, _ in read_messages(bag, topics=[topics.KEYFRAME, topics.REASONING]):
            (kf if topic == topics.KEYFRAME else rs).append(stamp)
        got[bag.name] = (kf, rs)
    return got


def _partials(out):
    return sorted(p.name for p in out.rglob('*.partial'))


def _kill_and_resume(cmd, out, reference, rng, sign_of_life, span_s):
    """SIGKILL `cmd` KILLS times at random moments, checking what it left; then finish it."""
    killed_mid_bag = 0
    for _ in range(KILLS):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not list(out.glob(sign_of_life)) and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, span_s))
        if proc.poll() is None:
            killed_mid_bag += bool(_partials(out))
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # What a kill leaves: complete bags only (a prefix of the reference set) and partials.
        left = _contents(out)
        assert set(left) <= set(reference)
        for name, content in left.items():
            assert content == reference[name], name
    done = _run(cmd)
    assert done.returncode == 0, done.stderr
    assert _contents(out) == reference
    assert not _partials(out)
    return killed_mid_bag


@pytest.fixture(scope='module')
def synth_ref(tmp_path_factory):
    out = tmp_path_factory.mktemp('synth_ref') / 'bags'
    started = time.monotonic()
    res = _run(_cli(*SYNTH, '--out', out))
    assert res.returncode == 0, res.stderr
    return out, _contents(out), time.monotonic() - started


def test_synth_killed_at_random_points_resumes_without_loss_or_duplicates(tmp_path, synth_ref):
    ref_out, reference, wall = synth_ref
    assert len(reference) == 3 and all(len(kf) >= 3 for kf, _ in reference.values())
    out = tmp_path / 'bags'
    rng = np.random.default_rng(SEED)
    # Sign of life: the first `.partial` bag; a scene takes about a third of the run.
    killed = _kill_and_resume(_cli(*SYNTH, '--out', out), out, reference, rng, '*.partial',
                              wall / 2)
    assert killed >= 1    # at least one kill hit a bag being written
    assert (out / 'synth-3-summary.json').read_text() == \
        (ref_out / 'synth-3-summary.json').read_text().replace(str(ref_out), str(out))


def test_synth_refuses_other_settings_and_foreign_bags(tmp_path, synth_ref):
    out = tmp_path / 'bags'
    shutil.copytree(synth_ref[0], out)
    other = _run(_cli(*[a if a != '4' else '5' for a in SYNTH], '--out', out))
    assert other.returncode == 2 and 'config.duration=4.0, now 5.0' in other.stderr
    (out / 'synth-3.journal.jsonl').unlink()    # bags of that name, not listed by a journal
    foreign = _run(_cli(*SYNTH, '--out', out))
    assert foreign.returncode == 2 and 'synth-3-0000 already exists' in foreign.stderr
    assert not (out / 'synth-3.journal.jsonl').exists()


@pytest.mark.parametrize('layout', ['sidecar', 'copy'])
def test_annotate_killed_at_random_points_resumes(tmp_path, synth_ref, layout):
    src = synth_ref[0]
    ref_out = tmp_path / 'ref'
    started = time.monotonic()
    ann = ['annotate', src, '--no-progress', '--concurrency', '1', '--layout', layout]
    res = _run(_cli(*ann, '--out', ref_out))
    assert res.returncode == 0, res.stderr
    wall = time.monotonic() - started
    reference = _contents(ref_out)
    assert len(reference) == 3 and all(rs and set(rs) <= set(kf) for kf, rs in reference.values())
    out = tmp_path / 'out'
    rng = np.random.default_rng(SEED + 1)
    _kill_and_resume(_cli(*ann, '--out', out), out, reference, rng, '*.journal.jsonl', wall)
    assert not list(out.glob('*.journal.jsonl'))


def test_convert_nuscenes_killed_at_random_points_resumes(tmp_path):
    pytest.importorskip('nuscenes')
    scenes = (('scene-0001', 2.0), ('scene-0002', 2.0), ('scene-0003', 2.0))
    ds = helpers_nuscenes.make_dataset(tmp_path / 'data', scenes=scenes)
    cmd = _cli('convert-nuscenes', '--dataroot', ds.root, '--version', helpers_nuscenes.VERSION,
               '--out')
    started = time.monotonic()
    nuscenes_converter.convert(ds.root, helpers_nuscenes.VERSION, tmp_path / 'ref',
                               verbose=False)
    wall = time.monotonic() - started + 4.0    # + a process start (imports, devkit tables)
    reference = _contents(tmp_path / 'ref')
    assert sorted(reference) == [s for s, _ in scenes]
    out = tmp_path / 'out'
    rng = np.random.default_rng(SEED + 2)
    _kill_and_resume(cmd + [out], out, reference, rng, '*.partial', wall / 3)
    journal = (out / 'convert-nuscenes.journal.jsonl').read_text().splitlines()
    assert sorted(json.loads(line)['bag'] for line in journal[1:]) == sorted(reference)


def test_killed_writer_leaves_a_partial_bag_that_listings_skip_by_name(tmp_path, capfd):
    """A BagWriter SIGKILLed mid-write: only `<name>.partial`, named and skipped, then redone."""
    code = ('import helpers_data, sys; helpers_data.write_bag(sys.argv[1], duration=30.0, '
            'image_size=(160, 90), noisy_images=True)')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    data = tmp_path / 'data'
    helpers_data.write_bag(data / 'good', duration=5.0)
    proc = subprocess.Popen([sys.executable, '-c', code, str(data / 'cut')], env=env)
    try:
        deadline = time.monotonic() + 60
        while sum(f.stat().st_size for f in (data / 'cut.partial').rglob('*.mcap')) < 2e6:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)    # chunks on disk, the bag not closed
    finally:
        proc.wait(timeout=30)
    assert not (data / 'cut').exists() and (data / 'cut.partial').is_dir()
    capfd.readouterr()
    assert [p.name for p in bag_paths([data])] == ['good']
    assert f'skipping {data / "cut.partial"}: an unfinished bag' in capfd.readouterr().err
    with pytest.raises(FileNotFoundError, match='unfinished bag'):
        bag_paths([data / 'cut.partial' / 'cut'])
    helpers_data.write_bag(data / 'cut', duration=5.0)      # the rerun replaces the leftover
    assert not (data / 'cut.partial').exists()
    assert [p.name for p in bag_paths([data])] == ['cut', 'good']


def test_exception_inside_the_writer_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with BagWriter(tmp_path / 'bag') as bag:
            bag.write(topics.TF, msg_class(rosmsgs.TF_MESSAGE)(transforms=[]), 1)
            raise KeyboardInterrupt
    assert not list(tmp_path.iterdir())


@pytest.fixture
def small_disk(tmp_path):
    """Give a 2 MB file system (tmpfs) if this process may mount one, else a 2 MB size limit."""
    disk = tmp_path / 'disk'
    disk.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', str(disk)],
        capture_output=True).returncode == 0
    if mounted:
        yield disk, None
        subprocess.run(['umount', '-l', str(disk)], check=True)
        return

    def limit():   # EFBIG on write instead of the default SIGXFSZ kill
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))
    yield disk, limit


def test_full_disk_stops_with_a_clear_error_and_nothing_half_written(small_disk, synth_ref):
    disk, limit = small_disk
    # Scenes of ~1.3 MB each (all camera frames): the first may fit, the second cannot.
    cmd = _cli('synth', '--scenes', '2', '--seed', '5', '--duration', '3', '--width', '160',
               '--height', '90', '--odom-hz', '20', '--quiet', '--out', disk / 'synth')
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert res.returncode == 1, res.stderr
    assert 'vlmad synth: cannot write' in res.stderr and 'Traceback' not in res.stderr
    assert ('No space left on device' if limit is None else 'File too large') in res.stderr
    assert not _partials(disk)
    for bag in bag_paths([disk]) if list(disk.rglob('metadata.yaml')) else []:
        assert (bag / 'metadata.yaml').is_file() and list(read_messages(bag))
    # annotate into the full disk: its own error, journal kept, no partial bag
    ann = subprocess.run(_cli('annotate', synth_ref[0], '--out', disk / 'ann', '--no-progress',
                              '--layout', 'copy'),   # a sidecar (kilobytes) would fit
                         capture_output=True, text=True, timeout=120, preexec_fn=limit)
    if ann.returncode != 0:
        assert ann.returncode == 5 and 'vlmad annotate: error: cannot write' in ann.stderr
        assert 'Traceback' not in ann.stderr
    assert not _partials(disk)


# ----- unreadable bags: named, skipped, no traceback -----

def _bag_without_odometry(path):
    """Write a drive bag whose /odom topic is missing."""
    full = path.parent / f'{path.name}-full'
    helpers_data.write_bag(full, duration=5.0)
    types = _types(full)
    with BagWriter(path) as bag:
        for topic, stamp, data in read_messages(full, raw=True):
            if topic != topics.ODOM:
                bag.add_topic(topic, types[topic])
                bag.write_raw(topic, bytes(data), stamp)
    shutil.rmtree(full)


def _types(bag):
    from vlmad_ros.bagschema import topic_types
    return topic_types(bag)


def _bag_with_wrong_definition(path):
    """Write /vlmad/keyframe declared as Keyframe but holding bytes of another message."""
    full = path.parent / f'{path.name}-full'
    helpers_data.write_bag(full, duration=5.0)
    other = msg_class('std_msgs/msg/String')(data='not a keyframe')
    types = _types(full)
    with BagWriter(path) as bag:
        for topic, stamp, data in read_messages(full, raw=True):
            bag.add_topic(topic, types[topic])
            if topic == topics.KEYFRAME:
                data = bag._store.serialize_cdr(other, 'std_msgs/msg/String')
            bag.write_raw(topic, bytes(data), stamp)
    shutil.rmtree(full)


def test_missing_topic_and_wrong_definition_are_named_and_skipped(tmp_path, capfd):
    data = tmp_path / 'data'
    helpers_data.write_bag(data / 'a_good', duration=5.0)
    _bag_without_odometry(data / 'b_no_odom')
    _bag_with_wrong_definition(data / 'c_wrong_def')
    with pytest.raises(BagError, match=r'b_no_odom: no topic /odom'):
        list(read_samples(data / 'b_no_odom'))
    with pytest.raises(BagError, match=r'c_wrong_def: /vlmad/keyframe does not decode as '
                                       r'vlmad_ros/msg/Keyframe'):
        list(read_samples(data / 'c_wrong_def'))
    stats = ReadStats()
    capfd.readouterr()
    got = list(read_bags(bag_paths([data]), stats=stats))
    assert len(got) == 5 and {s.scene for s in got} == {got[0].scene}
    err = capfd.readouterr().err
    assert 'skipping bag' in err and 'b_no_odom: no topic /odom' in err
    assert 'c_wrong_def: /vlmad/keyframe does not decode' in err
    assert len(stats.skipped_bags) == 2


def test_truncated_mcap_is_named(tmp_path, capfd):
    path = tmp_path / 'bag'
    helpers_data.write_bag(path, duration=8.0, image_size=(160, 90), noisy_images=True)
    (mcap,) = path.glob('*.mcap')
    mcap.write_bytes(mcap.read_bytes()[:mcap.stat().st_size // 2])
    (path / 'metadata.yaml').unlink()
    capfd.readouterr()
    assert list(read_samples(path))
    err = capfd.readouterr().err
    assert f'{path} has no metadata.yaml' in err
    assert f'{mcap} is truncated' in err and err.count('is truncated') == 1


def test_eval_names_the_unreadable_bag_without_a_traceback(tmp_path):
    data = tmp_path / 'data'
    helpers_data.write_bag(data / 'a_good', duration=5.0)
    _bag_without_odometry(data / 'b_no_odom')
    res = _run(_cli('eval', '--baseline', 'constant-velocity', '--data', data, '--cache-dir',
                    tmp_path / 'cache'))
    assert res.returncode == 0, res.stderr
    assert 'Traceback' not in res.stderr
    assert 'b_no_odom: no topic /odom' in res.stderr
    assert 'skipped bag' in res.stdout and 'b_no_odom' in res.stdout
