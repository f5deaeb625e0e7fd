"""Losses: the Barlow Twins pixel-pair loss of RegConsist, a focal loss for segmentation readouts, and
the contrastive / self-distillation losses of the pretext baselines (NT-Xent, BYOL's regression,
n-pairs and triplet losses of time-contrastive networks).

All compute in float32 whatever the input dtype (half-precision statistics are too coarse), and
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


# ---- contrastive / self-distillation losses (SimCLR, BYOL, TCN) ----------------------------------------
def block_ids(n: int, repeats, device) -> torch.Tensor:
    """Block id of each of ``n`` items -> [n]: items of one block show the same frames, so they are never
    each other's negatives. ``repeats`` is an int r (items ``r*i .. r*i + r-1`` form a block) or the
    ids themselves, an integer tensor [n] (a frame-pair batch's ``pair``)."""
    if torch.is_tensor(repeats):
        ids = repeats.to(device=device, dtype=torch.long).reshape(-1)
        if ids.numel() != n:
            raise ValueError(f"block ids must have one entry per item ({n}), got {ids.numel()}")
        if ids.unique().numel() < 2:
            raise ValueError(f"need at least 2 blocks of items for negatives, got {n} items in one block")
        return ids
    if n % repeats:
        raise ValueError(f"batch of {n} items is not a multiple of repeats={repeats}")
    if n // repeats < 2:
        raise ValueError(f"need at least 2 blocks of repeats={repeats} items for negatives, got {n} items")
    return torch.arange(n, device=device) // repeats


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1,
            repeats=1) -> tuple[torch.Tensor, torch.Tensor]:
    """NT-Xent (SimCLR) on two views z1, z2 [N, P] of N items -> (loss, mean positive cosine).

    The 2N embeddings are L2-normalised; for each one the positive is the other view of its item
    and the candidates are all 2N embeddings except itself and, with ``repeats`` > 1, except the
    views of its block mates (items ``r*i .. r*i + r-1`` show the same frames). The loss is the mean
    over the 2N anchors of ``-log softmax(cos / temperature)[positive]``."""
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(f"nt_xent expects z1, z2 of the same shape [N, P], got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = z1.shape[0]
    block = block_ids(n, repeats, z1.device).repeat(2)  # [2N]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # [2N, P]
    sim = z @ z.T  # [2N, 2N] cosine
    idx = torch.arange(2 * n, device=z.device)
    pos = (idx + n) % (2 * n)  # [2N] index of the other view
    drop = block[:, None] == block[None, :]  # self and block mates
    drop[idx, pos] = False
    logits = (sim / temperature).masked_fill(drop, float("-inf"))
    return F.cross_entropy(logits, pos), sim[idx[:n], pos[:n]].detach().mean()


def supervised_contrastive(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (SupCon, Khosla et al., 2020) of embeddings ``z`` [P, D] (L2-normalised
    here) with integer ``labels`` [P]: the mean over anchors that have a positive (another embedding with
    their label) of ``-mean_{p in P(i)} log softmax_{a != i}(z_i . z_a / temperature)_p``. 0 (attached to
    the graph) when no anchor has a positive."""
    if z.ndim != 2 or labels.shape != z.shape[:1]:
        raise ValueError(f"supervised_contrastive: expected z [P, D] and labels [P], got {tuple(z.shape)}, {tuple(labels.shape)}")
    z = F.normalize(z.float(), dim=1)
    eye = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    sim = (z @ z.T / float(temperature)).masked_fill(eye, float("-inf"))  # [P, P]; no self-pairs
    logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)  # [P, P]
    pos = (labels[:, None] == labels[None, :]) & ~eye  # [P, P]
    npos = pos.sum(1)
    keep = npos > 0
    if not bool(keep.any()):
        return z.sum() * 0.0
    return (-logp.masked_fill(~pos, 0.0).sum(1)[keep] / npos[keep]).mean()


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL regression loss: mean over the batch of ``2 - 2 cos(p, z)`` (p [N, P] predictions, z
    [N, P] targets; z gets no gradient)."""
    return (2.0 - 2.0 * F.cosine_similarity(p.float(), z.detach().float(), dim=-1)).mean()


def npairs_loss(anchors: torch.Tensor, positives: torch.Tensor, temperature: float = 0.1,
                repeats=1) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-pair InfoNCE / N-pairs (Sohn, 2016) on L2-normalised embeddings -> (loss, accuracy).

    ``anchors``, ``positives`` [N, E]; anchor i's candidates are all positives (its own and the other
    items', minus its block mates' with ``repeats`` > 1). ``loss = mean_i -log softmax_j(cos(a_i, p_j)
    / temperature)[i]``, which equals Sohn's ``log(1 + sum_{j != i} exp(s_ij - s_ii))``. Sohn (and the
    TCN code) use unnormalised dot products with an L2 penalty on the embeddings; here embeddings are
    unit vectors and a temperature sets the sharpness. Accuracy: fraction of anchors whose most
    similar candidate is their own positive."""
    if anchors.ndim != 2 or anchors.shape != positives.shape:
        raise ValueError(f"npairs_loss expects anchors, positives of the same shape [N, E], got "
                         f"{tuple(anchors.shape)} and {tuple(positives.shape)}")
    logits = _pair_logits(anchors, positives, repeats) / temperature  # [N, N]
    labels = torch.arange(anchors.shape[0], device=anchors.device)
    return F.cross_entropy(logits, labels), (logits.detach().argmax(1) == labels).float().mean()


def _pair_logits(anchors: torch.Tensor, positives: torch.Tensor, repeats) -> torch.Tensor:
    """cos(a_i, p_j) [N, N], -inf where j is a block mate of i (j != i)."""
    n = anchors.shape[0]
    block = block_ids(n, repeats, anchors.device)
    sim = F.normalize(anchors.float(), dim=1) @ F.normalize(positives.float(), dim=1).T  # [N, N]
    drop = (block[:, None] == block[None, :]) & ~torch.eye(n, dtype=torch.bool, device=sim.device)
    return sim.masked_fill(drop, float("-inf"))


def triplet_loss(anchors: torch.Tensor, positives: torch.Tensor, margin: float = 0.2,
                 repeats=1) -> tuple[torch.Tensor, torch.Tensor]:
    """TCN's triplet loss on L2-normalised embeddings -> (loss, accuracy).

    ``mean over triplets of max(0, |a_i - p_i|^2 - |a_i - n|^2 + margin)`` where the negatives n of
    anchor i are both frames (anchor and positive) of every item that is not a block mate of i.
    The paper takes negatives as temporally distant frames of the same video; a pair batch only has
    the other items' frames, which come from other times (or other streams), so they stand in for
    distant frames (a frame of another item may happen to lie close in time). Accuracy as in
    :func:`npairs_loss`."""
    if anchors.ndim != 2 or anchors.shape != positives.shape:
        raise ValueError(f"triplet_loss expects anchors, positives of the same shape [N, E], got "
                         f"{tuple(anchors.shape)} and {tuple(positives.shape)}")
    n = anchors.shape[0]
    block = block_ids(n, repeats, anchors.device)
    a = F.normalize(anchors.float(), dim=1)
    p = F.normalize(positives.float(), dim=1)
    d_ap = (a - p).pow(2).sum(1)  # [N]
    negs = torch.cat([a, p])  # [2N, E]
    d_an = (a[:, None, :] - negs[None, :, :]).pow(2).sum(-1)  # [N, 2N]
    valid = block[:, None] != block.repeat(2)[None, :]  # [N, 2N]
    loss = F.relu(d_ap[:, None] - d_an + margin)[valid].mean()
    acc = (_pair_logits(a, p, repeats).argmax(1) == torch.arange(n, device=a.device)).float().mean()
    return loss, acc
