"""How well an over-segmentation (Felzenszwalb regions) matches labelled segments, for choosing its settings.

RegConsist pulls together pixels that lie in matched regions of two views, so its regions should be pure (one
object, one class) and as large as that allows. The scores, per view, over labelled (non-void) pixels:

- ``covering``: the segmentation covering of the ground-truth segments by the regions (Arbelaez et al., 2011):
  ``sum_g |g| / N * max_r IoU(g, r)``. 1 when every segment is one region; a segment split into k equal
  regions scores about 1/k, a region spanning two equal segments about 1/2 for each.
- ``purity``: the fraction of pixels whose region's majority label is their own (1 for any over-segmentation
  down to single pixels, so read it beside the region count).
- ``vi_under`` = H(ground truth | regions) and ``vi_over`` = H(regions | ground truth), in bits (the two terms
  of the variation of information, :func:`skimage.metrics.variation_of_information`).
- ``regions``: regions with at least one labelled pixel; ``region_px``: their median size in pixels.
"""
from __future__ import annotations

import numpy as np

VOID = 0


def _contingency(truth: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(segment ids, region ids, counts [G, R]) over the pixels both label (truth != VOID, regions >= 0)."""
    keep = (truth != VOID) & (regions >= 0)
    t, r = truth[keep].astype(np.int64), regions[keep].astype(np.int64)
    tu, ti = np.unique(t, return_inverse=True)
    ru, ri = np.unique(r, return_inverse=True)
    table = np.zeros((len(tu), len(ru)), np.int64)
    np.add.at(table, (ti, ri), 1)
    return tu, ru, table


def covering(truth: np.ndarray, regions: np.ndarray) -> float:
    """Segmentation covering of ``truth``'s segments [H, W] (VOID = 0 ignored) by ``regions`` [H, W]."""
    _, _, table = _contingency(truth, regions)
    if table.size == 0:
        return float("nan")
    g, r = table.sum(1, keepdims=True), table.sum(0, keepdims=True)  # [G, 1], [1, R]
    iou = table / (g + r - table)  # [G, R]
    return float((g[:, 0] * iou.max(1)).sum() / table.sum())


def purity(truth: np.ndarray, regions: np.ndarray) -> float:
    """Fraction of labelled pixels whose region's majority label in ``truth`` is their own."""
    _, _, table = _contingency(truth, regions)
    return float(table.max(0).sum() / table.sum()) if table.size else float("nan")


def region_scores(regions: np.ndarray, instance: np.ndarray, semantic: np.ndarray) -> dict:
    """Every score of one view: ``covering`` and the VI terms against the object instances, ``purity`` against
    the classes (what RegConsist's pairs need), ``regions`` and ``region_px`` (see the module docstring).
    regions [H, W] int (>= 0), instance and semantic [H, W] (semantic VOID marks unlabelled pixels)."""
    from skimage.metrics import variation_of_information

    regions, instance, semantic = (np.asarray(a) for a in (regions, instance, semantic))
    if not regions.shape == instance.shape == semantic.shape:
        raise ValueError(f"region_scores: shapes differ: regions {regions.shape}, instance {instance.shape}, "
                         f"semantic {semantic.shape}")
    labelled = semantic != VOID
    if not labelled.any():
        raise ValueError("region_scores: the view has no labelled pixel")
    # instance ids may repeat across classes or be 0 on labelled stuff: segments are (class, instance) pairs
    segments = np.where(labelled, semantic.astype(np.int64) * (int(instance.max()) + 1) + instance + 1, VOID)
    # skimage returns (H(image1 | image0), H(image0 | image1)): regions given truth first
    over, under = variation_of_information(segments[labelled].astype(np.int64), regions[labelled].astype(np.int64))
    _, _, table = _contingency(segments, regions)
    return {"covering": covering(segments, regions), "purity": purity(semantic, regions),
            "vi_under": float(under), "vi_over": float(over), "regions": int(table.shape[1]),
            "region_px": float(np.median(table.sum(0)))}
