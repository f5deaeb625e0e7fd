"""Feature-free encoders: the floors every readout shows beside the learned encoders.

A readout means something only when a representation that learns nothing scores clearly below the
learned ones. Besides ``random`` (the same network, randomly initialised) two floors learn nothing at
all and have no parameters:

- ``pixels``: the raw pixels of each patch of the encoder's grid (``3 * p * p`` numbers per cell, in
  the ImageNet-normalised units every encoder sees);
- ``colour``: per patch, its mean colour (3 numbers) and a small joint colour histogram
  (``bins ** 3`` cells, square-rooted so that cosine similarity of two histograms is their
  Bhattacharyya coefficient).

Both follow the dense-encoder contract of :func:`regconsist_ros.models.encoder.features`:
``forward_features(x normalised [B, 3, H, W]) -> [B, D, H / p, W / p]`` and
``forward_global(x) -> [B, D']`` (a global vector for image-level readouts such as behaviour cloning:
the image average-pooled to a ``global_grid`` of cells for ``pixels``, the whole image's mean colour
and histogram for ``colour``). ``cfg.img_size`` is the size frames are resized to by the readouts
(None: any size divisible by the patch).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from regconsist_ros.models.deeplab import IMAGENET_MEAN, IMAGENET_STD

FLOORS = ("pixels", "colour")


@dataclass
class FloorConfig:
    """Settings of a feature-free encoder."""

    kind: str = field(default="pixels", metadata={"help": "pixels (raw patch pixels) or colour (mean colour + colour histogram)"})
    patch: int = field(default=16, metadata={"help": "cell size in pixels: the grid of the encoder it stands beside (ViT patch, 4 for DeepLabV3+)"})
    img_size: tuple[int, int] | None = field(default=None, metadata={"help": "(H, W) readouts resize frames to (None: keep their size)"})
    bins: int = field(default=4, metadata={"help": "colour: histogram bins per channel (bins**3 joint cells)"})
    global_grid: tuple[int, int] = field(default=(6, 8), metadata={"help": "pixels: (rows, cols) of the average-pooled image returned by forward_global"})

    def __post_init__(self):
        if self.kind not in FLOORS:
            raise ValueError(f"FloorConfig.kind must be one of {FLOORS}, got {self.kind!r}")
        if isinstance(self.patch, bool) or not isinstance(self.patch, int) or self.patch < 1:
            raise ValueError(f"FloorConfig.patch must be an integer >= 1, got {self.patch!r}")
        if isinstance(self.bins, bool) or not isinstance(self.bins, int) or not 1 <= self.bins <= 16:
            raise ValueError(f"FloorConfig.bins must be an integer in 1..16, got {self.bins!r}")
        if self.img_size is not None:
            self.img_size = tuple(int(v) for v in self.img_size)
            if len(self.img_size) != 2 or min(self.img_size) < self.patch or any(v % self.patch for v in self.img_size):
                raise ValueError(f"FloorConfig.img_size must be (H, W) multiples of patch {self.patch}, got {self.img_size}")
        self.global_grid = tuple(int(v) for v in self.global_grid)
        if len(self.global_grid) != 2 or min(self.global_grid) < 1:
            raise ValueError(f"FloorConfig.global_grid must be two integers >= 1, got {self.global_grid}")

    @property
    def dim(self) -> int:
        """Channels of ``forward_features``."""
        return 3 * self.patch * self.patch if self.kind == "pixels" else 3 + self.bins ** 3


def _check(x: torch.Tensor, patch: int) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"floor encoder expects normalised images [B, 3, H, W], got {tuple(x.shape)}")
    if x.shape[-2] % patch or x.shape[-1] % patch:
        raise ValueError(f"floor encoder: image size {tuple(x.shape[-2:])} is not divisible by patch {patch}")


def _unit_rgb(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised [B, 3, H, W] -> RGB in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * std + mean).clamp(0, 1)


def colour_histogram(rgb: torch.Tensor, bins: int, cell: int | None) -> torch.Tensor:
    """Joint colour histogram of RGB in [0, 1] [B, 3, H, W] per ``cell`` x ``cell`` patch (None: whole
    image) -> fractions [B, bins**3, H / cell, W / cell] (each cell sums to 1)."""
    q = (rgb * bins).long().clamp_(max=bins - 1)  # [B, 3, H, W] bin per channel
    code = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]  # [B, H, W] joint bin
    onehot = F.one_hot(code, bins ** 3).permute(0, 3, 1, 2).float()  # [B, bins^3, H, W]
    if cell is None:
        return onehot.mean((2, 3), keepdim=True)  # [B, bins^3, 1, 1]
    return F.avg_pool2d(onehot, cell)  # [B, bins^3, h, w]


class FloorEncoder(nn.Module):
    """A parameter-free encoder (``pixels`` or ``colour``, see the module doc)."""

    kind = "floor"

    def __init__(self, cfg: FloorConfig | None = None):
        super().__init__()
        self.cfg = cfg or FloorConfig()
        # a buffer (no parameters): encode() finds the device from it
        self.register_buffer("_device_probe", torch.zeros(1), persistent=False)

    @property
    def feature_dim(self) -> int:
        return self.cfg.dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images [B, 3, H, W] -> cell features [B, D, H / p, W / p]."""
        p = self.cfg.patch
        _check(x, p)
        B, _, H, W = x.shape
        if self.cfg.kind == "pixels":
            cells = F.unfold(x, kernel_size=p, stride=p)  # [B, 3 p p, h w]
            return cells.reshape(B, 3 * p * p, H // p, W // p)
        mean = F.avg_pool2d(x, p)  # [B, 3, h, w] normalised mean colour
        hist = colour_histogram(_unit_rgb(x), self.cfg.bins, p).sqrt()  # [B, bins^3, h, w]
        return torch.cat([mean, hist], 1)

    def forward_global(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images [B, 3, H, W] -> one vector per image [B, D']."""
        _check(x, 1)
        if self.cfg.kind == "pixels":
            return F.adaptive_avg_pool2d(x, self.cfg.global_grid).flatten(1)  # [B, 3 * rows * cols]
        mean = x.mean((2, 3))  # [B, 3]
        hist = colour_histogram(_unit_rgb(x), self.cfg.bins, None).flatten(1).sqrt()  # [B, bins^3]
        return torch.cat([mean, hist], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


def floor_encoder(name: str, patch: int = 16, img_size=None, **kw) -> FloorEncoder:
    """``floor_encoder("pixels" | "colour", patch, img_size)``; ValueError naming the known floors."""
    if name not in FLOORS:
        raise ValueError(f"unknown floor encoder {name!r}; known: {list(FLOORS)}")
    return FloorEncoder(FloorConfig(kind=name, patch=int(patch), img_size=img_size, **kw)).eval()
