"""
The planner without ROS (Observation -> Trajectory) and the feature builder for training too.

`prepare_features` is the one place where images are resized to the model resolution and
intrinsics scaled with them; training (dataset) and the node both call it, so they cannot drift.

With `explain=True` the Planner also runs the checkpoint's VLM-AD action head on the ego feature
of the same forward pass (a few microseconds, no second backbone pass) and returns its
control / turn / lane labels beside each Trajectory.
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import functools
import pathlib
import threading
from typing import Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from vlmad_ros import labels
from vlmad_ros import types as T
from vlmad_ros.ego import EgoStateEstimator  # noqa: F401 (part of the planner API)
from vlmad_ros.images import compressed_to_rgb, image_to_rgb, resize_rgb
from vlmad_ros.model.checkpoint import default_checkpoint, load_action_head, load_checkpoint
from vlmad_ros.model.config import PlannerConfig
from vlmad_ros.model.heads import ActionHead, VLMADConfig
from vlmad_ros.model.planner_model import build_model, fuse_batch_norms
from vlmad_ros.rig import Camera, CameraRig
from vlmad_ros.types import EgoState, Explanation, Observation, Trajectory

# An image may differ from its camera's aspect ratio by this much (DCT-scaled decodes round up:
# 1600x900 at 1/8 is 200x113, 0.4 % off) before it counts as the wrong size.
ASPECT_TOLERANCE = 0.02
ZOOM_SUFFIX = '_ZOOM'     # name of a camera's zoom view (Camera.name + suffix)

BACKENDS = ('torch', 'onnxruntime')
NO_CHECKPOINT_HELP = (
    'no planner checkpoint: set the parameter/option "checkpoint" to a file written by '
    '`vlmad train` (or install the package default vlmad_ros/checkpoints/default.pt); '
    'for tests and benchmarks only, allow_random_weights:=true runs an untrained model')
NO_ACTION_HEAD_HELP = (
    'explain: checkpoint {path} has no action head to explain the plans with; train one with '
    '`vlmad train --keep-action-head` (train.keep_action_head: true), or set explain:=false')


class ImageSizeError(ValueError):
    """An image whose shape does not fit its camera (wrong aspect ratio or not RGB)."""

    reason = 'wrong_image_size'


def image_hw(image) -> Tuple[int, int]:
    """(height, width) of an (H, W, 3) numpy image or a (3, H, W) tensor (GPU decoder)."""
    if torch.is_tensor(image):
        return int(image.shape[-2]), int(image.shape[-1])
    return int(image.shape[0]), int(image.shape[1])


def check_image(camera: Camera, image) -> None:
    """Reject images that are not uint8 RGB at the camera's aspect ratio."""
    if torch.is_tensor(image):
        if image.ndim != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
            raise ImageSizeError(f'camera {camera.name}: expected a (3, H, W) uint8 tensor, '
                                 f'got {tuple(image.shape)} {image.dtype}')
    elif image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ImageSizeError(f'camera {camera.name}: expected (H, W, 3) uint8, got '
                             f'{image.shape} {image.dtype}')
    h, w = image_hw(image)
    want = camera.width / camera.height
    if h == 0 or abs(w / h - want) / want > ASPECT_TOLERANCE:
        raise ImageSizeError(f'camera {camera.name}: image {w}x{h} does not match the rig '
                             f'size {camera.width}x{camera.height} (aspect ratio)')


def resize_chw(image: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """
    Resize a (3, H, W) uint8 tensor to (width, height) where it lies (the GPU decoder's path).

    Antialiased bilinear, as PIL's filter in resize_rgb: the two paths differ by a few grey
    levels (reduced-DCT decode and PIL's box pre-reduction), not by content.
    """
    width, height = int(size[0]), int(size[1])
    if image_hw(image) == (height, width):
        return image
    out = torch.nn.functional.interpolate(image[None].float(), size=(height, width),
                                          mode='bilinear', antialias=True, align_corners=False)
    return out[0].round_().clamp_(0, 255).to(torch.uint8)


def prepare_camera(camera: Camera, image,
                   image_size: Tuple[int, int]) -> Tuple[object, np.ndarray, np.ndarray]:
    """
    One camera at model resolution: image (3, H, W) uint8, K (3, 3), cam_to_base (4, 4).

    The rig's intrinsics belong to camera.width x camera.height; the image may be that frame at
    any scale (e.g. a reduced-DCT decode), so K is scaled from the camera to the model size.
    A tensor image (the GPU decoder's, (3, H, W)) stays a tensor on its device.
    """
    check_image(camera, image)
    width, height = image_size
    if torch.is_tensor(image):
        chw = resize_chw(image, (width, height))
    else:
        chw = np.ascontiguousarray(resize_rgb(image, (width, height)).transpose(2, 0, 1))
    k = camera.scaled(width, height).K.astype(np.float32)
    return chw, k, camera.T_base_cam.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class ViewSpec:
    """What a model reads of its cameras: every view's size and the optional zoom view."""

    image_size: Tuple[int, int]
    zoom: float = 0.0
    zoom_camera: str = 'CAM_FRONT'
    zoom_lift: float = 0.0
    jpeg_decode: str = 'dct'          # PlannerConfig.jpeg_decode: 'dct' or 'full'

    @classmethod
    def of(cls, spec) -> 'ViewSpec':
        """From a PlannerConfig, a ViewSpec or a plain (width, height)."""
        if isinstance(spec, ViewSpec):
            return spec
        if isinstance(spec, PlannerConfig):
            return cls(tuple(spec.image_size), spec.zoom, spec.zoom_camera, spec.zoom_lift,
                       spec.jpeg_decode)
        return cls(tuple(int(v) for v in spec))

    def zooms(self, camera_name: str) -> bool:
        """Whether this camera gets a zoom view besides its whole frame."""
        return self.zoom > 0 and camera_name == self.zoom_camera

    def key(self) -> str:
        """Short text that names the views (cache keys, logs)."""
        w, h = self.image_size
        full = '-full' if self.jpeg_decode == 'full' else ''
        if not self.zoom:
            return f'{w}x{h}{full}'
        return f'{w}x{h}+{self.zoom_camera}x{self.zoom:g}' + (
            f'up{self.zoom_lift:g}' if self.zoom_lift else '') + full


def zoom_view(camera: Camera, image, zoom: float,
              lift: float = 0.0) -> Tuple[Camera, object]:
    """
    Cut 1/zoom of a camera image out as a camera of its own (a digital telephoto).

    The window is centred horizontally and `lift` (a fraction of the frame height) above the
    frame's centre: lifted, it keeps an overhead light in view up to the stop line. It is cut
    at whole pixels of the image as decoded (any DCT scale), and the returned camera's
    intrinsics describe exactly that window, so the ray encoding stays exact.
    """
    check_image(camera, image)
    h, w = image_hw(image)
    cw, ch = max(1, int(round(w / zoom))), max(1, int(round(h / zoom)))
    x0 = (w - cw) // 2
    y0 = min(max(0, (h - ch) // 2 - int(round(lift * h))), h - ch)
    window = camera.scaled(w, h).cropped(x0, y0, cw, ch, camera.name + ZOOM_SUFFIX)
    if torch.is_tensor(image):
        return window, image[:, y0:y0 + ch, x0:x0 + cw]
    return window, image[y0:y0 + ch, x0:x0 + cw]


def decode_size(camera_name: str, views: ViewSpec) -> Tuple[int, int]:
    """Smallest decode (width, height) that serves a camera's views at model resolution."""
    w, h = views.image_size
    if views.zooms(camera_name):
        return (int(np.ceil(w * views.zoom)), int(np.ceil(h * views.zoom)))
    return (w, h)


def camera_views(camera: Camera, image, views: ViewSpec) -> List[tuple]:
    """
    Return one camera's views at model resolution.

    The whole frame, plus the zoom view when it is the zoom camera. Each view is
    (image (3, H, W) uint8, K (3, 3), cam_to_base (4, 4)).
    """
    out = [prepare_camera(camera, image, views.image_size)]
    if views.zooms(camera.name):
        out.append(prepare_camera(*zoom_view(camera, image, views.zoom, views.zoom_lift),
                                  views.image_size))
    return out


def camera_features(camera: Camera, msg, views: ViewSpec) -> List[tuple]:
    """
    Decode one camera message (Image or CompressedImage) into its views at model resolution.

    planner_node and the training dataset both call this, so live and training inputs are
    decoded, resized and calibrated by the same code: at the reduced DCT scale with PIL's
    resize, or with views.jpeg_decode 'full' the whole frame and the tensor resize that
    `decoder: nvjpeg` runs on a GPU.
    """
    compressed = hasattr(msg, 'format')     # CompressedImage (rclpy or rosbags), else Image
    if views.jpeg_decode == 'full':         # what decoder: nvjpeg computes, on the CPU
        rgb = compressed_to_rgb(msg, exact=True) if compressed else image_to_rgb(msg)
        return [(np.ascontiguousarray(v[0].numpy()), v[1], v[2])
                for v in camera_views(camera, to_chw(rgb), views)]
    if compressed:
        rgb = compressed_to_rgb(msg, min_size=decode_size(camera.name, views))
    else:
        rgb = image_to_rgb(msg)
    return camera_views(camera, rgb, views)


def to_chw(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 numpy -> a (3, H, W) tensor view (copied only if read-only)."""
    return torch.from_numpy(rgb if rgb.flags.writeable else rgb.copy()).permute(2, 0, 1)


def blank_views(camera: Camera, views: ViewSpec) -> List[tuple]:
    """
    Black views of a camera at model resolution, with its true calibration.

    What planner_node plans with for a missing, stale, corrupt or wrongly sized camera under
    missing_camera:=fill (as Autoware's VAD node does): the model sees no content there, but
    every view keeps its intrinsics and pose, so the ray encoding is the usual one.
    """
    w, h = decode_size(camera.name, views)
    scale = max(w / camera.width, h / camera.height)
    black = np.zeros((max(1, round(camera.height * scale)), max(1, round(camera.width * scale)),
                      3), np.uint8)
    return camera_views(camera, black, views)


def order_views(per_camera: Sequence[Sequence[tuple]]) -> List[tuple]:
    """Model view order: every camera's whole frame in rig order, then the zoom view(s)."""
    return [v[0] for v in per_camera] + [x for v in per_camera for x in v[1:]]


def prepare_features(obs: Observation, views) -> Dict[str, np.ndarray]:
    """Observation -> unbatched numpy features at `views` (PlannerConfig, ViewSpec or size)."""
    v = ViewSpec.of(views)
    per_cam = [camera_views(cam, img, v) for cam, img in zip(obs.rig.cameras, obs.images)]
    return features_from_parts(order_views(per_cam), obs.ego, obs.command)


def features_from_parts(cameras: Sequence[Tuple[object, np.ndarray, np.ndarray]],
                        ego: EgoState, command: int) -> Dict[str, object]:
    """Unbatched features from ordered views (order_views); the node calls this too."""
    return {
        T.IMAGES: stack_images([c[0] for c in cameras]),      # (V, 3, H, W) uint8
        T.INTRINSICS: np.stack([c[1] for c in cameras]),      # (V, 3, 3)
        T.CAM_TO_BASE: np.stack([c[2] for c in cameras]),     # (V, 4, 4)
        T.EGO: ego.as_array(),                                # (3,)
        T.COMMAND: np.int64(int(command)),
    }


def stack_images(images: Sequence) -> object:
    """
    Stack views: numpy, or a tensor on the GPU decoder's device if any view is one.

    A set decoded on the GPU may hold black numpy views of missing cameras (missing_camera:
    fill); they join the others on the device.
    """
    device = next((i.device for i in images if torch.is_tensor(i)), None)
    if device is None:
        return np.stack(images)
    return torch.stack([torch.as_tensor(i, device=device) for i in images])


def collate(features: Sequence[Dict[str, object]]) -> Dict[str, torch.Tensor]:
    """Stack unbatched features into a torch batch (tensors stay on their device)."""
    return {k: (torch.stack([f[k] for f in features]) if torch.is_tensor(features[0][k])
                else torch.from_numpy(np.stack([f[k] for f in features])))
            for k in features[0]}


def prepare_batch(observations: Sequence[Observation],
                  config: PlannerConfig) -> Dict[str, torch.Tensor]:
    """Observations -> model batch at config's input resolution."""
    return collate([prepare_features(o, config) for o in observations])


def resolve_device(device: str) -> torch.device:
    """'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when available); error names the parameter."""
    name = str(device).strip().lower()
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name == 'cpu':
        return torch.device('cpu')
    if name.startswith('cuda'):
        if not torch.cuda.is_available():
            raise ValueError(f'device: {device!r} requested but CUDA is not available '
                             '(use cpu or auto)')
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f'device: {device!r} but only {torch.cuda.device_count()} '
                             'CUDA device(s)')
        return dev
    raise ValueError(f'device: must be cpu, cuda, cuda:N or auto, got {device!r}')


class Planner:
    """A loaded model ready for inference: Observation(s) -> Trajectory(ies)."""

    def __init__(self, model: torch.nn.Module, device: str = 'cpu', fp16: bool = False,
                 num_threads: int = 0, channels_last: bool = True,
                 source: str = 'memory', action_head: Optional[ActionHead] = None,
                 cuda_graphs: bool = False):
        if num_threads < 0:
            raise ValueError(f'num_threads: must be >= 0 (0 = torch default), got {num_threads}')
        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.device = resolve_device(device)
        if fp16 and self.device.type != 'cuda':
            raise ValueError('fp16: only supported on CUDA devices, device is '
                             f'{self.device.type}')
        self.fp16 = bool(fp16)
        # Inference copy: batch norms folded into the convs (the caller's model is untouched).
        self.model = fuse_batch_norms(copy.deepcopy(model).eval()).to(self.device)
        self._rays: Optional[tuple] = None   # (intrinsics, cam_to_base, image_hw, encoding)
        self.channels_last = bool(channels_last) and self.config.kind == 'camera'
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.cuda_graphs = bool(cuda_graphs)
        if self.cuda_graphs:
            self.model = self._graphed(self.model)
        self.source = source
        self.rig: Optional[CameraRig] = getattr(model, 'rig', None)
        self.action_head: Optional[ActionHead] = None
        if action_head is not None:
            if action_head.config.ego_dim != self.config.d_model:
                raise ValueError(f'explain: action head ego_dim {action_head.config.ego_dim} '
                                 f"!= the planner's d_model {self.config.d_model}")
            self.action_head = copy.deepcopy(action_head).eval().to(self.device)

    def _graphed(self, model: torch.nn.Module) -> torch.nn.Module:
        """
        Compile the model to replay CUDA graphs (torch.compile mode='reduce-overhead').

        At batch 1 the GPU model is launch-bound: a replayed graph saves most of the per-kernel
        launch cost. The first calls compile and record (seconds); the node's warm-up makes them.
        """
        if self.device.type != 'cuda':
            raise ValueError(f'cuda_graphs: needs device: cuda, the planner runs on {self.device}')
        return torch.compile(model, mode='reduce-overhead')

    @property
    def explains(self) -> bool:
        """Return whether run_batch also gives the action head's label probabilities."""
        return self.action_head is not None

    @classmethod
    def from_checkpoint(cls, path, explain: bool = False, **kwargs) -> 'Planner':
        """
        Load a checkpoint of either kind (camera planner or ego MLP).

        explain: also load its action head; a checkpoint without one is a ValueError naming
        `explain`, so a node asked to explain never silently plans without explaining.
        """
        head = None
        if explain:
            head = load_action_head(path)
            if head is None:
                raise ValueError(NO_ACTION_HEAD_HELP.format(path=path))
        return cls(load_checkpoint(path), source=str(path), action_head=head, **kwargs)

    @classmethod
    def random(cls, config: Optional[PlannerConfig] = None, seed: int = 0,
               explain: bool = False, **kwargs) -> 'Planner':
        """Build an untrained model, with an untrained action head if asked (tests, benchmarks)."""
        torch.manual_seed(seed)
        model = build_model(config or PlannerConfig())
        head = ActionHead(VLMADConfig(ego_dim=model.config.d_model)) if explain else None
        return cls(model, source='random weights', action_head=head, **kwargs)

    @classmethod
    def from_options(cls, checkpoint: str = '', allow_random_weights: bool = False,
                     backend: str = 'torch', **kwargs) -> 'Planner':
        """
        Load what the node and CLIs ask for.

        The given checkpoint, else the packaged default, else random weights when allowed,
        else an error that says how to get a checkpoint. backend 'onnxruntime' runs the
        `.onnx` file of `vlmad export` that `checkpoint` names (export.OnnxPlanner).
        """
        if backend not in BACKENDS:
            raise ValueError(f'backend: must be one of {BACKENDS}, got {backend!r}')
        if checkpoint and not pathlib.Path(checkpoint).is_file():
            raise FileNotFoundError(f'checkpoint: file not found: {checkpoint}')
        if backend == 'onnxruntime':
            if not checkpoint.endswith('.onnx'):
                raise ValueError('backend: onnxruntime needs checkpoint:=FILE.onnx (from '
                                 f'`vlmad export CHECKPOINT --onnx FILE.onnx`), got '
                                 f'{checkpoint!r}')
            from vlmad_ros.export import OnnxPlanner
            return OnnxPlanner(checkpoint, **kwargs)
        if checkpoint:
            return cls.from_checkpoint(checkpoint, **kwargs)
        default = default_checkpoint()
        if default is not None:
            return cls.from_checkpoint(default, **kwargs)
        if allow_random_weights:
            return cls.random(**kwargs)
        raise FileNotFoundError(NO_CHECKPOINT_HELP)

    @property
    def config(self) -> PlannerConfig:
        return self.model.config

    @property
    def image_size(self) -> Tuple[int, int]:
        """(width, height) the model wants; decoders may aim at it (reduced-DCT JPEG)."""
        return self.config.image_size

    @functools.cached_property
    def view_spec(self) -> ViewSpec:
        """Return the views this model reads (fixed once loaded; asked per camera message)."""
        return ViewSpec.of(self.config)

    def views(self, camera: Camera, msg) -> List[tuple]:
        """Decode one camera message into the views this model reads (camera_features)."""
        return camera_features(camera, msg, self.view_spec)

    def blank_views(self, camera: Camera) -> List[tuple]:
        """Black views of one camera for this model (a missing camera, filled)."""
        return blank_views(camera, self.view_spec)

    def describe(self) -> str:
        cfg = self.config
        lift = f' lifted {cfg.zoom_lift:g}' if cfg.zoom_lift else ''
        zoom = f' + {cfg.zoom_camera} zoom x{cfg.zoom:g}{lift}' if cfg.zoom else ''
        return (f'{cfg.kind} planner {cfg.image_width}x{cfg.image_height}{zoom} from '
                f'{self.source} on {self.device}{" fp16" if self.fp16 else ""}'
                f'{" (CUDA graphs)" if self.cuda_graphs else ""}'
                f'{" + action head (explain)" if self.explains else ""}')

    def run_batch(self, batch: Dict[str, torch.Tensor]) -> Dict[str, np.ndarray]:
        """
        Model outputs for a prepared batch, as numpy on the CPU.

        When explaining, also types.ACTION_PROBS[category] (B, classes): the action head's
        softmax, computed from this very forward pass's ego feature.
        """
        if self.config.kind == 'camera':      # checked on the CPU copies: no device sync
            rays = self._ray_encoding(batch[T.INTRINSICS], batch[T.CAM_TO_BASE],
                                      tuple(batch[T.IMAGES].shape[-2:]))
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        if self.channels_last:
            imgs = batch[T.IMAGES]
            b, c = imgs.shape[:2]
            batch[T.IMAGES] = imgs.flatten(0, 1).contiguous(
                memory_format=torch.channels_last).unflatten(0, (b, c))
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.float16,
                                                    enabled=self.fp16):
            if self.config.kind == 'camera':
                batch[T.RAY_ENCODING] = rays
            out = self.model(batch)
            if self.action_head is not None:
                logits = self.action_head(out[T.EGO_FEATURE])
                for cat, lg in zip(labels.LABEL_SETS, logits):
                    out[T.ACTION_PROBS[cat]] = lg.float().softmax(-1)
        return {k: v.float().cpu().numpy() for k, v in out.items()}

    def _ray_encoding(self, k: torch.Tensor, pose: torch.Tensor, hw: tuple) -> torch.Tensor:
        """
        Return the rays of this calibration on the device; encoded again only when it changes.

        k and pose are the batch's CPU tensors: comparing them costs no device sync.
        """
        c = self._rays
        if not (c is not None and c[2] == hw and c[0].shape == k.shape
                and torch.equal(c[0], k) and torch.equal(c[1], pose)):
            with torch.inference_mode():
                rays = self.model.encode_rays(k.to(self.device), pose.to(self.device), hw)
            c = self._rays = (k.clone(), pose.clone(), hw, rays)
        return c[3]

    def plan_views(self, views: Sequence[Sequence[tuple]], ego: EgoState,
                   command: int) -> Tuple[Trajectory, Dict[str, np.ndarray]]:
        """
        Plan one camera set from its decoded views (per camera, rig order).

        planner_node's step after decoding; returns the Trajectory and the raw outputs (the
        action head's probabilities when explaining).
        """
        out = self.run_batch(collate([features_from_parts(order_views(views), ego, command)]))
        return Trajectory(xy=out[T.TRAJ][0], heading=out[T.HEADING][0]), out

    def plan_batch(self, observations: Sequence[Observation]) -> List[Trajectory]:
        out = self.run_batch(prepare_batch(observations, self.config))
        return [Trajectory(xy=out[T.TRAJ][i], heading=out[T.HEADING][i])
                for i in range(len(observations))]

    def plan(self, obs: Observation) -> Trajectory:
        """One observation -> its trajectory in base_link."""
        return self.plan_batch([obs])[0]

    def explain_batch(self, observations: Sequence[Observation]
                      ) -> List[Tuple[Trajectory, Explanation]]:
        """Plan and explain in one forward pass; needs a planner built with explain=True."""
        if not self.explains:
            raise RuntimeError('this Planner has no action head: build it with explain=True')
        out = self.run_batch(prepare_batch(observations, self.config))
        return [(Trajectory(xy=out[T.TRAJ][i], heading=out[T.HEADING][i]), e)
                for i, e in enumerate(explanations(out))]

    def explain(self, obs: Observation) -> Tuple[Trajectory, Explanation]:
        """One observation -> its trajectory and the action head's labels for it."""
        return self.explain_batch([obs])[0]


def explanations(out: Dict[str, np.ndarray]) -> List[Explanation]:
    """Per-sample Explanations from run_batch outputs (empty when the head did not run)."""
    keys = [T.ACTION_PROBS[cat] for cat in labels.LABEL_SETS]
    if not all(k in out for k in keys):
        return []
    n = len(out[keys[0]])
    return [Explanation({cat: out[T.ACTION_PROBS[cat]][i] for cat in labels.LABEL_SETS})
            for i in range(n)]


# ---- Run-time helpers shared by the node and the benchmark (no ROS) -------------------------

class LatestWins:
    """A one-slot mailbox: a new item replaces a waiting one, so latency stays bounded."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self.replaced = 0

    def put(self, item) -> bool:
        """Offer an item; True when it replaced one the consumer had not taken yet."""
        with self._cond:
            replaced = self._item is not None
            self.replaced += replaced
            self._item = item
            self._cond.notify()
        return replaced

    def take(self, timeout: float):
        """Remove and return the waiting item, or None after `timeout` seconds."""
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
        return item


class RollingStats:
    """The last `size` samples of a quantity, with percentiles (thread-safe)."""

    def __init__(self, size: int = 500):
        self._values: Deque[float] = collections.deque(maxlen=size)
        self._lock = threading.Lock()
        self.count = 0

    def add(self, value: float) -> None:
        with self._lock:
            self._values.append(float(value))
            self.count += 1

    def percentiles(self, qs: Sequence[float] = (50, 95, 99)) -> List[float]:
        with self._lock:
            values = np.array(self._values)
        if values.size == 0:
            return [float('nan')] * len(qs)
        return [float(v) for v in np.percentile(values, qs)]


class RateMeter:
    """Messages per second over a sliding window, and the time since the last one."""

    def __init__(self, window: float = 2.0):
        self.window = window
        self._times: Deque[float] = collections.deque()
        self._lock = threading.Lock()
        self.last: Optional[float] = None

    def tick(self, now: float) -> None:
        with self._lock:
            self._times.append(now)
            self.last = now
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()

    def rate(self, now: float) -> float:
        with self._lock:
            self._trim(now)
            return len(self._times) / self.window


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of (x, y, z, w) quaternions."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz])


def plan_poses(traj: Trajectory, position=(0.0, 0.0, 0.0),
               orientation_xyzw=(0.0, 0.0, 0.0, 1.0)) -> np.ndarray:
    """
    Waypoints as (6, 7) poses x, y, z, qx, qy, qz, qw in the frame of the given base pose.

    The default pose is the identity (poses stay in base_link); pass the synchronised odometry
    pose to express the plan in the odometry frame.
    """
    q = np.asarray(orientation_xyzw, dtype=np.float64)
    q = q / np.linalg.norm(q)
    x, y, z, w = q
    rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                    [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                    [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
    pts = np.concatenate([traj.xy.astype(np.float64), np.zeros((len(traj.xy), 1))], axis=1)
    pts = pts @ rot.T + np.asarray(position, dtype=np.float64)
    out = np.zeros((len(pts), 7))
    out[:, :3] = pts
    for k, yaw in enumerate(traj.heading.astype(np.float64)):
        out[k, 3:] = _quat_mul(q, np.array([0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)]))
    return out
