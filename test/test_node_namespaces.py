"""Two closed-loop stacks on one DDS graph, each in its own namespace, as separate processes."""
import json
import time

from helpers_sim import log_text, start, stop
import pytest

rclpy = pytest.importorskip('rclpy')
pytestmark = pytest.mark.ros

CARS = {'car1': 'cruise:1', 'car2': 'lead_brake:5'}
# Topics every namespace shares (REP: TF and diagnostics are global); the rest is the car's own.
GLOBAL = {'/tf', '/tf_static', '/diagnostics', '/rosout', '/parameter_events'}


def stack(ros_env, tmp_path, car, episode):
    """sim_node + planner_node + path_follower in /<car>, with the car's own clock."""
    remap = [('__ns', f'/{car}'), ('/clock', f'/{car}/clock')]
    planner = {'allow_random_weights': True, 'odom_topic': 'vlmad/sim/planner_odom',
               'reliability': 'reliable', 'use_sim_time': True, 'num_threads': 1}
    follower = {'stamped_cmd_vel': True, 'ack_plans': True, 'use_sim_time': True}
    sim = {'episodes': [episode], 'duration': 1.0, 'startup_timeout': 90.0,
           'image_width': 320, 'image_height': 180, 'exit_when_done': False,
           'plan_ack_topic': 'vlmad/follower/plan_ack',
           'result_file': str(tmp_path / f'{car}.json')}
    return [start('planner_node', ros_env, planner, tmp_path / f'{car}_planner.log', remap),
            start('path_follower', ros_env, follower, tmp_path / f'{car}_follower.log', remap),
            start('sim_node', ros_env, sim, tmp_path / f'{car}_sim.log', remap)]


def topics_of(node, name, ns):
    """Every topic a node publishes or subscribes to, by the graph."""
    pubs = node.get_publisher_names_and_types_by_node(name, ns)
    subs = node.get_subscriber_names_and_types_by_node(name, ns)
    return {t for t, _ in pubs} | {t for t, _ in subs}


@pytest.mark.slow
def test_two_namespaced_stacks_share_a_graph_without_crosstalk(ros_env, tmp_path):
    from nav_msgs.msg import Odometry
    from rclpy.qos import DurabilityPolicy
    procs = []
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('namespace_test', context=context)
    odom = {car: [] for car in CARS}
    for car in CARS:
        node.create_subscription(Odometry, f'/{car}/odom', odom[car].append, 50)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        for car, episode in CARS.items():
            procs += stack(ros_env, tmp_path, car, episode)
        deadline = time.monotonic() + 240
        while not all((tmp_path / f'{car}.json').exists() for car in CARS):
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
    for car, episode in CARS.items():
        # REP 105: the car's odometry is odom -> base_link.
        assert odom[car] and {(m.header.frame_id, m.child_frame_id) for m in odom[car]} == {
            ('odom', 'base_link')}
        result = json.loads((tmp_path / f'{car}.json').read_text())['scenarios'][0]
        # 1 s, a camera set every 0.2 s: 5 sets, each answered by its own car's plan.
        assert f"{result['scenario']}:{result['seed']}" == episode
        assert result['plans'] == 5 and result['plans_missed'] == 0, (car, result)
