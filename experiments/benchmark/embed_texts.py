#!/usr/bin/env python3
"""
Embed the teacher texts of annotated bags into a text-embedding cache folder.

For a machine that has no text encoder (`vlmad train --text-cache-only`).

    experiments/benchmark/embed_texts.py --data DIR... --out TEXT_CACHE_DIR [--fp16]

The texts are read straight from the bags' DrivingReasoning records (that topic only).
--fp16 halves the file (embeddings are unit vectors; the largest change is ~5e-4 per
component), to fit the device tool's transfer limit; say so where its results are reported.
"""
import argparse
import pathlib
import sys

import numpy as np
from vlmad_ros import topics
from vlmad_ros.bagschema import bag_paths, read_messages
from vlmad_ros.labels import TEXT_FIELDS
from vlmad_ros.training.text_encoder import TextEmbeddingCache


def teacher_texts(bags):
    """Every text field of every DrivingReasoning record (only that topic is read)."""
    for bag in bags:
        for _, _, msg in read_messages(bag, topics=[topics.REASONING]):
            yield from (str(getattr(msg, field)) for field in TEXT_FIELDS)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--data', nargs='+', required=True)
    p.add_argument('--out', required=True)
    p.add_argument('--fp16', action='store_true')
    p.add_argument('--device', default='cpu', help='where the text encoder runs')
    args = p.parse_args()
    texts = sorted(set(teacher_texts(bag_paths(args.data))))
    cache = TextEmbeddingCache(args.out, device=args.device)
    cache.embed_unique(texts)
    print(f'{len(texts)} distinct texts, {cache.encoded} newly encoded -> {cache.path}')
    if args.fp16:
        with np.load(cache.path) as d:
            np.savez(cache.path, keys=d['keys'], emb=d['emb'].astype(np.float16),
                     encoder_id=d['encoder_id'])
        print(f'stored as float16: {pathlib.Path(cache.path).stat().st_size / 1e6:.1f} MB')
    return 0


if __name__ == '__main__':
    sys.exit(main())
