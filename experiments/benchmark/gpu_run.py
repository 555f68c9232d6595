#!/usr/bin/env python3
"""
The benchmark experiment on one GPU machine, start to finish, inside a fixed wall budget.

    experiments/benchmark/gpu_run.py --out OUT --text-cache DIR [--budget-s 540] [--scale 1]

1. records the train and val splits with `vlmad benchmark --make-data` on every CPU core
   (the same seeds as anywhere else: the data is identical to a CPU machine's), plus the train
   split without recovery perturbations (the ablation of recovery data);
2. decodes every bag once into the sample cache, in parallel;
3. trains all variants at once on the one GPU (small models: the GPU is shared; each run
   has its own process and DataLoader workers): baseline x3 seeds, VLM-AD (Q1+Q2) x3,
   ego-state MLP x3, Q1 only, Q2 only, baseline without recovery data;
4. at the end of the budget stops what still runs (every epoch already wrote best.pt) and
   packs checkpoints, metrics.jsonl, configs and logs into OUT (tar files under 16 MB).

The text encoder's weights are not on that machine: --text-cache holds the embeddings of the
rule teacher's texts computed elsewhere from the same data (`vlmad train --text-cache-only`).
Nothing here needs ROS: the package runs from the source tree.
"""
import argparse
import multiprocessing
import os
import pathlib
import signal
import subprocess
import sys
import tarfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CONFIG = HERE / 'planner.yaml'
VLMAD = [sys.executable, '-m', 'vlmad_ros.cli']

# name -> extra `vlmad train` arguments (the seed is added per run)
VARIANTS = {
    'baseline': ['--no-vlm-ad'],
    'vlmad': [],
    'ego_mlp': ['--model', 'ego_mlp', '--no-vlm-ad'],
    'q1': ['--q1-only'],
    'q2': ['--q2-only'],
    'baseline_norecovery': ['--no-vlm-ad'],
}
RUNS = ([('baseline', s) for s in (0, 1, 2)] + [('vlmad', s) for s in (0, 1, 2)]
        + [('ego_mlp', s) for s in (0, 1, 2)] + [('q1', 0), ('q2', 0),
                                                  ('baseline_norecovery', 0)])


def log(msg: str, out: pathlib.Path) -> None:
    line = f'[{time.strftime("%H:%M:%S")}] {msg}'
    print(line, flush=True)
    with open(out / 'log.txt', 'a') as f:
        f.write(line + '\n')


def make_data(data: pathlib.Path, scale: float, workers: int, out: pathlib.Path) -> None:
    cmd = VLMAD + ['benchmark', '--make-data', str(data), '--splits', 'train', 'val',
                   '--workers', str(workers), '--scale', str(scale)]
    subprocess.run(cmd, check=True)
    # The ablation: the same train scenes without knocks (vlmad synth + rule annotation).
    from vlmad_ros.benchmark.spec import SPLITS
    raw, final = data / 'raw_norecovery', data / 'train_norecovery'
    if not (final / 'DONE').is_file():
        args = SPLITS['train'].synth_args(scale)
        args[args.index('--perturb') + 1] = '0'
        subprocess.run(VLMAD + ['synth', *args, '--out', str(raw), '--workers', str(workers),
                                '--quiet'], check=True, stdout=subprocess.DEVNULL)
        procs = [subprocess.Popen(VLMAD + ['annotate', str(raw), '--out', str(final),
                                           '--teacher', 'rule', '--no-progress',
                                           '--shard', f'{k}/{workers}'],
                                  stdout=subprocess.DEVNULL) for k in range(workers)]
        if any(p.wait() for p in procs):
            raise RuntimeError('annotating the no-recovery split failed')
        (final / 'DONE').write_text('done\n')
    log('data ready: ' + ', '.join(f'{p.name} {len(list(p.glob("synth-*")))} bags'
                                   for p in sorted(data.iterdir()) if p.is_dir()), out)


def _cache_one(job):
    bag, cache_dir = job
    from vlmad_ros.data.dataset import BagDataset
    from vlmad_ros.model.config import PlannerConfig
    import yaml
    cfg = PlannerConfig(**yaml.safe_load(CONFIG.read_text())['model'])
    return len(BagDataset([bag], cfg, cache_dir=cache_dir, threads=1))


def build_caches(data: pathlib.Path, cache_dir: pathlib.Path, workers: int) -> int:
    """Decode every bag once, in parallel (the trainings then only memory-map)."""
    bags = sorted(str(p) for split in ('train', 'val', 'train_norecovery')
                  for p in (data / split).glob('synth-*') if p.is_dir())
    with multiprocessing.get_context('spawn').Pool(workers) as pool:
        return sum(pool.map(_cache_one, [(b, str(cache_dir)) for b in bags], chunksize=4))


def start_run(name: str, seed: int, data: pathlib.Path, runs: pathlib.Path,
              cache_dir: pathlib.Path, text_cache: pathlib.Path, epochs: int):
    train = data / ('train_norecovery' if name == 'baseline_norecovery' else 'train')
    out = runs / f'{name}_s{seed}'
    cmd = VLMAD + ['train', '--data', str(train), '--val-data', str(data / 'val'),
                   '--out', str(out), '--config', str(CONFIG), '--seed', str(seed),
                   '--device', 'cuda', '--num-workers', '2', '--threads', '2',
                   '--epochs', str(epochs), '--cache-dir', str(cache_dir),
                   '--text-cache', str(text_cache), '--text-cache-only', *VARIANTS[name]]
    runs.mkdir(parents=True, exist_ok=True)
    logf = open(runs / f'{name}_s{seed}.log', 'w')
    return subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                            start_new_session=True)


def pack(runs: pathlib.Path, out: pathlib.Path) -> None:
    """One tar per variant (checkpoints are ~4 MB; each tar stays under 16 MB)."""
    for name in VARIANTS:
        members = sorted(runs.glob(f'{name}_s*'))
        if not members:
            continue
        with tarfile.open(out / f'{name}.tar.gz', 'w:gz') as tar:
            for run in members:
                for rel in ('best.pt', 'metrics.jsonl', 'config.yaml'):
                    if (run / rel).is_file():
                        tar.add(run / rel, arcname=f'{run.name}/{rel}')
                if run.suffix == '.log' or run.is_file():
                    tar.add(run, arcname=run.name)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', required=True)
    p.add_argument('--text-cache', required=True)
    p.add_argument('--work', default='/tmp/vlmad_bench')
    p.add_argument('--budget-s', type=float, default=540.0)
    p.add_argument('--scale', type=float, default=1.0)
    p.add_argument('--epochs', type=int, default=12)
    p.add_argument('--workers', type=int, default=os.cpu_count() or 2)
    args = p.parse_args()
    t0 = time.time()
    out, work = pathlib.Path(args.out), pathlib.Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    data, cache_dir, runs = work / 'data', work / 'cache', work / 'runs'
    make_data(data, args.scale, args.workers, out)
    log(f'data {time.time() - t0:.0f} s', out)
    n = build_caches(data, cache_dir, args.workers)
    log(f'caches: {n} samples, {time.time() - t0:.0f} s', out)
    procs = {f'{n}_s{s}': start_run(n, s, data, runs, cache_dir,
                                    pathlib.Path(args.text_cache), args.epochs)
             for n, s in RUNS}
    stop_at = t0 + args.budget_s - 40.0
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
    log(f'training done {time.time() - t0:.0f} s', out)
    pack(runs, out)
    log(f'packed {time.time() - t0:.0f} s', out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
