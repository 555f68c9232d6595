"""
The synthetic benchmark, fixed: which scenes make each split and which episodes are driven.

Versioned: a change to anything here that changes the data or the episodes gets a new
BENCHMARK_VERSION, and results of different versions are not compared. The world's code is
part of the benchmark too (docs/BENCHMARK.md lists what a version pins).

Open loop: train / val / test scenes from disjoint seed streams; val and test are the
expert's plain driving, train adds recovery perturbations (synth/perturb.py). The hard subset
of a split is the keyframes whose 3 s future constant velocity misses by > 2.5 m
(evaluation/baselines.py). Closed loop: 4 held-out episodes per scenario type (28) for the
test split, 2 per type for validation, 25 s each. `val2` (closed loop only, 4 per type) was
added on 2026-11-27, when `val` had already chosen between many planners: a fresh set for the
next shipping decisions, with episodes of its own; no recording, so no open-loop split.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List

from vlmad_ros.sim.episode import EpisodeSpec
from vlmad_ros.synth.scenarios import SCENARIOS

BENCHMARK_VERSION = 'synth-v1'
CLOSED_LOOP_DURATION_S = 25.0
# First episode seed per split; scenario i (sorted names), repetition j -> base + 100 i + j.
CLOSED_LOOP_SEED_BASE = {'val': 6000, 'test': 7000, 'val2': 8000}
CLOSED_LOOP_PER_SCENARIO = {'val': 2, 'test': 4, 'val2': 4}


@dataclasses.dataclass(frozen=True)
class SplitSpec:
    """One open-loop split: the `vlmad synth` arguments that record it."""

    name: str
    seed: int
    scenes: int
    duration: float = 20.0
    width: int = 800               # recorded camera size; the model decodes what it needs
    height: int = 450
    odom_hz: float = 20.0
    perturb: float = 0.0           # recovery knocks per keyframe (train only)

    def synth_args(self, scale: float = 1.0) -> List[str]:
        """`vlmad synth` arguments (scale < 1 records fewer scenes, for trials)."""
        scenes = max(1, int(round(self.scenes * scale)))
        return ['--scenes', str(scenes), '--seed', str(self.seed),
                '--duration', str(self.duration), '--width', str(self.width),
                '--height', str(self.height), '--odom-hz', str(self.odom_hz),
                '--perturb', str(self.perturb), '--keyframe-images-only']


SPLITS: Dict[str, SplitSpec] = {
    'train': SplitSpec('train', seed=1, scenes=400, perturb=0.12),
    'val': SplitSpec('val', seed=500, scenes=24),
    'test': SplitSpec('test', seed=1000, scenes=60),
}


def closed_loop_episodes(split: str) -> List[EpisodeSpec]:
    """Return the closed-loop episodes of a split ('val' or 'test'), in a fixed order."""
    if split not in CLOSED_LOOP_SEED_BASE:
        raise ValueError(f'closed-loop split must be one of {sorted(CLOSED_LOOP_SEED_BASE)}, '
                         f'got {split!r}')
    base, per = CLOSED_LOOP_SEED_BASE[split], CLOSED_LOOP_PER_SCENARIO[split]
    return [EpisodeSpec(name, base + 100 * i + j, CLOSED_LOOP_DURATION_S)
            for i, name in enumerate(sorted(SCENARIOS)) for j in range(per)]
