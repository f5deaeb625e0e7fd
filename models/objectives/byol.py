"""BYOL (Grill et al., 2020), a pretext baseline around the DeepLabV3+ encoder: an online encoder +
projector + predictor regress an EMA target's projection of the other view (symmetric ``2 - 2 cos``);
the EMA momentum follows BYOL's cosine schedule over the run's total steps in ``after_step``.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch

from regconsist_ros.models.deeplab import DeepLabConfig
from regconsist_ros.models.losses import byol_loss
from regconsist_ros.models.methods import DENSE_CROP, DENSE_TRAINER, Method
from regconsist_ros.models.objectives.pair_base import TwoViewConfig, TwoViewObjective, mlp


@dataclass
class BYOLConfig(TwoViewConfig):
    """BYOL: the two views and projector of :class:`TwoViewConfig`, and the target momentum."""

    ema: float = field(default=0.99, metadata={"help": "base target momentum, raised to 1 by a cosine schedule"})

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.ema, bool) or not isinstance(self.ema, (int, float)) or not 0.0 <= self.ema <= 1.0:
            raise ValueError(f"{type(self).__name__}.ema must be in [0, 1], got {self.ema!r}")


class BYOL(TwoViewObjective):
    """Objective: online encoder + projector + predictor regress the EMA target's projection of the
    other view, ``loss = (2 - 2 cos(q1, z2')) + (2 - 2 cos(q2, z1'))`` (each term a batch mean; their
    sum as in the paper, so the loss lies in [0, 8]); logs ``byol``.

    The target encoder and projector are deep copies of the online ones with ``requires_grad=False``
    (the trainer's optimiser only takes parameters that require grad), run under ``no_grad``, and are
    updated only by :meth:`after_step`: ``target = tau * target + (1 - tau) * online`` with
    ``tau = 1 - (1 - ema) * (cos(pi * step / total) + 1) / 2``; their buffers (BatchNorm running
    statistics) are copied from the online network. They are submodules, so ``state_dict`` (and a
    resumed run) keeps them; checkpoints for readouts hold the online encoder."""

    config_class = BYOLConfig

    def __init__(self, cfg: BYOLConfig | None = None, encoder_cfg: DeepLabConfig | None = None):
        super().__init__(cfg, encoder_cfg)
        self.predictor = mlp(self.cfg.proj_dim, self.cfg.hidden, self.cfg.proj_dim)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.tau = self.cfg.ema

    def momentum(self, step: int, total_steps: int) -> float:
        """BYOL's cosine schedule: ``ema`` at step 0, 1 at ``total_steps``."""
        if total_steps < 1:
            raise ValueError(f"BYOL.momentum: total_steps must be >= 1, got {total_steps}")
        frac = min(max(step / total_steps, 0.0), 1.0)
        return 1.0 - (1.0 - self.cfg.ema) * (math.cos(math.pi * frac) + 1.0) / 2.0

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        """EMA update of the target after an optimiser step."""
        self.tau = tau = self.momentum(step, total_steps)
        for online, target in ((self.encoder, self.target_encoder), (self.projector, self.target_projector)):
            for po, pt in zip(online.parameters(), target.parameters()):
                pt.mul_(tau).add_(po.detach(), alpha=1.0 - tau)
            for bo, bt in zip(online.buffers(), target.buffers()):
                bt.copy_(bo)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        v = self.views(batch)  # [2B, 3, H, W]
        q1, q2 = self.predictor(self.projector(self.pooled(v))).chunk(2)  # [B, P] each
        with torch.no_grad():
            t1, t2 = self.target_projector(self.pooled(v, self.target_encoder)).chunk(2)  # [B, P]
        loss = byol_loss(q1, t2) + byol_loss(q2, t1)
        return loss, {"byol": loss.detach()}


METHOD = Method(
    name="byol", config=BYOLConfig, objective=BYOL, batch="frame_pairs",
    encoder=DeepLabConfig(num_classes=0), batch_settings=DENSE_CROP, trainer=DENSE_TRAINER,
    summary="BYOL (online network regresses an EMA target across two views), DeepLabV3+ encoder")
