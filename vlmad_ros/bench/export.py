"""
`vlmad bench export`: the planner's torch and onnxruntime backends on the same camera sets.

In one process, interleaved (torch, onnxruntime, torch, ...) so a shared machine slows both
alike. Times one `Planner.run_batch` of a prepared batch (the model step; decoding is the same
for both backends) and reports median, p10 and p90 in ms, and the largest waypoint difference.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time
from typing import Dict, List

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--checkpoint', default='', help='planner checkpoint (default: the '
                        'packaged default; with --backbone: random weights at --width/--height)')
    parser.add_argument('--backbone', default='', help='cnn, resnet18, resnet34 or resnet50: '
                        'a random-weight model instead of a checkpoint')
    parser.add_argument('--width', type=int, default=704)
    parser.add_argument('--height', type=int, default=256)
    parser.add_argument('--threads', type=int, default=2, help='intra-op threads, both backends')
    parser.add_argument('--batch', type=int, default=1, help='camera sets per run')
    parser.add_argument('--repeats', type=int, default=100, help='timed runs per backend')
    parser.add_argument('--json', default='', help='also write the results here')


def _model(args):
    from vlmad_ros.model import load_checkpoint, PlannerConfig
    from vlmad_ros.model.checkpoint import default_checkpoint
    from vlmad_ros.model.planner_model import build_model
    from vlmad_ros.rig import load_rig
    if args.backbone:
        import torch
        torch.manual_seed(0)
        model = build_model(PlannerConfig(backbone=args.backbone, image_width=args.width,
                                          image_height=args.height)).eval()
        return model, load_rig('nuscenes'), f'random {args.backbone} {args.width}x{args.height}'
    path = args.checkpoint or default_checkpoint()
    if path is None:
        raise FileNotFoundError('no --checkpoint and no packaged default checkpoint')
    model = load_checkpoint(path)
    return model, model.rig or load_rig('nuscenes'), str(path)


def _stats(times: List[float]) -> Dict[str, float]:
    ms = np.asarray(times) * 1e3
    return {'median_ms': round(float(np.median(ms)), 2),
            'p10_ms': round(float(np.percentile(ms, 10)), 2),
            'p90_ms': round(float(np.percentile(ms, 90)), 2)}


def run(args) -> int:
    from vlmad_ros.export import export_onnx, OnnxPlanner
    from vlmad_ros.planner import Planner, prepare_batch
    from vlmad_ros.types import EgoState, Observation
    model, rig, source = _model(args)
    rng = np.random.default_rng(0)
    obs = [Observation(images=[rng.integers(0, 256, (c.height, c.width, 3), dtype=np.uint8)
                               for c in rig.cameras], rig=rig, ego=EgoState(5.0, 0.1, 0.0))
           for _ in range(args.batch)]
    batch = prepare_batch(obs, model.config)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, rig, pathlib.Path(tmp) / 'planner.onnx')
        backends = {'torch': Planner(model, num_threads=args.threads, source=source),
                    'onnxruntime': OnnxPlanner(onnx_path, num_threads=args.threads)}
        outs = {k: p.run_batch(batch) for k, p in backends.items()}   # warm-up
        times: Dict[str, List[float]] = {k: [] for k in backends}
        for _ in range(args.repeats):
            for name, planner in backends.items():
                t = time.perf_counter()
                planner.run_batch(batch)
                times[name].append(time.perf_counter() - t)
    diff = float(np.abs(outs['torch']['traj'] - outs['onnxruntime']['traj']).max())
    res = {'model': source, 'input': f'{model.config.num_views} x {model.config.image_width}x'
           f'{model.config.image_height}', 'batch': args.batch, 'threads': args.threads,
           'repeats': args.repeats, 'cpus': os.cpu_count(),
           'backends': {k: _stats(v) for k, v in times.items()},
           'max_waypoint_difference_m': diff,
           'loadavg_after': [round(x, 2) for x in os.getloadavg()]}
    print(f'[bench export] {res["model"]}: {res["input"]}, batch {args.batch}, '
          f'{args.threads} threads, {args.repeats} interleaved runs each')
    for name, st in res['backends'].items():
        print(f'  {name:<12} median {st["median_ms"]:8.2f} ms   p10 {st["p10_ms"]:8.2f}   '
              f'p90 {st["p90_ms"]:8.2f}')
    print(f'  max waypoint difference {diff:.2e} m; load average after {res["loadavg_after"]}')
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='vlmad bench export')
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
