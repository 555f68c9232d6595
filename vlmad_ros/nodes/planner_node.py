"""
planner_node: six cameras + odometry -> nav_msgs/Path, in real time.

Thin over plain objects: planner.camera_features decodes, resizes and scales intrinsics,
sync.ApproximateTimeSynchronizer groups the set, planner.Planner runs the model.

What runs concurrently: the executor thread runs every subscription callback (stamp the
message, add it to the synchroniser, still compressed) and the diagnostics timer; one worker
thread takes complete sets, decodes their six images on a small pool (`decode_threads`;
libjpeg-turbo releases the GIL), runs the model and publishes. They meet in a LatestWins slot: a
complete set that arrives while the worker is busy replaces the waiting one (counted), so
latency stays bounded when the model is slower than the cameras, and a replaced set costs no
decoding.

With `explain:=true` the worker also runs the checkpoint's VLM-AD action head on the ego feature
of the same forward pass and publishes its control / turn / lane labels as DrivingReasoning,
with the plan's header, on `explanation_topic`.

A managed (lifecycle) node: with `autostart:=false` it waits for configure (load and warm the
model) and activate (subscribe) from a lifecycle manager or `ros2 lifecycle set`; deactivate
unsubscribes and publishes nothing more, cleanup releases the model. Topic names are relative,
so a namespace (`-r __ns:=/car1`) moves every input and output; /diagnostics stays global.
"""
from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor
import dataclasses
import math
import sys
import threading
import time
from typing import Dict, List, Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry, Path
import numpy as np
from rclpy.lifecycle import Node as LifecycleNode, State, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import Marker, MarkerArray

from vlmad_ros import stamps
from vlmad_ros import topics
from vlmad_ros.gpu_decode import DECODERS, NvJpegDecoder
from vlmad_ros.images import ImageConversionError
from vlmad_ros.msg import DrivingCommand, DrivingReasoning
from vlmad_ros.nodes.common import (clock_s, declare, diagnostic_name, LATCHED_COMMAND,
                                    LogThrottle, Param, ParameterError, RELIABILITY, run_node)
from vlmad_ros.planner import (camera_views, EgoStateEstimator, explanations, ImageSizeError,
                               LatestWins, plan_poses, Planner, RateMeter, RollingStats)
from vlmad_ros.rig import CAMERA_NAMES, CameraRig, load_rig
from vlmad_ros.sync import ApproximateTimeSynchronizer
from vlmad_ros.types import Command, EgoState, Explanation, Trajectory

NODE_NAME = 'planner_node'
TRANSPORTS = ('compressed', 'raw')
EXPLAINER = 'vlmad_ros action head'    # DrivingReasoning.teacher of the node's explanations


# Defaults equal config/planner.yaml. Topics are relative: the node's namespace applies.
PARAMETERS = (
    Param('autostart', True, 'configure and activate at start-up (false: wait for the '
          'lifecycle transitions, e.g. from nav2_lifecycle_manager)'),
    Param('checkpoint', '', 'planner checkpoint (.pt from `vlmad train`); empty: the packaged '
          'default vlmad_ros/checkpoints/default.pt if installed'),
    Param('backend', 'torch', 'torch (checkpoint: .pt) or onnxruntime (checkpoint: the .onnx '
          'of `vlmad export`)', choices=('onnxruntime', 'torch')),
    Param('allow_random_weights', False, 'run an untrained model when no checkpoint exists '
          '(tests and benchmarks only)'),
    Param('rig', 'nuscenes', 'camera rig: nuscenes, carla, or a rig yaml path'),
    Param('cameras', list(CAMERA_NAMES), "rig camera names, in the model's order"),
    Param('camera_topics', [topics.relative(topics.camera_image_topic(c)) for c in CAMERA_NAMES],
          'image topic per camera'),
    Param('camera_transports', ['compressed'], 'per camera: compressed (CompressedImage) or '
          'raw (Image); one entry applies to all'),
    Param('use_camera_info', False, 'override the rig intrinsics from CameraInfo'),
    Param('camera_info_topics', [topics.relative(topics.camera_info_topic(c))
                                 for c in CAMERA_NAMES],
          'CameraInfo topic per camera (when use_camera_info)'),
    Param('odom_topic', topics.relative(topics.ODOM),
          'nav_msgs/Odometry, part of the synchronised set'),
    Param('command_topic', topics.relative(topics.COMMAND),
          'vlmad_ros/DrivingCommand (transient local: the last one is kept), latest value used'),
    Param('plan_topic', topics.relative(topics.PLAN), 'output nav_msgs/Path'),
    Param('plan_frame', 'base_link', 'base_link, or odom: the plan in the frame of the odometry '
          'message, transformed with the synchronised pose', choices=('base_link', 'odom')),
    Param('base_frame', '', "the car's body frame, of the Path and markers when plan_frame is "
          "base_link: '' = the rig's frame_id (base_link); CARLA: the bridge's ego frame "
          '(ego_vehicle, hero), which its TF tree has'),
    Param('publish_markers', False, 'also publish a MarkerArray of the plan'),
    Param('marker_topic', topics.relative(topics.PLAN_MARKERS), 'MarkerArray topic'),
    Param('explain', False, "also run the checkpoint's VLM-AD action head (~0.5 ms on a CPU) "
          'and publish its control/turn/lane labels as DrivingReasoning with each plan; the '
          'checkpoint must carry the head (vlmad train --keep-action-head)'),
    Param('explanation_topic', topics.relative(topics.EXPLANATION),
          'output vlmad_ros/DrivingReasoning (when explain)'),
    Param('reliability', 'best_effort', 'subscription QoS reliability: best_effort (sensor '
          'data) or reliable (e.g. the CARLA bridge)', choices=tuple(sorted(RELIABILITY))),
    Param('qos_depth', 5, 'subscription queue depth', bounds=(1, 1000)),
    Param('queue_size', 10, 'synchroniser queue per input (message_filters meaning)',
          bounds=(1, 1000)),
    Param('slop', 0.05, 'max stamp spread of a synchronised set [s]', bounds=(0.0, 10.0)),
    Param('reset_after', 1.0, 'stamps jumping back by more than this [s] reset the '
          'synchroniser', bounds=(0.0, 3600.0)),
    Param('device', 'cpu', 'cpu, cuda, cuda:N or auto'),
    Param('num_threads', 1, 'torch intra-op threads (0: torch default); 1 leaves the other '
          'core to JPEG decoding', bounds=(0, 256)),
    Param('decoder', 'cpu', 'JPEG decoding: cpu (libjpeg-turbo at a reduced DCT scale on '
          'decode_threads) or nvjpeg (one batch per camera set on the GPU through torchvision; '
          'needs device: cuda and backend: torch)', choices=DECODERS),
    Param('decode_threads', 2, 'threads decoding camera images in parallel (libjpeg-turbo '
          'releases the GIL)', bounds=(1, 64)),
    Param('fp16', False, 'half precision (CUDA only)'),
    Param('cuda_graphs', False, 'replay the model as CUDA graphs (torch.compile, mode '
          'reduce-overhead; device: cuda, backend: torch): about half the GPU step at batch 1; '
          'configure takes seconds longer (compile and record)'),
    Param('stale_timeout', 0.5, 'an input silent this long [s, node clock: sim time under '
          'use_sim_time], or whose stamps lag the odometry by this long, is stale; also the '
          'odometry gap that resets the ego-state estimator', bounds=(0.0, 60.0)),
    Param('missing_camera', 'stop', 'a camera stale, silent, corrupt or of the wrong size: stop '
          '(no plan for that set; the follower stops the car) or fill (plan with a black image '
          'in its place, up to max_missing_cameras)', choices=('fill', 'stop')),
    Param('max_missing_cameras', 2, 'missing_camera:=fill plans with at most this many cameras '
          'filled black; more: no plan', bounds=(0, 64)),
    Param('odom_jump_distance', 5.0, 'odometry moving more than this [m] between two messages '
          'is a pose jump (relocalisation, teleport): the ego-state estimator is reset',
          bounds=(0.0, 1e6)),
    Param('diagnostics_period', 1.0, 'diagnostics publishing period [s]', bounds=(0.0, 60.0)),
)
PARAMETER_NAMES = tuple(p.name for p in PARAMETERS)


@dataclasses.dataclass
class Settings:
    """Validated parameters."""

    values: Dict[str, object]

    def __getattr__(self, name):
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def validate(values: Dict[str, object]) -> Settings:
    """Check ranges and cross-parameter consistency; errors name the parameter."""
    v = dict(values)
    n = len(v['cameras'])
    if n == 0 or len(set(v['cameras'])) != n:
        raise ParameterError(f'cameras: need distinct camera names, got {v["cameras"]}')
    if len(v['camera_topics']) != n:
        raise ParameterError(f'camera_topics: need {n} topics (one per camera), got '
                             f'{len(v["camera_topics"])}')
    transports = list(v['camera_transports'])
    if len(transports) == 1:
        transports = transports * n
    if len(transports) != n or any(t not in TRANSPORTS for t in transports):
        raise ParameterError(f'camera_transports: need 1 or {n} values from {TRANSPORTS}, got '
                             f'{v["camera_transports"]}')
    v['camera_transports'] = transports
    if v['use_camera_info'] and len(v['camera_info_topics']) != n:
        raise ParameterError(f'camera_info_topics: need {n} topics, got '
                             f'{len(v["camera_info_topics"])}')
    if v['max_missing_cameras'] >= n:
        raise ParameterError(f'max_missing_cameras: must be < the number of cameras ({n}), got '
                             f'{v["max_missing_cameras"]}')
    for name in ('slop', 'reset_after', 'stale_timeout', 'diagnostics_period',
                 'odom_jump_distance'):
        if not float(v[name]) > 0:
            raise ParameterError(f'{name}: must be > 0, got {v[name]}')
    for name in ('odom_topic', 'command_topic', 'plan_topic') + (
            ('explanation_topic',) if v['explain'] else ()):
        if not v[name]:
            raise ParameterError(f'{name}: must not be empty')
    return Settings(v)


@dataclasses.dataclass
class CameraPart:
    """A camera message waiting in the synchroniser, still compressed."""

    stamp_ns: int
    t_arrival: float          # perf_counter() when the message reached the callback
    index: int                # camera index (rig order)
    msg: object               # sensor_msgs/CompressedImage or Image


@dataclasses.dataclass
class OdomPart:
    stamp_ns: int
    t_arrival: float
    ego: object               # EgoState
    frame_id: str
    position: tuple
    orientation: tuple        # x, y, z, w


class PlannerNode(LifecycleNode):
    """
    A managed node: cameras + odometry + command in, the plan and diagnostics out.

    configure loads and warms the model and creates the publishers; activate subscribes;
    deactivate unsubscribes (nothing more is published); cleanup releases the model. With
    autostart (the default) the node goes through configure and activate at start-up.
    """

    def __init__(self):
        super().__init__(NODE_NAME)
        # Set before the parameters are read: a bad one ends the process through destroy_node.
        self.planner: Optional[Planner] = None
        self.gpu_decoder: Optional[NvJpegDecoder] = None
        self._subs: List = []
        self._error: Optional[ParameterError] = None
        self.throttle = LogThrottle(5.0)   # per-key throttled warnings for bad input
        self.settings = s = validate(declare(self, PARAMETERS))
        self.rig = self._load_rig(s)
        if s.autostart:
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                raise self._error or ParameterError('autostart: configure failed')
            self.trigger_activate()

    # ---- lifecycle transitions ----------------------------------------------------------------

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        """Load and warm the model, create the publishers and the inference worker."""
        try:
            self.planner = self._load_planner(self.settings)
        except ParameterError as err:
            self._error = err
            self.get_logger().error(f'configure failed: invalid parameter: {err}')
            return TransitionCallbackReturn.FAILURE
        self._warm_up()
        self._reset_state()
        self._create_publishers()
        self._start_worker()
        s = self.settings
        self.get_logger().info(
            f'{self.planner.describe()}; rig {self.rig.name}; {len(s.cameras)} cameras '
            f'({",".join(sorted(set(s.camera_transports)))}), odometry {s.odom_topic} -> '
            f'{s.plan_topic} in {s.plan_frame}'
            + (f', explanations -> {s.explanation_topic}' if s.explain else ''))
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._subscribe()
        self.get_logger().info('active: planning')
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._unsubscribe()
        self.slot.take(timeout=0.0)          # a waiting set is not planned any more
        self.get_logger().info('inactive: not planning')
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._unsubscribe()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _load_planner(self, s: Settings) -> Planner:
        try:
            planner = Planner.from_options(
                checkpoint=s.checkpoint, allow_random_weights=s.allow_random_weights,
                device=s.device, num_threads=s.num_threads, fp16=s.fp16, explain=s.explain,
                backend=s.backend, cuda_graphs=s.cuda_graphs)
        except FileNotFoundError as err:
            msg = str(err)
            raise ParameterError(msg if msg.startswith('checkpoint') else
                                 f'checkpoint: {msg}') from None
        except ValueError as err:  # device / fp16 / num_threads / checkpoint contents
            text = str(err)
            raise ParameterError(text if text.split(':')[0] in PARAMETER_NAMES
                                 else f'checkpoint: {text}') from None
        self.gpu_decoder = self._load_decoder(s, planner)
        if self.gpu_decoder is not None and planner.config.jpeg_decode != 'full':
            self.get_logger().warning(
                'decoder: nvjpeg decodes whole frames, but this checkpoint was trained on '
                'reduced-DCT decodes (jpeg_decode: dct): its inputs differ slightly (the '
                'packaged default.pt plans up to ~0.2 m apart); for a GPU decoder train with '
                'model.jpeg_decode: full, or use decoder: cpu')
        if planner.config.num_cameras != len(s.cameras):
            raise ParameterError(f'cameras: the model expects {planner.config.num_cameras} '
                                 f'cameras, {len(s.cameras)} configured')
        if planner.rig is not None and planner.rig.names != self.rig.names:
            self.get_logger().warning(f'checkpoint trained on rig {planner.rig.name} '
                                      f'{planner.rig.names}, running on {self.rig.name}')
        return planner

    @staticmethod
    def _load_decoder(s: Settings, planner: Planner) -> Optional[NvJpegDecoder]:
        """Build the GPU decoder for decoder: nvjpeg (None for the CPU one)."""
        if s.decoder != 'nvjpeg':
            return None
        if s.backend != 'torch':
            raise ParameterError(f'decoder: nvjpeg feeds the torch backend on the GPU, backend '
                                 f'is {s.backend} (use decoder: cpu)')
        try:
            return NvJpegDecoder(planner.device)
        except ValueError as err:
            raise ParameterError(str(err)) from None

    def _warm_up(self) -> None:
        """One forward pass on grey images: the first real set is not slowed by lazy set-up."""
        spec = self.planner.view_spec
        views = [camera_views(cam, np.full((cam.height, cam.width, 3), 128, np.uint8), spec)
                 for cam in self.rig.cameras]
        for _ in range(3 if self.settings.cuda_graphs else 1):    # graphs: compile, record
            self.planner.plan_views(views, EgoState(speed=0.0, yaw_rate=0.0, accel=0.0),
                                    int(Command.STRAIGHT))
        if self.gpu_decoder is not None:
            self.gpu_decoder.warm_up(self.rig.cameras[0].width, self.rig.cameras[0].height)

    def _reset_state(self) -> None:
        s, n = self.settings, len(self.settings.cameras)
        self.sync = ApproximateTimeSynchronizer(n + 1, s.queue_size, s.slop, s.reset_after)
        self.sync.register_callback(self._on_set)
        self.slot = LatestWins()
        self.ego_estimator = EgoStateEstimator()
        self.command: Optional[int] = None
        self._camera_lock = threading.Lock()
        self.bad_inputs: Dict[str, collections.Counter] = collections.defaultdict(
            collections.Counter)
        self._bad_lock = threading.Lock()
        self._resets_logged = 0
        self.camera_faults: Dict[str, str] = {}    # camera -> why its last image failed
        self.last_stamp: List[Optional[int]] = [None] * (n + 1)   # cameras, then odometry
        self.last_pose: Optional[tuple] = None     # (stamp_ns, x, y) of the last odometry
        self.degraded_sets = collections.Counter()  # 'filled' / 'stopped' sets
        self.rates = [RateMeter() for _ in range(n)]
        self.odom_rate = RateMeter()
        self.stage = {k: RollingStats() for k in ('decode', 'sync', 'model', 'publish')}
        self.latency = RollingStats()
        self.published = 0
        self.explained = 0
        self.start_time = clock_s(self)

    def _create_publishers(self) -> None:
        s = self.settings
        self.plan_pub = self.create_lifecycle_publisher(Path, s.plan_topic, 10)
        self.marker_pub = (self.create_lifecycle_publisher(MarkerArray, s.marker_topic, 10)
                           if s.publish_markers else None)
        self.explanation_pub = (
            self.create_lifecycle_publisher(DrivingReasoning, s.explanation_topic, 10)
            if s.explain else None)
        self.diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
        self.diag_timer = self.create_timer(s.diagnostics_period, self._publish_diagnostics)

    def _start_worker(self) -> None:
        self._decode_pool = ThreadPoolExecutor(self.settings.decode_threads,
                                               thread_name_prefix='decode')
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name='planner_inference', daemon=True)
        self._worker.start()

    def _subscribe(self) -> None:
        s = self.settings
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=s.qos_depth,
                         reliability=RELIABILITY[s.reliability],
                         durability=DurabilityPolicy.VOLATILE)
        for i, (name, topic, transport) in enumerate(zip(s.cameras, s.camera_topics,
                                                         s.camera_transports)):
            msg_type = CompressedImage if transport == 'compressed' else Image
            self._subs.append(self.create_subscription(
                msg_type, topic, lambda m, i=i: self._on_image(i, m), qos))
            if s.use_camera_info:
                self._subs.append(self.create_subscription(
                    CameraInfo, s.camera_info_topics[i],
                    lambda m, name=name: self._on_camera_info(name, m), qos))
        self._subs.append(self.create_subscription(Odometry, s.odom_topic, self._on_odom, qos))
        self._subs.append(self.create_subscription(DrivingCommand, s.command_topic,
                                                   self._on_command, LATCHED_COMMAND))

    def _unsubscribe(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []

    def _release(self) -> None:
        """Stop the worker, drop publishers, timer and model (cleanup and shutdown)."""
        if self.planner is None:
            return
        self._stop.set()
        self._decode_pool.shutdown(wait=True, cancel_futures=True)
        if self._worker.is_alive():
            self._worker.join(timeout=2.0)
        for pub in (self.plan_pub, self.marker_pub, self.explanation_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self.destroy_publisher(self.diag_pub)
        self.destroy_timer(self.diag_timer)
        self.planner = self.gpu_decoder = None

    # ---- set-up helpers ---------------------------------------------------------------------

    @staticmethod
    def _load_rig(s: Settings):
        try:
            rig = load_rig(s.rig)
        except (FileNotFoundError, ValueError, OSError) as err:
            raise ParameterError(f'rig: {err}') from None
        missing = [c for c in s.cameras if c not in rig.names]
        if missing:
            raise ParameterError(f'cameras: {missing} not in rig {rig.name} ({rig.names})')
        return CameraRig(name=rig.name, frame_id=rig.frame_id,
                         cameras=tuple(rig[c] for c in s.cameras))

    def _bad(self, source: str, reason: str, detail: str) -> None:
        with self._bad_lock:
            self.bad_inputs[source][reason] += 1
        self.throttle(self.get_logger().warning, f'{source} {reason}',
                      f'skipping {source}: {reason}: {detail}')

    # ---- callbacks (executor thread) ------------------------------------------------------

    def _on_image(self, index: int, msg) -> None:
        # Only stamp and queue: images are decoded once their set is complete and about to be
        # planned, so sets replaced under overload (or never completed) cost no decoding.
        t_arrival = time.perf_counter()
        self.rates[index].tick(clock_s(self))
        part = CameraPart(stamps.to_ns(msg.header.stamp), t_arrival, index, msg)
        self.last_stamp[index] = part.stamp_ns
        self._add_to_sync(index, part, t_arrival)

    def _decode(self, part: CameraPart):
        """Decode one camera of a set (decode pool thread); its views or None."""
        try:
            views = self.planner.views(self.rig.cameras[part.index], part.msg)
        except (ImageConversionError, ImageSizeError) as err:
            views = err
        return self._checked(part.index, views)

    def _decode_on_gpu(self, cams: List) -> List:
        """Decode a set's cameras in one nvJPEG batch (decoder: nvjpeg); views or None each."""
        present = [i for i, p in enumerate(cams) if p is not None]
        results = self.gpu_decoder.views([self.rig.cameras[i] for i in present],
                                         [cams[i].msg for i in present],
                                         self.planner.view_spec)
        decoded = [None] * len(cams)
        for i, views in zip(present, results):
            decoded[i] = self._checked(i, views)
        return decoded

    def _checked(self, index: int, views):
        """Count and remember a camera's decode error (returns None), or clear its fault."""
        name = self.settings.cameras[index]
        if isinstance(views, (ImageConversionError, ImageSizeError)):
            self._bad(name, views.reason, str(views))
            with self._bad_lock:
                self.camera_faults[name] = views.reason
            return None
        with self._bad_lock:
            self.camera_faults.pop(name, None)
        return views

    def _on_odom(self, msg: Odometry) -> None:
        t_arrival = time.perf_counter()
        tw, pose = msg.twist.twist, msg.pose.pose
        values = [tw.linear.x, tw.angular.z, pose.position.x, pose.position.y, pose.position.z,
                  pose.orientation.x, pose.orientation.y, pose.orientation.z,
                  pose.orientation.w]
        if not all(math.isfinite(x) for x in values):
            self._bad('odometry', 'not_finite', 'NaN/inf in pose or twist')
            return
        q = (pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w)
        if abs(math.sqrt(sum(c * c for c in q)) - 1.0) > 1e-2:
            self._bad('odometry', 'bad_quaternion', f'|q| != 1: {q}')
            return
        stamp = stamps.to_ns(msg.header.stamp)
        self.odom_rate.tick(clock_s(self))
        self._check_odom_continuity(stamp, pose.position.x, pose.position.y)
        self.last_stamp[-1] = stamp
        self._update_optional_cameras()
        ego = self.ego_estimator.update(stamp * 1e-9, tw.linear.x, tw.angular.z)
        part = OdomPart(stamp, t_arrival, ego, msg.header.frame_id,
                        (pose.position.x, pose.position.y, pose.position.z), q)
        self._add_to_sync(len(self.settings.cameras), part, time.perf_counter())

    def _check_odom_continuity(self, stamp_ns: int, x: float, y: float) -> None:
        """Reset the ego-state estimator on an odometry outage or pose jump (no stale accel)."""
        last, self.last_pose = self.last_pose, (stamp_ns, x, y)
        if last is None:
            return
        gap = (stamp_ns - last[0]) * 1e-9
        step = math.hypot(x - last[1], y - last[2])
        if gap > self.settings.stale_timeout:
            why, detail = 'outage_reset', f'no odometry for {gap:.2f} s'
        elif step > self.settings.odom_jump_distance:
            why, detail = 'pose_jump_reset', f'pose jumped {step:.1f} m in {gap:.3f} s'
        else:
            return
        self.ego_estimator.reset()
        with self._bad_lock:
            self.bad_inputs['odometry'][why] += 1
        self.throttle(self.get_logger().warning, f'odometry {why}',
                      f'odometry: {detail}: ego-state estimator reset')

    def _absent_cameras(self, now: float) -> Dict[str, str]:
        """Cameras that are silent (node clock) or whose stamps lag the odometry: name -> why."""
        s, out = self.settings, {}
        odom_stamp = self.last_stamp[-1]
        for name, meter, stamp in zip(s.cameras, self.rates, self.last_stamp):
            if meter.last is None:
                out[name] = 'missing'
            elif now - meter.last > s.stale_timeout or (
                    odom_stamp is not None and stamp is not None
                    and (odom_stamp - stamp) * 1e-9 > s.stale_timeout):
                out[name] = 'stale'
        return out

    def _update_optional_cameras(self) -> None:
        """Under missing_camera:=fill, absent cameras (up to the limit) stop blocking sets."""
        s = self.settings
        if s.missing_camera != 'fill' or clock_s(self) - self.start_time < s.stale_timeout:
            return
        absent = self._absent_cameras(clock_s(self))
        optional = [i for i, name in enumerate(s.cameras) if name in absent]
        if len(optional) > s.max_missing_cameras:
            optional = []                     # too many: every camera required, no sets
        if frozenset(optional) != self.sync.optional:
            self.sync.set_optional(optional)

    def _add_to_sync(self, index: int, part, t_ready: float) -> None:
        self.sync.add(index, part.stamp_ns, part)
        self.stage['sync'].add(time.perf_counter() - t_ready)
        if self.sync.stats.resets > self._resets_logged:
            self._resets_logged = self.sync.stats.resets
            self.throttle(self.get_logger().warning, 'reset',
                          'stamps jumped back (bag loop or restart?): synchroniser reset')

    def _on_set(self, stamp_ns: int, parts: List) -> None:
        # Latency runs from the arrival of the set's last message.
        self.slot.put((parts, max(p.t_arrival for p in parts if p is not None)))

    def _on_camera_info(self, name: str, msg: CameraInfo) -> None:
        k = list(msg.k)
        if msg.width <= 0 or msg.height <= 0 or not all(math.isfinite(x) for x in k) or \
                k[0] <= 0 or k[4] <= 0:
            self._bad(name, 'bad_camera_info', f'{msg.width}x{msg.height} k={k}')
            return
        cam = self.rig[name]
        if (cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy) != (
                msg.width, msg.height, k[0], k[4], k[2], k[5]):
            with self._camera_lock:
                self.rig = self.rig.replace_camera(cam.with_intrinsics(msg.width, msg.height, k))

    def _on_command(self, msg: DrivingCommand) -> None:
        if msg.command == DrivingCommand.UNKNOWN:
            self.command = None        # as if none was received: STRAIGHT, with a warning
            return
        if msg.command not in (c.value for c in Command):
            self._bad('command', 'unknown_command', str(msg.command))
            return
        self.command = int(msg.command)

    # ---- inference (worker thread) -----------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            item = self.slot.take(timeout=0.2)
            if item is None:
                continue
            try:
                self._plan(*item)
            except Exception as err:  # keep planning; a failure here is a bug worth logging
                self.throttle(self.get_logger().error, 'inference',
                              f'inference failed: {type(err).__name__}: {err}')

    def _decode_set(self, cams: List) -> Optional[List]:
        """Decode a set's cameras in parallel; fill or refuse the missing ones (the policy)."""
        s = self.settings
        if self.gpu_decoder is not None:
            decoded = self._decode_on_gpu(cams)
        else:
            decoded = list(self._decode_pool.map(
                lambda p: None if p is None else self._decode(p), cams))
        missing = {}
        if any(d is None for d in decoded):
            absent = self._absent_cameras(clock_s(self))
            with self._bad_lock:
                faults = dict(self.camera_faults)
            missing = {s.cameras[i]: (faults.get(s.cameras[i], 'bad_image') if p is not None
                                      else absent.get(s.cameras[i], 'stale'))
                       for i, (p, d) in enumerate(zip(cams, decoded)) if d is None}
        if not missing:
            return decoded
        what = ', '.join(f'{name} {why}' for name, why in missing.items())
        if s.missing_camera == 'stop' or len(missing) > s.max_missing_cameras:
            self.degraded_sets['stopped'] += 1
            self.throttle(self.get_logger().error, 'degraded stop',
                          f'no plan (missing_camera={s.missing_camera}, max_missing_cameras='
                          f'{s.max_missing_cameras}): {what}')
            return None
        self.degraded_sets['filled'] += 1
        self.throttle(self.get_logger().warning, 'degraded fill',
                      f'planning with black images for: {what}')
        with self._camera_lock:
            rig = self.rig
        return [d if d is not None else self.planner.blank_views(rig.cameras[i])
                for i, d in enumerate(decoded)]

    def _plan(self, parts: List, t_arrival: float) -> None:
        t0 = time.perf_counter()
        cams, odom = parts[:-1], parts[-1]
        decoded = self._decode_set(cams)
        if decoded is None:
            return                                                 # counted in _decode_set
        t_decoded = time.perf_counter()
        self.stage['decode'].add(t_decoded - t0)
        command = self.command
        if command is None:
            self.throttle(self.get_logger().warning, 'no command',
                          f'no route command received on {self.settings.command_topic} yet: '
                          'using STRAIGHT')
            command = int(Command.STRAIGHT)
        traj, out = self.planner.plan_views(decoded, odom.ego, command)
        if not self._subs:
            return                                                 # deactivated meanwhile
        t1 = time.perf_counter()
        stamp_ns = next(p.stamp_ns for p in cams if p is not None)
        header = self._publish(traj, stamp_ns, odom)
        if self.explanation_pub is not None:
            self._publish_explanation(explanations(out)[0], header)
        t2 = time.perf_counter()
        self.stage['model'].add(t1 - t_decoded)
        self.stage['publish'].add(t2 - t1)
        self.latency.add(t2 - t_arrival)
        self.published += 1

    def _publish(self, traj: Trajectory, stamp_ns: int, odom: OdomPart):
        """Publish the Path (and markers); returns its header for the explanation."""
        if self.settings.plan_frame == 'odom':
            poses = plan_poses(traj, odom.position, odom.orientation)
            frame = odom.frame_id or topics.ODOM_FRAME
        else:
            poses = plan_poses(traj)
            frame = self.settings.base_frame or self.rig.frame_id
        path = Path()
        path.header.frame_id = frame
        stamps.write_ns(path.header.stamp, stamp_ns)
        for k, p in enumerate(poses):
            ps = PoseStamped()
            ps.header.frame_id = frame
            stamps.write_ns(ps.header.stamp, stamp_ns + int(round(traj.times[k] * 1e9)))
            ps.pose.position.x, ps.pose.position.y, ps.pose.position.z = (float(v) for v in p[:3])
            o = ps.pose.orientation
            o.x, o.y, o.z, o.w = (float(v) for v in p[3:])
            path.poses.append(ps)
        self.plan_pub.publish(path)
        if self.marker_pub is not None:
            self.marker_pub.publish(self._markers(path))
        return path.header

    def _publish_explanation(self, explanation: Explanation, header) -> None:
        """Publish the head's labels with the plan's header, so a viewer pairs them by stamp."""
        msg = DrivingReasoning(header=header)
        msg.current_action = explanation.describe()     # labels + confidences, for people
        msg.future_action = msg.reasoning = ''          # free text is the teacher's, not ours
        labels = explanation.labels
        msg.control_action = labels['control_action']
        msg.turn_action = labels['turn_action']
        msg.lane_action = labels['lane_action']
        msg.teacher, msg.prompt_version = EXPLAINER, ''
        msg.status = DrivingReasoning.STATUS_OK
        self.explanation_pub.publish(msg)
        self.explained += 1

    @staticmethod
    def _markers(path: Path) -> MarkerArray:
        line = Marker()
        line.header = path.header
        line.ns, line.id, line.type, line.action = 'vlmad_plan', 0, Marker.LINE_STRIP, Marker.ADD
        line.scale.x = 0.3
        line.color.r, line.color.g, line.color.b, line.color.a = 0.1, 0.8, 0.2, 1.0
        line.pose.orientation.w = 1.0
        line.points = [ps.pose.position for ps in path.poses]
        dots = Marker()
        dots.header = path.header
        dots.ns, dots.id, dots.type, dots.action = 'vlmad_plan', 1, Marker.SPHERE_LIST, Marker.ADD
        dots.scale.x = dots.scale.y = dots.scale.z = 0.6
        dots.color.r, dots.color.g, dots.color.b, dots.color.a = 1.0, 0.5, 0.0, 1.0
        dots.pose.orientation.w = 1.0
        dots.points = line.points
        return MarkerArray(markers=[line, dots])

    # ---- diagnostics (executor thread) -------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        msg = DiagnosticArray(status=[self._inputs_status(), self._sync_status(),
                                      self._inference_status(), self._bad_status()])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)

    def _inputs_status(self) -> DiagnosticStatus:
        """
        Per input: rate and state (ok, missing, stale, or why its last image failed).

        ERROR when no plan can come (odometry absent; cameras degraded beyond the
        missing_camera policy), WARN when planning goes on with cameras filled black.
        """
        now, s = clock_s(self), self.settings
        cam = DiagnosticStatus(name=diagnostic_name(self, 'cameras'), hardware_id=NODE_NAME)
        absent = self._absent_cameras(now)
        odom = self.odom_rate
        if odom.last is None:
            absent['odometry'] = 'missing'
        elif now - odom.last > s.stale_timeout:
            absent['odometry'] = 'stale'
        with self._bad_lock:
            faults = dict(self.camera_faults)
        for name, meter in list(zip(s.cameras, self.rates)) + [('odometry', odom)]:
            cam.values.append(KeyValue(key=f'{name} rate_hz', value=f'{meter.rate(now):.2f}'))
            cam.values.append(KeyValue(key=f'{name} state',
                                       value=absent.get(name) or faults.get(name) or 'ok'))
        for kind in ('missing', 'stale'):
            cam.values.append(KeyValue(key=kind, value=','.join(
                n for n, why in absent.items() if why == kind)))
        degraded = {n: absent.get(n) or faults[n] for n in s.cameras if n in absent or n in faults}
        cam.level, cam.message = self._inputs_verdict(degraded, absent.get('odometry'))
        if cam.level != DiagnosticStatus.OK and now - self.start_time > 2 * s.stale_timeout \
                and self._subs:
            self.throttle(self.get_logger().warning, 'inputs', f'inputs: {cam.message}')
        return cam

    def _inputs_verdict(self, degraded: Dict[str, str], odometry: Optional[str]):
        """(level, message) of the inputs status; the message names every input and why."""
        s = self.settings
        what = ', '.join(f'{n} {why}' for n, why in degraded.items())
        if odometry:
            return DiagnosticStatus.ERROR, f'no plans: odometry {odometry}' + (
                f'; cameras: {what}' if what else '')
        if not degraded:
            return DiagnosticStatus.OK, 'all inputs arriving'
        if s.missing_camera == 'stop' or len(degraded) > s.max_missing_cameras:
            return DiagnosticStatus.ERROR, (
                f'no plans (missing_camera={s.missing_camera}, max_missing_cameras='
                f'{s.max_missing_cameras}): {what}')
        return DiagnosticStatus.WARN, f'planning with black images for: {what}'

    def _sync_status(self) -> DiagnosticStatus:
        st = self.sync.stats
        sync = DiagnosticStatus(name=diagnostic_name(self, 'sync'), hardware_id=NODE_NAME,
                                level=DiagnosticStatus.OK, message=f'{st.sets} sets')
        for key, value in (('sets', st.sets), ('received', st.received), ('used', st.used),
                           ('success_ratio', f'{st.success_ratio:.3f}'),
                           ('dropped_from_queue', st.dropped), ('resets', st.resets),
                           ('replaced_sets', self.slot.replaced),
                           ('sets_filled', self.degraded_sets['filled']),
                           ('sets_stopped', self.degraded_sets['stopped']),
                           ('plans_published', self.published),
                           ('command', 'none' if self.command is None
                            else Command(self.command).name),
                           ('explanations_published', self.explained)):
            sync.values.append(KeyValue(key=key, value=str(value)))
        return sync

    def _inference_status(self) -> DiagnosticStatus:
        inf = DiagnosticStatus(name=diagnostic_name(self, 'inference'), hardware_id=NODE_NAME,
                               level=DiagnosticStatus.OK, message=self.planner.describe())
        inf.values.append(KeyValue(key='model', value=self.planner.describe()))
        inf.values.append(KeyValue(key='device', value=str(self.planner.device)))
        inf.values.append(KeyValue(key='decoder', value=self.settings.decoder))
        inf.values.append(KeyValue(key='active', value=str(bool(self._subs)).lower()))
        p50, p95, p99 = (1e3 * v for v in self.latency.percentiles())
        for key, value in (('latency_ms_p50', p50), ('latency_ms_p95', p95),
                           ('latency_ms_p99', p99)):
            inf.values.append(KeyValue(key=key, value=f'{value:.2f}'))
        for stage, stats in self.stage.items():
            q50, q95 = (1e3 * v for v in stats.percentiles((50, 95)))
            inf.values.append(KeyValue(key=f'{stage}_ms_p50', value=f'{q50:.3f}'))
            inf.values.append(KeyValue(key=f'{stage}_ms_p95', value=f'{q95:.3f}'))
        return inf

    def _bad_status(self) -> DiagnosticStatus:
        bad = DiagnosticStatus(name=diagnostic_name(self, 'bad inputs'), hardware_id=NODE_NAME)
        with self._bad_lock:
            counts = {f'{source} {reason}': count for source, counter in self.bad_inputs.items()
                      for reason, count in counter.items()}
        if self.sync.stats.resets:
            counts['sync time_jump_back'] = self.sync.stats.resets
        for key, count in sorted(counts.items()):
            bad.values.append(KeyValue(key=key, value=str(count)))
        total = sum(counts.values())
        bad.level = DiagnosticStatus.WARN if total else DiagnosticStatus.OK
        bad.message = f'{total} skipped'
        return bad

    def destroy_node(self):
        self._unsubscribe()
        self._release()
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(NODE_NAME, PlannerNode, args)


if __name__ == '__main__':
    sys.exit(main())
