"""
Closed-loop metrics in the CARLA leaderboard's style.

Driving score = route completion x infraction penalty, per scenario, then averaged
(leaderboard 1.0: https://leaderboard.carla.org/#evaluation-and-metrics). Penalties are
multiplicative per occurrence: collision with a pedestrian 0.50, with a vehicle 0.60, running
a red light 0.70. Off-road driving follows the leaderboard's rule that the part of the route
driven off the road does not count towards route completion, and leaving the route by more
than ROUTE_DEVIATION_M ends the scenario (the leaderboard's route deviation).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Sequence

PENALTY_PEDESTRIAN = 0.50
PENALTY_VEHICLE = 0.60
PENALTY_RED_LIGHT = 0.70
ROUTE_DEVIATION_M = 15.0    # lateral distance from the route that ends a scenario [m]
ON_ROUTE_LATERAL_M = 4.0    # progress counts only within this of the route (one lane + margin)


@dataclasses.dataclass
class ScenarioResult:
    """One scenario's outcome; percentages in [0, 100]."""

    scenario: str
    seed: int
    duration: float                 # simulated seconds driven
    route_length: float             # [m] what the expert drives in the same time (the route)
    route_progress: float           # [m] credited progress (on road, on route)
    collisions_vehicle: int = 0
    collisions_pedestrian: int = 0
    red_lights: int = 0
    off_road_events: int = 0
    off_road_time: float = 0.0      # [s]
    route_deviation: bool = False   # ended early: left the route
    plans: int = 0                  # plans received
    plans_missed: int = 0           # camera sets without a plan before the timeout
    latency_ms_p50: float = math.nan   # cameras published -> plan received (wall clock)
    latency_ms_p95: float = math.nan
    wall_time: float = 0.0          # [s]

    @property
    def route_completion(self) -> float:
        if self.route_length <= 0:
            return 100.0
        return 100.0 * min(1.0, self.route_progress / self.route_length)

    @property
    def infraction_penalty(self) -> float:
        return (PENALTY_PEDESTRIAN ** self.collisions_pedestrian
                * PENALTY_VEHICLE ** self.collisions_vehicle
                * PENALTY_RED_LIGHT ** self.red_lights)

    @property
    def driving_score(self) -> float:
        return self.route_completion * self.infraction_penalty

    @property
    def planner_hz(self) -> float:
        """Plans per second the planner sustains in the loop (1 / median latency)."""
        return 1000.0 / self.latency_ms_p50 if self.latency_ms_p50 > 0 else math.nan

    def to_dict(self) -> Dict[str, object]:
        d = dataclasses.asdict(self)
        d.update(route_completion=self.route_completion,
                 infraction_penalty=self.infraction_penalty, driving_score=self.driving_score,
                 planner_hz=self.planner_hz)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Dict[str, object]) -> 'ScenarioResult':
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: (math.nan if v is None else v) for k, v in d.items() if k in names}
        return cls(**kw)


def summarize(results: Sequence[ScenarioResult]) -> Dict[str, float]:
    """Leaderboard aggregate: means of the per-scenario scores, totals of infractions."""
    n = len(results)
    if n == 0:
        return {'scenarios': 0}
    lat = [r.latency_ms_p50 for r in results if not math.isnan(r.latency_ms_p50)]
    return {
        'scenarios': n,
        'driving_score': sum(r.driving_score for r in results) / n,
        'route_completion': sum(r.route_completion for r in results) / n,
        'infraction_penalty': sum(r.infraction_penalty for r in results) / n,
        'collisions_vehicle': sum(r.collisions_vehicle for r in results),
        'collisions_pedestrian': sum(r.collisions_pedestrian for r in results),
        'red_lights': sum(r.red_lights for r in results),
        'off_road_events': sum(r.off_road_events for r in results),
        'route_deviations': sum(int(r.route_deviation) for r in results),
        'latency_ms_p50': sorted(lat)[len(lat) // 2] if lat else math.nan,
    }


def markdown_table(results: Sequence[ScenarioResult], title: str = '') -> str:
    """Per-scenario rows and a mean row, as printed by `vlmad demo`."""
    head = ('| scenario | seed | route compl. % | coll. veh | coll. ped | red lights | '
            'off-road | penalty | driving score | planner Hz | latency p50/p95 ms |')
    lines: List[str] = [f'### {title}', ''] if title else []
    lines += [head, '|' + '---|' * 11]

    def fmt(x, spec='.1f'):
        return '-' if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)

    for r in results:
        lines.append(
            f'| {r.scenario}{" (deviated)" if r.route_deviation else ""} | {r.seed} | '
            f'{fmt(r.route_completion)} | {r.collisions_vehicle} | {r.collisions_pedestrian} | '
            f'{r.red_lights} | {r.off_road_events} | {fmt(r.infraction_penalty, ".2f")} | '
            f'{fmt(r.driving_score)} | {fmt(r.planner_hz)} | '
            f'{fmt(r.latency_ms_p50, ".0f")}/{fmt(r.latency_ms_p95, ".0f")} |')
    s = summarize(results)
    if results:
        lines.append(
            f'| **mean** | | {fmt(s["route_completion"])} | {s["collisions_vehicle"]} | '
            f'{s["collisions_pedestrian"]} | {s["red_lights"]} | {s["off_road_events"]} | '
            f'{fmt(s["infraction_penalty"], ".2f")} | **{fmt(s["driving_score"])}** | | |')
    return '\n'.join(lines)
