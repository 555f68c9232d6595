#!/usr/bin/env python3
"""
The closed loop's ceiling: the expert's own future as the plan, through the real follower.

At every planning tick the world is copied and the expert drives the copy for 3 s; its
positions at 0.5 s steps become the plan (a TimedPath, as a Path from the planner would), the
PathFollower tracks it, and the real world steps with the follower's command. No ROS and no
cameras: this measures what the follower + world + metrics give a perfect planner, so a
planner's closed-loop score can be read against it.

    experiments/closed_loop/oracle_check.py [--duration 12] [SCENARIO:SEED ...]

Limitation: the expert in the copy drives from wherever the closed-loop car is, and it cannot
start a lane change from a pose off its lane centre, so where the scene needs one
(stopped_vehicle) the oracle may queue behind the obstacle instead.
"""
import argparse
import copy
import sys

import numpy as np
from vlmad_ros.control.follower import PathFollower, TimedPath
from vlmad_ros.sim.episode import Episode, EpisodeSpec
from vlmad_ros.sim.score import markdown_table
from vlmad_ros.synth.world import EgoControl
from vlmad_ros.topics import PLAN_DT, PLAN_STEPS

DT = 0.1
CAMERA_EVERY = 2    # a plan every 0.2 s, as sim_node's default camera_period


def expert_plan(world) -> np.ndarray:
    """(6, 2) map positions of the ego 0.5 ... 3.0 s ahead, driven by the expert in a copy."""
    w = copy.deepcopy(world)
    per = int(round(PLAN_DT / DT))
    out = []
    for k in range(1, PLAN_STEPS * per + 1):
        w.step(DT)
        if k % per == 0:
            out.append([w.ego.x, w.ego.y])
    return np.array(out)


def run(spec: EpisodeSpec):
    ep = Episode(spec, DT)
    follower = PathFollower()
    offsets = PLAN_DT * np.arange(1, PLAN_STEPS + 1)
    while not ep.done:
        e = ep.world.ego
        if ep.k % CAMERA_EVERY == 0:
            follower.set_path(TimedPath(np.concatenate([[ep.t], ep.t + offsets]),
                                        np.vstack([[e.x, e.y], expert_plan(ep.world)])))
        cmd = follower.update(ep.t, (e.x, e.y, e.yaw), e.v)
        ep.step(EgoControl(cmd.linear_x, cmd.angular_z))
    return ep.result()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('episodes', nargs='*', default=[
        'cruise:9101', 'turn:9102', 'red_light:9103', 'green_light:9104', 'lead_brake:9105',
        'stopped_vehicle:9106', 'pedestrian:9107'])
    p.add_argument('--duration', type=float, default=12.0)
    args = p.parse_args()
    results = []
    for text in args.episodes:
        results.append(run(EpisodeSpec.parse(text, args.duration)))
        print(f'{text}: DS {results[-1].driving_score:.1f}', flush=True)
    print(markdown_table(results, f'expert plans through the follower, {args.duration:.0f} s'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
