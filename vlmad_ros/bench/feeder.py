"""
A six-camera JPEG + odometry publisher: the benchmark's feeder process and the tests' source.

Frames are drawn once (a road scene per camera, nuScenes size by default), JPEG-encoded once, and
re-published with new stamps, so the feeder costs DDS time, not encoding time. Run alone:

    python -m vlmad_ros.bench.feeder --rate 20 --duration 10 --log sets.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from vlmad_ros import topics
from vlmad_ros.images import encode_jpeg
from vlmad_ros.rig import CAMERA_NAMES


def road_scene(width: int, height: int, seed: int, noise: float = 3.0) -> np.ndarray:
    """
    Draw a plausible driving frame: sky gradient, road, lane marks, blocks, sensor noise.

    Texture and noise keep JPEG sizes near real camera frames (~200-400 kB at 1600x900, q90).
    """
    rng = np.random.default_rng(seed)
    img = np.empty((height, width, 3), np.float32)
    horizon = int(height * rng.uniform(0.4, 0.55))
    t = np.linspace(0, 1, horizon)[:, None]
    img[:horizon] = (np.array([120, 160, 220]) * (1 - t) + np.array([200, 210, 230]) * t)[:, None]
    img[horizon:] = np.array([90, 90, 95])
    for _ in range(12):                                   # buildings / vehicles
        x0 = int(rng.uniform(0, width))
        w = int(rng.uniform(0.03, 0.15) * width)
        h = int(rng.uniform(0.1, 0.4) * height)
        y1 = horizon + int(rng.uniform(0, 0.2) * height)
        img[max(0, y1 - h):y1, x0:x0 + w] = rng.uniform(40, 220, 3)
    ys = np.arange(horizon, height)
    for lane in (-1, 0, 1):                               # lane marks converging to the horizon
        xs = (width / 2 + lane * (ys - horizon) * 1.6).astype(int)
        for dx in range(-3, 4):
            ok = (xs + dx >= 0) & (xs + dx < width) & ((ys // 20) % 2 == 0)
            img[ys[ok], xs[ok] + dx] = 235
    img += rng.normal(0, noise, img.shape)          # sensor noise
    return np.clip(img, 0, 255).astype(np.uint8)


class SetPublisher:
    """Publishes synchronised sets (six CompressedImage + Odometry with one stamp) on a node."""

    def __init__(self, node, width: int = 1600, height: int = 900, quality: int = 90,
                 cameras: Sequence[str] = CAMERA_NAMES, odom_topic: str = topics.ODOM,
                 reliable: bool = False, variants: int = 3, depth: int = 5):
        from nav_msgs.msg import Odometry
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage
        self._compressed, self._odometry = CompressedImage, Odometry
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        self.cameras = list(cameras)
        self.pubs = [node.create_publisher(CompressedImage, topics.camera_image_topic(c), qos)
                     for c in self.cameras]
        self.odom_pub = node.create_publisher(Odometry, odom_topic, qos)
        self.jpegs: List[List[bytes]] = [
            [encode_jpeg(road_scene(width, height, seed=100 * i + v), quality)
             for v in range(variants)] for i in range(len(self.cameras))]
        self.count = 0

    @property
    def mean_jpeg_bytes(self) -> float:
        return float(np.mean([len(j) for cam in self.jpegs for j in cam]))

    def publish_set(self, stamp_ns: int, speed: float = 5.0, skip: Sequence[str] = (),
                    replace: Optional[Dict[str, bytes]] = None,
                    odom_values: Optional[Dict[str, float]] = None) -> float:
        """
        Publish one set; `skip` cameras stay silent, `replace` sends other bytes.

        Returns the perf_counter() time after the last message of the set was published.
        """
        sec, nsec = int(stamp_ns // 1_000_000_000), int(stamp_ns % 1_000_000_000)
        v = self.count % len(self.jpegs[0])
        odom = self._odometry()
        odom.header.stamp.sec, odom.header.stamp.nanosec = sec, nsec
        odom.header.frame_id, odom.child_frame_id = topics.ODOM_FRAME, topics.BASE_FRAME
        odom.pose.pose.position.x = speed * stamp_ns * 1e-9
        odom.pose.pose.orientation.w = 1.0
        odom.twist.twist.linear.x = speed
        odom.twist.twist.angular.z = 0.05 * math.sin(stamp_ns * 1e-9)
        for key, value in (odom_values or {}).items():
            obj = odom
            *path, last = key.split('.')
            for part in path:
                obj = getattr(obj, part)
            setattr(obj, last, value)
        self.odom_pub.publish(odom)
        for name, pub, frames in zip(self.cameras, self.pubs, self.jpegs):
            if name in skip:
                continue
            msg = self._compressed()
            msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nsec
            msg.header.frame_id = topics.camera_optical_frame(name)
            msg.format = 'jpeg'
            msg.data = (replace or {}).get(name, frames[v])
            pub.publish(msg)
        self.count += 1
        return time.perf_counter()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--rate', type=float, default=20.0,
                        help='sets per second (0: as fast as possible)')
    parser.add_argument('--duration', type=float, default=10.0, help='seconds of publishing')
    parser.add_argument('--warmup', type=float, default=3.0,
                        help='seconds to wait for the subscriber before publishing')
    parser.add_argument('--width', type=int, default=1600)
    parser.add_argument('--height', type=int, default=900)
    parser.add_argument('--quality', type=int, default=90)
    parser.add_argument('--reliable', action='store_true', help='reliable QoS (default best '
                        'effort, like camera drivers)')
    parser.add_argument('--log', default='', help='write {stamp_ns: publish time} JSON here')


def run(args) -> int:
    """Publish sets at a fixed rate (absolute schedule, no drift) and log their times."""
    import rclpy
    rclpy.init()
    node = rclpy.create_node('vlmad_bench_feeder')
    feeder = SetPublisher(node, args.width, args.height, args.quality, reliable=args.reliable)
    print(f'feeder: mean JPEG {feeder.mean_jpeg_bytes / 1e3:.0f} kB', file=sys.stderr,
          flush=True)
    time.sleep(args.warmup)
    period = 1.0 / args.rate if args.rate > 0 else 0.0      # rate <= 0: as fast as possible
    log = {}
    # perf_counter -> wall ns offset so the benchmark process can compare times.
    offset = time.time_ns() - int(time.perf_counter() * 1e9)
    start = time.perf_counter()
    k = 0
    while True:
        due = start + k * period                 # absolute schedule: no drift
        if due - start >= args.duration or time.perf_counter() - start >= args.duration:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        stamp = time.time_ns()
        done = feeder.publish_set(stamp)
        log[str(stamp)] = int(done * 1e9) + offset
        k += 1
    elapsed = time.perf_counter() - start
    if args.log:
        with open(args.log, 'w') as f:
            json.dump({'offered_hz': k / elapsed, 'elapsed': elapsed, 'sets': log,
                       'jpeg_bytes': feeder.mean_jpeg_bytes}, f)
    node.destroy_node()
    rclpy.shutdown()
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
