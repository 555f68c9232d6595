"""
Test helpers for planner_node: start the installed executable, feed it over DDS, collect output.

The feeder is vlmad_ros.bench.feeder.SetPublisher, the same one the benchmark's feeder process
runs, here inside the test process.
"""
import os
import pathlib
import signal
import subprocess
import threading
import time

NODE_EXE = 'planner_node'


def installed_executable() -> str:
    """Path of the colcon-installed planner_node (install/vlmad_ros/lib/vlmad_ros)."""
    for d in os.environ.get('PATH', '').split(os.pathsep):
        cand = pathlib.Path(d) / NODE_EXE
        if cand.is_file() and 'lib/vlmad_ros' in str(cand):
            return str(cand)
    try:   # a ROS workspace: the ament index knows the install prefix
        from ament_index_python.packages import get_package_prefix
        prefix = pathlib.Path(get_package_prefix('vlmad_ros'))
    except Exception:
        prefix = pathlib.Path(__file__).resolve().parents[1] / 'install' / 'vlmad_ros'
    return str(prefix / 'lib' / 'vlmad_ros' / NODE_EXE)


def params_file() -> str:
    """config/planner.yaml as installed (share/vlmad_ros/config), as a user would pass it."""
    from vlmad_ros.paths import config_dir
    return str(config_dir() / 'planner.yaml')


def start_node(env, *ros_args, stdout=subprocess.PIPE):
    """Start planner_node with the installed params file plus `-p name:=value` overrides."""
    args = [installed_executable(), '--ros-args', '--params-file', params_file()]
    for a in ros_args:
        args += ['-p', a]
    return subprocess.Popen(args, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True)


def stop_node(proc, timeout=10.0):
    """SIGINT like Ctrl-C; returns (returncode, stderr)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err


class Harness:
    """An rclpy node in the test process: a SetPublisher plus Path/diagnostics subscribers."""

    def __init__(self, width=1600, height=900, plan_topic='/vlmad/plan', reliable=True):
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Path
        from vlmad_ros.bench.feeder import SetPublisher
        from vlmad_ros.nodes.common import SpinningNode
        self.spinner = SpinningNode('planner_test_harness')
        self.node = self.spinner.node
        # Reliable: FastDDS's default 512 kB shared-memory segment drops best-effort bursts of
        # 1600x900 JPEGs (config/fastdds_large_messages.xml); tests must not depend on that.
        self.feeder = SetPublisher(self.node, width, height, quality=85, variants=1,
                                   reliable=reliable, depth=20)
        self.paths = []
        self.diagnostics = []
        self.published = set()          # stamps of every set sent
        self._lock = threading.Lock()
        self.node.create_subscription(Path, plan_topic, self._on_path, 50)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 50)
        self.spinner.start()

    def collect(self, msg_type, topic, reliable=True):
        """Subscribe to another topic; returns the list its messages are appended to."""
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        out = []
        qos = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        self.node.create_subscription(msg_type, topic, out.append, qos)
        return out

    def publisher(self, msg_type, topic):
        """Create a reliable publisher on the harness node."""
        return self.node.create_publisher(msg_type, topic, 20)

    def publish_set(self, stamp_ns, **kwargs):
        """Publish a set through the feeder and remember its stamp."""
        self.published.add(stamp_ns)
        return self.feeder.publish_set(stamp_ns, **kwargs)

    def _on_path(self, msg):
        with self._lock:
            self.paths.append(msg)

    def _on_diag(self, msg):
        with self._lock:
            self.diagnostics.append(msg)

    def take_paths(self):
        with self._lock:
            out, self.paths = self.paths, []
        return out

    def latest_status(self, suffix):
        """Key/values and message of the newest diagnostics status whose name ends with suffix."""
        with self._lock:
            for arr in reversed(self.diagnostics):
                for st in arr.status:
                    if st.name.endswith(suffix):
                        return {kv.key: kv.value for kv in st.values}, st.message, st.level
        return None

    def wait_for(self, predicate, timeout, poll=0.05):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(poll)
        return False

    def feed_until_path(self, proc, start_ns, timeout=40.0, period=0.1):
        """Publish sets until the node answers (start-up includes importing torch)."""
        deadline = time.monotonic() + timeout
        k = 0
        while time.monotonic() < deadline:
            assert proc.poll() is None, f'node exited: {proc.communicate()[1][-2000:]}'
            self.publish_set(start_ns + k * int(period * 1e9))
            k += 1
            time.sleep(period)
            if self.paths:
                # Let in-flight sets of the warm-up drain: older stamps arriving after the
                # next phase's would look like time jumping back.
                count = -1
                while count != len(self.paths) and time.monotonic() < deadline:
                    count = len(self.paths)
                    time.sleep(1.0)
                return k
        raise AssertionError('no Path within the start-up timeout')

    def close(self):
        self.spinner.close()
