"""
A plan and the odometry it was made at, as the controllers need them (ROS messages in).

The path follower and the CARLA control node share these: a nav_msgs/Path in base_link is
anchored at the odometry pose at the plan's stamp (the car has moved since its cameras saw
the scene), a Path in the odometry frame is used as it is. Duck-typed on the message fields,
so no ROS import here.
"""
from __future__ import annotations

import collections
import math
from typing import Deque, Optional, Tuple

import numpy as np

from vlmad_ros import stamps
from vlmad_ros.control.follower import TimedPath
from vlmad_ros.data.geometry import yaw_from_quat_wxyz
from vlmad_ros.topics import PLAN_DT

ODOM_HISTORY_S = 5.0


def yaw_of(q) -> float:
    """Heading of a geometry_msgs/Quaternion."""
    return yaw_from_quat_wxyz((q.w, q.x, q.y, q.z))


class OdomHistory:
    """Recent (stamp, x, y, yaw): the pose a base_link plan was made at, interpolated."""

    def __init__(self, horizon_s: float = ODOM_HISTORY_S):
        self.horizon_s = horizon_s
        self.items: Deque[Tuple[float, float, float, float]] = collections.deque()

    def add(self, t: float, x: float, y: float, yaw: float) -> None:
        if self.items and t < self.items[-1][0]:
            self.items.clear()   # time jumped back (a bag loops, a sim restarts)
        self.items.append((t, x, y, yaw))
        while self.items and self.items[0][0] < t - self.horizon_s:
            self.items.popleft()

    @property
    def latest(self) -> Optional[float]:
        return self.items[-1][0] if self.items else None

    def pose_at(self, t: float, tolerance: float = 0.2) -> Optional[Tuple[float, float, float]]:
        """Pose at `t`; None when `t` is outside the history by more than `tolerance` s."""
        if not self.items:
            return None
        first, last = self.items[0], self.items[-1]
        if t < first[0] - tolerance or t > last[0] + tolerance:
            return None
        if t <= first[0]:
            return first[1:]
        if t >= last[0]:
            return last[1:]
        for a, b in zip(self.items, list(self.items)[1:]):
            if a[0] <= t <= b[0]:
                w = 0.0 if b[0] == a[0] else (t - a[0]) / (b[0] - a[0])
                dyaw = math.atan2(math.sin(b[3] - a[3]), math.cos(b[3] - a[3]))
                return (a[1] + w * (b[1] - a[1]), a[2] + w * (b[2] - a[2]), a[3] + w * dyaw)
        return last[1:]


def path_to_timed(msg, base_frames, odom_frame: Optional[str],
                  history: OdomHistory) -> TimedPath:
    """
    Convert nav_msgs/Path -> TimedPath in the odometry frame; ValueError(reason) when unusable.

    Plans in one of `base_frames` (base_link, the odometry's child frame) are anchored at the
    odometry pose at their stamp; plans in the odometry frame are used as they are.
    """
    if len(msg.poses) < 1:
        raise ValueError('empty_path')
    stamp = stamps.to_s(msg.header.stamp)
    xy = np.array([[p.pose.position.x, p.pose.position.y] for p in msg.poses], np.float64)
    offsets = np.array([stamps.to_s(p.header.stamp) - stamp for p in msg.poses])
    if not (np.all(np.diff(offsets) > 0) and offsets[0] > 0):
        offsets = PLAN_DT * np.arange(1, len(msg.poses) + 1)   # poses without their own stamps
    if not np.all(np.isfinite(xy)):
        raise ValueError('non_finite_path')
    frame = msg.header.frame_id.lstrip('/')
    if frame in tuple(base_frames) + ('',):
        pose = history.pose_at(stamp)
        if pose is None:
            raise ValueError('no_odometry_at_plan_stamp')
        return TimedPath.from_base_link(stamp, offsets, xy, pose)
    if odom_frame is not None and frame == odom_frame:
        pose = history.pose_at(stamp)
        start = np.asarray(pose[:2]) if pose is not None else xy[0]
        return TimedPath(times=np.concatenate([[stamp], stamp + offsets]),
                         xy=np.vstack([start[None], xy]))
    raise ValueError('unknown_frame')
