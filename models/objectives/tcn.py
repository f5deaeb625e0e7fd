"""Time-contrastive networks (Sermanet et al., 2018), single view, a pretext baseline around the
DeepLabV3+ encoder: anchor x_t, positive x_k (a nearby frame of the same stream), the other items of
the batch as negatives (never the items with the same ``pair`` id, which show the same frames);
multi-pair InfoNCE ("n-pairs", Sohn 2016) or the paper's triplet margin loss.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from regconsist_ros.models.deeplab import DeepLabConfig
from regconsist_ros.models.losses import npairs_loss, triplet_loss
from regconsist_ros.models.methods import DENSE_CROP, DENSE_TRAINER, Method
from regconsist_ros.models.objectives.pair_base import PairObjective, check_choice, check_int, check_positive


@dataclass
class TCNConfig:
    """Single-view time-contrastive networks (Sermanet et al., 2018) on frame pairs."""

    loss: Literal["npairs", "triplet"] = field(default="npairs", metadata={"help": "npairs: multi-pair InfoNCE, the other items' positives as negatives; triplet: the paper's margin loss, the other items' frames as negatives"})
    embed_dim: int = field(default=32, metadata={"help": "embedding dimension (linear head on the pooled feature, L2-normalised)"})
    temperature: float = field(default=0.1, metadata={"help": "npairs: softmax temperature on cosine similarities"})
    margin: float = field(default=0.2, metadata={"help": "triplet: margin on squared distances of unit embeddings"})

    def __post_init__(self):
        name = type(self).__name__
        check_choice(name, "loss", self.loss, ("npairs", "triplet"))
        check_int(name, "embed_dim", self.embed_dim)
        check_positive(name, "temperature", self.temperature)
        if isinstance(self.margin, bool) or not isinstance(self.margin, (int, float)) or not self.margin >= 0:
            raise ValueError(f"{name}.margin must be >= 0, got {self.margin!r}")


class TCN(PairObjective):
    """Objective: anchors x_t, positives x_k -> L2-normalised embeddings -> n-pairs or triplet loss;
    logs ``tcn`` and ``tcn_acc`` (fraction of anchors whose nearest candidate positive is their own).
    No augmentation beyond the sampler's shared crop and flip."""

    def __init__(self, cfg: TCNConfig | None = None, encoder_cfg: DeepLabConfig | None = None):
        super().__init__(encoder_cfg)
        self.cfg = cfg = cfg or TCNConfig()
        self.head = nn.Linear(self.feature_dim, cfg.embed_dim)

    def embed(self, imgs: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> unit embeddings [B, E]."""
        return F.normalize(self.head(self.pooled(imgs)).float(), dim=1)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        a, p = self.embed(torch.cat([batch["x_t"], batch["x_k"]])).chunk(2)  # [B, E] each
        if self.cfg.loss == "npairs":
            loss, acc = npairs_loss(a, p, self.cfg.temperature, batch.get("pair", 1))
        else:
            loss, acc = triplet_loss(a, p, self.cfg.margin, batch.get("pair", 1))
        return loss, {"tcn": loss.detach(), "tcn_acc": acc}


METHOD = Method(
    name="tcn", config=TCNConfig, objective=TCN, batch="frame_pairs",
    encoder=DeepLabConfig(num_classes=0), batch_settings=DENSE_CROP, trainer=DENSE_TRAINER,
    summary="time-contrastive network (n-pairs or triplet loss on frame t vs t+k), DeepLabV3+ encoder")
