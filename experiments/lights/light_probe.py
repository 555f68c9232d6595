"""
Measure whether a planner brakes for red and starts at green, open loop (EXPERIMENTS.md 4, 5).

Braking: at the keyframes of a split where the light governing the path is red or yellow, the
ego drives faster than 4 m/s and the expert's 3 s endpoint falls more than 1 m short of the
constant-acceleration extrapolation (it brakes for the light). Starting: the ego stands
(< 0.5 m/s), the light is green and the expert's 3 s endpoint is more than 1 m ahead (it
starts). Per checkpoint, the mean forward endpoint of the expert, of the extrapolation and of
the planner, and the share of the expert's braking / start distance the planner reproduces.

Usage: python experiments/lights/light_probe.py SPLIT_DIR CACHE_DIR CHECKPOINT...
"""
import sys

import numpy as np
import torch
from vlmad_ros import types as T
from vlmad_ros.bagschema import bag_paths
from vlmad_ros.data.dataset import BagDataset, collate
from vlmad_ros.evaluation.baselines import constant_acceleration_end
from vlmad_ros.planner import Planner
from vlmad_ros.teacher.base import LightState

INPUTS = (T.IMAGES, T.INTRINSICS, T.CAM_TO_BASE, T.EGO, T.COMMAND)
STOP = (int(LightState.RED), int(LightState.YELLOW))


def brakes(ego, expert_x, extrapolated_x, light) -> bool:
    """Return whether the expert brakes for a red or yellow light."""
    return light in STOP and ego[0] > 4.0 and expert_x < extrapolated_x - 1.0


def starts(ego, expert_x, extrapolated_x, light) -> bool:
    """Return whether the expert starts from standstill at a green light."""
    return light == int(LightState.GREEN) and ego[0] < 0.5 and expert_x > extrapolated_x + 1.0


def probe_rows(planner: Planner, dataset: BagDataset, picks) -> np.ndarray:
    """(N, 4): speed, expert x, extrapolated x, planned x at 3 s, for the keyframes picked."""
    rows = []
    for batch in torch.utils.data.DataLoader(dataset, batch_size=16, collate_fn=collate):
        pick = []
        for i, (ego, traj, light) in enumerate(zip(batch[T.EGO].numpy(), batch[T.TRAJ].numpy(),
                                                   batch[T.LIGHT_STATE].tolist())):
            cv = constant_acceleration_end(*ego[:3])[0]
            if picks(ego, traj[-1, 0], cv, light):
                pick.append((i, ego[0], traj[-1, 0], cv))
        if pick:
            plans = planner.run_batch({k: batch[k] for k in INPUTS})[T.TRAJ]
            rows += [(v, gt, cv, plans[i][-1, 0]) for i, v, gt, cv in pick]
    return np.array(rows).reshape(-1, 4)


def main(split: str, cache_dir: str, checkpoints) -> None:
    """Print two lines per checkpoint: braking at red, starting at green."""
    torch.set_num_threads(1)
    for path in checkpoints:
        planner = Planner.from_checkpoint(path)
        dataset = BagDataset(bag_paths([split]), planner.config, cache_dir=cache_dir)
        for what, picks in (('brakes', brakes), ('starts', starts)):
            rows = probe_rows(planner, dataset, picks)
            if not len(rows):
                print(f'{path}: no keyframe where the expert {what}')
                continue
            speed, gt, cv, pred = rows.mean(axis=0)
            share = (cv - pred) / (cv - gt)
            print(f'{path}: {len(rows)} keyframes, {speed:.1f} m/s; 3 s endpoint x: expert '
                  f'{gt:.2f}, extrapolated {cv:.2f}, planned {pred:.2f} m ({what} {share:.0%} '
                  "of the expert's change)")


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
