"""
How much of the expert's plan the ego state predicts, per scenario (docs/SYNTHETIC_WORLD.md).

    python -m vlmad_ros.synth.stats --seeds 0 1 2 --duration 20

Simulates scenes without rendering and, at every keyframe (2 Hz) with 3 s of future, compares
the expert's future positions with a constant-velocity / constant-yaw-rate extrapolation of
the ego state (what an ego-state-only planner can know). Also counts route commands,
keyframes where the ego brakes hard or starts from rest within the horizon, and the expert's
infractions (collisions, red lights, off-road time) over the whole scenes.
"""
from __future__ import annotations

import argparse
import json
import math
from typing import Dict, List, Tuple

import numpy as np

from vlmad_ros.synth.scenarios import make_world, SCENARIOS, SceneConfig
from vlmad_ros.types import Command

DT = 0.05
HORIZON = 3.0
KEYFRAME_DT = 0.5


def scene_track(scenario: str, seed: int, duration: float) -> Tuple[np.ndarray, Dict]:
    """(T, 7) per physics step: t, x, y, yaw, speed, command, yaw rate; and the infractions."""
    world = make_world(np.random.default_rng(seed), SceneConfig(scenario=scenario))
    rows = []
    for _ in range(int(round(duration / DT)) + 1):
        e = world.ego
        rows.append((world.t, e.x, e.y, e.yaw, e.v, int(world.route_command()), e.yaw_rate))
        world.step(DT)
    inf = world.infractions
    return np.array(rows), {'collisions': len(inf.collisions), 'red_lights': len(inf.red_lights),
                            'off_road_s': inf.off_road_time}


def keyframe_errors(track: np.ndarray) -> List[Dict]:
    """Constant-velocity-and-yaw-rate error of the 3 s endpoint at each keyframe."""
    out = []
    step = int(round(KEYFRAME_DT / DT))
    ahead = int(round(HORIZON / DT))
    for k in range(0, len(track) - ahead, step):
        t, x, y, yaw, v, cmd, wz = track[k]
        xe, ye = track[k + ahead, 1], track[k + ahead, 2]
        if abs(wz) < 1e-3:
            px, py = x + v * HORIZON * math.cos(yaw), y + v * HORIZON * math.sin(yaw)
        else:
            r = v / wz
            px = x + r * (math.sin(yaw + wz * HORIZON) - math.sin(yaw))
            py = y - r * (math.cos(yaw + wz * HORIZON) - math.cos(yaw))
        speeds = track[k:k + ahead + 1, 4]
        out.append({'l2_3s': math.hypot(px - xe, py - ye), 'command': int(cmd),
                    'brakes': bool(speeds.min() < v - 3.0),
                    'starts': bool(v < 0.3 and speeds.max() > 2.0)})
    return out


def summarize(seeds, duration: float) -> Dict[str, Dict]:
    table = {}
    for scenario in sorted(SCENARIOS):
        rows = []
        infractions = {'collisions': 0, 'red_lights': 0, 'off_road_s': 0.0}
        for seed in seeds:
            track, inf = scene_track(scenario, seed, duration)
            rows += keyframe_errors(track)
            for key, value in inf.items():
                infractions[key] += value
        l2 = np.array([r['l2_3s'] for r in rows])
        table[scenario] = {
            'keyframes': len(rows),
            'cv_l2_3s_mean': round(float(l2.mean()), 2),
            'cv_l2_3s_p90': round(float(np.percentile(l2, 90)), 2),
            'turn_command': round(float(np.mean([r['command'] != Command.STRAIGHT
                                                 for r in rows])), 2),
            'brakes_3m_s': round(float(np.mean([r['brakes'] for r in rows])), 2),
            'starts_from_rest': round(float(np.mean([r['starts'] for r in rows])), 2),
            'scenes': len(seeds), 'expert_infractions': infractions}
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--duration', type=float, default=20.0)
    args = parser.parse_args(argv)
    table = summarize(args.seeds, args.duration)
    print(json.dumps(table, indent=1))
    print('| scenario | keyframes | const.-velocity L2 @3 s mean / p90 [m] | turn command | '
          'brakes > 3 m/s in 3 s | starts from rest | expert: collisions / red lights / '
          'off-road s |')
    print('|---|---|---|---|---|---|---|')
    for name, r in table.items():
        inf = r['expert_infractions']
        print(f"| {name} | {r['keyframes']} | {r['cv_l2_3s_mean']} / {r['cv_l2_3s_p90']} | "
              f"{r['turn_command']:.0%} | {r['brakes_3m_s']:.0%} | {r['starts_from_rest']:.0%} | "
              f"{inf['collisions']} / {inf['red_lights']} / {inf['off_road_s']:.1f} |")
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
