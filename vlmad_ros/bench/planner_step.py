"""
`vlmad bench planner-step`: planner_node's step in one process, per decoder and precision.

From six 1600x900 JPEG messages (about nuScenes' size) to the plan's poses: decode (the CPU
decoder on `decode_threads` threads, or nvJPEG on the GPU), views at model resolution, the
model, the poses. These are the calls planner_node makes after a set is complete
(Planner.views or NvJpegDecoder.views, Planner.plan_views, plan_poses), without DDS, so it runs
where ROS 2 is not installed (a GPU training box). `vlmad bench planner` measures the node over
DDS. Variants are interleaved (A, B, A, B, ...); p50 / p90 / p99 are reported, with each
variant's largest waypoint difference from the first (same JPEGs, same weights).
"""
from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
import json
import os
import pathlib
import sys
import types
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch

CAMERA_SIZE = (1600, 900)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--checkpoint', default='', help='planner checkpoint (default: the '
                        'packaged default.pt; with --config: random weights of that model)')
    parser.add_argument('--config', default='', metavar='FILE',
                        help='training YAML whose model is built with random weights '
                        '(e.g. experiments/presets/nuscenes_resnet18_704x256.yaml)')
    parser.add_argument('--device', default='auto', help='cpu, cuda, cuda:N or auto')
    parser.add_argument('--decode-threads', type=int, default=2,
                        help="the CPU decoder's threads (planner_node decode_threads)")
    parser.add_argument('--num-threads', type=int, default=1,
                        help='torch intra-op threads (planner_node num_threads)')
    parser.add_argument('--repeats', type=int, default=100, help='timed steps per variant')
    parser.add_argument('--quality', type=int, default=94, help='JPEG quality of the frames '
                        '(94: about 290 kB, near nuScenes 1600x900 frames)')
    parser.add_argument('--cuda-graphs', action='store_true',
                        help='on CUDA, also the nvjpeg steps with the model replayed as CUDA '
                        'graphs (planner_node cuda_graphs: true)')
    parser.add_argument('--json', default='', help='also write the results here')


def camera_set(quality: int) -> List[types.SimpleNamespace]:
    """Six distinct 1600x900 street frames as CompressedImage-like messages."""
    from vlmad_ros.bench.feeder import road_scene
    from vlmad_ros.images import encode_jpeg
    return [types.SimpleNamespace(format='jpeg', data=encode_jpeg(
        road_scene(*CAMERA_SIZE, seed=100 * i), quality)) for i in range(6)]


def load_planner(args, fp16: bool, cuda_graphs: bool = False):
    from vlmad_ros.planner import Planner
    common = {'device': args.device, 'fp16': fp16, 'num_threads': args.num_threads,
              'cuda_graphs': cuda_graphs}
    if args.config:
        from vlmad_ros.data.cache_cli import model_configs
        return Planner.random(model_configs(args.config)[1], **common)
    return Planner.from_options(checkpoint=args.checkpoint, **common)


def step(planner, rig, msgs, decode: Callable) -> Callable[[], np.ndarray]:
    """One set, as planner_node plans it: decode, views, model, poses."""
    from vlmad_ros.planner import plan_poses
    from vlmad_ros.types import EgoState
    ego = EgoState(speed=8.0, yaw_rate=0.0, accel=0.0)

    def run():
        traj, _ = planner.plan_views(decode(planner, rig, msgs), ego, 2)
        plan_poses(traj)
        return traj.xy
    return run


def variants(args, rig, msgs) -> Tuple[object, Dict[str, Callable[[], np.ndarray]]]:
    """Return the fp32 planner and name -> step, for every decoder and precision here."""
    pool = ThreadPoolExecutor(args.decode_threads)

    def cpu_decode(planner, rig, msgs):
        return list(pool.map(planner.views, rig.cameras, msgs))

    planner = load_planner(args, fp16=False)
    out = {f'cpu decoder ({args.decode_threads} threads), fp32':
           step(planner, rig, msgs, cpu_decode)}
    if planner.device.type != 'cuda':
        return planner, out
    from vlmad_ros.gpu_decode import NvJpegDecoder
    gpu = NvJpegDecoder(planner.device)
    gpu.warm_up()

    def nvjpeg(planner, rig, msgs):
        return gpu.views(rig.cameras, msgs, planner.view_spec)

    half = load_planner(args, fp16=True)
    out['nvjpeg decoder, fp32'] = step(planner, rig, msgs, nvjpeg)
    out[f'cpu decoder ({args.decode_threads} threads), fp16'] = step(half, rig, msgs, cpu_decode)
    out['nvjpeg decoder, fp16'] = step(half, rig, msgs, nvjpeg)
    if args.cuda_graphs:
        for fp16 in (False, True):
            graphed = load_planner(args, fp16=fp16, cuda_graphs=True)
            out[f'nvjpeg decoder, {"fp16" if fp16 else "fp32"}, CUDA graphs'] = step(
                graphed, rig, msgs, nvjpeg)

    def decode_alone():
        nvjpeg(planner, rig, msgs)
        torch.cuda.synchronize(planner.device)
    out['(nvjpeg decode + views alone)'] = decode_alone
    return planner, out


def run(args) -> int:
    from vlmad_ros.bench.planner_stages import interleaved_times
    from vlmad_ros.rig import load_rig
    rig = load_rig('nuscenes')
    msgs = camera_set(args.quality)
    planner, steps = variants(args, rig, msgs)
    first = next(iter(steps.values()))()
    spread = {k: (float(np.abs(xy - first).max()) if xy is not None else None)  # None: no plan
              for k, xy in ((k, fn()) for k, fn in steps.items())}
    times = interleaved_times(steps, args.repeats, warm_up=5)
    result = {'model': planner.describe(), 'cpus': os.cpu_count(),
              'gpu': torch.cuda.get_device_name() if planner.device.type == 'cuda' else '',
              'torch': torch.__version__, 'jpeg_kB_mean': round(float(np.mean(
                  [len(m.data) for m in msgs])) / 1e3, 1),
              'repeats': args.repeats, 'load_average': list(os.getloadavg()), 'variants': {}}
    print(f'[bench planner-step] {result["model"]}; {result["gpu"] or "no GPU"}; '
          f'{result["cpus"]} CPUs; six {CAMERA_SIZE[0]}x{CAMERA_SIZE[1]} JPEGs of '
          f'{result["jpeg_kB_mean"]} kB')
    print(f'{"variant":<36} {"p50 ms":>8} {"p90 ms":>8} {"p99 ms":>8} {"max dxy m":>10}')
    for name, t in times.items():
        p50, p90, p99 = (float(np.percentile(t, q)) * 1e3 for q in (50, 90, 99))
        result['variants'][name] = {'p50_ms': round(p50, 3), 'p90_ms': round(p90, 3),
                                    'p99_ms': round(p99, 3), 'max_waypoint_diff_m': spread[name]}
        diff = '' if spread[name] is None else f'{spread[name]:10.4f}'
        print(f'{name:<36} {p50:8.2f} {p90:8.2f} {p99:8.2f} {diff}')
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='vlmad bench planner-step')
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
