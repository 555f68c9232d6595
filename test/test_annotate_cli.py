"""`vlmad annotate` end to end: real bags in, real bags out, a real HTTP teacher."""
import collections
import json
import os
import pathlib
import signal
import subprocess
import time

import helpers_annotate as h
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from vlmad_ros import labels
from vlmad_ros.teacher.overlay import red_mask
from vlmad_ros.teacher.rule import RULE_VERSION

KEY = 'sk-hostile-test-9f8e7d6c5b4a'
KEY_ENV = 'VLMAD_TEST_KEY'
REASONING = '/vlmad/reasoning'


def vlmad(*args, env=None, **kw):
    env = dict(os.environ if env is None else env)
    return subprocess.run(['vlmad', 'annotate', *map(str, args), '--no-progress'], env=env,
                          capture_output=True, text=True, timeout=120, **kw)


def decode(bag_dir):
    """Messages per topic and the DrivingReasoning records, with the independent mcap reader."""
    (file,) = pathlib.Path(bag_dir).glob('*.mcap')
    counts, records = {}, []
    with open(file, 'rb') as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for _, channel, message, msg in reader.iter_decoded_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            if channel.topic == REASONING:
                stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
                assert message.log_time == stamp
                records.append((stamp, msg))
    return counts, records


def future_keyframes(keyframes):
    """Keyframes with 3 s of odometry after them (the bag ends at the last keyframe)."""
    return [k for k in keyframes if k + 3 * 10**9 <= keyframes[-1]]


def merged_counts(bag_dir):
    """Messages per topic of a sidecar read with its source (bagschema), as readers see it."""
    from vlmad_ros.bagschema import read_messages
    return collections.Counter(t for t, _, _ in read_messages(bag_dir, raw=True))


def test_rule_teacher_writes_sidecars_and_counts_skips(tmp_path):
    kf_stop = h.write_drive_bag(tmp_path / 'in' / 'stop', h.brake_to_stop(), duration_s=5.0)
    kf_turn = h.write_drive_bag(tmp_path / 'in' / 'turn', h.left_turn(), duration_s=5.0,
                                storage='sqlite3', with_truth=False)
    out = tmp_path / 'out'
    proc = vlmad(tmp_path / 'in', '--out', out, '--summary-json', tmp_path / 's.json')
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / 's.json').read_text())
    want_stop, want_turn = future_keyframes(kf_stop), future_keyframes(kf_turn)
    assert summary['annotated'] == len(want_stop) + len(want_turn)
    assert summary['skipped'] == {'no_future': len(kf_stop) + len(kf_turn) - summary['annotated']}
    assert 'annotated:' in proc.stdout and 'wall time' in proc.stdout
    counts, records = decode(out / 'stop')
    assert counts == {REASONING: len(want_stop)}, 'a sidecar holds only the records'
    counts = merged_counts(out / 'stop')
    assert counts['/odom'] == 101 and counts['/CAM_FRONT/image_rect_compressed'] == 21
    assert counts['/tf_static'] == 1 and counts['/vlmad/keyframe'] == len(kf_stop)
    assert [s for s, _ in records] == want_stop
    assert all(m.status == 0 and m.teacher == RULE_VERSION and m.reasoning for _, m in records)
    # Braking from 1 s on: the last keyframes' 3 s future ends stopped.
    assert labels.CONTROL_LABELS[records[-1][1].control_action] == 'stop'
    turn = records_of(out / 'turn')
    assert [s for s, _ in turn] == want_turn
    assert {labels.TURN_LABELS[m.turn_action] for _, m in turn} == {'turn left'}
    # The label histogram: every label of each set, counted over the records written.
    hist = summary['labels']
    assert {c: list(v) for c, v in hist.items()} == {c: list(s) for c, s in
                                                     labels.LABEL_SETS.items()}
    assert hist['turn_action']['turn left'] == len(turn)
    assert all(sum(v.values()) == summary['annotated'] for v in hist.values())
    assert 'labels turn_action: turn left' in proc.stdout
    assert not list(out.glob('*.journal.jsonl')) and not list(out.glob('.*'))
    # A second run finds the bags done and still reports their labels; --shard picks every
    # N-th bag.
    again = vlmad(tmp_path / 'in', '--out', out, '--summary-json', tmp_path / 's2.json')
    assert again.returncode == 0
    rerun = json.loads((tmp_path / 's2.json').read_text())
    assert rerun['bags_already_done'] == 2 and rerun['annotated'] == 0
    assert rerun['labels'] == hist
    shard = vlmad(tmp_path / 'in', '--out', tmp_path / 'shard', '--shard', '1/2')
    assert shard.returncode == 0, shard.stderr
    assert sorted(p.name for p in (tmp_path / 'shard').iterdir()) == ['turn']
    bad = vlmad(tmp_path / 'in', '--out', out, '--shard', '2/2')
    assert bad.returncode == 2 and '--shard' in bad.stderr


def records_of(bag_dir):
    """(log time, DrivingReasoning) of a bag in any storage (sqlite3 has no mcap file)."""
    from vlmad_ros.bagschema import read_messages
    return [(s, m) for _, s, m in read_messages(bag_dir, topics=[REASONING])]


def hostile(request):
    """Rate limits, broken JSON, labels outside the sets and good answers, in turn."""
    i = request['index']
    if i % 4 == 0:
        return 429, {'Retry-After': '0.05'}, {'error': {'message': 'slow down'}}
    if i % 4 == 1:
        return 200, {}, h.completion('{"current_action": "The car is')
    if i % 8 == 2:
        return 200, {}, h.completion(json.dumps(dict(h.GOOD_ANSWER, turn_action='left-ish')))
    return h.good()


def test_hostile_server_exit_0_overlay_bearer_and_no_key_in_bag(tmp_path):
    keyframes = h.write_drive_bag(tmp_path / 'in', h.cruise(), duration_s=5.0)
    env = dict(os.environ, **{KEY_ENV: KEY})
    with h.ChatServer(hostile) as srv:
        proc = vlmad(tmp_path / 'in', '--out', tmp_path / 'out', '--teacher', 'openai',
                     '--base-url', srv.base_url, '--model', 'gpt-4o', '--api-key-env', KEY_ENV,
                     '--backoff-base', '0.01', '--image-width', '320', '--concurrency', '2',
                     '--cache-dir', tmp_path / 'cache', '--summary-json', tmp_path / 's.json',
                     env=env)
    assert proc.returncode == 0, proc.stderr
    assert KEY not in proc.stdout + proc.stderr
    summary = json.loads((tmp_path / 's.json').read_text())
    counts, records = decode(tmp_path / 'out' / 'in')
    assert [s for s, _ in records] == future_keyframes(keyframes)
    ok = [m for _, m in records if m.status == 0]
    failed = [m for _, m in records if m.status == 1]
    assert ok and len(ok) == summary['annotated']
    assert all(m.teacher == 'gpt-4o' and m.prompt_version == 'vlmad-v1' for _, m in records)
    for m in failed:  # a bad answer never becomes a label
        assert m.failure_reason and (m.control_action, m.turn_action, m.lane_action) == (255,) * 3
    assert sum(summary['failed'].values()) == len(failed)
    assert summary['usage']['prompt_tokens'] > 0
    assert len(srv.requests) >= len(records)
    for req in srv.requests:
        assert req['headers']['Authorization'] == f'Bearer {KEY}'
        assert red_mask(h.request_image(req)).sum() > 20, 'the prompt image has the red path'
    for path in (tmp_path / 'out').rglob('*'):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_dead_endpoint_clear_error_nothing_written(tmp_path):
    h.write_drive_bag(tmp_path / 'in', duration_s=4.0)
    url = f'http://127.0.0.1:{h.dead_port()}/v1'
    t0 = time.monotonic()
    proc = vlmad(tmp_path / 'in', '--out', tmp_path / 'out', '--teacher', 'openai',
                 '--base-url', url, '--backoff-base', '0.01', '--no-cache')
    assert proc.returncode == 3
    assert 'cannot reach' in proc.stderr and url in proc.stderr
    assert time.monotonic() - t0 < 30
    assert list((tmp_path / 'out').iterdir()) == []


def test_cache_makes_reruns_free(tmp_path):
    keyframes = h.write_drive_bag(tmp_path / 'in', duration_s=4.0)
    n = len(future_keyframes(keyframes))
    args = ['--teacher', 'openai', '--image-width', '160', '--cache-dir', tmp_path / 'cache']
    (tmp_path / 'prices.yaml').write_text('gpt-4o: {input: 2.5, output: 10.0}\n')
    with h.ChatServer() as srv:
        first = vlmad(tmp_path / 'in', '--out', tmp_path / 'a', '--base-url', srv.base_url,
                      '--price-table', tmp_path / 'prices.yaml', '--summary-json',
                      tmp_path / 's1.json', *args)
        assert first.returncode == 0, first.stderr
        assert len(srv.requests) == n
        cost = json.loads((tmp_path / 's1.json').read_text())['usage']['cost_usd']
        assert abs(cost - n * (1000 * 2.5 + 60 * 10.0) / 1e6) < 1e-9
        assert f'cost ${cost:.4f}' in first.stdout
        second = vlmad(tmp_path / 'in', '--out', tmp_path / 'b', '--base-url', srv.base_url,
                       '--summary-json', tmp_path / 's.json', *args)
        assert second.returncode == 0, second.stderr
    assert len(srv.requests) == n, 'the second run must not ask again'
    summary = json.loads((tmp_path / 's.json').read_text())
    assert summary['cached'] == n and summary['usage']['prompt_tokens'] == 0
    assert [m.current_action for _, m in decode(tmp_path / 'b' / 'in')[1]] == \
        [h.GOOD_ANSWER['current_action']] * n


def test_resume_after_sigkill_has_no_lost_or_duplicate_records(tmp_path):
    keyframes = h.write_drive_bag(tmp_path / 'in', duration_s=9.0, camera_hz=2.0)
    want = future_keyframes(keyframes)
    assert len(want) == 13
    out = tmp_path / 'out'
    journal = out / 'in.journal.jsonl'
    args = [tmp_path / 'in', '--out', out, '--teacher', 'openai', '--no-cache',
            '--image-width', '160', '--concurrency', '2', '--summary-json', tmp_path / 's.json']
    with h.ChatServer(lambda r: ('sleep', 0.4, h.good())) as srv:
        proc = subprocess.Popen(['vlmad', 'annotate', *map(str, args[:-2]), '--no-progress',
                                 '--base-url', srv.base_url], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if journal.exists() and len(journal.read_text().splitlines()) >= 1 + 4:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert not (out / 'in').exists(), 'no output bag before the run completes'
        done_before = len(journal.read_text().splitlines()) - 1
        assert 4 <= done_before < len(want)
        with open(journal, 'a') as f:  # a line torn by the kill must not break the resume
            f.write('{"stamp_ns": 17000')
        rerun = vlmad(*args, '--base-url', srv.base_url)
        assert rerun.returncode == 0, rerun.stderr
    summary = json.loads((tmp_path / 's.json').read_text())
    assert summary['resumed'] == done_before
    assert summary['annotated'] + summary['resumed'] == len(want)
    stamps = [s for s, _ in decode(out / 'in')[1]]
    assert stamps == want, 'exactly one record per keyframe'
    assert not journal.exists()


def test_bad_inputs_are_named(tmp_path):
    missing = vlmad(tmp_path / 'nope', '--out', tmp_path / 'out')
    assert missing.returncode == 2 and 'nope' in missing.stderr
    h.write_drive_bag(tmp_path / 'a' / 'scene', duration_s=1.0)
    h.write_drive_bag(tmp_path / 'b' / 'scene', duration_s=1.0)
    clash = vlmad(tmp_path / 'a', tmp_path / 'b', '--out', tmp_path / 'out')
    assert clash.returncode == 2 and "named ['scene']" in clash.stderr
    rate = vlmad(tmp_path / 'a', '--out', tmp_path / 'out', '--rate', '0')
    assert rate.returncode == 2 and '--rate' in rate.stderr
    # A bag without keyframe marks: said so, nothing annotated, still a complete output bag.
    from vlmad_ros.bagschema import BagWriter
    from vlmad_ros.data import rosmsgs
    with BagWriter(tmp_path / 'plain' / 'drive') as bag:
        bag.write('/odom', rosmsgs.odometry(h.START_NS, 'map', 'base_link', (0, 0, 0),
                                            (1, 0, 0, 0), (0, 0, 0), (0, 0, 0)), h.START_NS)
    plain = vlmad(tmp_path / 'plain', '--out', tmp_path / 'out2')
    assert plain.returncode == 0 and 'no /vlmad/keyframe marks' in plain.stderr
    assert merged_counts(tmp_path / 'out2' / 'drive') == {'/odom': 1}
    copy = vlmad(tmp_path / 'plain', '--out', tmp_path / 'out3', '--layout', 'copy')
    assert copy.returncode == 0 and decode(tmp_path / 'out3' / 'drive')[0] == {'/odom': 1}
    layout = vlmad(tmp_path / 'plain', '--out', tmp_path / 'out4', '--layout', 'both')
    assert layout.returncode == 2 and '--layout' in layout.stderr
