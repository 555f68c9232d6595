#!/usr/bin/env python3
"""
Draw the planner-step latencies of a GPU run (`vlmad bench planner-step --json` files).

    python experiments/gpu_results/plot_step.py experiments/gpu_results/h200_2026-11-28 \
        docs/images/gpu_planner_step.png

One panel per model (step_r18.json, step_r34.json, step_default.json when present): each
variant's p50 as a bar, p90 as the whisker, and issue 12's 5 ms line.
"""
import json
import pathlib
import sys

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

PANELS = (('step_r18.json', 'ResNet-18 704x256 (nuScenes preset)'),
          ('step_r34.json', 'ResNet-34 800x448 (nuScenes preset)'),
          ('step_default.json', 'default.pt (7 views at 128x72)'))


def draw(ax, result: dict, title: str) -> None:
    names = list(result['variants'])[::-1]
    p50 = [result['variants'][n]['p50_ms'] for n in names]
    p90 = [result['variants'][n]['p90_ms'] for n in names]
    colours = ['#999999' if n.startswith('(') else '#d62728' if n.startswith('cpu')
               else '#1f77b4' for n in names]
    ax.barh(names, p50, xerr=[[0] * len(p50), [b - a for a, b in zip(p50, p90)]],
            color=colours, capsize=3)
    for y, (value, top) in enumerate(zip(p50, p90)):
        ax.text(top + 0.4, y, f'{value:.2f}', va='center', fontsize=8)
    ax.axvline(5.0, color='k', linestyle='--', linewidth=1)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel('ms per camera set (bar p50, whisker p90; dashed: 5 ms goal)')


def main(folder: str, out: str) -> int:
    panels = [(json.loads((pathlib.Path(folder) / f).read_text()), t) for f, t in PANELS
              if (pathlib.Path(folder) / f).is_file()]
    if not panels:
        print(f'no step_*.json in {folder}', file=sys.stderr)
        return 2
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.4 * len(panels)), squeeze=False)
    for ax, (result, title) in zip(axes[:, 0], panels):
        draw(ax, result, title)
    gpu = panels[0][0].get('gpu') or 'CPU'
    fig.suptitle(f'planner_node step, six 1600x900 JPEGs -> poses, on {gpu} '
                 f'(vlmad bench planner-step)', fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(out)
    return 0


if __name__ == '__main__':
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
