"""
Route progress: where the car is along a CARLA global plan, and the route command ahead.

The leaderboard's route (carla_msgs/CarlaRoute on /carla/hero/global_plan) is a polyline of
poses, each with the RoadOption of the stretch that starts there (its downsampled plan keeps
a pose wherever the option changes). RouteTracker projects the car onto that polyline, only
ever forward within a search window (a route that passes the same place twice is not
skipped ahead), and reads the first manoeuvre within `lookahead` metres: the same rule the
synthetic world uses for its command (a turn announced 40 m before the intersection,
synth/expert.py COMMAND_DISTANCE), so the planner sees the command it was trained with.
"""
from __future__ import annotations

import dataclasses
import enum
import math
from typing import Dict, Optional, Sequence

import numpy as np

from vlmad_ros.types import Command


class RoadOption(enum.IntEnum):
    """CARLA's agents.navigation.local_planner.RoadOption (the values the route carries)."""

    VOID = -1
    LEFT = 1
    RIGHT = 2
    STRAIGHT = 3
    LANEFOLLOW = 4
    CHANGELANELEFT = 5
    CHANGELANERIGHT = 6


# RoadOption -> the planner's command; None: not a manoeuvre, keep looking ahead.
ROAD_OPTION_COMMANDS: Dict[int, Optional[Command]] = {
    RoadOption.LEFT: Command.LEFT,
    RoadOption.RIGHT: Command.RIGHT,
    RoadOption.STRAIGHT: Command.STRAIGHT,
    RoadOption.LANEFOLLOW: None,
    RoadOption.CHANGELANELEFT: None,     # lane_change_as_turn: LEFT
    RoadOption.CHANGELANERIGHT: None,    # lane_change_as_turn: RIGHT
    RoadOption.VOID: None,
}


@dataclasses.dataclass(frozen=True)
class RouteConfig:
    """How far ahead a manoeuvre is announced and how the car is matched to the route."""

    lookahead: float = 40.0          # [m] announce a manoeuvre this far ahead
    search_ahead: float = 50.0       # [m] of route searched ahead of the last match
    max_offset: float = 15.0         # [m] farther from the route than this: 'off route'
    lane_change_as_turn: bool = False  # CHANGELANELEFT/RIGHT -> LEFT/RIGHT (else no command)

    def __post_init__(self):
        for name in ('lookahead', 'search_ahead', 'max_offset'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f'{name} must be finite and > 0, got {value}')


def option_command(option: int, lane_change_as_turn: bool = False) -> Optional[Command]:
    """Return the command a RoadOption stands for (None: lane following, look further)."""
    if lane_change_as_turn and option == RoadOption.CHANGELANELEFT:
        return Command.LEFT
    if lane_change_as_turn and option == RoadOption.CHANGELANERIGHT:
        return Command.RIGHT
    return ROAD_OPTION_COMMANDS.get(int(option))


class RouteTracker:
    """A route (N poses, N options) and the car's progress along it."""

    def __init__(self, xy: np.ndarray, options: Sequence[int],
                 config: Optional[RouteConfig] = None):
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        if len(xy) < 2 or len(options) != len(xy) or not np.all(np.isfinite(xy)):
            raise ValueError(f'a route needs N >= 2 finite poses and N options, got '
                             f'{len(xy)} poses and {len(options)} options')
        unknown = sorted({int(o) for o in options} - {int(o) for o in RoadOption})
        if unknown:
            raise ValueError(f'unknown road options {unknown}')
        self.config = config or RouteConfig()
        self.xy = xy
        self.options = [int(o) for o in options]
        seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
        self.s = np.concatenate([[0.0], np.cumsum(seg)])   # arc length at each pose
        self.progress = 0.0       # [m] along the route
        self.offset = math.inf    # [m] distance of the car from the route at the last update

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def update(self, x: float, y: float) -> float:
        """Match the car at (x, y) (route frame) forward from the last match; its progress."""
        c = self.config
        lo = np.searchsorted(self.s, self.progress, side='right') - 1
        hi = np.searchsorted(self.s, self.progress + c.search_ahead, side='right')
        lo, hi = max(int(lo), 0), min(max(int(hi), int(lo) + 1), len(self.xy) - 1)
        a, b = self.xy[lo:hi], self.xy[lo + 1:hi + 1]
        ab = b - a
        len2 = np.maximum((ab * ab).sum(1), 1e-12)
        t = np.clip(((np.array([x, y]) - a) * ab).sum(1) / len2, 0.0, 1.0)
        proj = a + t[:, None] * ab
        d = np.hypot(proj[:, 0] - x, proj[:, 1] - y)
        k = int(np.argmin(d))
        self.offset = float(d[k])
        if self.offset <= c.max_offset:
            s = float(self.s[lo + k] + t[k] * math.sqrt(len2[k]))
            self.progress = max(self.progress, s)
        return self.progress

    def command(self) -> Command:
        """Return the first manoeuvre within `lookahead` m ahead (STRAIGHT when none)."""
        end = self.progress + self.config.lookahead
        first = max(int(np.searchsorted(self.s, self.progress, side='right')) - 1, 0)
        for i in range(first, len(self.options) - 1):
            if self.s[i] > end:
                break
            cmd = option_command(self.options[i], self.config.lane_change_as_turn)
            if cmd is not None:
                return cmd
        return Command.STRAIGHT

    @property
    def finished(self) -> bool:
        return self.progress >= self.length - 1e-6
