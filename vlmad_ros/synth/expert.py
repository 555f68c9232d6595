"""
The driver: IDM car following, traffic lights, turns, yielding and lane changes.

One implementation for every vehicle of the world; the ego's expert is this driver with the
ego's route, plus the route command it publishes. The driver is privileged (it reads the
world's ground truth), which is what an expert for imitation learning may do.

Obstacles are found in a corridor along the vehicle's own path: every agent whose box
overlaps the corridor now, and pedestrians / crossing vehicles whose predicted positions in
the next 2.5 s overlap it, become IDM leaders at their arc length (crossing ones as standing).
"""
from __future__ import annotations

import dataclasses
import math
from typing import List, Optional, Tuple

import numpy as np

from vlmad_ros.synth.agents import Vehicle
from vlmad_ros.synth.town import GREEN, Town, YELLOW_LIGHT
from vlmad_ros.types import Command

PREDICT_TIMES = (0.0, 0.8, 1.6, 2.5)   # [s] look-ahead of crossing agents
CORRIDOR_MARGIN = 0.45                 # lateral clearance [m]
COMMAND_DISTANCE = 40.0                # announce a turn this far before the intersection [m]
STALL_LANE_CHANGE_GAP = 40.0           # change lanes for a stalled vehicle this close ahead [m]


@dataclasses.dataclass
class Obstacles:
    """All agents' boxes at one instant (map frame), index-aligned arrays."""

    ids: List[str]
    xy: np.ndarray        # (N, 2) box centres
    yaw: np.ndarray       # (N,)
    length: np.ndarray
    width: np.ndarray
    speed: np.ndarray     # (N,) signed along yaw
    is_ped: np.ndarray    # (N,) bool
    vel: np.ndarray = None  # (N, 2) map-frame velocity, from speed and yaw when not given

    def __post_init__(self):
        if self.vel is None:
            self.vel = self.speed[:, None] * np.stack([np.cos(self.yaw), np.sin(self.yaw)], 1)


def idm(v: float, v0: float, gap: float, dv: float, p, s0: float) -> float:
    """Intelligent Driver Model acceleration (dv = own speed - leader speed)."""
    free = 1.0 - (v / max(v0, 0.1)) ** 4 if v0 > 0.05 else -1.0
    if gap is None:
        return p.a_max * free
    s_star = s0 + max(0.0, v * p.headway + v * dv / (2.0 * math.sqrt(p.a_max * p.b_comf)))
    return p.a_max * (free - (s_star / max(gap, 0.05)) ** 2)


def leaders(veh: Vehicle, obs: Obstacles, self_index: int) -> List[tuple]:
    """(gap, leader speed along the path, index) of every agent in the corridor ahead."""
    p = veh.params
    c, sn = math.cos(veh.yaw), math.sin(veh.yaw)
    rx, ry = obs.xy[:, 0] - veh.x, obs.xy[:, 1] - veh.y
    near = (rx * rx + ry * ry < (p.lookahead + 15.0) ** 2) & (rx * c + ry * sn > -15.0)
    if 0 <= self_index < len(near):
        near[self_index] = False
    idx = np.nonzero(near)[0]
    if len(idx) == 0:
        return []
    # Current positions of everyone near, plus predicted ones of movers (one projection).
    movers = idx[obs.is_ped[idx] | (obs.speed[idx] > 0.5)]
    vel = obs.vel[movers]
    xy = [obs.xy[idx]] + [obs.xy[movers] + vel * t for t in PREDICT_TIMES[1:]]
    who = np.concatenate([idx] + [movers] * (len(PREDICT_TIMES) - 1))
    future = np.concatenate([np.zeros(len(idx), bool)] + [np.ones(len(movers), bool)]
                            * (len(PREDICT_TIMES) - 1))
    s_hi = veh.s + p.lookahead
    s, lat, ph = veh.path.project(np.concatenate(xy), veh.s - 10.0, s_hi)
    rel = obs.yaw[who] - ph
    cr, sr = np.abs(np.cos(rel)), np.abs(np.sin(rel))
    ln, wd = obs.length[who], obs.width[who]
    along = 0.5 * (ln * cr + wd * sr)
    across = 0.5 * (ln * sr + wd * cr)
    half_w = veh.width / 2 + CORRIDOR_MARGIN
    lat_lo, lat_hi = min(0.0, veh.d) - half_w, max(0.0, veh.d) + half_w
    gap = s - along - (veh.s + veh.front)
    inside = (lat + across > lat_lo) & (lat - across < lat_hi) & (s > veh.s) \
        & (s < s_hi - 0.5) & (gap >= -0.5 * veh.length)
    out = []
    for k in np.nonzero(inside)[0]:
        j = int(who[k])
        crossing = obs.is_ped[j] or cr[k] < 0.7
        v_lead = 0.0 if (future[k] or crossing) else \
            max(0.0, float(obs.speed[j] * math.cos(rel[k])))
        out.append((max(float(gap[k]), 0.05), v_lead, j))
    return out


def light_target(town: Town, veh: Vehicle, t: float) -> Optional[float]:
    """Gap to the stop line if the driver must stop there, else None (go)."""
    p = veh.params
    front = veh.s + veh.front
    for piece in veh.pieces:
        if piece['kind'] != 'leg' or piece['stop_s'] < front - 0.05:
            continue
        if piece['stop_s'] - front > p.lookahead:
            return None
        key = (piece['node'], piece['heading'])
        state = town.signals[piece['node']].state(piece['heading'], t)
        gap = piece['stop_s'] - front - 0.6
        if state == GREEN:
            veh.committed.discard(key)
            return None
        if state == YELLOW_LIGHT:
            if key in veh.committed:
                return None
            if veh.v * veh.v / (2 * p.b_stop) <= gap + 1.0:
                return gap
            veh.committed.add(key)
            return None
        # RED (or unknown): stop unless committed and physically unable to stop.
        if key in veh.committed and veh.v * veh.v / (2 * p.b_max) > gap + 0.6:
            return None
        return gap
    return None


def free_speed(veh: Vehicle) -> float:
    """Return the desired speed, lowered ahead of curves (the driver's speed on a free road)."""
    p = veh.params
    v0 = p.v0
    kmax, s_k = veh.path.max_curvature(veh.s, veh.s + p.lookahead)
    if kmax > 1e-3:
        v_curve = math.sqrt(p.a_lat / kmax)
        dist = max(0.0, s_k - veh.s - veh.front)
        v0 = min(v0, math.sqrt(v_curve ** 2 + 2.0 * p.b_comf * 0.5 * dist))
    return v0


def decide(town: Town, veh: Vehicle, obs: Obstacles, self_index: int, t: float,
           stalled: np.ndarray) -> Tuple[float, Optional[int]]:
    """Return the acceleration for the next decision period, and a lane to change to."""
    p = veh.params
    if veh.stalled:
        return 0.0, None
    lead = leaders(veh, obs, self_index)
    new_lane = None
    if stall_blocks(lead, stalled):
        new_lane = wanted_lane_change(town, veh, obs, self_index)
    if veh.brake is not None:
        forced = veh.brake.accel(t, veh.v)
        if forced is not None:
            return forced, None
    v0 = free_speed(veh)
    acc = idm(veh.v, v0, None, 0.0, p, p.s0)
    for gap, v_lead, _ in lead:
        acc = min(acc, idm(veh.v, v0, gap, veh.v - v_lead, p, p.s0))
    stop_gap = light_target(town, veh, t)
    if stop_gap is not None:
        if stop_gap < 0.0:
            acc = min(acc, -p.b_max) if veh.v > 0.0 else min(acc, 0.0)
        else:
            acc = min(acc, idm(veh.v, v0, stop_gap + 0.3, veh.v, p, 0.3))
    if veh.s + veh.front >= veh.path.length - 1.0:
        acc = min(acc, -p.b_max)
    return float(np.clip(acc, -p.b_max, p.a_max)), new_lane


def stall_blocks(lead: List[tuple], stalled: np.ndarray) -> bool:
    """Tell whether a stalled vehicle among the leaders is close enough to change lanes for."""
    return any(stalled[j] and g < STALL_LANE_CHANGE_GAP for g, _, j in lead)


def lane_under_way(town: Town, veh: Vehicle, obs: Obstacles, self_index: int,
                   stalled: np.ndarray) -> Optional[int]:
    """
    Return the other lane when a car driven from outside is already moving into it.

    The closed loop's car keeps its route's lane while its planner steers it across; from its
    offset the expert either brings it back or finishes the move. It finishes it past half a
    lane, or short of that when a stalled vehicle blocks the lane and the other one has room,
    which is when the expert itself changes lanes (`decide`).
    """
    if not veh.on_leg():
        return None
    other = 1 - veh.lanes[veh.leg]
    other_lat = -town.cfg.lane_width * (other - veh.lanes[veh.leg])
    if veh.d * other_lat <= 0.0:
        return None
    if abs(veh.d) > town.cfg.lane_width / 2:
        return other
    if stall_blocks(leaders(veh, obs, self_index), stalled):
        return wanted_lane_change(town, veh, obs, self_index)
    return None


def wanted_lane_change(town: Town, veh: Vehicle, obs: Obstacles, self_index: int
                       ) -> Optional[int]:
    """Return the other lane when a stalled vehicle blocks ours and that lane has room."""
    if veh.lc_t >= 0 or not veh.on_leg():
        return None
    piece = veh.pieces[0]
    # Not right before the stop line: there the queue decides.
    if piece['stop_s'] - (veh.s + veh.front) < 20.0:
        return None
    new_lane = 1 - veh.lanes[veh.leg]
    target_lat = -town.cfg.lane_width * (new_lane - veh.lanes[veh.leg])
    near = np.hypot(obs.xy[:, 0] - veh.x, obs.xy[:, 1] - veh.y) < 60.0
    near[self_index] = False
    idx = np.nonzero(near)[0]
    if len(idx):
        s, lat, _ = veh.path.project(obs.xy[idx], veh.s - 40.0, veh.s + 40.0)
        in_lane = np.abs(lat - target_lat) < town.cfg.lane_width * 0.75
        ds = s - veh.s
        behind_need = 8.0 + 2.0 * np.maximum(obs.speed[idx] - veh.v, 0.0) + obs.length[idx]
        clash = in_lane & (ds > -behind_need - veh.length) & \
            (ds < veh.front + 12.0 + obs.length[idx])
        if np.any(clash):
            return None
    return new_lane


def route_command(veh: Vehicle, distance: float = COMMAND_DISTANCE) -> Command:
    """Command of the upcoming manoeuvre on the route: the next turn within `distance`."""
    front = veh.s + veh.front
    for piece in veh.pieces:
        if piece['kind'] != 'conn' or piece['s1'] < front - veh.length:
            continue
        if piece['s0'] - front > distance:
            break
        if piece['turn'] == 1:
            return Command.LEFT
        if piece['turn'] == 3:
            return Command.RIGHT
    return Command.STRAIGHT
