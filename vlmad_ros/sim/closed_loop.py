"""
The closed loop in one process: the world, a policy and the path follower, no DDS.

`vlmad demo` and sim_node run the same loop across three processes over DDS, as on a robot;
the benchmark runs it here so that dozens of episodes for several planners fit in minutes,
on a training machine without ROS too. The pieces are the same objects: Episode (world,
infractions, score), the synthetic renderer, JPEG encode/decode and Planner.views (the
node's decode path), EgoStateEstimator, and PathFollower (the follower node's controller).
Timing follows sim_node's lockstep: a camera set and a plan every `camera_period`, the
follower's command every physics step, the plan applied from its own stamp.

`LoopConfig.controller` picks what turns plans into the ego's motion: 'path_follower' (the
follower node's Twist: speed and yaw rate, which the world's bicycle tracks) or 'carla' (the
CARLA control node's throttle / steer / brake, through carla.vehicle_control_response, the
stand-in vehicle physics, before the world's bicycle).

Policies (all return a base_link plan (6, 2) for the ego at the planning tick):
    PlannerPolicy         a checkpoint (camera planner or ego-state MLP)
    ConstantVelocity      today's speed and yaw rate held for 3 s (the floor)
    ExpertPolicy          the privileged expert driving a copy of the world (the ceiling)
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
import types
from typing import Callable, List, Optional, Protocol, Sequence

import numpy as np

from vlmad_ros.control.follower import Command, FollowerConfig, PathFollower, TimedPath
from vlmad_ros.control.pure_pursuit import to_local
from vlmad_ros.ego import EgoStateEstimator
from vlmad_ros.evaluation.baselines import constant_velocity_plan, OFFSETS
from vlmad_ros.sim.episode import Episode, EpisodeSpec
from vlmad_ros.sim.score import ScenarioResult
from vlmad_ros.synth.agents import LANE_CHANGE_TIME
from vlmad_ros.synth.dagger import hand_over
from vlmad_ros.synth.expert import lane_under_way
from vlmad_ros.synth.world import EgoControl
from vlmad_ros.topics import PLAN_DT, PLAN_STEPS
from vlmad_ros.types import EgoState


CONTROLLERS = ('path_follower', 'carla')


def controller_config(controller: str) -> FollowerConfig:
    """Return the controller settings a LoopConfig.controller stands for (nodes' defaults)."""
    if controller == 'carla':
        from vlmad_ros.carla import vehicle_follower_config
        return vehicle_follower_config()
    return FollowerConfig()


def ego_control(cmd: Command, speed: float, dt: float, config: FollowerConfig) -> EgoControl:
    """Return the world's ego command for a controller output (vehicle control: via the car)."""
    if cmd.vehicle is None:
        return EgoControl(cmd.linear_x, cmd.angular_z)
    from vlmad_ros.carla import vehicle_control_response
    v, w = vehicle_control_response(cmd.vehicle.throttle, cmd.vehicle.steer, cmd.vehicle.brake,
                                    speed, dt, config.max_steer_angle, config.wheelbase)
    return EgoControl(v, w)


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """How the loop runs (sim_node's defaults)."""

    physics_dt: float = 0.1          # [s]
    camera_period: float = 0.2       # [s] a plan every this
    image_width: int = 800           # rendered camera size (the rig scaled to it)
    image_height: int = 450
    jpeg_quality: int = 90
    rig: str = 'nuscenes'
    controller: str = 'path_follower'   # or 'carla' (CONTROLLERS)

    def __post_init__(self):
        if self.controller not in CONTROLLERS:
            raise ValueError(f'controller must be one of {CONTROLLERS}, got {self.controller!r}')

    @property
    def camera_every(self) -> int:
        return max(1, int(round(self.camera_period / self.physics_dt)))


class Policy(Protocol):
    """Anything that plans at a tick of an episode."""

    def reset(self) -> None: ...

    def plan(self, episode: Episode, ego: EgoState) -> np.ndarray: ...


class ConstantVelocity:
    """The floor: no perception, no route, today's motion extrapolated."""

    name = 'constant velocity'

    def reset(self) -> None:
        pass

    def plan(self, episode: Episode, ego: EgoState) -> np.ndarray:
        return constant_velocity_plan(ego.speed, ego.yaw_rate)


class ExpertPolicy:
    """
    The ceiling: the privileged expert drives a copy of the world for 3 s from the car's pose.

    More than RECOVER_FROM_M off its lane centre, the copy's expert first steers back onto it
    (the same recovery the training data shows), so the plan is what the expert would do from
    here; unless the car is on its way into the other lane (past half a lane, or around a
    stalled vehicle), where it finishes the lane change instead of undoing it. Closer, it
    drives as it is: a recovery in progress would also hold off the lane change a stalled
    vehicle asks for.
    """

    name = 'expert'
    RECOVER_FROM_M = 0.3

    def reset(self) -> None:
        pass

    def plan(self, episode: Episode, ego: EgoState) -> np.ndarray:
        world = copy.deepcopy(episode.world)
        e = world.ego
        if e.lc_t < 0 and abs(e.d) > self.RECOVER_FROM_M:
            lane = lane_under_way(world.town, e, world.obstacles(), 0, world.stalled())
            if lane is None:
                e.start_lateral_move(e.d, 0.0, 2.5)
            else:   # on from the car's offset and lateral speed, at the lane change's pace
                e.change_lane(world.town, world.rng, lane)
                hand_over(e, max(1.0, LANE_CHANGE_TIME * abs(e.d) / world.town.cfg.lane_width))
        per = int(round(PLAN_DT / episode.dt))
        pts = []
        for k in range(1, PLAN_STEPS * per + 1):
            world.step(episode.dt)
            if k % per == 0:
                pts.append([world.ego.x, world.ego.y])
        return to_local(np.array(pts), episode.ego_pose())


class PlannerPolicy:
    """A trained planner, fed exactly as planner_node feeds it (JPEG, views, ego, command)."""

    def __init__(self, planner, loop: LoopConfig = LoopConfig(), name: str = ''):
        from vlmad_ros.rig import CAMERA_NAMES, CameraRig, load_rig
        self.planner, self.loop = planner, loop
        self.name = name or planner.describe()
        rig = load_rig(loop.rig)
        self.rig = CameraRig(rig.name, tuple(rig[c] for c in CAMERA_NAMES),
                             rig.frame_id).scaled(loop.image_width, loop.image_height)
        self.needs_images = planner.config.kind == 'camera'
        self._render: Optional[Callable] = None

    def reset(self) -> None:
        pass

    def plan(self, episode: Episode, ego: EgoState) -> np.ndarray:
        from vlmad_ros.images import encode_jpeg
        from vlmad_ros.planner import collate, features_from_parts, order_views
        if self.needs_images:
            if self._render is None:
                from vlmad_ros.synth.render import Renderer
                self._render = Renderer(self.rig).render
            views = []
            for cam, rgb in zip(self.rig.cameras, self._render(episode.world)):
                msg = types.SimpleNamespace(format='jpeg',
                                            data=encode_jpeg(rgb, self.loop.jpeg_quality))
                views.append(self.planner.views(cam, msg))
            parts = order_views(views)
        else:     # the ego-state MLP reads no image: one black pixel keeps the batch keys
            parts = [(np.zeros((3, 1, 1), np.uint8), np.eye(3, dtype=np.float32),
                      np.eye(4, dtype=np.float32))]
        batch = collate([features_from_parts(parts, ego, int(episode.command()))])
        return self.planner.run_batch(batch)['traj'][0]


def run_episode(spec: EpisodeSpec, policy: Policy, loop: LoopConfig = LoopConfig(),
                follower: Optional[FollowerConfig] = None,
                route_length: Optional[float] = None,
                on_tick: Optional[Callable[[Episode, np.ndarray], None]] = None
                ) -> ScenarioResult:
    """Drive one episode with `policy` through the path follower; its ScenarioResult."""
    ep = Episode(spec, loop.physics_dt, route_length)
    ctl = PathFollower(follower or controller_config(loop.controller))
    estimator = EgoStateEstimator()
    policy.reset()
    latencies: List[float] = []
    while not ep.done:
        x, y, yaw = ep.ego_pose()
        e = ep.world.ego
        if ep.k % loop.camera_every == 0:
            ego = estimator.update(ep.t, float(e.v), float(e.yaw_rate))
            t0 = time.perf_counter()
            plan = np.asarray(policy.plan(ep, ego), dtype=np.float64)
            latencies.append(1000.0 * (time.perf_counter() - t0))
            ctl.set_path(TimedPath.from_base_link(ep.t, OFFSETS, plan, (x, y, yaw)))
            if on_tick is not None:
                on_tick(ep, plan)
        cmd = ctl.update(ep.t, (x, y, yaw), float(e.v))
        ep.step(ego_control(cmd, float(e.v), loop.physics_dt, ctl.config))
    lat = np.array(latencies) if latencies else np.array([math.nan])
    return ep.result(plans=len(latencies), latency_ms_p50=float(np.percentile(lat, 50)),
                     latency_ms_p95=float(np.percentile(lat, 95)))


def run_episodes(specs: Sequence[EpisodeSpec], policy: Policy, loop: LoopConfig = LoopConfig(),
                 progress: Optional[Callable[[ScenarioResult], None]] = None,
                 follower: Optional[FollowerConfig] = None) -> List[ScenarioResult]:
    """Run several episodes in order; `progress` sees each result as it comes."""
    out = []
    for spec in specs:
        out.append(run_episode(spec, policy, loop, follower))
        if progress is not None:
            progress(out[-1])
    return out
