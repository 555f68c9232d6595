"""
A separate process that publishes our generated messages (used by test_dds.py).

Run as `python helpers_dds_publisher.py`: publishes one DrivingReasoning and one 1600x900
CompressedImage (JPEG of a seeded random picture) on reliable, transient-local topics,
then stays up until stdin closes so late subscribers still get them.
"""
import sys

import numpy as np
import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage
from vlmad_ros.images import encode_jpeg
from vlmad_ros.msg import DrivingReasoning

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


def picture() -> np.ndarray:
    """Return the seeded 1600x900 test picture both processes can rebuild."""
    rng = np.random.default_rng(1234)
    return np.kron(rng.integers(0, 256, (9, 16, 3), dtype=np.uint8),
                   np.ones((100, 100, 1), np.uint8))


def reasoning() -> DrivingReasoning:
    msg = DrivingReasoning()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 17, 500_000_000
    msg.header.frame_id = 'base_link'
    msg.current_action = 'The ego vehicle is driving straight at 9 m/s.'
    msg.future_action = 'It will slow down and stop at the stop line.'
    msg.reasoning = 'The traffic light ahead is turning red. ' * 20
    msg.control_action = DrivingReasoning.CONTROL_STOP
    msg.turn_action = DrivingReasoning.TURN_NONE
    msg.lane_action = DrivingReasoning.LANE_NONE
    msg.teacher = 'rule-v1'
    msg.prompt_version = 'vlmad-v1'
    msg.status = DrivingReasoning.STATUS_OK
    return msg


def main() -> int:
    rclpy.init()
    node = rclpy.create_node('vlmad_test_publisher')
    pub_r = node.create_publisher(DrivingReasoning, '/vlmad/reasoning', LATCHED)
    pub_i = node.create_publisher(CompressedImage, '/CAM_FRONT/image_rect_compressed', LATCHED)
    image = CompressedImage(format='jpeg')
    image.header.frame_id = 'cam_front_optical_frame'
    image.data = encode_jpeg(picture(), quality=95)
    pub_r.publish(reasoning())
    pub_i.publish(image)
    print(f'published {len(image.data)}', flush=True)
    sys.stdin.read()   # stay alive (transient local) until the test closes our stdin
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
