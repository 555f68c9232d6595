"""
The decoded-sample cache is keyed by content.

Touching or re-annotating a bag decodes nothing, a changed picture is decoded alone; `vlmad
cache build` builds on several processes, resumably; a DDP training refuses to start without
its caches.
"""
import argparse
import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys

import helpers_data
import numpy as np
import pytest
from vlmad_ros import topics, types
from vlmad_ros.bagschema import BagWriter, read_messages
from vlmad_ros.data import dataset as D
from vlmad_ros.images import decode_jpeg, encode_jpeg, resize_rgb
from vlmad_ros.planner import ViewSpec
from vlmad_ros.training import train

SIZE = (48, 32)
KF_STAMP = helpers_data.T0_NS + int(round(1.5 * 12)) * 1_000_000_000 // 12   # sample 3


@pytest.fixture
def bag(tmp_path):
    helpers_data.write_bag(tmp_path / 'bags' / 'a', duration=5.0, reasoning={0.5: (2, 3, 4)})
    return tmp_path / 'bags' / 'a'


def rewrite(bag: pathlib.Path, change) -> None:
    """Write the bag again message by message (a new file), `change(topic, msg)` applied."""
    new = bag.with_name(bag.name + '.new')
    with BagWriter(new) as out:
        for topic, stamp, msg in read_messages(bag):
            out.write(topic, change(topic, msg), stamp)
    shutil.rmtree(bag)
    new.rename(bag)


def open_cache(bag, cache):
    ds = D.BagDataset(bag, SIZE, cache_dir=cache)
    return ds, ds.caches[0]


def images(ds):
    return [ds[i][types.IMAGES].numpy() for i in range(len(ds))]


def test_touching_a_bag_decodes_nothing(bag, tmp_path):
    ds, first = open_cache(bag, tmp_path / 'cache')
    assert first.meta['images_decoded'] == 5 and first.meta['images_reused'] == 0
    before = images(ds)
    mcap = next(bag.glob('*.mcap'))
    stamp = mcap.stat().st_mtime_ns + 10**9
    os.utime(mcap, ns=(stamp, stamp))
    ds, again = open_cache(bag, tmp_path / 'cache')
    assert again.path != first.path                      # the cheap part was rebuilt ...
    assert again.meta['images_decoded'] == 0 and again.meta['images_reused'] == 5
    assert again.store.path == first.store.path          # ... onto the same image store
    assert len(list((tmp_path / 'cache').glob('images/*/*'))) == 1
    for a, b in zip(before, images(ds)):
        np.testing.assert_array_equal(a, b)


def test_new_teacher_records_decode_nothing(bag, tmp_path):
    ds, first = open_cache(bag, tmp_path / 'cache')
    assert ds[1][D.TEXTS] == ('now 0.5', 'next 0.5', 'because 0.5')

    def reannotate(topic, msg):
        if topic != topics.REASONING:
            return msg
        return dataclasses.replace(msg, current_action='stop', control_action=1)
    rewrite(bag, reannotate)
    ds, again = open_cache(bag, tmp_path / 'cache')
    assert again.meta['images_decoded'] == 0 and again.store.path == first.store.path
    assert ds[1][D.TEXTS][0] == 'stop' and ds[1][types.ACTION_LABELS].tolist() == [1, 3, 4]


def test_a_changed_picture_is_decoded_alone(bag, tmp_path):
    ds, first = open_cache(bag, tmp_path / 'cache')
    before = images(ds)
    picture = np.zeros((36, 64, 3), np.uint8)
    picture[:, 32:] = 200
    jpeg = encode_jpeg(picture, 90)

    def repaint(topic, msg):
        if topic == topics.CAMERA_IMAGE_TOPICS[0] and (
                msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == KF_STAMP):
            return dataclasses.replace(msg, data=np.frombuffer(jpeg, np.uint8))
        return msg
    rewrite(bag, repaint)
    ds, again = open_cache(bag, tmp_path / 'cache')
    assert again.meta['images_decoded'] == 1 and again.meta['images_reused'] == 4
    assert again.store.path != first.store.path
    after = images(ds)
    want = resize_rgb(decode_jpeg(jpeg, SIZE), SIZE)
    np.testing.assert_array_equal(after[3][0].transpose(1, 2, 0), want)
    assert not np.array_equal(after[3][0], before[3][0])
    for k in (0, 1, 2, 4):
        np.testing.assert_array_equal(after[k], before[k])
    np.testing.assert_array_equal(after[3][1:], before[3][1:])


def test_another_view_spec_is_another_store(bag, tmp_path):
    D.BagDataset(bag, SIZE, cache_dir=tmp_path / 'cache')
    zoom = D.BagDataset(bag, ViewSpec(SIZE, 2.0, 'CAM_FRONT'), cache_dir=tmp_path / 'cache')
    assert zoom.caches[0].meta['images_decoded'] == 5
    assert zoom[0][types.IMAGES].shape == (7, 3, 32, 48)


def vlmad(*argv):
    return subprocess.run([sys.executable, '-m', 'vlmad_ros.cli', *argv], capture_output=True,
                          text=True, timeout=300)


def test_cache_build_command_builds_every_bag_once(bag, tmp_path):
    helpers_data.write_bag(bag.parent / 'b', duration=4.0, seed=1)
    cache = tmp_path / 'cache'
    cmd = ('cache', 'build', str(bag.parent), '--size', '48x32', '--workers', '2',
           '--cache-dir', str(cache))
    proc = vlmad(*cmd)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('[cache] ') == 4 and '8 samples from 2 bag(s)' in proc.stdout
    ds = D.BagDataset(bag.parent, SIZE, cache_dir=cache, build=False)
    assert len(ds) == 8 and not list(cache.glob('**/*.tmp-*'))
    proc = vlmad(*cmd)                                  # resumable: nothing left to build
    assert proc.returncode == 0 and '2 bag(s)' in proc.stdout and ' 1/' not in proc.stdout
    assert vlmad('cache', 'build', str(bag), '--size', 'big').returncode == 2


def test_ddp_training_refuses_missing_caches_and_names_the_command(bag, tmp_path, monkeypatch):
    cache = tmp_path / 'cache'
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(['--data', str(bag), '--out', str(tmp_path / 'run'),
                              '--cache-dir', str(cache)])
    monkeypatch.setenv('WORLD_SIZE', '2')
    with pytest.raises(train.UsageError, match='vlmad cache build .* --cache-dir'):
        train.set_up(args)
    from vlmad_ros.model.config import PlannerConfig
    assert vlmad('cache', 'build', str(bag), '--cache-dir', str(cache)).returncode == 0
    train.require_caches(args, PlannerConfig())          # built: no refusal
    with pytest.raises(D.MissingCacheError, match='no sample cache'):
        D.BagDataset(bag, SIZE, cache_dir=cache, build=False)
