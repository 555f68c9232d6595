"""
`vlmad bench planner`: the installed planner_node under a six-camera JPEG load, over DDS.

Three processes, as on a car: the node (started with config/planner.yaml like a user does), a
feeder publishing six 1600x900 JPEG streams + odometry (vlmad_ros.bench.feeder), and this
process receiving the Paths and /diagnostics. Latency = Path received here minus the time the
feeder finished publishing the last message of that set (same machine, same wall clock).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np

from vlmad_ros import children


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--rates', nargs='+', type=float, default=[12.0, 20.0, 40.0],
                        help='offered set rates [Hz]; the last default (40) is more than the '
                        'node can plan, so its output rate is the maximum')
    parser.add_argument('--duration', type=float, default=10.0, help='seconds per rate')
    parser.add_argument('--checkpoint', default='', help='planner checkpoint (default: random '
                        'weights via allow_random_weights)')
    parser.add_argument('--params-file', default='', help='node parameters (default: the '
                        'installed config/planner.yaml)')
    parser.add_argument('-p', '--param', action='append', default=[],
                        help='extra node parameter name:=value (repeatable)')
    parser.add_argument('--reliable', action='store_true',
                        help='reliable QoS on feeder and node (default best effort)')
    parser.add_argument('--feeder-profile', default=None,
                        help='FastDDS XML profile for the feeder process only (default: the '
                        'installed config/fastdds_large_messages.xml; "" for none)')
    parser.add_argument('--width', type=int, default=1600)
    parser.add_argument('--height', type=int, default=900)
    parser.add_argument('--json', default='', help='also write the results here')


class Receiver:
    """Paths (receive wall time by stamp) and the latest diagnostics, in this process."""

    def __init__(self):
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Path
        from vlmad_ros.nodes.common import SpinningNode
        self.spinner = SpinningNode('vlmad_bench_receiver')
        self.node = self.spinner.node
        self.received: Dict[int, int] = {}
        self.poses_ok = True
        self.diag: Dict[str, Dict[str, str]] = {}
        self.node.create_subscription(Path, '/vlmad/plan', self._on_path, 100)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        self.spinner.start()

    def _on_path(self, msg) -> None:
        now = time.time_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.received[stamp] = now
        self.poses_ok &= len(msg.poses) == 6

    def _on_diag(self, msg) -> None:
        for st in msg.status:
            self.diag[st.name.split(': ')[-1]] = {kv.key: kv.value for kv in st.values}

    def close(self) -> None:
        self.spinner.close()


def _feeder(rate: float, duration: float, log: str, args, env, warmup: float = 1.5):
    cmd = [sys.executable, '-m', 'vlmad_ros.bench.feeder', '--rate', str(rate), '--duration',
           str(duration), '--warmup', str(warmup), '--log', log, '--width', str(args.width),
           '--height', str(args.height)] + (['--reliable'] if args.reliable else [])
    if args.feeder_profile:
        env = dict(env, FASTDDS_DEFAULT_PROFILES_FILE=args.feeder_profile)
    return children.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                        text=True, timeout=duration + 120)


def _percentiles(values: List[float]) -> List[float]:
    if not values:
        return [float('nan')] * 3
    return [float(v) for v in np.percentile(values, [50, 95, 99])]


def bench_env() -> Dict[str, str]:
    """Environment of the bench processes: a random domain, DDS on this host only."""
    env = dict(os.environ)
    env.setdefault('ROS_DOMAIN_ID', str(random.randint(100, 199)))
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')   # Jazzy and later
    env.setdefault('ROS_LOCALHOST_ONLY', '1')                      # Humble
    os.environ.update({k: env[k] for k in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE',
                                           'ROS_LOCALHOST_ONLY')})
    return env


def node_command(args) -> List[str]:
    """planner_node as a user starts it: the yaml, then the bench's parameters."""
    from vlmad_ros.paths import config_dir
    params = args.params_file or str(config_dir() / 'planner.yaml')
    if args.feeder_profile is None:
        args.feeder_profile = str(config_dir() / 'fastdds_large_messages.xml')
    node_args = ['planner_node', '--ros-args', '--params-file', params]
    extra = list(args.param)
    extra.append(f'checkpoint:={args.checkpoint}' if args.checkpoint
                 else 'allow_random_weights:=true')
    if args.reliable:
        extra.append('reliability:=reliable')
    for p in extra:
        node_args += ['-p', p]
    return node_args


def warm_up(node, receiver: 'Receiver', args, env, tmp: pathlib.Path) -> None:
    """Feed until the node answers (start-up imports torch); not measured."""
    for _ in range(4):
        if node.poll() is not None:
            said = node.stderr.read()[-2000:] if node.stderr else '(see its log)'
            raise RuntimeError(f'planner_node exited: {said}')
        _feeder(10, 3, str(tmp / 'warmup.json'), args, env)
        if receiver.received:
            break
    else:
        raise RuntimeError('planner_node produced no Path during warm-up')
    time.sleep(1.0)


def run(args) -> int:
    env = bench_env()
    node_args = node_command(args)
    load_before = [round(x, 2) for x in os.getloadavg()]
    print(f'[bench planner] ROS_DOMAIN_ID={env["ROS_DOMAIN_ID"]}; load average {load_before}; '
          f'node: {" ".join(node_args)}', flush=True)
    node = children.spawn(node_args, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    receiver = Receiver()
    results = []
    tmp = pathlib.Path(tempfile.mkdtemp(prefix='vlmad_bench_'))
    try:
        warm_up(node, receiver, args, env, tmp)
        for rate in args.rates:
            results.append(_measure(f'{rate:g}', rate, args, env, receiver, tmp))
            _print_result(results[-1])
    finally:
        receiver.close()
        children.stop([node], waits=(10.0, 3.0, 2.0))
    load_after = [round(x, 2) for x in os.getloadavg()]
    print(f'[bench planner] load average after: {load_after}', flush=True)
    summary = {'command': ' '.join(sys.argv), 'node': ' '.join(node_args),
               'cpu_count': os.cpu_count(), 'loadavg_before': load_before,
               'loadavg_after': load_after, 'results': results}
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


def _sync_counts(receiver: Receiver) -> Dict[str, int]:
    sync = receiver.diag.get('sync', {})
    return {k: int(sync.get(k, 0)) for k in ('sets', 'received', 'replaced_sets',
                                             'plans_published')}


def _measure(label: str, rate: float, args, env, receiver: Receiver,
             tmp: pathlib.Path) -> Dict[str, object]:
    log = tmp / f'feeder_{label}.json'
    time.sleep(1.2)                      # a fresh diagnostics snapshot before
    before = _sync_counts(receiver)
    proc = _feeder(rate, args.duration, str(log), args, env)
    if proc.returncode != 0:
        raise RuntimeError(f'feeder failed: {proc.stderr[-2000:]}')
    time.sleep(1.5)                      # trailing Paths and one more diagnostics period
    after = _sync_counts(receiver)
    fed = json.loads(log.read_text())
    sets = {int(s): int(t) for s, t in fed['sets'].items()}
    got = {s: receiver.received[s] for s in sets if s in receiver.received}
    latency_ms = [(got[s] - sets[s]) / 1e6 for s in got]
    times = sorted(got.values())
    out_hz = (len(times) - 1) / ((times[-1] - times[0]) / 1e9) if len(times) > 2 else 0.0
    inference = receiver.diag.get('inference', {})
    stages = {k: float(v) for k, v in inference.items() if k.endswith(('_p50', '_p95'))
              and not k.startswith('latency')}
    p50, p95, p99 = _percentiles(latency_ms)
    return {
        'offered': label, 'offered_hz': round(fed['offered_hz'], 2), 'sets_offered': len(sets),
        'jpeg_kB': round(fed['jpeg_bytes'] / 1e3),
        'messages_received_by_node': after['received'] - before['received'],
        'messages_offered': 7 * len(sets),
        'sets_synchronised': after['sets'] - before['sets'],
        'replaced_sets': after['replaced_sets'] - before['replaced_sets'],
        'paths_received': len(got), 'output_hz': round(out_hz, 2),
        'latency_ms_p50': round(p50, 1), 'latency_ms_p95': round(p95, 1),
        'latency_ms_p99': round(p99, 1), 'all_paths_have_6_poses': receiver.poses_ok,
        'node_stage_ms': stages,
    }


def _print_result(r: Dict[str, object]) -> None:
    st = r['node_stage_ms']

    def stage(name: str) -> str:
        return f'{st.get(name + "_ms_p50", float("nan")):.1f}/{st.get(name + "_ms_p95", 0):.1f}'
    print(f'offered {r["offered"]:>4} ({r["offered_hz"]:5.1f} Hz): output '
          f'{r["output_hz"]:5.1f} Hz, paths {r["paths_received"]}/{r["sets_offered"]}, '
          f'msgs at node '
          f'{r["messages_received_by_node"]}/{r["messages_offered"]}, replaced '
          f'{r["replaced_sets"]}, latency p50/p95/p99 {r["latency_ms_p50"]}/'
          f'{r["latency_ms_p95"]}/{r["latency_ms_p99"]} ms; node stages p50/p95 ms: decode '
          f'{stage("decode")} (6 images, parallel) sync {stage("sync")} model {stage("model")} '
          f'publish {stage("publish")}', flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='vlmad bench planner')
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
