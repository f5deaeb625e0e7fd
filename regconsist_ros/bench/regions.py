"""`regconsist bench regions`: Region overlap: Cantor-coded pairs against the dense all-pairs reference."""
from __future__ import annotations

import time

import numpy as np

from regconsist_ros.bench import machine


def bench_regions(width=640, height=480, n=5, seed=0) -> dict:
    """Milliseconds per view pair for region overlap: Cantor-coded pairs vs the dense all-pairs reference.

    Synthetic but realistically sized: both views are Voronoi partitions with ~300 regions, view 2
    sees the scene shifted by (width/5, height/8) pixels with jittered region seeds, so ~200k
    correspondences at 640x480 fall into a few thousand distinct region pairs. Also times balanced,
    region-matched sampling of 4096 pixel pairs.
    """
    from scipy.spatial import cKDTree

    from regconsist_ros.registration.regions import match_regions, region_overlap, region_overlap_bruteforce
    from regconsist_ros.registration.sampling import SamplingConfig, sample_pixel_pairs

    rng = np.random.default_rng(seed)
    n_regions = max(2, round(300 * width * height / (640 * 480)))
    dx, dy = width // 5, height // 8
    seeds1 = rng.random((n_regions, 2)) * [width, height]  # [R, 2] (x, y)
    seeds2 = seeds1 - [dx, dy] + rng.normal(0, 3.0, seeds1.shape)  # same scene, shifted, jittered
    ys, xs = np.mgrid[0:height, 0:width]
    grid = np.stack([xs.ravel(), ys.ravel()], -1)  # [H*W, 2]
    labels1 = cKDTree(seeds1).query(grid)[1].reshape(height, width).astype(np.int32)  # [H, W]
    labels2 = cKDTree(seeds2).query(grid)[1].reshape(height, width).astype(np.int32)
    cy, cx = np.mgrid[dy:height, dx:width]
    uv1 = np.stack([cx.ravel(), cy.ravel()], -1)  # [N, 2] co-visible view-1 pixels
    uv2 = uv1 - [dx, dy]  # [N, 2]
    r1 = labels1[uv1[:, 1], uv1[:, 0]]
    r2 = labels2[uv2[:, 1], uv2[:, 0]]

    def timed(fn):
        fn()  # warm-up
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            out = fn()
            ts.append(time.perf_counter() - t)
        return out, float(np.median(ts)) * 1000

    ov, cantor_ms = timed(lambda: region_overlap(r1, r2, n_regions, n_regions))
    _, brute_ms = timed(lambda: region_overlap_bruteforce(r1, r2, n_regions, n_regions))
    m = match_regions(ov, 0.3)
    _, sample_ms = timed(lambda: sample_pixel_pairs(uv1, uv2, labels1, labels2, m, 4096, SamplingConfig(), rng))
    return {"bench": "regions", "width": width, "height": height, "repeats": n, "n_regions": int(n_regions),
            "n_corr": int(len(r1)), "n_pairs": int(len(ov)), "n_matched": int(len(m.src)),
            "cantor_ms": round(cantor_ms, 2), "bruteforce_ms": round(brute_ms, 2),
            "speedup": round(brute_ms / cantor_ms, 1), "sample_4096_ms": round(sample_ms, 2), **machine()}
