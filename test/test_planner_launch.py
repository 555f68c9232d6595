"""
launch_testing version of the planner start-up test (skips where launch_testing is absent).

test_planner_node.py starts the same executable as a subprocess and runs everywhere; this one
runs under pytest's launch_testing plugin (make test, with the ros-wheels installed) and under
`colcon test` (CMakeLists.txt registers it with add_launch_test, isolated).
"""
import pathlib
import time
import unittest

import pytest

_WHY = 'not on PyPI; make setup installs it from ../shared/ros-wheels (see README.md)'
launch_testing = pytest.importorskip('launch_testing', reason=f'launch_testing is {_WHY}')
launch_ros = pytest.importorskip('launch_ros', reason=f'launch_ros is {_WHY}')

import launch  # noqa: E402, I100
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402

LAUNCH_FILE = pathlib.Path(__file__).resolve().parents[1] / 'launch' / 'planner.launch.py'


@pytest.mark.launch_test
def generate_test_description():
    """Start planner.launch.py with random weights, then signal ready."""
    planner = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={'allow_random_weights': 'true'}.items())
    return launch.LaunchDescription([planner, launch_testing.actions.ReadyToTest()])


class TestPlannerStartsAndPlans(unittest.TestCase):
    """Feed six JPEG streams + odometry and expect Paths with six poses."""

    def test_paths_arrive(self, proc_output):
        import helpers_planner as hp
        h = hp.Harness()
        try:
            stamp = 2_000 * 10**9
            h.feed_until_path(_AlwaysRunning(), stamp, timeout=60.0)
            path = h.take_paths()[-1]
            self.assertEqual(len(path.poses), 6)
            self.assertIn(path.header.stamp.sec * 10**9 + path.header.stamp.nanosec,
                          h.published)
        finally:
            h.close()
        time.sleep(0.1)


class _AlwaysRunning:
    """Stand-in for a Popen: launch owns the process here."""

    def poll(self):
        return None


@launch_testing.post_shutdown_test()
class TestPlannerShutdown(unittest.TestCase):
    """The node exits cleanly on Ctrl-C."""

    def test_exit_code(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
