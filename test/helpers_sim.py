"""
Scripted drivers for closed-loop metric tests: follow the route blindly at a fixed speed.

They steer with the package's PathFollower along the ego's own route path and ignore lights
and agents, so a run into a stopped car or through a red light is certain to happen.
"""
import numpy as np

from vlmad_ros.control.follower import PathFollower, TimedPath
from vlmad_ros.synth.world import EgoControl


class BlindDriver:
    """Constant speed along the route; no eyes."""

    def __init__(self, speed: float):
        self.speed = speed
        self.follower = PathFollower()

    def __call__(self, episode) -> EgoControl:
        world = episode.world
        e = world.ego
        s = e.s + np.arange(0.0, 40.0, 2.0)
        pts = e.path.pose(np.clip(s, 0.0, e.path.length))[0]
        times = episode.t + np.arange(len(s)) * 2.0 / self.speed
        self.follower.set_path(TimedPath(times, pts))
        cmd = self.follower.update(episode.t, (e.x, e.y, e.yaw), e.v)
        return EgoControl(cmd.linear_x, cmd.angular_z)


def run(episode, driver) -> None:
    while not episode.done:
        episode.step(driver(episode))
