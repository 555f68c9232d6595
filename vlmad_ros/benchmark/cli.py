"""
`vlmad benchmark`: the fixed synthetic benchmark (benchmark/spec.py, docs/BENCHMARK.md).

    vlmad benchmark --make-data DIR [--splits train val test] [--workers N] [--scale F]
    vlmad benchmark --data DIR --split test [--checkpoint CKPT] [--ego-mlp CKPT]
                    [--open-loop-only | --closed-loop-only] [--no-expert] [--json OUT]
                    [--controller path_follower|carla]

--make-data records the splits with `vlmad synth` and annotates them with the rule teacher.
A run scores the checkpoint (default: the packaged default.pt) and, every time, the floors and
the ceiling beside it: open loop (all keyframes and the hard subset) for the checkpoint,
constant velocity and the ego-state MLP (--ego-mlp); closed loop (the split's episodes, in
one process: sim/closed_loop.py) for the same planners and the privileged expert.
--controller carla drives the closed loop through the CARLA control node's throttle / steer /
brake controller instead of the path follower's Twist (docs/BENCH2DRIVE.md).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional

from vlmad_ros import children
from vlmad_ros.benchmark.spec import BENCHMARK_VERSION, closed_loop_episodes, SPLITS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--make-data', default='', metavar='DIR',
                        help='record and annotate the splits into DIR/<split>')
    parser.add_argument('--splits', nargs='+', choices=sorted(SPLITS), default=sorted(SPLITS),
                        help='splits to record (with --make-data)')
    parser.add_argument('--workers', type=int, default=max(1, (os.cpu_count() or 2)),
                        help='processes for recording and annotating')
    parser.add_argument('--scale', type=float, default=1.0,
                        help="record this fraction of each split's scenes (trials only)")
    parser.add_argument('--data', default='', metavar='DIR', help='benchmark data (--make-data)')
    parser.add_argument('--split', choices=('val', 'val2', 'test'), default='val',
                        help='split to score (keep test for the final numbers; val2: a second, '
                        'closed-loop-only validation set)')
    parser.add_argument('--checkpoint', default='', help='planner (default: packaged default.pt)')
    parser.add_argument('--name', default='', help='row label of the checkpoint')
    parser.add_argument('--ego-mlp', default='', metavar='CKPT',
                        help='ego-state MLP checkpoint to report as a floor')
    only = parser.add_mutually_exclusive_group()
    only.add_argument('--open-loop-only', action='store_true')
    only.add_argument('--closed-loop-only', action='store_true')
    parser.add_argument('--no-expert', action='store_true',
                        help='skip the expert ceiling in closed loop (slow: it re-simulates)')
    parser.add_argument('--no-baselines', action='store_true',
                        help='score the checkpoint alone (no floors, no ceiling)')
    parser.add_argument('--controller', choices=('path_follower', 'carla'),
                        default='path_follower',
                        help='closed loop: path_follower (Twist) or carla (throttle/steer/brake)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--cache-dir', default='', help='decoded-sample cache for open loop')
    parser.add_argument('--json', default='', metavar='OUT', help='write all results here')


# ----- data -----

def make_data(out: pathlib.Path, splits: List[str], workers: int, scale: float) -> int:
    """Record each split with `vlmad synth`, annotate it (rule teacher, a full copy), drop raw."""
    vlmad = [sys.executable, '-m', 'vlmad_ros.cli']
    for name in splits:
        spec = SPLITS[name]
        raw, final = out / 'raw' / name, out / name
        if (final / 'DONE').is_file():
            print(f'[benchmark] {final}: already complete', flush=True)
            continue
        t0 = time.time()
        shutil.rmtree(raw, ignore_errors=True)
        children.run(vlmad + ['synth', *spec.synth_args(scale), '--out', str(raw),
                              '--workers', str(workers), '--quiet'],
                     check=True, stdout=subprocess.DEVNULL)
        shards = [children.spawn(vlmad + ['annotate', str(raw), '--out', str(final),
                                          '--layout', 'copy',  # raw is removed below
                                          '--teacher', 'rule', '--no-progress',
                                          '--shard', f'{k}/{workers}'],
                                 stdout=subprocess.DEVNULL)
                  for k in range(workers)]
        try:
            failed = [p.wait() for p in shards]
        finally:
            children.stop(shards)
        if any(failed):
            print(f'vlmad benchmark: annotating {raw} failed', file=sys.stderr)
            return 1
        shutil.rmtree(raw)
        (final / 'DONE').write_text(json.dumps({'version': BENCHMARK_VERSION,
                                                'split': name, 'scale': scale}) + '\n')
        print(f'[benchmark] {final}: {name} in {time.time() - t0:.0f} s', flush=True)
    shutil.rmtree(out / 'raw', ignore_errors=True)
    return 0


# ----- scoring -----

def open_loop(bags, planners: Dict[str, object], cache_dir) -> Dict[str, Dict]:
    """Open-loop metrics of each planner: all keyframes, the hard subset, per scenario."""
    from vlmad_ros.evaluation.cli import evaluate_planner
    out = {}
    for name, planner in planners.items():
        report = evaluate_planner(bags, planner, batch_size=16, cache_dir=cache_dir)
        out[name] = {'all': report.metrics.compute(), 'hard': report.metrics.compute_hard(),
                     'by_scenario': report.metrics.by_scenario()}
    return out


def closed_loop(split: str, policies: Dict[str, object],
                controller: str = 'path_follower') -> Dict[str, Dict]:
    """Closed-loop results of each policy on the split's episodes."""
    from vlmad_ros.sim.closed_loop import LoopConfig, run_episodes
    from vlmad_ros.sim.score import summarize
    loop = LoopConfig(image_width=800, image_height=450, controller=controller)
    out = {}
    for name, policy in policies.items():
        t0 = time.time()
        results = run_episodes(closed_loop_episodes(split), policy, loop)
        out[name] = {'summary': summarize(results),
                     'episodes': [r.to_dict() for r in results],
                     'wall_s': round(time.time() - t0, 1)}
        print(f'[benchmark] closed loop {name}: driving score '
              f'{out[name]["summary"]["driving_score"]:.1f} ({out[name]["wall_s"]} s)',
              flush=True)
    return out


def _planners(args) -> Dict[str, object]:
    from vlmad_ros.evaluation.baselines import ConstantVelocityPlanner
    from vlmad_ros.planner import Planner
    main = Planner.from_options(args.checkpoint, device=args.device)
    name = args.name or (pathlib.Path(args.checkpoint).name if args.checkpoint else 'default.pt')
    planners = {name: main}
    if not args.no_baselines:
        planners['constant velocity'] = ConstantVelocityPlanner()
        if args.ego_mlp:
            planners['ego-state MLP'] = Planner.from_checkpoint(args.ego_mlp, device=args.device)
    return planners


def _policies(args, planners: Dict[str, object]) -> Dict[str, object]:
    from vlmad_ros.evaluation.baselines import ConstantVelocityPlanner
    from vlmad_ros.sim.closed_loop import ConstantVelocity, ExpertPolicy, LoopConfig
    from vlmad_ros.sim.closed_loop import PlannerPolicy
    loop = LoopConfig(image_width=800, image_height=450)
    out = {}
    for name, planner in planners.items():
        out[name] = (ConstantVelocity() if isinstance(planner, ConstantVelocityPlanner)
                     else PlannerPolicy(planner, loop, name))
    if not (args.no_baselines or args.no_expert):
        out['expert (ceiling)'] = ExpertPolicy()
    return out


def markdown(results: Dict) -> str:
    """Format a run's open- and closed-loop tables as markdown."""
    lines = []
    if 'open_loop' in results:
        lines += [f'### Open loop, {results["split"]} split ({results["version"]})', '',
                  '| planner | N | L2 1/2/3 s (avg) [m] | L2 avg | hard N | hard L2 1/2/3 s [m] '
                  '| hard L2 avg | coll. avg [%] |', '|---|---:|---|---:|---:|---|---:|---:|']
        for name, r in results['open_loop'].items():
            a, h = r['all'], r['hard']
            la, lh = a['l2']['avg_over_horizon'], h['l2']['avg_over_horizon']
            ca = a['collision']['avg_over_horizon']
            lines.append(f'| {name} | {a["samples"]} | {"/".join(f"{v:.2f}" for v in la.values())}'
                         f' | {sum(la.values()) / 3:.3f} | {h["samples"]} | '
                         f'{"/".join(f"{v:.2f}" for v in lh.values())} | '
                         f'{sum(lh.values()) / 3:.3f} | {sum(ca.values()) / 3:.2f} |')
        lines.append('')
    if 'closed_loop' in results:
        lines += [f'### Closed loop, {results["split"]} episodes', '',
                  '| planner | episodes | driving score | route compl. % | penalty | coll. veh '
                  '| coll. ped | red lights | off-road | deviated |',
                  '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
        for name, r in results['closed_loop'].items():
            s = r['summary']
            dev = sum(1 for e in r['episodes'] if e['route_deviation'])
            lines.append(f'| {name} | {len(r["episodes"])} | {s["driving_score"]:.1f} | '
                         f'{s["route_completion"]:.1f} | {s["infraction_penalty"]:.2f} | '
                         f'{s["collisions_vehicle"]} | {s["collisions_pedestrian"]} | '
                         f'{s["red_lights"]} | {s["off_road_events"]} | {dev} |')
    return '\n'.join(lines)


def main(args) -> int:
    if args.make_data:
        if args.workers < 1 or not 0 < args.scale <= 1:
            print('vlmad benchmark: --workers must be >= 1 and --scale in (0, 1]',
                  file=sys.stderr)
            return 2
        return make_data(pathlib.Path(args.make_data), args.splits, args.workers, args.scale)
    results: Dict = {'version': BENCHMARK_VERSION, 'split': args.split}
    try:
        if args.split == 'val2' and not args.closed_loop_only:
            raise ValueError('--split val2 has closed-loop episodes only: add --closed-loop-only')
        planners = _planners(args)
        if not args.closed_loop_only:
            data = pathlib.Path(args.data) / args.split
            if not args.data or not data.is_dir():
                raise FileNotFoundError(f'--data: no {args.split} split under {args.data!r} '
                                        '(record it with --make-data)')
            results['open_loop'] = open_loop([data], planners, args.cache_dir or None)
        if not args.open_loop_only:
            results['controller'] = args.controller
            results['closed_loop'] = closed_loop(args.split, _policies(args, planners),
                                                 args.controller)
    except (FileNotFoundError, ValueError) as err:
        print(f'vlmad benchmark: {err}', file=sys.stderr)
        return 2
    print(markdown(results))
    if args.json:
        from vlmad_ros.evaluation.cli import json_safe
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(json_safe(results), indent=1) + '\n')
        print(f'\nwrote {path}')
    return 0


def summary_row(results: Dict, name: str) -> Optional[Dict]:
    """Headline numbers of one planner in a run (for tables across runs)."""
    out = {}
    ol = results.get('open_loop', {}).get(name)
    if ol:
        out['l2_avg'] = sum(ol['all']['l2']['avg_over_horizon'].values()) / 3
        out['hard_l2_avg'] = sum(ol['hard']['l2']['avg_over_horizon'].values()) / 3
    cl = results.get('closed_loop', {}).get(name)
    if cl:
        out['driving_score'] = cl['summary']['driving_score']
    return out or None
