"""
`vlmad cache build`: decode every bag's samples into the dataset cache before training.

    vlmad cache build DATA... [--config FILE | --size WxH] [--workers N] [--cache-dir DIR]

One bag per process, on every core by default.

`vlmad train` builds what is missing itself on a single process, but a DDP run refuses to
start without its caches (a rank would otherwise decode while the others wait at a
collective, past NCCL's 10 minute timeout): run this first, with the run's --config. When
that config trains the alignment head, the teacher texts are embedded into the text cache
too (`--text-cache`, default beside the first data folder, as `vlmad train` looks for it).
Resumable: finished bags are skipped, a killed build leaves no half cache.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest='action', metavar='ACTION')
    build = sub.add_parser('build', help='build the missing sample caches of bags, in parallel')
    build.add_argument('data', nargs='+', metavar='BAG_OR_DIR',
                       help='bags (folders, .mcap files, or folders holding them)')
    build.add_argument('--config', default='', metavar='FILE',
                       help='the training YAML: its model: section gives the views '
                       '(size, zoom), as `vlmad train --config FILE`')
    build.add_argument('--size', default='', metavar='WxH',
                       help="model input size (overrides the config's; e.g. 192x112)")
    build.add_argument('--workers', type=int, default=0,
                       help='processes, one bag each (default 0: every core)')
    build.add_argument('--cache-dir', default='',
                       help='cache folder (default: $VLMAD_CACHE or ~/.cache/vlmad_ros)')
    build.add_argument('--text-cache', default='',
                       help='text embedding cache, as `vlmad train --text-cache` (default: '
                       'beside the first data folder); used when --config trains the '
                       'alignment head')


def model_configs(config: str):
    """(TrainConfig, PlannerConfig, VLMADConfig) that `vlmad train --config config` uses."""
    from vlmad_ros.training.config import resolve_configs
    cfgs = resolve_configs(argparse.Namespace(config=config, model=None, no_vlm_ad=False,
                                              q1_only=False, q2_only=False))
    return cfgs['train'], cfgs['model'], cfgs['vlmad']


def views_of(config: str, size: str):
    """Return the ViewSpec `vlmad train --config config` reads; `size` (WxH) overrides."""
    from vlmad_ros.planner import ViewSpec
    views = ViewSpec.of(model_configs(config)[1])
    if size:
        try:
            w, h = (int(v) for v in size.lower().split('x'))
        except ValueError:
            raise ValueError(f'--size must be WIDTHxHEIGHT, e.g. 192x112, got {size!r}') from None
        views = dataclasses.replace(views, image_size=(w, h))
    return views


def main(args) -> int:
    if args.action != 'build':
        print('vlmad cache: choose build', file=sys.stderr)
        return 2
    from vlmad_ros.bagschema import bag_paths
    from vlmad_ros.data.dataset import BagDataset, build_caches, default_cache_dir
    try:
        views = views_of(args.config, args.size)
        paths = bag_paths(args.data)
    except (FileNotFoundError, ValueError) as err:
        print(f'vlmad cache build: {err}', file=sys.stderr)
        return 2
    root = args.cache_dir or default_cache_dir()
    workers = args.workers or os.cpu_count() or 1
    print(f'[cache] {len(paths)} bag(s) at {views.key()} into {root}, {workers} process(es)',
          flush=True)
    start = time.perf_counter()
    stats = build_caches(paths, views, root, workers=workers,
                         log=lambda m: print(m, flush=True))
    ds = BagDataset(paths, views, root, build=False) if len(stats.skipped_bags) == 0 else None
    seconds = time.perf_counter() - start
    if ds is None:
        print(f'[cache] {len(stats.skipped_bags)} bag(s) skipped as unreadable (named above)',
              file=sys.stderr)
        return 1
    decoded = sum(c.meta.get('images_decoded', 0) for c in ds.caches)
    reused = sum(c.meta.get('images_reused', 0) for c in ds.caches)
    print(f'[cache] ready in {seconds:.1f} s: {len(ds)} samples from {len(ds.caches)} bag(s); '
          f'when their caches were built {decoded} samples were decoded, {reused} reused')
    embed_texts(args, ds)
    return 0


def embed_texts(args, ds) -> None:
    """Embed the teacher texts for a config that trains the alignment head (else nothing)."""
    train_cfg, _, vlmad_cfg = model_configs(args.config)
    if not vlmad_cfg.use_alignment:
        return
    from vlmad_ros.training.data import attach_text_targets
    from vlmad_ros.training.text_encoder import default_cache_dir
    attach_text_targets([ds], args.text_cache or default_cache_dir(args.data),
                        train_cfg.text_encoder, log=lambda m: print(m, flush=True))
