"""What the DeepLabV3+ pretext baselines (rotation, SimCLR, BYOL, TCN: one module each) share.

They train on the frame-pair batches (``{"x_t", "x_k": [B, 3, H, W] float in [0, 1], "gap": [B],
"pair": [B]}``: frame t and frame t+k of one ordered stream under the same random-resized crop and
flip; items with the same ``pair`` id show the same two frames, under different crops) and expose
``encoder`` (a :class:`DeepLabV3Plus`, default ``DeepLabConfig(num_classes=0)``: no classifier),
``encoder_kind = "deeplabv3plus"`` and ``encoder_config``, so their checkpoints feed the
segmentation, label-propagation and BC readouts exactly like RegConsist's. The image-level
embedding is the global average of ``forward_features`` (``[B, D]``, D = ``decoder_channels``).

SimCLR and BYOL take ``views="augment"`` (two augmentations of x_t, the classic methods) or
``views="time"`` (x_t and x_k, each augmented, as the two views: time as an augmentation). Both views
go through the encoder as one concatenated batch (BatchNorm statistics are shared across views).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from regconsist_ros.models.augment import PhotometricAug, ViewAugment
from regconsist_ros.models.deeplab import DeepLabConfig, DeepLabV3Plus, normalize_images


# ---- config validation helpers ---------------------------------------------------------------------
def check_int(name: str, f: str, v, lo: int = 1) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name}.{f} must be an integer >= {lo}, got {v!r}")


def check_choice(name: str, f: str, v, choices: tuple) -> None:
    if v not in choices:
        raise ValueError(f"{name}.{f} must be one of {choices}, got {v!r}")


def check_range(name: str, f: str, v) -> tuple[float, float]:
    try:
        lo, hi = (float(t) for t in v)
    except (TypeError, ValueError):
        raise ValueError(f"{name}.{f} must be a pair (lo, hi), got {v!r}") from None
    return lo, hi


def check_prob(name: str, f: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
        raise ValueError(f"{name}.{f} must be a probability in [0, 1], got {v!r}")


def check_positive(name: str, f: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name}.{f} must be a finite number > 0, got {v!r}")


# ---- shared pieces ---------------------------------------------------------------------------------
class PairObjective(nn.Module):
    """Base: a DeepLabV3+ encoder and its pooled image embedding."""

    encoder_kind = "deeplabv3plus"

    def __init__(self, encoder_cfg: DeepLabConfig | None):
        super().__init__()
        self.encoder_config = ec = encoder_cfg if encoder_cfg is not None else DeepLabConfig(num_classes=0)
        self.encoder = DeepLabV3Plus(ec)

    @property
    def feature_dim(self) -> int:
        return self.encoder.feature_dim

    def pooled(self, imgs: torch.Tensor, encoder: nn.Module | None = None) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> global average of ``forward_features`` [B, D]."""
        enc = self.encoder if encoder is None else encoder
        return enc.forward_features(normalize_images(imgs)).mean((2, 3))  # [B, D, H/4, W/4] -> [B, D]


def mlp(cin: int, hidden: int, cout: int) -> nn.Sequential:
    """Linear -> BatchNorm1d -> ReLU -> Linear (the SimCLR/BYOL projector and predictor shape)."""
    return nn.Sequential(nn.Linear(cin, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, cout))


@dataclass
class TwoViewConfig:
    """The two views of SimCLR and BYOL and their projector (paper recipes scaled down for small encoders and CPU)."""

    views: Literal["augment", "time"] = field(default="augment", metadata={"help": "augment: two augmentations of x_t (classic); time: x_t and x_k, each augmented"})
    proj_dim: int = field(default=128, metadata={"help": "projector output dimension"})
    hidden: int = field(default=512, metadata={"help": "hidden width of the projector (and BYOL predictor)"})
    crop_scale: tuple[float, ...] = field(default=(0.2, 1.0), metadata={"help": "random-resized-crop area fraction range (lo hi)"})
    crop_ratio: tuple[float, ...] = field(default=(3 / 4, 4 / 3), metadata={"help": "crop aspect ratio range (lo hi), relative to the image's"})
    hflip: float = field(default=0.5, metadata={"help": "probability of a horizontal flip"})
    jitter_p: float = field(default=0.8, metadata={"help": "probability of colour jitter (brightness/contrast/saturation 0.4, hue 0.1)"})
    gray_p: float = field(default=0.2, metadata={"help": "probability of grayscale"})
    blur_p: float = field(default=0.5, metadata={"help": "probability of Gaussian blur (0 = off)"})

    def __post_init__(self):
        name = type(self).__name__
        check_choice(name, "views", self.views, ("augment", "time"))
        for f in ("proj_dim", "hidden"):
            check_int(name, f, getattr(self, f))
        self.crop_scale = lo_hi = check_range(name, "crop_scale", self.crop_scale)
        if not 0.0 < lo_hi[0] <= lo_hi[1] <= 1.0:
            raise ValueError(f"{name}.crop_scale must be (lo, hi) with 0 < lo <= hi <= 1, got {self.crop_scale}")
        self.crop_ratio = lo_hi = check_range(name, "crop_ratio", self.crop_ratio)
        if not (0.0 < lo_hi[0] <= lo_hi[1] and math.isfinite(lo_hi[1])):
            raise ValueError(f"{name}.crop_ratio must be (lo, hi) with 0 < lo <= hi, got {self.crop_ratio}")
        for f in ("hflip", "jitter_p", "gray_p", "blur_p"):
            check_prob(name, f, getattr(self, f))

    def augment(self) -> ViewAugment:
        photometric = None
        if self.jitter_p or self.gray_p or self.blur_p:
            photometric = PhotometricAug(p_jitter=self.jitter_p, p_gray=self.gray_p, p_blur=self.blur_p)
        return ViewAugment(tuple(self.crop_scale), tuple(self.crop_ratio), self.hflip, photometric)


class TwoViewObjective(PairObjective):
    """Base of SimCLR and BYOL: two augmented views of each item and a projector on the pooled feature."""

    config_class = TwoViewConfig

    def __init__(self, cfg: TwoViewConfig | None, encoder_cfg: DeepLabConfig | None):
        super().__init__(encoder_cfg)
        self.cfg = cfg = cfg or self.config_class()
        self.augment = cfg.augment()
        self.projector = mlp(self.feature_dim, cfg.hidden, cfg.proj_dim)

    def views(self, batch: dict) -> torch.Tensor:
        """The two views of each item, concatenated -> [2B, 3, H, W] (view 1 of every item, then view 2)."""
        x1 = batch["x_t"]
        x2 = batch["x_t"] if self.cfg.views == "augment" else batch["x_k"]
        return torch.cat([self.augment(x1), self.augment(x2)])
