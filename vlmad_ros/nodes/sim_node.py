"""
sim_node: the synthetic world live, in lockstep with the planner and the follower.

Per physics step (simulated time on /clock): publish odom, wait for the follower's command
answering it, step the world with it. Every camera_period: render the six cameras, publish
them with CameraInfo, the route command, ground truth and an odometry message for the
planner's synchronised set, and wait for the Path stamped with that set before going on. So
simulated time never runs ahead of a slow planner and results do not depend on machine speed.

Order within a planning tick: command and cameras + planner odometry at t -> Path(t) ->
odom(t) -> TwistStamped(t) -> step. The planner reads its own odometry topic
(planner_odom_topic) so the follower sees odom(t) only after Path(t) exists, and with
plan_ack_topic set the simulator also waits for the follower's acknowledgement of Path(t)
(path_follower ack_plans:=true) before odom(t): both then act on the same information every
run, whatever the machine load. With bridge_topics:=true the node publishes what the CARLA ROS
bridge publishes instead (bgra8 Image under /carla/<role>/<CAM>/image, camera_info,
/carla/<role>/odometry shared by planner and follower) and reads the carla_twist_to_control
Twist on /carla/<role>/twist; that mode tests the wiring, not the scores.

Topic names are relative (a namespace moves the whole world); /clock, /tf and /tf_static are
global. Frames follow REP 105: map -> odom (identity, static) -> base_link (odometry, /tf).

Results per scenario (route completion, collisions, red lights, off-road, driving score,
planner latency) go to vlmad/sim/result (std_msgs/String JSON, latched) and result_file.
All callbacks run in this node's single-threaded executor, spun by the simulation loop.
"""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

from geometry_msgs.msg import TransformStamped, Twist, TwistStamped
from nav_msgs.msg import Odometry, Path
import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String

from vlmad_ros import carla, stamps, topics
from vlmad_ros.images import encode_jpeg, rgb_to_image_msg
from vlmad_ros.msg import (DrivingCommand, GroundTruthObject, GroundTruthObjectArray,
                           TrafficLight, TrafficLightArray)
from vlmad_ros.nodes.common import (build, declare, LATCHED_COMMAND, LogThrottle,
                                    ParameterError, params_of)
from vlmad_ros.rig import CameraRig, load_rig
from vlmad_ros.sim.episode import agent_boxes, Episode, EpisodeSpec
from vlmad_ros.sim.episode_trace import Tick, Trace
from vlmad_ros.sim.score import markdown_table, ScenarioResult, summarize
from vlmad_ros.synth.world import EgoControl

try:
    from tf2_msgs.msg import TFMessage
except ImportError:   # tf2_msgs has no PyPI wheel; every ROS distro has it
    TFMessage = None

NODE_NAME = 'sim_node'
EPISODE_GAP_S = 5.0          # simulated pause between episodes (controllers reset on it)
START_TIME_S = 1.0           # first stamp (0 reads as "unset" in some tools)
PEER_SETTLE_S = 2.0          # [s wall] after the peers appear, before the first message
NS = 1_000_000_000
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


@dataclasses.dataclass
class SimConfig:
    """sim_node parameters (errors name the parameter)."""

    episodes: Tuple[str, ...] = ('red_light:0', 'pedestrian:0', 'stopped_vehicle:0', 'turn:0')
    duration: float = 15.0          # [s] simulated, per episode
    physics_dt: float = 0.1         # [s]
    camera_period: float = 0.2      # [s] a multiple of physics_dt
    # Rendered camera size (the rig is scaled to it): the benchmark's recording size.
    image_width: int = 800
    image_height: int = 450
    jpeg_quality: int = 90         # as `vlmad synth` records
    rig: str = 'nuscenes'
    bridge_topics: bool = False     # publish under the CARLA bridge's names and encodings
    role_name: str = carla.ROLE_NAME
    frame_prefix: str = ''          # 'car1/': car1/odom, car1/base_link, car1/CAM_... on one /tf
    planner_odom_topic: str = topics.relative(topics.SIM_PLANNER_ODOM)
    plan_ack_topic: str = ''        # '': off; else wait for the follower's ack of each Path
    plan_timeout: float = 120.0     # [s wall] waiting for one Path (the first includes warm-up)
    control_timeout: float = 20.0   # [s wall] waiting for one command
    startup_timeout: float = 120.0  # [s wall] waiting for planner and follower to appear
    result_file: str = ''
    trace_dir: str = ''
    exit_when_done: bool = True
    publish_ground_truth: bool = True

    def __post_init__(self):
        self.episodes = tuple(self.episodes)
        if not self.episodes:
            raise ValueError('episodes must list at least one "scenario:seed"')
        for name in ('duration', 'physics_dt', 'camera_period', 'plan_timeout',
                     'control_timeout', 'startup_timeout'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f'{name} must be finite and > 0, got {value}')
        ratio = self.camera_period / self.physics_dt
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            raise ValueError(f'camera_period ({self.camera_period}) must be a multiple of '
                             f'physics_dt ({self.physics_dt})')
        if not (16 <= self.image_width <= 4096 and 16 <= self.image_height <= 4096):
            raise ValueError(f'image_width/image_height must be in [16, 4096], got '
                             f'{self.image_width}x{self.image_height}')
        if not self.planner_odom_topic:
            raise ValueError('planner_odom_topic must not be empty (odom: share the odometry)')
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f'jpeg_quality must be in [1, 100], got {self.jpeg_quality}')
        if self.frame_prefix.startswith('/') or any(ch.isspace() for ch in self.frame_prefix):
            raise ValueError(f'frame_prefix must not start with "/" or hold spaces (tf2 frame '
                             f'names), got {self.frame_prefix!r}')
        if self.frame_prefix and self.bridge_topics:
            raise ValueError('frame_prefix must be empty with bridge_topics (the bridge names '
                             'the frames after role_name)')

    @property
    def camera_every(self) -> int:
        return int(round(self.camera_period / self.physics_dt))

    def specs(self) -> List[EpisodeSpec]:
        return [EpisodeSpec.parse(e, self.duration) for e in self.episodes]


DESCRIPTIONS = {
    'episodes': '"scenario:seed" per episode (docs/SYNTHETIC_WORLD.md)',
    'duration': 'simulated seconds per episode',
    'physics_dt': 'world step [s]; the follower answers every step',
    'camera_period': 'cameras + a plan every this [s] (a multiple of physics_dt)',
    'image_width': 'rendered camera width (the rig is scaled to it)',
    'image_height': 'rendered camera height',
    'jpeg_quality': 'JPEG quality of the camera images',
    'rig': 'camera rig: nuscenes, carla or a rig yaml path',
    'bridge_topics': 'publish under the CARLA ROS bridge names and encodings',
    'role_name': 'bridge mode: /carla/<role_name>/...',
    'frame_prefix': "prepended to the car's frames (odom, base_link, cameras; map stays "
                    "global), as robot_state_publisher's: several cars on one /tf",
    'planner_odom_topic': "the planner's odometry copy (set the planner's odom_topic to it); "
                          'odom: share the one odometry topic',
    'plan_ack_topic': "'' off; else wait for the follower's ack of each Path (ack_plans)",
    'plan_timeout': 'wall seconds waiting for one Path (the first includes warm-up)',
    'control_timeout': 'wall seconds waiting for one command from the follower',
    'startup_timeout': 'wall seconds waiting for planner and follower to appear',
    'result_file': 'JSON with per-scenario results and the summary (empty: none)',
    'trace_dir': 'per-episode traces for videos (empty: none)',
    'exit_when_done': 'exit after the last episode (false: keep spinning)',
    'publish_ground_truth': 'publish ground-truth objects and traffic lights',
}
PARAMETERS = tuple(params_of(SimConfig, DESCRIPTIONS))


def ns_of(t: float) -> int:
    return int(round(t * NS))


def stamp(msg_header, t_ns: int, frame: str = '') -> None:
    """Write integer nanoseconds and a frame into a header."""
    stamps.write_ns(msg_header.stamp, t_ns)
    msg_header.frame_id = frame


def make_renderer(rig: CameraRig) -> Callable:
    """Return world -> list of (H, W, 3) uint8 images in rig order (the synth renderer)."""
    from vlmad_ros.synth.render import Renderer
    renderer = Renderer(rig)
    return renderer.render


def read_config(node: Node) -> SimConfig:
    """Declare the parameters and check them, scenarios and rig included (errors name them)."""
    cfg = build(SimConfig, declare(node, PARAMETERS))
    try:
        cfg.specs()
        load_rig(cfg.rig)
    except (ValueError, FileNotFoundError) as err:
        raise ParameterError(str(err)) from None
    return cfg


def camera_info_msg(cam) -> CameraInfo:
    """Return the CameraInfo of a rig camera (ideal pinhole, no distortion)."""
    info = CameraInfo()
    info.width, info.height = cam.width, cam.height
    info.distortion_model = 'plumb_bob'
    info.d = [0.0] * 5
    info.k = [float(v) for v in cam.K.reshape(-1)]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [cam.fx, 0.0, cam.cx, 0.0, 0.0, cam.fy, cam.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def transform(t_ns: int, parent: str, child: str, xyz=(0.0, 0.0, 0.0),
              wxyz=(1.0, 0.0, 0.0, 0.0)) -> TransformStamped:
    """Return a TransformStamped parent -> child."""
    tf = TransformStamped()
    stamp(tf.header, t_ns, parent)
    tf.child_frame_id = child
    tr, rot = tf.transform.translation, tf.transform.rotation
    tr.x, tr.y, tr.z = (float(v) for v in xyz)
    rot.w, rot.x, rot.y, rot.z = (float(v) for v in wxyz)
    return tf


def static_transforms(rig: CameraRig, t_ns: int, odom_frame: str, base_frame: str,
                      frame_prefix: str = '') -> List[TransformStamped]:
    """Return map -> odom (identity: the odometry is exact) and base_link -> each camera."""
    out = [transform(t_ns, base_frame, frame_prefix + topics.camera_optical_frame(cam.name),
                     cam.translation, cam.rotation_wxyz) for cam in rig.cameras]
    if odom_frame != topics.MAP_FRAME:   # bridge mode: the bridge's odometry is in map
        out.append(transform(t_ns, topics.MAP_FRAME, odom_frame))
    return out


def ego_transform(ep: Episode, t_ns: int, odom_frame: str, base_frame: str) -> TransformStamped:
    """Return odom -> base_link: the ego pose, as the odometry says."""
    x, y, yaw = ep.ego_pose()
    return transform(t_ns, odom_frame, base_frame, (x, y, 0.0),
                     (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)))


def odometry_msg(ep: Episode, t_ns: int, frame: str, child: str) -> Odometry:
    """Return the ego's exact pose and twist (the world's ground truth) as Odometry."""
    x, y, yaw = ep.ego_pose()
    tw = ep.world.ego_twist()
    msg = Odometry()
    stamp(msg.header, t_ns, frame)
    msg.child_frame_id = child
    msg.pose.pose.position.x, msg.pose.pose.position.y = x, y
    msg.pose.pose.orientation.z = math.sin(yaw / 2)
    msg.pose.pose.orientation.w = math.cos(yaw / 2)
    msg.twist.twist.linear.x = float(tw['vx'])
    msg.twist.twist.linear.y = float(tw['vy'])
    msg.twist.twist.angular.z = float(tw['wz'])
    return msg


def objects_msg(ep: Episode, t_ns: int, frame: str) -> GroundTruthObjectArray:
    """Return every agent in the ego frame (base_link)."""
    x0, y0, yaw0 = ep.ego_pose()
    c, s = math.cos(yaw0), math.sin(yaw0)
    arr = GroundTruthObjectArray()
    stamp(arr.header, t_ns, frame)
    for o in ep.world.objects():
        dx, dy = o.x - x0, o.y - y0
        obj = GroundTruthObject(id=o.id, object_class=int(o.cls))
        obj.pose.position.x, obj.pose.position.y = c * dx + s * dy, -s * dx + c * dy
        obj.pose.position.z = o.z
        yaw = o.yaw - yaw0
        obj.pose.orientation.z, obj.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
        obj.size.x, obj.size.y, obj.size.z = o.length, o.width, o.height
        obj.velocity.x, obj.velocity.y = c * o.vx + s * o.vy, -s * o.vx + c * o.vy
        arr.objects.append(obj)
    return arr


def lights_msg(ep: Episode, t_ns: int) -> TrafficLightArray:
    """Return the traffic lights with their stop lines in the map frame."""
    lights = TrafficLightArray()
    stamp(lights.header, t_ns, topics.MAP_FRAME)
    for lid, state, p0, p1, _, _ in ep.world.lights():
        light = TrafficLight(id=lid, state=int(state))
        light.stop_line_start.x, light.stop_line_start.y = float(p0[0]), float(p0[1])
        light.stop_line_end.x, light.stop_line_end.y = float(p1[0]), float(p1[1])
        lights.lights.append(light)
    return lights


def trace_tick(ep: Episode, plan_xy) -> Tick:
    """Return what a video frame needs of one planning tick."""
    x, y, yaw = ep.ego_pose()
    lights = [[int(st), int(node[0]), int(node[1]), int(d)]
              for _, st, p0, _, node, d in ep.world.lights()
              if math.hypot(p0[0] - x, p0[1] - y) < 60.0]
    return Tick(t=ep.t, ego=[x, y, yaw, float(ep.world.ego.v)], command=int(ep.command()),
                plan=plan_xy, agents=agent_boxes(ep.world), lights=lights,
                route=ep.route_ahead().round(2).tolist())


class SimNode(Node):
    """Publishers, subscriptions and waiting over sim.Episode; the loop is `run`."""

    def __init__(self):
        super().__init__(NODE_NAME)
        self.cfg = c = read_config(self)
        self.rig = load_rig(c.rig).scaled(c.image_width, c.image_height)
        self.render = make_renderer(self.rig)
        self.executor_ = rclpy.executors.SingleThreadedExecutor()
        self.executor_.add_node(self)
        self.plans: Dict[int, Path] = {}
        self.cmds: Dict[int, Tuple[float, float]] = {}
        self.twists: List[Tuple[float, float]] = []
        self.acks: set = set()
        self.counts_missed_cmd = 0
        self._twist_mark = 0
        self._odom_sent_this_tick = False
        self.throttle = LogThrottle(5.0)
        self.infos = [camera_info_msg(cam) for cam in self.rig.cameras]
        self._create_global_interfaces()
        if c.bridge_topics:
            self._create_bridge_interfaces()
        else:
            self._create_interfaces()
        self.pub_command = self.create_publisher(
            DrivingCommand, topics.relative(topics.COMMAND), LATCHED_COMMAND)
        self.pub_objects = self.create_publisher(
            GroundTruthObjectArray, topics.relative(topics.OBJECTS), 10)
        self.pub_lights = self.create_publisher(
            TrafficLightArray, topics.relative(topics.TRAFFIC_LIGHTS), 10)
        self.sub_plan = self.create_subscription(Path, topics.relative(topics.PLAN),
                                                 self._on_plan, RELIABLE)
        self.sub_ack = (self.create_subscription(Header, c.plan_ack_topic, self._on_ack,
                                                 RELIABLE) if c.plan_ack_topic else None)

    # ----- set-up -----
    def _create_global_interfaces(self) -> None:
        self.pub_clock = self.create_publisher(Clock, topics.CLOCK, 10)
        self.pub_result = self.create_publisher(String, topics.relative(topics.SIM_RESULT),
                                                LATCHED)
        self.pub_tf = (self.create_publisher(TFMessage, topics.TF, 10)
                       if TFMessage is not None else None)
        self.pub_tf_static = (self.create_publisher(TFMessage, topics.TF_STATIC, LATCHED)
                              if TFMessage is not None else None)

    def _create_interfaces(self) -> None:
        """nuScenes-style topics (relative), REP 105 frames."""
        c = self.cfg
        self.pub_images = [self.create_publisher(
            CompressedImage, topics.relative(topics.camera_image_topic(n)), RELIABLE)
            for n in self.rig.names]
        self.pub_infos = [self.create_publisher(
            CameraInfo, topics.relative(topics.camera_info_topic(n)), RELIABLE)
            for n in self.rig.names]
        odom_topic = topics.relative(topics.ODOM)
        self.pub_odom = self.create_publisher(Odometry, odom_topic, RELIABLE)
        self.pub_planner_odom = (
            self.create_publisher(Odometry, c.planner_odom_topic, RELIABLE)
            if topics.relative(c.planner_odom_topic) != odom_topic else None)
        self.sub_cmd = self.create_subscription(
            TwistStamped, topics.relative(topics.CMD_VEL), self._on_twist_stamped, 10)
        self.odom_frame = c.frame_prefix + topics.ODOM_FRAME
        self.base_frame = c.frame_prefix + topics.BASE_FRAME

    def _create_bridge_interfaces(self) -> None:
        """Publish and subscribe as the CARLA ROS bridge does (absolute /carla/<role>/...)."""
        role = self.cfg.role_name
        self.pub_images = [self.create_publisher(Image, carla.image_topic(n, role), RELIABLE)
                           for n in self.rig.names]
        self.pub_infos = [self.create_publisher(CameraInfo, carla.camera_info_topic(n, role),
                                                RELIABLE) for n in self.rig.names]
        self.pub_odom = self.create_publisher(Odometry, carla.odometry_topic(role), RELIABLE)
        self.pub_planner_odom = None
        self.sub_cmd = self.create_subscription(Twist, carla.twist_topic(role), self._on_twist,
                                                10)
        self.odom_frame, self.base_frame = topics.MAP_FRAME, role   # the bridge's frames

    # ----- callbacks: store only -----
    def _on_plan(self, msg) -> None:
        self.plans[msg.header.stamp.sec * NS + msg.header.stamp.nanosec] = msg

    def _on_ack(self, msg) -> None:
        self.acks.add(msg.stamp.sec * NS + msg.stamp.nanosec)

    def _on_twist_stamped(self, msg) -> None:
        t_ns = msg.header.stamp.sec * NS + msg.header.stamp.nanosec
        cmd = (msg.twist.linear.x, msg.twist.angular.z)
        if self.cmds.get(t_ns, cmd) != cmd:   # would make the run depend on timing
            self.throttle(self.get_logger().warn, 'conflicting_commands',
                          f'two different commands for the odometry at {t_ns / NS:.2f} s; '
                          f'using the first')
            return
        self.cmds[t_ns] = cmd

    def _on_twist(self, msg) -> None:
        self.twists.append((msg.linear.x, msg.angular.z))

    def wait(self, cond, timeout: float) -> bool:
        """Spin this node until cond() or timeout [s wall]."""
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline or not rclpy.ok():
                return False
            self.executor_.spin_once(timeout_sec=0.005)
        return True

    # ----- TF -----
    def _odom(self, ep: Episode, t_ns: int) -> Odometry:
        return odometry_msg(ep, t_ns, self.odom_frame, self.base_frame)

    def _publish_tf(self, ep: Episode, t_ns: int) -> None:
        if self.pub_tf is None:
            return
        self.pub_tf.publish(TFMessage(transforms=[
            ego_transform(ep, t_ns, self.odom_frame, self.base_frame)]))

    def publish_tf_static(self) -> None:
        """Publish map -> odom (identity: odometry is exact) and base_link -> cameras."""
        if self.pub_tf_static is None:
            self.get_logger().warn('tf2_msgs is not installed: /tf and /tf_static are not '
                                   'published (the planner does not need them)')
            return
        self.pub_tf_static.publish(TFMessage(transforms=static_transforms(
            self.rig, ns_of(START_TIME_S), self.odom_frame, self.base_frame,
            self.cfg.frame_prefix)))

    # ----- the loop -----
    def wait_for_peers(self) -> bool:
        """Planner and follower subscribed and publishing (DDS discovery done)."""
        def ready():
            outs = [p.get_subscription_count() > 0 for p in self.pub_images]
            outs.append(self.pub_odom.get_subscription_count() > 0)
            outs.append(self.pub_command.get_subscription_count() > 0 or
                        self.cfg.bridge_topics)
            if self.pub_planner_odom is not None:
                outs.append(self.pub_planner_odom.get_subscription_count() > 0)
            outs.append(self.sub_plan.get_publisher_count() > 0)
            if self.sub_ack is not None:
                outs.append(self.sub_ack.get_publisher_count() > 0)
            outs.append(self.sub_cmd.get_publisher_count() > 0)
            return all(outs)
        if not self.wait(ready, self.cfg.startup_timeout):
            return False
        # Discovery is two-sided: this side seeing a reader does not mean that reader already
        # accepts this writer's samples (the first camera set was lost under load without this).
        self.wait(lambda: False, PEER_SETTLE_S)
        return True

    def _publish_cameras(self, ep: Episode, t_ns: int, want_jpegs: bool) -> List[bytes]:
        """Render, publish every camera with its CameraInfo; the JPEGs for a trace."""
        c = self.cfg
        jpegs = []
        for k, (rgb, pub) in enumerate(zip(self.render(ep.world), self.pub_images)):
            frame = c.frame_prefix + topics.camera_optical_frame(self.rig.cameras[k].name)
            stamp(self.infos[k].header, t_ns, frame)
            self.pub_infos[k].publish(self.infos[k])
            if c.bridge_topics:
                msg = rgb_to_image_msg(rgb, 'bgra8')
                if want_jpegs:
                    jpegs.append(encode_jpeg(rgb, c.jpeg_quality))
            else:
                data = encode_jpeg(rgb, c.jpeg_quality)
                msg = CompressedImage(format='jpeg', data=data)
                jpegs.append(data)
            stamp(msg.header, t_ns, frame)
            pub.publish(msg)
        return jpegs

    def _wait_for_plan(self, t_ns: int, stats: Dict[str, list]):
        """Wait for the Path answering the set at t_ns (and its ack); its xy or None."""
        c = self.cfg
        sent = time.monotonic()
        plan_xy = None
        if self.wait(lambda: t_ns in self.plans, c.plan_timeout):
            stats['latency'].append(1000.0 * (time.monotonic() - sent))
            msg = self.plans.pop(t_ns)
            # The follower holds Path(t) before it can see odom(t), whatever the load.
            if c.plan_ack_topic and not self.wait(lambda: t_ns in self.acks, c.control_timeout):
                self.throttle(self.get_logger().warn, 'plan_ack',
                              'the follower did not acknowledge a plan in time')
            self.acks = {k for k in self.acks if k > t_ns}
            plan_xy = [[p.pose.position.x, p.pose.position.y] for p in msg.poses]
        else:
            stats['missed'].append(t_ns)
            self.get_logger().warn(f'no plan for the camera set at t={t_ns / NS:.2f} s '
                                   f'within {c.plan_timeout} s (wall); driving on')
        self.plans = {k: v for k, v in self.plans.items() if k > t_ns}
        return plan_xy

    def planning_tick(self, ep: Episode, t_ns: int, trace: Optional[Trace],
                      stats: Dict[str, list]) -> None:
        """Command, ground truth, cameras and the planner's odometry at t; wait for Path(t)."""
        cmd = DrivingCommand(command=int(ep.command()))
        stamp(cmd.header, t_ns, self.base_frame)
        self.pub_command.publish(cmd)
        if self.cfg.publish_ground_truth:
            self.pub_objects.publish(objects_msg(ep, t_ns, self.base_frame))
            self.pub_lights.publish(lights_msg(ep, t_ns))
        jpegs = self._publish_cameras(ep, t_ns, trace is not None)
        if self.pub_planner_odom is not None:
            self.pub_planner_odom.publish(self._odom(ep, t_ns))
        else:   # bridge mode: one odometry topic; the follower answers this one too
            self._twist_mark = len(self.twists)
            self.pub_odom.publish(self._odom(ep, t_ns))
        plan_xy = self._wait_for_plan(t_ns, stats)
        if trace is not None:
            trace.add(trace_tick(ep, plan_xy), jpegs)

    def control_step(self, ep: Episode, t_ns: int, last: EgoControl) -> EgoControl:
        """Publish odom(t), wait for the command answering it, step the world."""
        c = self.cfg
        if self.pub_planner_odom is not None or not self._odom_sent_this_tick:
            self._twist_mark = len(self.twists)
            self.pub_odom.publish(self._odom(ep, t_ns))
        self._odom_sent_this_tick = False
        if c.bridge_topics:
            mark = self._twist_mark
            ok = self.wait(lambda: len(self.twists) > mark, c.control_timeout)
            ctl = last
            if ok:
                lin, ang = self.twists[-1]
                target, yaw_rate = carla.twist_to_control_response(
                    lin, ang, ep.world.ego.v, c.physics_dt)
                ctl = EgoControl(target, yaw_rate)
        else:
            ok = self.wait(lambda: t_ns in self.cmds, c.control_timeout)
            ctl = EgoControl(*self.cmds.pop(t_ns)) if ok else last
            self.cmds = {k: v for k, v in self.cmds.items() if k > t_ns}
        if not ok:
            self.counts_missed_cmd += 1
            self.throttle(self.get_logger().warn, 'no_command',
                          f'no command for t={t_ns / NS:.2f} s within '
                          f'{c.control_timeout} s (wall); keeping the last one')
        ep.step(ctl)
        return ctl

    def run_episode(self, spec: EpisodeSpec, start_ns: int, index: int) -> ScenarioResult:
        """One episode in lockstep; its result (and trace, with trace_dir)."""
        c = self.cfg
        wall0 = time.monotonic()
        ep = Episode(spec, c.physics_dt)
        trace = Trace(spec.scenario, spec.seed, self.rig.names) if c.trace_dir else None
        stats = {'latency': [], 'missed': []}
        self.counts_missed_cmd = 0
        ctl = EgoControl(float(ep.world.ego.v), 0.0)
        dt_ns = ns_of(c.physics_dt)
        while not ep.done and rclpy.ok():
            t_ns = start_ns + ep.k * dt_ns
            self.pub_clock.publish(Clock(clock=rclpy.time.Time(nanoseconds=t_ns).to_msg()))
            self._publish_tf(ep, t_ns)
            self._odom_sent_this_tick = False
            if ep.k % c.camera_every == 0:
                self.planning_tick(ep, t_ns, trace, stats)
                # Bridge mode shares the odometry topic: the planner's copy is the one.
                self._odom_sent_this_tick = self.pub_planner_odom is None
            ctl = self.control_step(ep, t_ns, ctl)
        lat = np.array(stats['latency']) if stats['latency'] else np.array([math.nan])
        result = ep.result(plans=len(stats['latency']), plans_missed=len(stats['missed']),
                           latency_ms_p50=float(np.percentile(lat, 50)),
                           latency_ms_p95=float(np.percentile(lat, 95)),
                           wall_time=time.monotonic() - wall0)
        if trace is not None:
            trace.result = result.to_dict()
            trace.save(c.trace_dir, f'episode_{index:02d}_{spec.scenario}_{spec.seed}')
        return result

    def _report(self, i: int, r: ScenarioResult) -> None:
        self.pub_result.publish(String(data=json.dumps({'episode': i, 'result': r.to_dict()})))
        self.get_logger().info(
            f'{r.scenario}:{r.seed} route {r.route_completion:.1f} %, '
            f'collisions {r.collisions_vehicle}+{r.collisions_pedestrian}, red lights '
            f'{r.red_lights}, off-road {r.off_road_events}, driving score '
            f'{r.driving_score:.1f} ({r.wall_time:.1f} s wall)')

    def run(self) -> int:
        """Every episode in turn; 3 when planner or follower never appear."""
        c = self.cfg
        self.publish_tf_static()
        self.pub_clock.publish(Clock(clock=rclpy.time.Time(
            nanoseconds=ns_of(START_TIME_S)).to_msg()))
        self.get_logger().info('waiting for the planner and the follower ...')
        if not self.wait_for_peers():
            self.get_logger().error(
                f'planner/follower not found within {c.startup_timeout} s: is planner_node '
                f'subscribed to the camera topics and path_follower to the odometry?')
            return 3
        results: List[ScenarioResult] = []
        start = START_TIME_S
        for i, spec in enumerate(c.specs()):
            self.get_logger().info(f'episode {i + 1}/{len(c.episodes)}: {spec.scenario} '
                                   f'seed {spec.seed}, {spec.duration} s')
            results.append(self.run_episode(spec, ns_of(start), i))
            self._report(i, results[-1])
            start += spec.duration + EPISODE_GAP_S
            if not rclpy.ok():
                break
        self._write_results(results)
        print(markdown_table(results), flush=True)
        return 0

    def _write_results(self, results: List[ScenarioResult]) -> None:
        summary = summarize(results)
        self.pub_result.publish(String(data=json.dumps({'summary': summary})))
        if self.cfg.result_file:
            out = {'summary': summary, 'scenarios': [r.to_dict() for r in results],
                   'config': dataclasses.asdict(self.cfg)}
            path = pathlib.Path(self.cfg.result_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(out, indent=1, default=str))


def main(args=None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = SimNode()
        rc = node.run()
        if node.cfg.exit_when_done is False:
            node.executor_.spin()
        return rc
    except ParameterError as err:
        print(f'[{NODE_NAME}] invalid parameter: {err}', file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    sys.exit(main())
