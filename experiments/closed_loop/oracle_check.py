#!/usr/bin/env python3
"""
The closed loop's ceiling: the expert's own future as the plan, through the real follower.

At every planning tick the world is copied and the expert drives the copy for 3 s from the
car's pose (vlmad_ros.sim.closed_loop.ExpertPolicy, the ceiling `vlmad benchmark` reports);
its positions at 0.5 s steps become the plan, the PathFollower tracks it, and the real world
steps with the follower's command. No ROS and no cameras: this measures what the follower +
world + metrics give a perfect planner, so a planner's closed-loop score can be read against it.

    experiments/closed_loop/oracle_check.py [--duration 12] [SCENARIO:SEED ...]
    experiments/closed_loop/oracle_check.py --split test     # a benchmark split's episodes

With --split it drives the benchmark's closed-loop episodes of that split (25 s each) and
prints the mean driving score per scenario type as well.
"""
import argparse
import collections
import sys

from vlmad_ros.benchmark.spec import closed_loop_episodes
from vlmad_ros.sim.closed_loop import ExpertPolicy, LoopConfig, run_episode
from vlmad_ros.sim.episode import EpisodeSpec
from vlmad_ros.sim.score import markdown_table, summarize

DEMO_EPISODES = ('cruise:9101', 'turn:9102', 'red_light:9103', 'green_light:9104',
                 'lead_brake:9105', 'stopped_vehicle:9106', 'pedestrian:9107')


def per_type(results) -> str:
    """Mean driving score per scenario type, in the order the types first appear."""
    scores = collections.defaultdict(list)
    for r in results:
        scores[r.scenario].append(r.driving_score)
    return ' / '.join(f'{name} {sum(v) / len(v):.1f}' for name, v in scores.items())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('episodes', nargs='*', default=list(DEMO_EPISODES))
    p.add_argument('--duration', type=float, default=12.0)
    p.add_argument('--split', choices=('val', 'val2', 'test'),
                   help="the benchmark's closed-loop episodes of this split instead")
    args = p.parse_args()
    if args.split:
        specs = closed_loop_episodes(args.split)
        title = f'expert plans through the follower, {args.split} split'
    else:
        try:
            specs = [EpisodeSpec.parse(text, args.duration) for text in args.episodes]
        except ValueError as err:
            p.error(str(err))
        title = f'expert plans through the follower, {args.duration:.0f} s'
    results = []
    for spec in specs:
        results.append(run_episode(spec, ExpertPolicy(), LoopConfig()))
        print(f'{spec.scenario}:{spec.seed}: DS {results[-1].driving_score:.1f}', flush=True)
    print(markdown_table(results, title))
    print(f"\nper type: {per_type(results)}; mean {summarize(results)['driving_score']:.1f}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
