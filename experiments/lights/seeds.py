"""
Mean and spread over seeds of eval.sh (and test) outputs: EXPERIMENTS.md round 6's table.

Each GROUP is LABEL=DIR/NAME,DIR/NAME,...: one run per seed, DIR holding that run's
ol_val_NAME.json, cl_val2_NAME.json, cl_val_NAME.json and, when the test split was run,
test_NAME.json (`vlmad benchmark --split test --json`). Per group: mean ± sample std over
the seeds of val L2 (all, hard), the driving score over the 42 validation episodes, the
green-light starts (episodes whose route progress passes START_M), and the same on test.

Usage: python experiments/lights/seeds.py LABEL=DIR/NAME,DIR/NAME ...
"""
import pathlib
import statistics
import sys

# env.sh sets PYTHONSAFEPATH, which keeps a script's own folder off sys.path.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from summarize import load_run, mean_l2   # noqa: E402

START_M = 5.0    # [m] route progress that counts as having left the stop line


def run_numbers(run: str) -> dict:
    """Return the numbers of one seed's run (keys missing where its files are)."""
    folder, name = run.rsplit('/', 1)
    d = pathlib.Path(folder)
    out = {}
    ol = load_run(d / f'ol_val_{name}.json', 'open_loop')
    if ol:
        out['val L2'], out['val hard L2'] = mean_l2(ol['all']), mean_l2(ol['hard'])
    episodes = []
    for split in ('val2', 'val'):
        cl = load_run(d / f'cl_{split}_{name}.json', 'closed_loop')
        episodes += cl['episodes'] if cl else []
    if len(episodes) == 42:
        out['val DS (42)'] = statistics.fmean(e['driving_score'] for e in episodes)
        out['val green starts'] = _starts(episodes)
    test = d / f'test_{name}.json'
    ol, cl = load_run(test, 'open_loop'), load_run(test, 'closed_loop')
    if ol:
        out['test L2'], out['test hard L2'] = mean_l2(ol['all']), mean_l2(ol['hard'])
    if cl:
        out['test DS (28)'] = cl['summary']['driving_score']
        out['test green starts'] = _starts(cl['episodes'])
    return out


def _starts(episodes) -> int:
    return sum(e['route_progress'] > START_M for e in episodes if e['scenario'] == 'green_light')


def group_line(label: str, runs) -> str:
    """'label: key mean ± std (n) ...' over the seeds that have each number."""
    numbers = [run_numbers(r) for r in runs]
    keys = list(numbers[0]) if numbers else []
    cells = []
    for key in keys:
        values = [n[key] for n in numbers if key in n]
        spread = f' ± {statistics.stdev(values):.3g}' if len(values) > 1 else ''
        per_seed = '/'.join(f'{v:.3g}' for v in values)
        cells.append(f'{key} {statistics.fmean(values):.3g}{spread} [{per_seed}]')
    return f'{label} ({len(runs)} seeds): ' + '; '.join(cells)


if __name__ == '__main__':
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    for arg in sys.argv[1:]:
        label, runs = arg.split('=', 1)
        print(group_line(label, runs.split(',')))
