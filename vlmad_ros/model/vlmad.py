"""
The training wrapper: planner + training-only VLM-AD heads -> forward(batch) -> (loss, logs).

total = planning loss + align_weight * alignment + action_weight * action   (DESIGN section 1)
        [+ light_weight * light state: an optional auxiliary head outside the paper]

By default only `self.planner` is exported (`export()` -> save_checkpoint of the planner alone),
so a checkpoint carries no head and inference runs exactly the planner it would without VLM-AD.
`export(keep_action_head=True)` also stores the Q2 action head, for a planner that explains
itself (planner_node `explain`); the alignment head never ships.
"""
from __future__ import annotations

import pathlib
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from vlmad_ros import types as T
from vlmad_ros.model.checkpoint import save_checkpoint
from vlmad_ros.model.heads import light_state_loss, LightStateHead, VLMADConfig, VLMADHeads
from vlmad_ros.model.planner_model import planning_loss
from vlmad_ros.rig import CameraRig


class VLMADModel(nn.Module):
    """A planner (PlannerModel or EgoMLPPlanner) with optional VLM-AD heads on its ego feature."""

    def __init__(self, planner: nn.Module, heads: Optional[VLMADConfig] = None,
                 light_weight: float = 0.0):
        super().__init__()
        self.planner = planner
        self.heads_config = heads
        use = heads is not None and (heads.use_alignment or heads.use_action)
        if use and heads.ego_dim != planner.config.d_model:
            raise ValueError(f"VLMADConfig.ego_dim ({heads.ego_dim}) must equal the planner's "
                             f'd_model ({planner.config.d_model})')
        self.heads = VLMADHeads(heads) if use else None
        self.light_weight = float(light_weight)
        self.light_head = (LightStateHead(planner.config.d_model) if self.light_weight > 0
                           else None)

    def forward(self, batch: Dict[str, torch.Tensor]
                ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Loss and its parts; the parts are detached device tensors (no host sync)."""
        out = self.planner(batch)
        loss, logs = planning_loss(out, batch, self.planner.config.heading_loss_weight)
        logs = dict(logs)
        if self.heads is not None:
            aux, aux_logs = self.heads(out['ego_feature'], batch)
            loss = loss + aux
            logs.update({k: v.detach() for k, v in aux_logs.items()})
            logs['loss_aux'] = aux.detach()
        if self.light_head is not None:
            light = light_state_loss(self.light_head(out['ego_feature']), batch[T.LIGHT_STATE])
            loss = loss + self.light_weight * light
            logs['light_loss'] = light.detach()
        logs['loss'] = loss.detach()
        return loss, logs

    @property
    def action_head(self) -> Optional[nn.Module]:
        return self.heads.action if self.heads is not None else None

    def export(self, path, rig: Optional[CameraRig] = None,
               extra: Optional[Dict[str, Any]] = None,
               keep_action_head: bool = False) -> pathlib.Path:
        """Write the planner as a deployable checkpoint; the heads stay behind unless asked."""
        head = None
        if keep_action_head:
            head = self.action_head
            if head is None:
                raise ValueError('keep_action_head: this model has no action head '
                                 '(VLMADConfig.action_weight is 0 or the heads are off)')
        return save_checkpoint(path, self.planner, rig=rig, extra=extra, action_head=head)
