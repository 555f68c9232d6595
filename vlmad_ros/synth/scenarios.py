"""
Scene set-up: town, ambient traffic, and one scripted scenario around the ego.

The mix is chosen so that ego state alone cannot predict the plan (docs/SYNTHETIC_WORLD.md):
a light turns yellow/red ahead, a red light turns green while the ego waits, a lead vehicle
brakes hard, a stalled vehicle blocks the ego lane (lane change), a pedestrian steps out, and
turns at the next intersection are set by the route command.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import numpy as np

from vlmad_ros.synth.agents import (
    BrakeEvent, CLASS_BUS, CLASS_CAR, CLASS_TRUCK, DriverParams, EGO_CENTER_OFFSET, EGO_HEIGHT,
    EGO_LENGTH, EGO_WIDTH, Pedestrian, Vehicle)
from vlmad_ros.synth.geometry import DIRS, right_of
from vlmad_ros.synth.town import extend_route, GREEN, Node, Town, TownConfig, YELLOW_LIGHT
from vlmad_ros.synth.world import EGO_ID, World

# Scenario name -> sampling weight.
SCENARIOS: Dict[str, float] = {
    'cruise': 0.10,
    'turn': 0.16,
    'red_light': 0.16,
    'green_light': 0.12,
    'lead_brake': 0.16,
    'stopped_vehicle': 0.14,
    'pedestrian': 0.16,
}

# green_light: the ego waits with its front bumper this far before the stop line [m].
GREEN_LIGHT_WAIT = 1.2

# (class, length, width, height, probability) of ambient vehicles.
VEHICLE_TYPES = ((CLASS_CAR, 4.5, 1.85, 1.5, 0.62), (CLASS_CAR, 4.9, 2.0, 1.9, 0.2),
                 (CLASS_TRUCK, 7.5, 2.4, 3.2, 0.11), (CLASS_BUS, 11.0, 2.6, 3.2, 0.07))


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """What a scene contains."""

    town: TownConfig = TownConfig()
    scenario: str = ''          # '' = sample from SCENARIOS with their weights
    n_vehicles: int = 26        # ambient moving vehicles
    n_parked: int = 3           # stalled / double-parked vehicles on curb lanes
    n_pedestrians: int = 28

    def __post_init__(self):
        if self.scenario and self.scenario not in SCENARIOS:
            raise ValueError(f'SceneConfig.scenario must be one of {sorted(SCENARIOS)} or "", '
                             f'got {self.scenario!r}')
        for name in ('n_vehicles', 'n_parked', 'n_pedestrians'):
            if getattr(self, name) < 0:
                raise ValueError(f'SceneConfig.{name} must be >= 0, got {getattr(self, name)}')


def _legs(town: Town) -> List[Tuple[Node, int, float]]:
    out = []
    for node in town.signals:
        for d in range(4):
            if town.neighbor(node, d) is not None:
                out.append((node, d, town.leg_length(node, town.neighbor(node, d))))
    return out


def _ego_route(town: Town, a: Node, d: int, lane: int, turn: Optional[int],
               rng: np.random.Generator) -> Tuple[List[Node], List[int]]:
    b = town.neighbor(a, d)
    nodes, lanes = [a, b], [lane]
    if turn is not None:
        d2 = (d + turn) % 4
        nodes.append(town.neighbor(b, d2))
        lanes.append(int(rng.integers(0, 2)))
    extend_route(town, nodes, lanes, rng, 6, locked=1)
    return nodes, lanes


def _vehicle(vid: str, rng: np.random.Generator, nodes, lanes, s: float, v: float,
             params: DriverParams, kind: Optional[int] = None) -> Vehicle:
    probs = np.array([t[4] for t in VEHICLE_TYPES])
    k = int(rng.choice(len(VEHICLE_TYPES), p=probs / probs.sum())) if kind is None else kind
    cls, ln, wd, ht, _ = VEHICLE_TYPES[k]
    return Vehicle(id=vid, cls=cls, length=ln, width=wd, height=ht,
                   colour=int(rng.integers(0, 12)), nodes=list(nodes), lanes=list(lanes),
                   params=params, s=s, v=v)


def _npc_params(rng) -> DriverParams:
    return DriverParams(v0=float(rng.uniform(8.0, 13.0)), headway=float(rng.uniform(1.0, 1.6)),
                        s0=float(rng.uniform(2.0, 3.0)), a_max=float(rng.uniform(1.4, 2.2)))


@dataclasses.dataclass
class _EgoPlan:
    """The ego's leg, route, driver and start, as the scenario is staged around them."""

    town: Town
    a: Node                  # the intersection the ego's leg starts from
    d: int                   # the leg's direction
    nodes: List[Node]
    lanes: List[int]
    stop_s: float            # the stop line at the end of the leg [m along it]
    params: DriverParams
    s: float
    v: float

    @property
    def signal(self):
        """Return the signal at the end of the ego's leg."""
        return self.town.signals[self.nodes[1]]

    def arrival(self) -> float:
        """Return the time to the stop line at the desired speed [s], at least 0.5."""
        gap = self.stop_s - self.s - EGO_CENTER_OFFSET - EGO_LENGTH / 2
        return max(0.5, gap) / self.params.v0


def make_world(rng: np.random.Generator, cfg: SceneConfig = SceneConfig()) -> World:
    """Build a new scene: town, ego with its scenario, ambient traffic and pedestrians."""
    town = Town(cfg.town, rng)
    names = sorted(SCENARIOS)
    w = np.array([SCENARIOS[n] for n in names])
    scenario = cfg.scenario or names[int(rng.choice(len(names), p=w / w.sum()))]
    legs = _legs(town)
    plan = _plan_ego(town, legs, scenario, rng)
    vehicles, pedestrians = _stage_scenario(town, plan, scenario, rng)
    ego = Vehicle(id=EGO_ID, cls=CLASS_CAR, length=EGO_LENGTH, width=EGO_WIDTH,
                  height=EGO_HEIGHT, colour=0, nodes=plan.nodes, lanes=plan.lanes,
                  params=plan.params, s=plan.s, v=plan.v, ref_offset=EGO_CENTER_OFFSET)
    vehicles += _ambient_vehicles(town, legs, plan, vehicles, cfg, rng)
    pedestrians += _ambient_pedestrians(town, cfg, rng)
    world = World(town, ego, vehicles, pedestrians, rng, scenario=scenario)
    world.style_seed = int(rng.integers(0, 2 ** 31 - 1))
    return world


def _plan_ego(town: Town, legs, scenario: str, rng: np.random.Generator) -> _EgoPlan:
    """Pick the ego's leg (a long one: mid-block scenarios need room), route, driver, start."""
    lengths = np.array([leg[2] for leg in legs])
    long_legs = [leg for leg in legs if leg[2] >= np.quantile(lengths, 0.4)]
    a, d, length = long_legs[int(rng.integers(0, len(long_legs)))]
    stop_s = length - town.stop_back
    params = DriverParams(v0=float(rng.uniform(8.5, 12.5)), headway=1.5, s0=3.0,
                          a_max=float(rng.uniform(1.5, 2.2)))
    turn = None
    lane = int(rng.integers(0, 2))
    if scenario == 'turn':
        options = [t for t in (1, 3) if town.neighbor(town.neighbor(a, d), (d + t) % 4)]
        if options:
            turn = options[int(rng.integers(0, len(options)))]
            lane = 0 if turn == 1 else 1
    elif scenario == 'red_light' and town.neighbor(town.neighbor(a, d), d) is not None:
        turn = 0      # straight on: the light alone decides
    nodes, lanes = _ego_route(town, a, d, lane, turn, rng)
    ego_s = float(rng.uniform(0.0, 8.0))
    ego_v = float(params.v0 * rng.uniform(0.6, 1.0))
    if scenario in ('red_light', 'turn'):
        # Reach the intersection 4.5-7.5 s in, so short recordings hold the event.
        ego_s = max(0.0, stop_s - EGO_CENTER_OFFSET - EGO_LENGTH / 2
                    - params.v0 * float(rng.uniform(4.5, 7.5)))
    return _EgoPlan(town, a, d, nodes, lanes, stop_s, params, ego_s, ego_v)


def _stage_scenario(town: Town, plan: _EgoPlan, scenario: str, rng: np.random.Generator
                    ) -> Tuple[List[Vehicle], List[Pedestrian]]:
    """Schedule the light ahead and place the scenario's actors (the ego's start may move)."""
    sig, d = plan.signal, plan.d
    arrive = plan.arrival()
    if scenario == 'green_light':
        plan.s = plan.stop_s - GREEN_LIGHT_WAIT - EGO_CENTER_OFFSET - EGO_LENGTH / 2
        plan.v = 0.0
        sig.schedule(d, GREEN, at=float(rng.uniform(1.0, 6.0)))
    elif scenario == 'red_light':
        t_yellow = max(1.0, arrive - float(rng.uniform(3.5, 5.0)))
        sig.schedule(d, YELLOW_LIGHT, at=t_yellow, green=t_yellow + float(rng.uniform(2.0, 6.0)))
    elif scenario in ('turn', 'cruise'):
        sig.schedule(d, GREEN, at=arrive - float(rng.uniform(3.0, 6.0)), green=14.0)
    elif scenario == 'lead_brake':
        vehicles = [_braking_lead(town, plan, rng)]
        sig.schedule(d, GREEN, at=arrive, green=16.0)
        return vehicles, []
    elif scenario == 'stopped_vehicle':
        return [_stalled_ahead(town, plan, rng)], []
    elif scenario == 'pedestrian':
        pedestrians = [_stepping_out(town, plan, rng)]
        sig.schedule(d, GREEN, at=arrive + 2.0, green=16.0)
        return [], pedestrians
    return [], []


def _braking_lead(town: Town, plan: _EgoPlan, rng: np.random.Generator) -> Vehicle:
    """Place a car 18-30 m ahead in the ego's lane that brakes hard 1.5-5 s in."""
    lead_s = plan.s + EGO_CENTER_OFFSET + float(rng.uniform(18.0, 30.0))
    v = plan.v
    t0 = float(rng.uniform(1.5, 5.0))
    latest = max(1.0, (plan.stop_s - 15.0 - lead_s) / max(v, 1.0))
    lead = _vehicle('veh_lead', rng, plan.nodes[:2], plan.lanes[:1], lead_s, v,
                    DriverParams(v0=plan.params.v0 + 0.5), kind=0)
    lead.brake = BrakeEvent(t0=min(t0, latest), decel=float(rng.uniform(3.0, 5.5)),
                            hold=float(rng.uniform(2.0, 5.0)))
    extend_route(town, lead.nodes, lead.lanes, rng, 4, locked=1)
    return lead


def _stalled_ahead(town: Town, plan: _EgoPlan, rng: np.random.Generator) -> Vehicle:
    """Place a car, van or truck standing 35-60 m ahead in the ego's lane."""
    stall_s = min(plan.s + float(rng.uniform(35.0, 60.0)), plan.stop_s - 28.0)
    stalled = _vehicle('veh_stalled', rng, plan.nodes[:2], plan.lanes[:1], stall_s, 0.0,
                       DriverParams(v0=0.0), kind=int(rng.choice([0, 1, 2])))
    stalled.stalled = True
    extend_route(town, stalled.nodes, stalled.lanes, rng, 2, locked=1)
    return stalled


def _stepping_out(town: Town, plan: _EgoPlan, rng: np.random.Generator) -> Pedestrian:
    """Place a pedestrian who steps onto the road ahead, without looking, as the ego nears."""
    a, d, params = plan.a, plan.d, plan.params
    d_trig = params.v0 ** 2 / (2 * 3.0) + float(rng.uniform(8.0, 14.0))
    ego_front = plan.s + EGO_CENTER_OFFSET + EGO_LENGTH / 2
    ped_s = min(ego_front + d_trig + float(rng.uniform(5, 20)), plan.stop_s - 10.0)
    from_right = bool(rng.random() < 0.6)
    base = town.centre(a) + DIRS[d] * (town.cfg.box + ped_s)
    side = town.cfg.half_road + town.cfg.sidewalk / 2
    out_vec = right_of(d) if from_right else -right_of(d)
    start = base + out_vec * side
    end = base - out_vec * side
    corner_vec = -DIRS[d] - out_vec
    node_b = plan.nodes[1]
    ped = Pedestrian(id='ped_stepout', x=float(start[0]), y=float(start[1]),
                     speed=float(rng.uniform(1.3, 1.9)), colour=int(rng.integers(0, 8)),
                     corner=(node_b, int(corner_vec[0]), int(corner_vec[1])))
    ped.yaw = float(np.arctan2(-out_vec[1], -out_vec[0]))
    ped.standing = True
    ped.yields = False     # it steps out without looking: the ego must see it and stop
    corner_pos = town.centre(node_b) + corner_vec * side
    ped.trigger = {'leg': 0, 's': ped_s - d_trig,
                   'waypoints': [(float(end[0]), float(end[1])),
                                 (float(corner_pos[0]), float(corner_pos[1]))],
                   'corner': (node_b, int(corner_vec[0]), int(corner_vec[1]))}
    return ped


def _ambient_vehicles(town: Town, legs, plan: _EgoPlan, scripted: List[Vehicle],
                      cfg: SceneConfig, rng: np.random.Generator) -> List[Vehicle]:
    """Place parked and moving traffic off the ego's leg (the scenario's own), spaced per lane."""
    a, d = plan.a, plan.d
    taken: Dict[Tuple[Node, int, int], List[float]] = {}
    for v in scripted:
        taken.setdefault((a, d, v.lanes[0]), []).append(v.s)
    candidates = [leg for leg in legs if not (leg[0] == a and leg[1] == d)]
    out = []
    for k in range(cfg.n_parked + cfg.n_vehicles):
        parked = k < cfg.n_parked
        for _ in range(20):
            na, nd, ln = candidates[int(rng.integers(0, len(candidates)))]
            lane_k = 1 if parked else int(rng.integers(0, 2))
            hi = ln - town.stop_back - (30.0 if parked else 8.0)
            lo = 25.0 if parked else 2.0
            if hi <= lo:
                continue
            s = float(rng.uniform(lo, hi))
            others = taken.setdefault((na, nd, lane_k), [])
            if any(abs(s - o) < 16.0 for o in others):
                continue
            others.append(s)
            nb = town.neighbor(na, nd)
            nn, ll = [na, nb], [lane_k]
            extend_route(town, nn, ll, rng, 3, locked=1)
            params = DriverParams(v0=0.0) if parked else _npc_params(rng)
            speed = 0.0 if parked or (ln - town.stop_back - s) < 35.0 else \
                float(params.v0 * rng.uniform(0.5, 1.0))
            veh = _vehicle(f'veh_{k:03d}', rng, nn, ll, s, speed, params)
            veh.stalled = parked
            out.append(veh)
            break
    return out


def _ambient_pedestrians(town: Town, cfg: SceneConfig, rng: np.random.Generator
                         ) -> List[Pedestrian]:
    """Place pedestrians on the sidewalks, each walking towards a corner."""
    side = town.cfg.half_road + town.cfg.sidewalk / 2
    node_list = sorted(town.signals)
    out = []
    for k in range(cfg.n_pedestrians):
        node = node_list[int(rng.integers(0, len(node_list)))]
        sx, sy = int(rng.choice([-1, 1])), int(rng.choice([-1, 1]))
        along_x = bool(rng.random() < 0.5)
        nb = town.neighbor(node, (0 if sx > 0 else 2) if along_x else (1 if sy > 0 else 3))
        if nb is None:
            continue
        corner = (nb, -sx, sy) if along_x else (nb, sx, -sy)
        p0 = town.centre(node) + np.array([sx, sy]) * side
        p1 = town.centre(nb) + np.array([corner[1], corner[2]]) * side
        pos = p0 + (p1 - p0) * float(rng.uniform(0.05, 0.95))
        ped = Pedestrian(id=f'ped_{k:03d}', x=float(pos[0]), y=float(pos[1]),
                         speed=float(rng.uniform(1.2, 1.7)), colour=int(rng.integers(0, 8)),
                         corner=corner, waypoints=[(float(p1[0]), float(p1[1]))])
        ped.yaw = float(np.arctan2(*(p1 - p0)[::-1]))
        out.append(ped)
    return out
