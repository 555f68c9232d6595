"""REP 105 in the synthetic world: map -> odom -> base_link -> cameras, and message defaults."""
import math

import pytest

pytest.importorskip('rclpy')
pytestmark = pytest.mark.ros


def test_transforms_chain_map_odom_base_link_cameras():
    from vlmad_ros import topics
    from vlmad_ros.nodes import sim_node
    from vlmad_ros.rig import load_rig
    from vlmad_ros.sim.episode import Episode, EpisodeSpec
    rig = load_rig('nuscenes')
    ep = Episode(EpisodeSpec('turn', 3, 2.0), 0.1)
    for _ in range(12):                                    # move and turn a little
        ep.step(sim_node.EgoControl(6.0, 0.2))
    static = sim_node.static_transforms(rig, 1, topics.ODOM_FRAME, topics.BASE_FRAME)
    dynamic = sim_node.ego_transform(ep, 2, topics.ODOM_FRAME, topics.BASE_FRAME)
    parent = {tf.child_frame_id: tf.header.frame_id for tf in static + [dynamic]}
    for cam in rig.names:                                  # every camera reaches map via odom
        chain, frame = [], topics.camera_optical_frame(cam)
        while frame in parent:
            frame = parent[frame]
            chain.append(frame)
        assert chain == ['base_link', 'odom', 'map'], (cam, chain)
    map_odom = next(tf for tf in static if tf.child_frame_id == 'odom').transform
    assert (map_odom.translation.x, map_odom.translation.y, map_odom.rotation.w) == (0, 0, 1)
    odom = sim_node.odometry_msg(ep, 2, topics.ODOM_FRAME, topics.BASE_FRAME)
    assert (odom.header.frame_id, odom.child_frame_id) == ('odom', 'base_link')
    x, y, yaw = ep.ego_pose()
    t = dynamic.transform
    assert (t.translation.x, t.translation.y) == pytest.approx((x, y)) != (0.0, 0.0)
    assert 2 * math.atan2(t.rotation.z, t.rotation.w) == pytest.approx(yaw)
    assert (odom.pose.pose.position.x, odom.pose.pose.orientation.z) == (
        t.translation.x, t.rotation.z)


def test_frame_prefix_names_every_car_frame_but_map():
    """Two cars on one /tf: car1/odom -> car1/base_link -> car1/<camera>; map is shared."""
    from vlmad_ros import topics
    from vlmad_ros.nodes import sim_node
    from vlmad_ros.rig import load_rig
    rig = load_rig('nuscenes')
    static = sim_node.static_transforms(rig, 1, 'car1/odom', 'car1/base_link', 'car1/')
    edges = {(tf.header.frame_id, tf.child_frame_id) for tf in static}
    assert edges == {('map', 'car1/odom')} | {
        ('car1/base_link', 'car1/' + topics.camera_optical_frame(c)) for c in rig.names}
    assert sim_node.SimConfig(frame_prefix='car1/').frame_prefix == 'car1/'
    for bad, words in (('/car1/', 'frame_prefix must not start'),
                       ('car 1/', 'frame_prefix must not start')):
        with pytest.raises(ValueError, match=words):
            sim_node.SimConfig(frame_prefix=bad)
    with pytest.raises(ValueError, match='frame_prefix must be empty with bridge_topics'):
        sim_node.SimConfig(frame_prefix='car1/', bridge_topics=True)


def test_bridge_mode_keeps_the_bridge_frames():
    """Keep the bridge's map -> ego_vehicle in bridge mode: no odom frame is invented."""
    from vlmad_ros.nodes import sim_node
    from vlmad_ros.rig import load_rig
    static = sim_node.static_transforms(load_rig('carla'), 1, 'map', 'ego_vehicle')
    assert {tf.header.frame_id for tf in static} == {'ego_vehicle'}


def test_message_defaults_mean_unknown():
    from vlmad_ros import labels
    from vlmad_ros.msg import DrivingCommand, DrivingReasoning
    assert DrivingCommand().command == DrivingCommand.UNKNOWN == 255
    r = DrivingReasoning()
    assert (r.control_action, r.turn_action, r.lane_action) == (DrivingReasoning.UNKNOWN,) * 3
    assert r.status == DrivingReasoning.UNKNOWN    # an unset record is not read as OK
    assert DrivingReasoning.UNKNOWN == labels.UNKNOWN
