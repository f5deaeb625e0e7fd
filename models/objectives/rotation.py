"""Rotation prediction (Gidaris et al., 2018), a pretext baseline around the DeepLabV3+ encoder.

Predict which of 0/90/180/270 degrees an image was rotated by (4-way cross-entropy). Both frames of
each frame pair are used as independent images (the shared pieces are in :mod:`.pair_base`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from regconsist_ros.models.deeplab import DeepLabConfig
from regconsist_ros.models.methods import DENSE_CROP, DENSE_TRAINER, Method
from regconsist_ros.models.objectives.pair_base import PairObjective, check_choice, check_int, mlp


def center_crop_square(x: torch.Tensor) -> torch.Tensor:
    """[..., H, W] -> the centred [..., S, S] crop, S = min(H, W) (a view; unchanged when square)."""
    H, W = x.shape[-2:]
    s = min(H, W)
    top, left = (H - s) // 2, (W - s) // 2
    return x[..., top:top + s, left:left + s]


def rotate_images(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Rotate each square image x [N, C, S, S] by k[n] * 90 degrees counter-clockwise (``torch.rot90``
    over (H, W)); k [N] integers in 0..3. Rotating by k and then by (4 - k) % 4 gives the original."""
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotate_images expects square images [N, C, S, S], got {tuple(x.shape)} "
                         f"(crop with center_crop_square first)")
    k = torch.as_tensor(k, device=x.device).long()
    if k.shape != x.shape[:1]:
        raise ValueError(f"rotate_images: k must have shape [{x.shape[0]}], got {tuple(k.shape)}")
    if bool(((k < 0) | (k > 3)).any()):
        raise ValueError(f"rotate_images: labels must be in 0..3, got {k.unique().tolist()}")
    out = x.clone()
    for r in (1, 2, 3):
        m = k == r
        if bool(m.any()):
            out[m] = torch.rot90(x[m], r, dims=(-2, -1))
    return out


def all_rotations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Square images [N, C, S, S] -> all four rotations [4N, C, S, S] (rotation-major) and labels [4N]."""
    imgs = torch.cat([torch.rot90(x, r, dims=(-2, -1)) for r in range(4)])  # [4N, C, S, S]
    labels = torch.arange(4, device=x.device).repeat_interleave(x.shape[0])  # [4N]
    return imgs, labels


@dataclass
class RotationConfig:
    """Rotation prediction (Gidaris et al., 2018) on square centre crops of both frames of each pair."""

    rotations: Literal["all", "random"] = field(default="all", metadata={"help": "all: every image in all four rotations (the paper's best setting, 4x the images); random: one random rotation per image"})
    head: Literal["linear", "mlp"] = field(default="linear", metadata={"help": "4-way classifier on the pooled feature: linear, or Linear-BN-ReLU-Linear"})
    hidden: int = field(default=256, metadata={"help": "hidden width of the mlp head"})

    def __post_init__(self):
        name = type(self).__name__
        check_choice(name, "rotations", self.rotations, ("all", "random"))
        check_choice(name, "head", self.head, ("linear", "mlp"))
        check_int(name, "hidden", self.hidden)


class Rotation(PairObjective):
    """Objective: ``forward({"x_t", "x_k"}) -> (loss, logs)``; logs ``rot_ce``, ``rot_acc``.

    Non-square inputs are centre-cropped to their shorter side first, so that all four rotations
    have the same shape (the encoder sees S x S images, S = min(H, W))."""

    def __init__(self, cfg: RotationConfig | None = None, encoder_cfg: DeepLabConfig | None = None):
        super().__init__(encoder_cfg)
        self.cfg = cfg = cfg or RotationConfig()
        D = self.feature_dim
        self.head = nn.Linear(D, 4) if cfg.head == "linear" else mlp(D, cfg.hidden, 4)

    def rotated_batch(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Both frames, square-cropped and rotated -> images [M, 3, S, S] and labels [M] (M = 8B or 2B)."""
        imgs = center_crop_square(torch.cat([batch["x_t"], batch["x_k"]]))  # [2B, 3, S, S]
        if self.cfg.rotations == "all":
            return all_rotations(imgs)  # [8B, 3, S, S], [8B]
        labels = torch.randint(0, 4, (imgs.shape[0],), device=imgs.device)  # [2B]
        return rotate_images(imgs, labels), labels

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        imgs, labels = self.rotated_batch(batch)
        logits = self.head(self.pooled(imgs)).float()  # [M, 4]
        loss = F.cross_entropy(logits, labels)
        acc = (logits.detach().argmax(1) == labels).float().mean()
        return loss, {"rot_ce": loss.detach(), "rot_acc": acc}


METHOD = Method(
    name="rotation", config=RotationConfig, objective=Rotation, batch="frame_pairs",
    encoder=DeepLabConfig(num_classes=0), batch_settings=DENSE_CROP, trainer=DENSE_TRAINER,
    summary="rotation prediction (4 rotations) on both frames of frame pairs, DeepLabV3+ encoder")
