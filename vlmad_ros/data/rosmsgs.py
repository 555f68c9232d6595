"""
rosbags message objects of the driving bag layout (docs/BAG_LAYOUT.md), built from plain data.

The converter writes them; the reader turns them back (`*_from_msg`). One place for the
field conventions: optical frames from topics.camera_optical_frame, quaternions (w, x, y, z)
in our code and (x, y, z, w) on the wire, GroundTruthObject size x = length, y = width.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from vlmad_ros import stamps
from vlmad_ros.bagschema import msg_class, ns_to_stamp
from vlmad_ros.rig import Camera
from vlmad_ros.topics import BASE_FRAME, camera_optical_frame, MAP_FRAME, ODOM_FRAME

CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'
COMPRESSED_IMAGE = 'sensor_msgs/msg/CompressedImage'
ODOMETRY = 'nav_msgs/msg/Odometry'
TF_MESSAGE = 'tf2_msgs/msg/TFMessage'
KEYFRAME = 'vlmad_ros/msg/Keyframe'
OBJECTS = 'vlmad_ros/msg/GroundTruthObjectArray'
OBJECT = 'vlmad_ros/msg/GroundTruthObject'
LIGHTS = 'vlmad_ros/msg/TrafficLightArray'
COMMAND = 'vlmad_ros/msg/DrivingCommand'
REASONING = 'vlmad_ros/msg/DrivingReasoning'


def header(stamp_ns: int, frame_id: str):
    return msg_class('std_msgs/msg/Header')(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)


def vector3(v: Sequence[float]):
    return msg_class('geometry_msgs/msg/Vector3')(x=float(v[0]), y=float(v[1]), z=float(v[2]))


def quaternion(q_wxyz: Sequence[float]):
    w, x, y, z = (float(v) for v in q_wxyz)
    return msg_class('geometry_msgs/msg/Quaternion')(x=x, y=y, z=z, w=w)


def quat_wxyz(q) -> Tuple[float, float, float, float]:
    """Return a geometry_msgs/Quaternion as (w, x, y, z)."""
    return (float(q.w), float(q.x), float(q.y), float(q.z))


def pose(position: Sequence[float], q_wxyz: Sequence[float]):
    point = msg_class('geometry_msgs/msg/Point')(
        x=float(position[0]), y=float(position[1]), z=float(position[2]))
    return msg_class('geometry_msgs/msg/Pose')(position=point, orientation=quaternion(q_wxyz))


def compressed_image(stamp_ns: int, frame_id: str, jpeg: bytes):
    """Build a jpeg CompressedImage carrying `jpeg` byte for byte (no re-encoding)."""
    return msg_class(COMPRESSED_IMAGE)(header=header(stamp_ns, frame_id), format='jpeg',
                                       data=np.frombuffer(jpeg, dtype=np.uint8))


def camera_info(stamp_ns: int, camera: Camera):
    """Build the CameraInfo of a rectified pinhole camera (nuScenes images are undistorted)."""
    k = camera.K
    p = np.zeros((3, 4))
    p[:, :3] = k
    roi = msg_class('sensor_msgs/msg/RegionOfInterest')(
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return msg_class(CAMERA_INFO)(
        header=header(stamp_ns, camera_optical_frame(camera.name)), height=camera.height,
        width=camera.width, distortion_model='plumb_bob', d=np.zeros(5), k=k.reshape(-1),
        r=np.eye(3).reshape(-1), p=p.reshape(-1), binning_x=0, binning_y=0, roi=roi)


def transform_stamped(stamp_ns: int, parent: str, child: str, translation: Sequence[float],
                      q_wxyz: Sequence[float]):
    transform = msg_class('geometry_msgs/msg/Transform')(
        translation=vector3(translation), rotation=quaternion(q_wxyz))
    return msg_class('geometry_msgs/msg/TransformStamped')(
        header=header(stamp_ns, parent), child_frame_id=child, transform=transform)


def tf_message(transforms: list):
    return msg_class(TF_MESSAGE)(transforms=transforms)


def odometry(stamp_ns: int, frame_id: str, child_frame_id: str, position: Sequence[float],
             q_wxyz: Sequence[float], linear: Sequence[float], angular: Sequence[float]):
    """Odometry: pose in frame_id, twist in child_frame_id (REP 105)."""
    cov = np.zeros(36)
    pwc = msg_class('geometry_msgs/msg/PoseWithCovariance')(pose=pose(position, q_wxyz),
                                                            covariance=cov)
    twist = msg_class('geometry_msgs/msg/Twist')(linear=vector3(linear), angular=vector3(angular))
    twc = msg_class('geometry_msgs/msg/TwistWithCovariance')(twist=twist, covariance=cov.copy())
    return msg_class(ODOMETRY)(header=header(stamp_ns, frame_id), child_frame_id=child_frame_id,
                               pose=pwc, twist=twc)


def ego_motion(stamp_ns: int, position: Sequence[float], q_wxyz: Sequence[float],
               linear: Sequence[float], angular: Sequence[float]):
    """REP 105 ego pose: Odometry in odom (child base_link) and the odom -> base_link /tf."""
    odom = odometry(stamp_ns, ODOM_FRAME, BASE_FRAME, position, q_wxyz, linear, angular)
    tf = tf_message([transform_stamped(stamp_ns, ODOM_FRAME, BASE_FRAME, position, q_wxyz)])
    return odom, tf


def map_to_odom(stamp_ns: int):
    """
    Return the static identity map -> odom transform of a recording.

    Recorded poses (ground truth, nuScenes ego_pose) are already localised and never jump, so
    odom coincides with map; the transform completes REP 105's map -> odom -> base_link.
    """
    return transform_stamped(stamp_ns, MAP_FRAME, ODOM_FRAME, (0.0, 0.0, 0.0),
                             (1.0, 0.0, 0.0, 0.0))


def driving_command(stamp_ns: int, command: int):
    return msg_class(COMMAND)(header=header(stamp_ns, BASE_FRAME), command=int(command))


def keyframe(stamp_ns: int, frame_id: str, token: str, scene: str, scenario: str = ''):
    return msg_class(KEYFRAME)(header=header(stamp_ns, frame_id), token=token, scene=scene,
                               scenario=scenario)


def ground_truth_object(obj_id: str, object_class: int, position: Sequence[float],
                        q_wxyz: Sequence[float], size_lwh: Sequence[float],
                        velocity: Sequence[float]):
    return msg_class(OBJECT)(id=obj_id, object_class=int(object_class),
                             pose=pose(position, q_wxyz), size=vector3(size_lwh),
                             velocity=vector3(velocity))


def ground_truth_objects(stamp_ns: int, frame_id: str, objects: list):
    return msg_class(OBJECTS)(header=header(stamp_ns, frame_id), objects=objects)


def camera_from_msgs(name: str, info, transform) -> Camera:
    """Build a rig Camera from its CameraInfo and the base_link -> optical frame transform."""
    k = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    t = transform.transform
    return Camera(name=name, width=int(info.width), height=int(info.height),
                  fx=float(k[0, 0]), fy=float(k[1, 1]), cx=float(k[0, 2]), cy=float(k[1, 2]),
                  translation=(float(t.translation.x), float(t.translation.y),
                               float(t.translation.z)),
                  rotation_wxyz=quat_wxyz(t.rotation))


def header_ns(msg) -> int:
    return stamps.to_ns(msg.header.stamp)
