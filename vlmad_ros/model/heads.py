"""
VLM-AD's training-only heads and their losses (DESIGN section 1).

They read the planner's ego feature and are supervised by the teacher's answers. By default they
never ship in a checkpoint, so inference is unchanged; the action head ships only when training
is asked to keep it (`--keep-action-head`), for the planner to explain its plans.

    ego_feature (B, D) --proj--> memory (B, M, H)
    alignment head: 3 learnable queries x 3 decoder layers (8-head cross-attention) -> (B, 3, T)
        vs frozen text embeddings of (current action, future action, reasoning); DINO-style loss
    action head:    3 learnable queries, same decoder -> logits (B, 4), (B, 4), (B, 5)
        vs (control, turn, lane) labels; cross-entropy
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlmad_ros import labels
from vlmad_ros import types as T


@dataclasses.dataclass
class VLMADConfig:
    """Heads and loss weights of VLM-AD; paper values by default."""

    ego_dim: int = 128            # width of the planner's ego_feature (PlannerConfig.d_model)
    text_dim: int = 384           # text-encoder embedding size (all-MiniLM-L6-v2: 384)
    d_model: int = 128            # width inside the heads
    num_heads: int = 8            # cross-attention heads
    num_layers: int = 3           # decoder layers per head
    ffn_dim: int = 256
    memory_tokens: int = 1        # the ego feature as a memory of this many tokens
    dropout: float = 0.0
    student_temp: float = 0.1     # alignment: student softmax temperature
    teacher_temp: float = 0.04    # alignment: teacher (text embedding) softmax temperature
    align_weight: float = 1.0     # 0 disables Q1 (the alignment head is not built)
    action_weight: float = 0.1    # 0 disables Q2 (the action head is not built)

    def __post_init__(self):
        for name in ('ego_dim', 'text_dim', 'd_model', 'num_heads', 'num_layers', 'ffn_dim',
                     'memory_tokens'):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f'VLMADConfig.{name} must be > 0, got {getattr(self, name)}')
        if self.d_model % self.num_heads:
            raise ValueError(f'VLMADConfig.d_model ({self.d_model}) must be divisible by '
                             f'num_heads ({self.num_heads})')
        for name in ('student_temp', 'teacher_temp'):
            if not getattr(self, name) > 0:
                raise ValueError(f'VLMADConfig.{name} must be > 0, got {getattr(self, name)}')
        for name in ('align_weight', 'action_weight'):
            if not getattr(self, name) >= 0:
                raise ValueError(f'VLMADConfig.{name} must be >= 0, got {getattr(self, name)}')
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f'VLMADConfig.dropout must be in [0, 1), got {self.dropout}')

    @property
    def use_alignment(self) -> bool:
        return self.align_weight > 0

    @property
    def use_action(self) -> bool:
        return self.action_weight > 0

    def to_dict(self) -> Dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict) -> 'VLMADConfig':
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f'VLMADConfig: unknown field(s) {unknown} (known: {sorted(known)})')
        return cls(**d)


NUM_ACTION_CLASSES: Tuple[int, ...] = tuple(len(s) for s in labels.LABEL_SETS.values())  # 4, 4, 5


class QueryDecoder(nn.Module):
    """N learnable queries cross-attending to the ego-feature memory (3 layers, 8 heads)."""

    def __init__(self, cfg: VLMADConfig, num_queries: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_queries, cfg.d_model) * 0.02)
        layer = nn.TransformerDecoderLayer(
            cfg.d_model, cfg.num_heads, cfg.ffn_dim, cfg.dropout, batch_first=True,
            norm_first=True)
        self.layers = nn.TransformerDecoder(layer, cfg.num_layers, norm=nn.LayerNorm(cfg.d_model))

    def forward(self, memory: torch.Tensor) -> torch.Tensor:
        q = self.queries.unsqueeze(0).expand(memory.shape[0], -1, -1)  # (B, Q, H)
        return self.layers(q, memory)                                   # (B, Q, H)


class EgoMemory(nn.Module):
    """Ego feature (B, D) -> a short memory (B, M, H) for the heads to attend over."""

    def __init__(self, cfg: VLMADConfig):
        super().__init__()
        self.tokens = cfg.memory_tokens
        self.proj = nn.Linear(cfg.ego_dim, cfg.memory_tokens * cfg.d_model)
        self.pos = nn.Parameter(torch.zeros(cfg.memory_tokens, cfg.d_model))

    def forward(self, ego_feature: torch.Tensor) -> torch.Tensor:
        b = ego_feature.shape[0]
        return self.proj(ego_feature).view(b, self.tokens, -1) + self.pos  # (B, M, H)


class AlignmentHead(nn.Module):
    """Q1: three outputs in the text-embedding space (current action, future action, reasoning)."""

    def __init__(self, cfg: VLMADConfig):
        super().__init__()
        self.memory = EgoMemory(cfg)
        self.decoder = QueryDecoder(cfg, len(labels.TEXT_FIELDS))
        self.proj = nn.Linear(cfg.d_model, cfg.text_dim)

    def forward(self, ego_feature: torch.Tensor) -> torch.Tensor:
        return self.proj(self.decoder(self.memory(ego_feature)))        # (B, 3, T)


class ActionHead(nn.Module):
    """Q2: one classifier per label category (control 4, turn 4, lane 5)."""

    def __init__(self, cfg: VLMADConfig):
        super().__init__()
        self.config = cfg                 # saved beside the weights (save_checkpoint)
        self.memory = EgoMemory(cfg)
        self.decoder = QueryDecoder(cfg, len(NUM_ACTION_CLASSES))
        self.classifiers = nn.ModuleList(nn.Linear(cfg.d_model, n) for n in NUM_ACTION_CLASSES)

    def forward(self, ego_feature: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        h = self.decoder(self.memory(ego_feature))                      # (B, 3, H)
        return tuple(clf(h[:, i]) for i, clf in enumerate(self.classifiers))


def alignment_loss(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor,
                   student_temp: float = 0.1, teacher_temp: float = 0.04) -> torch.Tensor:
    """
    DINO-style soft cross-entropy, summed over the 3 texts, mean over frames with a record.

    student, teacher: (B, 3, T); valid: (B,) bool. The softmax runs over the embedding
    dimension: the sharper teacher (0.04) sets a target distribution the student (0.1) matches.
    """
    target = F.softmax(teacher.float() / teacher_temp, dim=-1).detach()
    log_q = F.log_softmax(student.float() / student_temp, dim=-1)
    per_frame = -(target * log_q).sum(-1).sum(-1)                       # (B,)
    w = valid.to(per_frame.dtype)
    # Multiplying (not indexing) keeps the heads in the graph when nothing is valid (DDP).
    return (per_frame * w).sum() / w.sum().clamp(min=1.0)


def action_loss(logits: Tuple[torch.Tensor, ...], targets: torch.Tensor,
                valid: torch.Tensor) -> torch.Tensor:
    """
    Cross-entropy per category, summed over the 3 categories.

    Each category averages over frames that have a record and a known label
    (labels.UNKNOWN is ignored), so a teacher that gives no lane label costs nothing.
    """
    total = logits[0].new_zeros(())
    for i, lg in enumerate(logits):
        y = targets[:, i].long()
        known = valid & (y != labels.UNKNOWN) & (y >= 0) & (y < lg.shape[-1])
        y = torch.where(known, y, torch.zeros_like(y))
        ce = F.cross_entropy(lg.float(), y, reduction='none')           # (B,)
        w = known.to(ce.dtype)
        total = total + (ce * w).sum() / w.sum().clamp(min=1.0)
    return total


class VLMADHeads(nn.Module):
    """Both heads and their losses: ego_feature + batch -> (weighted loss, loss_dict)."""

    def __init__(self, cfg: VLMADConfig):
        super().__init__()
        self.cfg = cfg
        self.alignment = AlignmentHead(cfg) if cfg.use_alignment else None
        self.action = ActionHead(cfg) if cfg.use_action else None

    def forward(self, ego_feature: torch.Tensor, batch: Dict[str, torch.Tensor]):
        cfg = self.cfg
        valid = batch[T.TEXT_VALID].bool()
        loss = ego_feature.new_zeros((), dtype=torch.float32)
        logs: Dict[str, torch.Tensor] = {}
        if self.alignment is not None:
            student = self.alignment(ego_feature)
            la = alignment_loss(student, batch[T.TEXT_EMB], valid, cfg.student_temp,
                                cfg.teacher_temp)
            loss = loss + cfg.align_weight * la
            logs['align_loss'] = la.detach()
        if self.action is not None:
            logits = self.action(ego_feature)
            lc = action_loss(logits, batch[T.ACTION_LABELS], valid)
            loss = loss + cfg.action_weight * lc
            logs['action_loss'] = lc.detach()
            with torch.no_grad():
                for name, lg, i in zip(('control', 'turn', 'lane'), logits, range(3)):
                    y = batch[T.ACTION_LABELS][:, i]
                    known = valid & (y != labels.UNKNOWN)
                    # NaN where no label is known: no `if known.any()`, a host sync.
                    right = ((lg.argmax(-1) == y) & known).sum().float()
                    logs[f'action_acc_{name}'] = right / known.sum().float()
        return loss, logs


NUM_LIGHT_STATES = 4   # teacher.base.LightState: UNKNOWN (no light ahead), RED, YELLOW, GREEN


class LightStateHead(nn.Module):
    """
    Training-only: the light governing the path (none, red, yellow, green) from the ego feature.

    Not part of VLM-AD: privileged supervision from the recorded ground truth (the auxiliary
    perception heads of TransFuser-style planners). Few keyframes brake for a light, so the
    trajectory loss alone pays little for seeing the lamp; this loss asks the ego feature to
    carry it. Never exported: the checkpoint holds the planner alone.
    """

    def __init__(self, dim: int, hidden: int = 128):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(),
                                 nn.Linear(hidden, NUM_LIGHT_STATES))

    def forward(self, ego_feature: torch.Tensor) -> torch.Tensor:
        return self.mlp(ego_feature)


def light_state_loss(logits: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the recorded light states (B,) int64; others than 0-3 are ignored."""
    states = states.long()
    known = (states >= 0) & (states < NUM_LIGHT_STATES)
    ce = F.cross_entropy(logits.float(), torch.where(known, states, torch.zeros_like(states)),
                         reduction='none')
    w = known.to(ce.dtype)
    return (ce * w).sum() / w.sum().clamp(min=1.0)
