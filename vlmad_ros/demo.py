"""
`vlmad demo` (`make demo`): the closed loop on this machine.

Starts three processes that talk over DDS, as a user's robot would run them:

    sim_node (synthetic world, /clock) --cameras, odometry, command--> planner_node
    planner_node --/vlmad/plan--> path_follower --/cmd_vel (TwistStamped)--> sim_node

on a few held-out scenarios, then prints the closed-loop table (route completion, collisions,
red lights, off-road, driving score, planner Hz and latency) and writes into --out:
results.json, results.md, demo.gif (camera mosaic + bird's-eye view per planning tick),
summary.png, and the three processes' logs. The planner uses --checkpoint, else the packaged
vlmad_ros/checkpoints/default.pt, else random weights (with a warning: the table then says
nothing about the method). `ros2 launch vlmad_ros demo.launch.py` runs the same processes
with the same parameters (node_parameters below).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from vlmad_ros import children, topics
from vlmad_ros.paths import config_dir, share_dir

# Held-out scenes: seeds far from those `vlmad synth` records for training.
EPISODES = ('red_light:9001', 'pedestrian:9002', 'stopped_vehicle:9003', 'turn:9004')
SHORT_EPISODES = ('red_light:9001',)
DURATION_S = 15.0
SHORT_DURATION_S = 4.0
GIF_MAX_FRAMES = 160
WARNING = ('\n' + '!' * 78 + '\n!! No planner checkpoint (vlmad_ros/checkpoints/default.pt is not '
           'installed and\n!! --checkpoint was not given): the planner runs with RANDOM WEIGHTS. '
           'The table\n!! below shows the machinery working, not how well VLM-AD drives. Train '
           'one with\n!! `vlmad train` (docs) or pass --checkpoint.\n' + '!' * 78 + '\n')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--out', default='demo_out', help='output folder (default: demo_out)')
    parser.add_argument('--checkpoint', default='',
                        help='planner checkpoint (default: the packaged default.pt)')
    parser.add_argument('--short', action='store_true',
                        help=f'one {SHORT_DURATION_S:.0f} s scenario (the test suite runs this)')
    parser.add_argument('--episodes', nargs='+', default=None, metavar='SCENARIO:SEED',
                        help=f'episodes (default: {" ".join(EPISODES)})')
    parser.add_argument('--duration', type=float, default=None,
                        help=f'simulated seconds per episode (default {DURATION_S:.0f})')
    parser.add_argument('--timeout', type=float, default=900.0,
                        help='give up after this many wall seconds')
    parser.add_argument('--no-video', action='store_true', help='skip the GIF and the PNG')
    parser.add_argument('--image-size', default='', metavar='WxH',
                        help='rendered camera size (default: config/sim.yaml, 800x450); '
                             'e.g. the size a checkpoint was trained at')


def node_parameters(out_dir: str, checkpoint: str, random_weights: bool, episodes,
                    duration: float, image_size: Optional[Tuple[int, int]] = None,
                    frame_prefix: str = '') -> Dict[str, Dict[str, object]]:
    """
    Per-node parameter overrides of the demo (on top of config/*.yaml); shared with launch.

    frame_prefix ('car1/') renames the car's frames in the simulator and, to match, the body
    frame of the planner's Path and of the follower: several demos on one /tf.
    """
    out = pathlib.Path(out_dir).resolve()
    size = {} if image_size is None else {'image_width': int(image_size[0]),
                                          'image_height': int(image_size[1])}
    body = {'base_frame': frame_prefix + topics.BASE_FRAME} if frame_prefix else {}
    return {
        'planner_node': {
            'checkpoint': checkpoint, 'allow_random_weights': random_weights,
            'odom_topic': 'vlmad/sim/planner_odom', 'reliability': 'reliable',
            'use_sim_time': True, 'num_threads': 1, **body,
        },
        'path_follower': {'stamped_cmd_vel': True, 'ack_plans': True, 'use_sim_time': True,
                          **body},
        'sim_node': {
            'episodes': list(episodes), 'duration': float(duration),
            'result_file': str(out / 'results.json'), 'trace_dir': str(out / 'traces'),
            'planner_odom_topic': 'vlmad/sim/planner_odom', 'exit_when_done': True,
            'plan_ack_topic': 'vlmad/follower/plan_ack', **size,
            **({'frame_prefix': frame_prefix} if frame_prefix else {}),
        },
    }


def _ros_value(value) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(f"'{v}'" if isinstance(v, str) else str(v) for v in value) + ']'
    if isinstance(value, str):
        return value if value else "''"
    return str(value)


def executable(name: str) -> str:
    """Find a node executable of the colcon install (lib/vlmad_ros/<name>)."""
    cand = share_dir().parent.parent / 'lib' / 'vlmad_ros' / name
    if cand.is_file():
        return str(cand)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(f'{name} not found: run `make setup` and `. ./env.sh` first')


def command(name: str, params_file: str, overrides: Dict[str, object],
            remappings: Sequence[Tuple[str, str]] = ()) -> List[str]:
    """Command line of a node: its yaml, then parameter overrides and remappings."""
    args = [sys.executable, executable(name), '--ros-args', '--params-file', params_file]
    for key, value in overrides.items():
        args += ['-p', f'{key}:={_ros_value(value)}']
    for src, dst in remappings:
        args += ['-r', f'{src}:={dst}']
    return args


def run_loop(out: pathlib.Path, params: Dict[str, Dict[str, object]], timeout: float,
             env: Dict[str, str], on_poll=None) -> int:
    """
    Start planner, follower and sim; wait for the sim to finish; stop the others.

    `on_poll(procs)`, if given, is called every 0.2 s with the running processes by node name
    (the soak bench samples their memory).
    """
    logs = out / 'logs'
    logs.mkdir(parents=True, exist_ok=True)
    files = {'planner_node': 'planner.yaml', 'path_follower': 'path_follower.yaml',
             'sim_node': 'sim.yaml'}
    procs: Dict[str, subprocess.Popen] = {}
    handles = []
    try:
        for name in ('planner_node', 'path_follower', 'sim_node'):
            log = open(logs / f'{name}.log', 'w')
            handles.append(log)
            procs[name] = children.spawn(
                command(name, str(config_dir() / files[name]), params[name]), env=env,
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while procs['sim_node'].poll() is None:
            for name in ('planner_node', 'path_follower'):
                if procs[name].poll() is not None:
                    print(f'vlmad demo: {name} exited with {procs[name].returncode} '
                          f'(see {logs / (name + ".log")})', file=sys.stderr)
                    return 1
            if time.monotonic() > deadline:
                print(f'vlmad demo: timed out after {timeout:.0f} s', file=sys.stderr)
                return 1
            if on_poll is not None:
                on_poll(procs)
            time.sleep(0.2)
        rc = procs['sim_node'].returncode
        if rc != 0:
            print(f'vlmad demo: sim_node exited with {rc} (see {logs / "sim_node.log"})',
                  file=sys.stderr)
        return rc
    finally:
        children.stop(procs.values())
        for h in handles:
            h.close()


def render_outputs(out: pathlib.Path, results: dict, title: str) -> List[pathlib.Path]:
    """demo.gif from every episode's trace, summary.png with the key frame of each."""
    import numpy as np

    from vlmad_ros.rig import load_rig
    from vlmad_ros.sim import viz
    from vlmad_ros.sim.episode import EpisodeSpec, make_scene
    from vlmad_ros.sim.episode_trace import Trace
    from vlmad_ros.sim.score import ScenarioResult
    traces = sorted((out / 'traces').glob('episode_*.json'))
    if not traces:
        raise FileNotFoundError(f'no episode traces in {out / "traces"}')
    rig = load_rig(results['config'].get('rig', 'nuscenes'))
    loaded = [Trace.load(p) for p in traces]
    worlds = [make_scene(EpisodeSpec(t.scenario, t.seed)) for t in loaded]
    looks = [(w.town, viz.scene_look(w)) for w in worlds]
    total = sum(len(t.ticks) for t in loaded)
    stride = max(1, -(-total // GIF_MAX_FRAMES))
    frames = []
    for trace, (town, style) in zip(loaded, looks):
        r = ScenarioResult.from_dict(trace.result)
        caption = f'DS {r.driving_score:.0f}'
        for k in range(0, len(trace.ticks), stride):
            f = viz.frame(trace, k, town, style, caption)
            frames.append(f[::2, ::2] if f.shape[1] > 1200 else f)
    gif = viz.write_gif(frames, out / 'demo.gif', fps=5.0 / stride)
    panels = [viz.text_panel([title], 990, 15)]
    for trace, (town, style) in zip(loaded, looks):
        r = ScenarioResult.from_dict(trace.result)
        k = viz.key_tick(trace)
        panels.append(viz.frame(trace, k, town, style, f'route {r.route_completion:.0f} %, DS '
                                f'{r.driving_score:.0f}'))
        view = viz.teacher_view(trace, k, rig, town)
        if view is not None:
            overlay, answer = view
            height = int(480 * overlay.shape[0] / overlay.shape[1])
            overlay = viz.resize_rgb(overlay, (480, height))
            text = viz.text_panel([
                'Rule teacher (VLM-AD annotator, offline) on the future the car drove '
                '(red line):',
                f'current: {answer.current_action}', f'future: {answer.future_action}',
                f'reasoning: {answer.reasoning}'], 510, 13)
            text = np.pad(text, ((0, max(0, overlay.shape[0] - text.shape[0])), (0, 0),
                                 (0, 0)))[:max(overlay.shape[0], text.shape[0])]
            overlay = np.pad(overlay, ((0, text.shape[0] - overlay.shape[0]), (0, 0), (0, 0)))
            panels.append(np.concatenate([overlay, text], axis=1))
    png = viz.summary_png(panels, out / 'summary.png')
    return [gif, png]


def _short_path(path: str, parts: int = 4) -> str:
    """Return the last `parts` components of a path (run/seed folders say which model)."""
    return str(pathlib.Path(*pathlib.Path(path).parts[-parts:]))


def main(args) -> int:
    from vlmad_ros.sim.score import markdown_table, ScenarioResult
    out = pathlib.Path(args.out)
    if out.exists():
        for stale in ('results.json', 'results.md', 'demo.gif', 'summary.png'):
            (out / stale).unlink(missing_ok=True)
        shutil.rmtree(out / 'traces', ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    episodes = args.episodes or (SHORT_EPISODES if args.short else EPISODES)
    duration = args.duration or (SHORT_DURATION_S if args.short else DURATION_S)
    checkpoint = args.checkpoint
    if checkpoint and not pathlib.Path(checkpoint).is_file():
        print(f'vlmad demo: --checkpoint {checkpoint} does not exist', file=sys.stderr)
        return 2
    random_weights = False
    if not checkpoint:
        from vlmad_ros.model.checkpoint import default_checkpoint
        packaged: Optional[pathlib.Path] = default_checkpoint()
        if packaged is None:
            random_weights = True
            print(WARNING, file=sys.stderr, flush=True)
        else:
            checkpoint = str(packaged)
    env = dict(os.environ)
    env.setdefault('ROS_DOMAIN_ID', str(os.getpid() % 90 + 5))
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')   # Jazzy and later
    env.setdefault('ROS_LOCALHOST_ONLY', '1')                      # Humble
    env['PYTHONUNBUFFERED'] = '1'
    image_size = None
    if args.image_size:
        try:
            image_size = tuple(int(v) for v in args.image_size.lower().split('x'))
            assert len(image_size) == 2 and min(image_size) >= 16
        except (ValueError, AssertionError):
            print(f'vlmad demo: --image-size must be WxH (e.g. 192x108), got '
                  f'{args.image_size!r}', file=sys.stderr)
            return 2
    params = node_parameters(str(out), checkpoint, random_weights, episodes, duration,
                             image_size)
    print(f'vlmad demo: {len(episodes)} episode(s) of {duration:.0f} s: {" ".join(episodes)}; '
          f'planner {"RANDOM WEIGHTS" if random_weights else checkpoint}; '
          f'ROS_DOMAIN_ID={env["ROS_DOMAIN_ID"]}; logs in {out / "logs"}', flush=True)
    t0 = time.monotonic()
    rc = run_loop(out, params, args.timeout, env)
    if rc != 0:
        return rc
    results = json.loads((out / 'results.json').read_text())
    rows = [ScenarioResult.from_dict(d) for d in results['scenarios']]
    title = (f'vlmad demo, closed loop: planner '
             f'{"RANDOM WEIGHTS" if random_weights else _short_path(checkpoint)}, '
             f'{len(rows)} episode(s), {time.monotonic() - t0:.0f} s wall')
    table = markdown_table(rows, title)
    (out / 'results.md').write_text(table + '\n')
    print('\n' + table + '\n', flush=True)
    if not args.no_video:
        for path in render_outputs(out, results, title):
            print(f'wrote {path}')
    if random_weights:
        print(WARNING, file=sys.stderr)
    print(f'vlmad demo: done in {time.monotonic() - t0:.0f} s', flush=True)
    return 0
