#!/usr/bin/env python3
"""
Where a planner goes wrong in closed loop: its plan against the expert's, from the same state.

A driving score says that an episode failed, not where. Here a checkpoint drives the
benchmark's closed-loop episodes exactly as `vlmad benchmark` drives them (PlannerPolicy, the
path follower, lockstep); at every planning tick the expert also plans from the car's pose
(ExpertPolicy, the ceiling's plan) and the two are compared. Per episode: the driving score,
the largest offset from the route's lane centre and when the car first came 1.5 m off it, and
the plan's L2 to the expert's averaged over the ticks where the route command says "turn" and
where it says "straight". `--ticks SCENARIO:SEED` prints that episode tick by tick.

    experiments/closed_loop/plan_vs_expert.py CHECKPOINT [--split val2] [--ticks turn:7600]

Read with care: from a state the expert would never be in (2 m off the lane, halfway through a
turn), its plan is the way back (ExpertPolicy), not a ground truth of "the right plan".
"""
import argparse
import math
from typing import Dict, List

import numpy as np
from vlmad_ros.benchmark.spec import closed_loop_episodes, CLOSED_LOOP_SEED_BASE
from vlmad_ros.planner import Planner
from vlmad_ros.sim.closed_loop import ExpertPolicy, LoopConfig, PlannerPolicy, run_episode
from vlmad_ros.types import Command

OFF_LANE_M = 1.5


class Recorder:
    """Collects, per planning tick, the car's lane offset and the plan's distance to the expert."""

    def __init__(self, print_ticks: bool):
        self.expert = ExpertPolicy()
        self.print_ticks = print_ticks
        self.rows: List[Dict] = []

    def __call__(self, episode, plan: np.ndarray) -> None:
        expert = self.expert.plan(episode, None)
        ego = episode.world.ego
        row = {'t': episode.t, 'v': float(ego.v), 'd': float(ego.d),
               'command': Command(int(episode.command())),
               'l2': float(np.linalg.norm(plan - expert, axis=1).mean())}
        self.rows.append(row)
        if self.print_ticks:
            def pts(p):
                return ' '.join(f'({x:+5.1f},{y:+5.1f})' for x, y in p[1::2])
            print(f't {row["t"]:5.1f} v {row["v"]:4.1f} d {row["d"]:+5.2f} '
                  f'{row["command"].name:<8} L2 {row["l2"]:5.2f}  planner {pts(plan)}  '
                  f'expert {pts(expert)}')

    def summary(self) -> Dict:
        """Largest lane offset, first time off the lane, plan L2 by route command."""
        d = np.abs([r['d'] for r in self.rows])
        off = [r['t'] for r in self.rows if abs(r['d']) > OFF_LANE_M]
        turning = [r['l2'] for r in self.rows if r['command'] in (Command.LEFT, Command.RIGHT)]
        straight = [r['l2'] for r in self.rows if r['command'] == Command.STRAIGHT]
        return {'max_offset_m': float(d.max()) if d.size else math.nan,
                'first_off_lane_s': off[0] if off else None,
                'l2_turning': float(np.mean(turning)) if turning else math.nan,
                'l2_straight': float(np.mean(straight)) if straight else math.nan}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('checkpoint')
    parser.add_argument('--split', default='val2', choices=sorted(CLOSED_LOOP_SEED_BASE),
                        help='closed-loop split')
    parser.add_argument('--ticks', nargs='*', default=[], metavar='SCENARIO:SEED',
                        help='print these episodes tick by tick')
    parser.add_argument('--only', nargs='*', default=[], metavar='SCENARIO:SEED',
                        help='run only these episodes')
    args = parser.parse_args()
    known = {f'{s.scenario}:{s.seed}' for s in closed_loop_episodes(args.split)}
    unknown = sorted(set(args.ticks + args.only) - known)
    if unknown:
        parser.error(f'not episodes of split {args.split}: {", ".join(unknown)}')
    loop = LoopConfig(image_width=800, image_height=450)
    policy = PlannerPolicy(Planner.from_options(args.checkpoint), loop, 'planner')
    print('| episode | DS | RC | veh / ped / red | max offset [m] | first > 1.5 m [s] '
          '| plan L2 to expert, turning / straight [m] |')
    print('|---|---:|---:|---|---:|---:|---|')
    for spec in closed_loop_episodes(args.split):
        key = f'{spec.scenario}:{spec.seed}'
        if args.only and key not in args.only:
            continue
        recorder = Recorder(key in args.ticks)
        r = run_episode(spec, policy, loop, on_tick=recorder)
        s = recorder.summary()
        first = '-' if s['first_off_lane_s'] is None else f'{s["first_off_lane_s"]:.1f}'
        print(f'| {key} | {r.driving_score:.1f} | {r.route_completion:.0f} | '
              f'{r.collisions_vehicle} / {r.collisions_pedestrian} / {r.red_lights} | '
              f'{s["max_offset_m"]:.1f} | {first} | '
              f'{s["l2_turning"]:.2f} / {s["l2_straight"]:.2f} |', flush=True)


if __name__ == '__main__':
    main()
