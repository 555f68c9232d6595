"""`vlmad annotate` on a bag from `vlmad synth`: the real bag layout, end to end, both layouts."""
import collections
import json
import subprocess

from mcap.reader import make_reader
import pytest
import torch
from vlmad_ros.bagschema import read_messages, topic_types
from vlmad_ros.data.dataset import BagDataset
from vlmad_ros.teacher.rule import RULE_VERSION
import yaml


def run(*args):
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return proc


def counts(bag):
    return collections.Counter(topic for topic, _, _ in read_messages(bag, raw=True))


@pytest.fixture(scope='module')
def annotated(tmp_path_factory):
    """One synthetic bag annotated twice by the rule teacher: as a sidecar and as a full copy."""
    root = tmp_path_factory.mktemp('ann')
    run('vlmad', 'synth', '--scenes', 1, '--seed', 3, '--duration', 5, '--width', 320,
        '--height', 180, '--out', root / 'in', '--quiet')
    (bag,) = [p for p in (root / 'in').iterdir() if p.is_dir()]
    summaries = {}
    for layout in ('sidecar', 'copy'):
        run('vlmad', 'annotate', bag, '--out', root / layout, '--layout', layout,
            '--no-progress', '--summary-json', root / f'{layout}.json')
        summaries[layout] = json.loads((root / f'{layout}.json').read_text())
    return root, bag, summaries


def test_copy_layout_gets_one_record_per_keyframe_and_keeps_every_message(annotated):
    root, bag, _ = annotated
    out = root / 'copy' / bag.name
    src, dst = counts(bag), counts(out)
    assert dst.pop('/vlmad/reasoning') > 0
    assert dst == src, 'every input message is copied'
    keyframes = [s for _, s, _ in read_messages(bag, topics=['/vlmad/keyframe'])]
    odom_end = max(s for _, s, _ in read_messages(bag, topics=['/odom']))
    want = [k for k in keyframes if k + 3_000_000_000 <= odom_end]
    records = [(s, m) for _, s, m in read_messages(out, topics=['/vlmad/reasoning'])]
    assert [s for s, _ in records] == want
    assert all(m.status == 0 and m.teacher == RULE_VERSION for _, m in records)


def test_sidecar_holds_only_the_records_and_names_its_source(annotated):
    root, bag, summaries = annotated
    side = root / 'sidecar' / bag.name
    (file,) = side.glob('*.mcap')
    with open(file, 'rb') as f:   # the independent reader: one topic, nothing copied
        topics = {c.topic for _, c, _ in make_reader(f).iter_messages()}
    assert topics == {'/vlmad/reasoning'}
    meta = yaml.safe_load((side / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert meta['custom_data'] == {
        'vlmad.sidecar.source': f'../../in/{bag.name}',
        'vlmad.sidecar.source_absolute': str(bag.resolve()),
        'vlmad.sidecar.teacher': RULE_VERSION, 'vlmad.sidecar.prompt_version': RULE_VERSION,
        'vlmad.sidecar.topic': '/vlmad/reasoning'}
    assert summaries['sidecar']['layout'] == 'sidecar' and summaries['copy']['layout'] == 'copy'
    sizes = {k: sum(f.stat().st_size for f in (root / k / bag.name).iterdir()) for k in summaries}
    assert summaries['sidecar']['bytes_written'] == sizes['sidecar']
    assert summaries['copy']['bytes_written'] == sizes['copy']
    assert sizes['sidecar'] * 100 < sizes['copy'], sizes
    drop = ('wall_s', 'layout', 'bytes_written', 'outputs')
    assert {k: v for k, v in summaries['sidecar'].items() if k not in drop} == \
        {k: v for k, v in summaries['copy'].items() if k not in drop}


def test_sidecar_reads_exactly_as_the_copy(annotated, tmp_path):
    root, bag, _ = annotated
    side, copy = root / 'sidecar' / bag.name, root / 'copy' / bag.name
    assert topic_types(side) == topic_types(copy)
    as_bytes = [(t, s, bytes(d)) for t, s, d in read_messages(side, raw=True)]
    assert as_bytes == [(t, s, bytes(d)) for t, s, d in read_messages(copy, raw=True)]
    # The dataset (what `vlmad train --data` and `vlmad eval` read): the same samples.
    a = BagDataset(root / 'sidecar', (64, 36), cache_dir=tmp_path / 'cache')
    b = BagDataset(root / 'copy', (64, 36), cache_dir=tmp_path / 'cache')
    assert len(a) == len(b) > 0 and a.stats == b.stats
    assert sum(bool(a[i]['text_valid']) for i in range(len(a))) == len(a)
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], torch.Tensor):
                assert torch.equal(x[key].nan_to_num(-7), y[key].nan_to_num(-7)), key
            else:
                assert x[key] == y[key], key


def test_train_takes_the_sidecar_layout(annotated, tmp_path):
    """`vlmad train --data OUT` on sidecars: samples from the source, labels from the records."""
    import argparse
    from test_train_run import TINY
    from vlmad_ros.training import train
    root, _, _ = annotated
    (tmp_path / 'tiny.yaml').write_text(yaml.safe_dump(TINY))
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(['--data', str(root / 'sidecar'), '--out', str(tmp_path / 'run'),
                              '--config', str(tmp_path / 'tiny.yaml'), '--epochs', '1',
                              '--cache-dir', str(tmp_path / 'cache'), '--q2-only'])
    assert train.main(args) == 0
    (row,) = [json.loads(line) for line in (tmp_path / 'run' / 'metrics.jsonl').open()]
    assert row['train']['action_loss'] > 0, 'the action head learned from the sidecar records'


def test_sidecar_without_its_source_is_skipped_by_name(tmp_path, capsys):
    run('vlmad', 'synth', '--scenes', 1, '--seed', 4, '--duration', 2, '--width', 64,
        '--height', 36, '--out', tmp_path / 'in', '--quiet')
    run('vlmad', 'annotate', tmp_path / 'in', '--out', tmp_path / 'out', '--no-progress')
    (bag,) = [p for p in (tmp_path / 'in').iterdir() if p.is_dir()]
    bag.rename(tmp_path / 'gone')
    ds = BagDataset(tmp_path / 'out', (64, 36), cache_dir=tmp_path / 'cache')
    assert len(ds) == 0
    (why,) = ds.stats.skipped_bags
    assert f'a sidecar of {bag.resolve()}, which is missing' in why
    assert 'which is missing' in capsys.readouterr().err
