"""
The training wrapper: planner + training-only VLM-AD heads -> forward(batch) -> (loss, logs).

total = planning loss + align_weight * alignment + action_weight * action   (DESIGN section 1)

Only `self.planner` is ever exported (`export()` -> save_checkpoint of the planner alone), so
a checkpoint never carries the heads and inference runs exactly the planner it would without
VLM-AD.
"""
from __future__ import annotations

import pathlib
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from vlmad_ros.model.checkpoint import save_checkpoint
from vlmad_ros.model.heads import VLMADConfig, VLMADHeads
from vlmad_ros.model.planner_model import planning_loss
from vlmad_ros.rig import CameraRig


class VLMADModel(nn.Module):
    """A planner (PlannerModel or EgoMLPPlanner) with optional VLM-AD heads on its ego feature."""

    def __init__(self, planner: nn.Module, heads: Optional[VLMADConfig] = None):
        super().__init__()
        self.planner = planner
        self.heads_config = heads
        use = heads is not None and (heads.use_alignment or heads.use_action)
        if use and heads.ego_dim != planner.config.d_model:
            raise ValueError(f"VLMADConfig.ego_dim ({heads.ego_dim}) must equal the planner's "
                             f'd_model ({planner.config.d_model})')
        self.heads = VLMADHeads(heads) if use else None

    def forward(self, batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, Dict[str, float]]:
        out = self.planner(batch)
        loss, logs = planning_loss(out, batch, self.planner.config.heading_loss_weight)
        logs = dict(logs)
        if self.heads is not None:
            aux, aux_logs = self.heads(out['ego_feature'], batch)
            loss = loss + aux
            logs.update({k: float(v) for k, v in aux_logs.items()})
            logs['loss_aux'] = float(aux.detach())
        logs['loss'] = float(loss.detach())
        return loss, logs

    def export(self, path, rig: Optional[CameraRig] = None,
               extra: Optional[Dict[str, Any]] = None) -> pathlib.Path:
        """Write the planner alone as a deployable checkpoint (the heads stay behind)."""
        return save_checkpoint(path, self.planner, rig=rig, extra=extra)
