"""RouteTracker without ROS: progress along a CARLA route and the command ahead of the car."""
import numpy as np
import pytest

from vlmad_ros.control.route import option_command, RoadOption, RouteConfig, RouteTracker
from vlmad_ros.types import Command

L, R, S, F = RoadOption.LEFT, RoadOption.RIGHT, RoadOption.STRAIGHT, RoadOption.LANEFOLLOW


def l_route():
    """100 m east, a left turn (a quarter circle, radius 10 m), then 100 m north."""
    east = [[x, 0.0] for x in range(0, 101, 20)]
    arc = [[100 + 10 * np.sin(a), 10 - 10 * np.cos(a)] for a in np.linspace(0, np.pi / 2, 5)]
    north = [[110.0, 10.0 + y] for y in range(20, 101, 20)]
    xy = np.array(east[:-1] + arc + north)
    options = [F] * (len(east) - 1) + [L] * 4 + [F] * (1 + len(north))
    return xy, options


def test_option_table():
    assert option_command(L) == Command.LEFT
    assert option_command(R) == Command.RIGHT
    assert option_command(S) == Command.STRAIGHT
    assert option_command(F) is None
    assert option_command(RoadOption.CHANGELANELEFT) is None
    assert option_command(RoadOption.CHANGELANELEFT, lane_change_as_turn=True) == Command.LEFT
    assert option_command(RoadOption.CHANGELANERIGHT, lane_change_as_turn=True) == Command.RIGHT


def test_command_is_announced_within_lookahead_and_held_through_the_turn():
    xy, options = l_route()
    route = RouteTracker(xy, options, RouteConfig(lookahead=40.0))
    seen = []
    for x in np.arange(0.0, 100.0, 2.0):             # along the first leg
        route.update(x, 0.3)
        seen.append((x, route.command()))
    far = [c for x, c in seen if x < 59.0]
    near = [c for x, c in seen if x > 61.0]
    assert set(far) == {Command.STRAIGHT} and set(near) == {Command.LEFT}
    route.update(107.0, 3.0)                          # inside the turn
    assert route.command() == Command.LEFT
    route.update(110.2, 30.0)                         # after it
    assert route.command() == Command.STRAIGHT
    assert route.progress == pytest.approx(100 + 10 * np.pi / 2 + 20, abs=0.5)


def test_progress_is_monotonic_and_ignores_far_points():
    xy, options = l_route()
    route = RouteTracker(xy, options)
    assert route.update(30.0, 0.5) == pytest.approx(30.0)
    assert route.update(20.0, 0.5) == pytest.approx(30.0)     # never backwards
    assert route.update(70.0, 40.0) == pytest.approx(30.0)    # 40 m off the route: no match
    assert route.offset > route.config.max_offset


def test_a_route_crossing_itself_is_not_skipped_ahead():
    # Out east 60 m, back west along y = 1: the way back passes the start.
    xy = np.array([[0, 0], [60, 0], [60, 1], [0, 1]], dtype=float)
    route = RouteTracker(xy, [F, R, F, F], RouteConfig(search_ahead=30.0))
    assert route.update(5.0, 0.6) == pytest.approx(5.0)       # the outward leg, not the return


def test_bad_routes_are_refused():
    with pytest.raises(ValueError, match='N >= 2'):
        RouteTracker(np.zeros((1, 2)), [F])
    with pytest.raises(ValueError, match='unknown road options'):
        RouteTracker(np.zeros((2, 2)), [F, 9])
    with pytest.raises(ValueError, match='lookahead'):
        RouteConfig(lookahead=0.0)
