"""
`vlmad train --text-cache-only`: cached text embeddings only, the encoder never loaded.

The encoder named is a CLIP directory that does not exist: loading it would raise, so a run
that completes has not tried. The cache is filled by a small deterministic encoder (hashes
to unit vectors) under that encoder's id, through TextEmbeddingCache itself.
"""
import argparse
import hashlib
import json

import helpers_data
import numpy as np
import pytest
from vlmad_ros.training import text_encoder as TE
from vlmad_ros.training import train
import yaml

TINY = {
    'model': {'image_width': 32, 'image_height': 24, 'backbone_channels': [8, 8, 8, 8],
              'backbone_blocks': [0, 0, 0, 0], 'd_model': 16, 'num_heads': 2,
              'decoder_layers': 1, 'ffn_dim': 32},
    'vlmad': {'d_model': 16, 'num_heads': 2, 'ffn_dim': 32, 'num_layers': 1},
    'train': {'batch_size': 4, 'lr': 1e-3, 'warmup_steps': 1, 'threads': 1, 'log_images': 0,
              'val_fraction': 0.2},
}
RECORDS = {t: (0, 3, 4) for t in (0.0, 0.5, 1.0, 1.5, 2.0)}


class HashEncoder:
    """Deterministic unit vectors from a text's hash (stands in for weights not on disk)."""

    def __init__(self, encoder_id, dim=24):
        self.encoder_id, self.dim, self.calls = encoder_id, dim, 0

    def encode(self, texts):
        self.calls += 1
        out = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], 'little')
            v = np.random.default_rng(seed).normal(size=self.dim)
            out.append(v / np.linalg.norm(v))
        return np.array(out, np.float32).reshape(len(texts), self.dim)


def test_cached_returns_only_what_is_on_disk_without_an_encoder(tmp_path):
    enc_id = f'clip:{tmp_path / "no_such_model"}'
    writer = TE.TextEmbeddingCache(tmp_path / 'c', enc_id, encoder_obj=HashEncoder(enc_id))
    stored = writer.embed_unique(['go straight', 'stop at the light'])
    reader = TE.TextEmbeddingCache(tmp_path / 'c', enc_id)
    got = reader.cached(['stop at the light', 'turn left', 'go straight', 'stop at the light'])
    assert list(got) == ['stop at the light', 'go straight']     # distinct, in order
    for text, vec in got.items():
        np.testing.assert_array_equal(vec, stored[text])
    assert reader._encoder is None and reader.encoded == 0      # nothing loaded or encoded
    assert reader.cached([]) == {}
    assert len(TE.TextEmbeddingCache(tmp_path / 'c', enc_id)) == 2   # cached() wrote nothing
    # Another encoder's cache never answers for these texts.
    assert TE.TextEmbeddingCache(tmp_path / 'other', 'clip:elsewhere').cached(['go straight']) \
        == {}
    with pytest.raises(RuntimeError, match='not found locally'):
        reader.encoder


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('textonly')
    helpers_data.write_bag(root / 'bags' / 'a', duration=5.0, image_size=(32, 18),
                           reasoning=RECORDS)
    (root / 'tiny.yaml').write_text(yaml.safe_dump(TINY))
    return root


def _run(data, out, text_cache, *extra):
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args([
        '--data', str(data / 'bags'), '--out', str(out), '--config', str(data / 'tiny.yaml'),
        '--cache-dir', str(data / 'cache'), '--text-cache', str(text_cache), '--epochs', '1',
        '--text-encoder', f'clip:{data / "no_such_model"}', '--text-cache-only', *extra])
    return train.main(args)


def _record(out):
    (line,) = (out / 'metrics.jsonl').read_text().splitlines()
    return json.loads(line)


def test_empty_cache_trains_one_epoch_without_alignment(data, tmp_path, capsys,
                                                        one_torch_thread):
    assert _run(data, tmp_path / 'run', tmp_path / 'empty') == 0
    printed = capsys.readouterr().out
    assert '[text] cache only: 0 distinct texts found, 15 missing' in printed
    rec = _record(tmp_path / 'run')
    assert rec['epoch'] == 1 and np.isfinite(rec['train']['loss'])
    assert 'align_loss' not in rec['train']            # no frame had a cached text
    assert rec['train']['action_loss'] > 0             # the records still teach Q2
    assert (tmp_path / 'run' / 'best.pt').is_file()
    assert not (tmp_path / 'empty' / 'no_such_model.npz').exists()


def test_partial_cache_aligns_only_the_cached_frames(data, tmp_path, capsys, one_torch_thread):
    enc_id = f'clip:{data / "no_such_model"}'
    cache = TE.TextEmbeddingCache(tmp_path / 'text', enc_id, encoder_obj=HashEncoder(enc_id))
    cache.embed_unique([f'{w} {t}' for t in (0.0, 0.5) for w in ('now', 'next', 'because')])
    assert _run(data, tmp_path / 'run', tmp_path / 'text') == 0
    printed = capsys.readouterr().out
    assert '[text] cache only: 6 distinct texts found, 9 missing' in printed
    rec = _record(tmp_path / 'run')
    assert rec['epoch'] == 1 and rec['train']['align_loss'] > 0
    config = yaml.safe_load((tmp_path / 'run' / 'config.yaml').read_text())
    assert config['vlmad']['text_dim'] == 24 and config['train']['text_cache_only'] is True
