"""RegConsist: region-consistency pixel pairs from registered views + Barlow Twins on dense features.

A batch holds two views of the same surfaces (x1 strongly, x2 weakly augmented) and pixel pairs
(p in view 1, q in view 2) that either correspond exactly or lie in matched regions. The feature
before the DeepLabV3+ classifier, resized to input resolution with nearest neighbour, is read at
p and q, and the pairs are pulled together with Barlow Twins (invariance + lambda * redundancy).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from regconsist_ros.models.deeplab import DeepLabConfig, DeepLabV3Plus, normalize_images
from regconsist_ros.models.losses import barlow_twins
from regconsist_ros.models.methods import Method


@dataclass
class RegConsistConfig:
    """RegConsist's loss (the paper's default). How its view pairs and pixel pairs are drawn (balanced
    sampling, region matching, Felzenszwalb or ground-truth regions, counts) are the settings of its
    batches, ``regconsist.batch.*`` (:class:`regconsist_ros.learning.datasets.ViewPairBatchConfig`)."""

    lambd: float = field(default=0.005, metadata={"help": "Barlow Twins redundancy weight"})

    def __post_init__(self):
        if not self.lambd >= 0:
            raise ValueError(f"RegConsistConfig.lambd must be >= 0, got {self.lambd}")


def gather_features(feat: torch.Tensor, pts: torch.Tensor, valid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Dense features at pixels, as after a nearest resize to the input size.

    feat [B, D, h, w] (stride-4 decoder output), pts [B, N, 2] (x, y) in input pixels of
    ``size`` = (H, W), valid [B, N] -> [M, D] for the M valid points. Nearest resize maps input
    pixel y to feature row floor(y * h / H), so we index the small map directly (same values,
    no H x W tensor).
    """
    B, D, h, w = feat.shape
    H, W = size
    b = torch.arange(B, device=feat.device).view(B, 1).expand_as(valid)[valid]  # [M]
    x = (pts[..., 0][valid] * w) // W
    y = (pts[..., 1][valid] * h) // H
    return feat.permute(0, 2, 3, 1)[b, y, x]  # [M, D]


class RegConsist(nn.Module):
    """Objective: forward(batch) -> (loss, logs); ``encoder`` is the DeepLabV3+ that readouts fine-tune."""

    encoder_kind = "deeplabv3plus"

    def __init__(self, cfg: RegConsistConfig, model: DeepLabConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder_config = model
        self.encoder = DeepLabV3Plus(model)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        x1, x2 = batch["x1"], batch["x2"]  # [B, 3, H, W] in [0, 1]
        valid = batch["valid"]  # [B, N]
        size = x1.shape[-2:]
        f1 = self.encoder.forward_features(normalize_images(x1))  # [B, D, H/4, W/4]
        f2 = self.encoder.forward_features(normalize_images(x2))
        z1 = gather_features(f1, batch["p"], valid, size)  # [M, D]
        z2 = gather_features(f2, batch["q"], valid, size)
        loss, logs = barlow_twins(z1.float(), z2.float(), self.cfg.lambd)
        logs = {**logs, "pixel_pairs": float(valid.sum())}
        return loss, logs


METHOD = Method(
    name="regconsist", config=RegConsistConfig, objective=RegConsist, batch="view_pairs", encoder=DeepLabConfig(),
    summary="region-consistency pixel pairs of registered view pairs + Barlow Twins on a DeepLabV3+ (the seed paper)")
