"""The frozen text encoder (all-MiniLM-L6-v2, offline) and its on-disk cache."""
import numpy as np
import pytest
from vlmad_ros.training import text_encoder as TE


def test_minilm_embeddings_are_cached_by_text_and_encoder(tmp_path):
    texts = ['The ego vehicle is going straight at a steady speed.',
             'The ego vehicle keeps driving straight ahead at constant speed.',
             'The ego vehicle stops at the red traffic light.',
             'The ego vehicle is going straight at a steady speed.']
    cache = TE.TextEmbeddingCache(tmp_path / 'c')
    emb = cache.embed(texts)
    assert emb.shape == (4, 384) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    assert cache.encoded == 3                       # the repeated text ran once
    np.testing.assert_array_equal(emb[0], emb[3])
    # Paraphrases are closer than a different action.
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.1
    # A fresh cache on the same folder answers without loading the encoder at all.
    again = TE.TextEmbeddingCache(tmp_path / 'c')
    np.testing.assert_array_equal(again.embed(texts), emb)
    assert again.encoded == 0 and again._encoder is None and again.dim == 384
    assert again.embed_unique(texts).keys() == set(texts)
    # The key includes the encoder id: another encoder never reads these vectors.
    assert TE.text_key(texts[0], TE.MINILM_ID) != TE.text_key(texts[0], 'clip:x')


def test_encoder_specs_and_clip_without_local_weights(tmp_path):
    assert TE.encoder_id_for('minilm') == TE.MINILM_ID
    with pytest.raises(ValueError, match='text encoder'):
        TE.encoder_id_for('bert')
    with pytest.raises(RuntimeError, match='not found locally'):
        TE.make_text_encoder(f'clip:{tmp_path / "no_such_model"}')


def test_cache_dir_is_beside_the_data(tmp_path):
    bag = tmp_path / 'scene0'
    bag.mkdir()
    (bag / 'metadata.yaml').write_text('x')
    assert TE.default_cache_dir([str(tmp_path)]) == tmp_path / TE.CACHE_DIRNAME
    assert TE.default_cache_dir([str(bag)]) == tmp_path / TE.CACHE_DIRNAME
    assert TE.default_cache_dir([str(tmp_path / 'a.mcap')]) == tmp_path / TE.CACHE_DIRNAME
