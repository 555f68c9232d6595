"""planner_node as a managed node: the lifecycle services drive it from another process."""
import time

import helpers_planner as hp
from helpers_service import call_until_answered
import pytest

rclpy = pytest.importorskip('rclpy')
pytestmark = pytest.mark.ros
SEC = 1_000_000_000


class Lifecycle:
    """ChangeState / GetState clients of /planner_node on the harness node."""

    def __init__(self, harness):
        from lifecycle_msgs.srv import ChangeState, GetState
        self.h = harness
        self.change = harness.node.create_client(ChangeState, '/planner_node/change_state')
        self.get = harness.node.create_client(GetState, '/planner_node/get_state')

    def _wait(self, future, seconds) -> bool:
        return self.h.wait_for(future.done, seconds)

    def state(self) -> str:
        from lifecycle_msgs.srv import GetState
        return call_until_answered(self.get, GetState.Request(), self._wait).current_state.label

    def settled(self) -> str:
        """Wait out a transition in progress (configuring, activating...); the state after it."""
        label = self.state()
        for _ in range(100):
            if not label.endswith('ing'):
                break
            time.sleep(0.2)
            label = self.state()
        return label

    def transition(self, transition_id, goal=None) -> bool:
        """Run one transition; `goal` is the state that shows it ran if its answer was lost."""
        from lifecycle_msgs.srv import ChangeState
        request = ChangeState.Request()
        request.transition.id = transition_id
        answer = call_until_answered(self.change, request, self._wait, per_try=20.0,
                                     took_effect=goal and (lambda: self.settled() == goal))
        return answer is True or answer.success


def camera_subscribers(h):
    """Subscriptions on the feeder's six camera topics."""
    return sum(p.get_subscription_count() for p in h.feeder.pubs)


def test_transitions_gate_planning_and_a_late_planner_hears_the_last_command(ros_env):
    from lifecycle_msgs.msg import Transition
    from vlmad_ros.msg import DrivingCommand
    from vlmad_ros.nodes.common import LATCHED_COMMAND
    proc = hp.start_node(ros_env, 'autostart:=false', 'allow_random_weights:=true',
                         'reliability:=reliable', 'diagnostics_period:=0.3')
    h = hp.Harness(width=800, height=450)
    lc = Lifecycle(h)
    try:
        # The route command is sent once, before the planner subscribes (transient local).
        command = h.node.create_publisher(DrivingCommand, '/vlmad/command', LATCHED_COMMAND)
        command.publish(DrivingCommand(command=DrivingCommand.RIGHT))
        assert lc.state() == 'unconfigured'
        assert h.node.count_publishers('/vlmad/plan') == 0 and camera_subscribers(h) == 0

        assert lc.transition(Transition.TRANSITION_CONFIGURE, 'inactive')
        assert lc.state() == 'inactive'
        assert h.wait_for(lambda: h.node.count_publishers('/vlmad/plan') == 1, 10.0)
        time.sleep(1.0)
        assert camera_subscribers(h) == 0          # configured, not listening yet

        assert lc.transition(Transition.TRANSITION_ACTIVATE, 'active')
        assert lc.state() == 'active'
        k = h.feed_until_path(proc, 50 * SEC)
        assert h.wait_for(lambda: (h.latest_status('sync') or [{}])[0].get('command')
                          == 'RIGHT', 10.0), h.latest_status('sync')

        assert lc.transition(Transition.TRANSITION_DEACTIVATE, 'inactive')
        assert lc.state() == 'inactive'
        assert h.wait_for(lambda: camera_subscribers(h) == 0, 10.0)
        h.take_paths()
        for j in range(10):
            h.publish_set(50 * SEC + (k + j) * SEC // 10)
            time.sleep(0.1)
        time.sleep(2.0)
        assert h.take_paths() == []                 # inactive: nothing planned or published

        assert lc.transition(Transition.TRANSITION_CLEANUP, 'unconfigured')
        assert lc.state() == 'unconfigured'
        assert h.wait_for(lambda: h.node.count_publishers('/vlmad/plan') == 0, 10.0)
        assert proc.poll() is None
    finally:
        h.close()
        rc, err = hp.stop_node(proc)
    assert rc == 0, err[-2000:]


def test_autostart_off_with_a_bad_checkpoint_reports_it_at_configure(ros_env):
    """Model errors surface at configure (the transition fails), the node stays up."""
    from lifecycle_msgs.msg import Transition
    proc = hp.start_node(ros_env, 'autostart:=false', 'checkpoint:=/nonexistent/planner.pt')
    h = hp.Harness()
    lc = Lifecycle(h)
    try:
        assert not lc.transition(Transition.TRANSITION_CONFIGURE)
        assert lc.state() == 'unconfigured'
        assert proc.poll() is None
    finally:
        h.close()
        rc, err = hp.stop_node(proc)
    assert 'checkpoint' in err and 'configure failed' in err, err[-2000:]
