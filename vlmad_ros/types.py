# noqa: A005 (module name types: the package's data types, always imported qualified)
"""
What the planner may see, and what only training may see (navsim's split).

Observation -> planner -> Trajectory at run time; Sample = Observation + Targets offline.
Batches for the torch model use the string keys below (tensors, batch first).
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Dict, List, Optional, Tuple

import numpy as np

from vlmad_ros import labels as _labels
from vlmad_ros.rig import CameraRig
from vlmad_ros.topics import PLAN_DT, PLAN_STEPS


class Command(enum.IntEnum):
    """Route command; values equal DrivingCommand's constants."""

    LEFT = 0
    RIGHT = 1
    STRAIGHT = 2


# A route command is LEFT/RIGHT when the ground-truth endpoint lies beyond this lateral offset.
COMMAND_LATERAL_THRESHOLD_M = 2.0


def command_from_endpoint(xy_end) -> Command:
    """Apply the nuScenes planners' rule: 3 s endpoint beyond +-2 m lateral (y left)."""
    y = float(xy_end[1])
    if y > COMMAND_LATERAL_THRESHOLD_M:
        return Command.LEFT
    if y < -COMMAND_LATERAL_THRESHOLD_M:
        return Command.RIGHT
    return Command.STRAIGHT


@dataclasses.dataclass(frozen=True)
class EgoState:
    """Ego motion in base_link, SI units."""

    speed: float        # forward speed [m/s]
    yaw_rate: float     # [rad/s], positive = turning left
    accel: float        # forward acceleration [m/s^2]

    def as_array(self) -> np.ndarray:
        return np.array([self.speed, self.yaw_rate, self.accel], dtype=np.float32)

    def is_finite(self) -> bool:
        return bool(np.all(np.isfinite(self.as_array())))


@dataclasses.dataclass
class Trajectory:
    """Future ego waypoints in base_link: (6, 2) x/y [m] and (6,) heading [rad], 0.5 s apart."""

    xy: np.ndarray
    heading: np.ndarray
    dt: float = PLAN_DT

    def __post_init__(self):
        self.xy = np.asarray(self.xy, dtype=np.float32)
        self.heading = np.asarray(self.heading, dtype=np.float32)
        if self.xy.shape != (PLAN_STEPS, 2):
            raise ValueError(f'Trajectory.xy must be ({PLAN_STEPS}, 2), got {self.xy.shape}')
        if self.heading.shape != (PLAN_STEPS,):
            raise ValueError(
                f'Trajectory.heading must be ({PLAN_STEPS},), got {self.heading.shape}')

    @property
    def times(self) -> np.ndarray:
        """Seconds after the observation: 0.5, 1.0, ..., 3.0."""
        return self.dt * np.arange(1, PLAN_STEPS + 1)

    @classmethod
    def from_xy(cls, xy) -> 'Trajectory':
        """Headings from the path direction (first step from the origin)."""
        xy = np.asarray(xy, dtype=np.float32)
        prev = np.vstack([np.zeros((1, 2), np.float32), xy[:-1]])
        d = xy - prev
        heading = np.arctan2(d[:, 1], d[:, 0])
        # Standing still: keep the previous heading (0 at the start).
        still = np.linalg.norm(d, axis=1) < 1e-3
        for k in range(len(heading)):
            if still[k]:
                heading[k] = heading[k - 1] if k > 0 else 0.0
        return cls(xy=xy, heading=heading)


@dataclasses.dataclass
class Explanation:
    """
    The action head's reading of one plan: a label index per category, and its probabilities.

    Categories and indices are those of vlmad_ros.labels (= DrivingReasoning's constants).
    """

    probs: Dict[str, np.ndarray]      # category -> (classes,) softmax of the head's logits

    @property
    def labels(self) -> Dict[str, int]:
        """Category -> argmax label index."""
        return {cat: int(np.argmax(p)) for cat, p in self.probs.items()}

    def confidence(self, category: str) -> float:
        return float(np.max(self.probs[category]))

    def text(self, category: str) -> str:
        return _labels.label_text(category, self.labels[category])

    def describe(self) -> str:
        """One line for people: 'move slowly (0.81); turn left (0.64); no lane change (0.97)'."""
        none = {'turn_action': 'no turn', 'lane_action': 'no lane change'}
        parts = []
        for cat in _labels.LABEL_SETS:
            text = self.text(cat)
            parts.append(f'{none.get(cat, text) if text == "none" else text} '
                         f'({self.confidence(cat):.2f})')
        return '; '.join(parts)


@dataclasses.dataclass
class Observation:
    """Everything the planner sees at one instant."""

    images: List[np.ndarray]          # per camera, rig order: (H, W, 3) uint8 RGB
    rig: CameraRig                    # calibration of those images (intrinsics at their size)
    ego: EgoState
    command: Command = Command.STRAIGHT
    stamp_ns: int = 0

    def __post_init__(self):
        if len(self.images) != len(self.rig):
            raise ValueError(f'{len(self.images)} images for a rig of {len(self.rig)} cameras')


@dataclasses.dataclass
class ReasoningRecord:
    """A teacher's answer (DrivingReasoning) as plain data for training."""

    texts: Tuple[str, str, str]       # labels.TEXT_FIELDS order
    labels: Tuple[int, int, int]      # control, turn, lane; labels.UNKNOWN when absent
    teacher: str = ''
    prompt_version: str = ''


@dataclasses.dataclass
class Targets:
    """What only training and evaluation may see."""

    trajectory: Trajectory
    # Agents' boxes at the 6 future steps, in the current base_link: (6, N, 5) as
    # x, y, length, width, yaw; rows of NaN where an agent is absent at that step.
    future_boxes: np.ndarray
    reasoning: Optional[ReasoningRecord] = None
    scenario: str = ''


@dataclasses.dataclass
class Sample:
    observation: Observation
    targets: Targets
    token: str = ''


# Batch keys (torch tensors, batch first) shared by the dataset, the model and training.
IMAGES = 'images'               # (B, C, 3, H, W) uint8
INTRINSICS = 'intrinsics'       # (B, C, 3, 3) float32, at the images' resolution
CAM_TO_BASE = 'cam_to_base'     # (B, C, 4, 4) float32, optical frame -> base_link
EGO = 'ego'                     # (B, 3) float32: speed, yaw_rate, accel
COMMAND = 'command'             # (B,) int64
# Optional: the ray encoding of INTRINSICS/CAM_TO_BASE, (B or 1, C, h, w, D), computed once by
# the Planner while the calibration stays the same (PlannerModel.encode_rays).
RAY_ENCODING = 'ray_encoding'
TRAJ = 'traj'                   # (B, 6, 2) float32 target waypoints
HEADING = 'heading'             # (B, 6) float32 target headings
FUTURE_BOXES = 'future_boxes'   # (B, 6, N, 5) float32, NaN-padded
TEXT_EMB = 'text_emb'           # (B, 3, D) float32 teacher text embeddings
TEXT_VALID = 'text_valid'       # (B,) bool: a valid teacher record exists
ACTION_LABELS = 'action_labels'  # (B, 3) int64, labels.UNKNOWN where absent
LIGHT_STATE = 'light_state'     # (B,) int64 light governing the path (teacher.base.LightState)
# Model outputs beside TRAJ and HEADING.
EGO_FEATURE = 'ego_feature'     # (B, D) float32, where the VLM-AD heads attach
# Planner.run_batch with the action head: category -> (B, classes) float32 probabilities.
ACTION_PROBS: Dict[str, str] = {cat: f'{cat}_probs' for cat in _labels.LABEL_SETS}
