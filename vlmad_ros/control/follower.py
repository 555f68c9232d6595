"""
PathFollower: timed waypoints + ego state -> (speed, yaw rate), CARLA twist or vehicle control.

Steering is pure pursuit with a speed-dependent lookahead; speed tracks the speed that the
plan's waypoint timing implies (poses stamped t + k * 0.5 s) with a PID, under acceleration,
curvature and lateral-acceleration limits. Without a fresh plan the car is brought to a stop.

Two output conventions for geometry_msgs/Twist:
- 'velocity': linear.x = speed [m/s], angular.z = yaw rate [rad/s] (the /cmd_vel convention;
  the synthetic world's bicycle model reads it as speed and curvature = angular.z / linear.x);
- 'carla': what carla_twist_to_control expects: linear.x is a throttle demand in [0, 10]
  (10 = full throttle, read here as m/s^2), angular.z the front-wheel steering angle [rad,
  left positive]; an all-zero Twist is full brake, a negative linear.x engages reverse, so
  coasting sends a tiny positive linear.x.

The third output, 'vehicle', is CARLA's own vehicle control (carla_msgs/CarlaEgoVehicleControl,
carla.VehicleControl): throttle and brake in [0, 1] from the speed PID's acceleration demand
(throttle = demand / throttle_accel; brake = -demand / brake_accel beyond a dead band, so
braking is proportional), steer in [-1, 1] = -(steering angle) / max_steer_angle (CARLA steers
right for positive values). Full brake when the plan says stop at standstill or plans are lost.
The acceleration demand is the PID's correction plus a feed-forward: `accel_feedforward` times
the plan's own acceleration (the slope of its implied speed over the next `accel_horizon` s)
plus `coast_accel`, the deceleration a coasting car has (rolling resistance, drag), which the
throttle has to cover before the car speeds up at all. Without it the PID alone must find the
throttle and the car trails the plan's speed. Velocity and carla modes do not use these.
`Command.vehicle` carries it; linear_x / angular_z then hold the target speed and yaw rate.
"""
from __future__ import annotations

import dataclasses
import enum
import math
from typing import Optional, Sequence

import numpy as np

from vlmad_ros.control.pid import PID, PIDConfig
from vlmad_ros.control.pure_pursuit import (
    implied_speed, lookahead_point, path_length, pursuit_curvature, to_local, to_world)

OUTPUT_MODES = ('velocity', 'carla', 'vehicle')
CARLA_MAX_THROTTLE_DEMAND = 10.0  # carla_twist_to_control's MAX_LON_ACCELERATION
CARLA_COAST = 1e-3                # linear.x that means "no throttle, no brake, forward gear"


class Status(str, enum.Enum):
    """Why the command is what it is (the node's diagnostics report it)."""

    FOLLOWING = 'following'
    NO_PLAN = 'no plan received yet'
    PLAN_TIMEOUT = 'stopped: plans timed out'
    NO_ODOM = 'stopped: odometry timed out'
    STOPPED = 'plan says stop'


@dataclasses.dataclass
class FollowerConfig:
    """Controller parameters (SI units); errors name the field, which is the node parameter."""

    wheelbase: float = 2.7            # [m] front to rear axle
    lookahead_min: float = 3.0        # [m] pure pursuit lookahead at standstill
    lookahead_time: float = 0.6       # [s] lookahead grows by this times speed
    lookahead_max: float = 15.0       # [m]
    speed_preview: float = 0.3        # [s] read the plan's speed this far ahead (actuation lag)
    max_speed: float = 15.0           # [m/s]
    max_accel: float = 3.0            # [m/s^2]
    max_decel: float = 6.0            # [m/s^2] also the stop deceleration on plan loss
    max_curvature: float = 0.2        # [1/m] (5 m turning radius)
    max_lateral_accel: float = 3.0    # [m/s^2] caps speed in curves: v^2 * kappa
    stop_speed: float = 0.3           # [m/s] plan speeds below this mean stop
    plan_timeout: float = 0.4         # [s] no plan newer than this (by its stamp) -> stop
    odom_timeout: float = 0.5         # [s] no odometry for this long -> stop
    output_mode: str = 'velocity'     # 'velocity' or 'carla' (see module docstring)
    max_steer_angle: float = 1.22     # [rad] carla mode: front-wheel limit (vehicle_info)
    brake_decel: float = 1.0          # [m/s^2] carla mode: demanded decel beyond this brakes
    throttle_accel: float = 4.0       # [m/s^2] vehicle mode: acceleration at full throttle
    brake_accel: float = 8.0          # [m/s^2] vehicle mode: deceleration at full brake
    brake_deadband: float = 0.3       # [m/s^2] vehicle mode: smaller decel demands coast
    accel_feedforward: float = 0.0    # vehicle mode: gain on the plan's acceleration
    accel_horizon: float = 0.5        # [s] vehicle mode: plan acceleration over this window
    coast_accel: float = 0.0          # [m/s^2] vehicle mode: deceleration when coasting
    pid: PIDConfig = dataclasses.field(default_factory=PIDConfig)

    def __post_init__(self):
        positive = ('wheelbase', 'lookahead_min', 'lookahead_max', 'max_speed', 'max_accel',
                    'max_decel', 'max_curvature', 'max_lateral_accel', 'plan_timeout',
                    'odom_timeout', 'max_steer_angle', 'throttle_accel', 'brake_accel',
                    'accel_horizon')
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f'{name} must be finite and > 0, got {value}')
        for name in ('lookahead_time', 'speed_preview', 'stop_speed', 'brake_decel',
                     'brake_deadband', 'accel_feedforward', 'coast_accel'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f'{name} must be finite and >= 0, got {value}')
        if self.lookahead_max < self.lookahead_min:
            raise ValueError(f'lookahead_max ({self.lookahead_max}) must be >= '
                             f'lookahead_min ({self.lookahead_min})')
        if self.output_mode not in OUTPUT_MODES:
            raise ValueError(f'output_mode must be one of {OUTPUT_MODES}, '
                             f'got {self.output_mode!r}')
        if isinstance(self.pid, dict):
            self.pid = PIDConfig(**self.pid)


@dataclasses.dataclass(frozen=True)
class TimedPath:
    """
    Waypoints in the world (odometry) frame with times [s] on the controller's clock.

    The first point is where the ego was at the plan's stamp, so `times[0]` is that stamp.
    """

    times: np.ndarray   # (N,)
    xy: np.ndarray      # (N, 2)

    def __post_init__(self):
        times = np.asarray(self.times, dtype=np.float64)
        xy = np.asarray(self.xy, dtype=np.float64)
        if times.ndim != 1 or xy.shape != (len(times), 2) or len(times) < 2:
            raise ValueError(f'TimedPath needs (N,) times and (N, 2) xy with N >= 2, got '
                             f'{times.shape} and {xy.shape}')
        if not (np.all(np.isfinite(times)) and np.all(np.isfinite(xy))):
            raise ValueError('TimedPath has non-finite values')
        if np.any(np.diff(times) <= 0):
            raise ValueError('TimedPath times must increase')
        object.__setattr__(self, 'times', times)
        object.__setattr__(self, 'xy', xy)

    @classmethod
    def from_base_link(cls, stamp: float, offsets: Sequence[float], xy_base: np.ndarray,
                       pose_at_stamp: Sequence[float]) -> 'TimedPath':
        """Build from a base_link plan at `stamp` (waypoints `offsets` s later), ego pose."""
        world = to_world(xy_base, pose_at_stamp)
        times = np.concatenate([[stamp], stamp + np.asarray(offsets, dtype=np.float64)])
        return cls(times=times, xy=np.vstack([np.asarray(pose_at_stamp[:2])[None], world]))


@dataclasses.dataclass(frozen=True)
class VehicleControl:
    """CARLA vehicle control: pedals in [0, 1], steer in [-1, 1] (positive = right)."""

    throttle: float
    steer: float
    brake: float


FULL_BRAKE = VehicleControl(throttle=0.0, steer=0.0, brake=1.0)


@dataclasses.dataclass(frozen=True)
class Command:
    """One control output and what produced it."""

    linear_x: float           # Twist.linear.x (meaning per output_mode)
    angular_z: float          # Twist.angular.z (meaning per output_mode)
    speed: float              # commanded speed [m/s] (velocity mode) / target (carla mode)
    yaw_rate: float           # [rad/s] speed * curvature
    curvature: float          # [1/m]
    target_speed: float       # [m/s] from the plan (0 when stopping)
    status: Status
    brake: bool = False       # carla mode: all-zero Twist (full brake)
    vehicle: Optional[VehicleControl] = None   # vehicle mode


class PathFollower:
    """Plain-Python controller; the ROS node feeds it plans, odometry and the clock."""

    def __init__(self, config: Optional[FollowerConfig] = None):
        self.config = config or FollowerConfig()
        self.pid = PID(self.config.pid)
        self.reset()

    def reset(self) -> None:
        """Forget the plan and the controller state (time jumped: a new episode or bag loop)."""
        self.pid.reset()
        self.path: Optional[TimedPath] = None
        self._last_time: Optional[float] = None
        self._last_cmd_speed = 0.0
        self._saturated = False   # the last command hit a limit: freeze the PID integral
        self._plan_accel = 0.0    # the plan's acceleration at the target (vehicle mode)
        self.status = Status.NO_PLAN

    def set_path(self, path: TimedPath) -> None:
        self.path = path

    def plan_age(self, now: float) -> float:
        """Seconds since the stamp of the sensor data the current plan was made from."""
        return math.inf if self.path is None else now - float(self.path.times[0])

    def stop_command(self, status: Status, now: float, speed: float) -> Command:
        """Decelerate to standstill at max_decel (plan or odometry lost)."""
        self.status = status
        self._plan_accel = 0.0
        return self._output(now, speed, target=0.0, curvature=0.0, status=status)

    def update(self, now: float, pose: Sequence[float], speed: float) -> Command:
        """Command for the ego at `pose` (x, y, yaw in the path's frame) moving at `speed`."""
        c = self.config
        if self.path is None:
            return self.stop_command(Status.NO_PLAN, now, speed)
        local = to_local(self.path.xy, pose)
        # Steering: pure pursuit on the (possibly stale) path, so a stopping car keeps its lane.
        curvature = 0.0
        if path_length(self.path.xy) > 0.5:
            lookahead = min(max(c.lookahead_min + c.lookahead_time * max(speed, 0.0),
                                c.lookahead_min), c.lookahead_max)
            curvature = pursuit_curvature(lookahead_point(local, lookahead))
        curvature = min(max(curvature, -c.max_curvature), c.max_curvature)
        self._plan_accel = 0.0
        if self.plan_age(now) > c.plan_timeout:
            self.status = Status.PLAN_TIMEOUT
            return self._output(now, speed, 0.0, curvature, Status.PLAN_TIMEOUT)
        tau = now - self.path.times[0] + c.speed_preview
        planned = implied_speed(self.path.times, self.path.xy, tau)
        target = min(planned, c.max_speed)
        if abs(curvature) > 1e-6:
            target = min(target, math.sqrt(c.max_lateral_accel / abs(curvature)))
        status = Status.FOLLOWING
        if target < c.stop_speed:
            target, status = 0.0, Status.STOPPED
        self._plan_accel = 0.0
        if target == planned:    # a speed capped by a limit is held: no plan acceleration
            ahead = implied_speed(self.path.times, self.path.xy, tau + c.accel_horizon)
            self._plan_accel = (min(ahead, c.max_speed) - planned) / c.accel_horizon
        self.status = status
        return self._output(now, speed, target, curvature, status)

    def _output(self, now: float, speed: float, target: float, curvature: float,
                status: Status) -> Command:
        c = self.config
        if self._last_time is None:
            self._last_cmd_speed = max(speed, 0.0)   # the slew limit starts from the car
        dt = 0.0 if self._last_time is None else max(now - self._last_time, 0.0)
        self._last_time = now
        correction = self.pid.update(target - speed, dt, integrate=not self._saturated)
        if target == 0.0 and speed < c.stop_speed:
            self.pid.reset()   # standing still: no integral pushing against the brake
            correction = 0.0
        if c.output_mode == 'carla':
            return self._carla_output(target, correction, curvature, status)
        if c.output_mode == 'vehicle':
            return self._vehicle_output(target, correction, curvature, status, speed)
        wanted = min(max(target + correction, 0.0), c.max_speed)
        if target == 0.0:
            wanted = 0.0
        # Slew-rate limit on the command (dt == 0, a repeated stamp: hold).
        lo = self._last_cmd_speed - c.max_decel * dt
        hi = self._last_cmd_speed + c.max_accel * dt
        limited = min(max(wanted, lo), hi)
        self._saturated = limited != wanted
        wanted = max(limited, 0.0)
        self._last_cmd_speed = wanted
        return Command(linear_x=wanted, angular_z=wanted * curvature, speed=wanted,
                       yaw_rate=wanted * curvature, curvature=curvature, target_speed=target,
                       status=status)

    def _carla_output(self, target: float, accel: float, curvature: float,
                      status: Status) -> Command:
        c = self.config
        limited = min(max(accel, -c.max_decel), c.max_accel)
        self._saturated = limited != accel
        accel = limited
        steer = math.atan(c.wheelbase * curvature)
        steer = min(max(steer, -c.max_steer_angle), c.max_steer_angle)
        if target == 0.0 or accel < -c.brake_decel:
            return Command(0.0, 0.0, target, 0.0, curvature, target, status, brake=True)
        linear_x = min(accel, CARLA_MAX_THROTTLE_DEMAND) if accel > 0 else CARLA_COAST
        return Command(linear_x, steer, target, target * curvature, curvature, target, status)

    def _vehicle_output(self, target: float, accel: float, curvature: float, status: Status,
                        speed: float) -> Command:
        c = self.config
        if target > 0.0:
            accel += c.accel_feedforward * self._plan_accel
        limited = min(max(accel, -c.max_decel), c.max_accel)
        self._saturated = limited != accel
        if target > 0.0:
            limited += c.coast_accel   # what the pedals must add to the coasting deceleration
        angle = min(max(math.atan(c.wheelbase * curvature), -c.max_steer_angle),
                    c.max_steer_angle)
        steer = -angle / c.max_steer_angle
        if status in (Status.PLAN_TIMEOUT, Status.NO_ODOM, Status.NO_PLAN) or (
                target == 0.0 and speed < c.stop_speed):
            control = VehicleControl(0.0, steer, 1.0)     # lost, or holding at standstill
        elif limited >= -c.brake_deadband:
            control = VehicleControl(min(max(limited, 0.0) / c.throttle_accel, 1.0), steer, 0.0)
        else:
            control = VehicleControl(0.0, steer, min(-limited / c.brake_accel, 1.0))
        return Command(target, target * curvature, target, target * curvature, curvature,
                       target, status, brake=control.brake > 0, vehicle=control)
