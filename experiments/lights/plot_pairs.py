"""
Draw what VLM-AD changes in closed loop, per scenario type, over seed pairs (paired.py's runs).

    python experiments/lights/plot_pairs.py BASE_DIR/NAME,... NEW_DIR/NAME,... OUT.png

Two panels (the 42 validation episodes, the 28 test episodes): per scenario type and overall,
the mean driving score without and with the VLM-AD heads as bars (mean over the seeds), each
seed's value as a dot.
"""
import pathlib
import sys

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# env.sh sets PYTHONSAFEPATH, which keeps a script's own folder off sys.path.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from paired import episode_scores, runs_without_results, SETS  # noqa: E402
from summarize import TYPES  # noqa: E402

GROUPS = TYPES + ('all',)
COLOURS = {'no VLM-AD': '#999999', 'VLM-AD': '#1f77b4'}


def type_means(run: str, files) -> np.ndarray:
    """Return the mean driving score per scenario type and over all episodes (NaN if none)."""
    scores = episode_scores(run, files)
    out = []
    for group in GROUPS:
        values = [v for (scenario, _), v in scores.items() if group in ('all', scenario)]
        out.append(np.mean(values) if values else np.nan)
    return np.array(out)


def draw(ax, label: str, files, recipes: dict) -> None:
    width = 0.38
    x = np.arange(len(GROUPS))
    for k, (name, runs) in enumerate(recipes.items()):
        per_seed = np.array([type_means(r, files) for r in runs])        # (seeds, groups)
        offset = (k - 0.5) * width
        ax.bar(x + offset, np.nanmean(per_seed, axis=0), width, color=COLOURS[name],
               label=f'{name} ({len(runs)} seeds)')
        for row in per_seed:
            ax.plot(x + offset, row, 'o', color='black', markersize=3)
    ax.set_xticks(x, [g.replace('_', '\n') for g in GROUPS], fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel('driving score')
    ax.set_title(label)
    ax.grid(axis='y', alpha=0.3)


def main(argv) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    recipes = {'no VLM-AD': argv[0].split(','), 'VLM-AD': argv[1].split(',')}
    missing = runs_without_results(recipes['no VLM-AD'] + recipes['VLM-AD'])
    if missing:
        print(f'plot_pairs.py: no results for {", ".join(missing)}', file=sys.stderr)
        return 2
    fig, axes = plt.subplots(1, len(SETS), figsize=(12, 3.8), constrained_layout=True)
    for ax, (label, files) in zip(axes, SETS.items()):
        draw(ax, f'{label} closed-loop episodes', files, recipes)
    axes[0].legend(loc='lower left', fontsize=8)
    fig.savefig(argv[2], dpi=110)
    print(f'wrote {argv[2]}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
