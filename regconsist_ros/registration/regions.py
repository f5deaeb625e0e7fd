"""Regions of registered views and their overlap, as in RegConsist's region matching.

Each view is partitioned into regions (Felzenszwalb superpixels, or the ground-truth class map for
the supervised upper bounds). Exact pixel correspondences carry every co-visible view-1 pixel to a
view-2 pixel, so each correspondence k falls in a region pair (r1[k], r2[k]). The overlap of two
regions is measured in co-visible correspondences:

    c_ij  = #{k : r1[k] = i, r2[k] = j}
    a_i   = sum_j c_ij   (correspondences whose view-1 pixel lies in region i)
    b_j   = sum_i c_ij   (correspondences whose view-2 pixel lies in region j)
    IoU_ij = c_ij / (a_i + b_j - c_ij)

Only the pairs that actually occur are ever touched: each (i, j) is encoded into one int64 by the
Cantor pairing function, counted with ``np.unique`` and decoded again, so the cost is
O(N log N + M) for N correspondences and M distinct pairs, never O(n1 * n2).
``region_overlap_bruteforce`` is the dense all-pairs reference used by the tests and the benchmark.

Pixel convention: (x = column, y = row), centres at integer coordinates (as in ``geometry.py``).
Negative region labels mean "excluded" (e.g. void in the ground truth).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np

# Largest s = a + b for which s * (s + 1) still fits in int64: s < sqrt(2**63) ~ 3.04e9.
_CANTOR_MAX_SUM = 3_037_000_498


@dataclass
class RegionConfig:
    """Felzenszwalb over-segmentation and region matching."""

    scale: float = field(default=100.0, metadata={"help": "Felzenszwalb scale (higher = larger regions; the paper used 250 at full resolution)"})
    sigma: float = field(default=0.8, metadata={"help": "Felzenszwalb Gaussian pre-smoothing sigma in pixels"})
    min_size: int = field(default=50, metadata={"help": "Felzenszwalb minimum region size in pixels"})
    match_iou: float = field(default=0.3, metadata={"help": "region pairs with IoU at or above this are matched"})

    def __post_init__(self):
        if not np.isfinite(self.scale) or self.scale <= 0:
            raise ValueError(f"RegionConfig.scale must be > 0, got {self.scale}")
        if not np.isfinite(self.sigma) or self.sigma < 0:
            raise ValueError(f"RegionConfig.sigma must be >= 0, got {self.sigma}")
        if int(self.min_size) != self.min_size or self.min_size < 1:
            raise ValueError(f"RegionConfig.min_size must be an integer >= 1, got {self.min_size}")
        if not 0.0 <= self.match_iou <= 1.0:
            raise ValueError(f"RegionConfig.match_iou must be in [0, 1], got {self.match_iou}")
        self.min_size = int(self.min_size)


# ---------------------------------------------------------------------------------------------
# label maps
# ---------------------------------------------------------------------------------------------

def _relabel(labels: np.ndarray) -> np.ndarray:
    """Any integer label map -> int32 labels 0..R-1 in order of the original values."""
    _, inv = np.unique(labels, return_inverse=True)
    return inv.reshape(labels.shape).astype(np.int32)


def felzenszwalb_regions(rgb: np.ndarray, cfg: RegionConfig | None = None) -> np.ndarray:
    """rgb [H, W, 3] uint8 -> Felzenszwalb region labels [H, W] int32, contiguous 0..R-1."""
    from skimage.segmentation import felzenszwalb

    cfg = cfg or RegionConfig()
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"felzenszwalb_regions needs rgb [H, W, 3] uint8, got {rgb.shape} {rgb.dtype}")
    seg = felzenszwalb(rgb, scale=cfg.scale, sigma=cfg.sigma, min_size=cfg.min_size, channel_axis=-1)  # [H, W]
    return _relabel(seg)


def gt_regions(semantic: np.ndarray) -> np.ndarray:
    """Ground-truth class map as regions: semantic [H, W] uint16 (0 = void) -> [H, W] int32.

    Label = class id - 1, so a class keeps the same label in every view (a region is the set of all
    pixels of one class, connected or not); void pixels get -1 and are excluded everywhere.
    """
    semantic = np.asarray(semantic)
    if semantic.ndim != 2 or not np.issubdtype(semantic.dtype, np.integer):
        raise ValueError(f"gt_regions needs an integer semantic map [H, W], got {semantic.shape} {semantic.dtype}")
    if semantic.size and semantic.min() < 0:
        raise ValueError("gt_regions: semantic class ids must be >= 0 (0 = void)")
    return semantic.astype(np.int32) - 1  # [H, W], void -> -1


def nearest_pixels(uv: np.ndarray, height: int, width: int) -> np.ndarray:
    """Sub-pixel coordinates uv [N, 2] (x, y) -> nearest pixel [N, 2] int64, clipped into the image."""
    uv = np.asarray(uv)
    if uv.ndim != 2 or uv.shape[1] != 2:
        raise ValueError(f"uv must be [N, 2], got {uv.shape}")
    px = np.rint(uv).astype(np.int64)  # [N, 2]
    px[:, 0] = np.clip(px[:, 0], 0, width - 1)
    px[:, 1] = np.clip(px[:, 1], 0, height - 1)
    return px


# ---------------------------------------------------------------------------------------------
# Cantor pairing
# ---------------------------------------------------------------------------------------------

def cantor(a, b) -> np.ndarray:
    """Cantor pairing (a + b)(a + b + 1) / 2 + b of int64 arrays (element-wise, broadcast).

    A bijection N x N -> N: for non-negative integers, the pairs with a + b = s occupy exactly the
    codes s(s+1)/2 .. s(s+1)/2 + s (b picks the slot), and consecutive diagonals s, s+1 are
    adjacent, so distinct pairs get distinct codes (see ``cantor_inverse``). Exact in int64 while
    a + b <= 3,037,000,498 (s(s+1) < 2**63); region labels (a few thousand per view) are far below.
    Raises ValueError for negative inputs or sums beyond that bound.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if a.size and b.size and (a.min() < 0 or b.min() < 0):
        raise ValueError("cantor is defined for non-negative integers only")
    s = a + b  # both < 2**63 and >= 0: a wrapped sum shows up as negative
    if s.size and (s.min() < 0 or s.max() > _CANTOR_MAX_SUM):
        raise ValueError(f"cantor: a + b exceeds {_CANTOR_MAX_SUM}, the code would overflow int64")
    # s(s+1) is even, so halve whichever factor is even first: no overflow beyond the final value.
    return np.where(s % 2 == 0, (s // 2) * (s + 1), s * ((s + 1) // 2)) + b


def cantor_inverse(z) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``cantor``: codes z [...] int64 -> (a, b).

    The diagonal w = floor((sqrt(8z + 1) - 1) / 2) is estimated in float64 and then corrected by
    exact integer comparisons (float rounding can be off by one for large z).
    """
    z = np.asarray(z, dtype=np.int64)
    w = np.floor((np.sqrt(8.0 * z.astype(np.float64) + 1.0) - 1.0) / 2.0).astype(np.int64)

    def tri(s):  # s(s+1)/2 without intermediate overflow
        return np.where(s % 2 == 0, (s // 2) * (s + 1), s * ((s + 1) // 2))

    w = w - (tri(w) > z)  # estimate too high
    w = w + (tri(w + 1) <= z)  # estimate too low
    b = z - tri(w)
    return w - b, b


# ---------------------------------------------------------------------------------------------
# overlap
# ---------------------------------------------------------------------------------------------

@dataclass
class RegionOverlap:
    """Region pairs (view-1 region, view-2 region) that share at least one correspondence."""

    r1: np.ndarray  # [M] int64 view-1 region
    r2: np.ndarray  # [M] int64 view-2 region
    count: np.ndarray  # [M] int64 correspondences in both regions (c_ij)
    iou: np.ndarray  # [M] float64 c_ij / (a_i + b_j - c_ij)

    def __len__(self) -> int:
        return len(self.r1)

    def sorted(self) -> "RegionOverlap":
        """Same pairs ordered by (r1, r2)."""
        o = np.lexsort((self.r2, self.r1))
        return RegionOverlap(self.r1[o], self.r2[o], self.count[o], self.iou[o])


def _check_labels(r1, r2, n1: int, n2: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated int64 label vectors with the excluded (negative) entries of either side dropped."""
    r1 = np.asarray(r1).astype(np.int64, copy=False).ravel()  # [N]
    r2 = np.asarray(r2).astype(np.int64, copy=False).ravel()  # [N]
    if r1.shape != r2.shape:
        raise ValueError(f"r1 and r2 must have the same length, got {r1.shape} and {r2.shape}")
    if n1 < 0 or n2 < 0:
        raise ValueError(f"region counts must be >= 0, got n1={n1}, n2={n2}")
    keep = (r1 >= 0) & (r2 >= 0)
    r1, r2 = r1[keep], r2[keep]
    if r1.size and (r1.max() >= n1 or r2.max() >= n2):
        raise ValueError(f"region labels out of range: max r1 {r1.max()} (n1={n1}), max r2 {r2.max()} (n2={n2})")
    return r1, r2


def _empty_overlap() -> RegionOverlap:
    z = np.zeros(0, np.int64)
    return RegionOverlap(z, z.copy(), z.copy(), np.zeros(0, np.float64))


def region_overlap(r1, r2, n1: int, n2: int) -> RegionOverlap:
    """Overlap of view-1 and view-2 regions measured in correspondences, via Cantor codes.

    r1 [N]: view-1 region of correspondence k's view-1 pixel; r2 [N]: view-2 region of its view-2
    pixel; n1, n2: number of regions in each view (labels 0..n-1). A correspondence with a negative
    label on either side is excluded entirely (it counts towards no area). Pairs come out ordered
    by Cantor code; use ``.sorted()`` for (r1, r2) order.
    """
    r1, r2 = _check_labels(r1, r2, n1, n2)
    if r1.size == 0:
        return _empty_overlap()
    codes, count = np.unique(cantor(r1, r2), return_counts=True)  # [M], [M]
    p1, p2 = cantor_inverse(codes)  # [M], [M]
    a = np.bincount(r1, minlength=n1)  # [n1] row sums
    b = np.bincount(r2, minlength=n2)  # [n2] column sums
    count = count.astype(np.int64)
    iou = count / (a[p1] + b[p2] - count)  # union >= count >= 1
    return RegionOverlap(p1, p2, count, iou.astype(np.float64))


def region_overlap_bruteforce(r1, r2, n1: int, n2: int, chunk: int = 16384) -> RegionOverlap:
    """Reference for ``region_overlap``: the dense all-pairs computation, O(N * n1 * n2) work.

    Every correspondence becomes one-hot masks over the n1 and n2 regions; the full [n1, n2]
    intersection matrix is their product (accumulated exactly over chunks of ``chunk`` rows), and the
    IoU of all n1 * n2 pairs is evaluated before the non-empty ones are kept. Same result and
    (r1, r2) ordering as ``region_overlap(...).sorted()``.
    """
    r1, r2 = _check_labels(r1, r2, n1, n2)
    if r1.size == 0 or n1 == 0 or n2 == 0:
        return _empty_overlap()
    import torch  # its matmul threads sanely; numpy's OpenBLAS can be 10x slower on small VMs

    if chunk < 1 or chunk >= 2**24:
        raise ValueError(f"chunk must be in [1, 2**24), got {chunk}")
    t1, t2 = torch.from_numpy(r1), torch.from_numpy(r2)
    eye1, eye2 = torch.eye(n1), torch.eye(n2)  # float32 one-hot rows
    C = torch.zeros((n1, n2), dtype=torch.int64)  # [n1, n2]
    for s in range(0, r1.size, chunk):  # float32 sums of <= chunk (< 2**24) ones are exact
        M1 = eye1[t1[s : s + chunk]]  # [c, n1] region masks of view 1
        M2 = eye2[t2[s : s + chunk]]  # [c, n2] region masks of view 2
        C += (M1.T @ M2).round().long()
    C = C.numpy()
    a = C.sum(1, keepdims=True)  # [n1, 1]
    b = C.sum(0, keepdims=True)  # [1, n2]
    union = a + b - C  # [n1, n2]
    iou = np.divide(C, union, out=np.zeros(C.shape, np.float64), where=union > 0)  # [n1, n2]
    i, j = np.nonzero(C)  # row-major: ordered by (r1, r2)
    return RegionOverlap(i.astype(np.int64), j.astype(np.int64), C[i, j], iou[i, j])


# ---------------------------------------------------------------------------------------------
# matching
# ---------------------------------------------------------------------------------------------

class RegionMatches(NamedTuple):
    """Matched regions: view-1 region src[k] <-> view-2 region dst[k] (src unique; dst may repeat)."""

    src: np.ndarray  # [K] int64
    dst: np.ndarray  # [K] int64
    iou: np.ndarray  # [K] float64


def match_regions(ov: RegionOverlap, min_iou: float = 0.3) -> RegionMatches:
    """Each view-1 region's best view-2 region by IoU, kept when IoU >= ``min_iou``.

    A many-to-one map (several view-1 regions may pick the same view-2 region). Ties go to the
    smaller view-2 label. Output ordered by src.
    """
    if not 0.0 <= min_iou <= 1.0:
        raise ValueError(f"min_iou must be in [0, 1], got {min_iou}")
    if len(ov) == 0:
        z = np.zeros(0, np.int64)
        return RegionMatches(z, z.copy(), np.zeros(0, np.float64))
    o = np.lexsort((ov.r2, -ov.iou, ov.r1))  # by src, then IoU descending, then dst
    r1, r2, iou = ov.r1[o], ov.r2[o], ov.iou[o]
    first = np.ones(len(r1), bool)
    first[1:] = r1[1:] != r1[:-1]  # best pair of each src group
    keep = first & (iou >= min_iou)
    return RegionMatches(r1[keep].astype(np.int64), r2[keep].astype(np.int64), iou[keep].astype(np.float64))


# ---------------------------------------------------------------------------------------------
# convenience
# ---------------------------------------------------------------------------------------------

@dataclass
class RegionPair:
    """Regions of both views of a registered pair, their overlap and matches."""

    labels1: np.ndarray  # [H1, W1] int32 (-1 = excluded)
    labels2: np.ndarray  # [H2, W2] int32
    overlap: RegionOverlap
    matches: RegionMatches


def correspondence_regions(labels1: np.ndarray, labels2: np.ndarray, uv1: np.ndarray, uv2: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Region of each correspondence in both views: r1 at uv1 (integer pixels), r2 at round(uv2)."""
    H1, W1 = labels1.shape
    H2, W2 = labels2.shape
    p1 = nearest_pixels(uv1, H1, W1)  # [N, 2]
    p2 = nearest_pixels(uv2, H2, W2)  # [N, 2]
    if len(p1) != len(p2):
        raise ValueError(f"uv1 and uv2 must have the same length, got {len(p1)} and {len(p2)}")
    return labels1[p1[:, 1], p1[:, 0]].astype(np.int64), labels2[p2[:, 1], p2[:, 0]].astype(np.int64)


def view_regions(rgb1: np.ndarray | None, rgb2: np.ndarray | None, corr_uv1: np.ndarray, corr_uv2: np.ndarray,
                 cfg: RegionConfig | None = None, semantic1: np.ndarray | None = None,
                 semantic2: np.ndarray | None = None,
                 source: Literal["felzenszwalb", "gt"] = "felzenszwalb") -> RegionPair:
    """Label maps of both views, their overlap through the correspondences, and region matches.

    corr_uv1 [N, 2]: integer pixel coordinates (x, y) in view 1; corr_uv2 [N, 2]: sub-pixel
    coordinates in view 2 (rounded to the nearest pixel and clipped into the image).
    ``source="gt"`` uses ``gt_regions`` of semantic1/semantic2 (void excluded) instead of Felzenszwalb.
    """
    cfg = cfg or RegionConfig()
    if source == "felzenszwalb":
        if rgb1 is None or rgb2 is None:
            raise ValueError("view_regions(source='felzenszwalb') needs rgb1 and rgb2")
        labels1, labels2 = felzenszwalb_regions(rgb1, cfg), felzenszwalb_regions(rgb2, cfg)
    elif source == "gt":
        if semantic1 is None or semantic2 is None:
            raise ValueError("view_regions(source='gt') needs semantic1 and semantic2")
        labels1, labels2 = gt_regions(semantic1), gt_regions(semantic2)
    else:
        raise ValueError(f"view_regions: source must be 'felzenszwalb' or 'gt', got {source!r}")
    r1, r2 = correspondence_regions(labels1, labels2, corr_uv1, corr_uv2)  # [N], [N]
    n1 = int(labels1.max()) + 1 if labels1.size else 0
    n2 = int(labels2.max()) + 1 if labels2.size else 0
    ov = region_overlap(r1, r2, max(n1, 0), max(n2, 0))
    return RegionPair(labels1, labels2, ov, match_regions(ov, cfg.match_iou))
