"""Live annotation without ROS: keyframes wait for their future; a bounded queue; shutdown."""
import threading
import time

import helpers_annotate as h
import numpy as np
from vlmad_ros.rig import load_rig
from vlmad_ros.teacher.base import TeacherResult
from vlmad_ros.teacher.live import LiveAnnotator, LiveConfig
from vlmad_ros.teacher.rule import RuleTeacher

NS = 1_000_000_000
CAM = load_rig('nuscenes')['CAM_FRONT'].scaled(160, 90)
IMG = np.zeros((90, 160, 3), np.uint8)


class SlowTeacher:
    """The rule teacher behind a gate: answers only when the test opens it."""

    def __init__(self):
        self.gate = threading.Event()
        self.inner = RuleTeacher()
        self.name, self.prompt_version, self.image_width = 'slow', 'v', 0

    def annotate(self, inp):
        self.gate.wait(timeout=5)
        return self.inner.annotate(inp)


def feed(live, seconds=6.0, pose=h.brake_to_stop()):
    """Odometry at 20 Hz and frames at 4 Hz, in stamp order."""
    events = [(int(i * NS / 20), 'odom') for i in range(int(seconds * 20) + 1)]
    events += [(int(i * NS / 4), 'cam') for i in range(int(seconds * 4) + 1)]
    for t, kind in sorted(events):
        if kind == 'odom':
            x, y, yaw, v = pose(t / NS)
            live.add_odometry(t, x, y, yaw, v, 0.0)
        else:
            live.add_frame(t, 'frame', CAM)


def collect():
    out = []
    lock = threading.Lock()

    def on_result(stamp, result: TeacherResult):
        with lock:
            out.append((stamp, result))
    return out, on_result


def test_keyframes_wait_for_their_future_and_get_one_record_each():
    out, on_result = collect()
    live = LiveAnnotator(RuleTeacher(), LiveConfig(keyframe_rate=2.0), lambda m: IMG, on_result)
    feed(live)
    live.close(timeout=5.0)
    assert live.stats.frames == 25 and live.stats.keyframes == 13
    stamps = sorted(s for s, _ in out)
    assert stamps == [int(k * NS / 2) for k in range(7)], 'keyframes with 3 s of future'
    assert all(r.ok for _, r in out)
    assert live.stats.annotated == 7 and live.stats.overflow == 0


def test_full_queue_counts_overflow_and_shutdown_fails_the_rest():
    out, on_result = collect()
    teacher = SlowTeacher()
    live = LiveAnnotator(teacher, LiveConfig(queue_size=1, workers=1), lambda m: IMG, on_result)
    t0 = time.monotonic()
    feed(live)
    assert time.monotonic() - t0 < 1.0, 'feeding never blocks on a busy teacher'
    live.close(timeout=0.2)
    teacher.gate.set()
    time.sleep(0.1)
    # One keyframe in the worker (if it took it in time), one in the queue, the rest dropped.
    stats = live.stats
    assert stats.queued in (1, 2) and stats.queued + stats.overflow == 7
    assert [r.failure_reason for _, r in out] == ['shutdown'] * stats.queued
    assert len({s for s, _ in out}) == stats.queued, 'exactly one record per queued keyframe'


def test_stamps_going_back_reset_the_buffers():
    out, on_result = collect()
    live = LiveAnnotator(RuleTeacher(), LiveConfig(), lambda m: IMG, on_result)
    feed(live, seconds=2.0)
    feed(live, seconds=6.0)  # the bag restarts from the beginning
    live.close(timeout=5.0)
    assert live.stats.time_jumps == 1
    assert len(out) == 7 and len({s for s, _ in out}) == 7
