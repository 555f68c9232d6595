"""
annotator_node: the VLM teacher live, next to `ros2 bag play`.

Subscribes to the front camera (CompressedImage or Image), its CameraInfo (intrinsics; the
camera's pose on the car comes from the `rig` parameter), odometry and, for the rule teacher,
ground-truth objects and traffic lights. Publishes DrivingReasoning on vlmad/reasoning and
records the same records to a bag. Topic names are relative (a namespace moves them all).

What runs concurrently: the executor thread runs the subscription callbacks, which only store
messages and hand keyframes to vlmad_ros.teacher.live.LiveAnnotator (never blocking; a full
queue drops the keyframe and counts it); its worker threads decode, ask the teacher, publish
and record. On shutdown, requests already queued get `shutdown_timeout` seconds to finish,
the rest are recorded as FAILED ('shutdown'), and the bag is closed.
"""
from __future__ import annotations

import math
import pathlib
import sys
import threading
from typing import Dict

from nav_msgs.msg import Odometry
import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from vlmad_ros import topics
from vlmad_ros.bagschema import BagWriter, STORAGES
from vlmad_ros.data.geometry import yaw_from_quat_wxyz
from vlmad_ros.images import compressed_to_rgb, image_to_rgb
from vlmad_ros.msg import DrivingReasoning, GroundTruthObjectArray, TrafficLightArray
from vlmad_ros.nodes.common import (declare, LogThrottle, Param, ParameterError, RELIABILITY,
                                    run_node)
from vlmad_ros.rig import CAMERA_NAMES, load_rig
from vlmad_ros.teacher.live import LiveAnnotator, LiveConfig

NODE_NAME = 'annotator_node'


# Defaults equal config/annotator.yaml. Topics are relative: the node's namespace applies.
PARAMETERS = (
    Param('teacher', 'rule', 'rule (offline, deterministic) or openai (any OpenAI-compatible '
          'vision endpoint)', choices=('rule', 'openai')),
    Param('camera', 'CAM_FRONT', 'rig camera shown to the teacher', choices=CAMERA_NAMES),
    Param('rig', 'nuscenes', 'camera pose on the car (intrinsics come from CameraInfo): '
          'nuscenes, carla or a rig yaml path'),
    Param('image_topic', topics.relative(topics.camera_image_topic('CAM_FRONT')),
          'front camera image topic'),
    Param('image_transport', 'compressed', 'compressed (CompressedImage) or raw (Image)',
          choices=('compressed', 'raw')),
    Param('camera_info_topic', topics.relative(topics.camera_info_topic('CAM_FRONT')),
          'its CameraInfo'),
    Param('odom_topic', topics.relative(topics.ODOM),
          'nav_msgs/Odometry: future trajectories come from it'),
    Param('use_ground_truth', True, 'subscribe to ground-truth objects and lights (rule '
          'teacher)'),
    Param('objects_topic', topics.relative(topics.OBJECTS), 'vlmad_ros/GroundTruthObjectArray'),
    Param('lights_topic', topics.relative(topics.TRAFFIC_LIGHTS), 'vlmad_ros/TrafficLightArray'),
    Param('reasoning_topic', topics.relative(topics.REASONING), 'output DrivingReasoning'),
    Param('output_bag', '', 'record the DrivingReasoning messages to this new bag folder '
          '(empty: do not record)'),
    Param('storage', 'mcap', 'bag storage', choices=tuple(sorted(STORAGES))),
    Param('keyframe_rate', 2.0, 'keyframes per second at most [Hz]', bounds=(0.01, 100.0)),
    Param('queue_size', 8, 'keyframes waiting for the teacher; more are dropped and counted',
          bounds=(1, 10000)),
    Param('concurrency', 2, 'teacher requests in parallel', bounds=(1, 256)),
    Param('shutdown_timeout', 10.0, 'on shutdown, wait this long [s] for queued requests; the '
          'rest are recorded FAILED (at most 25 s: annotator.launch.py sends SIGTERM after 30)',
          bounds=(0.0, 25.0)),
    Param('reliability', 'reliable', 'subscription QoS: reliable (ros2 bag play) or '
          'best_effort (sensor drivers)', choices=tuple(sorted(RELIABILITY))),
    Param('qos_depth', 50, 'subscription queue depth', bounds=(1, 10000)),
    Param('base_url', 'https://api.openai.com/v1', 'openai teacher: API root'),
    Param('model', 'gpt-4o', 'openai teacher: model name'),
    Param('api_key_env', 'OPENAI_API_KEY', 'openai teacher: environment variable with the key'),
    Param('timeout', 60.0, 'openai teacher: seconds per request', bounds=(0.001, 3600.0)),
    Param('max_retries', 5, 'openai teacher: retries on 429/5xx/timeouts', bounds=(0, 100)),
    Param('backoff_base', 1.0, 'openai teacher: first retry delay [s]', bounds=(0.0, 600.0)),
    Param('backoff_max', 60.0, 'openai teacher: longest retry delay [s]', bounds=(0.0, 3600.0)),
    Param('image_width', 1600, 'openai teacher: prompt image width (0: as received)',
          bounds=(0, 10000)),
    Param('prompt_version', '', 'openai teacher: prompt version (empty: the default)'),
    Param('cache_dir', '', 'openai teacher: answer cache (empty: ~/.cache/vlmad_ros/teacher)'),
    Param('use_cache', True, 'openai teacher: reuse cached answers'),
)
PARAMETER_NAMES = tuple(p.name for p in PARAMETERS)


def validate(v: Dict[str, object]) -> None:
    """Check what the Param table cannot; errors name the parameter."""
    if v['output_bag'] and pathlib.Path(v['output_bag']).exists():
        raise ParameterError(f'output_bag: {v["output_bag"]} already exists (bags are never '
                             'overwritten)')
    for name in ('image_topic', 'camera_info_topic', 'odom_topic', 'reasoning_topic'):
        if not v[name]:
            raise ParameterError(f'{name}: must not be empty')


def make_teacher(v: Dict[str, object]):
    """Build the teacher the parameters ask for (the CLI options, shared)."""
    import argparse
    from vlmad_ros.teacher import cli
    args = argparse.Namespace(
        teacher=v['teacher'], base_url=v['base_url'], model=v['model'],
        api_key_env=v['api_key_env'], timeout=v['timeout'], max_retries=v['max_retries'],
        backoff_base=v['backoff_base'], backoff_max=v['backoff_max'], max_tokens=500,
        image_width=v['image_width'], detail='auto', no_json_mode=False,
        prompt_version=v['prompt_version'] or None, price_input=0.0, price_output=0.0,
        price_table=None, cache_dir=v['cache_dir'] or None, no_cache=not v['use_cache'])
    try:
        return cli.make_teacher(args)
    except ValueError as err:
        text = str(err)
        name = text.split(' ')[0]
        raise ParameterError(text if name in PARAMETER_NAMES
                             else f'{v["teacher"]}: {text}') from None


class AnnotatorNode(Node):
    """Front camera + odometry in, DrivingReasoning out (topic and bag)."""

    def __init__(self):
        super().__init__(NODE_NAME)
        self.throttle = LogThrottle(5.0)   # per-key throttled warnings for bad input
        v = declare(self, PARAMETERS)
        validate(v)
        self.values = v
        try:
            self.camera = load_rig(v['rig'])[v['camera']]
        except (FileNotFoundError, ValueError, OSError, KeyError) as err:
            raise ParameterError(f'rig: {err}') from None
        self._camera_lock = threading.Lock()
        self.teacher = make_teacher(v)
        self.pub = self.create_publisher(DrivingReasoning, v['reasoning_topic'], 50)
        # The bag records under the resolved name (/car1/vlmad/reasoning in namespace /car1).
        self.bag_topic = self.pub.topic_name
        self.bag = None
        self._bag_lock = threading.Lock()
        if v['output_bag']:
            self.bag = BagWriter(v['output_bag'], storage=v['storage'])
            self.bag.open()
            self.bag.add_topic(self.bag_topic, 'vlmad_ros/msg/DrivingReasoning')
        self.recorded = 0
        self.bad: Dict[str, int] = {}
        self.live = LiveAnnotator(
            self.teacher,
            LiveConfig(keyframe_rate=v['keyframe_rate'], queue_size=v['queue_size'],
                       workers=v['concurrency']),
            decode=self._decode, on_result=self._on_result, on_fatal=self._on_fatal)

        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=v['qos_depth'],
                         reliability=RELIABILITY[v['reliability']],
                         durability=DurabilityPolicy.VOLATILE)
        image_type = CompressedImage if v['image_transport'] == 'compressed' else Image
        self._subs = [
            self.create_subscription(image_type, v['image_topic'], self._on_image, qos),
            self.create_subscription(CameraInfo, v['camera_info_topic'], self._on_info, qos),
            self.create_subscription(Odometry, v['odom_topic'], self._on_odom, qos),
        ]
        if v['use_ground_truth']:
            self._subs.append(self.create_subscription(
                GroundTruthObjectArray, v['objects_topic'], self._on_objects, qos))
            self._subs.append(self.create_subscription(
                TrafficLightArray, v['lights_topic'], self._on_lights, qos))
        self.get_logger().info(
            f'teacher {self.teacher.name} ({self.teacher.prompt_version}); {v["image_topic"]} + '
            f'{v["odom_topic"]} -> {v["reasoning_topic"]}'
            + (f', recording to {v["output_bag"]}' if self.bag else ''))

    # ----- callbacks (executor thread: store and hand over, never wait) -----

    def _bad(self, source: str, reason: str, detail: str) -> None:
        key = f'{source} {reason}'
        self.bad[key] = self.bad.get(key, 0) + 1
        self.throttle(self.get_logger().warning, key, f'skipping {source}: {reason}: {detail}')

    def _on_image(self, msg) -> None:
        stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        with self._camera_lock:
            camera = self.camera
        self.live.add_frame(stamp, msg, camera)

    def _on_info(self, msg: CameraInfo) -> None:
        k = list(msg.k)
        if msg.width <= 0 or msg.height <= 0 or not all(math.isfinite(x) for x in k) \
                or k[0] <= 0 or k[4] <= 0:
            self._bad('camera_info', 'bad_camera_info', f'{msg.width}x{msg.height} k={k}')
            return
        cam = self.camera
        if (cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy) != (
                msg.width, msg.height, k[0], k[4], k[2], k[5]):
            with self._camera_lock:
                self.camera = cam.with_intrinsics(msg.width, msg.height, k)

    def _on_odom(self, msg: Odometry) -> None:
        p, tw = msg.pose.pose, msg.twist.twist
        q = p.orientation
        values = (p.position.x, p.position.y, q.w, q.x, q.y, q.z, tw.linear.x, tw.angular.z)
        if not all(math.isfinite(x) for x in values):
            self._bad('odometry', 'not_finite', 'NaN/inf in pose or twist')
            return
        stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        self.live.add_odometry(stamp, p.position.x, p.position.y,
                               yaw_from_quat_wxyz((q.w, q.x, q.y, q.z)), tw.linear.x,
                               tw.angular.z)

    def _on_objects(self, msg) -> None:
        self.live.add_objects(msg)

    def _on_lights(self, msg) -> None:
        self.live.add_lights(msg)

    # ----- worker threads -----

    def _decode(self, msg):
        if isinstance(msg, CompressedImage):
            width = int(getattr(self.teacher, 'image_width', 0) or 0)
            cam = self.camera
            size = None
            if width and width < cam.width:
                size = (width, max(1, cam.height * width // cam.width))
            return compressed_to_rgb(msg, min_size=size)
        return image_to_rgb(msg)

    def _on_result(self, stamp_ns: int, result) -> None:
        msg = result.fill_msg(DrivingReasoning(), stamp_ns, topics.BASE_FRAME)
        if rclpy.ok():
            try:
                self.pub.publish(msg)
            except Exception as err:  # context shutting down: the bag still gets the record
                self.get_logger().debug(f'publish failed: {err}')
        with self._bag_lock:
            if self.bag is not None:
                self.bag.write(self.bag_topic, result.to_rosbags_msg(stamp_ns, topics.BASE_FRAME),
                               stamp_ns)
                self.recorded += 1
        if not result.ok:
            self.throttle(self.get_logger().warning, 'failed',
                          f'keyframe {stamp_ns}: FAILED ({result.failure_reason})')

    def _on_fatal(self, text: str) -> None:
        self.throttle(self.get_logger().error, 'fatal', f'teacher unavailable: {text}')

    # ----- shutdown -----

    def close(self) -> None:
        """Finish or fail pending requests, close the bag, log the counts."""
        self.live.close(self.values['shutdown_timeout'])
        with self._bag_lock:
            if self.bag is not None:
                self.bag.close()
                self.bag = None
        text = f'{self.live.stats.text()}; {self.recorded} recorded'
        if self.bad:
            text += f'; bad inputs {self.bad}'
        print(f'[{NODE_NAME}] summary: {text}', file=sys.stderr, flush=True)


def main(args=None) -> int:
    return run_node(NODE_NAME, AnnotatorNode, args)


if __name__ == '__main__':
    sys.exit(main())
