"""Two closed-loop stacks on one DDS graph, each in its own namespace, as separate processes."""
import json
import time

from helpers_sim import log_text, start, stop
import pytest
from vlmad_ros.topics import camera_optical_frame

try:
    from tf2_msgs.msg import TFMessage
except ImportError:
    TFMessage = None

rclpy = pytest.importorskip('rclpy')
pytestmark = pytest.mark.ros

CARS = {'car1': 'cruise:1', 'car2': 'lead_brake:5'}
# Topics every namespace shares (REP: TF and diagnostics are global); the rest is the car's own.
GLOBAL = {'/tf', '/tf_static', '/diagnostics', '/rosout', '/parameter_events'}


def stack(ros_env, tmp_path, car, episode):
    """sim_node + planner_node + path_follower in /<car>, its own clock and TF frames."""
    remap = [('__ns', f'/{car}'), ('/clock', f'/{car}/clock')]
    body = {'base_frame': f'{car}/base_link'}
    planner = {'allow_random_weights': True, 'odom_topic': 'vlmad/sim/planner_odom',
               'reliability': 'reliable', 'use_sim_time': True, 'num_threads': 1, **body}
    # Diagnostics every 0.1 s of sim time: the 1 s episode is over in well under a wall second.
    follower = {'stamped_cmd_vel': True, 'ack_plans': True, 'use_sim_time': True,
                'diagnostics_period': 0.1, **body}
    sim = {'episodes': [episode], 'duration': 1.0, 'startup_timeout': 90.0,
           'image_width': 320, 'image_height': 180, 'exit_when_done': False,
           'plan_ack_topic': 'vlmad/follower/plan_ack', 'frame_prefix': f'{car}/',
           'result_file': str(tmp_path / f'{car}.json')}
    return [start('planner_node', ros_env, planner, tmp_path / f'{car}_planner.log', remap),
            start('path_follower', ros_env, follower, tmp_path / f'{car}_follower.log', remap),
            start('sim_node', ros_env, sim, tmp_path / f'{car}_sim.log', remap)]


def follower_counts(diagnostics, car):
    """Every count report of the follower of `car` on the shared /diagnostics, by its name."""
    return [json.loads({kv.key: kv.value for kv in st.values}['counts'])
            for msg in diagnostics for st in msg.status
            if st.name == f'{car}/path_follower: path follower']


def topics_of(node, name, ns):
    """Every topic a node publishes or subscribes to, by the graph."""
    pubs = node.get_publisher_names_and_types_by_node(name, ns)
    subs = node.get_subscriber_names_and_types_by_node(name, ns)
    return {t for t, _ in pubs} | {t for t, _ in subs}


@pytest.mark.slow
def test_two_namespaced_stacks_share_a_graph_without_crosstalk(ros_env, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import Odometry, Path
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import CompressedImage
    procs = []
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('namespace_test', context=context)
    odom = {car: [] for car in CARS}
    plans = {car: [] for car in CARS}
    images = {car: [] for car in CARS}
    for car in CARS:
        node.create_subscription(Odometry, f'/{car}/odom', odom[car].append, 50)
        node.create_subscription(Path, f'/{car}/vlmad/plan', plans[car].append, 50)
        node.create_subscription(CompressedImage, f'/{car}/CAM_FRONT/image_rect_compressed',
                                 images[car].append, 50)
    tf = []
    if TFMessage is not None:     # tf2_msgs: every ROS distro, no PyPI wheel
        node.create_subscription(TFMessage, '/tf', tf.append, 100)
        node.create_subscription(TFMessage, '/tf_static', tf.append, QoSProfile(
            depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    diagnostics = []
    node.create_subscription(DiagnosticArray, '/diagnostics', diagnostics.append, 100)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        for car, episode in CARS.items():
            procs += stack(ros_env, tmp_path, car, episode)
        deadline = time.monotonic() + 240
        while not (all((tmp_path / f'{car}.json').exists() for car in CARS)
                   and all(follower_counts(diagnostics, car) for car in CARS)):
            assert time.monotonic() < deadline, '\n'.join(log_text(p)[-1500:] for p in procs)
            assert all(p.poll() is None for p in procs), \
                '\n'.join(log_text(p)[-1500:] for p in procs)
            executor.spin_once(timeout_sec=0.1)
        wanted = {(name, f'/{car}') for car in CARS
                  for name in ('sim_node', 'planner_node', 'path_follower')}
        while not wanted <= set(node.get_node_names_and_namespaces()):
            assert time.monotonic() < deadline, node.get_node_names_and_namespaces()
            executor.spin_once(timeout_sec=0.1)
        graph = {(car, name): topics_of(node, name, f'/{car}') for car in CARS
                 for name in ('sim_node', 'planner_node', 'path_follower')}
        roots = {name for name, ns in node.get_node_names_and_namespaces() if ns == '/'}
        command_qos = [i.qos_profile.durability
                       for i in node.get_publishers_info_by_topic('/car1/vlmad/command')]
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
        stop(*procs)
    assert roots <= {'namespace_test'}, roots
    for (car, name), names in graph.items():
        own = {t for t in names if t.startswith(f'/{car}/')}
        assert names - own <= GLOBAL, (car, name, sorted(names - own - GLOBAL))
        assert own, (car, name)
    # The planner of each car reads that car's cameras and odometry and writes its plan.
    p1 = graph[('car1', 'planner_node')]
    assert {'/car1/CAM_FRONT/image_rect_compressed', '/car1/vlmad/sim/planner_odom',
            '/car1/vlmad/command', '/car1/vlmad/plan', '/car1/clock'} <= p1, sorted(p1)
    assert {'/car2/odom', '/car2/vlmad/plan', '/car2/cmd_vel'} <= graph[('car2', 'path_follower')]
    assert command_qos == [DurabilityPolicy.TRANSIENT_LOCAL]
    edges = {(t.header.frame_id, t.child_frame_id) for msg in tf for t in msg.transforms}
    for car, episode in CARS.items():
        # REP 105 per car on one /tf: map -> car/odom -> car/base_link -> car/<camera>.
        assert odom[car] and {(m.header.frame_id, m.child_frame_id) for m in odom[car]} == {
            (f'{car}/odom', f'{car}/base_link')}
        front = f'{car}/{camera_optical_frame("CAM_FRONT")}'
        assert images[car] and {m.header.frame_id for m in images[car]} == {front}
        if TFMessage is not None:
            assert {('map', f'{car}/odom'), (f'{car}/odom', f'{car}/base_link'),
                    (f'{car}/base_link', front)} <= edges
        assert plans[car] and {p.header.frame_id for p in plans[car]} == {f'{car}/base_link'}
        # Its follower took every plan in that frame (none skipped as a bad plan).
        follower_log = log_text(next(p for p in procs
                                     if p.log_path.name == f'{car}_follower.log'))
        assert 'skipping plan' not in follower_log, follower_log[-1500:]
        assert not any(k.startswith('bad_plan') for c in follower_counts(diagnostics, car)
                       for k in c)
        result = json.loads((tmp_path / f'{car}.json').read_text())['scenarios'][0]
        # 1 s, a camera set every 0.2 s: 5 sets, each answered by its own car's plan.
        assert f"{result['scenario']}:{result['seed']}" == episode
        assert result['plans'] == 5 and result['plans_missed'] == 0, (car, result)
