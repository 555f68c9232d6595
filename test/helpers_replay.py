"""
What `ros2 bag play --clock` does, for the replay test (ros2cli is not installable here).

Publishes a rosbag2's messages as recorded (CDR bytes, unchanged) at their log times scaled
by `rate`, with /clock from the same stamps, on reliable topics with the recorded durability
(transient local for /tf_static and /vlmad/command, as `ros2 bag play` offers them).
"""
import importlib
import time

from rosbags.rosbag2 import Reader


def message_class(msgtype: str):
    """'sensor_msgs/msg/CompressedImage' -> the rclpy message class."""
    package, _, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{package}.msg'), name)


def _qos(connection):
    """Return the recorded offered QoS, as `ros2 bag play` uses it: transient local if latched."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosbags.interfaces import QosDurability
    offered = getattr(connection.ext, 'offered_qos_profiles', None) or []
    latched = any(q.durability == QosDurability.TRANSIENT_LOCAL for q in offered)
    return QoSProfile(depth=1 if latched else 50, reliability=ReliabilityPolicy.RELIABLE,
                      durability=(DurabilityPolicy.TRANSIENT_LOCAL if latched
                                  else DurabilityPolicy.VOLATILE))


def play(node, executor, bag, topics, rate: float = 1.0, clock_every_s: float = 0.01) -> int:
    """Publish `topics` of `bag` in log-time order; returns the number of messages sent."""
    from rosgraph_msgs.msg import Clock
    clock_pub = node.create_publisher(Clock, '/clock', 10)
    sent = 0
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic in set(topics)]
        pubs = {c.topic: node.create_publisher(message_class(c.msgtype), c.topic, _qos(c))
                for c in conns}
        deadline = time.monotonic() + 10.0
        while any(p.get_subscription_count() == 0 for p in pubs.values()):
            if time.monotonic() > deadline:
                break   # play anyway, as ros2 bag play does
            executor.spin_once(timeout_sec=0.05)
        t0_bag, t0_wall, last_clock = None, time.monotonic(), -1
        for conn, stamp, data in reader.messages(connections=conns):
            if t0_bag is None:
                t0_bag = stamp
            wait = t0_wall + (stamp - t0_bag) / 1e9 / rate - time.monotonic()
            if wait > 0:
                executor.spin_once(timeout_sec=wait)
            if stamp - last_clock >= clock_every_s * 1e9:
                msg = Clock()
                msg.clock.sec, msg.clock.nanosec = divmod(stamp, 1_000_000_000)
                clock_pub.publish(msg)
                last_clock = stamp
            pubs[conn.topic].publish(bytes(data))
            sent += 1
    return sent
