"""
carla_odometry_node: GNSS (NavSatFix) + IMU (Imu) + speedometer (Float32) -> nav_msgs/Odometry.

The CARLA leaderboard (Bench2Drive) gives its agents no odometry; this node makes it from the
sensors it does give, with control.odometry.GnssImuOdometry (formula and filter there), in the
route's map frame, so the planner and carla_control_node read it as they read the bridge's.

One Odometry per tick, stamped with the tick: a GNSS fix and an IMU message with the same stamp
(the bridge stamps a synchronous tick's sensors alike) make a set, fused with the latest speed
(std_msgs/Float32 has no stamp; the bridge publishes it every tick). Topics are relative;
launch/bench2drive.launch.py remaps them to /carla/<role>/{gnss,imu,speed}.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from typing import Dict, Optional

from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Imu, NavSatFix, NavSatStatus
from std_msgs.msg import Float32

from vlmad_ros import stamps
from vlmad_ros.control.odometry import GeoReference, GnssImuOdometry, OdometryConfig
from vlmad_ros.control.plan_input import yaw_of
from vlmad_ros.nodes.common import declare, ParameterError, params_of, run_node

NODE_NAME = 'carla_odometry_node'
RELIABILITY = ('reliable', 'best_effort')
STAMP_TOLERANCE = 1e-3   # [s] a GNSS fix and an IMU message this close are one tick


@dataclasses.dataclass
class NodeConfig:
    """Topics and frames (the filter's own settings are OdometryConfig)."""

    gnss_topic: str = 'gnss'
    imu_topic: str = 'imu'
    speed_topic: str = 'speed'
    odom_topic: str = 'odometry'
    frame_id: str = 'map'
    child_frame_id: str = 'base_link'
    lat_ref: float = 0.0
    lon_ref: float = 0.0
    reliability: str = 'reliable'

    def __post_init__(self):
        for name in ('gnss_topic', 'imu_topic', 'speed_topic', 'odom_topic', 'frame_id',
                     'child_frame_id'):
            if not getattr(self, name):
                raise ValueError(f'{name} must not be empty')
        GeoReference(self.lat_ref, self.lon_ref)   # raises naming lat_ref / lon_ref


DESCRIPTIONS = {
    'gnss_topic': 'input sensor_msgs/NavSatFix', 'imu_topic': 'input sensor_msgs/Imu',
    'speed_topic': 'input std_msgs/Float32 speed [m/s]',
    'odom_topic': 'output nav_msgs/Odometry', 'frame_id': "odometry frame (the route's)",
    'child_frame_id': 'the ego frame', 'lat_ref': "the map's geo-reference latitude [deg]",
    'lon_ref': "the map's geo-reference longitude [deg]",
    'reliability': 'sensor subscription reliability',
    'gnss_sigma': 'GNSS noise per axis [m]', 'speed_sigma': 'speed uncertainty [m/s]',
    'heading_sigma': 'heading uncertainty [rad]',
    'heading_gain': 'weight of the IMU orientation per update (0: gyro only)',
}
PARAMETERS = tuple(params_of(NodeConfig, DESCRIPTIONS, choices={'reliability': RELIABILITY})
                   + params_of(OdometryConfig, DESCRIPTIONS))


def build_configs(values: Dict[str, object]):
    """Validate parameter values into configs; ValueError names the parameter."""
    node = NodeConfig(**{f.name: values[f.name] for f in dataclasses.fields(NodeConfig)})
    odom = OdometryConfig(**{f.name: values[f.name] for f in dataclasses.fields(OdometryConfig)})
    return node, odom


def usable_fix(msg: NavSatFix) -> bool:
    """
    Whether a fix has a position: anything but an explicit STATUS_NO_FIX, with finite lat/lon.

    carla_ros_bridge leaves status unset, which is STATUS_UNKNOWN (-2) from Jazzy on (0 before).
    """
    return msg.status.status != NavSatStatus.STATUS_NO_FIX and all(
        math.isfinite(v) for v in (msg.latitude, msg.longitude))


class CarlaOdometryNode(Node):
    """A GNSS + IMU pair of one stamp and the latest speed -> one Odometry."""

    def __init__(self):
        super().__init__(NODE_NAME)
        try:
            self.cfg, odom_cfg = build_configs(declare(self, PARAMETERS))
        except ValueError as err:
            raise ParameterError(str(err)) from None
        c = self.cfg
        self.filter = GnssImuOdometry(GeoReference(c.lat_ref, c.lon_ref), odom_cfg)
        self.gnss: Optional[NavSatFix] = None
        self.imu: Optional[Imu] = None
        self.speed: Optional[float] = None
        self.last_t: Optional[float] = None
        qos = QoSProfile(depth=10, reliability=(
            ReliabilityPolicy.RELIABLE if c.reliability == 'reliable'
            else ReliabilityPolicy.BEST_EFFORT))
        self.pub = self.create_publisher(Odometry, c.odom_topic, qos)
        self.create_subscription(NavSatFix, c.gnss_topic, self.on_gnss, qos)
        self.create_subscription(Imu, c.imu_topic, self.on_imu, qos)
        self.create_subscription(Float32, c.speed_topic, self.on_speed, qos)
        self.get_logger().info(
            f'{NODE_NAME}: {self.resolve_topic_name(c.gnss_topic)} + '
            f'{self.resolve_topic_name(c.imu_topic)} + {self.resolve_topic_name(c.speed_topic)}'
            f' -> {self.resolve_topic_name(c.odom_topic)} (geo-reference {c.lat_ref}, '
            f'{c.lon_ref})')

    def on_gnss(self, msg: NavSatFix) -> None:
        if usable_fix(msg):
            self.gnss = msg
            self.fuse()

    def on_imu(self, msg: Imu) -> None:
        self.imu = msg
        self.fuse()

    def on_speed(self, msg: Float32) -> None:
        if math.isfinite(msg.data):
            first = self.speed is None
            self.speed = float(msg.data)
            if first:
                self.fuse()   # a tick whose GNSS and IMU came before any speed

    def fuse(self) -> None:
        """Publish once both the GNSS fix and the IMU of a new tick are in."""
        if self.gnss is None or self.imu is None or self.speed is None:
            return
        t = stamps.to_s(self.gnss.header.stamp)
        if abs(stamps.to_s(self.imu.header.stamp) - t) > STAMP_TOLERANCE or (
                self.last_t is not None and abs(t - self.last_t) < STAMP_TOLERANCE):
            return
        self.last_t = t
        imu = self.imu
        yaw = None if imu.orientation_covariance[0] == -1.0 else yaw_of(imu.orientation)
        try:
            est = self.filter.update(t, self.gnss.latitude, self.gnss.longitude, yaw,
                                     imu.angular_velocity.z, self.speed)
        except ValueError as err:
            self.get_logger().warning(f'no odometry yet: {err}')
            return
        out = Odometry()
        out.header.stamp = self.gnss.header.stamp
        out.header.frame_id, out.child_frame_id = self.cfg.frame_id, self.cfg.child_frame_id
        p, q = out.pose.pose.position, out.pose.pose.orientation
        p.x, p.y = est.x, est.y
        q.z, q.w = math.sin(est.yaw / 2), math.cos(est.yaw / 2)
        var = est.position_sigma ** 2
        out.pose.covariance[0] = out.pose.covariance[7] = var
        out.twist.twist.linear.x, out.twist.twist.angular.z = est.speed, est.yaw_rate
        self.pub.publish(out)


def main(args=None) -> int:
    return run_node(NODE_NAME, CarlaOdometryNode, args)


if __name__ == '__main__':
    sys.exit(main())
