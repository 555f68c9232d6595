"""
Count the keyframes labelled past a lamp change (RawSample.light_change), per scenario.

Usage: python experiments/lights/count_light_changes.py BAG_FOLDER [N_BAGS]
"""
import collections
import pathlib
import sys

from vlmad_ros.data.reader import read_samples


def main(folder: str, n_bags: int) -> None:
    """Print flagged / all keyframes per scenario for the first n_bags bags of a folder."""
    flagged, total = collections.Counter(), collections.Counter()
    for bag in sorted(p for p in pathlib.Path(folder).iterdir() if p.is_dir())[:n_bags]:
        for s in read_samples(bag):
            total[s.scenario] += 1
            flagged[s.scenario] += int(s.light_change)
    for name in sorted(total):
        print(f'{name:16s} {flagged[name]:5d} of {total[name]:5d}')
    print(f'{"all":16s} {sum(flagged.values()):5d} of {sum(total.values()):5d}')


if __name__ == '__main__':
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10 ** 9)
