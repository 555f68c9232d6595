"""A PID controller with output limits and integral anti-windup."""
from __future__ import annotations

import dataclasses
import math
from typing import Optional


@dataclasses.dataclass
class PIDConfig:
    """Gains and limits of one PID loop (units of the controlled quantity)."""

    kp: float = 0.5
    ki: float = 0.1
    kd: float = 0.0
    integral_limit: float = 2.0    # |ki * integral| never exceeds this (anti-windup)
    output_limit: float = math.inf  # |output| never exceeds this

    def __post_init__(self):
        for name in ('kp', 'ki', 'kd'):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f'pid.{name} must be finite and >= 0, got {value}')
        for name in ('integral_limit', 'output_limit'):
            value = getattr(self, name)
            if math.isnan(value) or value < 0:
                raise ValueError(f'pid.{name} must be >= 0, got {value}')


class PID:
    """u = kp*e + ki*sum(e dt) + kd*de/dt, derivative on the error, clamped integral."""

    def __init__(self, config: Optional[PIDConfig] = None):
        self.config = config or PIDConfig()
        self.reset()

    def reset(self) -> None:
        self.integral = 0.0
        self._prev_error: Optional[float] = None

    def update(self, error: float, dt: float, integrate: bool = True) -> float:
        """
        One step; `dt` <= 0 (a repeated stamp) skips the integral and derivative terms.

        `integrate=False` freezes the integral (conditional integration: the caller's output
        is saturated, so accumulating more error would only wind up).
        """
        c = self.config
        derivative = 0.0
        if dt > 0:
            if integrate:
                self.integral += error * dt
            if c.ki > 0:
                bound = c.integral_limit / c.ki
                self.integral = min(max(self.integral, -bound), bound)
            if self._prev_error is not None:
                derivative = (error - self._prev_error) / dt
        self._prev_error = error
        out = c.kp * error + c.ki * self.integral + c.kd * derivative
        return min(max(out, -c.output_limit), c.output_limit)
