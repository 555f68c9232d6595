"""
The synthetic world: a town, its vehicles and pedestrians, the ego, and the checks.

`World.step(dt, ego_control=None)` advances everything by dt; with `ego_control=None` the
expert drives the ego, otherwise the ego follows the given speed / yaw-rate command with a
kinematic bicycle (the closed-loop simulator's path). Infractions (collisions, red lights,
leaving the road) are World methods so open-loop recording and closed-loop evaluation count
them the same way.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Tuple

import numpy as np

from vlmad_ros.synth import expert
from vlmad_ros.synth.agents import (
    CLASS_PEDESTRIAN, Pedestrian, Vehicle)
from vlmad_ros.synth.geometry import box_corners, boxes_overlap, DIRS, segments_cross, wrap_angle
from vlmad_ros.synth.town import Town
from vlmad_ros.types import Command

EGO_ID = 'ego'
DECISION_DT = 0.1     # drivers re-plan at 10 Hz; motion integrates at the step dt [s]


@dataclasses.dataclass(frozen=True)
class EgoControl:
    """An external command for the ego (geometry_msgs/Twist in base_link)."""

    linear_x: float       # target forward speed [m/s]
    angular_z: float      # yaw rate [rad/s], left positive

    def __post_init__(self):
        if not (math.isfinite(self.linear_x) and math.isfinite(self.angular_z)):
            raise ValueError(f'EgoControl needs finite values, got {self}')


@dataclasses.dataclass(frozen=True)
class BicycleLimits:
    """Kinematic bicycle limits for an externally driven ego."""

    wheelbase: float = 2.7       # [m]
    max_steer: float = 0.6       # [rad]
    max_accel: float = 3.0       # [m/s^2]
    max_decel: float = 8.0       # [m/s^2]
    max_speed: float = 20.0      # [m/s]


@dataclasses.dataclass
class Infractions:
    collisions: List[Tuple[float, str]] = dataclasses.field(default_factory=list)
    red_lights: List[Tuple[float, str]] = dataclasses.field(default_factory=list)
    off_road_time: float = 0.0


@dataclasses.dataclass(frozen=True)
class ObjectState:
    """One agent's ground-truth box in the map frame."""

    id: str  # noqa: A003 (the message field name)
    cls: int
    x: float
    y: float
    z: float
    yaw: float
    length: float
    width: float
    height: float
    vx: float           # map frame velocity [m/s]
    vy: float
    colour: int


@dataclasses.dataclass
class Snapshot:
    """What cameras and ground truth need of one instant (map frame)."""

    t: float
    ego: Tuple[float, float, float]                     # base_link x, y, yaw
    objects: List[ObjectState]
    lights: Dict[Tuple[Tuple[int, int], int], int]      # (node, heading) -> state


def interpolate(a: Snapshot, b: Snapshot, t: float) -> Snapshot:
    """Interpolate the snapshot at time t between a and b (poses linear, yaw on the circle)."""
    span = b.t - a.t
    w = 0.0 if span <= 0 else min(1.0, max(0.0, (t - a.t) / span))

    def lerp_yaw(y0, y1):
        return float(wrap_angle(y0 + w * float(wrap_angle(y1 - y0))))

    ego = (a.ego[0] + w * (b.ego[0] - a.ego[0]), a.ego[1] + w * (b.ego[1] - a.ego[1]),
           lerp_yaw(a.ego[2], b.ego[2]))
    later = {o.id: o for o in b.objects}
    objs = []
    for o in a.objects:
        o2 = later.get(o.id)
        if o2 is None:
            objs.append(o)
            continue
        objs.append(dataclasses.replace(
            o, x=o.x + w * (o2.x - o.x), y=o.y + w * (o2.y - o.y), yaw=lerp_yaw(o.yaw, o2.yaw),
            vx=o.vx + w * (o2.vx - o.vx), vy=o.vy + w * (o2.vy - o.vy)))
    return Snapshot(t, ego, objs, a.lights if w < 0.5 else b.lights)


class World:
    """Town + agents + ego. Deterministic given its rng."""

    def __init__(self, town: Town, ego: Vehicle, vehicles: List[Vehicle],
                 pedestrians: List[Pedestrian], rng: np.random.Generator, scenario: str = '',
                 bicycle: BicycleLimits = BicycleLimits()):
        self.town = town
        self.ego = ego
        self.vehicles = vehicles
        self.pedestrians = pedestrians
        self.rng = rng
        self.scenario = scenario
        self.bicycle = bicycle
        self.style_seed = 0          # the renderer's look (set by the scene builder)
        self.t = 0.0
        self.infractions = Infractions()
        self._touching: set = set()
        self.route_length = 0.0      # arc length driven along the route (legs completed + s)
        self._done_before_leg = 0.0
        self._next_decision = 0.0
        for v in [ego] + vehicles:
            v.build_path(town, rng)
            v.update_pose(0.0)
        self._start_s = ego.s
        for ped in pedestrians:
            ped.yaw = ped.yaw or 0.0

    # ----- state -----
    @property
    def all_vehicles(self) -> List[Vehicle]:
        return [self.ego] + self.vehicles

    def obstacles(self) -> expert.Obstacles:
        """Boxes of ego, vehicles and pedestrians (ego first)."""
        vb = [v.box() for v in self.all_vehicles]
        pb = [p.box() for p in self.pedestrians]
        boxes = np.array(vb + pb, dtype=np.float64).reshape(-1, 5)
        speed = np.array([v.v for v in self.all_vehicles] + [p.v for p in self.pedestrians])
        return expert.Obstacles(
            ids=[v.id for v in self.all_vehicles] + [p.id for p in self.pedestrians],
            xy=boxes[:, :2].copy(), yaw=boxes[:, 2].copy(), length=boxes[:, 3].copy(),
            width=boxes[:, 4].copy(), speed=speed,
            is_ped=np.array([False] * len(vb) + [True] * len(pb)))

    def stalled(self) -> np.ndarray:
        """Which obstacles (in `obstacles()` order) are stalled vehicles."""
        return np.array([v.stalled for v in self.all_vehicles] + [False] * len(self.pedestrians))

    def ego_front(self) -> np.ndarray:
        e = self.ego
        return np.array([e.x, e.y]) + (e.ref_offset + e.length / 2) * np.array(
            [math.cos(e.yaw), math.sin(e.yaw)])

    def route_command(self) -> Command:
        """Return the ego's route command: its next turn (not its future trajectory)."""
        return expert.route_command(self.ego)

    # ----- stepping -----
    def step(self, dt: float, ego_control: Optional[EgoControl] = None) -> None:
        """Advance the world by dt seconds (expert ego when ego_control is None)."""
        if not dt > 0:
            raise ValueError(f'dt must be > 0, got {dt}')
        obs = self.obstacles()
        stalled = self.stalled()
        front_before = self.ego_front()
        # Drivers decide at DECISION_DT on one snapshot of everyone; then all move.
        if self.t + 1e-9 >= self._next_decision:
            self._next_decision += DECISION_DT
            for i, veh in enumerate(self.all_vehicles):
                if i == 0 and ego_control is not None:
                    continue
                veh.a, lane = expert.decide(self.town, veh, obs, i, self.t, stalled)
                if lane is not None:
                    veh.change_lane(self.town, self.rng, lane)
        for i, veh in enumerate(self.all_vehicles):
            if i == 0 and ego_control is not None:
                self._drive_ego(dt, ego_control)
                continue
            veh.advance(dt)
            old_leg = veh.leg
            shift = veh.pieces[1]['s1'] if len(veh.pieces) > 2 else 0.0
            veh.maybe_rebase(self.town, self.rng)
            if i == 0 and veh.leg != old_leg:
                self._done_before_leg += shift
            veh.update_pose(dt)
        self._step_pedestrians(dt, obs)
        self.t += dt
        self._check(front_before, dt)

    def _drive_ego(self, dt: float, ctl: EgoControl) -> None:
        """Kinematic bicycle with speed and yaw-rate limits, then re-anchor on the route."""
        e, lim = self.ego, self.bicycle
        target = float(np.clip(ctl.linear_x, 0.0, lim.max_speed))
        a = float(np.clip((target - e.v) / dt, -lim.max_decel, lim.max_accel))
        v_new = max(0.0, e.v + a * dt)
        w_max = v_new * math.tan(lim.max_steer) / lim.wheelbase
        w = float(np.clip(ctl.angular_z, -w_max, w_max))
        v_mid = 0.5 * (e.v + v_new)
        yaw_mid = e.yaw + 0.5 * w * dt
        e.x += v_mid * math.cos(yaw_mid) * dt
        e.y += v_mid * math.sin(yaw_mid) * dt
        e.yaw = float(wrap_angle(e.yaw + w * dt))
        e.a, e.v, e.yaw_rate, e.v_lat = a, v_new, w, 0.0
        s, lat, _ = e.path.project(np.array([[e.x, e.y]]), e.s - 5.0, e.s + 30.0)
        e.s, e.d = float(s[0]), float(lat[0])
        old_leg = e.leg
        shift = e.pieces[1]['s1'] if len(e.pieces) > 2 else 0.0
        e.maybe_rebase(self.town, self.rng)
        if e.leg != old_leg:
            self._done_before_leg += shift

    def _step_pedestrians(self, dt: float, obs: expert.Obstacles) -> None:
        veh_boxes = np.array([v.box() for v in self.all_vehicles])
        for ped in self.pedestrians:
            self._step_pedestrian(ped, dt, veh_boxes)

    def _step_pedestrian(self, ped: Pedestrian, dt: float, veh_boxes: np.ndarray) -> None:
        town = self.town
        if ped.trigger is not None:
            if self.ego.leg == ped.trigger['leg'] and \
                    self.ego.s + self.ego.front >= ped.trigger['s']:
                ped.waypoints = list(ped.trigger['waypoints'])
                ped.corner = ped.trigger['corner']
                ped.trigger = None
                ped.standing = False
            else:
                ped.v = 0.0
                return
        if not ped.waypoints and ped.pending:
            # At the kerb: cross only when the pedestrian phase leaves time to finish.
            sig = town.signals[ped.wait_node]
            need = (2 * town.cfg.half_road + 2.0) / ped.speed + 0.5
            if sig.ped_time_left(self.t) < need:
                ped.v = 0.0
                return
            ped.waypoints, ped.pending, ped.wait_node = ped.pending, [], None
        if not ped.waypoints:
            self._next_pedestrian_leg(ped)
            if not ped.waypoints:
                ped.v = 0.0
                return
        tx, ty = ped.waypoints[0]
        dx, dy = tx - ped.x, ty - ped.y
        dist = math.hypot(dx, dy)
        if dist < 1e-6:
            ped.waypoints.pop(0)
            return
        ux, uy = dx / dist, dy / dist
        # Yield: stop if a vehicle box is right in front of us (on the road only).
        probe = (ped.x + ux * 1.3, ped.y + uy * 1.3)
        if ped.yields and len(veh_boxes) and town.on_road_point(*probe):
            rel = np.array(probe)[None] - veh_boxes[:, :2]
            c, s = np.cos(veh_boxes[:, 2]), np.sin(veh_boxes[:, 2])
            lx = np.abs(rel[:, 0] * c + rel[:, 1] * s)
            ly = np.abs(-rel[:, 0] * s + rel[:, 1] * c)
            if np.any((lx < veh_boxes[:, 3] / 2 + 0.5) & (ly < veh_boxes[:, 4] / 2 + 0.5)):
                ped.v = 0.0
                return
        step = min(dist, ped.speed * dt)
        ped.x += ux * step
        ped.y += uy * step
        ped.yaw = math.atan2(uy, ux)
        ped.v = step / dt
        if step >= dist - 1e-9:
            ped.waypoints.pop(0)

    def _next_pedestrian_leg(self, ped: Pedestrian) -> None:
        """At a corner: walk along a sidewalk, or queue for the crosswalk (random)."""
        town, rng = self.town, self.rng
        node, sx, sy = ped.corner
        c = town.centre(node)
        side = town.cfg.half_road + town.cfg.sidewalk / 2
        options = []
        nb_x = town.neighbor(node, 0 if sx > 0 else 2)
        nb_y = town.neighbor(node, 1 if sy > 0 else 3)
        if nb_x is not None:
            options.append(('walk', (nb_x, -sx, sy)))
            options.append(('cross', (node, sx, -sy)))
        if nb_y is not None:
            options.append(('walk', (nb_y, sx, -sy)))
            options.append(('cross', (node, -sx, sy)))
        if not options:
            return
        kind, corner = options[int(rng.integers(0, len(options)))]
        target = town.centre(corner[0]) + np.array([corner[1], corner[2]]) * side
        if kind == 'walk':
            ped.waypoints = [(float(target[0]), float(target[1]))]
        else:
            cw = town.cfg.box + town.cfg.crosswalk / 2
            if corner[2] != sy:      # crossing the x arm (road along x) at x = c + sx*cw
                a = (c[0] + sx * cw, c[1] + sy * side)
                b = (c[0] + sx * cw, c[1] - sy * side)
            else:
                a = (c[0] + sx * side, c[1] + sy * cw)
                b = (c[0] - sx * side, c[1] + sy * cw)
            ped.waypoints = [a]
            ped.pending = [b, (float(target[0]), float(target[1]))]
            ped.wait_node = node
        ped.corner = corner

    # ----- checks -----
    def ego_box_corners(self) -> np.ndarray:
        return box_corners(*self.ego.box())

    def collisions(self) -> List[str]:
        """Ids of agents whose boxes overlap the ego's box now."""
        boxes = [v.box() for v in self.vehicles] + [p.box() for p in self.pedestrians]
        if not boxes:
            return []
        b = np.array(boxes)
        hit = boxes_overlap(self.ego_box_corners(), box_corners(*b.T))
        ids = [v.id for v in self.vehicles] + [p.id for p in self.pedestrians]
        return [ids[k] for k in np.nonzero(hit)[0]]

    def off_road(self) -> bool:
        """Whether any ego box corner is off the carriageway."""
        return not bool(np.all(self.town.on_road(self.ego_box_corners())))

    def crossed_red(self, front_before: np.ndarray, front_after: np.ndarray) -> List[str]:
        """Light ids whose stop line the ego front crossed, in its direction, on red."""
        out = []
        for node, sig in self.town.signals.items():
            if np.hypot(*(self.town.centre(node) - front_after)) > 40.0:
                continue
            for d in sig.arms:
                p0, p1 = self.town.stop_line(node, d)
                if not segments_cross(front_before, front_after, p0, p1):
                    continue
                if float(np.dot(front_after - front_before, DIRS[d])) <= 0:
                    continue
                if sig.state(d, self.t) == 1:  # RED
                    out.append(self.town.light_id(node, d))
        return out

    def _check(self, front_before: np.ndarray, dt: float) -> None:
        touching = set(self.collisions())
        for aid in sorted(touching - self._touching):
            self.infractions.collisions.append((self.t, aid))
        self._touching = touching
        for lid in self.crossed_red(front_before, self.ego_front()):
            self.infractions.red_lights.append((self.t, lid))
        if self.off_road():
            self.infractions.off_road_time += dt

    def route_progress(self) -> float:
        """Arc length the ego has driven along its route since the start [m]."""
        return self._done_before_leg + max(0.0, self.ego.s) - self._start_s

    # ----- ground truth -----
    def objects(self, radius: float = 80.0) -> List[ObjectState]:
        """Ground-truth boxes of all agents within `radius` of the ego (map frame)."""
        out = []
        ex, ey = self.ego.x, self.ego.y
        for v in self.vehicles:
            cx, cy, yaw, ln, wd = v.box()
            if math.hypot(cx - ex, cy - ey) > radius:
                continue
            c, s = math.cos(v.yaw), math.sin(v.yaw)
            vx = v.v * c - v.v_lat * s
            vy = v.v * s + v.v_lat * c
            out.append(ObjectState(v.id, v.cls, cx, cy, v.height / 2, yaw, ln, wd, v.height,
                                   vx, vy, v.colour))
        for p in self.pedestrians:
            if math.hypot(p.x - ex, p.y - ey) > radius:
                continue
            out.append(ObjectState(p.id, CLASS_PEDESTRIAN, p.x, p.y, p.height / 2, p.yaw,
                                   p.width, p.width, p.height, p.v * math.cos(p.yaw),
                                   p.v * math.sin(p.yaw), p.colour))
        return out

    def lights(self) -> List[Tuple[str, int, np.ndarray, np.ndarray, Tuple[int, int], int]]:
        """(id, state, stop line start, stop line end, node, heading) of every light."""
        out = []
        for node, sig in self.town.signals.items():
            for d in sig.arms:
                p0, p1 = self.town.stop_line(node, d)
                out.append((self.town.light_id(node, d), sig.state(d, self.t), p0, p1, node, d))
        return out

    def snapshot(self, radius: float = 150.0) -> Snapshot:
        e = self.ego
        return Snapshot(self.t, (float(e.x), float(e.y), float(e.yaw)), self.objects(radius),
                        {(n, d): st for _, st, _, _, n, d in self.lights()})

    def ego_twist(self) -> Dict[str, float]:
        """Ego velocity in base_link: forward, lateral, yaw rate, and forward acceleration."""
        e = self.ego
        return {'vx': e.v, 'vy': e.v_lat, 'wz': e.yaw_rate, 'ax': e.a}
