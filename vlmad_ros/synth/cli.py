"""`vlmad synth`: record synthetic multi-camera driving scenes, one rosbag2 per scene."""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import pathlib
import sys
from typing import List

import numpy as np

from vlmad_ros.resume import BagJournal, JournalMismatch, write_text_atomic
from vlmad_ros.synth.dagger import DaggerConfig
from vlmad_ros.synth.perturb import PerturbConfig, PerturbConfigError
from vlmad_ros.synth.recorder import record_scene, RecordConfig, scene_name
from vlmad_ros.synth.scenarios import SCENARIOS, SceneConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--scenes', type=int, default=1, help='number of scenes (bags)')
    parser.add_argument('--seed', type=int, default=0, help='scene i uses the stream (seed, i)')
    parser.add_argument('--first', type=int, default=0,
                        help='index of the first scene (to extend a dataset)')
    parser.add_argument('--duration', type=float, default=20.0, help='seconds per scene')
    parser.add_argument('--out', help='output folder (one bag folder per scene)')
    parser.add_argument('--preview', default='',
                        help='instead of bags: write a PNG of scene --first at the end of '
                        '--duration (six cameras + a bird view)')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap')
    parser.add_argument('--width', type=int, default=1600, help='camera image width [px]')
    parser.add_argument('--height', type=int, default=900, help='camera image height [px]')
    parser.add_argument('--rig', default='nuscenes', help='rig name or yaml path')
    parser.add_argument('--scenario', choices=sorted(SCENARIOS), default=None,
                        help='force one scenario type (default: the documented mix)')
    parser.add_argument('--jpeg-quality', type=int, default=90)
    parser.add_argument('--workers', type=int, default=1,
                        help='scenes recorded in parallel (processes)')
    parser.add_argument('--keyframe-images-only', action='store_true',
                        help='render cameras only at keyframes (2 Hz): training sets at a '
                        'sixth of the cost; ground truth and odometry keep their rates')
    parser.add_argument('--odom-hz', type=float, default=50.0,
                        help='odometry rate, also the physics step (default 50; training sets '
                        'record 20 to simulate faster)')
    parser.add_argument('--perturb', type=float, default=0.0, metavar='P',
                        help='recovery data: probability per keyframe that the expert is '
                        'knocked off its line (offset, heading, speed) and records its way '
                        'back; keyframes whose future holds a knock are dropped (default 0)')
    parser.add_argument('--perturb-lateral', type=float, default=PerturbConfig.lateral_m,
                        metavar='M', help='largest sideways knock [m], drawn in [0.25, M] to '
                        'either side (default %(default)s; a learned car that leaves its lane '
                        'by several metres has only been shown the way back from this far)')
    parser.add_argument('--perturb-heading', type=float, default=PerturbConfig.heading_rad,
                        metavar='RAD', help='largest heading error of a knock [rad] '
                        '(default %(default)s)')
    parser.add_argument('--perturb-recover-s', type=float, nargs=2,
                        default=PerturbConfig.recover_s, metavar=('LO', 'HI'),
                        help="the expert's time back to its lane centre [s] (default "
                        '%(default)s; larger knocks want longer)')
    parser.add_argument('--dagger', default='', metavar='CHECKPOINT',
                        help='DAgger-style recovery data: this planner drives windows of each '
                        'scene (--dagger-learner-s), the expert takes over from where it left '
                        'the car and its way back is recorded; keyframes whose 3 s future is '
                        "not all the expert's are dropped (synth/dagger.py)")
    parser.add_argument('--dagger-learner-s', type=float, nargs=2, default=(2.5, 5.0),
                        metavar=('LO', 'HI'), help='length of each planner window [s]')
    parser.add_argument('--dagger-expert-s', type=float, nargs=2, default=(4.5, 7.0),
                        metavar=('LO', 'HI'), help='the expert between windows [s]')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')


def config_from_args(args) -> RecordConfig:
    return RecordConfig(duration=args.duration, width=args.width, height=args.height,
                        rig=args.rig, jpeg_quality=args.jpeg_quality, storage=args.storage,
                        keyframe_images_only=args.keyframe_images_only, odom_hz=args.odom_hz,
                        perturb=_perturb_config(args),
                        dagger=_dagger_config(args),
                        scene=SceneConfig(scenario=args.scenario or ''))


def _perturb_config(args) -> PerturbConfig:
    """Build the knock settings of the command line; a bad value is named by its flag."""
    flags = {'per_keyframe': '--perturb', 'lateral_m': '--perturb-lateral',
             'heading_rad': '--perturb-heading', 'recover_s': '--perturb-recover-s'}
    try:
        return PerturbConfig(per_keyframe=args.perturb, lateral_m=args.perturb_lateral,
                             heading_rad=args.perturb_heading,
                             recover_s=tuple(args.perturb_recover_s))
    except PerturbConfigError as err:
        flag = flags.get(err.field, '--perturb')
        raise ValueError(f'{flag}: {err}') from None


def _dagger_config(args) -> DaggerConfig:
    """Build the DAgger settings of the command line; name a missing checkpoint up front."""
    if not args.dagger:
        return DaggerConfig()
    path = pathlib.Path(args.dagger).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f'--dagger: no checkpoint file {path}')
    for flag, field in (('--dagger-learner-s', 'learner_s'), ('--dagger-expert-s', 'expert_s')):
        lo, hi = getattr(args, 'dagger_' + field)
        if not 0 < lo <= hi:
            raise ValueError(f'{flag} must be two seconds 0 < LO <= HI, got {lo:g} {hi:g}')
    return DaggerConfig(checkpoint=str(path), learner_s=tuple(args.dagger_learner_s),
                        expert_s=tuple(args.dagger_expert_s),
                        render_width=args.width, render_height=args.height)


def _job(job):
    out, seed, index, cfg, overwrite = job
    return record_scene(out, seed, index, cfg, overwrite=overwrite)


def preview(args, cfg: RecordConfig) -> np.ndarray:
    """Six cameras (nuScenes viewer layout) and a bird's-eye view of one scene, as RGB."""
    from vlmad_ros.rig import load_rig
    from vlmad_ros.synth.recorder import scene_rng
    from vlmad_ros.synth.render import mosaic, render_bev, Renderer
    from vlmad_ros.synth.scenarios import make_world
    world = make_world(scene_rng(args.seed, args.first), cfg.scene)
    for _ in range(int(round(cfg.duration * cfg.odom_hz))):
        world.step(1.0 / cfg.odom_hz)
    rig = load_rig(cfg.rig).scaled(cfg.width, cfg.height)
    renderer = Renderer(rig, cfg.render)
    cams = mosaic(dict(zip(rig.names, renderer.render(world))))
    snap = world.snapshot()
    e = world.ego
    s = np.arange(max(e.s, 0.0), min(e.s + 60.0, e.path.length), 2.0)
    route = e.path.pose(s)[0] if len(s) > 1 else None
    bev = render_bev(world.town, renderer.scene(world).style, snap.ego, snap.objects,
                     snap.lights, size=cams.shape[0], extent=40.0, route_xy=route)
    return np.concatenate([cams, bev], axis=1)


def main(args) -> int:
    if args.preview:
        from PIL import Image
        try:
            cfg = config_from_args(args)
        except ValueError as err:
            print(f'vlmad synth: {err}', file=sys.stderr)
            return 2
        Image.fromarray(preview(args, cfg)).save(args.preview)
        print(f'wrote {args.preview}')
        return 0
    if not args.out:
        print('vlmad synth: --out is required (or --preview PNG)', file=sys.stderr)
        return 2
    if args.scenes < 1:
        print('vlmad synth: --scenes must be >= 1', file=sys.stderr)
        return 2
    if args.workers < 1:
        print('vlmad synth: --workers must be >= 1', file=sys.stderr)
        return 2
    try:
        cfg = config_from_args(args)
    except ValueError as err:
        print(f'vlmad synth: {err}', file=sys.stderr)
        return 2
    out = pathlib.Path(args.out)
    try:
        journal = BagJournal(out, f'synth-{args.seed}',
                             {'command': 'synth', 'seed': args.seed,
                              'config': dataclasses.asdict(cfg)}).start()
    except JournalMismatch as err:
        print(f'vlmad synth: {err}', file=sys.stderr)
        return 2
    try:
        return _record(args, cfg, out, journal)
    except FileExistsError as err:
        if not journal.resumed and not journal.rows:   # no claim on a folder not ours
            journal.remove()
        print(f'vlmad synth: {err}; choose another --out, --seed or --first', file=sys.stderr)
        return 2
    except OSError as err:
        print(f'vlmad synth: cannot write {out}: {err}; the scene being written was removed, '
              'finished scenes are kept: run the same command again once there is room',
              file=sys.stderr)
        return 1
    finally:
        journal.close()


def _record(args, cfg: RecordConfig, out: pathlib.Path, journal: BagJournal) -> int:
    """Record the scenes the journal does not list as finished; summary of all of them."""
    indices = list(range(args.first, args.first + args.scenes))
    done = journal.finished()
    todo = [i for i in indices if scene_name(args.seed, i) not in done]
    overwrite = {i: journal.overwrite(scene_name(args.seed, i)) for i in todo}
    if len(todo) < len(indices):
        print(f'vlmad synth: {len(indices) - len(todo)} of {len(indices)} scenes already in '
              f'{out} ({journal.path.name}): recording the other {len(todo)}', file=sys.stderr)
    from tqdm import tqdm
    results: List[dict] = [done[scene_name(args.seed, i)] for i in indices if i not in todo]
    jobs = [(out, args.seed, i, cfg, overwrite[i]) for i in todo]

    def finished(res: dict) -> None:
        journal.add(res['scene'], res)
        results.append(res)

    if args.workers == 1 or len(jobs) <= 1:
        frames = int(cfg.duration * cfg.camera_hz) * len(jobs)
        with tqdm(total=frames, unit='frame', disable=args.quiet, desc='synth') as bar:
            for job in jobs:
                finished(record_scene(*job[:4], progress=bar.update, overwrite=job[4]))
    else:
        ctx = multiprocessing.get_context('spawn')
        with ctx.Pool(min(args.workers, len(jobs))) as pool, \
                tqdm(total=len(jobs), unit='scene', disable=args.quiet, desc='synth') as bar:
            for res in pool.imap_unordered(_job, jobs):
                finished(res)
                bar.update(1)
    results.sort(key=lambda r: r['scene'])
    summary = {'config': dataclasses.asdict(cfg), 'scenes': results}
    write_text_atomic(out / f'synth-{args.seed}-summary.json',
                      json.dumps(summary, indent=1) + '\n')
    for r in results:
        print(f"{r['bag']}: {r['scenario']}, {r['frames']} camera sets, route {r['route_m']} m, "
              f"collisions {r['collisions']}, red lights {r['red_lights']}, "
              f"perturbations {r['perturbations']}"
              + (f", planner drove {r['learner_s']} s ({r['handovers']} hand-overs)"
                 if 'learner_s' in r else ''))
    return 0
