"""Training data: bags -> datasets, the scene-level split, text targets, DataLoaders."""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import numpy as np
import torch

from vlmad_ros import types as T


def attach_text_targets(datasets, cache_dir, encoder: str, device: str = 'cpu',
                        log=print, cache_only: bool = False) -> Dict[str, np.ndarray]:
    """Embed every teacher text of the datasets once (cached on disk): text -> vector."""
    from vlmad_ros.data.dataset import TEXTS
    from vlmad_ros.training.text_encoder import TextEmbeddingCache
    texts: List[str] = []
    for ds in datasets:
        for cache in ds.caches:
            for rec in cache.meta[TEXTS]:
                if rec:
                    texts.extend(rec)
    if not texts:
        return {}
    cache = TextEmbeddingCache(cache_dir, encoder, device)
    if cache_only:
        table = cache.cached(texts)
        missing = len(set(texts)) - len(table)
        log(f'[text] cache only: {len(table)} distinct texts found, {missing} missing (their '
            f'frames train without the alignment loss), cache {cache.path}')
        return table
    table = cache.embed_unique(texts)
    log(f'[text] {len(table)} distinct texts, {cache.encoded} newly encoded by '
        f'{cache.encoder_id} ({cache.dim}-d), cache {cache.path}')
    return table


class TextCollate:
    """
    dataset.collate + TEXT_EMB (B, 3, D) looked up from the precomputed table.

    Without a table (no alignment head: baseline or Q2 only) the embeddings stay zero and
    TEXT_VALID keeps saying which frames have a teacher record, for the action head.
    """

    def __init__(self, table: Dict[str, np.ndarray], dim: int):
        self.table = table
        self.dim = dim

    def __call__(self, items):
        from vlmad_ros.data.dataset import collate, TEXTS
        batch = collate(items)
        emb = np.zeros((len(items), 3, self.dim), np.float32)
        valid = batch[T.TEXT_VALID].clone()
        for b, texts in enumerate(batch.pop(TEXTS)):
            if not (valid[b] and self.table):
                continue
            if all(t in self.table for t in texts):
                emb[b] = np.stack([self.table[t] for t in texts])
            else:
                valid[b] = False
        batch[T.TEXT_EMB] = torch.from_numpy(emb)
        batch[T.TEXT_VALID] = valid
        return batch


def split_by_scene(dataset, fraction: float, seed: int):
    """
    Seeded train/val split of a BagDataset by whole bags (one bag = one scene or drive).

    Neighbouring keyframes of a scene are nearly the same picture, so a per-keyframe split
    leaks them into validation. Bags go to validation (in a seeded order) until they hold
    `fraction` of the samples, keeping at least one bag for training. A single bag is split
    in time instead: its last `fraction` of keyframes, one contiguous block.
    Returns (train, val or None, a line describing the split).
    """
    n = len(dataset)
    target = int(round(n * fraction)) if fraction > 0 else 0
    if target == 0 or n - target < 1:
        return dataset, None, 'no validation split'
    counts = [c.count for c in dataset.caches]
    starts = np.cumsum([0] + counts)
    bags = [b for b, c in enumerate(counts) if c > 0]
    if len(bags) == 1:
        lo, hi = int(starts[bags[0]]), int(starts[bags[0] + 1])
        cut = hi - target
        return (torch.utils.data.Subset(dataset, list(range(lo, cut))),
                torch.utils.data.Subset(dataset, list(range(cut, hi))),
                f'one bag: its last {target} keyframes (in time) validate')
    val_bags: List[int] = []
    for b in np.random.default_rng(seed).permutation(bags).tolist():
        if sum(counts[v] for v in val_bags) >= target or len(val_bags) == len(bags) - 1:
            break
        val_bags.append(b)
    train_idx = [i for b in bags if b not in val_bags
                 for i in range(int(starts[b]), int(starts[b + 1]))]
    val_idx = [i for b in sorted(val_bags) for i in range(int(starts[b]), int(starts[b + 1]))]
    return (torch.utils.data.Subset(dataset, train_idx),
            torch.utils.data.Subset(dataset, val_idx),
            f'{len(val_bags)} of {len(bags)} bags validate (whole scenes)')


def sample_array(dataset, key: str) -> np.ndarray:
    """One per-sample cache array in the dataset's index order (a BagDataset or Subsets of one)."""
    if isinstance(dataset, torch.utils.data.Subset):
        return sample_array(dataset.dataset, key)[np.asarray(dataset.indices, dtype=np.int64)]
    return np.concatenate([c.arrays[key] for c in dataset.caches if c.count])


def select_training_samples(train_set, tc, log=print):
    """
    Apply the TrainConfig's sample choices: (train set, per-sample draw weights or None).

    drop_light_changes leaves out keyframes labelled past a lamp change; hard_weight draws the
    hard keyframes (evaluation.baselines.is_hard, the benchmark's definition) more often,
    start_weight the visible starts from standstill (is_visible_start); the two multiply.
    """
    if tc.drop_light_changes:
        changes = sample_array(train_set, 'light_change').astype(bool)
        train_set = torch.utils.data.Subset(train_set, np.flatnonzero(~changes).tolist())
        log(f'[data] drop_light_changes: {int(changes.sum())} of {len(changes)} keyframes left '
            'out (the light ahead changes within their 3 s future)')
    if tc.hard_weight == 1.0 and tc.start_weight == 1.0:
        return train_set, None
    from vlmad_ros.evaluation.baselines import is_hard
    ego, traj = sample_array(train_set, 'ego'), sample_array(train_set, 'traj')
    weights = np.ones(len(ego))
    marked_by = {
        'hard_weight': lambda: [is_hard(e, t) for e, t in zip(ego, traj)],
        'start_weight': lambda: is_visible_start(ego, traj,
                                                 sample_array(train_set, 'light_change'))}
    for name, marks_of in marked_by.items():
        weight = getattr(tc, name)
        if weight != 1.0:     # only the choices in use are computed
            marks = np.asarray(marks_of(), bool)
            log(f'[data] {name} {weight:g}: {int(marks.sum())} of {len(marks)} keyframes')
            weights[marks] *= weight
    return train_set, weights


# A start from standstill: the ego slower than this [m/s], its 3 s plan further than this [m].
STANDING_SPEED, START_DISTANCE = 0.5, 1.0


def is_visible_start(ego: np.ndarray, traj: np.ndarray, light_change: np.ndarray) -> np.ndarray:
    """
    Mark keyframes where the ego stands and the expert moves off for a reason seen now.

    ego (N, >=1) speed first, traj (N, steps, 2), light_change (N,): a start that answers a
    light changing within the future is left out (the images do not show it yet).
    """
    return ((ego[:, 0] < STANDING_SPEED) & (traj[:, -1, 0] > START_DISTANCE)
            & ~np.asarray(light_change, bool))


class WeightedEpochSampler(torch.utils.data.Sampler):
    """
    Draw len(weights) indices with replacement by weight, the same on every rank for one epoch.

    Each rank takes every world-th draw, so DDP ranks share one weighted epoch without
    overlap; set_epoch reseeds from (seed, epoch) alone, so a resumed run draws the same.
    """

    def __init__(self, weights, seed: int, rank: int = 0, world: int = 1):
        self.weights = torch.as_tensor(np.asarray(weights), dtype=torch.float64)
        self.seed, self.rank, self.world, self.epoch = seed, rank, world, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(range(self.rank, len(self.weights), self.world))

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        draws = torch.multinomial(self.weights, len(self.weights), True, generator=g)
        return iter(draws[self.rank::self.world].tolist())


@dataclasses.dataclass
class Loaders:
    """The DataLoaders of a run, and what resume needs to replay their order."""

    train: torch.utils.data.DataLoader
    val: Optional[torch.utils.data.DataLoader]
    sampler: Optional[torch.utils.data.Sampler]   # DistributedSampler under DDP
    generator: torch.Generator                     # reseeded per epoch: same order on resume

    def start_epoch(self, seed: int, epoch: int) -> None:
        """Fix this epoch's shuffle from (seed, epoch) alone, so a resumed run draws the same."""
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        self.generator.manual_seed(seed * 1000 + epoch)


def make_loaders(train_set, val_set, collate, tc, dist_info, device: torch.device,
                 master: bool, weights=None) -> Loaders:
    """Build the loaders: workers by default where CPUs allow, pinned memory for CUDA."""
    workers = tc.workers(dist_info.world)
    pin = device.type == 'cuda'
    if weights is not None:
        sampler = WeightedEpochSampler(weights, tc.seed, dist_info.rank, dist_info.world)
    elif dist_info.enabled:
        sampler = torch.utils.data.distributed.DistributedSampler(
            train_set, dist_info.world, dist_info.rank, shuffle=True, seed=tc.seed)
    else:
        sampler = None
    generator = torch.Generator()
    common = {'batch_size': tc.batch_size, 'collate_fn': collate, 'num_workers': workers,
              'pin_memory': pin, 'persistent_workers': workers > 0}
    train = torch.utils.data.DataLoader(train_set, shuffle=sampler is None, sampler=sampler,
                                        generator=generator, drop_last=False, **common)
    val = (torch.utils.data.DataLoader(val_set, **common)
           if val_set is not None and master else None)
    return Loaders(train, val, sampler, generator)
