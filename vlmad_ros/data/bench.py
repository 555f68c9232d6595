"""
Data loader throughput: reading bags, JPEG decode + resize, the cache, and DataLoader batches.

`loader_benchmark()` measures, on the bags given (or on a generated bag of 1600x900 JPEGs
of nuScenes-like size when none are given):
- read: the reader's two passes (samples/s, images still compressed);
- digest: the content hash that keys the image cache (dataset.sample_digest);
- decode: six JPEG decodes (libjpeg-turbo at a reduced DCT scale) + resizes per sample on a
  pool of `threads` threads (the throughput goal: >= 100 samples/s on 2 cores);
- cache: building the dataset cache end to end (read + decode + write);
- loader: DataLoader batches from the cache with `workers` processes (pinned memory where
  CUDA is; one long shuffled pass), and from the JPEG bags without a cache, median of
  `repeats`;
- train (with --config): optimisation steps of that model on this CPU, so the two compare:
  the loader must not starve training.
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
import torch

from vlmad_ros import topics, types
from vlmad_ros.bagschema import bag_paths, BagWriter
from vlmad_ros.data import rosmsgs
from vlmad_ros.data.dataset import (BagDataset, build_cache, cache_key, collate, decode_images,
                                    sample_digest)
from vlmad_ros.data.reader import read_samples, ReaderConfig
from vlmad_ros.images import encode_jpeg
from vlmad_ros.planner import ViewSpec
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


def loader_benchmark(bags: Optional[Sequence] = None, image_size=(192, 112),
                     threads: int = 0, workers: int = -1, batch_size: int = 8,
                     seconds: float = 20.0, repeats: int = 3, train_config: str = '',
                     train_steps: int = 3, train_device: str = 'cpu') -> dict:
    """Measure every stage; returns samples/s per stage (loader and training: medians)."""
    threads = threads or os.cpu_count() or 1
    workers = (os.cpu_count() or 1) if workers < 0 else workers
    views = ViewSpec.of(image_size)
    with tempfile.TemporaryDirectory(prefix='vlmad-bench-loader-') as tmp:
        tmp = pathlib.Path(tmp)
        result = {'image_size': views.key(), 'threads': threads, 'workers': workers,
                  'repeats': repeats}
        if bags:
            paths = bag_paths(bags)
            result['bags'] = [str(p) for p in paths]
        else:
            result.update(make_bench_bag(tmp / 'bench_bag', seconds))
            paths = [tmp / 'bench_bag']
            result['bags'] = ['generated']
        result.update(_read_and_decode(paths, views, threads))

        start = time.perf_counter()
        for p in paths:
            build_cache(p, views, tmp / 'cache' / cache_key(p, views, ReaderConfig()),
                        ReaderConfig(), threads)
        result['cache_build_samples_per_s'] = result['samples'] / (time.perf_counter() - start)

        ds = BagDataset(paths, views, cache_dir=tmp / 'cache', build=False)
        pin = torch.cuda.is_available()
        result['pin_memory'] = pin
        common = {'batch_size': batch_size, 'num_workers': workers, 'pin_memory': pin,
                  'persistent_workers': workers > 0}
        # One long shuffled pass, as an epoch of a real data set is (a few dozen bench samples
        # in epochs of their own would time the workers' start of every epoch instead).
        sampler = torch.utils.data.RandomSampler(ds, replacement=True,
                                                 num_samples=max(400, 4 * batch_size * workers))
        cached = torch.utils.data.DataLoader(ds, collate_fn=collate, sampler=sampler, **common)
        _loader_rate(cached, 1)          # start the workers and touch every page once
        result['loader_samples_per_s'] = float(np.median(
            [_loader_rate(cached, 1) for _ in range(repeats)]))
        jpeg = torch.utils.data.DataLoader(_JpegSamples(paths, views), **common)
        result['jpeg_loader_samples_per_s'] = float(np.median(
            [_loader_rate(jpeg, min(len(ds), 100)) for _ in range(repeats)]))
        if train_config:
            result['train_batch_size'] = batch_size
            result.update(train_rate(ds, train_config, batch_size, train_steps, repeats,
                                     train_device))
        return result


def _read_and_decode(paths, views, threads: int) -> dict:
    """Time the reader's two passes, then the decodes + resizes of its samples."""
    result = {}
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
    start = time.perf_counter()
    for s in samples:
        sample_digest(s)
    result['digest_samples_per_s'] = n / (time.perf_counter() - start)
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        decode_images(samples[0], views)                  # warm-up
        start, cpu = time.perf_counter(), time.process_time()
        list(pool.map(lambda s: decode_images(s, views), samples))
        result['decode_resize_samples_per_s'] = n / (time.perf_counter() - start)
        # CPU time of all threads: what the stage costs whatever else runs on the machine.
        result['decode_resize_cpu_ms_per_sample'] = (time.process_time() - cpu) / n * 1e3
    return result


def _loader_rate(loader, at_least: int) -> float:
    """Samples/s of whole passes over a loader until `at_least` samples came out."""
    start, count = time.perf_counter(), 0
    while count < at_least:
        for batch in loader:
            count += len(batch[types.COMMAND])
    return count / (time.perf_counter() - start)


class _JpegSamples(torch.utils.data.IterableDataset):
    """
    Samples decoded from the bags on the fly, no cache: what training would read without it.

    An iterable dataset: each DataLoader worker reads the bags and decodes every n-th sample.
    """

    def __init__(self, paths, views):
        self.paths, self.views = paths, views

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        k, n = (info.id, info.num_workers) if info else (0, 1)
        for i, s in enumerate(s for p in self.paths for s in read_samples(p)):
            if i % n == k:
                images = decode_images(s, self.views)[0]
                yield {types.IMAGES: torch.from_numpy(images),
                       types.COMMAND: torch.tensor(int(s.command))}


def train_rate(ds, config: str, batch_size: int, steps: int, repeats: int,
               device: str = 'cpu') -> dict:
    """
    Training samples/s of the config's model (planner + VLM-AD heads) on `device`.

    As `vlmad train` sets it up there: the config's precision (auto: bf16 on a GPU, fp32 on a
    CPU) and channels-last on CUDA. Batches are collated and moved beforehand so only the
    optimisation step is timed; teacher text embeddings are zero (no text encoder here), the
    heads still run forward and backward.
    """
    from vlmad_ros.data.cache_cli import model_configs
    from vlmad_ros.model.planner_model import build_model
    from vlmad_ros.model.vlmad import VLMADModel
    from vlmad_ros.training.data import TextCollate
    from vlmad_ros.training.loop import make_optimizer, Precision, train_step
    tc, pc, vc = model_configs(config)
    dev = torch.device(device)
    model = VLMADModel(build_model(pc), vc).train().to(dev)
    if tc.channels_last and dev.type == 'cuda':
        model = model.to(memory_format=torch.channels_last)
    optimizer, scheduler = make_optimizer(model, tc, 10 ** 6)
    precision = Precision(tc.precision, tc.amp, dev)
    text = TextCollate({}, vc.text_dim)
    batch = {k: (v.to(dev) if torch.is_tensor(v) else v)
             for k, v in text([ds[i % len(ds)] for i in range(batch_size)]).items()}

    def timed_steps(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            logs = train_step(model, model, batch, optimizer, scheduler, precision,
                              tc.grad_clip)
        float(next(iter(logs.values())))         # wait for the device
        return n * batch_size / (time.perf_counter() - start)
    timed_steps(2)                                # warm-up (cuDNN autotune, allocator)
    return {'train_samples_per_s': float(np.median([timed_steps(steps)
                                                    for _ in range(repeats)])),
            'train_device': str(dev), 'train_precision': precision.name,
            'train_params_m': round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--bags', nargs='*', default=None,
                        help='bags or folders (default: a generated 1600x900 bag)')
    parser.add_argument('--config', default='', metavar='FILE',
                        help='training YAML: its model views are measured (over --width, '
                        '--height) and its model trains for train_samples_per_s')
    parser.add_argument('--width', type=int, default=192, help='model input width [px]')
    parser.add_argument('--height', type=int, default=112, help='model input height [px]')
    parser.add_argument('--threads', type=int, default=0,
                        help='decode threads (default 0: every core)')
    parser.add_argument('--workers', type=int, default=-1,
                        help='DataLoader workers (default -1: every core)')
    parser.add_argument('--batch-size', type=int, default=8, help='loader and training batch')
    parser.add_argument('--repeats', type=int, default=3, help='repeats; medians reported')
    parser.add_argument('--train-steps', type=int, default=3, help='training steps per repeat')
    parser.add_argument('--train-device', default='cpu',
                        help='device the --config model trains on (cpu, cuda, cuda:N)')
    parser.add_argument('--seconds', type=float, default=20.0,
                        help='length of the generated bag [s]')
    parser.add_argument('--json', default=None, help='also write the result here')


def run(args) -> int:
    """Run the benchmark (`vlmad bench loader`); prints one `key: value` line per result."""
    from vlmad_ros.planner import resolve_device
    try:
        resolve_device(args.train_device)
    except ValueError as err:
        raise ValueError(f'--train-device: {err}') from None
    size = (args.width, args.height)
    if args.config:
        from vlmad_ros.data.cache_cli import model_configs
        size = model_configs(args.config)[1]
    load = os.getloadavg()[0]
    result = loader_benchmark(args.bags, size, args.threads, args.workers, args.batch_size,
                              args.seconds, args.repeats, args.config, args.train_steps,
                              args.train_device)
    print(f'load average before: {load:.2f} ({os.cpu_count()} cores; wall rates drop '
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
