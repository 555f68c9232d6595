"""
How many model-input pixels the objects the expert reacts to cover when it starts reacting.

Two halves (plain Python, no ROS), joined by `vlmad bench visibility` (docs/VISIBILITY.md):

* `measure_reactions`: drive seeded scenes of the synthetic world with the expert and record,
  per scenario, the distance to the object at the first decision where the expert reacts to it
  (definition in `reacting_to`).
* `project_object`: put that object's 3D box straight ahead in the ego lane at a distance
  (traffic lights where the renderer puts them) and project it through CAM_FRONT at a model
  input size, or through the zoom view (a crop of CAM_FRONT, centred or lifted, resized to the
  same size). The lamps are projected once more from the stop line, where a green_light ego
  waits for green.

The question it answers: can a planner that reads W x H images see the light, pedestrian or
car at the distance where the expert it imitates already acts on it?
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from vlmad_ros.rig import Camera, load_rig
from vlmad_ros.synth import expert
from vlmad_ros.synth.scenarios import GREEN_LIGHT_WAIT, make_world, SceneConfig
from vlmad_ros.synth.town import TownConfig
from vlmad_ros.synth.world import World

DT = 0.1                    # one expert decision per step (world.DECISION_DT)
REACTION_MARGIN = 0.5       # [m/s^2] below the free-road acceleration = reacting
MAX_DURATION = 25.0         # [s] per scene; a scene without a reaction by then is dropped
MIN_AREA = 4.0              # [px] the criterion: the object's silhouette covers >= 4 pixels

# Scenario -> (source the expert reacts to, object the table projects).
SCENARIO_SOURCES = {'red_light': 'light', 'lead_brake': 'veh_lead',
                    'pedestrian': 'ped_stepout', 'stopped_vehicle': 'veh_stalled'}

# Traffic-light geometry of render.SceneRenderer (_static_parts / _light_parts), in metres.
HEAD_DEPTH, HEAD_WIDTH, HEAD_HEIGHT = 0.5, 0.7, 1.7
FAR_HEAD_Z0, NEAR_HEAD_Z0 = 4.6, 2.4    # head bottoms: overhead far side, kerb near side
LAMP_SIZE = 0.44                         # lamp quads; the red one on top (z0 + 1.4 centre)
LAMP_AHEAD = 0.27                        # lamp quads this far in front of the head centre
RED_LAMP_CENTRE = 1.4                    # above the head bottom
PEDESTRIAN_BOX = (0.6, 0.6, 1.75)        # length, width, height
CAR_BOX = (4.5, 1.85, 1.5)

PLAIN_SIZES = ((96, 56), (128, 72), (160, 90), (192, 112))
ZOOM_BASE = (128, 72)
ZOOMS = ((2.0, 0.0), (2.5, 0.0), (3.0, 0.0), (4.0, 0.0), (3.0, 0.05))   # (zoom, lift)


# ----- the expert's reaction -----
@dataclasses.dataclass(frozen=True)
class Reaction:
    """The first decision at which the ego's expert reacts to its scenario's object."""

    scenario: str
    seed: int
    t: float              # [s] into the scene
    distance: float       # [m] ego front bumper -> stop line / object's near face
    speed: float          # [m/s] ego speed then
    how: str              # 'brake' or 'lane_change'
    censored: bool        # at the first decision: the object was already inside its range


def ego_constraints(world: World, obs: expert.Obstacles) -> Tuple[float, Dict[str, float]]:
    """
    Free-road IDM acceleration of the ego's expert and the acceleration each source alone asks.

    Sources are agent ids (leaders in the corridor) and 'light'; the expert takes the minimum
    (expert.decide), so the binding source is the one the expert reacts to.
    """
    veh, p = world.ego, world.ego.params
    v0 = expert.free_speed(veh)
    out: Dict[str, float] = {}
    for gap, v_lead, j in expert.leaders(veh, obs, 0):
        a = expert.idm(veh.v, v0, gap, veh.v - v_lead, p, p.s0)
        out[obs.ids[j]] = min(out.get(obs.ids[j], math.inf), a)
    saved = set(veh.committed)        # light_target records yellow-light commitments
    stop_gap = expert.light_target(world.town, veh, world.t)
    veh.committed.clear()
    veh.committed.update(saved)
    if stop_gap is not None:
        out['light'] = (-p.b_max if stop_gap < 0.0 else
                        expert.idm(veh.v, v0, stop_gap + 0.3, veh.v, p, 0.3))
    clip = {k: float(np.clip(a, -p.b_max, p.a_max)) for k, a in out.items()}
    return float(np.clip(expert.idm(veh.v, v0, None, 0.0, p, p.s0), -p.b_max, p.a_max)), clip


def reacting_to(source: str, a_free: float, constraints: Dict[str, float],
                margin: float = REACTION_MARGIN) -> bool:
    """Whether `source` binds the expert's acceleration at least `margin` below free road."""
    if source not in constraints:
        return False
    a = constraints[source]
    return a <= min(constraints.values()) + 1e-9 and a < a_free - margin


def _stop_line_gap(world: World) -> Optional[float]:
    """Return the ego front -> next stop line distance along its path."""
    veh = world.ego
    front = veh.s + veh.front
    for piece in veh.pieces:
        if piece['kind'] == 'leg' and piece['stop_s'] >= front - 0.05:
            return float(piece['stop_s'] - front)
    return None


def _object_gap(world: World, obs: expert.Obstacles, oid: str) -> float:
    """Return the ego front bumper -> object's near face distance along the ego heading."""
    j = obs.ids.index(oid)
    heading = np.array([math.cos(world.ego.yaw), math.sin(world.ego.yaw)])
    ahead = float((obs.xy[j] - world.ego_front()) @ heading)
    rel = obs.yaw[j] - world.ego.yaw
    half = 0.5 * (obs.length[j] * abs(math.cos(rel)) + obs.width[j] * abs(math.sin(rel)))
    return ahead - half


def _lead_braking(world: World) -> bool:
    lead = next((v for v in world.vehicles if v.id == 'veh_lead'), None)
    return lead is not None and lead.brake is not None and world.t >= lead.brake.t0


def probe_vehicle_range(world: World, vid: str, margin: float = REACTION_MARGIN,
                        step: float = 0.5) -> Optional[float]:
    """
    Largest gap at which the expert would react to vehicle `vid`, at the ego's present state.

    For scenes that start inside the reaction range (the stalled vehicle is placed 35-60 m
    ahead): the vehicle is moved along its own path from beyond the expert's look-ahead back to
    where it is, and the first (largest) gap at which it binds is returned; it is put back.
    """
    veh = next((v for v in world.vehicles if v.id == vid), None)
    if veh is None:
        return None
    s0 = veh.s
    try:
        for extra in np.arange(world.ego.params.lookahead, 0.0, -step):
            veh.s = s0 + float(extra)
            veh.update_pose(0.0)
            obs = world.obstacles()
            a_free, cons = ego_constraints(world, obs)
            if reacting_to(vid, a_free, cons, margin):
                return _object_gap(world, obs, vid)
    finally:
        veh.s = s0
        veh.update_pose(0.0)
    return None


def first_reaction(scenario: str, seed: int, duration: float = MAX_DURATION,
                   margin: float = REACTION_MARGIN) -> Optional[Reaction]:
    """
    Drive one seeded scene with the expert; return its first reaction to the scenario object.

    Reacting: the scenario's source (the light, the lead / stalled vehicle, the stepping-out
    pedestrian) binds the expert's acceleration at least `margin` below its free-road IDM
    acceleration; for lead_brake only once the lead has started braking (following it before
    is car following, not a reaction); for stopped_vehicle a lane change also counts. A scene
    already reacting at its first decision is censored: probe_vehicle_range gives the range.
    """
    world = make_world(np.random.default_rng(seed), SceneConfig(scenario=scenario))
    source = SCENARIO_SOURCES[scenario]
    for k in range(int(round(duration / DT))):
        obs = world.obstacles()
        a_free, cons = ego_constraints(world, obs)
        if source == 'light':
            gap = _stop_line_gap(world)
            hit = reacting_to(source, a_free, cons, margin)   # present only on yellow / red
        else:
            gap = _object_gap(world, obs, source) if source in obs.ids else None
            hit = reacting_to(source, a_free, cons, margin)
            if scenario == 'lead_brake':
                hit = hit and _lead_braking(world)
        if k == 0 and hit:
            # Already reacting at the first decision: the scene started inside the range.
            probed = probe_vehicle_range(world, source, margin)
            return Reaction(scenario, seed, 0.0, float(gap if probed is None else probed),
                            float(world.ego.v), 'brake', censored=True)
        t, speed, lc_before = world.t, world.ego.v, world.ego.lc_t >= 0
        world.step(DT)
        how = 'brake'
        if scenario == 'stopped_vehicle' and not lc_before and world.ego.lc_t >= 0:
            hit, how = True, 'lane_change'
        if hit and gap is not None:
            return Reaction(scenario, seed, round(t, 3), float(gap), float(speed), how,
                            censored=False)
    return None


def measure_reactions(seeds: Sequence[int], scenarios: Sequence[str] = tuple(SCENARIO_SOURCES),
                      duration: float = MAX_DURATION, margin: float = REACTION_MARGIN
                      ) -> Dict[str, List[Reaction]]:
    """Run first_reaction for every scenario and seed (scenes without one are left out)."""
    out: Dict[str, List[Reaction]] = {}
    for scenario in scenarios:
        found = [first_reaction(scenario, s, duration, margin) for s in seeds]
        out[scenario] = [r for r in found if r is not None]
    return out


def summarise(reactions: Sequence[Reaction], n_seeds: int) -> Dict[str, float]:
    """
    Median, 90th percentile and max distance of one scenario's reactions, with counts.

    Reactions at distance <= 0 (a pedestrian already beside the bumper) are counted as
    'beside' and left out: nothing is ahead for the front camera to show.
    """
    ahead = [r for r in reactions if r.distance > 0.0]
    d = np.array([r.distance for r in ahead], float)
    out = {'seeds': n_seeds, 'n': len(d), 'beside': len(reactions) - len(ahead),
           'censored': sum(r.censored for r in ahead),
           'lane_changes': sum(r.how == 'lane_change' for r in ahead)}
    if len(d):
        out.update(median=round(float(np.median(d)), 1),
                   p90=round(float(np.percentile(d, 90)), 1), max=round(float(d.max()), 1))
    return out


# ----- projection -----
@dataclasses.dataclass(frozen=True)
class Placement:
    """An upright box in base_link: near face at x_near, centred on y, bottom at z0."""

    x_near: float
    y: float
    z0: float
    length: float
    width: float
    height: float

    def corners(self) -> np.ndarray:
        """Return the (8, 3) corners in base_link."""
        xs = (self.x_near, self.x_near + self.length)
        ys = (self.y - self.width / 2, self.y + self.width / 2)
        zs = (self.z0, self.z0 + self.height)
        return np.array([[x, y, z] for x in xs for y in ys for z in zs])


def ego_front_x() -> float:
    """Return the base_link x of the ego's front bumper (base_link is the rear axle)."""
    from vlmad_ros.synth.agents import EGO_CENTER_OFFSET, EGO_LENGTH
    return EGO_CENTER_OFFSET + EGO_LENGTH / 2


def place(kind: str, distance: float, lane: int = 0,
          town: TownConfig = TownConfig()) -> Placement:
    """
    Box of an object kind with the ego front bumper `distance` metres from it.

    'pedestrian' / 'car': near face `distance` ahead, centred in the ego lane, on the ground.
    Lights ('far_head', 'near_head', 'far_lamp', 'near_lamp'; lamp = the red lamp quad):
    `distance` is to the stop line and the box sits where render.SceneRenderer puts it for
    an ego in lane `lane` (0 next to the centre line, 1 at the curb).
    """
    x0 = ego_front_x() + distance
    if kind == 'pedestrian':
        return Placement(x0, 0.0, 0.0, *PEDESTRIAN_BOX)
    if kind == 'car':
        return Placement(x0, 0.0, 0.0, *CAR_BOX)
    ego_right = town.lane_width * (0.5 + lane)         # ego lane centre, right of centre line
    # Stop line at box + crosswalk + stop_gap before the node; far head at box - 0.5 after it,
    # near head at box + crosswalk before it (the crosswalk's near edge).
    stop_back = town.box + town.crosswalk + town.stop_gap
    if kind.startswith('far'):
        ahead, right, z0 = stop_back + town.box - 0.5, town.lane_width, FAR_HEAD_Z0
    elif kind.startswith('near'):
        ahead, right, z0 = town.stop_gap, town.half_road + 1.0, NEAR_HEAD_Z0
    else:
        raise ValueError(f'unknown object kind {kind!r}')
    y = -(right - ego_right)                            # base_link y is left
    if kind.endswith('lamp'):
        zc = z0 + RED_LAMP_CENTRE
        return Placement(x0 + ahead - LAMP_AHEAD, y, zc - LAMP_SIZE / 2, 0.0, LAMP_SIZE,
                         LAMP_SIZE)
    return Placement(x0 + ahead - HEAD_DEPTH / 2, y, z0, HEAD_DEPTH, HEAD_WIDTH, HEAD_HEIGHT)


def zoom_camera(camera: Camera, width: int, height: int, zoom: float,
                lift: float = 0.0) -> Camera:
    """
    Return the zoom view (planner.zoom_view without its whole-pixel rounding) at width x height.

    The window: 1/zoom of the frame, centred on the frame centre, `lift` frame heights higher.
    """
    small = camera.scaled(width, height)
    top = (height - height / zoom) / 2 - lift * height
    return dataclasses.replace(small, fx=small.fx * zoom, fy=small.fy * zoom,
                               cx=(small.cx - (width - width / zoom) / 2) * zoom,
                               cy=(small.cy - top) * zoom)


def _convex_hull(pts: np.ndarray) -> np.ndarray:
    """Return the hull of (N, 2) points, counter-clockwise (monotone chain)."""
    pts = sorted(set(map(tuple, np.round(pts, 9).tolist())))
    if len(pts) < 3:
        return np.array(pts, float).reshape(-1, 2)

    def half(points):
        out = []
        for p in points:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1], float)


def _clip_to_image(poly: np.ndarray, width: int, height: int) -> np.ndarray:
    """Sutherland-Hodgman clip of a convex polygon to the image rectangle."""
    for axis, bound, keep_below in ((0, 0.0, False), (0, width, True), (1, 0.0, False),
                                    (1, height, True)):
        if len(poly) == 0:
            break
        out = []
        for i in range(len(poly)):
            a, b = poly[i], poly[(i + 1) % len(poly)]
            ina = a[axis] <= bound if keep_below else a[axis] >= bound
            inb = b[axis] <= bound if keep_below else b[axis] >= bound
            if ina:
                out.append(a)
            if ina != inb:
                t = (bound - a[axis]) / (b[axis] - a[axis])
                out.append(a + t * (b - a))
        poly = np.array(out, float).reshape(-1, 2)
    return poly


def _pixel_centres_inside(poly: np.ndarray) -> int:
    """Count pixel centres (i + 0.5, j + 0.5) inside a convex counter-clockwise polygon."""
    if len(poly) < 3:
        return 0
    u0, v0 = np.floor(poly.min(0) - 0.5).astype(int)
    u1, v1 = np.ceil(poly.max(0) + 0.5).astype(int)
    u, v = np.meshgrid(np.arange(u0, u1 + 1) + 0.5, np.arange(v0, v1 + 1) + 0.5)
    inside = np.ones(u.shape, bool)
    for a, b in zip(poly, np.roll(poly, -1, axis=0)):
        inside &= (b[0] - a[0]) * (v - a[1]) - (b[1] - a[1]) * (u - a[0]) >= 0
    return int(inside.sum())


def project_box(camera: Camera, box: Placement) -> Dict[str, float]:
    """
    Pixel footprint of a box in one camera image (clipped to the image).

    Returns width and height of the clipped silhouette's bounding box [px], `area` = the
    silhouette's (convex hull of the projected corners) exact area [px^2], which is the number
    of pixel centres inside it averaged over sub-pixel placements, and `centres` = that number
    at this exact placement (it jumps, e.g. 2 to 8 for a 1.6 x 3.8 px box). All zero when the
    box is outside the image.
    """
    uv, depth = camera.project(box.corners())
    if np.any(depth <= 0.05):
        raise ValueError('project_box: box reaches behind the camera')
    poly = _clip_to_image(_convex_hull(uv), camera.width, camera.height)
    if len(poly) < 3:
        return {'w': 0.0, 'h': 0.0, 'area': 0.0, 'centres': 0}
    w, h = poly.max(0) - poly.min(0)
    x, y = poly[:, 0], poly[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    return {'w': round(float(w), 2), 'h': round(float(h), 2), 'area': round(area, 2),
            'centres': _pixel_centres_inside(poly)}


def project_object(camera: Camera, kind: str, distance: float) -> Dict[str, float]:
    """Project an object kind at a distance; lights: the worse of the two ego lanes."""
    if kind in ('pedestrian', 'car'):
        return project_box(camera, place(kind, distance))
    results = [project_box(camera, place(kind, distance, lane)) for lane in (0, 1)]
    return min(results, key=lambda r: r['area'])


# ----- the table -----
# Rows: (label, object kind, scenario whose reaction distances place it).
# The light rows at the stop line (stat 'stop line'): where a green_light ego waits for green.
ROWS = (('red light: far-side head', 'far_head', 'red_light'),
        ('red light: far-side red lamp', 'far_lamp', 'red_light'),
        ('red light: near-side head', 'near_head', 'red_light'),
        ('red light: near-side red lamp', 'near_lamp', 'red_light'),
        ('pedestrian stepping out', 'pedestrian', 'pedestrian'),
        ('car: braking lead', 'car', 'lead_brake'),
        ('car: stalled in lane', 'car', 'stopped_vehicle'))


def input_views(plain: Sequence[Tuple[int, int]] = PLAIN_SIZES,
                zoom_base: Tuple[int, int] = ZOOM_BASE,
                zooms: Sequence[Tuple[float, float]] = ZOOMS,
                rig: str = 'nuscenes') -> List[dict]:
    """Candidate inputs: CAM_FRONT as the model sees it, per plain size and per zoom view."""
    cam = load_rig(rig)['CAM_FRONT']
    views = [{'name': f'{w}x{h}', 'camera': cam.scaled(w, h), 'plain': None,
              'pixels': 6 * w * h} for w, h in plain]
    w, h = zoom_base
    for z, lift in zooms:
        name = f'{w}x{h} + zoom {z:g}' + (f' lift {lift:g}' if lift else '')
        views.append({'name': name, 'camera': zoom_camera(cam, w, h, z, lift),
                      'plain': cam.scaled(w, h), 'pixels': 7 * w * h})
    return views


def visibility_table(summary: Dict[str, Dict], views: Sequence[dict]) -> List[dict]:
    """
    One entry per row and statistic (p90, max): the footprint in every candidate view.

    A cell passes when the silhouette covers >= MIN_AREA pixels (project_box's area); a zoom
    column passes when the zoom view or the plain view beside it does (the model gets both).
    """
    rows = []
    for label, kind, scenario in ROWS:
        at = {stat: summary.get(scenario, {}).get(stat) for stat in ('p90', 'max')}
        if kind.endswith('lamp'):
            at['stop line'] = GREEN_LIGHT_WAIT
            label = label.replace('red light', 'light')
        for stat, d in at.items():
            if d is not None:
                rows.append({'label': label, 'kind': kind, 'scenario': scenario, 'stat': stat,
                             'distance': d, 'cells': _cells(views, kind, d)})
    return rows


def _cells(views: Sequence[dict], kind: str, distance: float) -> Dict[str, dict]:
    """One object's footprint in every view; a zoom view passes if its plain frame does."""
    cells = {}
    for v in views:
        r = project_object(v['camera'], kind, distance)
        ok = r['area'] >= MIN_AREA
        if v['plain'] is not None:
            ok = ok or project_object(v['plain'], kind, distance)['area'] >= MIN_AREA
        cells[v['name']] = dict(r, min_side=min(r['w'], r['h']), passes=ok)
    return cells


def light_passes(rows: Sequence[dict], view: str) -> bool:
    """Whether a red lamp is readable at every light distance (either head suffices)."""
    for stat in ('p90', 'max', 'stop line'):
        lamps = [r for r in rows if r['kind'].endswith('lamp') and r['stat'] == stat]
        if lamps and not any(r['cells'][view]['passes'] for r in lamps):
            return False
    return True


def _fmt_cell(c: dict) -> str:
    return f"{c['w']:.1f}x{c['h']:.1f} ({c['area']:.1f})" + ('' if c['passes'] else ' ✗')


def markdown(summary: Dict[str, Dict], rows: Sequence[dict], views: Sequence[dict]) -> str:
    """Reaction distances and the visibility table as markdown."""
    lines = ['| scenario | reactions / seeds | median [m] | p90 [m] | max [m] | censored '
             '| beside | lane changes |', '|---|---|---|---|---|---|---|---|']
    for sc, s in summary.items():
        lines.append(f"| {sc} | {s['n']} / {s['seeds']} | {s.get('median', '-')} | "
                     f"{s.get('p90', '-')} | {s.get('max', '-')} | {s['censored']} | "
                     f"{s['beside']} | {s['lane_changes']} |")
    names = [v['name'] for v in views]
    lines += ['', '| object @ reaction distance | ' + ' | '.join(names) + ' |',
              '|---|' + '---|' * len(names)]
    for r in rows:
        label = f"{r['label']} @ {r['stat']} {r['distance']:.1f} m"
        lines.append(f'| {label} | ' + ' | '.join(_fmt_cell(r['cells'][n]) for n in names)
                     + ' |')
    ok = {n: light_passes(rows, n) and all(r['cells'][n]['passes'] for r in rows
                                           if not r['kind'].endswith(('lamp', 'head')))
          for n in names}
    lines.append('| **all kinds pass** (light: a red lamp of either head) | '
                 + ' | '.join('yes' if ok[n] else 'no' for n in names) + ' |')
    lines.append('| model input pixels per frame | '
                 + ' | '.join(f"{v['pixels']:,}" for v in views) + ' |')
    return '\n'.join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--seeds', type=int, default=20, help='seeded scenes per scenario')
    parser.add_argument('--first-seed', type=int, default=0)
    parser.add_argument('--margin', type=float, default=REACTION_MARGIN,
                        help='reacting = this far below the free-road acceleration [m/s^2]')
    parser.add_argument('--json', default='', metavar='PATH',
                        help="write the result as JSON here ('-': stdout, no markdown)")


def run(args) -> int:
    """Measure reaction distances, project the objects, print the table."""
    t0 = time.perf_counter()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    reactions = measure_reactions(seeds, margin=args.margin)
    summary = {sc: summarise(r, len(seeds)) for sc, r in reactions.items()}
    views = input_views()
    rows = visibility_table(summary, views)
    result = {'seeds': seeds, 'margin': args.margin, 'min_area': MIN_AREA,
              'reaction_distance': summary,
              'reactions': {sc: [dataclasses.asdict(x) for x in r]
                            for sc, r in reactions.items()},
              'views': {v['name']: {'pixels_per_frame': v['pixels'],
                                    'K': v['camera'].K.round(3).tolist()} for v in views},
              'rows': rows, 'seconds': round(time.perf_counter() - t0, 1)}
    if args.json == '-':
        print(json.dumps(result, indent=1))
        return 0
    print(markdown(summary, rows, views))
    print(f"\n({result['seconds']} s, seeds {seeds[0]}..{seeds[-1]})")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    return 0


def main(args) -> int:
    """Run the table (so the module also serves as a `vlmad` subcommand)."""
    return run(args)
