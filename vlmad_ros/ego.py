"""
Ego state from odometry, shared by planner_node and the dataset reader (no torch here).

The reader imports this for every training sample, the annotator through the reader: keeping
it free of torch keeps `vlmad annotate` start-up fast.
"""
import collections
from typing import Deque, Tuple

from vlmad_ros.types import EgoState


class EgoStateEstimator:
    """
    Odometry twist -> EgoState; acceleration by differencing speed over >= `min_dt` seconds.

    nav_msgs/Odometry carries no acceleration, and differencing consecutive 50-100 Hz messages
    amplifies noise, so the speed is compared with the newest sample at least min_dt old.
    """

    def __init__(self, min_dt: float = 0.1, max_dt: float = 1.0):
        self.min_dt, self.max_dt = min_dt, max_dt
        self._hist: Deque[Tuple[float, float]] = collections.deque()

    def reset(self) -> None:
        self._hist.clear()

    def update(self, t: float, speed: float, yaw_rate: float) -> EgoState:
        """Estimate from the stamp t [s]; time going backwards restarts the history."""
        if self._hist and t < self._hist[-1][0]:
            self._hist.clear()
        while self._hist and t - self._hist[0][0] > self.max_dt:
            self._hist.popleft()
        accel = 0.0
        ref = None
        for t_old, v_old in self._hist:
            if t - t_old >= self.min_dt:
                ref = (t_old, v_old)
            else:
                break
        if ref is not None:
            accel = (speed - ref[1]) / (t - ref[0])
        self._hist.append((t, speed))
        return EgoState(speed=float(speed), yaw_rate=float(yaw_rate), accel=float(accel))
