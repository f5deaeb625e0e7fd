"""Pixel-pair sampling for dense consistency losses between registered views (RegConsist).

A sample is a pixel p in view 1 and a pixel q in view 2 whose features should agree.

* where p comes from (``sampling``):
  - ``random``: uniform over the co-visible view-1 pixels (the correspondences), so a region is
    drawn in proportion to its co-visible area;
  - ``balanced``: every eligible view-1 region gets the same number of samples (n // R, the
    remainder spread over randomly chosen regions), pixels uniform within the region's co-visible
    pixels (without replacement while the region has enough of them, with replacement otherwise).
* what q is (``matching``):
  - ``exact``: the correspondence of p in view 2;
  - ``region``: a uniformly random pixel of the view-2 region matched to p's region (any pixel of
    that region, co-visible or not).

With ``matching="region"`` only view-1 regions that have a match are eligible. Negative labels are
excluded everywhere. The supervised upper bounds BaR, BaX, RaR, RaX use ground-truth regions
(``regions.gt_regions``) with the four combinations in ``VARIANTS``.

Pixel convention: (x = column, y = row). Everything is vectorised by sorting samples into region
groups; there is no Python loop over pixels or regions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

SAMPLINGS = ("random", "balanced")
MATCHINGS = ("region", "exact")

# Supervised upper-bound variants (ground-truth regions): name -> (sampling, matching).
VARIANTS = {"BaR": ("balanced", "region"), "BaX": ("balanced", "exact"),
            "RaR": ("random", "region"), "RaX": ("random", "exact")}


@dataclass
class SamplingConfig:
    """How pixel pairs are drawn from a registered view pair."""

    sampling: Literal["random", "balanced"] = field(default="balanced", metadata={"help": "view-1 pixels uniform over co-visible pixels (random) or equal counts per region (balanced)"})
    matching: Literal["region", "exact"] = field(default="region", metadata={"help": "view-2 pixel: any pixel of the matched region (region) or the exact correspondence (exact)"})

    def __post_init__(self):
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"SamplingConfig.sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if self.matching not in MATCHINGS:
            raise ValueError(f"SamplingConfig.matching must be one of {MATCHINGS}, got {self.matching!r}")

    @classmethod
    def variant(cls, name: str) -> "SamplingConfig":
        """Config of a supervised upper-bound variant ("BaR", "BaX", "RaR", "RaX")."""
        if name not in VARIANTS:
            raise ValueError(f"unknown variant {name!r}, expected one of {sorted(VARIANTS)}")
        sampling, matching = VARIANTS[name]
        return cls(sampling=sampling, matching=matching)


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 2), np.int64), np.zeros((0, 2), np.int64)


def _pixels(uv, labels: np.ndarray, name: str) -> np.ndarray:
    """Validated integer pixel coordinates [N, 2] int64 inside ``labels``."""
    uv = np.asarray(uv)
    if uv.ndim != 2 or uv.shape[1] != 2:
        raise ValueError(f"{name} must be [N, 2] pixel coordinates (x, y), got {uv.shape}")
    if uv.dtype.kind == "f":
        px = np.rint(uv).astype(np.int64)  # [N, 2]
        if px.size and np.abs(px - uv).max() > 1e-6:
            raise ValueError(f"{name} must hold integer pixel coordinates (round sub-pixel ones with regions.nearest_pixels)")
    elif uv.dtype.kind in "iu":
        px = uv.astype(np.int64, copy=False)  # [N, 2]
    else:
        raise ValueError(f"{name} must be a numeric array, got {uv.dtype}")
    H, W = labels.shape
    if px.size and (px[:, 0].min() < 0 or px[:, 1].min() < 0 or px[:, 0].max() >= W or px[:, 1].max() >= H):
        raise ValueError(f"{name} has pixels outside the {W}x{H} image")
    return px


def _stable_argsort(keys: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative integer keys [N]; radix sort (uint16) when they fit, ~4x faster."""
    if keys.size and keys.max() < 2**16:
        keys = keys.astype(np.uint16)
    return np.argsort(keys, kind="stable")


def _groups(keys: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Group items by non-negative key, in random order within each group.

    keys [N] -> (order [N] item indices grouped by key, group keys [G] ascending, start [G], size [G]).
    """
    perm = rng.permutation(len(keys))  # [N] random order ...
    order = perm[_stable_argsort(keys[perm])]  # [N] ... kept within each key by the stable sort
    k = keys[order]
    first = np.ones(len(k), bool)
    first[1:] = k[1:] != k[:-1]
    start = np.flatnonzero(first)  # [G]
    size = np.diff(np.append(start, len(k)))  # [G]
    return order, k[start], start, size


def sample_pixel_pairs(uv1, uv2, labels1: np.ndarray, labels2: np.ndarray, matches, n: int,
                       cfg: SamplingConfig | None = None, rng: np.random.Generator | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Draw n pixel pairs (p in view 1, q in view 2) from a registered view pair.

    uv1 [N, 2]: integer view-1 pixels (x, y) of the correspondences; uv2 [N, 2]: their nearest view-2
    pixels; labels1 [H1, W1], labels2 [H2, W2]: region labels (negative = excluded); matches:
    (src [K], dst [K]) matched view-1/view-2 regions, e.g. ``regions.match_regions(...)`` (may be
    None with ``matching="exact"``). Returns p [n, 2], q [n, 2] int64 (x, y), or two (0, 2) arrays
    when nothing is eligible (no correspondences, or no matched region) - the caller skips the pair.
    Samples come out grouped by view-1 region under balanced sampling.
    """
    cfg = cfg or SamplingConfig()
    rng = rng if rng is not None else np.random.default_rng()
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    labels1, labels2 = np.asarray(labels1), np.asarray(labels2)
    if labels1.ndim != 2 or labels2.ndim != 2:
        raise ValueError(f"labels must be [H, W], got {labels1.shape} and {labels2.shape}")
    p_all = _pixels(uv1, labels1, "uv1")  # [N, 2]
    q_all = _pixels(uv2, labels2, "uv2")  # [N, 2]
    if len(p_all) != len(q_all):
        raise ValueError(f"uv1 and uv2 must have the same length, got {len(p_all)} and {len(q_all)}")
    if n == 0 or len(p_all) == 0:
        return _empty()

    r1 = labels1[p_all[:, 1], p_all[:, 0]].astype(np.int64)  # [N] view-1 region per correspondence
    n1 = max(int(labels1.max()) + 1, 0)
    eligible = r1 >= 0  # [N]
    if cfg.matching == "region":
        if matches is None:
            raise ValueError("matching='region' needs matches (src, dst)")
        src = np.asarray(matches[0], dtype=np.int64).ravel()  # [K]
        dst = np.asarray(matches[1], dtype=np.int64).ravel()  # [K]
        if src.shape != dst.shape:
            raise ValueError(f"matches src and dst must have the same length, got {src.shape} and {dst.shape}")
        if src.size and (src.min() < 0 or src.max() >= n1 or dst.min() < 0 or dst.max() > labels2.max()):
            raise ValueError("matches refer to regions that are not in labels1/labels2")
        if len(np.unique(src)) != len(src):
            raise ValueError("matches src must be unique (one view-2 region per view-1 region)")
        # view-2 pixel lists per region: flat pixel indices grouped by label
        flat2 = labels2.ravel().astype(np.int64)  # [H2*W2]
        order2 = _stable_argsort(np.maximum(flat2 + 1, 0))  # [H2*W2] excluded pixels first
        n2 = int(flat2.max()) + 1
        count2 = np.bincount(flat2[flat2 >= 0], minlength=n2)  # [n2]
        start2 = np.searchsorted(flat2[order2], np.arange(n2))  # [n2]
        ok = count2[dst] > 0  # a destination without pixels cannot be sampled
        src_to_dst = np.full(n1, -1, np.int64)  # [n1]
        src_to_dst[src[ok]] = dst[ok]
        eligible &= src_to_dst[np.maximum(r1, 0)] >= 0
    idx = np.flatnonzero(eligible)  # [Ne] eligible correspondences
    if idx.size == 0:
        return _empty()

    if cfg.sampling == "random":
        sel = idx[rng.choice(idx.size, n, replace=n > idx.size)]  # [n]
    else:
        order, _, start, size = _groups(r1[idx], rng)  # grouped eligible correspondences, [R] groups
        R = len(start)
        k = np.full(R, n // R, np.int64)  # [R] samples per region
        k[rng.choice(R, n % R, replace=False)] += 1
        grp = np.repeat(np.arange(R), k)  # [n] region group of each sample
        rank = np.arange(n) - np.repeat(np.cumsum(k) - k, k)  # [n] 0..k_g-1 within the group
        # without replacement (first k_g of the shuffled group) where the region is big enough
        offset = np.where(k[grp] <= size[grp], rank, (rng.random(n) * size[grp]).astype(np.int64))
        offset = np.minimum(offset, size[grp] - 1)  # guards the float product against rounding up
        sel = idx[order[start[grp] + offset]]  # [n]

    p = p_all[sel]  # [n, 2]
    if cfg.matching == "exact":
        q = q_all[sel]  # [n, 2]
    else:
        d = src_to_dst[r1[sel]]  # [n] matched view-2 region
        j = np.minimum((rng.random(n) * count2[d]).astype(np.int64), count2[d] - 1)  # [n]
        flat = order2[start2[d] + j]  # [n] flat view-2 pixel index
        W2 = labels2.shape[1]
        q = np.stack([flat % W2, flat // W2], -1).astype(np.int64)  # [n, 2]
    return p.astype(np.int64), q
