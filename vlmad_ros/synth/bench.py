"""
`vlmad bench renderer`: six-camera render rate of the synthetic world on one core.

Wall-clock times depend on what else runs on the machine; the CPU time of the (pinned)
process is reported beside them, with the load average at the end of the run.

A seeded scene is simulated for a few seconds, then each measured frame steps the world by one
camera period (1/12 s) and renders all six cameras; JPEG encoding is timed separately. The
process is pinned to one CPU (where the OS allows it) so the number is the one-core rate the
closed loop can count on.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Dict

import numpy as np

from vlmad_ros.images import encode_jpeg
from vlmad_ros.rig import load_rig
from vlmad_ros.synth.render import Renderer
from vlmad_ros.synth.scenarios import make_world, SCENARIOS, SceneConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--width', type=int, default=800)
    parser.add_argument('--height', type=int, default=450)
    parser.add_argument('--frames', type=int, default=40, help='measured frames per scene')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    parser.add_argument('--scenario', choices=sorted(SCENARIOS), default='lead_brake')
    parser.add_argument('--jpeg-quality', type=int, default=90)
    parser.add_argument('--all-cores', action='store_true', help='do not pin to one CPU')
    parser.add_argument('--json', default='', help='also write the result here')


def bench_renderer(width: int = 800, height: int = 450, frames: int = 40, seeds=(0, 1),
                   scenario: str = 'lead_brake', jpeg_quality: int = 90) -> Dict:
    """Per-frame times (six cameras) of rendering and of JPEG encoding [ms]."""
    if frames < 1:
        raise ValueError(f'frames must be >= 1, got {frames}')
    rig = load_rig('nuscenes').scaled(width, height)
    render_ms, jpeg_ms, world_ms, render_cpu_ms = [], [], [], []
    for seed in seeds:
        world = make_world(np.random.default_rng(seed), SceneConfig(scenario=scenario))
        for _ in range(60):          # 3 s in: traffic has moved
            world.step(0.05)
        renderer = Renderer(rig)
        renderer.render(world)       # builds the scene renderer (not timed)
        for _ in range(frames):
            t0 = time.perf_counter()
            for _ in range(4):       # 1/12 s at the 48 Hz physics step
                world.step(1.0 / 48.0)
            t1 = time.perf_counter()
            c1 = time.process_time()
            images = renderer.render(world)
            t2 = time.perf_counter()
            render_cpu_ms.append(1000 * (time.process_time() - c1))
            for img in images:
                encode_jpeg(img, jpeg_quality)
            t3 = time.perf_counter()
            world_ms.append(1000 * (t1 - t0))
            render_ms.append(1000 * (t2 - t1))
            jpeg_ms.append(1000 * (t3 - t2))

    def stats(v):
        return {'mean': round(statistics.fmean(v), 2), 'p50': round(statistics.median(v), 2),
                'p95': round(float(np.percentile(v, 95)), 2)}

    render = stats(render_ms)
    cpu = stats(render_cpu_ms)
    return {'width': width, 'height': height, 'cameras': len(rig), 'frames': len(render_ms),
            'scenario': scenario, 'seeds': list(seeds), 'render_ms': render,
            'render_cpu_ms': cpu, 'render_cpu_hz': round(1000.0 / cpu['mean'], 1),
            'load_average_1min': round(os.getloadavg()[0], 2),
            'jpeg_ms': stats(jpeg_ms), 'world_step_ms_per_frame': stats(world_ms),
            'render_hz': round(1000.0 / render['mean'], 1),
            'render_jpeg_hz': round(1000.0 / (render['mean'] + stats(jpeg_ms)['mean']), 1)}


def run(args) -> int:
    pinned = None
    if not args.all_cores and hasattr(os, 'sched_setaffinity'):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        pinned = cpu
    result = bench_renderer(args.width, args.height, args.frames, tuple(args.seeds),
                            args.scenario, args.jpeg_quality)
    result['pinned_cpu'] = pinned
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        with open(args.json, 'w') as f:
            f.write(text + '\n')
    return 0


def main(args) -> int:
    """Run the benchmark (so the module also serves as a `vlmad` subcommand)."""
    return run(args)
