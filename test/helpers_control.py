"""
Test plant for the path follower: a kinematic bicycle driven by a Twist (speed, yaw rate).

Deliberately harsher than the synthetic world's ego (vlmad_ros.synth.world): the speed lags
the command and the steering is rate-limited, so the follower is tested against actuation lag.

The speed follows the command through a first-order lag under acceleration limits; the
front wheels follow curvature = yaw_rate / speed under a steering-angle and steering-rate
limit. Rear-axle reference point (base_link at the rear axle, as in the nuScenes rig).
"""
from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass
class VehicleConfig:
    """Ego car limits (SI units)."""

    wheelbase: float = 2.7           # [m]
    max_steer: float = 0.6           # [rad] front wheel
    max_steer_rate: float = 1.2      # [rad/s]
    max_accel: float = 3.5           # [m/s^2]
    max_decel: float = 8.0           # [m/s^2]
    speed_time_constant: float = 0.3  # [s] first-order lag of speed towards the command
    max_speed: float = 20.0          # [m/s]

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f'vehicle.{f.name} must be finite and > 0, got {value}')


@dataclasses.dataclass
class VehicleState:
    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    speed: float = 0.0
    steer: float = 0.0
    accel: float = 0.0
    yaw_rate: float = 0.0


class KinematicBicycle:
    """State + `step(dt, speed_cmd, yaw_rate_cmd)`; deterministic, no noise."""

    def __init__(self, state: VehicleState, config: VehicleConfig = None):
        self.state = state
        self.config = config or VehicleConfig()

    def steer_for(self, speed_cmd: float, yaw_rate_cmd: float) -> float:
        """Front-wheel angle that gives the commanded curvature; unchanged when not moving."""
        c = self.config
        if abs(speed_cmd) < 0.1:
            return self.state.steer
        curvature = yaw_rate_cmd / speed_cmd
        return min(max(math.atan(c.wheelbase * curvature), -c.max_steer), c.max_steer)

    def step(self, dt: float, speed_cmd: float, yaw_rate_cmd: float) -> VehicleState:
        c, s = self.config, self.state
        if not (math.isfinite(speed_cmd) and math.isfinite(yaw_rate_cmd)):
            speed_cmd, yaw_rate_cmd = 0.0, 0.0
        speed_cmd = min(max(speed_cmd, 0.0), c.max_speed)   # no reverse
        accel = (speed_cmd - s.speed) / max(c.speed_time_constant, dt)
        accel = min(max(accel, -c.max_decel), c.max_accel)
        steer_goal = self.steer_for(speed_cmd, yaw_rate_cmd)
        d_steer = min(max(steer_goal - s.steer, -c.max_steer_rate * dt), c.max_steer_rate * dt)
        steer = s.steer + d_steer
        speed = max(s.speed + accel * dt, 0.0)
        if speed_cmd == 0.0 and speed < 0.1:   # the brakes hold a (nearly) stopped car
            speed = 0.0
        mean_speed = 0.5 * (s.speed + speed)
        yaw_rate = mean_speed * math.tan(steer) / c.wheelbase
        yaw_mid = s.yaw + 0.5 * yaw_rate * dt
        x = s.x + mean_speed * math.cos(yaw_mid) * dt
        y = s.y + mean_speed * math.sin(yaw_mid) * dt
        yaw = math.atan2(math.sin(s.yaw + yaw_rate * dt), math.cos(s.yaw + yaw_rate * dt))
        self.state = VehicleState(x=x, y=y, yaw=yaw, speed=speed, steer=steer,
                                  accel=(speed - s.speed) / dt if dt > 0 else 0.0,
                                  yaw_rate=yaw_rate)
        return self.state
