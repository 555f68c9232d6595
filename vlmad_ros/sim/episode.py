"""
One closed-loop scenario in the synthetic world.

Set-up, stepping with an external ego command, infraction monitoring and the result.

The route of a scenario is what the expert drives in the same seeded scene in the same time
(it obeys lights, yields and queues), so waiting at a red light does not cost completion and
the reference is the same on every machine.
"""
from __future__ import annotations

import dataclasses
import math
from typing import List, Optional, Tuple

import numpy as np

from vlmad_ros.sim.score import ON_ROUTE_LATERAL_M, ROUTE_DEVIATION_M, ScenarioResult
from vlmad_ros.synth.scenarios import make_world, SCENARIOS, SceneConfig
from vlmad_ros.synth.world import EgoControl, World
from vlmad_ros.types import Command


@dataclasses.dataclass(frozen=True)
class EpisodeSpec:
    """Which scene: scenario type, seed, simulated duration [s]."""

    scenario: str
    seed: int
    duration: float = 15.0

    def __post_init__(self):
        if self.scenario not in SCENARIOS:
            raise ValueError(f'scenario must be one of {sorted(SCENARIOS)}, got '
                             f'{self.scenario!r}')
        if not (math.isfinite(self.duration) and self.duration > 0):
            raise ValueError(f'duration must be > 0, got {self.duration}')

    @classmethod
    def parse(cls, text: str, duration: float) -> 'EpisodeSpec':
        """Parse 'scenario:seed' (e.g. 'red_light:3')."""
        name, _, seed = text.partition(':')
        try:
            return cls(name.strip(), int(seed) if seed else 0, duration)
        except ValueError as err:
            raise ValueError(f'episode {text!r}: {err}') from None


def make_scene(spec: EpisodeSpec) -> World:
    """Build the seeded scene of a spec (identical on every call)."""
    return make_world(np.random.default_rng(spec.seed), SceneConfig(scenario=spec.scenario))


def expert_route_length(spec: EpisodeSpec, dt: float) -> float:
    """Arc length the expert drives along the route in spec.duration [m]."""
    world = make_scene(spec)
    for _ in range(int(round(spec.duration / dt))):
        world.step(dt)
    return world.route_progress()


class Monitor:
    """Route progress (on road and on route only), collisions, red lights, off-road events."""

    def __init__(self, world: World):
        self.world = world
        self.progress = 0.0
        self._last = world.route_progress()
        self.off_road = False
        self.off_road_events = 0
        self.off_road_time = 0.0
        self.deviated = False
        self.pedestrian_ids = {p.id for p in world.pedestrians}

    def update(self, dt: float) -> None:
        w = self.world
        now = w.route_progress()
        gained, self._last = now - self._last, now
        off = w.off_road()
        lateral = abs(float(w.ego.d))
        if off:
            self.off_road_time += dt
            if not self.off_road:
                self.off_road_events += 1
        self.off_road = off
        if gained > 0 and not off and lateral <= ON_ROUTE_LATERAL_M:
            # A projection jump (e.g. onto a later piece of the route) is not progress.
            self.progress += min(gained, max(w.ego.v, 0.0) * dt + 0.5)
        if lateral > ROUTE_DEVIATION_M:
            self.deviated = True

    def collisions(self) -> Tuple[int, int]:
        """(vehicle, pedestrian) collisions so far (a new contact counts once)."""
        ids = [aid for _, aid in self.world.infractions.collisions]
        ped = sum(1 for aid in ids if aid in self.pedestrian_ids)
        return len(ids) - ped, ped


class Episode:
    """A scene driven by external EgoControl commands at a fixed physics step."""

    def __init__(self, spec: EpisodeSpec, dt: float, route_length: Optional[float] = None):
        if not dt > 0:
            raise ValueError(f'dt must be > 0, got {dt}')
        self.spec, self.dt = spec, dt
        self.route_length = (expert_route_length(spec, dt) if route_length is None
                             else float(route_length))
        self.world = make_scene(spec)
        self.monitor = Monitor(self.world)
        self.steps = int(round(spec.duration / dt))
        self.k = 0

    @property
    def t(self) -> float:
        return self.k * self.dt

    @property
    def done(self) -> bool:
        return self.k >= self.steps or self.monitor.deviated

    def step(self, control: EgoControl) -> None:
        self.world.step(self.dt, control)
        self.k += 1
        self.monitor.update(self.dt)

    # ----- what the sensors see -----
    def ego_pose(self) -> Tuple[float, float, float]:
        """base_link (rear axle) in the map: x, y, yaw."""
        e = self.world.ego
        return float(e.x), float(e.y), float(e.yaw)

    def command(self) -> Command:
        return self.world.route_command()

    def route_ahead(self, length: float = 80.0, step: float = 2.0) -> np.ndarray:
        """(N, 2) map points of the ego's route from its position on, for displays."""
        e = self.world.ego
        s = np.arange(max(e.s, 0.0), min(e.s + length, e.path.length), step)
        if len(s) < 2:
            return np.zeros((0, 2))
        return e.path.pose(s)[0]

    def result(self, **extra) -> ScenarioResult:
        veh, ped = self.monitor.collisions()
        return ScenarioResult(
            scenario=self.spec.scenario, seed=self.spec.seed, duration=self.t,
            route_length=self.route_length, route_progress=self.monitor.progress,
            collisions_vehicle=veh, collisions_pedestrian=ped,
            red_lights=len(self.world.infractions.red_lights),
            off_road_events=self.monitor.off_road_events,
            off_road_time=self.monitor.off_road_time,
            route_deviation=self.monitor.deviated, **extra)


def agent_boxes(world: World) -> List[List[float]]:
    """[x, y, yaw, length, width, class] of every agent near the ego (map frame), for traces."""
    return [[o.x, o.y, o.yaw, o.length, o.width, float(o.cls)] for o in world.objects(60.0)]
