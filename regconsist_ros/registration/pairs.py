"""View pairs: overlap IoU between frames of a sequence, and selection by an IoU band.

IoU is estimated from every ``stride``-th source pixel warped into the full-resolution target view,
batched in torch, so a few hundred candidate pairs take seconds on a CPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from regconsist_ros.registration.geometry import CorrespondenceConfig, overlap_iou, valid_depth, warp


@dataclass
class PairSelectionConfig:
    """Which frame pairs count as view pairs."""

    iou_low: float = field(default=0.3, metadata={"help": "lowest overlap IoU of a view pair"})
    iou_high: float = field(default=0.7, metadata={"help": "highest overlap IoU of a view pair"})
    min_gap: int = field(default=1, metadata={"help": "smallest index gap between the two frames"})
    max_gap: int = field(default=30, metadata={"help": "largest index gap between the two frames"})
    stride: int = field(default=4, metadata={"help": "pixel stride for the IoU estimate"})
    chunk: int = field(default=32, metadata={"help": "candidate pairs whose overlap is estimated per torch call"})

    def __post_init__(self):
        if not 0.0 <= self.iou_low < self.iou_high <= 1.0:
            raise ValueError(f"PairSelectionConfig needs 0 <= iou_low < iou_high <= 1, got [{self.iou_low}, {self.iou_high}]")
        if not 1 <= self.min_gap <= self.max_gap:
            raise ValueError(f"PairSelectionConfig needs 1 <= min_gap <= max_gap, got {self.min_gap}, {self.max_gap}")
        if self.stride < 1 or self.chunk < 1:
            raise ValueError(f"PairSelectionConfig.stride and chunk must be >= 1, got {self.stride}, {self.chunk}")


@dataclass(frozen=True)
class ViewPair:
    i: int
    j: int
    iou: float


def _stack(frames: Sequence, stride: int):
    """Full-resolution depth/K (warp targets), strided depth/K (warp sources), poses."""
    full = torch.from_numpy(np.stack([f.depth for f in frames]))  # [N, H, W]
    K = np.stack([f.intrinsics.K for f in frames]).astype(np.float32)  # [N, 3, 3]
    Ks = K.copy()
    Ks[:, :2] /= stride  # strided pixel x' = x / stride exactly (centres at integers)
    T = torch.from_numpy(np.stack([f.T_world_cam for f in frames]))  # [N, 4, 4] float64
    return full, torch.from_numpy(K), full[:, ::stride, ::stride].contiguous(), torch.from_numpy(Ks), T


def pair_overlaps(frames: Sequence, pairs: list[tuple[int, int]], cfg: PairSelectionConfig | None = None,
                  corr: CorrespondenceConfig | None = None) -> np.ndarray:
    """Overlap IoU [P] of the given (i, j) index pairs of ``frames``.

    Every ``stride``-th source pixel is warped into the *full-resolution* target (so occlusion
    tests see exact target depth), and the co-visible fractions are scaled to full-resolution
    valid-pixel counts.
    """
    cfg = cfg or PairSelectionConfig()
    corr = corr or CorrespondenceConfig()
    if not pairs:
        return np.zeros(0)
    used = sorted({k for p in pairs for k in p})
    pos = {k: n for n, k in enumerate(used)}
    full, K, small, Ks, T = _stack([frames[k] for k in used], cfg.stride)
    nvalid = valid_depth(full, corr).flatten(1).sum(1)  # [N]
    out = []
    for s in range(0, len(pairs), cfg.chunk):
        a = torch.tensor([pos[i] for i, _ in pairs[s : s + cfg.chunk]])
        b = torch.tensor([pos[j] for _, j in pairs[s : s + cfg.chunk]])
        w12 = warp(small[a], full[b], Ks[a], K[b], T[a], T[b], corr)
        w21 = warp(small[b], full[a], Ks[b], K[a], T[b], T[a], corr)
        out.append(overlap_iou(w12, w21, nvalid[a], nvalid[b]).numpy())
    return np.concatenate(out)


def select_pairs(frames: Sequence, cfg: PairSelectionConfig | None = None,
                 corr: CorrespondenceConfig | None = None) -> list[ViewPair]:
    """All pairs i < j with min_gap <= j - i <= max_gap and IoU within [iou_low, iou_high]."""
    cfg = cfg or PairSelectionConfig()
    n = len(frames)
    cand = [(i, j) for i in range(n) for j in range(i + cfg.min_gap, min(n, i + cfg.max_gap + 1))]
    ious = pair_overlaps(frames, cand, cfg, corr)
    return [ViewPair(i, j, float(v)) for (i, j), v in zip(cand, ious) if cfg.iou_low <= v <= cfg.iou_high]
