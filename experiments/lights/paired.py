"""
Paired comparison of two recipes over seed pairs: what VLM-AD changes, with its uncertainty.

Each seed's two runs (same seed, same data order, with and without the VLM-AD heads) drive the
same closed-loop episodes, so the difference is taken per episode and per seed. Printed per
episode set (the 42 validation episodes of val2 + val, the 28 test episodes): the driving-score
difference of each seed pair, their mean, a 95 % bootstrap interval of that mean over episodes
(episodes resampled, each one's difference averaged over the seeds: the spread that comes from
which episodes the benchmark holds, not from more seeds), and per episode (its change averaged
over the seeds) better / worse / tied with an exact two-sided sign test; then the open-loop L2
change per pair (all and hard keyframes).

Usage: python experiments/lights/paired.py BASE_DIR/NAME,... NEW_DIR/NAME,...
  (comma-separated runs in the same seed order; files as eval.sh and `vlmad benchmark --split
  test --json` write them, see summarize.py)
"""
import math
import pathlib
import statistics
import sys

import numpy as np

# env.sh sets PYTHONSAFEPATH, which keeps a script's own folder off sys.path.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from summarize import load_run, mean_l2   # noqa: E402

RESAMPLES = 10_000
TIE = 0.5            # driving-score points within which an episode counts as tied
SETS = {'val (42)': (('cl_val2_{}.json', 'closed_loop'), ('cl_val_{}.json', 'closed_loop')),
        'test (28)': (('test_{}.json', 'closed_loop'),)}
OPEN_LOOP = {'val': 'ol_val_{}.json', 'test': 'test_{}.json'}


def episode_scores(run: str, files) -> dict:
    """Return {(scenario, seed): driving score} of one run over the files of an episode set."""
    folder, name = run.rsplit('/', 1)
    scores = {}
    for pattern, part in files:
        found = load_run(pathlib.Path(folder) / pattern.format(name), part)
        if found is None:
            return {}
        scores.update({(e['scenario'], e['seed']): e['driving_score'] for e in found['episodes']})
    return scores


def runs_without_results(runs) -> list:
    """Return the runs that have none of the result files this script reads (a typo, say)."""
    patterns = {pattern for files in SETS.values() for pattern, _ in files}
    patterns |= set(OPEN_LOOP.values())
    missing = []
    for run in runs:
        folder, _, name = run.rpartition('/')
        if not any((pathlib.Path(folder or '.') / p.format(name)).is_file() for p in patterns):
            missing.append(run)
    return missing


def sign_test(better: int, worse: int) -> float:
    """Exact two-sided binomial p-value of `better` against `worse` (ties dropped)."""
    n = better + worse
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(better, worse) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def closed_loop_lines(label: str, files, base_runs, new_runs, rng) -> list:
    """Compare the driving scores of one episode set over the seed pairs that have it."""
    pairs = [(episode_scores(b, files), episode_scores(n, files))
             for b, n in zip(base_runs, new_runs)]
    pairs = [(b, n) for b, n in pairs if b and b.keys() == n.keys()]
    if not pairs:
        return [f'{label}: no seed pair has both runs']
    episodes = sorted(pairs[0][0])
    diffs = np.array([[n[e] - b[e] for e in episodes] for b, n in pairs])   # (pairs, episodes)
    per_pair = diffs.mean(axis=1)
    per_episode = diffs.mean(axis=0)
    picks = rng.integers(0, len(episodes), size=(RESAMPLES, len(episodes)))
    low, high = np.percentile(per_episode[picks].mean(axis=1), [2.5, 97.5])
    better = int((per_episode > TIE).sum())
    worse = int((per_episode < -TIE).sum())
    return [f'{label}: driving score change per seed pair '
            + ' / '.join(f'{d:+.1f}' for d in per_pair)
            + f'; mean {per_pair.mean():+.1f}, 95 % interval over episodes '
            f'[{low:+.1f}, {high:+.1f}] ({len(pairs)} pairs x {len(episodes)} episodes)',
            f'  episodes better {better}, worse {worse}, tied {len(episodes) - better - worse} '
            f'(mean change over the seeds within {TIE}); sign test p = '
            f'{sign_test(better, worse):.3f}']


def l2_change(split: str, base_run: str, new_run: str):
    """Return the relative L2 change [%] (all keyframes, hard subset), or None without files."""
    runs = []
    for run in (base_run, new_run):
        folder, name = run.rsplit('/', 1)
        runs.append(load_run(pathlib.Path(folder) / OPEN_LOOP[split].format(name), 'open_loop'))
    if None in runs:
        return None
    return tuple(100 * (mean_l2(runs[1][k]) / mean_l2(runs[0][k]) - 1) for k in ('all', 'hard'))


def open_loop_line(split: str, base_runs, new_runs) -> str:
    """Return the line of relative L2 changes (all, hard) per seed pair and the hard mean."""
    changes = [l2_change(split, b, n) for b, n in zip(base_runs, new_runs)]
    cells = ['-' if c is None else f'all {c[0]:+.1f} % hard {c[1]:+.1f} %' for c in changes]
    hard = [c[1] for c in changes if c is not None]
    mean = f'; hard mean {statistics.fmean(hard):+.1f} %' if hard else ''
    return f'{split} open-loop L2 change per seed pair: ' + ' / '.join(cells) + mean


def main(argv) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    base_runs, new_runs = (a.split(',') for a in argv)
    if len(base_runs) != len(new_runs):
        print('paired.py: give as many NEW runs as BASE runs (one per seed)', file=sys.stderr)
        return 2
    missing = runs_without_results(base_runs + new_runs)
    if missing:
        print(f'paired.py: no results for {", ".join(missing)} (looked for DIR/'
              'ol_val_NAME.json, cl_val2_NAME.json, cl_val_NAME.json, test_NAME.json)',
              file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    for label, files in SETS.items():
        print('\n'.join(closed_loop_lines(label, files, base_runs, new_runs, rng)))
    for split in OPEN_LOOP:
        print(open_loop_line(split, base_runs, new_runs))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
