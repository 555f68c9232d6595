"""
`vlmad convert-nuscenes`: nuScenes logs -> rosbag2, in the layout of the synthetic bags.

One bag per scene (docs/BAG_LAYOUT.md): the six cameras' JPEG files copied byte for byte into
CompressedImage (keyframes and sweeps, ~12 Hz), CameraInfo and /tf_static from
calibrated_sensor, Odometry in odom and /tf odom -> base_link from ego_pose (velocity by
finite differences; map -> odom a static identity, REP 105), a Keyframe mark per sample
(stamped with its CAM_FRONT image), the sample's route command (the nuScenes endpoint rule,
see endpoint_command) and the sample's annotations as a GroundTruthObjectArray in
base_link. nuScenes' ego frame is base_link (x forward, y left,
z up, rear axle) and its camera sensor frame is the optical frame, so no axes change here.

    vlmad convert-nuscenes --dataroot /data/sets/nuscenes --version v1.0-mini --out bags/
"""
from __future__ import annotations

import argparse
import collections
import pathlib
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from vlmad_ros import topics
from vlmad_ros.bagschema import BagWriter, STORAGES
from vlmad_ros.data import rosmsgs
from vlmad_ros.data.geometry import finite_difference_twist, yaw_from_quat_wxyz
from vlmad_ros.resume import BagJournal
from vlmad_ros.rig import Camera, CAMERA_NAMES, quat_wxyz_to_matrix
from vlmad_ros.topics import PLAN_DT, PLAN_STEPS
from vlmad_ros.types import Command, command_from_endpoint

US = 1000  # nuScenes timestamps are microseconds; bags use nanoseconds
COMMAND_LEAD_NS = 1_000_000   # the command precedes its keyframe's first image by 1 ms

# nuScenes category prefix -> GroundTruthObject class (first match wins).
CATEGORY_CLASSES = (
    ('vehicle.bus', 'CLASS_BUS'),
    ('vehicle.truck', 'CLASS_TRUCK'),
    ('vehicle.trailer', 'CLASS_TRUCK'),
    ('vehicle.construction', 'CLASS_TRUCK'),
    ('vehicle.bicycle', 'CLASS_CYCLIST'),
    ('vehicle.motorcycle', 'CLASS_CYCLIST'),
    ('vehicle.', 'CLASS_CAR'),
    ('human.pedestrian', 'CLASS_PEDESTRIAN'),
    ('movable_object.barrier', 'CLASS_BARRIER'),
)


def object_class(category_name: str) -> int:
    cls = rosmsgs.msg_class(rosmsgs.OBJECT)
    for prefix, const in CATEGORY_CLASSES:
        if category_name.startswith(prefix):
            return int(getattr(cls, const))
    return int(cls.CLASS_OTHER)


def camera_from_calibration(name: str, calibrated_sensor: dict, width: int,
                            height: int) -> Camera:
    """calibrated_sensor is already optical-frame-in-ego (REP 103 optical)."""
    k = np.asarray(calibrated_sensor['camera_intrinsic'], dtype=np.float64)
    return Camera(name=name, width=int(width), height=int(height), fx=float(k[0, 0]),
                  fy=float(k[1, 1]), cx=float(k[0, 2]), cy=float(k[1, 2]),
                  translation=tuple(float(v) for v in calibrated_sensor['translation']),
                  rotation_wxyz=tuple(float(v) for v in calibrated_sensor['rotation']))


class _Events:
    """Messages of one bag, written in stamp order at the end (images read lazily)."""

    def __init__(self):
        self.items: List[tuple] = []

    def add(self, stamp_ns: int, topic: str, make: Callable[[], object], order: int = 1):
        self.items.append((int(stamp_ns), order, len(self.items), topic, make))

    def write(self, bag: BagWriter) -> Dict[str, int]:
        counts: Dict[str, int] = collections.Counter()
        for stamp, _, _, topic, make in sorted(self.items, key=lambda e: e[:3]):
            bag.write(topic, make(), stamp)
            counts[topic] += 1
        return dict(counts)


class SceneConverter:
    """Converts the scenes of one loaded NuScenes database."""

    def __init__(self, nusc):
        self.nusc = nusc
        self._sd_by_scene = collections.defaultdict(list)
        scene_of_sample = {s['token']: s['scene_token'] for s in nusc.sample}
        for sd in nusc.sample_data:
            scene = scene_of_sample.get(sd['sample_token'])
            if scene is not None:
                self._sd_by_scene[scene].append(sd)

    def scene_names(self) -> List[str]:
        return [s['name'] for s in self.nusc.scene]

    def scene(self, name: str) -> dict:
        for s in self.nusc.scene:
            if s['name'] == name:
                return s
        raise ValueError(f'--scenes: no scene {name!r} in this version '
                         f'(has {", ".join(self.scene_names())})')

    def samples(self, scene: dict) -> List[dict]:
        out, token = [], scene['first_sample_token']
        while token:
            sample = self.nusc.get('sample', token)
            out.append(sample)
            token = sample['next']
        return out

    def ego_track(self, scene: dict):
        """Return the scene's ego poses (every sample_data's), deduplicated, sorted by time."""
        poses = {}
        for sd in self._sd_by_scene[scene['token']]:
            ep = self.nusc.get('ego_pose', sd['ego_pose_token'])
            poses.setdefault(int(ep['timestamp']), ep)
        stamps = sorted(poses)
        records = [poses[t] for t in stamps]
        t_ns = np.array(stamps, dtype=np.int64) * US
        xyz = np.array([r['translation'] for r in records], dtype=np.float64).reshape(-1, 3)
        quats = np.array([r['rotation'] for r in records], dtype=np.float64).reshape(-1, 4)
        yaw = np.array([yaw_from_quat_wxyz(q) for q in quats])
        v_body, yaw_rate = finite_difference_twist(t_ns, xyz[:, :2], yaw)
        return t_ns, xyz, quats, v_body, yaw_rate

    def convert(self, scene_name: str, out: pathlib.Path, storage: str = 'mcap',
                overwrite: bool = False, keyframes_only: bool = False) -> Dict:
        """
        Write one scene's bag at `out` (whole or not at all); returns counts per topic.

        keyframes_only: the six images of each sample only (2 Hz, what training reads; about a
        sixth of the bytes), not the 12 Hz sweeps between them (replay at the camera rate).
        """
        scene = self.scene(scene_name)
        cameras = [sd for sd in self._sd_by_scene[scene['token']]
                   if sd['channel'] in CAMERA_NAMES and sd['fileformat'] in ('jpg', 'jpeg')]
        if not cameras:
            raise ValueError(f'scene {scene_name} has no camera sample_data')
        events = _Events()
        self._add_static_frames(events, scene_name, cameras)
        self._add_images(events, cameras, keyframes_only)
        t_ns, xyz, quats, v_body, yaw_rate = self.ego_track(scene)
        self._add_ego_motion(events, t_ns, xyz, quats, v_body, yaw_rate)
        self._add_samples(events, scene, t_ns, xyz, quats)
        with BagWriter(out, storage=storage, overwrite=overwrite) as bag:
            for topic, msgtype in _layout():
                bag.add_topic(topic, msgtype)
            return events.write(bag)

    def _camera(self, sd: dict) -> Camera:
        cs = self.nusc.get('calibrated_sensor', sd['calibrated_sensor_token'])
        return camera_from_calibration(sd['channel'], cs, sd['width'], sd['height'])

    def _add_static_frames(self, events: _Events, scene_name: str, cameras: List[dict]):
        """/tf_static at the first image: each camera's first calibration, and map -> odom."""
        calib: Dict[str, Camera] = {}
        for sd in sorted(cameras, key=lambda s: s['timestamp']):
            if sd['channel'] not in calib:
                calib[sd['channel']] = self._camera(sd)
        missing = [c for c in CAMERA_NAMES if c not in calib]
        if missing:
            raise ValueError(f'scene {scene_name} lacks cameras {missing}')
        t_start = min(sd['timestamp'] for sd in cameras) * US
        static = [rosmsgs.transform_stamped(t_start, topics.BASE_FRAME,
                                            topics.camera_optical_frame(c.name), c.translation,
                                            c.rotation_wxyz) for c in calib.values()]
        static.append(rosmsgs.map_to_odom(t_start))
        events.add(t_start, topics.TF_STATIC, lambda: rosmsgs.tf_message(static), order=0)

    def _add_images(self, events: _Events, cameras: List[dict], keyframes_only: bool):
        """Each JPEG file byte for byte with its CameraInfo (read when the bag is written)."""
        root = pathlib.Path(self.nusc.dataroot)
        image_topic = dict(zip(CAMERA_NAMES, topics.CAMERA_IMAGE_TOPICS))
        info_topic = dict(zip(CAMERA_NAMES, topics.CAMERA_INFO_TOPICS))
        by_token: Dict[str, Camera] = {}
        for sd in cameras:
            if keyframes_only and not sd['is_key_frame']:
                continue
            stamp = int(sd['timestamp']) * US
            cam = by_token.get(sd['calibrated_sensor_token'])
            if cam is None:
                cam = by_token[sd['calibrated_sensor_token']] = self._camera(sd)
            frame = topics.camera_optical_frame(cam.name)
            path = root / sd['filename']
            events.add(stamp, image_topic[cam.name],
                       lambda p=path, s=stamp, f=frame: rosmsgs.compressed_image(
                           s, f, p.read_bytes()))
            events.add(stamp, info_topic[cam.name],
                       lambda s=stamp, c=cam: rosmsgs.camera_info(s, c))

    @staticmethod
    def _add_ego_motion(events: _Events, t_ns, xyz, quats, v_body, yaw_rate):
        for i in range(len(t_ns)):
            lin = (v_body[i, 0], v_body[i, 1], 0.0)
            ang = (0.0, 0.0, yaw_rate[i])
            odom, tf = rosmsgs.ego_motion(int(t_ns[i]), xyz[i], quats[i], lin, ang)
            events.add(t_ns[i], topics.ODOM, lambda m=odom: m)
            events.add(t_ns[i], topics.TF, lambda m=tf: m)

    def _add_samples(self, events: _Events, scene: dict, t_ns, xyz, quats):
        """Per sample: its route command, its Keyframe mark and its annotations."""
        nusc = self.nusc
        for sample in self.samples(scene):
            front = sample['data'].get('CAM_FRONT')
            if front is None:
                continue
            kf_stamp = int(nusc.get('sample_data', front)['timestamp']) * US
            # The route command, stamped before the sample's first image so that a replayed
            # planner holds it when the set completes (the reader takes the latest at t0).
            first = min(int(nusc.get('sample_data', tok)['timestamp']) * US
                        for ch, tok in sample['data'].items() if ch in CAMERA_NAMES)
            command = endpoint_command(kf_stamp, t_ns, xyz, quats)
            events.add(first - COMMAND_LEAD_NS, topics.COMMAND,
                       lambda s=first - COMMAND_LEAD_NS, c=command: rosmsgs.driving_command(s, c))
            events.add(kf_stamp, topics.KEYFRAME, lambda s=kf_stamp, tok=sample['token']:
                       rosmsgs.keyframe(s, topics.BASE_FRAME, tok, scene['name'], ''))
            stamp = int(sample['timestamp']) * US
            pos, quat = _ego_pose_at(stamp, t_ns, xyz, quats)
            objects = [self._object(ann, pos, quat) for ann in sample['anns']]
            events.add(stamp, topics.OBJECTS, lambda s=stamp, o=objects:
                       rosmsgs.ground_truth_objects(s, topics.BASE_FRAME, o))

    def _object(self, ann_token: str, ego_pos: np.ndarray, ego_quat: np.ndarray):
        """Express a sample_annotation as a GroundTruthObject in base_link at the sample's time."""
        from pyquaternion import Quaternion
        ann = self.nusc.get('sample_annotation', ann_token)
        rot = quat_wxyz_to_matrix(ego_quat)
        center = rot.T @ (np.asarray(ann['translation'], dtype=np.float64) - ego_pos)
        q = Quaternion(ego_quat).inverse * Quaternion(ann['rotation'])
        vel = np.asarray(self.nusc.box_velocity(ann_token), dtype=np.float64)
        vel = np.where(np.isfinite(vel), vel, 0.0)  # unknown (single annotation) -> 0
        width, length, height = ann['size']    # nuScenes stores w, l, h
        return rosmsgs.ground_truth_object(
            ann['instance_token'], object_class(ann['category_name']), center,
            (q.w, q.x, q.y, q.z), (length, width, height), rot.T @ vel)


def _ego_pose_at(stamp_ns: int, t_ns: np.ndarray, xyz: np.ndarray, quats: np.ndarray):
    """Ego pose at a stamp: the record itself if one exists, else interpolated (slerp)."""
    from pyquaternion import Quaternion
    i = int(np.searchsorted(t_ns, stamp_ns))
    if i < len(t_ns) and t_ns[i] == stamp_ns:
        return xyz[i], quats[i]
    i = min(max(i, 1), len(t_ns) - 1)
    a = float(np.clip((stamp_ns - t_ns[i - 1]) / max(t_ns[i] - t_ns[i - 1], 1), 0.0, 1.0))
    q = Quaternion.slerp(Quaternion(quats[i - 1]), Quaternion(quats[i]), a)
    return xyz[i - 1] + a * (xyz[i] - xyz[i - 1]), np.array([q.w, q.x, q.y, q.z])


def endpoint_command(stamp_ns: int, t_ns: np.ndarray, xyz: np.ndarray,
                     quats: np.ndarray) -> Command:
    """
    Return the nuScenes planners' route command at a keyframe: where the ego is 3 s later.

    This is how UniAD, VAD and the papers after them derive LEFT / RIGHT / STRAIGHT for
    nuScenes (no route exists in the logs): the lateral offset of the ground-truth 3 s
    endpoint in the keyframe's base_link (types.command_from_endpoint). Near the end of a
    log the last pose stands in for the missing future.
    """
    end_ns = min(stamp_ns + int(PLAN_STEPS * PLAN_DT * 1e9), int(t_ns[-1]))
    pos, quat = _ego_pose_at(stamp_ns, t_ns, xyz, quats)
    end, _ = _ego_pose_at(end_ns, t_ns, xyz, quats)
    local = quat_wxyz_to_matrix(quat).T @ (np.asarray(end) - np.asarray(pos))
    return command_from_endpoint(local[:2])


def _layout():
    """Topics and types every converted bag declares (readers see them even when empty)."""
    yield topics.TF_STATIC, rosmsgs.TF_MESSAGE
    yield topics.TF, rosmsgs.TF_MESSAGE
    yield topics.ODOM, rosmsgs.ODOMETRY
    for image, info in zip(topics.CAMERA_IMAGE_TOPICS, topics.CAMERA_INFO_TOPICS):
        yield image, rosmsgs.COMPRESSED_IMAGE
        yield info, rosmsgs.CAMERA_INFO
    yield topics.KEYFRAME, rosmsgs.KEYFRAME
    yield topics.COMMAND, rosmsgs.COMMAND
    yield topics.OBJECTS, rosmsgs.OBJECTS


def convert(dataroot, version: str, out, scenes: Optional[Sequence[str]] = None,
            storage: str = 'mcap', verbose: bool = True,
            keyframes_only: bool = False) -> List[pathlib.Path]:
    """Convert scenes (all by default) to bags out/<scene name>; returns the bag paths."""
    from nuscenes.nuscenes import NuScenes
    dataroot = pathlib.Path(dataroot)
    if not (dataroot / version).is_dir():
        raise FileNotFoundError(f'--dataroot/--version: no table folder {dataroot / version}')
    nusc = NuScenes(version=version, dataroot=str(dataroot), verbose=False)
    converter = SceneConverter(nusc)
    names = list(scenes) if scenes else converter.scene_names()
    for name in names:
        converter.scene(name)  # validate every name before writing anything
    out = pathlib.Path(out)
    journal = BagJournal(out, 'convert-nuscenes', {
        'command': 'convert-nuscenes', 'dataroot': str(dataroot.resolve()), 'version': version,
        'storage': storage, 'keyframes_only': keyframes_only}).start()
    try:
        return _convert_scenes(converter, names, out, storage, journal, verbose, keyframes_only)
    except FileExistsError:
        if not journal.resumed and not journal.rows:   # no claim on a folder not ours
            journal.remove()
        raise
    finally:
        journal.close()


def _convert_scenes(converter: SceneConverter, names: Sequence[str], out: pathlib.Path,
                    storage: str, journal: BagJournal, verbose: bool,
                    keyframes_only: bool = False) -> List[pathlib.Path]:
    """Convert the scenes the journal does not list as finished (a rerun resumes)."""
    done = journal.finished()
    written = []
    for k, name in enumerate(names, 1):
        bag = out / name
        written.append(bag)
        if name in done:
            if verbose:
                print(f'[{k}/{len(names)}] {name}: already converted ({journal.path.name})',
                      flush=True)
            continue
        start = time.monotonic()
        counts = converter.convert(name, bag, storage=storage,
                                   overwrite=journal.overwrite(name),
                                   keyframes_only=keyframes_only)
        journal.add(name, {'counts': counts})
        if verbose:
            images = sum(counts.get(t, 0) for t in topics.CAMERA_IMAGE_TOPICS)
            print(f'[{k}/{len(names)}] {name}: {counts.get(topics.KEYFRAME, 0)} keyframes, '
                  f'{images} images, {counts.get(topics.ODOM, 0)} odometry -> {bag} '
                  f'({time.monotonic() - start:.1f} s)', flush=True)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--dataroot', required=True,
                        help='nuScenes root (holds the version folder)')
    parser.add_argument('--version', default='v1.0-mini', help='table version, e.g. v1.0-trainval')
    parser.add_argument('--scenes', nargs='*', default=None,
                        help='scene names (default: every scene of the version)')
    parser.add_argument('--out', required=True, help='output folder: one bag per scene')
    parser.add_argument('--storage', default='mcap', choices=sorted(STORAGES))
    parser.add_argument('--keyframes-only', action='store_true',
                        help="only the samples' six images (2 Hz, for training); without it "
                             'every 12 Hz sweep image too (for replay at the camera rate)')


def main(args) -> int:
    try:
        convert(args.dataroot, args.version, args.out, args.scenes, args.storage,
                keyframes_only=args.keyframes_only)
    except (FileNotFoundError, FileExistsError, ValueError) as err:   # JournalMismatch too
        print(f'convert-nuscenes: {err}', file=sys.stderr)
        return 2
    except OSError as err:
        print(f'convert-nuscenes: cannot write {args.out}: {err}; the scene being written was '
              'removed, finished scenes are kept: run the same command again once there is '
              'room', file=sys.stderr)
        return 1
    return 0
