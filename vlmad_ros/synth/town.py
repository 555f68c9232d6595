"""
A procedural grid town: roads, lanes, markings, crosswalks, signals and buildings.

Layout (map frame, right-hand traffic): intersections on an nx x ny grid with random block
lengths; every road has two lanes per direction (lane 0 next to the centre line, lane 1 at the
curb), sidewalks, a crosswalk on every intersection arm and a stop line before it. Each
intersection runs split signal phases (one approach green at a time) and then an all-red
pedestrian phase, so vehicles never meet inside an intersection and pedestrians cross while
all vehicles wait. The ground (asphalt, markings, sidewalks, grass) is rasterised once into a
class map that the renderer samples per pixel.
"""
from __future__ import annotations

import bisect
import dataclasses
import math
from typing import Dict, List, Optional, Tuple

import numpy as np

from vlmad_ros.synth.geometry import bezier, DIR_NAMES, DIRS, Path, right_of

# Ground classes of the class map (the renderer colours them per scene).
GRASS, SIDEWALK, ROAD, WHITE, YELLOW, PLAZA, ROAD_DARK = range(7)
N_GROUND_CLASSES = 7

# Light states, equal to TrafficLight.msg constants.
UNKNOWN, RED, YELLOW_LIGHT, GREEN = 0, 1, 2, 3

Node = Tuple[int, int]


@dataclasses.dataclass(frozen=True)
class TownConfig:
    """Size and geometry of the town."""

    nx: int = 4                  # intersections along x
    ny: int = 4                  # intersections along y
    block_min: float = 85.0      # distance between neighbouring intersections [m]
    block_max: float = 130.0
    lane_width: float = 3.5      # [m]; two lanes per direction
    sidewalk: float = 3.0        # [m]
    crosswalk: float = 4.0       # crosswalk depth along the road [m]
    stop_gap: float = 1.0        # stop line distance before the crosswalk [m]
    texture_res: float = 0.1     # ground class map resolution [m/texel]
    margin: float = 60.0         # town border beyond the outer roads [m]
    green_min: float = 7.0       # signal green time per approach [s]
    green_max: float = 11.0
    yellow: float = 3.0          # [s]
    all_red: float = 2.0         # clearance after each yellow [s]
    ped_phase: float = 15.0      # all vehicles red, pedestrians cross [s]

    def __post_init__(self):
        if self.nx < 2 or self.ny < 2:
            raise ValueError(f'TownConfig.nx/ny must be >= 2, got {self.nx}x{self.ny}')
        if not 40.0 <= self.block_min <= self.block_max:
            raise ValueError('TownConfig.block_min must be >= 40 m and <= block_max, got '
                             f'{self.block_min}, {self.block_max}')
        if not 0.02 <= self.texture_res <= 0.5:
            raise ValueError(f'TownConfig.texture_res must be in [0.02, 0.5] m, got '
                             f'{self.texture_res}')
        for name in ('lane_width', 'sidewalk', 'crosswalk', 'yellow', 'ped_phase', 'green_min'):
            if getattr(self, name) <= 0:
                raise ValueError(f'TownConfig.{name} must be > 0, got {getattr(self, name)}')
        if self.green_max < self.green_min:
            raise ValueError('TownConfig.green_max must be >= green_min')

    @property
    def half_road(self) -> float:
        return 2.0 * self.lane_width

    @property
    def box(self) -> float:
        """Half size of the intersection square, road plus sidewalk: where legs end [m]."""
        return self.half_road + self.sidewalk


class Signal:
    """
    Split-phase traffic signal of one intersection: each approach green alone, then peds.

    `arms` are the headings d of the traffic that approaches (vehicles driving in direction d).
    """

    def __init__(self, node: Node, arms: List[int], greens: Dict[int, float], cfg: TownConfig,
                 offset: float):
        self.node = node
        self.arms = list(arms)
        self.greens = dict(greens)
        self.cfg = cfg
        self.offset = offset
        self._build()

    def _build(self):
        c = self.cfg
        # Phase table: (start, end, arm or -1 for pedestrians, state of that arm).
        self.table = []
        t = 0.0
        for arm in self.arms:
            self.table.append((t, t + self.greens[arm], arm, GREEN))
            t += self.greens[arm]
            self.table.append((t, t + c.yellow, arm, YELLOW_LIGHT))
            t += c.yellow + c.all_red
        self.ped_start = t
        t += c.ped_phase
        self.ped_end = t
        t += c.all_red
        self.cycle = t

    def phase_time(self, t: float) -> float:
        return (t + self.offset) % self.cycle

    def state(self, arm: int, t: float) -> int:
        """Light state for vehicles of heading `arm` at time t."""
        tau = self.phase_time(t)
        for start, end, a, st in self.table:
            if a == arm and start <= tau < end:
                return st
        return RED

    def ped_time_left(self, t: float) -> float:
        """Seconds left in the pedestrian phase (0 outside it)."""
        tau = self.phase_time(t)
        return self.ped_end - tau if self.ped_start <= tau < self.ped_end else 0.0

    def schedule(self, arm: int, state: int, at: float, green: Optional[float] = None):
        """Shift this signal so that `arm` enters `state` (GREEN or YELLOW) at time `at`."""
        if green is not None:
            self.greens[arm] = green
            self._build()
        for start, _, a, st in self.table:
            if a == arm and st == state:
                self.offset = (start - at) % self.cycle
                return
        raise ValueError(f'signal {self.node} has no arm {arm} / state {state}')


@dataclasses.dataclass(frozen=True)
class Building:
    x: float
    y: float
    lx: float
    ly: float
    height: float
    colour: int     # index into the scene's building palette


class Town:
    """Static map of a scene: grid, lanes, stop lines, signals, buildings and ground classes."""

    def __init__(self, cfg: TownConfig, rng: np.random.Generator):
        self.cfg = cfg
        gaps_x = rng.uniform(cfg.block_min, cfg.block_max, cfg.nx - 1)
        gaps_y = rng.uniform(cfg.block_min, cfg.block_max, cfg.ny - 1)
        self.xs = np.concatenate([[0.0], np.cumsum(gaps_x)])
        self.ys = np.concatenate([[0.0], np.cumsum(gaps_y)])
        self._xs_list, self._ys_list = self.xs.tolist(), self.ys.tolist()
        self.signals: Dict[Node, Signal] = {}
        for i in range(cfg.nx):
            for j in range(cfg.ny):
                node = (i, j)
                arms = [d for d in range(4) if self.neighbor(node, (d + 2) % 4) is not None]
                greens = {d: float(rng.uniform(cfg.green_min, cfg.green_max)) for d in arms}
                sig = Signal(node, arms, greens, cfg, 0.0)
                sig.offset = float(rng.uniform(0.0, sig.cycle))
                self.signals[node] = sig
        self.buildings = self._make_buildings(rng)
        self._make_ground(rng)

    # ----- topology -----
    def centre(self, node: Node) -> np.ndarray:
        return np.array([self.xs[node[0]], self.ys[node[1]]])

    def neighbor(self, node: Node, d: int) -> Optional[Node]:
        i, j = node[0] + int(DIRS[d][0]), node[1] + int(DIRS[d][1])
        if 0 <= i < self.cfg.nx and 0 <= j < self.cfg.ny:
            return (i, j)
        return None

    def exits(self, node: Node, heading: int) -> List[int]:
        """Headings a vehicle arriving with `heading` may leave `node` with (no U-turns)."""
        return [d for d in range(4) if d != (heading + 2) % 4 and self.neighbor(node, d)]

    def leg_length(self, a: Node, b: Node) -> float:
        return float(np.linalg.norm(self.centre(b) - self.centre(a))) - 2.0 * self.cfg.box

    def lane_offset(self, lane: int) -> float:
        return self.cfg.lane_width * (0.5 + lane)

    def leg_points(self, a: Node, d: int, lane: int) -> np.ndarray:
        """Start and end of a lane from intersection a heading d, box edge to box edge."""
        b = self.neighbor(a, d)
        off = right_of(d) * self.lane_offset(lane)
        p0 = self.centre(a) + DIRS[d] * self.cfg.box + off
        p1 = self.centre(b) - DIRS[d] * self.cfg.box + off
        return np.stack([p0, p1])

    def connector_points(self, node: Node, d_in: int, lane_in: int, d_out: int, lane_out: int
                         ) -> np.ndarray:
        """Path through an intersection from one lane to another (end points included)."""
        c = self.centre(node)
        p0 = c - DIRS[d_in] * self.cfg.box + right_of(d_in) * self.lane_offset(lane_in)
        p1 = c + DIRS[d_out] * self.cfg.box + right_of(d_out) * self.lane_offset(lane_out)
        if d_in == d_out:
            return np.stack([p0, p1])
        return bezier(p0, math.atan2(*DIRS[d_in][::-1]), p1, math.atan2(*DIRS[d_out][::-1]))

    def stop_line(self, node: Node, d: int) -> Tuple[np.ndarray, np.ndarray]:
        """Stop line (centre-line end, curb end) for traffic of heading d entering `node`."""
        c = self.centre(node)
        back = self.cfg.box + self.cfg.crosswalk + self.cfg.stop_gap
        p = c - DIRS[d] * back
        return p, p + right_of(d) * self.cfg.half_road

    @property
    def stop_back(self) -> float:
        """Stop line distance before the end of a leg [m]."""
        return self.cfg.crosswalk + self.cfg.stop_gap

    def light_id(self, node: Node, d: int) -> str:
        return f'tl_{node[0]}_{node[1]}_{DIR_NAMES[d]}'

    def on_road(self, xy: np.ndarray) -> np.ndarray:
        """Whether (N, 2) points lie on a carriageway (roads and intersection boxes)."""
        xy = np.asarray(xy, float).reshape(-1, 2)
        hr = self.cfg.half_road
        x0, x1, y0, y1 = self.xs[0], self.xs[-1], self.ys[0], self.ys[-1]
        dy = np.min(np.abs(xy[:, 1:2] - self.ys[None]), axis=1)
        dx = np.min(np.abs(xy[:, 0:1] - self.xs[None]), axis=1)
        horiz = (dy <= hr) & (xy[:, 0] >= x0 - hr) & (xy[:, 0] <= x1 + hr)
        vert = (dx <= hr) & (xy[:, 1] >= y0 - hr) & (xy[:, 1] <= y1 + hr)
        # Kerb corners are rounded (radius = sidewalk width, centred on the box corner) where
        # two arms meet, so turning cars stay on the carriageway.
        box = self.cfg.box
        ix = np.argmin(np.abs(xy[:, 0:1] - self.xs[None]), axis=1)
        iy = np.argmin(np.abs(xy[:, 1:2] - self.ys[None]), axis=1)
        ax, ay = xy[:, 0] - self.xs[ix], xy[:, 1] - self.ys[iy]
        corner = (np.abs(ax) < box) & (np.abs(ay) < box) & (dx > hr) & (dy > hr)
        if np.any(corner):
            nx, ny = self.cfg.nx, self.cfg.ny
            arm_x = np.where(ax > 0, ix + 1 < nx, ix > 0)
            arm_y = np.where(ay > 0, iy + 1 < ny, iy > 0)
            far = np.hypot(box - np.abs(ax), box - np.abs(ay)) > self.cfg.sidewalk
            corner &= arm_x & arm_y & far
        return horiz | vert | corner

    def on_road_point(self, x: float, y: float) -> bool:
        """on_road() of one point, cheap: straight strips only (kerb corners count as off)."""
        hr = self.cfg.half_road
        i = bisect.bisect_left(self._xs_list, x)
        j = bisect.bisect_left(self._ys_list, y)
        dx = min(abs(x - self._xs_list[k]) for k in (i - 1, i) if 0 <= k < len(self._xs_list))
        dy = min(abs(y - self._ys_list[k]) for k in (j - 1, j) if 0 <= k < len(self._ys_list))
        x0, x1, y0, y1 = self._xs_list[0], self._xs_list[-1], self._ys_list[0], self._ys_list[-1]
        return (dy <= hr and x0 - hr <= x <= x1 + hr) or (dx <= hr and y0 - hr <= y <= y1 + hr)

    @property
    def extent(self) -> Tuple[float, float, float, float]:
        m = self.cfg.margin
        return (self.xs[0] - m, self.xs[-1] + m, self.ys[0] - m, self.ys[-1] + m)

    # ----- buildings -----
    def _make_buildings(self, rng: np.random.Generator) -> List[Building]:
        c = self.cfg
        edge = c.box + 4.0
        m = c.margin - 5.0
        ext_x = np.concatenate([[self.xs[0] - m], self.xs, [self.xs[-1] + m]])
        ext_y = np.concatenate([[self.ys[0] - m], self.ys, [self.ys[-1] + m]])
        out = []
        for i in range(len(ext_x) - 1):
            for j in range(len(ext_y) - 1):
                bx0 = ext_x[i] + (edge if 0 < i else 0.0)
                bx1 = ext_x[i + 1] - (edge if i + 1 < len(ext_x) - 1 else 0.0)
                by0 = ext_y[j] + (edge if 0 < j else 0.0)
                by1 = ext_y[j + 1] - (edge if j + 1 < len(ext_y) - 1 else 0.0)
                out.extend(self._block_buildings(rng, bx0, bx1, by0, by1))
        return out

    @staticmethod
    def _block_buildings(rng, x0, x1, y0, y1) -> List[Building]:
        """Place buildings along the four sides of a block rectangle, with random gaps."""
        out = []
        w, h = x1 - x0, y1 - y0
        if w < 8 or h < 8:
            return out
        depth_max = min(18.0, h / 2 - 1), min(18.0, w / 2 - 1)
        # South and north rows span the full width; west and east fill what is between.
        for side in range(4):
            if side < 2:
                lo, hi = x0, x1
            else:
                lo, hi = y0 + depth_max[0] + 1, y1 - depth_max[0] - 1
            pos = lo
            while pos < hi - 6:
                front = float(min(rng.uniform(10, 26), hi - pos))
                if rng.random() < 0.18:             # a gap (plaza / parking)
                    pos += front
                    continue
                dmax = depth_max[0] if side < 2 else depth_max[1]
                depth = float(rng.uniform(min(8.0, dmax), dmax)) if dmax > 4 else 0.0
                if depth <= 0:
                    break
                height = float(rng.choice([rng.uniform(5, 12), rng.uniform(12, 35)], p=[0.6, 0.4]))
                mid = pos + front / 2
                back = float(rng.uniform(0.0, 6.0))
                depth = max(4.0, depth - back)
                if side == 0:
                    b = Building(mid, y0 + back + depth / 2, front - 0.6, depth, height, 0)
                elif side == 1:
                    b = Building(mid, y1 - back - depth / 2, front - 0.6, depth, height, 0)
                elif side == 2:
                    b = Building(x0 + back + depth / 2, mid, depth, front - 0.6, height, 0)
                else:
                    b = Building(x1 - back - depth / 2, mid, depth, front - 0.6, height, 0)
                out.append(dataclasses.replace(b, colour=int(rng.integers(0, 8))))
                pos += front
        return out

    # ----- ground class map -----
    def _make_ground(self, rng: np.random.Generator):
        c = self.cfg
        x0, x1, y0, y1 = self.extent
        res = c.texture_res
        self.tex_origin = (x0, y0)
        self.tex_res = res
        w, h = int(math.ceil((x1 - x0) / res)), int(math.ceil((y1 - y0) / res))
        g = np.full((h, w), GRASS, np.uint8)
        self.ground = g

        def fill(ax0, ax1, ay0, ay1, cls):
            i0 = max(0, int(round((ax0 - x0) / res)))
            i1 = min(w, int(round((ax1 - x0) / res)))
            j0 = max(0, int(round((ay0 - y0) / res)))
            j1 = min(h, int(round((ay1 - y0) / res)))
            if i1 > i0 and j1 > j0:
                g[j0:j1, i0:i1] = cls

        hr, box = c.half_road, c.box
        # Plazas in block interiors, then sidewalks, then carriageways.
        fill(self.xs[0] - box, self.xs[-1] + box, self.ys[0] - box, self.ys[-1] + box, PLAZA)
        for y in self.ys:
            fill(self.xs[0] - box, self.xs[-1] + box, y - box, y + box, SIDEWALK)
        for x in self.xs:
            fill(x - box, x + box, self.ys[0] - box, self.ys[-1] + box, SIDEWALK)
        # Block interiors back to grass/plaza patches (lawns).
        for i in range(c.nx - 1):
            for j in range(c.ny - 1):
                if rng.random() < 0.5:
                    fill(self.xs[i] + box + 1, self.xs[i + 1] - box - 1,
                         self.ys[j] + box + 1, self.ys[j + 1] - box - 1, GRASS)
        for y in self.ys:
            fill(self.xs[0] - hr, self.xs[-1] + hr, y - hr, y + hr, ROAD)
        for x in self.xs:
            fill(x - hr, x + hr, self.ys[0] - hr, self.ys[-1] + hr, ROAD)
        # Rounded kerb corners where two arms meet (as on_road()).
        rad = c.sidewalk
        n = int(round(rad / res))
        jj, ii = np.mgrid[0:n, 0:n]
        quarter = np.hypot(n - ii - 0.5, n - jj - 0.5) * res > rad   # far from (box, box)
        for node in self.signals:
            cx, cy = self.centre(node)
            for sx in (-1, 1):
                for sy in (-1, 1):
                    if self.neighbor(node, 0 if sx > 0 else 2) is None or \
                            self.neighbor(node, 1 if sy > 0 else 3) is None:
                        continue
                    i0 = int(round((cx + sx * hr - x0) / res)) - (n if sx < 0 else 0)
                    j0 = int(round((cy + sy * hr - y0) / res)) - (n if sy < 0 else 0)
                    mask = quarter[::sy, ::sx]
                    view = g[j0:j0 + n, i0:i0 + n]
                    if view.shape == mask.shape:
                        view[mask] = ROAD
        # Asphalt patches for texture.
        for _ in range(int(c.nx * c.ny * 6)):
            px = rng.uniform(self.xs[0], self.xs[-1])
            py = self.ys[int(rng.integers(0, c.ny))] + rng.uniform(-hr + 1, hr - 1)
            if rng.random() < 0.5:
                px, py = self.xs[int(rng.integers(0, c.nx))] + rng.uniform(-hr + 1, hr - 1), \
                    rng.uniform(self.ys[0], self.ys[-1])
            s = rng.uniform(0.6, 2.0)
            fill(px - s, px + s, py - s * 0.5, py + s * 0.5, ROAD_DARK)
        # Markings per leg (both directions of a road share it: draw per road once).
        lw = c.lane_width
        for i in range(c.nx):
            for j in range(c.ny):
                for d in (0, 1):
                    a = (i, j)
                    b = self.neighbor(a, d)
                    if b is None:
                        continue
                    self._mark_road(fill, a, b, d, lw)
        # Crosswalks and stop lines on every existing arm of every intersection.
        for node in self.signals:
            cx, cy = self.centre(node)
            for d in range(4):
                if self.neighbor(node, d) is None:
                    continue
                self._mark_arm(fill, cx, cy, d)

    def _mark_road(self, fill, a, b, d, lw):
        c = self.cfg
        p0 = self.centre(a) + DIRS[d] * c.box
        p1 = self.centre(b) - DIRS[d] * c.box
        lo, hi = (p0[d % 2], p1[d % 2])
        y = self.centre(a)[1 - d % 2]

        def band(a0, a1, l0, l1, cls):
            if d == 0:
                fill(a0, a1, y + l0, y + l1, cls)
            else:
                fill(y + l0, y + l1, a0, a1, cls)

        band(lo, hi, 0.08, 0.22, YELLOW)
        band(lo, hi, -0.22, -0.08, YELLOW)
        band(lo, hi, 2 * lw - 0.3, 2 * lw - 0.15, WHITE)
        band(lo, hi, -2 * lw + 0.15, -2 * lw + 0.3, WHITE)
        pos = lo + 2.0
        while pos < hi - 2.0:
            end = min(pos + 3.0, hi - 2.0)
            band(pos, end, lw - 0.08, lw + 0.08, WHITE)
            band(pos, end, -lw - 0.08, -lw + 0.08, WHITE)
            pos += 9.0

    def _mark_arm(self, fill, cx, cy, d):
        """Zebra crosswalk across the arm in direction d and the stop line of inbound traffic."""
        c = self.cfg
        hr, box = c.half_road, c.box
        a0, a1 = box + 0.3, box + c.crosswalk - 0.3
        sgn = 1.0 if d in (0, 1) else -1.0
        along = sorted([sgn * a0, sgn * a1])
        # Inbound traffic on arm d drives heading (d + 2) % 4 and keeps to its right.
        stop0, stop1 = sorted([sgn * (box + c.crosswalk + c.stop_gap),
                               sgn * (box + c.crosswalk + c.stop_gap + 0.5)])
        inbound_right = right_of((d + 2) % 4)
        lat_sign = float(inbound_right[1] if d % 2 == 0 else inbound_right[0])
        lat = sorted([0.0, lat_sign * hr])
        k = -hr + 0.4
        while k < hr - 0.4:
            if d % 2 == 0:
                fill(cx + along[0], cx + along[1], cy + k, cy + k + 0.6, WHITE)
            else:
                fill(cx + k, cx + k + 0.6, cy + along[0], cy + along[1], WHITE)
            k += 1.2
        if d % 2 == 0:
            fill(cx + stop0, cx + stop1, cy + lat[0], cy + lat[1], WHITE)
        else:
            fill(cx + lat[0], cx + lat[1], cy + stop0, cy + stop1, WHITE)


def route_path(town: Town, nodes: List[Node], lanes: List[int], first_leg: int
               ) -> Tuple[Path, List[dict]]:
    """
    Path along legs nodes[k] -> nodes[k+1] from `first_leg`, with connectors between.

    Returns the path and its pieces: dicts with kind ('leg' | 'conn'), leg index, s0, s1 and,
    for legs, the stop line arc length and the node / heading it guards.
    """
    pts: List[np.ndarray] = []
    pieces: List[dict] = []
    s = 0.0

    def heading(k):
        return int(np.argmax(DIRS @ (town.centre(nodes[k + 1]) - town.centre(nodes[k]))))

    for k in range(first_leg, len(nodes) - 1):
        d = heading(k)
        leg = town.leg_points(nodes[k], d, lanes[k])
        length = float(np.linalg.norm(leg[1] - leg[0]))
        pieces.append({'kind': 'leg', 'leg': k, 's0': s, 's1': s + length,
                       'stop_s': s + length - town.stop_back, 'node': nodes[k + 1],
                       'heading': d})
        pts.append(leg if not pts else leg[1:] if np.allclose(pts[-1][-1], leg[0]) else leg)
        s += length
        if k + 2 < len(nodes):
            d2 = heading(k + 1)
            conn = town.connector_points(nodes[k + 1], d, lanes[k], d2, lanes[k + 1])
            clen = float(np.sum(np.linalg.norm(np.diff(conn, axis=0), axis=1)))
            turn = (d2 - d) % 4
            pieces.append({'kind': 'conn', 'leg': k, 's0': s, 's1': s + clen,
                           'turn': turn, 'node': nodes[k + 1]})
            pts.append(conn[1:])
            s += clen
    return Path(np.concatenate(pts)), pieces


def extend_route(town: Town, nodes: List[Node], lanes: List[int], rng: np.random.Generator,
                 n_more: int, locked: int, turn_probs=(0.5, 0.25, 0.25)) -> None:
    """
    Append `n_more` random legs (straight / left / right where the grid allows).

    Legs with index < `locked` keep their lane (a vehicle is on them or its path is built).
    """
    for _ in range(n_more):
        a, b = nodes[-2], nodes[-1]
        d = int(np.argmax(DIRS @ (town.centre(b) - town.centre(a))))
        options, weights = [], []
        for turn, p in zip((0, 1, 3), turn_probs):
            d2 = (d + turn) % 4
            if town.neighbor(b, d2) is not None:
                options.append(d2)
                weights.append(p)
        w = np.array(weights) / np.sum(weights)
        d2 = options[int(rng.choice(len(options), p=w))]
        nodes.append(town.neighbor(b, d2))
        turn = (d2 - d) % 4
        # The leg into b gets the lane its turn needs (right turns from the curb lane), unless
        # a vehicle already drives on it.
        if len(lanes) - 1 >= locked:
            lanes[-1] = 1 if turn == 3 else 0 if turn == 1 else lanes[-1]
        lanes.append(int(rng.integers(0, 2)))
