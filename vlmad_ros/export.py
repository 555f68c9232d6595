"""
`vlmad export CHECKPOINT --onnx OUT`: the camera planner as an ONNX graph, and its runtime.

The graph is tensor-only: images (uint8), ego state and route command in; waypoints, headings
and the ego feature out (docs/EXPORT.md names and shapes them). The ray encoding depends only on
the calibration, so it is computed once from the rig at export and stored in the graph as a
constant; the rig, the model config and the calibration it was computed from travel in the
file's metadata. OnnxPlanner runs such a file with ONNX Runtime behind the Planner interface
(`backend: onnxruntime`) and refuses camera sets whose calibration is not the exported one.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import pathlib
import sys
from typing import Dict, Optional, Tuple
import warnings

import numpy as np
import torch
from torch import nn

from vlmad_ros import types as T
from vlmad_ros.model.config import PlannerConfig
from vlmad_ros.model.planner_model import fuse_batch_norms, PlannerModel
from vlmad_ros.planner import camera_views, order_views, Planner, resolve_device, ViewSpec
from vlmad_ros.rig import CameraRig

INPUTS = (T.IMAGES, T.EGO, T.COMMAND)
OUTPUTS = (T.TRAJ, T.HEADING, T.EGO_FEATURE)
METADATA_FORMAT = '1'
OPSET = 18
# A camera set may differ from the exported calibration by this much before it is refused:
# intrinsics relative to the focal length (a zoom window cut at whole pixels of a reduced-DCT
# decode moves its principal point by under 1 %), poses in metres / rotation-matrix entries.
K_TOLERANCE = 0.02
POSE_TOLERANCE = 1e-3
NO_ONNXRUNTIME_HELP = ('backend: onnxruntime is not installed in this Python ({err}); install '
                       'the pinned onnxruntime of requirements/lock.txt (make setup does), or '
                       'use backend:=torch with the .pt checkpoint')


def rig_calibration(rig: CameraRig, cfg: PlannerConfig) -> Tuple[np.ndarray, np.ndarray]:
    """
    Intrinsics (V, 3, 3) at model resolution and poses (V, 4, 4) of the model's views.

    Computed by the planner's own feature code on blank frames at the rig's resolution, so the
    zoom view's window is the one a full-resolution decode gives.
    """
    if len(rig.cameras) != cfg.num_cameras:
        raise ValueError(f'rig {rig.name} has {len(rig.cameras)} cameras, the model '
                         f'{cfg.num_cameras}')
    views = ViewSpec.of(cfg)
    per_cam = [camera_views(cam, np.zeros((cam.height, cam.width, 3), np.uint8), views)
               for cam in rig.cameras]
    views = order_views(per_cam)
    return np.stack([v[1] for v in views]), np.stack([v[2] for v in views])


class ExportedPlanner(nn.Module):
    """A PlannerModel with its batch norms folded and the rig's ray encoding as a buffer."""

    def __init__(self, model: PlannerModel, intrinsics: np.ndarray, cam_to_base: np.ndarray):
        super().__init__()
        cfg = model.config
        self.planner = model
        hw = (cfg.image_height, cfg.image_width)
        with torch.no_grad():
            pos = model.encode_rays(torch.from_numpy(intrinsics)[None],
                                    torch.from_numpy(cam_to_base)[None], hw)
        self.register_buffer('ray_encoding', pos)          # (1, V, h, w, D)

    def forward(self, images: torch.Tensor, ego: torch.Tensor, command: torch.Tensor):
        return self.planner.plan(images, ego, command, self.ray_encoding)


def example_inputs(cfg: PlannerConfig, batch: int = 1, seed: int = 0) -> Dict[str, np.ndarray]:
    """Random inputs with the graph's names, dtypes and shapes (export, checks, benchmarks)."""
    rng = np.random.default_rng(seed)
    return {
        T.IMAGES: rng.integers(0, 256, (batch, cfg.num_views, 3, cfg.image_height,
                                        cfg.image_width), dtype=np.uint8),
        T.EGO: rng.normal(0, 1, (batch, cfg.ego_dim)).astype(np.float32) * np.float32(3),
        T.COMMAND: rng.integers(0, cfg.num_commands, (batch,), dtype=np.int64),
    }


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's progress prints, warnings and log lines (errors still raise)."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter('ignore')
            yield
    finally:
        logging.disable(previous)


def export_onnx(model: PlannerModel, rig: CameraRig, out, source: str = '') -> pathlib.Path:
    """Write the model (eval, BN folded) for `rig` to an ONNX file with its metadata."""
    import copy
    try:
        import onnx
    except ImportError as err:
        raise ValueError(f'exporting needs the onnx and onnxscript packages ({err}); '
                         'make setup installs the pinned ones (requirements/lock.txt)') from None
    cfg = model.config
    if cfg.kind != 'camera':
        raise ValueError(f'only the camera planner exports (this checkpoint is {cfg.kind!r})')
    intrinsics, cam_to_base = rig_calibration(rig, cfg)
    net = ExportedPlanner(fuse_batch_norms(copy.deepcopy(model).cpu().eval()),
                          intrinsics, cam_to_base).eval()
    args = tuple(torch.from_numpy(v) for v in example_inputs(cfg, batch=2).values())
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim('batch', min=1, max=4096)
    shapes = {'images': {0: batch}, 'ego': {0: batch}, 'command': {0: batch}}   # forward's args
    with torch.no_grad(), _quiet():
        torch.onnx.export(net, args, str(out), input_names=list(INPUTS),
                          output_names=list(OUTPUTS), dynamic_shapes=shapes, opset_version=OPSET,
                          dynamo=True, external_data=False, verbose=False)
    proto = onnx.load(str(out))
    meta = {'vlmad_format': METADATA_FORMAT, 'vlmad_config': json.dumps(cfg.to_dict()),
            'vlmad_rig': json.dumps(rig.to_dict()), 'vlmad_source': str(source),
            'vlmad_intrinsics': json.dumps(intrinsics.tolist()),
            'vlmad_cam_to_base': json.dumps(cam_to_base.tolist())}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = f'vlmad_ros camera planner for rig {rig.name} (docs/EXPORT.md)'
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    return out


def import_onnxruntime():
    """Import onnxruntime or raise the ValueError that names the `backend` parameter."""
    try:
        import onnxruntime
    except ImportError as err:
        raise ValueError(NO_ONNXRUNTIME_HELP.format(err=err)) from None
    return onnxruntime


class OnnxPlanner(Planner):
    """The Planner interface over an exported `.onnx` file, run by ONNX Runtime."""

    def __init__(self, path, device: str = 'cpu', fp16: bool = False, num_threads: int = 0,
                 explain: bool = False, cuda_graphs: bool = False, **_ignored):
        ort = import_onnxruntime()
        if cuda_graphs:
            raise ValueError('cuda_graphs: not available with backend onnxruntime (a torch '
                             'path); use backend:=torch, or TensorRT (docs/EXPORT.md)')
        if explain:
            raise ValueError('explain: not available with backend onnxruntime (the graph has '
                             'no action head); use backend:=torch with the .pt checkpoint')
        if fp16:
            raise ValueError('fp16: not available with backend onnxruntime (export runs fp32; '
                             'fp16 is the TensorRT path of docs/EXPORT.md)')
        if num_threads < 0:
            raise ValueError(f'num_threads: must be >= 0 (0 = default), got {num_threads}')
        self.device = resolve_device(device)
        providers = ['CPUExecutionProvider']
        if self.device.type == 'cuda':
            if 'CUDAExecutionProvider' not in ort.get_available_providers():
                raise ValueError(f'device: {device!r} but this onnxruntime has no CUDA provider '
                                 f'(has {ort.get_available_providers()})')
            providers.insert(0, 'CUDAExecutionProvider')
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(num_threads)
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get('vlmad_format') != METADATA_FORMAT:
            raise ValueError(f'checkpoint: {path} is not an ONNX file of `vlmad export` '
                             f'(metadata vlmad_format={meta.get("vlmad_format")!r})')
        self._config = PlannerConfig.from_dict(json.loads(meta['vlmad_config']))
        self.rig: Optional[CameraRig] = CameraRig.from_dict(json.loads(meta['vlmad_rig']))
        self.intrinsics = np.asarray(json.loads(meta['vlmad_intrinsics']), np.float32)
        self.cam_to_base = np.asarray(json.loads(meta['vlmad_cam_to_base']), np.float32)
        self.source, self.fp16, self.channels_last = str(path), False, False
        self.cuda_graphs = False
        self.action_head = None

    @property
    def config(self) -> PlannerConfig:
        return self._config

    def describe(self) -> str:
        return super().describe() + f' (onnxruntime, rig {self.rig.name})'

    def check_calibration(self, intrinsics: np.ndarray, cam_to_base: np.ndarray) -> None:
        """Refuse a camera set whose calibration is not the one the graph's rays come from."""
        k_err = np.abs(intrinsics - self.intrinsics).max() / self.intrinsics[:, 0, 0].min()
        pose_err = np.abs(cam_to_base - self.cam_to_base).max()
        if k_err > K_TOLERANCE or pose_err > POSE_TOLERANCE:
            raise ValueError(f'backend: onnxruntime graph {self.source} holds the rays of rig '
                             f'{self.rig.name}; this camera set differs (intrinsics {k_err:.3g} '
                             f'of the focal length, poses {pose_err:.3g}): export again with '
                             '`vlmad export CHECKPOINT --onnx OUT --rig RIG`')

    def run_batch(self, batch: Dict[str, torch.Tensor]) -> Dict[str, np.ndarray]:
        """Model outputs for a prepared batch (planner.collate), as numpy."""
        self.check_calibration(batch[T.INTRINSICS].numpy(), batch[T.CAM_TO_BASE].numpy())
        feeds = {T.IMAGES: batch[T.IMAGES].numpy(),
                 T.EGO: batch[T.EGO].numpy().astype(np.float32, copy=False),
                 T.COMMAND: batch[T.COMMAND].numpy().astype(np.int64, copy=False)}
        return dict(zip(OUTPUTS, self.session.run(list(OUTPUTS), feeds)))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('checkpoint', help='planner checkpoint (.pt from `vlmad train`)')
    parser.add_argument('--onnx', required=True, metavar='OUT', help='ONNX file to write')
    parser.add_argument('--rig', default='',
                        help='rig whose rays the graph holds: nuscenes, carla or a rig yaml '
                        "(default: the checkpoint's rig)")


def main(args) -> int:
    from vlmad_ros.model.checkpoint import CheckpointError, load_checkpoint
    from vlmad_ros.rig import load_rig
    try:
        model = load_checkpoint(args.checkpoint)
        rig = load_rig(args.rig) if args.rig else model.rig
        if rig is None:
            raise ValueError(f'{args.checkpoint} carries no rig: give --rig')
        out = export_onnx(model, rig, args.onnx, source=args.checkpoint)
        planner = OnnxPlanner(out)
        inputs = example_inputs(model.config, batch=2, seed=1)
        batch = {k: torch.from_numpy(v) for k, v in inputs.items()}
        with torch.no_grad():
            want = model.plan(batch[T.IMAGES], batch[T.EGO], batch[T.COMMAND],
                              ExportedPlanner(model, planner.intrinsics,
                                              planner.cam_to_base).ray_encoding)
        got = planner.session.run([T.TRAJ], inputs)[0]
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f'vlmad export: {err}', file=sys.stderr)
        return 2
    err_m = float(np.abs(got - want[0].numpy()).max())
    print(f'wrote {out} ({out.stat().st_size / 1e6:.1f} MB) for rig {rig.name}; onnxruntime vs '
          f'torch on random inputs: max waypoint difference {err_m:.2e} m')
    return 0
