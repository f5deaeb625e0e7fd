"""Nearest-neighbour retrieval readout: top-k accuracy of cosine nearest neighbours on frozen features.

Every sample queries all the others (leave-one-out); a query counts as a hit at k when at least one
of its k most cosine-similar other samples has its label. This is the retrieval readout of the
spatiotemporal-shuffling paper (clip features, top-1 / top-5 and so on).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def nn_retrieval(features: torch.Tensor, labels: torch.Tensor, k: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Leave-one-out cosine nearest-neighbour retrieval: features [N, D], labels [N] -> {"top{k}": accuracy}.

    k larger than N - 1 is clipped to N - 1 (every other sample retrieved). Ties in similarity are
    broken by ``torch.topk``.
    """
    features = torch.as_tensor(features)
    labels = torch.as_tensor(labels)
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(f"nn_retrieval expects features [N, D] and labels [N], got {tuple(features.shape)} and {tuple(labels.shape)}")
    N = features.shape[0]
    if N < 2:
        raise ValueError(f"nn_retrieval needs at least 2 samples, got {N}")
    ks = tuple(int(x) for x in ((k,) if isinstance(k, int) else k))
    if not ks or any(x < 1 for x in ks):
        raise ValueError(f"nn_retrieval: k must be integers >= 1, got {k!r}")
    z = F.normalize(features.float(), dim=1)
    sim = z @ z.t()  # [N, N] cosine similarities
    sim.fill_diagonal_(float("-inf"))  # leave one out
    kmax = min(max(ks), N - 1)
    nbr = sim.topk(kmax, dim=1).indices  # [N, kmax] most similar first
    same = labels[nbr] == labels[:, None]  # [N, kmax]
    return {f"top{x}": float(same[:, :min(x, N - 1)].any(1).float().mean()) for x in ks}
