"""
A tiny dataset in nuScenes' own format (JSON tables + JPEG files), from a known trajectory.

The ego drives a circle (constant speed and yaw rate); cameras fire at 12 Hz in sequence within
40 ms, every 6th frame is a keyframe (2 Hz samples, with a LIDAR_TOP keyframe at the sample
time); one car drives straight, one pedestrian stands still, one car is annotated only in the
first half of the scene. The real nuscenes-devkit loads it.
"""
import dataclasses
import json
import pathlib

import numpy as np
from PIL import Image
from vlmad_ros.images import encode_jpeg
from vlmad_ros.rig import CAMERA_NAMES, load_rig

VERSION = 'v1.0-mini'
T0_US = 1_532_402_927_612_460
CAMERA_OFFSETS_US = {name: 8_000 * k for k, name in enumerate(CAMERA_NAMES)}
LIDAR_OFFSET_US = 20_000
SPEED = 5.0        # [m/s]
YAW_RATE = 0.2     # [rad/s]
START_XY = np.array([600.0, 1600.0])
START_YAW = 0.3


def ego_pose(t_s):
    """Analytic global pose (x, y, yaw) at t_s seconds after the scene start."""
    t_s = np.asarray(t_s, dtype=np.float64)
    r = SPEED / YAW_RATE
    yaw = START_YAW + YAW_RATE * t_s
    x = START_XY[0] + r * (np.sin(yaw) - np.sin(START_YAW))
    y = START_XY[1] - r * (np.cos(yaw) - np.cos(START_YAW))
    return x, y, yaw


def quat_yaw(yaw):
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


# Agents: instance name -> (category, global position at t, yaw, size w/l/h, annotated while).
AGENTS = {
    'car_moving': ('vehicle.car', lambda t: START_XY + [10.0 + 3.0 * t, 4.0], 0.0,
                   [1.9, 4.5, 1.6], lambda t: True),
    'pedestrian': ('human.pedestrian.adult', lambda t: START_XY + [15.0, -3.0], 1.2,
                   [0.6, 0.7, 1.8], lambda t: True),
    'car_leaving': ('vehicle.truck', lambda t: START_XY + [-8.0, 6.0], -0.5,
                    [2.5, 8.0, 3.2], lambda t: t < 2.6),
}


@dataclasses.dataclass
class Dataset:
    root: pathlib.Path
    tables: dict
    scene_names: list


def _token(*parts):
    return '_'.join(str(p) for p in parts)


def make_dataset(root, scenes=(('scene-0001', 6.0), ('scene-0002', 2.0)),
                 image_size=(160, 90)) -> Dataset:
    root = pathlib.Path(root)
    (root / VERSION).mkdir(parents=True)
    width, height = image_size
    rig = load_rig('nuscenes').scaled(width, height)
    t = {name: [] for name in ('category', 'attribute', 'visibility', 'instance', 'sensor',
                               'calibrated_sensor', 'ego_pose', 'log', 'scene', 'sample',
                               'sample_data', 'sample_annotation', 'map')}
    t['visibility'] = [{'token': str(k), 'level': lvl, 'description': lvl}
                       for k, lvl in enumerate(['v0-40', 'v40-60', 'v60-80', 'v80-100'], 1)]
    t['attribute'] = [{'token': 'attr_moving', 'name': 'vehicle.moving', 'description': ''}]
    for cat in sorted({a[0] for a in AGENTS.values()}):
        t['category'].append({'token': _token('cat', cat), 'name': cat, 'description': cat})
    channels = list(CAMERA_NAMES) + ['LIDAR_TOP']
    for ch in channels:
        modality = 'lidar' if ch == 'LIDAR_TOP' else 'camera'
        t['sensor'].append({'token': _token('sensor', ch), 'channel': ch, 'modality': modality})
        if modality == 'camera':
            cam = rig[ch]
            t['calibrated_sensor'].append({
                'token': _token('cs', ch), 'sensor_token': _token('sensor', ch),
                'translation': list(cam.translation), 'rotation': list(cam.rotation_wxyz),
                'camera_intrinsic': cam.K.tolist()})
        else:
            t['calibrated_sensor'].append({
                'token': _token('cs', ch), 'sensor_token': _token('sensor', ch),
                'translation': [0.94, 0.0, 1.84], 'rotation': [0.707, 0.0, 0.0, -0.707],
                'camera_intrinsic': []})
    (root / 'maps').mkdir()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / 'maps' / 'test_map.png')
    t['log'].append({'token': 'log0', 'logfile': 'n000-test', 'vehicle': 'n000',
                     'date_captured': '2026-11-24', 'location': 'boston-seaport'})
    t['map'].append({'token': 'map0', 'log_tokens': ['log0'], 'category': 'semantic_prior',
                     'filename': 'maps/test_map.png'})

    rng = np.random.default_rng(0)
    for scene_idx, (scene_name, duration) in enumerate(scenes):
        base_us = T0_US + scene_idx * 100_000_000
        n_frames = int(round(duration * 12))
        sample_tokens = [_token(scene_name, 'sample', k) for k in range(0, n_frames, 6)]
        for s, tok in enumerate(sample_tokens):
            t['sample'].append({
                'token': tok, 'timestamp': base_us + s * 500_000 + LIDAR_OFFSET_US,
                'prev': sample_tokens[s - 1] if s else '',
                'next': sample_tokens[s + 1] if s + 1 < len(sample_tokens) else '',
                'scene_token': _token('scene', scene_name)})
        t['scene'].append({'token': _token('scene', scene_name), 'log_token': 'log0',
                           'nbr_samples': len(sample_tokens), 'name': scene_name,
                           'first_sample_token': sample_tokens[0],
                           'last_sample_token': sample_tokens[-1], 'description': 'test'})
        for ch in channels:
            frames = (range(n_frames) if ch != 'LIDAR_TOP' else range(0, n_frames, 6))
            tokens = [_token(scene_name, ch, k) for k in frames]
            for j, k in enumerate(frames):
                key = k % 6 == 0
                if ch == 'LIDAR_TOP':
                    ts = base_us + (k // 6) * 500_000 + LIDAR_OFFSET_US
                    folder, ext = 'samples', 'pcd.bin'
                else:
                    ts = base_us + int(round(k * 1e6 / 12)) + CAMERA_OFFSETS_US[ch]
                    folder, ext = ('samples' if key else 'sweeps'), 'jpg'
                rel_s = (ts - base_us) / 1e6
                x, y, yaw = ego_pose(rel_s)
                ep_token = _token(scene_name, 'ep', ch, k)
                t['ego_pose'].append({'token': ep_token, 'timestamp': ts,
                                      'translation': [float(x), float(y), 0.0],
                                      'rotation': quat_yaw(float(yaw))})
                filename = f'{folder}/{ch}/{scene_name}__{ch}__{ts}.{ext}'
                (root / folder / ch).mkdir(parents=True, exist_ok=True)
                if ext == 'jpg':
                    img = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
                    img[:, :, 0] = (k * 7) % 255
                    (root / filename).write_bytes(encode_jpeg(img, quality=85))
                else:
                    (root / filename).write_bytes(b'')
                t['sample_data'].append({
                    'token': tokens[j], 'sample_token': sample_tokens[k // 6],
                    'ego_pose_token': ep_token, 'calibrated_sensor_token': _token('cs', ch),
                    'timestamp': ts, 'fileformat': ext.split('.')[-1] if ch != 'LIDAR_TOP'
                    else 'pcd', 'is_key_frame': key,
                    'height': height if ext == 'jpg' else 0,
                    'width': width if ext == 'jpg' else 0, 'filename': filename,
                    'prev': tokens[j - 1] if j else '',
                    'next': tokens[j + 1] if j + 1 < len(tokens) else ''})
        for agent, (cat, pos, yaw, size, alive) in AGENTS.items():
            inst = _token(scene_name, 'inst', agent)
            anns = []
            for s, tok in enumerate(sample_tokens):
                rel_s = s * 0.5 + LIDAR_OFFSET_US / 1e6
                if alive(rel_s):
                    anns.append((tok, pos(rel_s)))
            ann_tokens = [_token(scene_name, 'ann', agent, k) for k in range(len(anns))]
            for k, (sample_tok, xy) in enumerate(anns):
                t['sample_annotation'].append({
                    'token': ann_tokens[k], 'sample_token': sample_tok, 'instance_token': inst,
                    'visibility_token': '4', 'attribute_tokens': [],
                    'translation': [float(xy[0]), float(xy[1]), 0.8], 'size': size,
                    'rotation': quat_yaw(yaw), 'num_lidar_pts': 10, 'num_radar_pts': 0,
                    'prev': ann_tokens[k - 1] if k else '',
                    'next': ann_tokens[k + 1] if k + 1 < len(anns) else ''})
            t['instance'].append({'token': inst, 'category_token': _token('cat', cat),
                                  'nbr_annotations': len(anns),
                                  'first_annotation_token': ann_tokens[0],
                                  'last_annotation_token': ann_tokens[-1]})
    for name, rows in t.items():
        (root / VERSION / f'{name}.json').write_text(json.dumps(rows))
    return Dataset(root=root, tables=t, scene_names=[s[0] for s in scenes])
