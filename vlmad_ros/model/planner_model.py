"""
The end-to-end camera planner, its ego-state-only baseline, and the planning loss.

PlannerModel.forward(batch) -> {'traj': (B, 6, 2), 'heading': (B, 6), 'ego_feature': (B, D)}
Batch keys and shapes: vlmad_ros.types. Images arrive as uint8; the model normalises them with
the mean/std it carries (saved in the checkpoint), so every caller feeds raw pixels.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import nn

from vlmad_ros import types as T
from vlmad_ros.model.config import PlannerConfig
from vlmad_ros.model.encoder import (build_image_encoder, CameraRayEncoding,
                                     EgoCommandEmbedding)


class PlanHead(nn.Module):
    """ego_feature -> waypoints (as cumulative 0.5 s steps) and headings."""

    def __init__(self, d_model: int, plan_steps: int, waypoint_scale: float):
        super().__init__()
        self.plan_steps = plan_steps
        self.waypoint_scale = waypoint_scale
        self.traj = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(inplace=True),
                                  nn.Linear(d_model, plan_steps * 2))
        self.heading = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(inplace=True),
                                     nn.Linear(d_model, plan_steps))

    def forward(self, ego_feature: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        steps = self.traj(ego_feature).view(-1, self.plan_steps, 2) * self.waypoint_scale
        return steps.cumsum(dim=1), self.heading(ego_feature)   # (B, 6, 2), (B, 6)


class PlanDecoder(nn.Module):
    """The ego/plan query cross-attends to the camera tokens (small transformer decoder)."""

    def __init__(self, cfg: PlannerConfig):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        layer = nn.TransformerDecoderLayer(
            cfg.d_model, cfg.num_heads, cfg.ffn_dim, cfg.dropout, batch_first=True,
            norm_first=True)
        self.layers = nn.TransformerDecoder(layer, cfg.decoder_layers,
                                            norm=nn.LayerNorm(cfg.d_model))

    def forward(self, ego_token: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        # ego_token (B, D), tokens (B, N, D) -> ego_feature (B, D)
        q = self.query + ego_token[:, None, :]
        return self.layers(q, tokens)[:, 0]


class _Normalise(nn.Module):
    """uint8 images -> normalised float; mean/std are buffers so the checkpoint carries them."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer('mean', torch.tensor(list(mean), dtype=torch.float32).view(3, 1, 1))
        self.register_buffer('std', torch.tensor(list(std), dtype=torch.float32).view(3, 1, 1))

    def forward(self, images: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        x = images.to(dtype) / 255.0
        return (x - self.mean.to(dtype)) / self.std.to(dtype)


class PlannerModel(nn.Module):
    """
    Six cameras + ego state + command -> 6 waypoints, headings and the ego feature.

    forward(batch) is the dict interface of training and the Planner; `plan` is its tensor-only
    core (what `vlmad export` traces), fed the ray encoding that `encode_rays` computes from the
    calibration: the calibration rarely changes, so inference computes it once (planner.py)
    and the exported graph carries it as a constant.
    """

    def __init__(self, cfg: PlannerConfig):
        super().__init__()
        if cfg.kind != 'camera':
            raise ValueError(f'PlannerModel needs PlannerConfig.kind="camera", got {cfg.kind!r}')
        self.config = cfg
        self.normalise = _Normalise(cfg.image_mean, cfg.image_std)
        self.image_encoder = build_image_encoder(cfg.backbone, cfg.backbone_channels,
                                                 cfg.backbone_blocks, cfg.d_model)
        self.ray_encoding = CameraRayEncoding(cfg.d_model, cfg.ray_frequencies)
        self.ego_embedding = EgoCommandEmbedding(cfg.ego_dim, cfg.ego_scale, cfg.num_commands,
                                                 cfg.d_model, cfg.use_accel, cfg.ego_dropout)
        self.decoder = PlanDecoder(cfg)
        self.head = PlanHead(cfg.d_model, cfg.plan_steps, cfg.waypoint_scale)
        if cfg.backbone_weights:
            self.image_encoder.load_pretrained(cfg.backbone_weights)

    def feature_size(self, image_hw: Tuple[int, int]) -> Tuple[int, int]:
        """Feature map (h, w) of an image (H, W): every stride-2 layer rounds up."""
        s = self.config.backbone_stride
        return -(-int(image_hw[0]) // s), -(-int(image_hw[1]) // s)

    def encode_rays(self, intrinsics: torch.Tensor, cam_to_base: torch.Tensor,
                    image_hw: Tuple[int, int]) -> torch.Tensor:
        """(B, C, 3, 3) K at model resolution, (B, C, 4, 4) poses -> (B, C, h, w, D)."""
        return self.ray_encoding(intrinsics.to(torch.float32), cam_to_base.to(torch.float32),
                                 self.feature_size(image_hw), tuple(image_hw))

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        images = batch[T.IMAGES]                                   # (B, C, 3, H, W) uint8
        pos = batch.get(T.RAY_ENCODING)
        if pos is None:
            pos = self.encode_rays(batch[T.INTRINSICS], batch[T.CAM_TO_BASE], images.shape[-2:])
        traj, heading, ego_feature = self.plan(images, batch[T.EGO], batch[T.COMMAND], pos)
        return {T.TRAJ: traj, T.HEADING: heading, T.EGO_FEATURE: ego_feature}

    def plan(self, images: torch.Tensor, ego: torch.Tensor, command: torch.Tensor,
             pos: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tensors only: images uint8, ego (B, 3), command (B,), pos (B or 1, C, h, w, D)."""
        b, c, _, h, w = images.shape
        dtype = self.normalise.mean.dtype
        x = self.normalise(images.flatten(0, 1), dtype)            # (B*C, 3, H, W)
        feat = self.image_encoder(x)                               # (B*C, D, h', w')
        d, fh, fw = feat.shape[1:]
        feat = feat.view(b, c, d, fh, fw).permute(0, 1, 3, 4, 2)   # (B, C, h', w', D)
        tokens = (feat + pos.to(feat.dtype)).reshape(b, c * fh * fw, d)  # (B, N, D)
        ego_token = self.ego_embedding(ego.to(dtype), command)
        ego_feature = self.decoder(ego_token, tokens)              # (B, D)
        traj, heading = self.head(ego_feature)
        return traj, heading, ego_feature


def fuse_batch_norms(model: nn.Module) -> nn.Module:
    """
    Fold every eval-mode BatchNorm2d into the conv before it (inference only, ~10 % faster).

    Both layouts in use: Sequential(conv, bn, ...) (the cnn's units, ResNet downsample) and
    sibling attributes convN/bnN (residual blocks, the ResNet stem).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    for module in model.modules():
        if (isinstance(module, nn.Sequential) and len(module) > 1
                and isinstance(module[0], nn.Conv2d) and isinstance(module[1], nn.BatchNorm2d)):
            module[0] = fuse_conv_bn_eval(module[0], module[1])
            module[1] = nn.Identity()
        for i in range(1, 4):
            conv, bn = getattr(module, f'conv{i}', None), getattr(module, f'bn{i}', None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, f'conv{i}', fuse_conv_bn_eval(conv, bn))
                setattr(module, f'bn{i}', nn.Identity())
    return model


class EgoMLPPlanner(nn.Module):
    """AD-MLP-style baseline: ego state + command only, no images; same interface."""

    def __init__(self, cfg: PlannerConfig):
        super().__init__()
        if cfg.kind != 'ego_mlp':
            raise ValueError(f'EgoMLPPlanner needs PlannerConfig.kind="ego_mlp", got {cfg.kind!r}')
        self.config = cfg
        self.ego_embedding = EgoCommandEmbedding(cfg.ego_dim, cfg.ego_scale, cfg.num_commands,
                                                 cfg.mlp_hidden, cfg.use_accel)
        self.mlp = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(cfg.mlp_hidden, cfg.mlp_hidden),
                                 nn.ReLU(inplace=True), nn.Linear(cfg.mlp_hidden, cfg.d_model),
                                 nn.LayerNorm(cfg.d_model))
        self.head = PlanHead(cfg.d_model, cfg.plan_steps, cfg.waypoint_scale)

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        ego = batch[T.EGO].to(torch.float32)
        ego_feature = self.mlp(self.ego_embedding(ego, batch[T.COMMAND]))   # (B, D)
        traj, heading = self.head(ego_feature)
        return {T.TRAJ: traj, T.HEADING: heading, 'ego_feature': ego_feature}


def build_model(cfg: PlannerConfig) -> nn.Module:
    """Build the model class for cfg.kind."""
    return PlannerModel(cfg) if cfg.kind == 'camera' else EgoMLPPlanner(cfg)


def wrap_angle(a: torch.Tensor) -> torch.Tensor:
    """Angles to (-pi, pi]."""
    return torch.atan2(torch.sin(a), torch.cos(a))


def planning_loss(out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor],
                  heading_weight: float = PlannerConfig.heading_loss_weight
                  ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """
    L1 on waypoints [m] + heading_weight * L1 on the wrapped heading error [rad].

    The parts come back as detached tensors on the loss's device: reading them (float())
    waits for the GPU, so training reads them every few steps, not every step.
    """
    l1_traj = (out[T.TRAJ] - batch[T.TRAJ]).abs().sum(dim=-1).mean()
    l1_heading = wrap_angle(out[T.HEADING] - batch[T.HEADING]).abs().mean()
    loss = l1_traj + heading_weight * l1_heading
    return loss, {'loss_traj': l1_traj.detach(), 'loss_heading': l1_heading.detach(),
                  'loss_planning': loss.detach()}
