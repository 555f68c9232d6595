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


def start(name, env, overrides, log_path, remappings=()):
    """Start an installed node with its config/*.yaml and overrides (as `vlmad demo` does)."""
    import subprocess

    from vlmad_ros.demo import command
    from vlmad_ros.paths import config_dir
    files = {'planner_node': 'planner.yaml', 'path_follower': 'path_follower.yaml',
             'sim_node': 'sim.yaml'}
    log = open(log_path, 'w')
    proc = subprocess.Popen(command(name, str(config_dir() / files[name]), overrides, remappings),
                            env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    proc.log_path = log_path
    proc.log_file = log
    return proc


def stop(*procs):
    """Interrupt, then terminate, each process by its pid; close its log."""
    import signal
    import subprocess
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
        p.log_file.close()


def log_text(proc) -> str:
    with open(proc.log_path) as f:
        return f.read()
