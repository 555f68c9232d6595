"""
`vlmad`: one command-line entry point for the offline tools.

Subcommands are imported lazily so `vlmad --help` answers at once (torch takes seconds).
Each subcommand module has `add_arguments(parser)` and `main(args) -> int`.
"""
import argparse
import importlib
import sys

from vlmad_ros.version import __version__

# name -> (module, one-line help)
SUBCOMMANDS = {
    'doctor': ('vlmad_ros.doctor', 'check the installation and name the fix for what is missing'),
    'synth': ('vlmad_ros.synth.cli', 'record synthetic multi-camera driving scenes as rosbag2'),
    'convert-nuscenes': ('vlmad_ros.data.nuscenes_converter', 'convert nuScenes logs to rosbag2'),
    'annotate': ('vlmad_ros.teacher.cli', 'record VLM teacher reasoning into bags (offline)'),
    'cache': ('vlmad_ros.data.cache_cli',
              'decoded-sample cache: build it for bags on every core, before training'),
    'train': ('vlmad_ros.training.train', 'train the planner (with or without VLM-AD heads)'),
    'eval': ('vlmad_ros.evaluation.cli', 'open-loop L2 / collision metrics on bags'),
    'export': ('vlmad_ros.export', 'export a planner checkpoint to ONNX (docs/EXPORT.md)'),
    'bench': ('vlmad_ros.bench.cli', 'benchmarks (planner over DDS, renderer, data loader)'),
    'demo': ('vlmad_ros.demo', 'closed-loop demo: sim + planner + follower over DDS'),
    'benchmark': ('vlmad_ros.benchmark.cli',
                  'the fixed synthetic benchmark: make its data, score open and closed loop'),
}


def build_parser(load=None):
    """Build the parser; `load` names the one subcommand whose module is imported."""
    parser = argparse.ArgumentParser(
        prog='vlmad', description='VLM-AD for ROS 2: planner, annotator, training, evaluation.')
    parser.add_argument('--version', action='version', version=f'vlmad_ros {__version__}')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    for name, (module, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == load:
            importlib.import_module(module).add_arguments(sub_parser)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith('-')), None)
    if command not in SUBCOMMANDS:
        command = None
    parser = build_parser(load=command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    from vlmad_ros.children import exit_on_signals
    try:
        with exit_on_signals():   # SIGTERM / SIGHUP unwind like Ctrl-C: children are stopped
            return int(module.main(args) or 0)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
