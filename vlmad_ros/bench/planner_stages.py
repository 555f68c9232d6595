"""
`vlmad bench planner-stages`: what each speed-up of the planner's path buys, in one process.

Variants are measured interleaved (A, B, C, A, B, C, ...) so a machine shared with other jobs
slows them alike; medians are reported. Stages: JPEG decode of six 1600x900 frames (full size vs
reduced DCT scale, serial vs two threads) and the model (batch-norm folding, channels-last,
ray-encoding cache, torch threads, input size).
"""
from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
import copy
import json
import os
import pathlib
import sys
import time
import types
from typing import Callable, Dict, List, Optional

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--repeats', type=int, default=30, help='timed runs per variant')
    parser.add_argument('--json', default='', help='also write the results here')


def interleaved_times(variants: Dict[str, Callable[[], object]], repeats: int,
                      setup: Optional[Callable[[str], None]] = None,
                      warm_up: int = 3) -> Dict[str, List[float]]:
    """Each variant's run times [s], runs interleaved (A, B, C, A, ...) after warm-up rounds."""
    times: Dict[str, List[float]] = {k: [] for k in variants}
    for round_ in range(warm_up + repeats):
        for name, fn in variants.items():
            if setup:
                setup(name)
            t = time.perf_counter()
            fn()
            if round_ >= warm_up:
                times[name].append(time.perf_counter() - t)
    return times


def _interleaved(variants: Dict[str, Callable[[], object]], repeats: int,
                 setup: Optional[Callable[[str], None]] = None) -> Dict[str, float]:
    times = interleaved_times(variants, repeats, setup)
    return {k: round(float(np.median(v)) * 1e3, 2) for k, v in times.items()}


def _decode_stages(repeats: int) -> Dict[str, float]:
    from vlmad_ros.bench.feeder import road_scene
    from vlmad_ros.images import decode_jpeg, encode_jpeg, resize_rgb
    from vlmad_ros.planner import camera_features, ViewSpec
    from vlmad_ros.rig import load_rig
    rig = load_rig('nuscenes')
    jpegs = [encode_jpeg(road_scene(1600, 900, seed=100 * i), 90) for i in range(6)]
    size = (192, 112)
    pool = ThreadPoolExecutor(2)

    def full():
        return [resize_rgb(decode_jpeg(j), size) for j in jpegs]

    def dct():
        return [resize_rgb(decode_jpeg(j, size), size) for j in jpegs]

    def dct_2threads():
        return list(pool.map(lambda j: resize_rgb(decode_jpeg(j, size), size), jpegs))

    def views(jpeg_decode: str):      # what training and the node's CPU decoder run
        spec = ViewSpec(size, jpeg_decode=jpeg_decode)
        msgs = [types.SimpleNamespace(format='jpeg', data=j) for j in jpegs]
        return lambda: [camera_features(c, m, spec) for c, m in zip(rig.cameras, msgs)]
    out = _interleaved({'decode 6 x 1600x900 full size + resize': full,
                        'decode 6 x 1600x900 at 1/8 DCT scale + resize': dct,
                        'same, 2 decode threads': dct_2threads,
                        'camera_features x 6, jpeg_decode dct': views('dct'),
                        'camera_features x 6, jpeg_decode full (GPU-path pixels)': views('full')},
                       repeats)
    pool.shutdown()
    out['mean JPEG kB'] = round(float(np.mean([len(j) for j in jpegs])) / 1e3, 1)
    return out


def _model_stages(repeats: int) -> Dict[str, float]:
    import torch
    from vlmad_ros.model import PlannerConfig
    from vlmad_ros.model.planner_model import build_model, fuse_batch_norms
    from vlmad_ros.planner import collate, features_from_parts, prepare_camera
    from vlmad_ros.rig import load_rig
    from vlmad_ros.types import EgoState
    rig = load_rig('nuscenes')

    def batch_for(cfg):
        rng = np.random.default_rng(0)
        parts = [prepare_camera(c, rng.integers(0, 256, (113, 200, 3), dtype=np.uint8),
                                cfg.image_size) for c in rig.cameras]
        return collate([features_from_parts(parts, EgoState(5.0, 0.0, 0.0), 2)])

    def runner(model, batch, channels_last=False, cache=True):
        b = dict(batch)
        if channels_last:
            imgs = b['images']
            b['images'] = imgs.flatten(0, 1).contiguous(
                memory_format=torch.channels_last).unflatten(0, imgs.shape[:2])

        if cache:   # what the Planner does: rays encoded once per calibration
            with torch.inference_mode():
                b['ray_encoding'] = model.encode_rays(b['intrinsics'], b['cam_to_base'],
                                                      tuple(b['images'].shape[-2:]))

        def run():
            with torch.inference_mode():
                model(b)
        return run

    torch.manual_seed(0)
    cfg = PlannerConfig()
    base = build_model(cfg).eval()
    fused = fuse_batch_norms(copy.deepcopy(base))
    fused_cl = copy.deepcopy(fused).to(memory_format=torch.channels_last)
    batch = batch_for(cfg)
    variants = {
        'model, plain (BN, NCHW, rays recomputed)': runner(base, batch, cache=False),
        '+ ray-encoding cache': runner(base, batch),
        '+ batch norm folded': runner(fused, batch),
        '+ channels-last (default path)': runner(fused_cl, batch, channels_last=True),
    }
    big_cfg = PlannerConfig(image_width=384, image_height=224)
    big = fuse_batch_norms(build_model(big_cfg).eval()).to(memory_format=torch.channels_last)
    variants['default path at 384x224 input'] = runner(big, batch_for(big_cfg),
                                                       channels_last=True)
    threads = {'1': 1, '2': 2}
    out = {}
    for label, n in threads.items():
        torch.set_num_threads(n)
        res = _interleaved(variants, repeats)
        out.update({f'{k} [{label} thread{"s" if n > 1 else ""}]': v for k, v in res.items()})
    return out


def run(args) -> int:
    print(f'[bench planner-stages] {os.cpu_count()} CPUs, load average '
          f'{" ".join(f"{x:.2f}" for x in os.getloadavg())}', flush=True)
    results = {'decode': _decode_stages(args.repeats), 'model': _model_stages(args.repeats),
               'loadavg_after': [round(x, 2) for x in os.getloadavg()]}
    for group in ('decode', 'model'):
        for name, ms in results[group].items():
            print(f'{name:<62} {ms:8.2f}' + ('' if 'kB' in name else ' ms'))
    print(f'load average after: {results["loadavg_after"]}')
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='vlmad bench planner-stages')
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
