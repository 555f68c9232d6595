"""
Encoders: the boxes left of the plan decoder in the figure.

ImageEncoder        one compact conv backbone shared by the six cameras (plain torch)
ResNetEncoder       or a ResNet-18/34/50 with torchvision's names (ImageNet weights load)
CameraRayEncoding   each feature cell's viewing ray in base_link -> positional encoding
EgoCommandEmbedding ego state + route command -> the initial ego/plan query
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from vlmad_ros.model.resnet import load_matching, ResNet, STRIDE as RESNET_STRIDE


class ConvBNReLU(nn.Sequential):
    """3x3 conv, batch norm, ReLU: the unit of the backbone."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True))


class ResidualBlock(nn.Module):
    """ResNet basic block at constant width."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvBNReLU(channels, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn2(self.conv2(self.conv1(x))))


class ImageEncoder(nn.Module):
    """Small ResNet-like backbone: stride 2 per stage, then a 1x1 projection to d_model."""

    def __init__(self, channels: Sequence[int], blocks: Sequence[int], d_model: int):
        super().__init__()
        layers = []
        c_in = 3
        for c_out, n_blocks in zip(channels, blocks):
            layers.append(ConvBNReLU(c_in, c_out, stride=2))
            layers.extend(ResidualBlock(c_out) for _ in range(n_blocks))
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c_in, d_model, 1)
        self.stride = 2 ** len(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, 3, H, W) normalised float -> (N, d_model, H/stride, W/stride)
        return self.proj(self.body(x))

    def load_pretrained(self, path) -> None:
        """Load weights for this same net from a state_dict file; names every mismatch."""
        load_matching(self, path)


class ResNetEncoder(nn.Module):
    """
    A torchvision-layout ResNet (`body`) and a 1x1 projection to d_model.

    backbone_weights (an ImageNet torchvision file) load into `body` only, `fc.*` dropped.
    """

    def __init__(self, name: str, d_model: int):
        super().__init__()
        self.body = ResNet(name)
        self.proj = nn.Conv2d(self.body.out_channels, d_model, 1)
        self.stride = RESNET_STRIDE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, 3, H, W) normalised float -> (N, d_model, ceil(H/32), ceil(W/32))
        return self.proj(self.body(x))

    def load_pretrained(self, path) -> None:
        """Load torchvision ResNet weights (strict on the backbone keys, classifier ignored)."""
        load_matching(self.body, path, ignore_prefixes=('fc.',))


def build_image_encoder(backbone: str, channels: Sequence[int], blocks: Sequence[int],
                        d_model: int) -> nn.Module:
    """PlannerConfig.backbone -> its encoder: 'cnn' (ImageEncoder) or a ResNet."""
    if backbone == 'cnn':
        return ImageEncoder(channels, blocks, d_model)
    return ResNetEncoder(backbone, d_model)


def feature_pixel_centres(height: int, width: int, stride_y: float, stride_x: float,
                          device=None) -> torch.Tensor:
    """(h, w, 2) pixel coordinates (u, v) of feature cell centres (pixel centres at integers)."""
    v = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * stride_y - 0.5
    u = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * stride_x - 0.5
    vv, uu = torch.meshgrid(v, u, indexing='ij')
    return torch.stack([uu, vv], dim=-1)


def camera_rays(intrinsics: torch.Tensor, cam_to_base: torch.Tensor,
                pixels: torch.Tensor) -> torch.Tensor:
    """
    Compute unit viewing rays in base_link (B, C, h, w, 3) for pixels (h, w, 2) per camera.

    Same maths as rig.Camera.pixel_rays, batched in torch so any rig in the batch works.
    """
    fx = intrinsics[..., 0, 0, None, None]   # (B, C, 1, 1)
    fy = intrinsics[..., 1, 1, None, None]
    cx = intrinsics[..., 0, 2, None, None]
    cy = intrinsics[..., 1, 2, None, None]
    x = (pixels[..., 0] - cx) / fx          # (B, C, h, w)
    y = (pixels[..., 1] - cy) / fy
    d = torch.stack([x, y, torch.ones_like(x)], dim=-1)       # optical frame
    rot = cam_to_base[..., :3, :3]                             # (B, C, 3, 3)
    d = torch.einsum('bcij,bchwj->bchwi', rot, d)              # base_link
    return d / d.norm(dim=-1, keepdim=True)


class CameraRayEncoding(nn.Module):
    """
    Positional encoding of a feature cell from its ray (direction + camera origin) in base_link.

    Rays instead of learned per-camera embeddings: the model knows where each camera looks and a
    different rig (nuScenes vs CARLA) only changes the rays, not the weights.
    """

    def __init__(self, d_model: int, frequencies: int, origin_scale: float = 2.0):
        super().__init__()
        self.frequencies = frequencies
        self.origin_scale = origin_scale       # [m]; camera positions are within a few metres
        n_in = 3 + 3 + 3 * 2 * frequencies
        self.mlp = nn.Sequential(nn.Linear(n_in, d_model), nn.ReLU(inplace=True),
                                 nn.Linear(d_model, d_model))

    def forward(self, intrinsics: torch.Tensor, cam_to_base: torch.Tensor,
                feat_hw: Sequence[int], image_hw: Sequence[int]) -> torch.Tensor:
        h, w = feat_hw
        pix = feature_pixel_centres(h, w, image_hw[0] / h, image_hw[1] / w,
                                    device=intrinsics.device)
        rays = camera_rays(intrinsics, cam_to_base, pix)                # (B, C, h, w, 3)
        origin = cam_to_base[..., :3, 3][..., None, None, :].expand_as(rays) / self.origin_scale
        feats = [rays, origin]
        if self.frequencies:
            scales = (2.0 ** torch.arange(self.frequencies, device=rays.device)) * math.pi
            angles = rays[..., None] * scales                            # (B, C, h, w, 3, F)
            feats += [angles.sin().flatten(-2), angles.cos().flatten(-2)]
        return self.mlp(torch.cat(feats, dim=-1))                       # (B, C, h, w, D)


class EgoCommandEmbedding(nn.Module):
    """
    Ego state (speed, yaw rate, accel) MLP plus a learned embedding per route command.

    In training, `ego_dropout` of the samples lose the ego part (PlannerConfig.ego_dropout).
    """

    def __init__(self, ego_dim: int, ego_scale: Sequence[float], num_commands: int,
                 d_model: int, use_accel: bool = True, ego_dropout: float = 0.0):
        super().__init__()
        self.ego_dropout = float(ego_dropout)
        # 1 / scale per input, 0 for an input the model does not read (PlannerConfig.use_accel).
        gain = [1.0 / float(s) for s in ego_scale]
        if not use_accel:
            gain[2] = 0.0
        self.register_buffer('ego_gain', torch.tensor(gain, dtype=torch.float32),
                             persistent=False)
        self.ego_mlp = nn.Sequential(nn.Linear(ego_dim, d_model), nn.ReLU(inplace=True),
                                     nn.Linear(d_model, d_model))
        self.command = nn.Embedding(num_commands, d_model)

    def forward(self, ego: torch.Tensor, command: torch.Tensor) -> torch.Tensor:
        # ego (B, 3), command (B,) -> (B, D)
        ego_part = self.ego_mlp(ego * self.ego_gain)
        if self.training and self.ego_dropout:
            keep = torch.rand(ego.shape[0], 1, device=ego.device) >= self.ego_dropout
            ego_part = ego_part * keep.to(ego_part.dtype)
        return ego_part + self.command(command)
