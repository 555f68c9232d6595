"""
A stand-in for carla_ros_bridge in passive synchronous mode driven by Bench2Drive's ROS 2 agent.

Run as its own process (`python test/helpers_fake_bridge.py --out result.json ...`). It waits
for /carla/hero/status (the agent does), publishes the route on /carla/hero/global_plan
(CarlaRoute, transient local), then ticks simulated time by 0.05 s (20 Hz), paced to at most
real time. Each tick publishes /clock, six bgra8 Images with CameraInfo under
/carla/hero/<CAM>/ and /carla/hero/odometry, all stamped with the tick's time, and then:
`--lockstep`: waits for /carla/hero/vehicle_control_cmd like the leaderboard (a control is
accepted only when its stamp is within 1 ms of the simulation time and not repeated; after 1 s
without one the car gets zero control); free-running: applies the last accepted control.
The car is carla.vehicle_control_response (`--drive control`) or moves along the route at
`--speed` regardless of control (`--drive route`). Every tick goes into the --out JSON.
`--sensors` also publishes what the leaderboard's agent gets instead of odometry:
/carla/hero/gnss (NavSatFix, CARLA's geo-reference at lat/lon 0 with the leaderboard's noise),
/carla/hero/imu (Imu: orientation, yaw rate) and /carla/hero/speed (Float32);
`--no-odometry` leaves /carla/hero/odometry out.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

ROLE = 'hero'
DT = 0.05
T0 = 100.0          # first tick's simulation time [s]
EPSILON = 0.001     # the leaderboard's stamp tolerance [s]


def route_points(kind: str):
    """(xy, road options) of a test route: 'straight' (400 m east) or 'left' (turn at 100 m)."""
    from vlmad_ros.control.route import RoadOption as R
    if kind == 'straight':
        xy = [[x, 0.0] for x in range(0, 401, 20)]
        return np.array(xy, float), [int(R.LANEFOLLOW)] * len(xy)
    east = [[x, 0.0] for x in range(0, 100, 20)]
    arc = [[100 + 10 * math.sin(a), 10 - 10 * math.cos(a)]
           for a in np.linspace(0, math.pi / 2, 5)]
    north = [[110.0, 10.0 + y] for y in range(20, 301, 20)]
    options = ([int(R.LANEFOLLOW)] * len(east) + [int(R.LEFT)] * 4
               + [int(R.LANEFOLLOW)] * (1 + len(north)))
    return np.array(east + arc + north, float), options


def along(xy: np.ndarray, s: float):
    """(x, y, yaw) at arc length s of a polyline."""
    seg = np.diff(xy, axis=0)
    lengths = np.linalg.norm(seg, axis=1)
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    i = int(min(np.searchsorted(cum, s, side='right') - 1, len(seg) - 1))
    f = (s - cum[i]) / max(lengths[i], 1e-9)
    p = xy[i] + f * seg[i]
    return float(p[0]), float(p[1]), math.atan2(seg[i][1], seg[i][0])


class FakeBridge:
    """The bridge's topics and a simple car (see the module docstring)."""

    def __init__(self, args):
        import rclpy
        from carla_msgs.msg import CarlaEgoVehicleControl, CarlaRoute
        from nav_msgs.msg import Odometry
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import CameraInfo, Image, Imu, NavSatFix
        from std_msgs.msg import Bool, Float32
        from vlmad_ros.rig import CAMERA_NAMES, load_rig
        self.args = args
        rclpy.init()
        self.node = rclpy.create_node('fake_carla_bridge')
        reliable = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        n = self.node
        self.pub_clock = n.create_publisher(Clock, '/clock', 10)
        self.pub_odom = n.create_publisher(Odometry, f'/carla/{ROLE}/odometry', reliable)
        self.pub_route = n.create_publisher(CarlaRoute, f'/carla/{ROLE}/global_plan', latched)
        self.cams = []
        rig = load_rig('carla').scaled(args.width, args.height)
        for i, name in enumerate(CAMERA_NAMES):
            img = Image(height=args.height, width=args.width, encoding='bgra8',
                        step=4 * args.width)
            pixels = np.zeros((args.height, args.width, 4), np.uint8)
            pixels[: args.height // 2] = (200, 160, 120, 255)          # sky
            pixels[args.height // 2:] = (90 + 10 * i, 90, 90, 255)       # road
            img.data = pixels.tobytes()
            img.header.frame_id = f'{name.lower()}_optical_frame'
            cam = rig[name]
            info = CameraInfo(height=args.height, width=args.width)
            info.k = [cam.fx, 0.0, cam.cx, 0.0, cam.fy, cam.cy, 0.0, 0.0, 1.0]
            info.header.frame_id = img.header.frame_id
            self.cams.append((n.create_publisher(Image, f'/carla/{ROLE}/{name}/image', reliable),
                              n.create_publisher(CameraInfo, f'/carla/{ROLE}/{name}/camera_info',
                                                 reliable), img, info))
        self.controls = []    # (stamp, wall, msg)
        n.create_subscription(CarlaEgoVehicleControl, f'/carla/{ROLE}/vehicle_control_cmd',
                              lambda m: self.controls.append(
                                  (m.header.stamp.sec + m.header.stamp.nanosec * 1e-9,
                                   time.monotonic(), m)), QoSProfile(depth=1))
        self.status = []
        n.create_subscription(Bool, f'/carla/{ROLE}/status',
                              lambda m: self.status.append(m.data), latched)
        self.route_type, self.odom_type, self.clock_type = CarlaRoute, Odometry, Clock
        self.sensor_types = (NavSatFix, Imu, Float32)
        self.pub_sensors = [n.create_publisher(kind, f'/carla/{ROLE}/{name}', reliable)
                            for kind, name in zip(self.sensor_types, ('gnss', 'imu', 'speed'))]
        self.rng = np.random.default_rng(0)
        self.xy, self.options = route_points(args.route)

    def spin(self, seconds: float) -> None:
        import rclpy
        end = time.monotonic() + seconds
        while True:
            rclpy.spin_once(self.node, timeout_sec=max(0.0, min(0.005, end - time.monotonic())))
            if time.monotonic() >= end:
                return

    def publish_route(self) -> None:
        from geometry_msgs.msg import Pose
        msg = self.route_type(road_options=self.options)
        for x, y in self.xy:
            pose = Pose()
            pose.position.x, pose.position.y, pose.orientation.w = float(x), float(y), 1.0
            msg.poses.append(pose)
        self.pub_route.publish(msg)

    def publish_tick(self, t: float, x: float, y: float, yaw: float, v: float, w: float):
        from builtin_interfaces.msg import Time
        sec, ns = divmod(int(round(t * 1e9)), 1_000_000_000)
        stamp = Time(sec=sec, nanosec=ns)
        self.pub_clock.publish(self.clock_type(clock=stamp))
        for pub_img, pub_info, img, info in self.cams:
            img.header.stamp = info.header.stamp = stamp
            pub_info.publish(info)
            pub_img.publish(img)
        if self.args.sensors:
            self.publish_sensors(stamp, x, y, yaw, v, w)
        if self.args.no_odometry:
            return
        odom = self.odom_type()
        odom.header.stamp, odom.header.frame_id, odom.child_frame_id = stamp, 'map', ROLE
        p, q = odom.pose.pose.position, odom.pose.pose.orientation
        p.x, p.y, q.z, q.w = x, y, math.sin(yaw / 2), math.cos(yaw / 2)
        odom.twist.twist.linear.x, odom.twist.twist.angular.z = v, w
        self.pub_odom.publish(odom)

    def publish_sensors(self, stamp, x, y, yaw, v, w):
        """GNSS (noise 5e-6 deg, ~0.55 m), IMU (exact orientation, noisy gyro), speed."""
        from vlmad_ros.control.odometry import GeoReference
        gnss_type, imu_type, speed_type = self.sensor_types
        lat, lon = GeoReference(0.0, 0.0).to_geo(x, y)
        gnss = gnss_type(latitude=lat + self.rng.normal(0, 5e-6),   # status left unset like
                         longitude=lon + self.rng.normal(0, 5e-6))  # carla_ros_bridge's
        imu = imu_type()
        imu.orientation.z, imu.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
        imu.angular_velocity.z = w + self.rng.normal(0, 0.01)
        for msg in (gnss, imu):
            msg.header.stamp, msg.header.frame_id = stamp, f'{ROLE}/{type(msg).__name__}'
        pub_gnss, pub_imu, pub_speed = self.pub_sensors
        pub_speed.publish(speed_type(data=float(v)))
        pub_imu.publish(imu)
        pub_gnss.publish(gnss)

    def take_control(self, t: float, last_stamp, wait: float):
        """Apply the leaderboard's check: return (control or None, ignored records)."""
        ignored, deadline = [], time.monotonic() + wait
        while True:
            while self.controls:
                stamp, wall, msg = self.controls.pop(0)
                if last_stamp is not None and abs(stamp - last_stamp) < EPSILON:
                    ignored.append({'stamp': stamp, 'sim_time': t, 'why': 'repeated'})
                elif abs(stamp - t) > EPSILON:
                    ignored.append({'stamp': stamp, 'sim_time': t, 'why': 'stamp'})
                else:
                    return (stamp, wall, msg), ignored
            if time.monotonic() >= deadline:
                return None, ignored
            self.spin(0.002)

    def run(self) -> dict:
        a = self.args
        deadline = time.monotonic() + a.status_timeout
        while not self.status and time.monotonic() < deadline:
            self.spin(0.05)
        # Not the leaderboard's: a test starts ticking once its listeners are connected.
        listened = self.pub_sensors[0] if a.no_odometry else self.pub_odom
        while (listened.get_subscription_count() < a.odom_subscribers
               and time.monotonic() < deadline):
            self.spin(0.05)
        self.publish_route()
        self.spin(a.settle)
        x, y, yaw = along(self.xy, a.start_s)
        v, w, s, t = a.speed, 0.0, a.start_s, T0
        ticks, ignored, control, last_stamp = [], [], None, None
        start = time.monotonic()
        for k in range(a.ticks):
            wall_pub = time.monotonic()
            self.publish_tick(t, x, y, yaw, v, w)
            got, bad = self.take_control(t, last_stamp, 1.0 if a.lockstep else 0.0)
            ignored += bad
            if got is not None:
                last_stamp, control = got[0], got[2]
            elif a.lockstep:
                control = None          # the leaderboard's zero control after 1 s
            tick = {'t': t, 'wall_pub': wall_pub - start, 'x': x, 'y': y, 'yaw': yaw, 'v': v,
                    'accepted': got is not None,
                    'wall_ctl': None if got is None else got[1] - start}
            if control is not None:
                tick.update(throttle=control.throttle, steer=control.steer, brake=control.brake)
            ticks.append(tick)
            x, y, yaw, v, w, s = self.step(control, x, y, yaw, v, s)
            t = T0 + (k + 1) * DT
            self.spin(max(0.0, start + (k + 1) * DT - time.monotonic()))   # <= real time
        self.spin(0.3)
        ignored += self.take_control(t, last_stamp, 0.0)[1]
        return {'ticks': ticks, 'ignored': ignored, 'wall_s': time.monotonic() - start}

    def step(self, control, x, y, yaw, v, s):
        from vlmad_ros.carla import vehicle_control_response
        if self.args.drive == 'route':
            s += self.args.speed * DT
            x, y, yaw = along(self.xy, s)
            return x, y, yaw, self.args.speed, 0.0, s
        c = control
        v_new, w = vehicle_control_response(c.throttle if c else 0.0, c.steer if c else 0.0,
                                            c.brake if c else 0.0, v, DT)
        vm = 0.5 * (v + v_new)
        x += vm * math.cos(yaw + 0.5 * w * DT) * DT
        y += vm * math.sin(yaw + 0.5 * w * DT) * DT
        return x, y, yaw + w * DT, v_new, w, s + vm * DT


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument('--out', required=True)
    p.add_argument('--ticks', type=int, default=100)
    p.add_argument('--lockstep', action='store_true')
    p.add_argument('--route', choices=('straight', 'left'), default='straight')
    p.add_argument('--drive', choices=('control', 'route'), default='control')
    p.add_argument('--speed', type=float, default=0.0, help='initial (or route) speed [m/s]')
    p.add_argument('--start-s', type=float, default=0.0, help='start this far along the route')
    p.add_argument('--width', type=int, default=256)
    p.add_argument('--height', type=int, default=144)
    p.add_argument('--status-timeout', type=float, default=60.0)
    p.add_argument('--odom-subscribers', type=int, default=1,
                   help='wait for this many odometry subscribers before ticking')
    p.add_argument('--sensors', action='store_true', help='also publish gnss, imu, speed')
    p.add_argument('--no-odometry', action='store_true', help='no /carla/hero/odometry')
    p.add_argument('--settle', type=float, default=1.0, help='[s] after the route, before ticks')
    bridge = FakeBridge(p.parse_args())
    result = bridge.run()
    with open(bridge.args.out, 'w') as f:
        json.dump(result, f)


if __name__ == '__main__':
    main()
