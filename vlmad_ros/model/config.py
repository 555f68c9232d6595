"""
PlannerConfig: everything needed to rebuild a planner model (saved inside its checkpoint).

New fields get defaults so older checkpoints keep loading (lerobot / carla_garage style).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Tuple

from vlmad_ros.rig import CAMERA_NAMES
from vlmad_ros.topics import PLAN_STEPS

MODEL_KINDS = ('camera', 'ego_mlp')
# 'cnn': the project's small net (backbone_channels/blocks); the ResNets: torchvision's layout,
# stride 32, ImageNet weights from a local torchvision file (model/resnet.py, docs/MODEL.md).
BACKBONES = ('cnn', 'resnet18', 'resnet34', 'resnet50')
JPEG_DECODES = ('dct', 'full')
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass
class PlannerConfig:
    """Hyper-parameters of the camera planner and of the ego-state MLP baseline."""

    kind: str = 'camera'                 # 'camera' (PlannerModel) or 'ego_mlp' (EgoMLPPlanner)
    num_cameras: int = len(CAMERA_NAMES)
    # Model input per camera [px]. 192x112 is what a 1600x900 JPEG decodes to at 1/8 DCT scale
    # (200x113) minus a light resize: the cheapest decode, see BENCHMARKS.md.
    image_width: int = 192
    image_height: int = 112
    # A digital telephoto: the central 1/zoom of `zoom_camera`'s frame as one more view at
    # image_width x image_height, so that lights and pedestrians far ahead cover enough pixels
    # (docs/VISIBILITY.md). 0 = no zoom view. The view's rays follow from its intrinsics.
    zoom: float = 0.0
    zoom_camera: str = 'CAM_FRONT'
    # The zoom window's centre this fraction of the frame height above the frame's centre,
    # so that an overhead light stays in view up to the stop line (docs/VISIBILITY.md).
    zoom_lift: float = 0.0
    # How JPEGs become model input, in training and in planner_node's CPU decoder alike:
    # 'dct' decodes at the reduced DCT scale nearest the views and resizes with PIL (fastest on
    # a CPU); 'full' decodes the whole frame and resizes with the antialiased bilinear of
    # planner.resize_chw, which is what `decoder: nvjpeg` computes on a GPU. Train with 'full'
    # for a car that decodes on its GPU (docs/PLANNER.md, "On a GPU").
    jpeg_decode: str = 'dct'
    # Image encoder: 'cnn' or a ResNet (BACKBONES). The cnn: one stride-2 conv per stage (stem
    # included), channels per stage; backbone_channels/blocks do not apply to the ResNets.
    backbone: str = 'cnn'
    backbone_channels: Tuple[int, ...] = (16, 32, 64, 128)
    # Residual blocks after the downsampling conv of each stage.
    backbone_blocks: Tuple[int, ...] = (0, 1, 1, 1)
    # Optional local state_dict file loaded into the backbone when the model is built (never
    # downloaded): for a ResNet, torchvision's ImageNet file (resnet18-f37072fd.pth ...), fc.*
    # ignored; for the cnn, weights of that same net. Checkpoints carry the trained weights.
    backbone_weights: str = ''
    d_model: int = 128                   # token / ego_feature width
    num_heads: int = 4
    decoder_layers: int = 2
    ffn_dim: int = 256
    dropout: float = 0.0
    ray_frequencies: int = 4             # sinusoidal frequencies of the ray direction encoding
    ego_dim: int = 3                     # speed [m/s], yaw_rate [rad/s], accel [m/s^2]
    ego_scale: Tuple[float, ...] = (10.0, 0.5, 3.0)  # divides the ego state before the MLP
    # False: the model zeroes the acceleration it is given (training and inference alike). The
    # acceleration is the ego's own recent history: "braking now" predicts "braking later", a
    # shortcut that lets a planner follow its own speed instead of the light (copycat problem).
    use_accel: bool = True
    # Training only: the probability that a sample's ego-state embedding is dropped (zeroed),
    # so that the planner learns to stop, wait and start from what its cameras show, not from
    # its own speed alone ("stood still, so stays still": the inertia problem of behaviour
    # cloning). Inference always reads the ego state.
    ego_dropout: float = 0.0
    num_commands: int = 3                # LEFT, RIGHT, STRAIGHT
    plan_steps: int = PLAN_STEPS
    waypoint_scale: float = 5.0          # [m] per 0.5 s step of the raw head output
    mlp_hidden: int = 256                # hidden width of the ego-state MLP baseline
    heading_loss_weight: float = 0.5
    # Image normalisation (applied inside the model to uint8 input; ImageNet statistics).
    image_mean: Tuple[float, ...] = IMAGENET_MEAN
    image_std: Tuple[float, ...] = IMAGENET_STD

    def __post_init__(self):
        # YAML/JSON and torch.load give lists: keep tuples so configs compare equal.
        for name in ('backbone_channels', 'backbone_blocks', 'ego_scale', 'image_mean',
                     'image_std'):
            setattr(self, name, tuple(getattr(self, name)))
        if self.kind not in MODEL_KINDS:
            raise ValueError(f'PlannerConfig.kind must be one of {MODEL_KINDS}, got {self.kind!r}')
        positive = ('num_cameras', 'image_width', 'image_height', 'd_model', 'num_heads',
                    'decoder_layers', 'ffn_dim', 'ego_dim', 'num_commands', 'plan_steps',
                    'mlp_hidden')
        for name in positive:
            if int(getattr(self, name)) <= 0:
                raise ValueError(f'PlannerConfig.{name} must be > 0, got {getattr(self, name)}')
        if self.d_model % self.num_heads:
            raise ValueError(f'PlannerConfig.d_model ({self.d_model}) must be divisible by '
                             f'num_heads ({self.num_heads})')
        if not self.backbone_channels or any(c <= 0 for c in self.backbone_channels):
            raise ValueError('PlannerConfig.backbone_channels must be non-empty positive ints, '
                             f'got {self.backbone_channels}')
        if len(self.backbone_blocks) != len(self.backbone_channels) or any(
                b < 0 for b in self.backbone_blocks):
            raise ValueError('PlannerConfig.backbone_blocks needs one count >= 0 per stage of '
                             f'backbone_channels, got {self.backbone_blocks}')
        self._check_backbone()
        stride = self.backbone_stride
        if self.image_width < stride or self.image_height < stride:
            raise ValueError(f'PlannerConfig.image_width/image_height must be >= the backbone '
                             f'stride {stride}, got {self.image_width}x{self.image_height}')
        if self.zoom != 0.0 and not 1.0 < self.zoom <= 8.0:
            raise ValueError(f'PlannerConfig.zoom must be 0 (off) or in (1, 8], got {self.zoom}')
        if self.zoom and self.zoom_camera not in CAMERA_NAMES:
            raise ValueError(f'PlannerConfig.zoom_camera must be one of {CAMERA_NAMES}, got '
                             f'{self.zoom_camera!r}')
        if self.zoom_lift and not (self.zoom and
                                   0.0 < self.zoom_lift <= (1.0 - 1.0 / self.zoom) / 2):
            raise ValueError('PlannerConfig.zoom_lift must keep the zoom window inside the frame: '
                             'in [0, (1 - 1/zoom) / 2] with a zoom view, got '
                             f'{self.zoom_lift} at zoom {self.zoom}')
        if self.jpeg_decode not in JPEG_DECODES:
            raise ValueError(f'PlannerConfig.jpeg_decode must be one of {JPEG_DECODES}, got '
                             f'{self.jpeg_decode!r}')
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f'PlannerConfig.dropout must be in [0, 1), got {self.dropout}')
        if self.ray_frequencies < 0:
            raise ValueError(f'PlannerConfig.ray_frequencies must be >= 0, got '
                             f'{self.ray_frequencies}')
        if not 0.0 <= self.ego_dropout < 1.0:
            raise ValueError('PlannerConfig.ego_dropout must be in [0, 1), got '
                             f'{self.ego_dropout}')
        if self.ego_dropout and self.kind != 'camera':
            raise ValueError('PlannerConfig.ego_dropout needs the camera planner: the ego-state '
                             'MLP has nothing else to read')
        if not self.use_accel and self.ego_dim != 3:
            raise ValueError('PlannerConfig.use_accel: false needs ego_dim 3 (speed, yaw rate, '
                             f'accel), got ego_dim {self.ego_dim}')
        if len(self.ego_scale) != self.ego_dim or any(s <= 0 for s in self.ego_scale):
            raise ValueError(f'PlannerConfig.ego_scale needs {self.ego_dim} positive values, '
                             f'got {self.ego_scale}')
        if self.waypoint_scale <= 0:
            raise ValueError('PlannerConfig.waypoint_scale must be > 0, got '
                             f'{self.waypoint_scale}')
        if self.heading_loss_weight < 0:
            raise ValueError('PlannerConfig.heading_loss_weight must be >= 0, got '
                             f'{self.heading_loss_weight}')
        for name in ('image_mean', 'image_std'):
            values = getattr(self, name)
            if len(values) != 3:
                raise ValueError(f'PlannerConfig.{name} needs 3 values (RGB), got {values}')
        if any(s <= 0 for s in self.image_std):
            raise ValueError(f'PlannerConfig.image_std must be > 0, got {self.image_std}')

    def _check_backbone(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f'PlannerConfig.backbone must be one of {BACKBONES}, got '
                             f'{self.backbone!r}')
        imagenet = (self.image_mean, self.image_std) == (IMAGENET_MEAN, IMAGENET_STD)
        if self.backbone != 'cnn' and self.backbone_weights and not imagenet:
            raise ValueError(f'PlannerConfig.image_mean/image_std must be the ImageNet '
                             f'statistics {IMAGENET_MEAN}/{IMAGENET_STD} with ImageNet '
                             f'backbone_weights, got {self.image_mean}/{self.image_std}')

    @property
    def backbone_stride(self) -> int:
        """Image pixels per feature cell (the feature map is ceil(H/stride) x ceil(W/stride))."""
        return 2 ** len(self.backbone_channels) if self.backbone == 'cnn' else 32

    @property
    def image_size(self) -> Tuple[int, int]:
        """(width, height) of the model input."""
        return self.image_width, self.image_height

    @property
    def num_views(self) -> int:
        """Images per sample: the cameras, plus the zoom view."""
        return self.num_cameras + (1 if self.zoom else 0)

    def to_dict(self) -> Dict[str, Any]:
        """Plain types only, so torch.load(weights_only=True) can read it back."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> 'PlannerConfig':
        """Rebuild from to_dict(); unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f'PlannerConfig: unknown field(s) {unknown} (known: {sorted(known)})')
        return cls(**d)
