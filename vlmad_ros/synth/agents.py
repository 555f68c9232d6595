"""
Agents of the synthetic world: vehicles that follow lane paths and pedestrians.

A vehicle's state is its arc length `s` along a path built from its route (legs between
intersections and connectors through them), a lateral offset `d` (left positive, non-zero
only during a lane change), speed and acceleration. The ego is a vehicle too; when an external
controller drives it (closed loop) its pose is free and `s`/`d` come from projecting the pose
onto the route path.
"""
from __future__ import annotations

import dataclasses
import math
from typing import List, Optional, Set, Tuple

import numpy as np

from vlmad_ros.synth.geometry import Path, wrap_angle
from vlmad_ros.synth.town import extend_route, Node, route_path, Town

# GroundTruthObject classes.
CLASS_CAR, CLASS_TRUCK, CLASS_BUS, CLASS_PEDESTRIAN = 0, 1, 2, 3

# nuScenes ego footprint; base_link is on the rear axle, the box centre ahead of it.
EGO_LENGTH, EGO_WIDTH, EGO_HEIGHT = 4.084, 1.85, 1.56
EGO_CENTER_OFFSET = 1.3

LANE_CHANGE_TIME = 3.5   # [s]


@dataclasses.dataclass(frozen=True)
class DriverParams:
    """IDM and comfort parameters of one driver (units SI)."""

    v0: float = 11.0          # desired speed [m/s]
    a_max: float = 1.8        # comfortable acceleration
    b_comf: float = 2.5       # comfortable deceleration
    b_stop: float = 3.5       # deceleration accepted to stop for a yellow light
    b_max: float = 8.0        # emergency deceleration
    headway: float = 1.3      # time gap T [s]
    s0: float = 2.5           # standstill gap [m]
    a_lat: float = 2.0        # lateral acceleration in turns
    lookahead: float = 70.0   # [m]

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 0:
                value = getattr(self, f.name)
                raise ValueError(f'DriverParams.{f.name} must be >= 0, got {value}')


@dataclasses.dataclass
class BrakeEvent:
    """Scripted hard stop (a lead vehicle braking): brake at t0 with `decel`, hold, go on."""

    t0: float
    decel: float
    hold: float
    stopped_at: Optional[float] = None

    def accel(self, t: float, v: float) -> Optional[float]:
        if t < self.t0:
            return None
        if self.stopped_at is None:
            if v <= 0.05:
                self.stopped_at = t
            return -self.decel
        if t < self.stopped_at + self.hold:
            return -self.decel
        return None


@dataclasses.dataclass
class Vehicle:
    id: str  # noqa: A003 (the message field name)
    cls: int
    length: float
    width: float
    height: float
    colour: int
    nodes: List[Node]
    lanes: List[int]
    params: DriverParams
    s: float = 0.0
    v: float = 0.0
    a: float = 0.0
    d: float = 0.0
    ref_offset: float = 0.0        # box centre ahead of the tracked point [m]
    stalled: bool = False          # broken down / double parked: never moves
    brake: Optional[BrakeEvent] = None
    leg: int = 0
    lc_t: float = -1.0             # time into a lateral move: lane change or recovery (< 0: none)
    lc_d0: float = 0.0             # lateral offset at its start [m]
    lc_v0: float = 0.0             # lateral speed at its start [m/s] (recoveries only)
    lc_time: float = LANE_CHANGE_TIME   # its duration [s]
    committed: Set[Tuple[Node, int]] = dataclasses.field(default_factory=set)
    # Pose of the tracked point (map), filled by update_pose().
    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    yaw_rate: float = 0.0
    v_lat: float = 0.0
    path: Optional[Path] = None
    pieces: List[dict] = dataclasses.field(default_factory=list)

    @property
    def front(self) -> float:
        """Distance from the tracked point to the front bumper [m]."""
        return self.ref_offset + self.length / 2

    def build_path(self, town: Town, rng: np.random.Generator) -> None:
        if len(self.nodes) - 1 - self.leg < 3:
            extend_route(town, self.nodes, self.lanes, rng, 3, locked=self.leg + 1)
        self.path, self.pieces = route_path(town, self.nodes, self.lanes, self.leg)

    def maybe_rebase(self, town: Town, rng: np.random.Generator) -> None:
        """Drop the finished leg and connector from the path (keeps paths short)."""
        if len(self.pieces) > 2 and self.s >= self.pieces[1]['s1']:
            shift = self.pieces[1]['s1']
            self.leg += 1
            self.build_path(town, rng)
            self.s -= shift

    def on_leg(self) -> bool:
        return self.s + self.front < self.pieces[0]['s1'] and self.pieces[0]['kind'] == 'leg'

    def change_lane(self, town: Town, rng: np.random.Generator, new_lane: int) -> None:
        old = self.lanes[self.leg]
        self.lanes[self.leg] = new_lane
        self.build_path(town, rng)
        self.d += town.cfg.lane_width * (new_lane - old)
        self.start_lateral_move(self.d, 0.0, LANE_CHANGE_TIME)

    def start_lateral_move(self, d0: float, v0: float, duration: float) -> None:
        """Steer from offset d0 [m] and lateral speed v0 [m/s] back onto the lane centre."""
        self.d, self.v_lat = d0, v0
        self.lc_d0, self.lc_v0, self.lc_time, self.lc_t = d0, v0, duration, 0.0

    def advance(self, dt: float) -> None:
        """Integrate speed, arc length and the lane-change offset."""
        v_new = max(0.0, self.v + self.a * dt)
        self.s += 0.5 * (self.v + v_new) * dt
        self.v = v_new
        if self.lc_t >= 0:
            # Cubic Hermite from (d0, v0) to (0, 0) over lc_time: a lane change has v0 = 0.
            # The d0 terms keep the lane change's original arithmetic, so that v0 = 0 gives
            # bit-identical offsets and speeds (recorded bags stay byte-for-byte the same).
            self.lc_t += dt
            big_t = self.lc_time
            u = min(1.0, self.lc_t / big_t)
            self.d = (self.lc_d0 * (1.0 - (3 * u * u - 2 * u ** 3))
                      + big_t * self.lc_v0 * (u - 2 * u * u + u ** 3))
            self.v_lat = (-self.lc_d0 * 6 * u * (1 - u) / big_t
                          + self.lc_v0 * (1 - 4 * u + 3 * u * u))
            if u >= 1.0:
                self.lc_t, self.d, self.v_lat = -1.0, 0.0, 0.0

    def update_pose(self, dt: float) -> None:
        px, py, h = self.path.pose_at(self.s)
        x, y = px - math.sin(h) * self.d, py + math.cos(h) * self.d
        yaw = float(wrap_angle(h + math.atan2(self.v_lat, max(self.v, 1.0))))
        if dt > 0:
            self.yaw_rate = float(wrap_angle(yaw - self.yaw)) / dt
        self.x, self.y, self.yaw = x, y, yaw

    def box(self) -> Tuple[float, float, float, float, float]:
        """(cx, cy, yaw, length, width) of the footprint."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return (self.x + c * self.ref_offset, self.y + s * self.ref_offset, self.yaw,
                self.length, self.width)


@dataclasses.dataclass
class Pedestrian:
    """A walker on the sidewalk network, crossing at crosswalks in the pedestrian phase."""

    id: str  # noqa: A003 (the message field name)
    x: float
    y: float
    speed: float
    colour: int
    corner: Tuple[Node, int, int]          # the corner it walks to: (node, sx, sy)
    waypoints: List[Tuple[float, float]] = dataclasses.field(default_factory=list)
    yaw: float = 0.0
    v: float = 0.0
    height: float = 1.75
    width: float = 0.6
    wait_node: Optional[Node] = None       # waiting for this signal's pedestrian phase
    pending: List[Tuple[float, float]] = dataclasses.field(default_factory=list)
    trigger: Optional[dict] = None         # step-out: {'s': ego arc length threshold, ...}
    standing: bool = False
    yields: bool = True                    # stops for a vehicle in its way (a step-out does not)

    def box(self) -> Tuple[float, float, float, float, float]:
        return (self.x, self.y, self.yaw, self.width, self.width)
