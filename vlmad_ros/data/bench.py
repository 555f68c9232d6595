"""
Data loader throughput: reading bags, JPEG decode + resize, the cache, and DataLoader batches.

`loader_benchmark()` measures, on the bags given (or on a generated bag of 1600x900 JPEGs
of nuScenes-like size when none are given):
- read: the reader's two passes (samples/s, images still compressed);
- decode: six JPEG decodes (libjpeg-turbo at a reduced DCT scale) + resizes per sample on a
  pool of `threads` threads (the throughput goal: >= 100 samples/s on 2 cores);
- cache: building the dataset cache end to end (read + decode + write);
- loader: DataLoader batches from the cache with `workers` processes.
Hook: `vlmad bench loader` -> add_arguments / run here (vlmad_ros/bench/cli.py BENCHES).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import tempfile
import time
from typing import Optional, Sequence, Tuple

import numpy as np

from vlmad_ros import topics
from vlmad_ros.bagschema import bag_paths, BagWriter
from vlmad_ros.data import rosmsgs
from vlmad_ros.data.dataset import BagDataset, build_cache, cache_key, collate, decode_images
from vlmad_ros.data.reader import read_samples, ReaderConfig
from vlmad_ros.images import encode_jpeg
from vlmad_ros.rig import load_rig

NS = 1_000_000_000


def _street_image(rng: np.random.Generator, size: Tuple[int, int]) -> np.ndarray:
    """Draw a street-like frame (sky, road, blocks, texture) as large as a real JPEG."""
    w, h = size
    y = np.linspace(0, 1, h)[:, None, None]
    sky = np.array([120, 160, 220]) * (1 - 0.4 * y)
    img = np.broadcast_to(sky, (h, w, 3)).copy()
    img[h // 2:] = [90, 90, 95]
    for _ in range(40):
        x0, y0 = rng.integers(0, w), rng.integers(0, h // 2 + h // 6)
        bw, bh = rng.integers(w // 40, w // 6), rng.integers(h // 20, h // 3)
        img[y0:y0 + bh, x0:x0 + bw] = rng.integers(30, 230, 3)
    img += rng.normal(0, 4, img.shape)                     # sensor noise and texture
    return np.clip(img, 0, 255).astype(np.uint8)


def make_bench_bag(path, seconds: float = 10.0, size: Tuple[int, int] = (1600, 900),
                   seed: int = 0) -> dict:
    """Write a bag of the layout (cameras at 12 Hz, 2 Hz keyframes, 50 Hz straight driving)."""
    rng = np.random.default_rng(seed)
    rig = load_rig('nuscenes').scaled(*size)
    frames = [encode_jpeg(_street_image(rng, size), 90) for _ in range(12)]
    t0 = 1_700_000_000 * NS
    events = [(t0, 0, topics.TF_STATIC, rosmsgs.tf_message([
        rosmsgs.transform_stamped(t0, topics.BASE_FRAME, topics.camera_optical_frame(c.name),
                                  c.translation, c.rotation_wxyz) for c in rig.cameras]))]
    for k in range(int(seconds * 50) + 1):
        s = t0 + k * NS // 50
        events.append((s, 1, topics.ODOM, rosmsgs.odometry(
            s, topics.MAP_FRAME, topics.BASE_FRAME, (5.0 * k / 50, 0, 0), (1, 0, 0, 0),
            (5.0, 0, 0), (0, 0, 0))))
    for k in range(int(seconds * 12)):
        for c, cam in enumerate(rig.cameras):
            s = t0 + k * NS // 12 + c * 8_000_000
            events.append((s, 2, topics.CAMERA_IMAGE_TOPICS[c], rosmsgs.compressed_image(
                s, topics.camera_optical_frame(cam.name), frames[(k + c) % len(frames)])))
            events.append((s, 2, topics.CAMERA_INFO_TOPICS[c], rosmsgs.camera_info(s, cam)))
        if k % 6 == 0:
            s = t0 + k * NS // 12
            events.append((s, 3, topics.KEYFRAME, rosmsgs.keyframe(
                s, topics.BASE_FRAME, f'bench_{k}', 'bench', '')))
    with BagWriter(path) as bag:
        for s, _, topic, msg in sorted(events, key=lambda e: (e[0], e[1])):
            bag.write(topic, msg, s)
    return {'jpeg_bytes_mean': float(np.mean([len(f) for f in frames])),
            'source_size': list(size)}


def loader_benchmark(bags: Optional[Sequence] = None, image_size: Tuple[int, int] = (192, 112),
                     threads: int = 2, workers: int = 2, batch_size: int = 8,
                     seconds: float = 20.0) -> dict:
    """Measure the four stages; returns samples/s per stage and what was measured on."""
    with tempfile.TemporaryDirectory(prefix='vlmad-bench-loader-') as tmp:
        tmp = pathlib.Path(tmp)
        result = {'image_size': list(image_size), 'threads': threads, 'workers': workers}
        if bags:
            paths = bag_paths(bags)
            result['bags'] = [str(p) for p in paths]
        else:
            result.update(make_bench_bag(tmp / 'bench_bag', seconds))
            paths = [tmp / 'bench_bag']
            result['bags'] = ['generated']

        start, cpu = time.perf_counter(), time.process_time()
        samples = [s for p in paths for s in read_samples(p)]
        read_s = time.perf_counter() - start
        n = len(samples)
        if n == 0:
            raise ValueError('the bags hold no complete samples to measure')
        result['samples'] = n
        result['jpeg_bytes_mean'] = float(np.mean([len(m.data) for s in samples
                                                   for m in s.images]))
        result['read_samples_per_s'] = n / read_s
        result['read_cpu_ms_per_sample'] = (time.process_time() - cpu) / n * 1e3

        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            decode_images(samples[0], image_size)                  # warm-up
            start, cpu = time.perf_counter(), time.process_time()
            list(pool.map(lambda s: decode_images(s, image_size), samples))
            result['decode_resize_samples_per_s'] = n / (time.perf_counter() - start)
            # CPU time of all threads: what the stage costs whatever else runs on the machine.
            result['decode_resize_cpu_ms_per_sample'] = (time.process_time() - cpu) / n * 1e3
        del samples

        start = time.perf_counter()
        config = ReaderConfig()
        for p in paths:
            build_cache(p, image_size, tmp / 'cache' / cache_key(p, image_size, config),
                        config, threads)
        result['cache_build_samples_per_s'] = n / (time.perf_counter() - start)

        import torch
        ds = BagDataset(paths, image_size, cache_dir=tmp / 'cache')
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=workers,
                                             collate_fn=collate, shuffle=True,
                                             persistent_workers=workers > 0)
        for _ in loader:                 # start the workers and touch every page once
            pass
        start = time.perf_counter()
        count = 0
        while count < 400:
            for batch in loader:
                count += len(batch['command'])
        result['loader_samples_per_s'] = count / (time.perf_counter() - start)
        return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--bags', nargs='*', default=None,
                        help='bags or folders (default: a generated 1600x900 bag)')
    parser.add_argument('--width', type=int, default=192, help='model input width [px]')
    parser.add_argument('--height', type=int, default=112, help='model input height [px]')
    parser.add_argument('--threads', type=int, default=2, help='decode threads')
    parser.add_argument('--workers', type=int, default=2, help='DataLoader workers')
    parser.add_argument('--seconds', type=float, default=20.0,
                        help='length of the generated bag [s]')
    parser.add_argument('--json', default=None, help='also write the result here')


def run(args) -> int:
    """Run the benchmark (`vlmad bench loader`); prints one `key: value` line per result."""
    result = loader_benchmark(args.bags, (args.width, args.height), args.threads, args.workers,
                              seconds=args.seconds)
    print(f'load average before: {os.getloadavg()[0]:.2f} (2 cores shared: wall rates drop '
          'with load; cpu_ms_per_sample does not)')
    for key, value in result.items():
        print(f'{key}: {value:.1f}' if isinstance(value, float) else f'{key}: {value}')
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == '__main__':
    import sys
    _parser = argparse.ArgumentParser(prog='python -m vlmad_ros.data.bench')
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
