"""
Measure whether a planner brakes for a red or yellow light in open loop (EXPERIMENTS.md, Round 4).

At the keyframes of a split where the light governing the path is red or yellow, the ego
drives faster than 4 m/s and the expert's 3 s endpoint falls more than 1 m short of the
constant-acceleration extrapolation (it brakes for the light), print the mean forward
endpoint of the expert, of the extrapolation and of each planner.

Usage: python experiments/lights/braking_probe.py SPLIT_DIR CACHE_DIR CHECKPOINT...
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


def braking_rows(planner: Planner, dataset: BagDataset) -> np.ndarray:
    """(N, 4): speed, expert x, extrapolated x, planned x at 3 s, for the braking keyframes."""
    rows = []
    for batch in torch.utils.data.DataLoader(dataset, batch_size=16, collate_fn=collate):
        pick = []
        for i, (ego, traj, light) in enumerate(zip(batch[T.EGO].numpy(), batch[T.TRAJ].numpy(),
                                                   batch[T.LIGHT_STATE].tolist())):
            cv = constant_acceleration_end(*ego[:3])[0]
            if light in STOP and ego[0] > 4.0 and traj[-1, 0] < cv - 1.0:
                pick.append((i, ego[0], traj[-1, 0], cv))
        if pick:
            plans = planner.run_batch({k: batch[k] for k in INPUTS})[T.TRAJ]
            rows += [(v, gt, cv, plans[i][-1, 0]) for i, v, gt, cv in pick]
    return np.array(rows).reshape(-1, 4)


def main(split: str, cache_dir: str, checkpoints) -> None:
    """Print one line per checkpoint."""
    torch.set_num_threads(1)
    for path in checkpoints:
        planner = Planner.from_checkpoint(path)
        rows = braking_rows(planner, BagDataset(bag_paths([split]), planner.config,
                                                cache_dir=cache_dir))
        speed, gt, cv, pred = rows.mean(axis=0)
        share = (cv - pred) / (cv - gt)
        print(f'{path}: {len(rows)} keyframes, {speed:.1f} m/s; 3 s endpoint x: expert {gt:.2f}, '
              f'extrapolated {cv:.2f}, planned {pred:.2f} m (brakes {share:.0%} of the '
              "expert's braking)")


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
