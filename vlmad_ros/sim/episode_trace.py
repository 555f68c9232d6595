"""
What one closed-loop episode looked like, tick by tick, for videos and summaries.

Saved as two files per episode: `<name>.json` (poses, plans, agents, lights, route, result)
and `<name>.npz` (the six JPEG images per planning tick as one byte blob with offsets), so
no pickle is involved in loading either.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Dict, List, Optional, Sequence

import numpy as np


@dataclasses.dataclass
class Tick:
    """One planning tick (map frame unless said otherwise)."""

    t: float                                   # [s] since the episode start
    ego: List[float]                           # x, y, yaw, speed
    command: int
    plan: Optional[List[List[float]]]          # (6, 2) in base_link at t, None if missed
    agents: List[List[float]]                  # x, y, yaw, length, width, class
    lights: List[List[int]]                    # state, node i, node j, heading (town ids)
    route: List[List[float]]                   # the route ahead, (N, 2)


class Trace:
    """Ticks of one episode plus its camera images (JPEG bytes, rig order)."""

    def __init__(self, scenario: str, seed: int, camera_names: Sequence[str]):
        self.scenario, self.seed = scenario, seed
        self.camera_names = list(camera_names)
        self.ticks: List[Tick] = []
        self.images: List[List[bytes]] = []
        self.result: Dict[str, object] = {}

    def add(self, tick: Tick, jpegs: Sequence[bytes]) -> None:
        if len(jpegs) != len(self.camera_names):
            raise ValueError(f'{len(jpegs)} images for {len(self.camera_names)} cameras')
        self.ticks.append(tick)
        self.images.append([bytes(j) for j in jpegs])

    def save(self, folder, name: str) -> pathlib.Path:
        folder = pathlib.Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {'scenario': self.scenario, 'seed': self.seed, 'cameras': self.camera_names,
                'result': self.result, 'ticks': [dataclasses.asdict(t) for t in self.ticks]}
        (folder / f'{name}.json').write_text(json.dumps(meta))
        flat = [j for per_tick in self.images for j in per_tick]
        sizes = np.array([len(j) for j in flat], np.int64)
        blob = np.frombuffer(b''.join(flat), np.uint8) if flat else np.zeros(0, np.uint8)
        np.savez(folder / f'{name}.npz', blob=blob, sizes=sizes,
                 shape=np.array([len(self.images), len(self.camera_names)]))
        return folder / f'{name}.json'

    @classmethod
    def load(cls, json_path) -> 'Trace':
        json_path = pathlib.Path(json_path)
        meta = json.loads(json_path.read_text())
        trace = cls(meta['scenario'], int(meta['seed']), meta['cameras'])
        trace.result = meta.get('result', {})
        trace.ticks = [Tick(**t) for t in meta['ticks']]
        with np.load(json_path.with_suffix('.npz'), allow_pickle=False) as z:
            blob, sizes, (n, c) = z['blob'], z['sizes'], z['shape']
        ends = np.cumsum(sizes)
        flat = [blob[e - s:e].tobytes() for s, e in zip(sizes, ends)]
        trace.images = [flat[i * c:(i + 1) * c] for i in range(int(n))]
        return trace
