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
from vlmad_ros.model.encoder import CameraRayEncoding, EgoCommandEmbedding, ImageEncoder


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
    """Six cameras + ego state + command -> 6 waypoints, headings and the ego feature."""

    def __init__(self, cfg: PlannerConfig):
        super().__init__()
        if cfg.kind != 'camera':
            raise ValueError(f'PlannerModel needs PlannerConfig.kind="camera", got {cfg.kind!r}')
        self.config = cfg
        self.normalise = _Normalise(cfg.image_mean, cfg.image_std)
        self.image_encoder = ImageEncoder(cfg.backbone_channels, cfg.backbone_blocks, cfg.d_model)
        self.ray_encoding = CameraRayEncoding(cfg.d_model, cfg.ray_frequencies)
        self.ego_embedding = EgoCommandEmbedding(cfg.ego_dim, cfg.ego_scale, cfg.num_commands,
                                                 cfg.d_model)
        self.decoder = PlanDecoder(cfg)
        self.head = PlanHead(cfg.d_model, cfg.plan_steps, cfg.waypoint_scale)
        self._pos_cache = None      # (intrinsics, cam_to_base, feat_hw, image_hw, encoding)
        if cfg.backbone_weights:
            self.image_encoder.load_pretrained(cfg.backbone_weights)

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        images = batch[T.IMAGES]                                   # (B, C, 3, H, W) uint8
        b, c, _, h, w = images.shape
        dtype = self.normalise.mean.dtype
        x = self.normalise(images.flatten(0, 1), dtype)            # (B*C, 3, H, W)
        feat = self.image_encoder(x)                               # (B*C, D, h', w')
        d, fh, fw = feat.shape[1:]
        feat = feat.view(b, c, d, fh, fw).permute(0, 1, 3, 4, 2)   # (B, C, h', w', D)
        pos = self._ray_encoding(batch[T.INTRINSICS].to(torch.float32),
                                 batch[T.CAM_TO_BASE].to(torch.float32), (fh, fw), (h, w))
        tokens = (feat + pos.to(feat.dtype)).reshape(b, c * fh * fw, d)  # (B, N, D)
        ego = self.ego_embedding(batch[T.EGO].to(dtype), batch[T.COMMAND])
        ego_feature = self.decoder(ego, tokens)                    # (B, D)
        traj, heading = self.head(ego_feature)
        return {T.TRAJ: traj, T.HEADING: heading, 'ego_feature': ego_feature}

    def _ray_encoding(self, intrinsics, cam_to_base, feat_hw, image_hw) -> torch.Tensor:
        """Ray encoding; at inference reused while the calibration stays the same (it does)."""
        if self.training or torch.is_grad_enabled():
            self._pos_cache = None
            return self.ray_encoding(intrinsics, cam_to_base, feat_hw, image_hw)
        c = self._pos_cache
        if (c is not None and c[2] == feat_hw and c[3] == image_hw
                and c[0].shape == intrinsics.shape and torch.equal(c[0], intrinsics)
                and torch.equal(c[1], cam_to_base)):
            return c[4]
        pos = self.ray_encoding(intrinsics, cam_to_base, feat_hw, image_hw)
        self._pos_cache = (intrinsics.clone(), cam_to_base.clone(), feat_hw, image_hw, pos)
        return pos


def fuse_batch_norms(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm2d into the conv before it (inference only, ~10 % faster)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    from vlmad_ros.model.encoder import ConvBNReLU, ResidualBlock
    for module in model.modules():
        if isinstance(module, ConvBNReLU) and isinstance(module[1], nn.BatchNorm2d):
            module[0] = fuse_conv_bn_eval(module[0], module[1])
            module[1] = nn.Identity()
        elif isinstance(module, ResidualBlock) and isinstance(module.bn2, nn.BatchNorm2d):
            module.conv2 = fuse_conv_bn_eval(module.conv2, module.bn2)
            module.bn2 = nn.Identity()
    return model


class EgoMLPPlanner(nn.Module):
    """AD-MLP-style baseline: ego state + command only, no images; same interface."""

    def __init__(self, cfg: PlannerConfig):
        super().__init__()
        if cfg.kind != 'ego_mlp':
            raise ValueError(f'EgoMLPPlanner needs PlannerConfig.kind="ego_mlp", got {cfg.kind!r}')
        self.config = cfg
        self.ego_embedding = EgoCommandEmbedding(cfg.ego_dim, cfg.ego_scale, cfg.num_commands,
                                                 cfg.mlp_hidden)
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
                  ) -> Tuple[torch.Tensor, Dict[str, float]]:
    """L1 on waypoints [m] + heading_weight * L1 on the wrapped heading error [rad]."""
    l1_traj = (out[T.TRAJ] - batch[T.TRAJ]).abs().sum(dim=-1).mean()
    l1_heading = wrap_angle(out[T.HEADING] - batch[T.HEADING]).abs().mean()
    loss = l1_traj + heading_weight * l1_heading
    return loss, {'loss_traj': float(l1_traj.detach()),
                  'loss_heading': float(l1_heading.detach()),
                  'loss_planning': float(loss.detach())}
