"""
Count standstill samples in the first N bags of one scenario (EXPERIMENTS.md, Round 3).

    python experiments/dagger/standstill_count.py BAG_DIR [--scenario green_light] [--bags 12]

Prints samples, samples at a standstill (< 0.3 m/s) and standstills whose 3 s future moves
more than 2 m (a start, e.g. at a green light).
"""
import argparse
import collections
import pathlib

import numpy as np
from vlmad_ros.data.reader import read_samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('bags')
    parser.add_argument('--scenario', default='green_light')
    parser.add_argument('--bags', type=int, default=12, dest='n')
    args = parser.parse_args()
    counts, used = collections.Counter(), 0
    for bag in sorted(p for p in pathlib.Path(args.bags).iterdir() if p.is_dir()):
        if used >= args.n:
            break
        samples = list(read_samples(bag))
        if not samples or samples[0].scenario != args.scenario:
            continue
        used += 1
        for s in samples:
            end = np.asarray(s.trajectory.xy)[-1]
            counts['samples'] += 1
            if float(s.ego.speed) < 0.3:
                counts['standstill'] += 1
                counts['standstill_then_start'] += float(np.hypot(*end)) > 2.0
    print(f'{used} {args.scenario} bags: {dict(counts)}')


if __name__ == '__main__':
    main()
