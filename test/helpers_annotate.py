"""
Annotator test fixtures: small drive bags with known motion, and a loopback chat server.

The bags follow the project layout (front camera JPEG + CameraInfo + /tf_static, /odom,
keyframe marks, ground-truth objects and lights) at a small image size so tests stay fast.
The server is a real OpenAI-compatible HTTP endpoint (http.server in a thread) whose answers
a test scripts per request; it records every request (headers, JSON body) for assertions.
"""
import base64
import http.server
import io
import json
import math
import threading
import time

import numpy as np
from PIL import Image
from vlmad_ros import topics
from vlmad_ros.bagschema import BagWriter, msg_class, ns_to_stamp
from vlmad_ros.data import rosmsgs
from vlmad_ros.data.geometry import quat_wxyz_from_yaw
from vlmad_ros.images import encode_jpeg
from vlmad_ros.rig import load_rig

NS = 1_000_000_000
START_NS = 1_700_000_000 * NS
FRONT = 'CAM_FRONT'


def cruise(v=8.0):
    """Straight at constant speed: pose(t) -> (x, y, yaw, speed)."""
    return lambda t: (v * t, 0.0, 0.0, v)


def brake_to_stop(v0=8.0, t_brake=1.0, decel=3.0):
    """Cruise, then brake to a standstill."""
    def pose(t):
        if t < t_brake:
            return v0 * t, 0.0, 0.0, v0
        tb = min(t - t_brake, v0 / decel)
        v = max(0.0, v0 - decel * (t - t_brake))
        return v0 * t_brake + v0 * tb - 0.5 * decel * tb * tb, 0.0, 0.0, v
    return pose


def left_turn(v=6.0, radius=12.0):
    def pose(t):
        th = v * t / radius
        return radius * math.sin(th), radius * (1 - math.cos(th)), th, v
    return pose


def road_image(width, height, shade=0):
    """Grey road under a blue sky with lane marks: something JPEG-like to look at."""
    img = np.zeros((height, width, 3), np.uint8)
    img[:height // 2] = (110, 150, 200 - shade % 50)
    img[height // 2:] = (70 + shade % 20, 70, 70)
    img[height // 2:, width // 2 - 1:width // 2 + 1] = 230
    return img


def write_drive_bag(path, pose_fn=None, duration_s=6.0, camera_hz=4.0, odom_hz=20.0,
                    keyframe_hz=2.0, size=(320, 180), with_truth=True, storage='mcap',
                    red_light_at=None, green_at_s=None):
    """Write a small drive bag; returns the list of keyframe stamps (ns)."""
    pose_fn = pose_fn or cruise()
    rig = load_rig('nuscenes')
    cam = rig[FRONT].scaled(*size)
    optical = topics.camera_optical_frame(FRONT)
    keyframes = []
    with BagWriter(path, storage=storage) as bag:
        tf = rosmsgs.tf_message([rosmsgs.transform_stamped(
            START_NS, topics.BASE_FRAME, optical, cam.translation, cam.rotation_wxyz)])
        bag.write(topics.TF_STATIC, tf, START_NS)
        events = []
        n_odom = int(duration_s * odom_hz) + 1
        events += [(START_NS + int(i / odom_hz * NS), 0, 'odom') for i in range(n_odom)]
        n_cam = int(duration_s * camera_hz) + 1
        events += [(START_NS + int(i / camera_hz * NS), 1, 'cam') for i in range(n_cam)]
        n_kf = int(duration_s * keyframe_hz) + 1
        kf_stamps = {START_NS + int(i / keyframe_hz * NS) for i in range(n_kf)}
        for t_ns, _, kind in sorted(events):
            t = (t_ns - START_NS) / NS
            x, y, yaw, v = pose_fn(t)
            if kind == 'odom':
                bag.write(topics.ODOM, rosmsgs.odometry(
                    t_ns, topics.MAP_FRAME, topics.BASE_FRAME, (x, y, 0.0),
                    quat_wxyz_from_yaw(yaw), (v, 0.0, 0.0), (0.0, 0.0, 0.0)), t_ns)
                continue
            jpeg = encode_jpeg(road_image(size[0], size[1], int(t * 10)), quality=85)
            bag.write(topics.camera_image_topic(FRONT),
                      rosmsgs.compressed_image(t_ns, optical, jpeg), t_ns)
            bag.write(topics.camera_info_topic(FRONT), rosmsgs.camera_info(t_ns, cam), t_ns)
            if with_truth:
                car = rosmsgs.ground_truth_object(
                    'car-1', 0, (25.0, 0.0, 0.8), quat_wxyz_from_yaw(0.0), (4.5, 1.9, 1.6),
                    (0.0, 0.0, 0.0))
                bag.write(topics.OBJECTS, rosmsgs.ground_truth_objects(
                    t_ns, topics.BASE_FRAME, [car]), t_ns)
                green = green_at_s is not None and t >= green_at_s
                bag.write(topics.TRAFFIC_LIGHTS, lights_msg(t_ns, red_light_at, green), t_ns)
            if t_ns in kf_stamps:
                keyframes.append(t_ns)
                bag.write(topics.KEYFRAME, rosmsgs.keyframe(
                    t_ns, topics.BASE_FRAME, f'kf-{len(keyframes)}', 'test-scene'), t_ns)
    return keyframes


def lights_msg(t_ns, red_light_at, green=False):
    """One light at x = red_light_at: RED, or GREEN once `green`; else a GREEN one far off."""
    point = msg_class('geometry_msgs/msg/Point')
    x = red_light_at if red_light_at is not None else 500.0
    state = 1 if red_light_at is not None and not green else 3
    light = msg_class('vlmad_ros/msg/TrafficLight')(
        id='L1', state=state, stop_line_start=point(x=x, y=-2.0, z=0.0),
        stop_line_end=point(x=x, y=2.0, z=0.0))
    header = msg_class('std_msgs/msg/Header')(stamp=ns_to_stamp(t_ns), frame_id='map')
    return msg_class('vlmad_ros/msg/TrafficLightArray')(header=header, lights=[light])


# ----- a loopback OpenAI-compatible server -----

GOOD_ANSWER = {
    'current_action': 'The ego vehicle is driving straight at a steady speed.',
    'future_action': 'It will continue straight ahead in its lane.',
    'reasoning': 'The road ahead is clear and the light is green.',
    'control_action': 'go straight', 'turn_action': 'none', 'lane_action': 'none',
}


def completion(content, prompt_tokens=1000, completion_tokens=60):
    return {'id': 'cmpl-test', 'object': 'chat.completion', 'model': 'test',
            'choices': [{'index': 0, 'finish_reason': 'stop',
                         'message': {'role': 'assistant', 'content': content}}],
            'usage': {'prompt_tokens': prompt_tokens, 'completion_tokens': completion_tokens,
                      'total_tokens': prompt_tokens + completion_tokens}}


def good(_request=None):
    """Reply: a valid answer."""
    return 200, {}, completion(json.dumps(GOOD_ANSWER))


class ChatServer:
    """
    An OpenAI-compatible /v1/chat/completions on 127.0.0.1; `script(request) -> reply`.

    A reply is (status, headers, body) with body a dict (sent as JSON) or bytes, or
    ('sleep', seconds, reply) to answer late. Requests are recorded as dicts with 'headers',
    'body' (parsed JSON) and 'time'.
    """

    def __init__(self, script=good):
        self.script = script
        self.requests = []
        self.client_disconnects = 0   # replies the client no longer waited for (timeouts)
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802 (http.server's name)
                length = int(self.headers.get('Content-Length', 0))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                request = {'path': self.path, 'headers': dict(self.headers), 'body': body,
                           'time': time.monotonic()}
                with server.lock:
                    request['index'] = len(server.requests)
                    server.requests.append(request)
                reply = server.script(request)
                while reply[0] == 'sleep':
                    time.sleep(reply[1])
                    reply = reply[2]
                status, headers, payload = reply
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header('Content-Type', 'application/json')
                    self.send_header('Content-Length', str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    with server.lock:   # the client timed out and closed: count, don't fail
                        server.client_disconnects += 1

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f'http://127.0.0.1:{self.port}/v1'
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def request_image(request):
    """Decode the RGB image of a recorded chat request (decoded from its base64 data URL)."""
    for message in request['body']['messages']:
        content = message['content']
        if isinstance(content, list):
            for part in content:
                if part.get('type') == 'image_url':
                    url = part['image_url']['url']
                    assert url.startswith('data:image/jpeg;base64,'), url[:40]
                    data = base64.b64decode(url.split(',', 1)[1])
                    return np.asarray(Image.open(io.BytesIO(data)).convert('RGB'))
    raise AssertionError('request carried no image')


def dead_port():
    """Return a localhost port nothing listens on (bound, closed)."""
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
