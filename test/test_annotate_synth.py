"""`vlmad annotate` on a bag from `vlmad synth`: the real bag layout, end to end."""
import collections
import subprocess

from vlmad_ros.bagschema import read_messages
from vlmad_ros.teacher.rule import RULE_VERSION


def run(*args):
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return proc


def counts(bag):
    return collections.Counter(topic for topic, _, _ in read_messages(bag, raw=True))


def test_synthetic_bag_gets_one_record_per_keyframe_and_keeps_every_message(tmp_path):
    run('vlmad', 'synth', '--scenes', 1, '--seed', 3, '--duration', 5, '--width', 320,
        '--height', 180, '--out', tmp_path / 'in', '--quiet')
    (bag,) = [p for p in (tmp_path / 'in').iterdir() if p.is_dir()]
    run('vlmad', 'annotate', bag, '--out', tmp_path / 'out', '--no-progress')
    src, dst = counts(bag), counts(tmp_path / 'out' / bag.name)
    assert dst.pop('/vlmad/reasoning') > 0
    assert dst == src, 'every input message is copied'
    keyframes = [s for _, s, _ in read_messages(bag, topics=['/vlmad/keyframe'])]
    odom_end = max(s for _, s, _ in read_messages(bag, topics=['/odom']))
    want = [k for k in keyframes if k + 3_000_000_000 <= odom_end]
    records = [(s, m) for _, s, m in read_messages(tmp_path / 'out' / bag.name,
                                                   topics=['/vlmad/reasoning'])]
    assert [s for s, _ in records] == want
    assert all(m.status == 0 and m.teacher == RULE_VERSION for _, m in records)
