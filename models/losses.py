"""Objectives: the Barlow Twins pixel-pair loss of RegConsist, and a focal loss for segmentation readouts.

Both compute in float32 whatever the input dtype (half-precision statistics are too coarse), and
return float32 scalars.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def barlow_twins(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 0.005,
                 eps: float = 1e-5) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Barlow Twins redundancy-reduction loss (Zbontar et al., 2021) on N matched feature pairs.

    ``z1``, ``z2``: [N, D], row n of each is one side of the same pair (in RegConsist: the dense
    features of two registered pixels). Each feature dimension is standardized along the batch,
    ``zn = (z - mean) / sqrt(var + eps)`` with the *biased* variance (divide by N), exactly like
    ``BatchNorm1d(affine=False)`` in training mode as the reference implementation does. Then
    ``C = z1n.T @ z2n / N`` [D, D] (so C_ii is a Pearson correlation, up to eps) and

        loss = sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2.

    Returns ``(loss, logs)`` with logs ``on_diag`` (first term), ``off_diag`` (second term, *without*
    ``lambd``) and ``c_diag_mean`` (mean of C_ii), as detached 0-dim tensors (``float(v)`` to log;
    no device synchronisation here).
    """
    if z1.ndim != 2 or z2.ndim != 2:
        raise ValueError(f"barlow_twins expects z1, z2 of shape [N, D], got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape != z2.shape:
        raise ValueError(f"barlow_twins: z1 and z2 must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = z1.shape[0]
    if n < 2:
        raise ValueError(f"barlow_twins needs N >= 2 pairs to standardize along the batch, got N={n}")
    if eps < 0:
        raise ValueError(f"barlow_twins: eps must be >= 0, got {eps}")

    def standardize(z: torch.Tensor) -> torch.Tensor:
        z = z.float()
        mean = z.mean(dim=0, keepdim=True)  # [1, D]
        var = z.var(dim=0, unbiased=False, keepdim=True)  # [1, D] biased (1/N)
        return (z - mean) / torch.sqrt(var + eps)  # [N, D]

    c = standardize(z1).T @ standardize(z2) / n  # [D, D]
    diag = torch.diagonal(c)  # [D]
    on_diag = (1.0 - diag).pow(2).sum()
    off_diag = c.pow(2).sum() - diag.pow(2).sum()
    loss = on_diag + lambd * off_diag
    logs = {"on_diag": on_diag.detach(), "off_diag": off_diag.detach(), "c_diag_mean": diag.detach().mean()}
    return loss, logs


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, ignore_index: int | None = 0,
               alpha: float | Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """Multi-class focal loss (Lin et al., 2017): mean over non-ignored pixels of
    ``-alpha_t * (1 - p_t)^gamma * log p_t``.

    ``logits`` [B, C, H, W] (any trailing spatial dims), ``target`` [B, H, W] integer class ids;
    pixels equal to ``ignore_index`` (default 0, "unlabelled"; None: ignore nothing) do not count.
    ``alpha``: None, a scalar, or per-class weights [C]; the mean is over valid pixels (not
    normalized by the weights, unlike ``F.cross_entropy(weight=...)``). With ``gamma=0`` and no
    alpha this equals ``F.cross_entropy(logits, target, ignore_index=ignore_index)``. If every pixel
    is ignored the loss is 0 (still attached to the graph, with zero gradient; never NaN).
    """
    if logits.ndim < 2:
        raise ValueError(f"focal_loss expects logits [B, C, ...], got {tuple(logits.shape)}")
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(f"focal_loss: target must be logits' shape without the class dim "
                         f"({tuple(logits.shape[:1] + logits.shape[2:])}), got {tuple(target.shape)}")
    if target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(f"focal_loss: target must hold integer class ids, got dtype {target.dtype}")
    if gamma < 0:
        raise ValueError(f"focal_loss: gamma must be >= 0, got {gamma}")
    num_classes = logits.shape[1]
    target = target.long()
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))  # [B, H, W] ignored pixels -> class 0
    if bool(((safe < 0) | (safe >= num_classes)).any()):
        bad = safe[(safe < 0) | (safe >= num_classes)].unique()[:10].tolist()
        raise ValueError(f"focal_loss: target class ids {bad} out of range [0, {num_classes}) "
                         f"(ignore_index={ignore_index})")

    logp = F.log_softmax(logits.float(), dim=1)  # [B, C, H, W]
    logpt = logp.gather(1, safe.unsqueeze(1)).squeeze(1)  # [B, H, W]
    loss = -logpt
    if gamma != 0:
        loss = (1.0 - logpt.exp()).clamp_min(0.0).pow(gamma) * loss
    if alpha is not None:
        a = torch.as_tensor(alpha, dtype=loss.dtype, device=loss.device)
        if a.ndim == 0:
            loss = a * loss
        elif a.shape == (num_classes,):
            loss = a[safe] * loss
        else:
            raise ValueError(f"focal_loss: alpha must be a scalar or [C={num_classes}] weights, got shape {tuple(a.shape)}")
    loss = torch.where(valid, loss, torch.zeros_like(loss))
    return loss.sum() / valid.sum().clamp_min(1)
