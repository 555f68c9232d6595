#!/usr/bin/env python3
"""
The VLM-AD table on our data, mean +- std over seeds.

Trains every variant x seed with `vlmad train`, scores the best checkpoint of each on the
held-out test bags with `vlmad eval`, then prints the table.

    experiments/vlmad/run_table.py --train DIR --val DIR --test DIR --out RUNS \
        [--seeds 0 1 2] [--variants baseline vlmad q1 q2 ego_mlp] [--jobs 2] [--config FILE]

Runs already finished (RUNS/<variant>/s<seed>/test.json exists) are not repeated, so the
table can be extended or resumed. Each run logs to RUNS/<variant>/s<seed>/{train,eval}.log.
"""
import argparse
import concurrent.futures
import json
import pathlib
import subprocess
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
VARIANTS = {
    'baseline': ['--no-vlm-ad'],
    'vlmad': [],
    'q1': ['--q1-only'],
    'q2': ['--q2-only'],
    'ego_mlp': ['--model', 'ego_mlp', '--no-vlm-ad'],
}
LABELS = {'baseline': 'planner (no VLM-AD)', 'vlmad': 'planner + VLM-AD (Q1 + Q2)',
          'q1': 'planner + VLM-AD Q1 only (text alignment)',
          'q2': 'planner + VLM-AD Q2 only (action labels)',
          'ego_mlp': 'ego-state MLP (no cameras)'}


def run_one(variant: str, seed: int, args) -> pathlib.Path:
    run = pathlib.Path(args.out) / variant / f's{seed}'
    result = run / 'test.json'
    if result.is_file():
        return result
    run.mkdir(parents=True, exist_ok=True)
    train = ['nice', 'vlmad', 'train', '--data', args.train, '--out', str(run / 'train'),
             '--config', args.config, '--seed', str(seed), *VARIANTS[variant]]
    if args.val:
        train += ['--val-data', args.val]
    if (run / 'train' / 'train_state.pt').is_file():
        train.append('--resume')
    with open(run / 'train.log', 'a') as log:
        log.write(' '.join(train) + '\n')
        log.flush()
        subprocess.run(train, stdout=log, stderr=subprocess.STDOUT, check=True)
    ev = ['nice', 'vlmad', 'eval', '--data', args.test, '--checkpoint',
          str(run / 'train' / 'best.pt'), '--json', str(result), '--name', f'{variant} s{seed}']
    with open(run / 'eval.log', 'w') as log:
        log.write(' '.join(ev) + '\n')
        log.flush()
        subprocess.run(ev, stdout=log, stderr=subprocess.STDOUT, check=True)
    return result


def load_results(out: pathlib.Path, variant: str, seeds, split: str):
    """Test: the eval JSON of each seed; val: the selected epoch's record of metrics.jsonl."""
    res = []
    for s in seeds:
        run = out / variant / f's{s}'
        if split == 'test':
            if (run / 'test.json').is_file():
                res.append(json.loads((run / 'test.json').read_text()))
            continue
        log = run / 'train' / 'metrics.jsonl'
        if not (run / 'test.json').is_file() or not log.is_file():
            continue
        best = [r for r in map(json.loads, log.read_text().splitlines()) if r.get('best')]
        if best:
            res.append(best[-1]['val'])
    return res


def table(out: pathlib.Path, variants, seeds, split: str = 'test') -> str:
    keys = ('1s', '2s', '3s')
    lines = ['| model | seeds | L2 1s | L2 2s | L2 3s | L2 avg | Coll. 1s | Coll. 2s | Coll. 3s '
             '| Coll. avg |', '|---|---:|' + '---:|' * 8]
    for proto in ('avg_over_horizon', 'at_horizon'):
        lines_p = []
        for variant in variants:
            res = load_results(out, variant, seeds, split)
            if not res:
                continue
            row = [LABELS.get(variant, variant), str(len(res))]
            for metric in ('l2', 'collision'):
                vals = np.array([[r[metric][proto][k] for k in keys] for r in res], float)
                vals = np.concatenate([vals, vals.mean(1, keepdims=True)], 1)
                mean, std = vals.mean(0), vals.std(0, ddof=1) if len(res) > 1 else vals[0] * 0
                row += [f'{m:.3f} ± {s:.3f}' if metric == 'l2' else f'{m:.2f} ± {s:.2f}'
                        for m, s in zip(mean, std)]
            lines_p.append('| ' + ' | '.join(row) + ' |')
        if lines_p:
            lines.append(f'| *{proto}* | | | | | | | | | |')
            lines.extend(lines_p)
    n = {r['samples'] for v in variants for r in load_results(out, v, seeds, split)}
    return '\n'.join(lines) + f'\n\n{split} samples per run: {sorted(n)}'


def scenario_table(out: pathlib.Path, variants, seeds) -> str:
    """Test L2 (mean of 1/2/3 s, average protocol) per scenario type, mean +- std over seeds."""
    per = {v: [r['by_scenario'] for r in load_results(out, v, seeds, 'test')] for v in variants}
    names = sorted({n for runs in per.values() for r in runs for n in r})
    lines = ['| model | ' + ' | '.join(names) + ' |', '|---|' + '---:|' * len(names)]
    for v in variants:
        if not per[v]:
            continue
        row = [LABELS.get(v, v)]
        for n in names:
            vals = [np.mean(list(r[n]['l2']['avg_over_horizon'].values()))
                    for r in per[v] if n in r]
            row.append(f'{np.mean(vals):.3f} ± {np.std(vals, ddof=1) if len(vals) > 1 else 0:.3f}')
        lines.append('| ' + ' | '.join(row) + ' |')
    counts = {n: next(r[n]['samples'] for runs in per.values() for r in runs if n in r)
              for n in names}
    return '\n'.join(lines) + f'\n\nsamples per scenario: {counts}'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--train', required=True)
    parser.add_argument('--val', default='')
    parser.add_argument('--test', required=True)
    parser.add_argument('--out', required=True)
    parser.add_argument('--config', default=str(HERE / 'small.yaml'))
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument('--jobs', type=int, default=1)
    parser.add_argument('--table-only', action='store_true')
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    if not args.table_only:
        todo = [(v, s) for s in args.seeds for v in args.variants]
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(run_one, v, s, args): (v, s) for v, s in todo}
            for fut in concurrent.futures.as_completed(futures):
                v, s = futures[fut]
                try:
                    print(f'done {v} s{s}: {fut.result()}', flush=True)
                except subprocess.CalledProcessError as err:
                    print(f'FAILED {v} s{s}: {err} (see {out / v / f"s{s}"}/*.log)', flush=True)
    text = (f'## test scenes\n\n{table(out, args.variants, args.seeds, "test")}\n\n'
            f'## validation scenes (checkpoint selection)\n\n'
            f'{table(out, args.variants, args.seeds, "val")}\n\n'
            f'## test L2 by scenario (m, mean of 1/2/3 s, average protocol)\n\n'
            f'{scenario_table(out, args.variants, args.seeds)}')
    (out / 'table.md').write_text(text + '\n')
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
