"""
Live annotation without ROS: keyframe selection, waiting for the 3 s future, a bounded queue.

The annotator node feeds camera frames, odometry and ground truth in from its executor thread;
nothing here blocks: a keyframe waits (bounded) until the odometry reaches 3 s past it, then
its future trajectory (data.geometry.OdometryTrack, the same code the dataset reader uses) and
the frame go into a bounded queue; a full queue drops the keyframe and counts it. Worker
threads decode the image and ask the teacher; results go to `on_result` (publish + record).
`close()` lets queued and running requests finish within a timeout and reports the rest as
FAILED ('shutdown'), so every keyframe that reached the queue gets exactly one record.
"""
from __future__ import annotations

import collections
import dataclasses
import queue
import threading
import time
from typing import Callable, Deque, Dict, List, Optional, Tuple

import numpy as np

from vlmad_ros.data.geometry import NS, OdometryTrack
from vlmad_ros.images import ImageConversionError
from vlmad_ros.rig import Camera
from vlmad_ros.teacher.base import FatalTeacherError, TeacherInput, TeacherResult
from vlmad_ros.teacher.scene import SceneIndex
from vlmad_ros.topics import PLAN_DT, PLAN_STEPS

HORIZON_NS = int(PLAN_STEPS * PLAN_DT * NS)


@dataclasses.dataclass(frozen=True)
class LiveConfig:
    """Rates and bounds of live annotation."""

    keyframe_rate: float = 2.0     # keyframes per second at most [Hz]
    queue_size: int = 8            # keyframes waiting for a worker; more are dropped (counted)
    max_waiting: int = 32          # keyframes waiting for their 3 s future; oldest dropped
    workers: int = 2               # teacher requests in parallel
    odom_keep_s: float = 2.0       # odometry kept before the oldest waiting keyframe [s]

    def __post_init__(self):
        if not self.keyframe_rate > 0:
            raise ValueError(f'keyframe_rate must be > 0 Hz, got {self.keyframe_rate}')
        for name in ('queue_size', 'max_waiting', 'workers'):
            if getattr(self, name) < 1:
                raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}')


@dataclasses.dataclass
class LiveStats:
    """Counters reported by the node."""

    frames: int = 0
    keyframes: int = 0
    queued: int = 0
    overflow: int = 0              # dropped: the work queue was full
    dropped_waiting: int = 0       # dropped: too many keyframes waiting for their future
    time_jumps: int = 0            # stamps went backwards (bag restarted): buffers reset
    no_odometry: int = 0           # skipped: no odometry at the keyframe itself
    annotated: int = 0
    failed: Dict[str, int] = dataclasses.field(default_factory=collections.Counter)

    def text(self) -> str:
        failed = sum(self.failed.values())
        return (f'{self.keyframes} keyframes from {self.frames} frames: {self.annotated} '
                f'annotated, {failed} failed {dict(self.failed) if failed else ""}, '
                f'{self.overflow} dropped (queue full), {self.dropped_waiting} dropped (waiting), '
                f'{self.no_odometry} without odometry, {self.time_jumps} time jumps'
                ).replace('  ', ' ')


@dataclasses.dataclass
class _Job:
    stamp_ns: int
    image_msg: object
    camera: Camera
    speed: float
    trajectory: object = None
    objects: Optional[tuple] = None
    lights: Optional[tuple] = None
    done: bool = False


class LiveAnnotator:
    """Thread-safe front end; `decode(msg) -> RGB` turns a stored image message into pixels."""

    def __init__(self, teacher, config: LiveConfig,
                 decode: Callable[[object], object],
                 on_result: Callable[[int, TeacherResult], None],
                 on_fatal: Optional[Callable[[str], None]] = None):
        self.teacher = teacher
        self.config = config
        self.decode = decode
        self.on_result = on_result
        self.on_fatal = on_fatal
        self.stats = LiveStats()
        self.scene = SceneIndex()
        self._lock = threading.Lock()
        self._odom: List[Tuple[int, float, float, float, float, float]] = []
        self._waiting: Deque[_Job] = collections.deque()
        self._queue: 'queue.Queue[Optional[_Job]]' = queue.Queue(maxsize=config.queue_size)
        self._pending: Dict[int, _Job] = {}   # queued or running: each gets one record
        self._last_keyframe: Optional[int] = None
        self._closing = False
        self._stopped = threading.Event()
        self._workers = [threading.Thread(target=self._work, name=f'teacher-{i}', daemon=True)
                         for i in range(config.workers)]
        for w in self._workers:
            w.start()

    # ----- inputs (executor thread; never block) -----

    def add_odometry(self, stamp_ns: int, x: float, y: float, yaw: float, speed: float,
                     yaw_rate: float) -> None:
        with self._lock:
            if self._odom and stamp_ns < self._odom[-1][0] - NS:
                self._reset()
            self._odom.append((int(stamp_ns), x, y, yaw, speed, yaw_rate))
            self._release()

    def add_frame(self, stamp_ns: int, image_msg, camera: Camera) -> bool:
        """Offer a camera frame; True when it became a keyframe."""
        with self._lock:
            if self._closing:
                return False
            self.stats.frames += 1
            last = self._last_keyframe
            if last is not None and stamp_ns < last - NS:
                self._reset()
                last = None
            gap = int(NS / self.config.keyframe_rate) - 50_000_000
            if last is not None and stamp_ns - last < gap:
                return False
            self._last_keyframe = int(stamp_ns)
            self.stats.keyframes += 1
            self._waiting.append(_Job(int(stamp_ns), image_msg, camera, float('nan')))
            while len(self._waiting) > self.config.max_waiting:
                self._waiting.popleft()
                self.stats.dropped_waiting += 1
            self._release()
            return True

    def add_objects(self, msg) -> None:
        with self._lock:
            self.scene.add_objects(msg)

    def add_lights(self, msg) -> None:
        with self._lock:
            self.scene.add_lights(msg)

    def _reset(self) -> None:
        """Stamps went back (a bag restarted): forget buffers that would mix two timelines."""
        self.stats.time_jumps += 1
        self._odom.clear()
        self.stats.dropped_waiting += len(self._waiting)
        self._waiting.clear()
        self._last_keyframe = None
        self.scene = SceneIndex()

    def _track(self) -> OdometryTrack:
        rows = self._odom
        return OdometryTrack.from_lists([r[0] for r in rows], [r[1:3] for r in rows],
                                        [r[3] for r in rows], [r[4] for r in rows],
                                        [r[5] for r in rows])

    def _release(self) -> None:
        """Move keyframes whose 3 s future has arrived into the work queue (lock held)."""
        if not self._waiting or not self._odom:
            return
        newest = self._odom[-1][0]
        if self._waiting[0].stamp_ns + HORIZON_NS > newest:
            return
        track = self._track()
        while self._waiting and self._waiting[0].stamp_ns + HORIZON_NS <= newest:
            job = self._waiting.popleft()
            job.trajectory = track.future_trajectory(job.stamp_ns)
            if job.trajectory is None:  # odometry does not cover the keyframe itself
                self.stats.no_odometry += 1
                continue
            i = int(np.searchsorted(track.t_ns, job.stamp_ns, side='right')) - 1
            job.speed = float(track.speed[max(i, 0)])  # last odometry at the keyframe
            if self.scene.has_truth:  # now, while the odometry around the keyframe is kept
                self.scene.track = track
                job.objects, job.lights = self.scene.at(job.stamp_ns)
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                self.stats.overflow += 1
                continue
            self.stats.queued += 1
            self._pending[job.stamp_ns] = job
        oldest = self._waiting[0].stamp_ns if self._waiting else newest
        keep = oldest - int(self.config.odom_keep_s * NS)
        cut = next((i for i, r in enumerate(self._odom) if r[0] >= keep), len(self._odom))
        del self._odom[:max(0, cut - 1)]
        self.scene.prune_before(oldest - NS)

    # ----- workers -----

    def _work(self) -> None:
        while not self._stopped.is_set():
            try:
                job = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if not job.done:
                self._finish(job, self._annotate(job))

    def _annotate(self, job: _Job) -> TeacherResult:
        try:
            image = self.decode(job.image_msg)
            cam = job.camera
            if (image.shape[1], image.shape[0]) != (cam.width, cam.height):
                cam = cam.scaled(image.shape[1], image.shape[0])
            inp = TeacherInput(image=image, camera=cam, trajectory=job.trajectory,
                               speed=job.speed, stamp_ns=job.stamp_ns, objects=job.objects,
                               lights=job.lights)
            return self.teacher.annotate(inp)
        except FatalTeacherError as err:
            if self.on_fatal is not None:
                self.on_fatal(str(err))
            return TeacherResult.failed('teacher_unavailable', self.teacher.name,
                                        self.teacher.prompt_version)
        except ImageConversionError as err:
            return TeacherResult.failed(f'image_{err.reason}', self.teacher.name,
                                        self.teacher.prompt_version)

    def _finish(self, job: _Job, result: TeacherResult) -> None:
        with self._lock:
            if job.done:
                return  # already reported (shutdown timed out on it)
            job.done = True
            self._pending.pop(job.stamp_ns, None)
            if result.ok:
                self.stats.annotated += 1
            else:
                self.stats.failed[result.failure_reason] += 1
        self.on_result(job.stamp_ns, result)

    # ----- shutdown -----

    def close(self, timeout: float) -> None:
        """Let queued and running requests finish within `timeout` s; the rest become FAILED."""
        with self._lock:
            self._closing = True
            self._waiting.clear()  # no future will arrive for these: never queued, not records
        deadline = time.monotonic() + max(0.0, timeout)
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    break
            time.sleep(0.02)
        with self._lock:
            leftover = sorted(self._pending.values(), key=lambda j: j.stamp_ns)
        for job in leftover:
            self._finish(job, TeacherResult.failed('shutdown', self.teacher.name,
                                                   self.teacher.prompt_version))
        self._stopped.set()  # workers still inside a request finish it and drop the answer
