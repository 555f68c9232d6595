#!/usr/bin/env python3
"""
Closed-loop comparison of planner checkpoints in the synthetic world (mean +- std over seeds).

Every checkpoint drives the same held-out episodes with `vlmad demo --no-video` (sim_node +
planner_node + path_follower over DDS, lockstep, so the numbers do not depend on machine
speed); the table averages the per-checkpoint leaderboard metrics over the training seeds of
each variant.

    experiments/closed_loop/run_closed_loop.py --runs RUNS --out OUT \
        [--variants baseline vlmad] [--seeds 0 1 2] [--episodes red_light:9101 ...]

RUNS is run_table.py's output (RUNS/<variant>/s<seed>/train/best.pt). Finished runs
(OUT/<variant>/s<seed>/results.json) are not repeated.
"""
import argparse
import json
import pathlib
import subprocess
import sys

import numpy as np

# Two held-out scenes per scenario type (seeds outside the recorder's (seed, index) streams).
SCENARIOS = ('cruise', 'turn', 'red_light', 'green_light', 'lead_brake', 'stopped_vehicle',
             'pedestrian')
EPISODES = [f'{name}:{base + k}' for base in (9101, 9201) for k, name in enumerate(SCENARIOS)]
METRICS = (('driving_score', 'DS', '.1f'), ('route_completion', 'RC %', '.1f'),
           ('infraction_penalty', 'penalty', '.2f'), ('collisions_vehicle', 'coll. veh', '.1f'),
           ('collisions_pedestrian', 'coll. ped', '.1f'), ('red_lights', 'red', '.1f'),
           ('off_road_events', 'off-road', '.1f'))


def run_one(variant: str, seed: int, args) -> pathlib.Path:
    out = pathlib.Path(args.out) / variant / f's{seed}'
    result = out / 'results.json'
    if result.is_file():
        return result
    ckpt = pathlib.Path(args.runs) / variant / f's{seed}' / 'train' / 'best.pt'
    if not ckpt.is_file():
        raise FileNotFoundError(f'{ckpt} missing (train it with run_table.py first)')
    cmd = ['vlmad', 'demo', '--no-video', '--checkpoint', str(ckpt), '--out', str(out),
           '--duration', str(args.duration), '--image-size', args.image_size,
           '--episodes', *args.episodes]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / 'run.log', 'w') as log:
        log.write(' '.join(cmd) + '\n')
        log.flush()
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=True)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--runs', required=True, help='run_table.py output (checkpoints)')
    p.add_argument('--out', required=True)
    p.add_argument('--variants', nargs='+', default=['baseline', 'vlmad'])
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    p.add_argument('--episodes', nargs='+', default=EPISODES)
    p.add_argument('--duration', type=float, default=12.0)
    p.add_argument('--image-size', default='192x108',
                   help="rendered camera size: the training data's (runs/vlmad_exp)")
    args = p.parse_args()
    rows = []
    for variant in args.variants:
        per_seed = []
        for seed in args.seeds:
            path = run_one(variant, seed, args)
            summary = json.loads(path.read_text())['summary']
            per_seed.append(summary)
            print(f'{variant} s{seed}: DS {summary["driving_score"]:.1f}', flush=True)
        rows.append((variant, per_seed))
    head = '| variant | seeds | ' + ' | '.join(m[1] for m in METRICS) + ' |'
    lines = [f'{len(args.episodes)} episodes x {args.duration:.0f} s, cameras '
             f'{args.image_size}: {" ".join(args.episodes)}',
             '', head, '|' + '---|' * (len(METRICS) + 2)]
    for variant, per_seed in rows:
        cells = []
        for key, _, fmt in METRICS:
            vals = np.array([s[key] for s in per_seed], float)
            cells.append(f'{vals.mean():{fmt}} ± {vals.std():{fmt}}')
        lines.append(f'| {variant} | {len(per_seed)} | ' + ' | '.join(cells) + ' |')
    table = '\n'.join(lines)
    (pathlib.Path(args.out) / 'table.md').write_text(table + '\n')
    print(table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
