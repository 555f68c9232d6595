"""Small planner configs and in-memory batches for the VLM-AD head and training tests."""
import numpy as np
import torch
from vlmad_ros import labels
from vlmad_ros import types as T
from vlmad_ros.model.config import PlannerConfig
from vlmad_ros.rig import load_rig


def tiny_planner_config(**kw) -> PlannerConfig:
    """Configure a camera planner small enough for sub-second CPU steps."""
    args = {'image_width': 64, 'image_height': 32, 'backbone_channels': (8, 16, 16, 32),
            'backbone_blocks': (0, 0, 0, 1), 'd_model': 32, 'num_heads': 4,
            'decoder_layers': 1, 'ffn_dim': 64}
    args.update(kw)
    return PlannerConfig(**args)


def make_batch(cfg: PlannerConfig, batch_size: int = 4, text_dim: int = 384, seed: int = 0,
               valid=None):
    """Random images/ego with a learnable rule: the target path depends on command and speed."""
    g = torch.Generator().manual_seed(seed)
    rig = load_rig('nuscenes').scaled(cfg.image_width, cfg.image_height)
    k = torch.tensor(np.stack([c.K for c in rig.cameras]), dtype=torch.float32)
    tbc = torch.tensor(np.stack([c.T_base_cam for c in rig.cameras]), dtype=torch.float32)
    b = batch_size
    speed = torch.rand(b, generator=g) * 10
    command = torch.randint(0, 3, (b,), generator=g)
    t = 0.5 * torch.arange(1, 7, dtype=torch.float32)
    lateral = torch.where(command == 0, 1.0, torch.where(command == 1, -1.0, 0.0))
    traj = torch.stack([speed[:, None] * t, lateral[:, None] * t ** 2 * 0.5], dim=-1)
    if valid is None:
        valid = torch.ones(b, dtype=torch.bool)
    return {
        T.IMAGES: torch.randint(0, 256, (b, cfg.num_cameras, 3, cfg.image_height,
                                         cfg.image_width), generator=g, dtype=torch.uint8),
        T.INTRINSICS: k.expand(b, -1, -1, -1).clone(),
        T.CAM_TO_BASE: tbc.expand(b, -1, -1, -1).clone(),
        T.EGO: torch.stack([speed, torch.zeros(b), torch.zeros(b)], dim=1),
        T.COMMAND: command,
        T.TRAJ: traj,
        T.HEADING: torch.atan2(traj[..., 1], traj[..., 0]),
        T.FUTURE_BOXES: torch.full((b, 6, 2, 5), float('nan')),
        T.TEXT_EMB: torch.nn.functional.normalize(torch.randn(b, 3, text_dim, generator=g),
                                                  dim=-1),
        T.TEXT_VALID: torch.as_tensor(valid, dtype=torch.bool),
        T.ACTION_LABELS: torch.stack([command.clamp(max=3), command.clamp(max=3),
                                      torch.full((b,), labels.UNKNOWN)], dim=1),
    }
