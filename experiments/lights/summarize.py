"""
Summarize eval.sh outputs: one block per run, the numbers of EXPERIMENTS.md rounds 4 to 7.

Per run NAME, EVAL_DIR holds ol_val_NAME.json, cl_val2_NAME.json, cl_val_NAME.json and, once
the test split was run, test_NAME.json (any may be missing). Prints val open-loop L2 (all and
hard, mean of 1/2/3 s; then per scenario type), per closed-loop split the driving score, route
completion, infractions and the mean score per scenario type, and the mean over the validation
episodes; then the same for the test split.

Usage: python experiments/lights/summarize.py EVAL_DIR NAME...
"""
import collections
import json
import pathlib
import sys

TYPES = ('cruise', 'green_light', 'lead_brake', 'pedestrian', 'red_light', 'stopped_vehicle',
         'turn')


def load_run(path: pathlib.Path, part: str = ''):
    """
    Return the one run of a benchmark JSON's `part` (open_loop / closed_loop), or None.

    Without `part`, whichever of the two the file holds (eval.sh writes one per file).
    """
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    found = data.get(part) if part else (data.get('open_loop') or data.get('closed_loop'))
    return next(iter(found.values())) if found else None


def mean_l2(part: dict) -> float:
    """Return the L2 averaged over the horizon, then over 1 / 2 / 3 s."""
    return sum(part['l2']['avg_over_horizon'].values()) / 3


def open_loop_line(split: str, run: dict) -> str:
    """One split's open loop: L2 over all and the hard keyframes, then each type's keyframes."""
    per = run.get('by_scenario', {})
    types = '/'.join(f'{mean_l2(per[t]):.2f}' if t in per else '-' for t in TYPES)
    return (f"{split} L2 {mean_l2(run['all']):.3f} m, hard {mean_l2(run['hard']):.3f} m | "
            f'{types}')


def closed_loop_line(split: str, run: dict) -> str:
    """One split: score, completion, infraction totals, mean score per scenario type."""
    s = run['summary']
    per = collections.defaultdict(list)
    for e in run['episodes']:
        per[e['scenario']].append(e['driving_score'])
    types = '/'.join(f'{sum(per[t]) / len(per[t]):.0f}' if per[t] else '-' for t in TYPES)
    return (f"{split} DS {s['driving_score']:.1f} RC {s['route_completion']:.1f} | veh "
            f"{s['collisions_vehicle']} ped {s['collisions_pedestrian']} red {s['red_lights']} "
            f"off-road {s['off_road_events']} deviated {s['route_deviations']} | {types}")


def summarize(eval_dir: pathlib.Path, name: str) -> str:
    """Return the block of one run."""
    lines = [name]
    ol = load_run(eval_dir / f'ol_val_{name}.json')
    if ol:
        lines.append('  ' + open_loop_line('val', ol))
    episodes = []
    for split in ('val2', 'val'):
        cl = load_run(eval_dir / f'cl_{split}_{name}.json')
        if cl:
            lines.append('  ' + closed_loop_line(split, cl))
            episodes += cl['episodes']
    if episodes:
        mean = sum(e['driving_score'] for e in episodes) / len(episodes)
        lines.append(f'  DS over {len(episodes)} episodes {mean:.1f}')
    test = eval_dir / f'test_{name}.json'
    ol, cl = load_run(test, 'open_loop'), load_run(test, 'closed_loop')
    if ol:
        lines.append('  ' + open_loop_line('test', ol))
    if cl:
        lines.append('  ' + closed_loop_line('test', cl))
    if len(lines) == 1:
        lines.append(f'  no results: none of ol_val_{name}.json, cl_val2_{name}.json, '
                     f'cl_val_{name}.json, test_{name}.json in {eval_dir}')
    return '\n'.join(lines)


if __name__ == '__main__':
    print('types: ' + '/'.join(TYPES))
    for run_name in sys.argv[2:]:
        print(summarize(pathlib.Path(sys.argv[1]), run_name))
