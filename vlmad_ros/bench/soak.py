"""
`vlmad bench soak`: whether the planner leaks memory or slows down over a long run.

Default: the installed planner_node under the `bench planner` load (six 1600x900 JPEG streams +
odometry from a feeder process, 20 Hz) for --duration seconds (30 min by default). The node's
RSS (VmRSS of /proc/PID/status) is sampled every --sample-every seconds; the latency of every
set is known afterwards from the feeder's log. Reported: least-squares slopes of RSS (MB/min)
and latency (ms/min) after the first --settle fraction of the run (allocator and cache warm-up),
and the sets that got no Path (dropped).

`--closed-loop N`: sim_node + planner_node + path_follower in lockstep (the `vlmad demo`
processes and parameters) for N short episodes; the RSS slope of each process.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Sequence, Tuple

import numpy as np

from vlmad_ros import children
from vlmad_ros.bench import planner as bench_planner

SCENARIOS = ('red_light', 'pedestrian', 'stopped_vehicle', 'turn')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--duration', type=float, default=1800.0,
                        help='seconds of load (default: %(default)s = 30 min)')
    parser.add_argument('--rate', type=float, default=20.0, help='offered set rate [Hz]')
    parser.add_argument('--sample-every', type=float, default=0.0,
                        help='RSS sampling period [s] (default: duration / 60, 1..10 s)')
    parser.add_argument('--settle', type=float, default=0.1,
                        help='fraction of the run left out of the slopes (warm-up)')
    parser.add_argument('--closed-loop', type=int, default=0, metavar='N',
                        help='instead: sim + planner + follower in lockstep for N episodes')
    parser.add_argument('--episode-duration', type=float, default=4.0,
                        help='simulated seconds per closed-loop episode')
    parser.add_argument('--checkpoint', default='', help='planner checkpoint (default: random '
                        'weights)')
    parser.add_argument('--params-file', default='')
    parser.add_argument('-p', '--param', action='append', default=[])
    parser.add_argument('--reliable', action='store_true')
    parser.add_argument('--feeder-profile', default=None)
    parser.add_argument('--width', type=int, default=1600)
    parser.add_argument('--height', type=int, default=900)
    parser.add_argument('--json', default='', help='also write the results here')


def rss_mb(pid: int) -> float:
    """Resident memory of a process [MB] from /proc (VmRSS, kB); NaN once it is gone."""
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float('nan')


def slope_per_min(t_s: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of y over time, per minute; NaN with fewer than 3 points."""
    t, v = np.asarray(t_s, float), np.asarray(y, float)
    ok = np.isfinite(t) & np.isfinite(v)
    if ok.sum() < 3 or np.ptp(t[ok]) == 0:
        return float('nan')
    return float(np.polyfit(t[ok] / 60.0, v[ok], 1)[0])


def _settled(samples: List[Tuple[float, float]], settle: float) -> List[Tuple[float, float]]:
    if not samples:
        return samples
    t0, t1 = samples[0][0], samples[-1][0]
    return [s for s in samples if s[0] >= t0 + settle * (t1 - t0)]


def _series(samples: List[Tuple[float, float]], settle: float) -> Dict[str, object]:
    kept = _settled(samples, settle)
    return {'samples': len(samples), 'first': round(samples[0][1], 1) if samples else None,
            'last': round(samples[-1][1], 1) if samples else None,
            'slope_per_min': round(slope_per_min(*zip(*kept)) if len(kept) > 2
                                   else float('nan'), 4)}


def _sample_period(args) -> float:
    return args.sample_every or min(10.0, max(1.0, args.duration / 60.0))


def soak_planner(args, env, tmp: pathlib.Path) -> Dict[str, object]:
    """Run the node under the feeder's load for args.duration s, sampling its RSS."""
    node_args = bench_planner.node_command(args)
    log = open(tmp / 'planner_node.log', 'w')
    node = children.spawn(node_args, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    receiver = bench_planner.Receiver()
    rss: List[Tuple[float, float]] = []
    try:
        bench_planner.warm_up(node, receiver, args, env, tmp)
        start = time.time()
        feeder_env = dict(env, FASTDDS_DEFAULT_PROFILES_FILE=args.feeder_profile) \
            if args.feeder_profile else env        # as `bench planner`: large-message profile
        feeder = children.spawn(_feeder_cmd(args, tmp / 'sets.json'), env=feeder_env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        period = _sample_period(args)
        while feeder.poll() is None:
            rss.append((time.time() - start, rss_mb(node.pid)))
            if node.poll() is not None:
                raise RuntimeError(f'planner_node exited during the soak (see {log.name})')
            time.sleep(period)
        if feeder.returncode != 0:
            raise RuntimeError(f'feeder exited with {feeder.returncode}')
        time.sleep(1.5)                                    # trailing Paths
    finally:
        receiver.close()
        children.stop([node], waits=(10.0, 3.0, 2.0))
        log.close()
    fed = json.loads((tmp / 'sets.json').read_text())
    sets = {int(s): int(t) for s, t in fed['sets'].items()}
    got = {s: receiver.received[s] for s in sets if s in receiver.received}
    latency = sorted(((sets[s] / 1e9 - start, (got[s] - sets[s]) / 1e6) for s in got))
    lat_ms = [v for _, v in latency]
    return {
        'node': ' '.join(node_args), 'offered_hz': round(fed['offered_hz'], 2),
        'sets_offered': len(sets), 'paths_received': len(got),
        'dropped_sets': len(sets) - len(got), 'rss_mb': _series(rss, args.settle),
        'latency_ms': dict(_series(latency, args.settle),
                           p50=round(float(np.percentile(lat_ms, 50)), 1) if lat_ms else None,
                           p95=round(float(np.percentile(lat_ms, 95)), 1) if lat_ms else None),
    }


def _feeder_cmd(args, log: pathlib.Path) -> List[str]:
    cmd = [sys.executable, '-m', 'vlmad_ros.bench.feeder', '--rate', str(args.rate),
           '--duration', str(args.duration), '--warmup', '1.5', '--log', str(log),
           '--width', str(args.width), '--height', str(args.height)]
    return cmd + (['--reliable'] if args.reliable else [])


def episodes(n: int) -> List[str]:
    """N held-out episodes cycling through the demo's scenario kinds, each with its own seed."""
    return [f'{SCENARIOS[k % len(SCENARIOS)]}:{9001 + k}' for k in range(n)]


def soak_closed_loop(args, env, tmp: pathlib.Path) -> Dict[str, object]:
    """
    Run the demo's three processes for N episodes, sampling the RSS of each.

    Slopes leave out the first episode (start-up: torch, renderer caches); `mb_per_episode` is
    the slope of the RSS at each episode's end (the sim writes a trace file per episode).
    """
    from vlmad_ros import demo
    params = demo.node_parameters(str(tmp), args.checkpoint, not args.checkpoint,
                                  episodes(args.closed_loop), args.episode_duration)
    rss: Dict[str, List[Tuple[float, float, int]]] = {}
    start = time.time()
    last = [-1e9]
    period = args.sample_every or 2.0

    def sample(procs) -> None:
        now = time.time() - start
        done = len(list((tmp / 'traces').glob('episode_*.json')))
        ends = [s[2] for s in rss.get('sim_node', [])]
        if now - last[0] >= period or (ends and done > ends[-1]):
            last[0] = now
            for name, proc in procs.items():
                rss.setdefault(name, []).append((now, rss_mb(proc.pid), done))
    rc = demo.run_loop(tmp, params, timeout=600.0 + 60.0 * args.closed_loop, env=env,
                       on_poll=sample)
    if rc != 0:
        raise RuntimeError(f'closed loop failed (rc {rc}; logs in {tmp / "logs"})')
    results = json.loads((tmp / 'results.json').read_text())
    return {'episodes': len(results['scenarios']), 'episodes_asked': args.closed_loop,
            'episode_duration_s': args.episode_duration,
            'wall_s': round(time.time() - start, 1),
            'rss_mb': {name: _episode_series(s) for name, s in rss.items()}}


def _episode_series(samples: List[Tuple[float, float, int]]) -> Dict[str, object]:
    """RSS slopes of one process: per minute after episode 1, and per episode."""
    steady = [(t, v) for t, v, done in samples if done >= 1]
    ends = {}
    for _, v, done in samples:
        ends.setdefault(done, v)          # first sample after `done` episodes ended
    per_episode = [(k, v) for k, v in sorted(ends.items()) if k >= 1]
    out = _series([(t, v) for t, v, _ in samples], 0.0)
    out['slope_per_min'] = round(slope_per_min(*zip(*steady)), 4) if len(steady) > 2 \
        else float('nan')
    out['after_episode_1'] = round(per_episode[0][1], 1) if per_episode else None
    out['mb_per_episode'] = round(slope_per_min(*zip(*[(60.0 * k, v) for k, v in
                                                       per_episode])), 4) \
        if len(per_episode) > 2 else float('nan')
    return out


def run(args) -> int:
    if args.duration <= 0 or args.closed_loop < 0 or not 0 <= args.settle < 1:
        print('vlmad bench soak: --duration must be > 0, --closed-loop >= 0, --settle in [0, 1)',
              file=sys.stderr)
        return 2
    env = bench_planner.bench_env()
    env['PYTHONUNBUFFERED'] = '1'
    tmp = pathlib.Path(tempfile.mkdtemp(prefix='vlmad_soak_'))
    load_before = [round(x, 2) for x in os.getloadavg()]
    print(f'[bench soak] ROS_DOMAIN_ID={env["ROS_DOMAIN_ID"]}; load average {load_before}; '
          f'files in {tmp}', flush=True)
    if args.closed_loop:
        result = {'mode': 'closed_loop', **soak_closed_loop(args, env, tmp)}
    else:
        result = {'mode': 'planner', 'duration_s': args.duration,
                  **soak_planner(args, env, tmp)}
    summary = {'command': ' '.join(['vlmad'] + sys.argv[1:]), 'cpu_count': os.cpu_count(),
               'loadavg_before': load_before,
               'loadavg_after': [round(x, 2) for x in os.getloadavg()], **result}
    print(json.dumps(summary, indent=2), flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0
