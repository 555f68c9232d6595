"""
Small bags in the driving layout (docs/BAG_LAYOUT.md), written with BagWriter.

A known motion: speed v0 + a t, constant yaw rate w (closed-form positions), 50 Hz odometry, six
cameras at 12 Hz firing 8 ms apart, 2 Hz keyframes (CAM_FRONT stamps), agents at 10 Hz.
"""
import numpy as np
from vlmad_ros import topics
from vlmad_ros.bagschema import BagWriter, msg_class
from vlmad_ros.data import rosmsgs
from vlmad_ros.images import encode_jpeg
from vlmad_ros.rig import CAMERA_NAMES, load_rig

NS = 1_000_000_000
T0_NS = 1_700_000_000 * NS
V0, ACCEL, YAW_RATE, YAW0 = 4.0, 0.5, 0.15, 0.4
START = np.array([10.0, -20.0])
CAM_OFFSET_NS = 8_000_000
OBJECTS_OFFSET_NS = 30_000_000
# Agents (global straight lines): id -> (class, position at t, velocity, yaw, length, width,
# alive while t < ...).
AGENTS = {
    'car_1': (0, START + [12.0, 8.0], np.array([2.0, 1.0]), 0.46, 4.5, 1.9, 1e9),
    'ped_1': (3, START + [6.0, 2.0], np.array([0.0, 1.2]), 1.57, 0.6, 0.6, 3.0),
}


def pose(t):
    """Return the closed-form (x, y, yaw) of the known motion at t seconds (array ok)."""
    t = np.asarray(t, dtype=np.float64)
    yaw = YAW0 + YAW_RATE * t
    v = V0 + ACCEL * t
    w, a = YAW_RATE, ACCEL

    def prim(s, yaw_s, v_s):
        return (v_s * np.sin(yaw_s) / w + a * np.cos(yaw_s) / w ** 2,
                -v_s * np.cos(yaw_s) / w + a * np.sin(yaw_s) / w ** 2)

    x1, y1 = prim(t, yaw, v)
    x0, y0 = prim(0.0, YAW0, V0)
    return START[0] + x1 - x0, START[1] + y1 - y0, yaw


def future_in_base(t0):
    """Return waypoints (6, 2) and headings (6,) at t0 + 0.5..3 s in base_link at t0."""
    x0, y0, yaw0 = pose(t0)
    xs, ys, yaws = pose(t0 + 0.5 * np.arange(1, 7))
    c, s = np.cos(yaw0), np.sin(yaw0)
    xy = np.stack([c * (xs - x0) + s * (ys - y0), -s * (xs - x0) + c * (ys - y0)], axis=1)
    return xy, yaws - yaw0


def agent_in_base(agent_id, t, t0):
    """Return an agent's (x, y, yaw) at time t in base_link at t0."""
    _, p, vel, yaw, *_ = AGENTS[agent_id]
    x0, y0, yaw0 = pose(t0)
    q = p + vel * t - [x0, y0]
    c, s = np.cos(yaw0), np.sin(yaw0)
    return np.array([c * q[0] + s * q[1], -s * q[0] + c * q[1], yaw - yaw0])


def keyframe_times(duration):
    return [k * 0.5 for k in range(int(duration * 2) + 1) if k * 0.5 <= duration - 0.05]


def write_bag(path, duration=5.0, image_size=(64, 36), noisy_images=False, commands=None,
              reasoning=None, storage='mcap', scenario='lead_vehicle_brakes', seed=0, drop=(),
              corrupt=()):
    """
    Write a small synthetic bag in the project's layout.

    commands: list of (t, Command); reasoning: {keyframe t: labels} or None (labels None: the
    teacher failed; 'unset': a record whose status was never set).

    drop: (camera, frame index) images left out (a camera that missed a frame);
    corrupt: (camera, frame index) images whose JPEG data is cut short.
    Returns {'keyframes': [t...], 'jpeg': {(camera, stamp_ns): bytes}}.
    """
    rng = np.random.default_rng(seed)
    w, h = image_size
    rig = load_rig('nuscenes').scaled(w, h)
    events = []

    def add(t_ns, topic, msg):
        events.append((int(t_ns), len(events), topic, msg))

    add(T0_NS, topics.TF_STATIC, rosmsgs.tf_message([
        rosmsgs.transform_stamped(T0_NS, 'base_link', topics.camera_optical_frame(c.name),
                                  c.translation, c.rotation_wxyz) for c in rig.cameras]
        + [rosmsgs.map_to_odom(T0_NS)]))                  # REP 105, as recorded bags have
    n_odom = int(duration * 50) + 1
    for k in range(n_odom):
        t = k / 50
        x, y, yaw = pose(t)
        stamp = T0_NS + k * 20_000_000
        q = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
        add(stamp, topics.ODOM, rosmsgs.odometry(stamp, 'map', 'base_link', (x, y, 0.0), q,
                                                 (V0 + ACCEL * t, 0.0, 0.0),
                                                 (0.0, 0.0, YAW_RATE)))
        add(stamp, topics.TF, rosmsgs.tf_message([rosmsgs.transform_stamped(
            stamp, 'map', 'base_link', (x, y, 0.0), q)]))
    jpegs = {}
    n_frames = int(duration * 12)
    for k in range(n_frames):
        for c, cam in enumerate(CAMERA_NAMES):
            stamp = T0_NS + k * NS // 12 + c * CAM_OFFSET_NS
            if (cam, k) in drop:
                continue
            if noisy_images:
                img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            else:
                img = np.full((h, w, 3), (k * 5 + c * 40) % 255, np.uint8)
            data = encode_jpeg(img, 90)
            if (cam, k) in corrupt:
                data = data[:len(data) // 3]
            jpegs[(cam, stamp)] = data
            add(stamp, topics.CAMERA_IMAGE_TOPICS[c], rosmsgs.compressed_image(
                stamp, topics.camera_optical_frame(cam), data))
            add(stamp, topics.CAMERA_INFO_TOPICS[c], rosmsgs.camera_info(stamp, rig[cam]))
    kf_times = keyframe_times(duration)
    for t in kf_times:
        stamp = T0_NS + int(round(t * 12)) * NS // 12
        add(stamp, topics.KEYFRAME, rosmsgs.keyframe(stamp, 'base_link', f'kf_{t:.1f}',
                                                     'test_scene', scenario))
    for k in range(int(duration * 10)):
        t = k / 10 + OBJECTS_OFFSET_NS / NS
        stamp = T0_NS + k * NS // 10 + OBJECTS_OFFSET_NS
        objs = []
        for agent_id, (cls, _, vel, _, length, width, until) in AGENTS.items():
            if t >= until:
                continue
            bx, by, byaw = agent_in_base(agent_id, t, t)
            _, _, yaw = pose(t)
            c, s = np.cos(yaw), np.sin(yaw)
            v = (c * vel[0] + s * vel[1], -s * vel[0] + c * vel[1], 0.0)
            objs.append(rosmsgs.ground_truth_object(
                agent_id, cls, (bx, by, 0.8), (np.cos(byaw / 2), 0, 0, np.sin(byaw / 2)),
                (length, width, 1.5), v))
        add(stamp, topics.OBJECTS, rosmsgs.ground_truth_objects(stamp, 'base_link', objs))
    cmd_cls = msg_class(rosmsgs.COMMAND)
    for t, command in commands or []:
        stamp = T0_NS + int(t * NS)
        add(stamp, topics.COMMAND, cmd_cls(header=rosmsgs.header(stamp, 'base_link'),
                                           command=int(command)))
    rcls = msg_class(rosmsgs.REASONING)
    for t, labels in (reasoning or {}).items():
        stamp = T0_NS + int(round(t * 12)) * NS // 12
        status = {None: rcls.STATUS_FAILED, 'unset': rcls.UNKNOWN}.get(labels, rcls.STATUS_OK)
        labels = labels if isinstance(labels, tuple) else (255, 255, 255)
        add(stamp, topics.REASONING, rcls(
            header=rosmsgs.header(stamp, 'base_link'), current_action=f'now {t}',
            future_action=f'next {t}', reasoning=f'because {t}', control_action=labels[0],
            turn_action=labels[1], lane_action=labels[2], teacher='rule-v1',
            prompt_version='v1', status=status, failure_reason='' if status == 0 else 'x'))
    with BagWriter(path, storage=storage) as bag:
        for stamp, _, topic, msg in sorted(events, key=lambda e: e[:2]):
            bag.write(topic, msg, stamp)
    return {'keyframes': kf_times, 'jpeg': jpegs}
