"""SimCLR (Chen et al., 2020), a pretext baseline around the DeepLabV3+ encoder: two augmented views,
MLP projector, NT-Xent.

Repeated sampling: the frame-pair batches put each (t, k) pair several times in a row with
different crops (``pair`` ids); those block mates show the same frames, so they are never each
other's negatives.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from regconsist_ros.models.deeplab import DeepLabConfig
from regconsist_ros.models.losses import nt_xent
from regconsist_ros.models.methods import DENSE_CROP, DENSE_TRAINER, Method
from regconsist_ros.models.objectives.pair_base import TwoViewConfig, TwoViewObjective, check_positive


@dataclass
class SimCLRConfig(TwoViewConfig):
    """SimCLR: the two views and projector of :class:`TwoViewConfig`, and the NT-Xent temperature."""

    temperature: float = field(default=0.1, metadata={"help": "NT-Xent temperature"})

    def __post_init__(self):
        super().__post_init__()
        check_positive(type(self).__name__, "temperature", self.temperature)


class SimCLR(TwoViewObjective):
    """Objective: two views -> encoder -> pooled -> projector -> NT-Xent; logs ``nt_xent``, ``pos_sim``."""

    config_class = SimCLRConfig

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        v = self.views(batch)  # [2B, 3, H, W]
        z1, z2 = self.projector(self.pooled(v)).chunk(2)  # [B, P] each
        loss, pos_sim = nt_xent(z1, z2, self.cfg.temperature, batch.get("pair", 1))
        return loss, {"nt_xent": loss.detach(), "pos_sim": pos_sim}


METHOD = Method(
    name="simclr", config=SimCLRConfig, objective=SimCLR, batch="frame_pairs",
    encoder=DeepLabConfig(num_classes=0), batch_settings=DENSE_CROP, trainer=DENSE_TRAINER,
    summary="SimCLR (NT-Xent over two views: two augmentations, or two times), DeepLabV3+ encoder")
