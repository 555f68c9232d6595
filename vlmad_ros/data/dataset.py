"""
A torch Dataset over driving bags: keyframe samples as the model's batch keys (types.py).

Decoding six JPEGs per sample every epoch would cost more CPU than the model on 2 cores, so the
first use of a bag builds an on-disk cache: the samples the reader yields, images decoded
(libjpeg-turbo at a reduced DCT scale), resized to the model resolution and stored as one raw
uint8 file (N, cameras, 3, H, W) plus small metadata arrays. Items are then memory-map slices:
DataLoader workers open the map lazily in their own process, nothing is shared or locked.
Two levels, so that only what changed is redone:
- the sample cache (per bag; cache_key: the bag's path, files' size and mtime (a sidecar's
  and its source's), views, reader settings): targets, calibration-free metadata, teacher
  records, and the name of its image store. A touched or re-annotated bag rebuilds it with
  one read pass and no decode;
- the image store (image_root, named by content: sample_digest of every row): decoded views,
  intrinsics and poses. A build reuses the rows of any store that begins with the same first
  sample, so only changed pictures are decoded, and an unchanged bag writes no image byte.
Both are built in a temporary folder and renamed into place, so crashes and concurrent runs
never leave a half cache behind. `build_caches` builds many bags on every core (`vlmad cache
build`), before training.
"""
from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import json
import multiprocessing
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

CACHE_VERSION = 4   # 4: light_state and light_change per sample
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
    per_camera = [camera_features(cam, msg, views)
                  for cam, msg in zip(sample.rig.cameras, sample.images)]
    parts = order_views(per_camera)
    return tuple(np.stack([p[i] for p in parts]) for i in range(3))


def cache_key(bag: pathlib.Path, size, config: ReaderConfig) -> str:
    """
    Name a bag's sample cache: it changes with the bag's files, views, reader and format.

    Cheap (file sizes and mtimes), so every start finds its caches without reading a bag. The
    sample cache holds only what a read pass gives (targets, teacher records, the name of the
    image folder): rebuilding it after a touch or a re-annotation costs one read, no decode.
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


def sample_digest(sample: RawSample) -> bytes:
    """
    Hash what a sample's decoded views depend on, besides the view spec.

    Per camera: its calibration and its image message (format or encoding, size, data bytes).

    Stamps, teacher records, odometry and the bag's files are left out on purpose, so a
    touched, re-annotated or re-recorded bag with the same pictures reuses its decoded rows.
    Hashing the compressed bytes (blake2b, ~1 GB/s) costs far less than decoding them.
    """
    h = hashlib.blake2b(digest_size=16)
    for cam, msg in zip(sample.rig.cameras, sample.images):
        h.update(repr(cam).encode())
        for field in ('format', 'encoding', 'width', 'height', 'step', 'is_bigendian'):
            if hasattr(msg, field):
                h.update(f'{field}={getattr(msg, field)!r};'.encode())
        h.update(np.ascontiguousarray(msg.data, dtype=np.uint8))
    return h.digest()


def image_root(cache_root, size) -> pathlib.Path:
    """Folder of the decoded-image stores of one view spec (content-named subfolders)."""
    return pathlib.Path(cache_root) / 'images' / f'v{CACHE_VERSION}-{ViewSpec.of(size).key()}'


class _ImageStore:
    """
    Decoded rows of one bag: images.u8 (N, V, 3, H, W), calib.npz, index.json (row digests).

    Named `<first row digest>-<digest of all rows>`: content, not path or mtime, so a build
    finds the stores that may hold its rows from its first sample alone.
    """

    def __init__(self, path: pathlib.Path):
        self.path = path
        index = json.loads((path / 'index.json').read_text())
        self.digests = [bytes.fromhex(d) for d in index['digests']]
        self.shape = tuple(index['shape'])
        self._calib = None
        self._images = None
        self._pid = None

    @property
    def count(self) -> int:
        return len(self.digests)

    def calib(self) -> Dict[str, np.ndarray]:
        if self._calib is None:
            with np.load(self.path / 'calib.npz') as z:
                self._calib = {k: z[k] for k in z.files}
        return self._calib

    def images(self) -> np.ndarray:
        """Map the rows, on first use in each process (DataLoader workers)."""
        if self._images is None or self._pid != os.getpid():
            self._images = np.memmap(self.path / 'images.u8', dtype=np.uint8, mode='r',
                                     shape=self.shape)
            self._pid = os.getpid()
        return self._images

    def __getstate__(self):
        state = dict(self.__dict__)
        state['_images'] = None      # each worker maps the file itself
        return state


class _ImageWriter:
    """
    Collect a bag's rows in order: decoded ones, or ones reused from earlier stores.

    While the rows so far are the prefix of one earlier store nothing is written; a bag
    whose pictures did not change ends up naming that store and writes no image byte.
    """

    def __init__(self, root: pathlib.Path, row_shape: tuple):
        self.root, self.row_shape = root, row_shape
        self.digests: List[bytes] = []
        self.calib: Dict[str, list] = collections.defaultdict(list)
        self.rows: Dict[bytes, Tuple[_ImageStore, int]] = {}
        self.matches: List[_ImageStore] = []
        self.file = None
        self.tmp: Optional[pathlib.Path] = None
        self.decoded = self.reused = 0
        self.searched = False

    def find(self, first: bytes) -> None:
        """Load the stores that begin with this row (same views): candidates for reuse."""
        self.searched = True
        for path in sorted(self.root.glob(f'{first.hex()}-*')):
            if (path / 'index.json').is_file():
                store = _ImageStore(path)
                if store.shape[1:] == self.row_shape:
                    self.matches.append(store)
                    for i, d in enumerate(store.digests):
                        self.rows.setdefault(d, (store, i))

    def reusable(self, digest: bytes) -> bool:
        return digest in self.rows

    def add(self, digest: bytes, decoded=None) -> None:
        """Append a row: decoded=(images, intrinsics, cam_to_base), or None to reuse it."""
        i = len(self.digests)
        if decoded is None:
            store, row = self.rows[digest]
            calib = store.calib()
            image, intr, c2b = None, calib['intrinsics'][row], calib['cam_to_base'][row]
            self.reused += 1
        else:
            image, intr, c2b = decoded
            self.decoded += 1
        self.calib['intrinsics'].append(intr.astype(np.float32))
        self.calib['cam_to_base'].append(c2b.astype(np.float32))
        self.matches = [m for m in self.matches if m.count > i and m.digests[i] == digest]
        if self.file is None and self.matches:
            self.digests.append(digest)
            return                               # still an earlier store's prefix
        if self.file is None:
            self._open(i)
        if image is None:
            store, row = self.rows[digest]
            image = store.images()[row]
        self.file.write(np.ascontiguousarray(image, np.uint8).tobytes())
        self.digests.append(digest)

    def _open(self, prefix: int) -> None:
        """Start images.u8 in a temporary folder with the rows matched so far."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix='rows.tmp-', dir=self.root))
        self.file = open(self.tmp / 'images.u8', 'wb')
        for d in self.digests[:prefix]:
            store, row = self.rows[d]
            self.file.write(np.ascontiguousarray(store.images()[row]).tobytes())

    def finish(self) -> Optional[pathlib.Path]:
        """Return the store holding exactly these rows (an earlier one, or a new one)."""
        n = len(self.digests)
        if n == 0:
            return None
        name = f'{self.digests[0].hex()}-' + hashlib.blake2b(
            b''.join(self.digests), digest_size=16).hexdigest()
        if self.file is None:
            full = [m for m in self.matches if m.count == n]
            if full:
                return full[0].path
            # A prefix of an earlier store: copy it, the rows of a shorter recording.
            self._open(n)
        try:
            self.file.close()
            np.savez(self.tmp / 'calib.npz',
                     **{k: np.asarray(v, np.float32) for k, v in self.calib.items()})
            (self.tmp / 'index.json').write_text(json.dumps(
                {'digests': [d.hex() for d in self.digests], 'shape': [n, *self.row_shape]}))
            _rename_into_place(self.tmp, self.root / name, 'index.json')
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return self.root / name

    def abort(self) -> None:
        if self.file is not None:
            self.file.close()
            shutil.rmtree(self.tmp, ignore_errors=True)


def _rename_into_place(tmp: pathlib.Path, out: pathlib.Path, marker: str) -> None:
    """Atomic publish; a racing process that finished the same folder first wins."""
    try:
        os.rename(tmp, out)
    except OSError:
        if not (out / marker).is_file():
            raise


def build_cache(bag, size, out_dir, config: Optional[ReaderConfig] = None,
                threads: int = 2) -> pathlib.Path:
    """
    Cache one bag's samples in `out_dir` (created atomically); returns out_dir.

    Images go to the content-named stores beside it (image_root), reused where they exist.
    """
    config = config or ReaderConfig()
    size = _check_size(size)
    out_dir = pathlib.Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=out_dir.name + '.tmp-', dir=out_dir.parent))
    try:
        _write_cache(pathlib.Path(bag), size, tmp, config, threads, out_dir.parent)
        _rename_into_place(tmp, out_dir, 'meta.json')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _write_cache(bag: pathlib.Path, size, tmp: pathlib.Path, config: ReaderConfig,
                 threads: int, root: pathlib.Path) -> None:
    stats = ReadStats()
    rows: Dict[str, list] = collections.defaultdict(list)
    meta: Dict[str, list] = collections.defaultdict(list)
    n_cams = len(config.camera_names) + (1 if size.zoom else 0)
    writer = _ImageWriter(image_root(root, size),
                          (n_cams, 3, size.image_size[1], size.image_size[0]))
    pending: List[Tuple[RawSample, bytes, Optional[concurrent.futures.Future]]] = []

    def flush(keep: int) -> None:
        while len(pending) > keep:
            sample, digest, future = pending.pop(0)
            try:
                writer.add(digest, future.result() if future is not None else None)
            except (ImageConversionError, ImageSizeError) as err:
                stats.bad_messages[f'image_{err.reason}'] += 1
                continue
            _add_rows(rows, meta, sample)

    try:
        with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
            # Decode a few samples ahead in the pool while this thread reads the bag.
            for sample in read_samples(bag, config, stats):
                digest = sample_digest(sample)
                if not writer.searched:
                    writer.find(digest)
                future = (None if writer.reusable(digest)
                          else pool.submit(decode_images, sample, size))
                pending.append((sample, digest, future))
                flush(keep=2 * max(1, threads))
            flush(keep=0)
        store = writer.finish()
    except BaseException:
        writer.abort()
        raise
    _write_meta(tmp, rows, meta, stats, {
        'cameras': n_cams, 'width': size.image_size[0], 'height': size.image_size[1],
        'views': size.key(), 'bag': str(bag), 'version': CACHE_VERSION,
        'images': str(store.relative_to(root)) if store else None,
        'images_decoded': writer.decoded, 'images_reused': writer.reused})


def _write_meta(tmp: pathlib.Path, rows: dict, meta: dict, stats: ReadStats,
                info: dict) -> None:
    """arrays.npz (per-sample targets and labels, boxes flattened) and meta.json."""
    n = len(meta[TOKEN])
    stats.samples = n
    arrays = {k: np.asarray(v) for k, v in rows.items() if k != 'boxes'} if n else {}
    boxes = rows['boxes']
    offsets = np.cumsum([0] + [b.shape[1] for b in boxes]).astype(np.int64)
    flat = (np.concatenate([b.transpose(1, 0, 2) for b in boxes], axis=0) if boxes
            else np.zeros((0, PLAN_STEPS, 5), np.float32))
    np.savez(tmp / 'arrays.npz', boxes=flat.astype(np.float32), box_offsets=offsets, **arrays)
    out = dict(meta)
    out.update(info, count=n, stats=stats.as_dict())
    (tmp / 'meta.json').write_text(json.dumps(out))


def _add_rows(rows: dict, meta: dict, s: RawSample) -> None:
    rows['ego'].append(s.ego.as_array())
    rows['command'].append(int(s.command))
    rows['command_from_bag'].append(bool(s.command_from_bag))
    rows['traj'].append(s.trajectory.xy)
    rows['heading'].append(s.trajectory.heading)
    rows['action_labels'].append(action_labels(s.reasoning))
    rows['text_valid'].append(s.reasoning is not None)
    rows['stamp_ns'].append(int(s.stamp_ns))
    rows['light_change'].append(bool(s.light_change))
    rows['light_state'].append(int(s.light_state))
    rows['boxes'].append(np.asarray(s.future_boxes, np.float32).reshape(PLAN_STEPS, -1, 5))
    meta[TOKEN].append(s.token)
    meta[SCENARIO].append(s.scenario)
    meta['scene'].append(s.scene)
    meta[TEXTS].append(list(s.reasoning.texts) if s.reasoning else None)
    meta['teacher'].append(s.reasoning.teacher if s.reasoning else '')


def cache_ready(out: pathlib.Path) -> bool:
    """Whether a sample cache and the image store it names are complete."""
    try:
        meta = json.loads((out / 'meta.json').read_text())
    except (OSError, ValueError):
        return False
    return not meta.get('images') or (out.parent / meta['images'] / 'index.json').is_file()


class _BagCache:
    """One bag's cache: metadata in memory, images memory-mapped on first use per process."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.meta = json.loads((path / 'meta.json').read_text())
        with np.load(path / 'arrays.npz') as z:
            self.arrays = {k: z[k] for k in z.files}
        self.count = int(self.meta['count'])
        self.store = (_ImageStore(path.parent / self.meta['images'])
                      if self.meta.get('images') else None)
        if self.store is not None:
            self.arrays.update(self.store.calib())

    def images(self) -> np.ndarray:
        return self.store.images()


def missing_caches(paths, size, cache_root, config: Optional[ReaderConfig] = None) -> list:
    """Return the bags of `paths` whose sample cache (or its image store) is not built."""
    config = config or ReaderConfig()
    root = pathlib.Path(cache_root) if cache_root else default_cache_dir()
    out = []
    for p in paths:
        try:
            ready = cache_ready(root / cache_key(p, size, config))
        except BagError:        # a sidecar without its source: the build names it
            ready = False
        if not ready:
            out.append(p)
    return out


def build_caches(paths, size, cache_root, config: Optional[ReaderConfig] = None,
                 workers: int = 0, log=None, threads: int = 1) -> ReadStats:
    """
    Build the missing caches of `paths`, one bag per process on `workers` processes.

    workers 0: every core; a single process decodes on `threads` threads. Returns the stats
    of the bags skipped as unreadable.

    Each bag is published atomically when done, so an interrupted build resumes where it
    stopped; concurrent builders of the same bag keep the first finished copy.
    """
    config = config or ReaderConfig()
    size = _check_size(size)
    root = pathlib.Path(cache_root) if cache_root else default_cache_dir()
    todo = missing_caches(paths, size, root, config)
    stats = ReadStats()
    keyed = []
    for p in todo:
        try:
            keyed.append((p, root / cache_key(p, size, config)))
        except BagError as err:      # a sidecar without its source
            skip_bag(err, stats)
    workers = min(len(keyed), workers or os.cpu_count() or 1)
    if not keyed:
        return stats
    jobs = [(str(p), size, str(out), config, threads if workers <= 1 else 1)
            for p, out in keyed]
    if workers <= 1:
        results = map(_build_job, jobs)
    else:
        ctx = multiprocessing.get_context('spawn')   # the parent may run torch threads
        pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx)
        results = pool.map(_build_job, jobs)
    try:
        for k, (bag, error) in enumerate(results, 1):
            if error:
                skip_bag(BagError(error), stats)
            elif log:
                log(f'[cache] {k}/{len(jobs)} {bag} at {size.key()}')
    finally:
        if workers > 1:
            pool.shutdown(cancel_futures=True)
    return stats


def _build_job(job) -> Tuple[str, str]:
    """One bag in a worker process: (bag, '' or the BagError text)."""
    bag, size, out, config, threads = job
    try:
        build_cache(pathlib.Path(bag), size, pathlib.Path(out), config, threads)
    except BagError as err:
        return bag, str(err)
    return bag, ''


class MissingCacheError(RuntimeError):
    """Caches that a caller wanted built beforehand (`vlmad cache build`) are missing."""


class BagDataset(torch.utils.data.Dataset):
    """
    Keyframe samples of one or more bags, at image_size=(width, height).

    Items: dict with types.IMAGES (C, 3, H, W) uint8, INTRINSICS (C, 3, 3) scaled to the images,
    CAM_TO_BASE (C, 4, 4), EGO (3,), COMMAND (), TRAJ (6, 2), HEADING (6,), FUTURE_BOXES
    (6, N, 5) NaN-padded, TEXT_VALID (), ACTION_LABELS (3,), LIGHT_STATE (), and TEXTS /
    TOKEN / SCENARIO.
    """

    def __init__(self, bags, image_size: Tuple[int, int], cache_dir=None,
                 reader_config: Optional[ReaderConfig] = None, threads: int = 2,
                 verbose: bool = False, workers: int = 1, build: bool = True):
        self.image_size = _check_size(image_size)
        self.reader_config = reader_config or ReaderConfig()
        cache_root = pathlib.Path(cache_dir) if cache_dir else default_cache_dir()
        self.stats = ReadStats()
        paths, outs = [], []
        for bag in bag_paths([bags] if isinstance(bags, (str, os.PathLike)) else bags):
            try:        # a sidecar without its source: named on stderr and in stats, skipped
                outs.append(cache_root / cache_key(bag, self.image_size, self.reader_config))
                paths.append(bag)
            except BagError as err:
                skip_bag(err, self.stats)
        missing = missing_caches(paths, self.image_size, cache_root, self.reader_config)
        if missing and not build:
            raise MissingCacheError(
                f'{len(missing)} of {len(paths)} bags have no sample cache at '
                f'{self.image_size.key()} in {cache_root} (first: {missing[0]})')
        if missing:
            self.stats.add(build_caches(
                missing, self.image_size, cache_root, self.reader_config, workers,
                (lambda m: print(m, flush=True)) if verbose else None, threads))
        self.caches: List[_BagCache] = [_BagCache(out) for out in outs if cache_ready(out)]
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
            types.LIGHT_STATE: torch.tensor(int(a['light_state'][i]), dtype=torch.int64),
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
