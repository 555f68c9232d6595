"""
The teacher interface: what a VLM teacher is shown and what it answers (VLM-AD Q1 + Q2).

A teacher sees the front image, its calibration and the ego's future 3 s trajectory (the
ground truth the red overlay is drawn from); rule-based teachers may also read privileged
ground truth (agents, traffic lights). It answers with a TeacherResult, which becomes one
DrivingReasoning record. A FAILED result carries a reason and no labels: a bad answer never
becomes a label.
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Optional, Protocol, Tuple

import numpy as np

from vlmad_ros import labels
from vlmad_ros.rig import Camera
from vlmad_ros.types import ReasoningRecord, Trajectory


class ObjectClass(enum.IntEnum):
    """GroundTruthObject.object_class values."""

    CAR = 0
    TRUCK = 1
    BUS = 2
    PEDESTRIAN = 3
    CYCLIST = 4
    BARRIER = 5
    OTHER = 6


VEHICLE_CLASSES = (ObjectClass.CAR, ObjectClass.TRUCK, ObjectClass.BUS, ObjectClass.CYCLIST)


class LightState(enum.IntEnum):
    """TrafficLight.state values."""

    UNKNOWN = 0
    RED = 1
    YELLOW = 2
    GREEN = 3


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One agent at the keyframe, in the ego's base_link (x forward, y left) [m, rad, m/s]."""

    x: float
    y: float
    length: float
    width: float
    yaw: float
    object_class: ObjectClass
    vx: float = 0.0
    vy: float = 0.0

    @property
    def speed(self) -> float:
        return float(np.hypot(self.vx, self.vy))


@dataclasses.dataclass(frozen=True)
class TrafficLightAhead:
    """A light's state and its stop line, converted into the ego's base_link."""

    state: LightState
    stop_line: Tuple[Tuple[float, float], Tuple[float, float]]  # two (x, y) ends [m]


@dataclasses.dataclass
class TeacherInput:
    """One keyframe as the teacher sees it."""

    image: np.ndarray                 # (H, W, 3) uint8 RGB front camera
    camera: Camera                    # calibration at the image's resolution
    trajectory: Trajectory            # ground-truth future, base_link, 6 x 0.5 s
    speed: float = float('nan')       # current forward speed [m/s]; NaN = unknown
    stamp_ns: int = 0                 # the keyframe's stamp (records are keyed by it)
    # Privileged ground truth (None = the bag has none; the rule teacher then uses motion only).
    objects: Optional[Tuple[SceneObject, ...]] = None
    lights: Optional[Tuple[TrafficLightAhead, ...]] = None

    def __post_init__(self):
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f'TeacherInput.image must be (H, W, 3) uint8, got '
                             f'{self.image.shape} {self.image.dtype}')
        if (self.camera.width, self.camera.height) != (self.image.shape[1], self.image.shape[0]):
            raise ValueError(
                f'TeacherInput.camera is {self.camera.width}x{self.camera.height} but the image '
                f'is {self.image.shape[1]}x{self.image.shape[0]} (use Camera.scaled)')


class Status(enum.IntEnum):
    """DrivingReasoning.status values."""

    OK = 0
    FAILED = 1


@dataclasses.dataclass
class Usage:
    """Tokens and money one answer cost (0 for offline teachers and cache hits)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    requests: int = 0

    def add(self, other: 'Usage') -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost_usd += other.cost_usd
        self.requests += other.requests


@dataclasses.dataclass
class TeacherResult:
    """A teacher's answer for one keyframe: the content of a DrivingReasoning record."""

    current_action: str = ''
    future_action: str = ''
    reasoning: str = ''
    control_action: int = labels.UNKNOWN
    turn_action: int = labels.UNKNOWN
    lane_action: int = labels.UNKNOWN
    teacher: str = ''
    prompt_version: str = ''
    status: Status = Status.OK
    failure_reason: str = ''
    usage: Usage = dataclasses.field(default_factory=Usage)
    cached: bool = False

    @classmethod
    def failed(cls, reason: str, teacher: str, prompt_version: str,
               usage: Optional[Usage] = None) -> 'TeacherResult':
        """Make a FAILED record: no texts, labels UNKNOWN, the reason kept for counting."""
        return cls(teacher=teacher, prompt_version=prompt_version, status=Status.FAILED,
                   failure_reason=reason, usage=usage or Usage())

    @property
    def ok(self) -> bool:
        return self.status == Status.OK

    def to_dict(self) -> dict:
        """JSON-safe dict (journal lines, cache entries)."""
        d = dataclasses.asdict(self)
        d['status'] = int(self.status)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> 'TeacherResult':
        d = dict(d)
        d['status'] = Status(int(d.get('status', 0)))
        d['usage'] = Usage(**d.get('usage', {}))
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})

    def to_record(self) -> Optional[ReasoningRecord]:
        """Training data; None for a FAILED answer."""
        if not self.ok:
            return None
        return ReasoningRecord(
            texts=(self.current_action, self.future_action, self.reasoning),
            labels=(self.control_action, self.turn_action, self.lane_action),
            teacher=self.teacher, prompt_version=self.prompt_version)

    def fill_msg(self, msg, stamp_ns: int, frame_id: str = 'base_link'):
        """Fill a DrivingReasoning (rclpy or rosbags instance) and return it."""
        msg.header.stamp.sec = int(stamp_ns // 1_000_000_000)
        msg.header.stamp.nanosec = int(stamp_ns % 1_000_000_000)
        msg.header.frame_id = frame_id
        msg.current_action = self.current_action
        msg.future_action = self.future_action
        msg.reasoning = self.reasoning
        msg.control_action = int(self.control_action)
        msg.turn_action = int(self.turn_action)
        msg.lane_action = int(self.lane_action)
        msg.teacher = self.teacher
        msg.prompt_version = self.prompt_version
        msg.status = int(self.status)
        msg.failure_reason = self.failure_reason
        return msg

    def to_rosbags_msg(self, stamp_ns: int, frame_id: str = 'base_link'):
        """Build a rosbags DrivingReasoning for BagWriter.write."""
        from vlmad_ros.bagschema import msg_class, ns_to_stamp
        header_cls = msg_class('std_msgs/msg/Header')
        cls = msg_class('vlmad_ros/msg/DrivingReasoning')
        return cls(header=header_cls(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id),
                   current_action=self.current_action, future_action=self.future_action,
                   reasoning=self.reasoning, control_action=int(self.control_action),
                   turn_action=int(self.turn_action), lane_action=int(self.lane_action),
                   teacher=self.teacher, prompt_version=self.prompt_version,
                   status=int(self.status), failure_reason=self.failure_reason)


class Teacher(Protocol):
    """What the annotator CLI and node call. Implementations must be thread-safe."""

    name: str             # teacher id written into records, e.g. 'gpt-4o' or 'rule-v1'
    prompt_version: str   # version of the prompt (or rules) the answers were given for
    image_width: int      # decode hint: the image width the teacher needs (0 = full size)

    def annotate(self, inp: TeacherInput) -> TeacherResult:
        """Answer one keyframe. Per-frame problems -> a FAILED result; fatal ones raise."""
        ...


class FatalTeacherError(RuntimeError):
    """The teacher cannot work at all (endpoint unreachable, key rejected): stop the run."""
