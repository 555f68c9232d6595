"""
`vlmad eval` on recorded Paths and on checkpoints, through the installed CLI.

The Path bags are written by tools that are not part of the project: mcap-ros2-support (a single
.mcap) and rosbags' own Writer with its stock typestore (a rosbag2 folder, as `ros2 bag record`
writes it). Ground truth comes from the closed-form motion of helpers_data, not the reader.
"""
import json
import subprocess

import helpers_data as HD
import numpy as np
import pytest
import torch
from vlmad_ros.model import build_model, save_checkpoint
from vlmad_ros.model.config import PlannerConfig

NS = HD.NS
PATH_MSGDEF = """std_msgs/Header header
geometry_msgs/PoseStamped[] poses
================================================================================
MSG: std_msgs/Header
builtin_interfaces/Time stamp
string frame_id
================================================================================
MSG: builtin_interfaces/Time
int32 sec
uint32 nanosec
================================================================================
MSG: geometry_msgs/PoseStamped
std_msgs/Header header
geometry_msgs/Pose pose
================================================================================
MSG: geometry_msgs/Pose
geometry_msgs/Point position
geometry_msgs/Quaternion orientation
================================================================================
MSG: geometry_msgs/Point
float64 x
float64 y
float64 z
================================================================================
MSG: geometry_msgs/Quaternion
float64 x
float64 y
float64 z
float64 w
"""
DURATION = 5.0


def keyframe_stamp(t):
    return HD.T0_NS + int(round(t * 12)) * NS // 12


def sample_times():
    return [t for t in HD.keyframe_times(DURATION) if t + 3.0 <= DURATION]


def shifted_plans(frame='base_link', offset=1.0):
    """(stamp_ns, frame, [(stamp_ns, x, y)] * 6) per keyframe: the truth moved `offset` left."""
    plans = []
    for t in sample_times():
        xy, _ = HD.future_in_base(t)
        xy = xy + np.array([0.0, offset])
        if frame != 'base_link':
            x0, y0, yaw0 = HD.pose(t)
            c, s = np.cos(yaw0), np.sin(yaw0)
            xy = np.stack([x0 + c * xy[:, 0] - s * xy[:, 1], y0 + s * xy[:, 0] + c * xy[:, 1]], 1)
        stamp = keyframe_stamp(t)
        plans.append((stamp, frame, [(stamp + int(0.5 * (k + 1) * NS), xy[k, 0], xy[k, 1])
                                     for k in range(6)]))
    return plans


def stamp_dict(ns):
    return {'sec': ns // NS, 'nanosec': ns % NS}


def write_mcap_plans(path, plans):
    from mcap_ros2.writer import Writer
    with open(path, 'wb') as f:
        w = Writer(f)
        schema = w.register_msgdef('nav_msgs/msg/Path', PATH_MSGDEF)
        for stamp, frame, poses in plans:
            msg = {'header': {'stamp': stamp_dict(stamp), 'frame_id': frame},
                   'poses': [{'header': {'stamp': stamp_dict(s), 'frame_id': frame},
                              'pose': {'position': {'x': x, 'y': y, 'z': 0.0},
                                       'orientation': {'x': 0.0, 'y': 0.0, 'z': 0.0, 'w': 1.0}}}
                             for s, x, y in poses]}
            w.write_message('/vlmad/plan', schema, msg, log_time=stamp + 30_000_000)
        w.finish()


def write_rosbag2_plans(path, plans):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import get_typestore, Stores
    store = get_typestore(Stores.ROS2_HUMBLE)
    ty = store.types
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection('/vlmad/plan', 'nav_msgs/msg/Path', typestore=store)
        for stamp, frame, poses in plans:
            def header(ns):
                return ty['std_msgs/msg/Header'](
                    stamp=ty['builtin_interfaces/msg/Time'](sec=ns // NS, nanosec=ns % NS),
                    frame_id=frame)
            msg = ty['nav_msgs/msg/Path'](header=header(stamp), poses=[
                ty['geometry_msgs/msg/PoseStamped'](header=header(s), pose=ty[
                    'geometry_msgs/msg/Pose'](
                    position=ty['geometry_msgs/msg/Point'](x=x, y=y, z=0.0),
                    orientation=ty['geometry_msgs/msg/Quaternion'](x=0.0, y=0.0, z=0.0, w=1.0)))
                for s, x, y in poses])
            w.write(conn, stamp + 30_000_000, store.serialize_cdr(msg, 'nav_msgs/msg/Path'))


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('eval')
    HD.write_bag(root / 'bags' / 'drive', duration=DURATION)
    return root


def vlmad_eval(*args, env=None):
    return subprocess.run(['vlmad', 'eval', *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=env)


def check_l2(result, value):
    for proto in ('avg_over_horizon', 'at_horizon'):
        assert set(result['l2'][proto]) == {'1s', '2s', '3s'}
        for key in ('1s', '2s', '3s'):
            assert result['l2'][proto][key] == pytest.approx(value, abs=5e-3), (proto, key)
            assert 0.0 <= result['collision'][proto][key] <= 100.0


def test_paths_shifted_one_metre_score_l2_one(data, tmp_path):
    mcap = tmp_path / 'plans.mcap'
    write_mcap_plans(mcap, shifted_plans())
    out = tmp_path / 'res.json'
    proc = vlmad_eval('--data', data / 'bags', '--plans', mcap, '--json', out)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res['samples'] == len(sample_times()) == 5
    check_l2(res, 1.0)
    assert '| plans.mcap | 5 | 1.00 | 1.00 | 1.00 |' in proc.stdout
    assert 'lead_vehicle_brakes' in res['by_scenario']
    # The same in a rosbag2 folder, in the odometry frame, with shift 2.5 m.
    folder = tmp_path / 'plans_bag'
    write_rosbag2_plans(folder, shifted_plans(frame='map', offset=2.5))
    proc = vlmad_eval('--data', data / 'bags' / 'drive', '--plans', folder, '--json', out)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res['samples'] == 5
    check_l2(res, 2.5)


def test_missing_and_late_plans_are_counted(data, tmp_path):
    plans = shifted_plans()
    # First plan missing; the second stamped 30 ms late (within the tolerance).
    late = [(plans[1][0] + 30_000_000, plans[1][1],
             [(s + 30_000_000, x, y) for s, x, y in plans[1][2]])]
    mcap = tmp_path / 'plans.mcap'
    write_mcap_plans(mcap, late + plans[2:])
    out = tmp_path / 'res.json'
    proc = vlmad_eval('--data', data / 'bags', '--plans', mcap, '--json', out)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res['samples'] == 4 and res['samples_without_plan'] == {'no_plan_at_stamp': 1}
    check_l2(res, 1.0)
    proc = vlmad_eval('--data', data / 'bags', '--plans', tmp_path / 'none.mcap')
    assert proc.returncode == 2 and '--plans' in proc.stderr


def test_checkpoint_evaluation(data, tmp_path):
    torch.manual_seed(0)
    cfg = PlannerConfig(image_width=64, image_height=32, backbone_channels=(8, 16, 16, 32),
                        backbone_blocks=(0, 0, 0, 0), d_model=32, num_heads=4,
                        decoder_layers=1, ffn_dim=64)
    ckpt = save_checkpoint(tmp_path / 'tiny.pt', build_model(cfg))
    out = tmp_path / 'res.json'
    proc = vlmad_eval('--data', data / 'bags', '--checkpoint', ckpt, '--json', out,
                      '--cache-dir', tmp_path / 'cache')
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res['samples'] == 5 and res['l2']['at_horizon']['3s'] > 0
    assert 'camera planner 64x32' in res['source']
    assert 'action_head' not in res and 'action head' not in proc.stdout   # planner only


def test_shipped_default_checkpoint_is_small_has_no_heads_and_is_the_default(data, tmp_path):
    from vlmad_ros.model import load_checkpoint
    from vlmad_ros.model.checkpoint import default_checkpoint
    path = default_checkpoint()
    assert path is not None, 'vlmad_ros/checkpoints/default.pt is not installed'
    assert path.stat().st_size <= 20 * 1024 * 1024
    ckpt = torch.load(path, weights_only=True)
    assert not any('heads' in k for k in ckpt['state_dict'])
    assert load_checkpoint(path).config.kind == 'camera'
    out = tmp_path / 'res.json'
    proc = vlmad_eval('--data', data / 'bags', '--json', out, '--cache-dir', tmp_path / 'cache')
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res['samples'] == 5 and 'default.pt' in res['source']


def test_action_head_accuracy_against_the_teacher(data, tmp_path):
    from vlmad_ros.model.heads import ActionHead, VLMADConfig
    # Teacher records on the five scored keyframes: one failed (no record), one without a lane.
    records = {0.0: (1, 3, 4), 0.5: (0, 3, 4), 1.0: (1, 0, 255), 1.5: (1, 3, 4), 2.0: None}
    HD.write_bag(tmp_path / 'bags' / 'annotated', duration=DURATION, reasoning=records)
    torch.manual_seed(0)
    cfg = PlannerConfig(image_width=64, image_height=32, backbone_channels=(8, 16, 16, 32),
                        backbone_blocks=(0, 0, 0, 0), d_model=32, num_heads=4,
                        decoder_layers=1, ffn_dim=64)
    head = ActionHead(VLMADConfig(ego_dim=32, d_model=32, ffn_dim=64, num_layers=1))
    with torch.no_grad():    # always 'move slowly', no turn, no lane change
        for clf, label in zip(head.classifiers, (1, 3, 4)):
            clf.weight.zero_()
            clf.bias.copy_(torch.nn.functional.one_hot(torch.tensor(label), clf.out_features))
    ckpt = save_checkpoint(tmp_path / 'explain.pt', build_model(cfg), action_head=head)
    out = tmp_path / 'res.json'
    proc = vlmad_eval('--data', tmp_path / 'bags', '--checkpoint', ckpt, '--json', out,
                      '--cache-dir', tmp_path / 'cache')
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res['samples'] == 5
    act = res['action_head']
    assert act['frames_with_teacher_record'] == 4
    control, turn, lane = act['control'], act['turn'], act['lane']
    assert (control['samples'], control['accuracy']) == (4, 0.75)
    assert control['confusion'] == [[0, 1, 0, 0], [0, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert control['per_class']['move slowly'] == {'teacher': 3, 'predicted': 4, 'correct': 3,
                                                   'recall': 1.0}
    assert control['per_class']['stop']['recall'] is None     # no such frame: null, not NaN
    assert (turn['samples'], turn['accuracy']) == (4, 0.75)
    assert turn['per_class']['turn left'] == {'teacher': 1, 'predicted': 0, 'correct': 0,
                                              'recall': 0.0}
    assert (lane['samples'], lane['accuracy']) == (3, 1.0)     # the unknown lane not counted
    assert '## action head vs teacher (4 frames with a teacher record)' in proc.stdout
    assert '| control | 4 | 75.0 |' in proc.stdout and '| lane | 3 | 100.0 |' in proc.stdout
    assert '| turn | turn left | 1 | 0 | 0 |' in proc.stdout
    # Data without teacher labels: said so, the accuracies are null.
    proc = vlmad_eval('--data', data / 'bags', '--checkpoint', ckpt, '--json', out,
                      '--cache-dir', tmp_path / 'cache')
    assert proc.returncode == 0, proc.stderr
    act = json.loads(out.read_text())['action_head']
    assert act['frames_with_teacher_record'] == 0 and act['control']['accuracy'] is None
    assert 'no teacher labels' in proc.stdout
