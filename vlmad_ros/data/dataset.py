"""
A torch Dataset over driving bags: keyframe samples as the model's batch keys (types.py).

Decoding six JPEGs per sample every epoch would cost more CPU than the model on 2 cores, so the
first use of a bag builds an on-disk cache: the samples the reader yields, images decoded
(libjpeg-turbo at a reduced DCT scale), resized to the model resolution and stored as one raw
uint8 file (N, cameras, 3, H, W) plus small metadata arrays. Items are then memory-map slices:
DataLoader workers open the map lazily in their own process, nothing is shared or locked.
A cache is keyed by the bag's files (size, mtime; a sidecar's and its source's), the resolution
and the reader settings, built in a temporary folder and renamed into place, so crashes and
concurrent runs never leave a half cache behind.
"""
from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from vlmad_ros import types
from vlmad_ros.bagschema import bag_paths, BagError, sidecar_source
from vlmad_ros.data.reader import (action_labels, RawSample, read_samples, ReaderConfig,
                                   ReadStats, skip_bag)
from vlmad_ros.images import ImageConversionError
from vlmad_ros.planner import camera_features, ImageSizeError, order_views, ViewSpec
from vlmad_ros.types import PLAN_STEPS

CACHE_VERSION = 1
# Extra (non-tensor) item keys: the teacher's three texts (the training engineer embeds them),
# the sample token and the scenario name.
TEXTS = 'texts'
TOKEN = 'token'
SCENARIO = 'scenario'
STAMP = 'stamp_ns'


def default_cache_dir() -> pathlib.Path:
    env = os.environ.get('VLMAD_CACHE')
    base = pathlib.Path(env) if env else pathlib.Path.home() / '.cache' / 'vlmad_ros'
    return base / 'samples'


def _check_size(image_size) -> ViewSpec:
    """(width, height), a PlannerConfig or a ViewSpec -> ViewSpec (errors name image_size)."""
    try:
        views = ViewSpec.of(image_size)
        w, h = views.image_size
    except (TypeError, ValueError):
        raise ValueError(f'image_size must be (width, height), got {image_size!r}') from None
    if w < 8 or h < 8:
        raise ValueError(f'image_size must be at least 8x8 pixels, got {w}x{h}')
    return views


def decode_images(sample: RawSample, size) -> Tuple[np.ndarray, ...]:
    """
    Decode a sample's cameras into the model's views (ViewSpec), exactly as planner_node does.

    Returns images (V, 3, H, W) uint8, intrinsics (V, 3, 3) and cam_to_base (V, 4, 4).
    """
    views = ViewSpec.of(size)
    per_camera = [camera_features(cam, msg, views.image_size, views.zoom, views.zoom_camera)
                  for cam, msg in zip(sample.rig.cameras, sample.images)]
    parts = order_views(per_camera)
    return tuple(np.stack([p[i] for p in parts]) for i in range(3))


def cache_key(bag: pathlib.Path, size, config: ReaderConfig) -> str:
    """
    Name a bag's cache: it changes with the bag's files, views, reader and format.

    A sidecar's key covers its source's files too (BagError when the source is missing).
    """
    bag = bag.resolve()
    parts = [str(CACHE_VERSION), str(bag), ViewSpec.of(size).key(), repr(config)]
    source = sidecar_source(bag)
    for part in [bag] + ([source] if source is not None else []):
        files = sorted(part.iterdir()) if part.is_dir() else [part]
        parts += [f'{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}'
                  for f in files if f.is_file()]
    digest = hashlib.sha1('\n'.join(parts).encode()).hexdigest()[:16]
    return f'{bag.name}-{digest}'


def build_cache(bag, size, out_dir, config: Optional[ReaderConfig] = None,
                threads: int = 2) -> pathlib.Path:
    """Decode one bag's samples into `out_dir` (created atomically); returns out_dir."""
    config = config or ReaderConfig()
    size = _check_size(size)
    out_dir = pathlib.Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=out_dir.name + '.tmp-', dir=out_dir.parent))
    try:
        _write_cache(pathlib.Path(bag), size, tmp, config, threads)
        try:
            os.rename(tmp, out_dir)
        except OSError:       # another process finished the same cache first: keep theirs
            if not (out_dir / 'meta.json').is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _write_cache(bag: pathlib.Path, size, tmp: pathlib.Path, config: ReaderConfig,
                 threads: int) -> None:
    stats = ReadStats()
    rows: Dict[str, list] = collections.defaultdict(list)
    meta: Dict[str, list] = collections.defaultdict(list)
    n_cams = len(config.camera_names) + (1 if size.zoom else 0)
    with open(tmp / 'images.u8', 'wb') as images, \
            concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
        pending: List[Tuple[RawSample, concurrent.futures.Future]] = []

        def flush(keep: int) -> None:
            while len(pending) > keep:
                sample, future = pending.pop(0)
                try:
                    decoded, intrinsics, cam_to_base = future.result()
                except (ImageConversionError, ImageSizeError) as err:
                    stats.bad_messages[f'image_{err.reason}'] += 1
                    continue
                images.write(decoded.tobytes())
                rows['intrinsics'].append(intrinsics.astype(np.float32))
                rows['cam_to_base'].append(cam_to_base.astype(np.float32))
                _add_rows(rows, meta, sample)

        # Decode a few samples ahead in the pool while this thread reads the bag.
        for sample in read_samples(bag, config, stats):
            pending.append((sample, pool.submit(decode_images, sample, size)))
            flush(keep=2 * max(1, threads))
        flush(keep=0)
    n = len(meta[TOKEN])
    stats.samples = n
    arrays = {k: np.asarray(v) for k, v in rows.items() if k != 'boxes'}
    boxes = rows['boxes']
    offsets = np.cumsum([0] + [b.shape[1] for b in boxes]).astype(np.int64)
    flat = (np.concatenate([b.transpose(1, 0, 2) for b in boxes], axis=0) if boxes
            else np.zeros((0, PLAN_STEPS, 5), np.float32))
    if n == 0:
        arrays = {}
    np.savez(tmp / 'arrays.npz', boxes=flat.astype(np.float32), box_offsets=offsets, **arrays)
    info = dict(meta)
    info.update(count=n, cameras=n_cams, width=size.image_size[0], height=size.image_size[1],
                views=size.key(), bag=str(bag),
                version=CACHE_VERSION, stats=stats.as_dict())
    (tmp / 'meta.json').write_text(json.dumps(info))


def _add_rows(rows: dict, meta: dict, s: RawSample) -> None:
    rows['ego'].append(s.ego.as_array())
    rows['command'].append(int(s.command))
    rows['command_from_bag'].append(bool(s.command_from_bag))
    rows['traj'].append(s.trajectory.xy)
    rows['heading'].append(s.trajectory.heading)
    rows['action_labels'].append(action_labels(s.reasoning))
    rows['text_valid'].append(s.reasoning is not None)
    rows['stamp_ns'].append(int(s.stamp_ns))
    rows['boxes'].append(np.asarray(s.future_boxes, np.float32).reshape(PLAN_STEPS, -1, 5))
    meta[TOKEN].append(s.token)
    meta[SCENARIO].append(s.scenario)
    meta['scene'].append(s.scene)
    meta[TEXTS].append(list(s.reasoning.texts) if s.reasoning else None)
    meta['teacher'].append(s.reasoning.teacher if s.reasoning else '')


class _BagCache:
    """One bag's cache: metadata in memory, images memory-mapped on first use per process."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.meta = json.loads((path / 'meta.json').read_text())
        with np.load(path / 'arrays.npz') as z:
            self.arrays = {k: z[k] for k in z.files}
        self.count = int(self.meta['count'])
        self._images = None
        self._pid = None

    def images(self) -> np.ndarray:
        if self._images is None or self._pid != os.getpid():
            shape = (self.count, self.meta['cameras'], 3, self.meta['height'], self.meta['width'])
            self._images = np.memmap(self.path / 'images.u8', dtype=np.uint8, mode='r',
                                     shape=shape)
            self._pid = os.getpid()
        return self._images

    def __getstate__(self):
        state = dict(self.__dict__)
        state['_images'] = None      # each worker maps the file itself
        return state


class BagDataset(torch.utils.data.Dataset):
    """
    Keyframe samples of one or more bags, at image_size=(width, height).

    Items: dict with types.IMAGES (C, 3, H, W) uint8, INTRINSICS (C, 3, 3) scaled to the images,
    CAM_TO_BASE (C, 4, 4), EGO (3,), COMMAND (), TRAJ (6, 2), HEADING (6,), FUTURE_BOXES
    (6, N, 5) NaN-padded, TEXT_VALID (), ACTION_LABELS (3,), and TEXTS / TOKEN / SCENARIO.
    """

    def __init__(self, bags, image_size: Tuple[int, int], cache_dir=None,
                 reader_config: Optional[ReaderConfig] = None, threads: int = 2,
                 verbose: bool = False):
        self.image_size = _check_size(image_size)
        self.reader_config = reader_config or ReaderConfig()
        cache_root = pathlib.Path(cache_dir) if cache_dir else default_cache_dir()
        paths = bag_paths([bags] if isinstance(bags, (str, os.PathLike)) else bags)
        self.caches: List[_BagCache] = []
        self.stats = ReadStats()
        for k, bag in enumerate(paths, 1):
            try:
                out = cache_root / cache_key(bag, self.image_size, self.reader_config)
                if not (out / 'meta.json').is_file():
                    if verbose:
                        print(f'[data] caching {bag} at {self.image_size.key()} '
                              f'({k}/{len(paths)})', flush=True)
                    build_cache(bag, self.image_size, out, self.reader_config, threads)
            except BagError as err:   # named on stderr and in stats; the others are used
                skip_bag(err, self.stats)
                continue
            self.caches.append(_BagCache(out))
        counts = [c.count for c in self.caches]
        self._starts = np.cumsum([0] + counts)
        for c in self.caches:
            self.stats.add(_stats_from_dict(c.meta['stats']))

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _locate(self, index: int) -> Tuple[_BagCache, int]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f'sample index {index} out of range 0..{len(self) - 1}')
        b = int(np.searchsorted(self._starts, index, side='right')) - 1
        return self.caches[b], index - int(self._starts[b])

    def __getitem__(self, index: int) -> dict:
        cache, i = self._locate(int(index))
        a = cache.arrays
        lo, hi = a['box_offsets'][i], a['box_offsets'][i + 1]
        return {
            types.IMAGES: torch.from_numpy(np.array(cache.images()[i])),
            types.INTRINSICS: torch.from_numpy(a['intrinsics'][i]),
            types.CAM_TO_BASE: torch.from_numpy(a['cam_to_base'][i]),
            types.EGO: torch.from_numpy(a['ego'][i]),
            types.COMMAND: torch.tensor(int(a['command'][i]), dtype=torch.int64),
            types.TRAJ: torch.from_numpy(a['traj'][i]),
            types.HEADING: torch.from_numpy(a['heading'][i]),
            types.FUTURE_BOXES: torch.from_numpy(a['boxes'][lo:hi].transpose(1, 0, 2).copy()),
            types.TEXT_VALID: torch.tensor(bool(a['text_valid'][i])),
            types.ACTION_LABELS: torch.from_numpy(a['action_labels'][i]),
            TEXTS: tuple(cache.meta[TEXTS][i]) if cache.meta[TEXTS][i] else ('', '', ''),
            TOKEN: cache.meta[TOKEN][i],
            SCENARIO: cache.meta[SCENARIO][i],
            STAMP: int(a['stamp_ns'][i]),
        }


def _stats_from_dict(d: dict) -> ReadStats:
    stats = ReadStats(**{k: v for k, v in d.items() if k != 'bad_messages'})
    stats.bad_messages.update(d.get('bad_messages', {}))
    return stats


def collate(batch: List[dict]) -> dict:
    """Stack items; FUTURE_BOXES padded with NaN rows to the batch's largest agent count."""
    out = {}
    for key in batch[0]:
        values = [item[key] for item in batch]
        if key == types.FUTURE_BOXES:
            n = max(v.shape[1] for v in values)
            padded = torch.full((len(values), PLAN_STEPS, n, 5), float('nan'))
            for b, v in enumerate(values):
                padded[b, :, :v.shape[1]] = v
            out[key] = padded
        elif isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        else:
            out[key] = list(values)
    return out
