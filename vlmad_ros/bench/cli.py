"""
`vlmad bench <name>`: benchmarks, one small module each.

To add one (e.g. renderer, loader): write `add_arguments(parser)` and `run(args) -> int` in
vlmad_ros/bench/<name>.py and list it in BENCHES. `vlmad bench all` runs every bench with its
defaults, except the half-hour soak.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

# bench name -> (module, one-line help)
BENCHES = {
    'planner': ('vlmad_ros.bench.planner',
                'planner_node over DDS: six 1600x900 JPEG streams + odometry from a separate '
                'process; output Hz, latency, replaced sets, per-stage time'),
    'soak': ('vlmad_ros.bench.soak',
             'planner_node at 20 Hz under the six-camera load for 30 min (--duration): RSS and '
             'latency slopes, dropped sets; --closed-loop N: sim + planner + follower'),
    'planner-stages': ('vlmad_ros.bench.planner_stages',
                       'in-process: what each decode/model speed-up buys (interleaved runs)'),
    'planner-step': ('vlmad_ros.bench.planner_step',
                     "in-process: planner_node's step from six 1600x900 JPEGs to the poses, "
                     'per decoder (cpu, nvjpeg) and precision: p50 / p90 / p99 ms'),
    'export': ('vlmad_ros.bench.export',
               'planner model step, torch vs onnxruntime backend (same camera sets, '
               'interleaved): median / p10 / p90 ms'),
    'renderer': ('vlmad_ros.synth.bench', 'synthetic six-camera renderer: frame time per size'),
    'loader': ('vlmad_ros.data.bench',
               'training data: bag read, JPEG decode + resize, cache, DataLoader samples/s'),
    'visibility': ('vlmad_ros.synth.visibility',
                   'pixels a light, pedestrian and car cover at each model input size, from '
                   'the distance where the expert starts reacting (docs/VISIBILITY.md)'),
}


def _selected(argv: Sequence[str]) -> Optional[str]:
    """Return the bench named on the command line (only its module is imported: torch is slow)."""
    args = [a for a in argv if not a.startswith('-')]
    if 'bench' in args and args.index('bench') + 1 < len(args):
        return args[args.index('bench') + 1]
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest='bench', metavar='BENCH')
    sub.add_parser('all', help='run every benchmark with its defaults')
    selected = _selected(sys.argv[1:])
    for name, (module, help_text) in BENCHES.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            importlib.import_module(module).add_arguments(p)


def _run(name: str, args) -> int:
    """Run one bench; a bad option or file is one line naming it (exit 2), not a traceback."""
    try:
        return int(importlib.import_module(BENCHES[name][0]).run(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f'vlmad bench {name}: error: {err}', file=sys.stderr)
        return 2


def main(args) -> int:
    if args.bench is None:
        print(f'vlmad bench: choose one of {", ".join(BENCHES)} or all')
        return 2
    if args.bench == 'all':
        code = 0
        for name, (module, _) in BENCHES.items():
            if name == 'soak':  # 30 minutes by default: run it on its own
                continue
            parser = argparse.ArgumentParser(prog=f'vlmad bench {name}')
            importlib.import_module(module).add_arguments(parser)
            code = max(code, _run(name, parser.parse_args([])))
        return code
    return _run(args.bench, args)
