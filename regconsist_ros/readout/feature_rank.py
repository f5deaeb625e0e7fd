"""Effective rank of frozen dense features: does an encoder's feature map use many directions or collapse?

A pretraining objective can reach a low loss with dense features that span only one or two directions
(dimensional collapse; e.g. an image-level invariance objective whose decoder features are nearly the
same at every pixel). Every dense readout (propagation, probe) then falls below the floors. The
effective rank (Roy & Vetterli 2007) measures that spread: with the singular values s_i of the centred
[N, D] matrix of patch features (N = views x grid cells) and p_i = s_i^2 / sum_j s_j^2 (each
direction's share of the variance), ``erank = exp(-sum_i p_i log p_i)``, between 1 (one direction
carries everything) and min(N, D) (every direction the same).
"""
from __future__ import annotations

import torch


def effective_rank(patches: torch.Tensor) -> dict:
    """``patches`` [B, D, h, w] (a batch of feature maps) -> {"effective_rank", "top1_share", "dims", "samples"}.

    ``top1_share``: the largest direction's share of the variance. Features with no variance at all
    (a constant map) give effective rank 0."""
    if patches.ndim != 4:
        raise ValueError(f"effective_rank expects feature maps [B, D, h, w], got {tuple(patches.shape)}")
    B, D, h, w = patches.shape
    f = patches.detach().double().permute(0, 2, 3, 1).reshape(-1, D)  # [N, D], one row per grid cell
    if not torch.isfinite(f).all():
        raise ValueError("effective_rank: the features hold NaN or inf")
    f = f - f.mean(dim=0, keepdim=True)
    var = torch.linalg.svdvals(f) ** 2  # [min(N, D)]
    total = float(var.sum())
    if total <= 1e-12 * max(1.0, float(f.abs().max()) ** 2):
        return {"effective_rank": 0.0, "top1_share": 0.0, "dims": D, "samples": int(f.shape[0])}
    p = var / var.sum()
    p = p[p > 0]
    erank = float(torch.exp(-(p * p.log()).sum()))
    return {"effective_rank": erank, "top1_share": float(p.max()), "dims": D, "samples": int(f.shape[0])}
