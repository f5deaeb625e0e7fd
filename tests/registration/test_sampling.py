"""Pixel-pair sampling (regconsist_ros/registration/sampling.py) on a synthetic registered pair.

View 1 and view 2 are 40x60 label maps of vertical-stripe regions of unequal widths; view 2 shows
view 1 shifted 10 px to the left, so the correspondences are (x, y) -> (x - 10, y) for x >= 10.
View-1 region i is matched to view-2 region i + 100 (labels differ between views on purpose).
"""
from __future__ import annotations

import numpy as np
import pytest

from regconsist_ros.registration.regions import match_regions, region_overlap
from regconsist_ros.registration.sampling import VARIANTS, SamplingConfig, sample_pixel_pairs

H, W, SHIFT = 40, 60, 10
EDGES = [0, 10, 14, 25, 33, 60]  # stripe i spans columns EDGES[i]..EDGES[i+1]-1 (widths 10, 4, 11, 8, 27)


def _scene():
    col_region = np.searchsorted(EDGES, np.arange(W), side="right") - 1  # [W]
    L1 = np.tile(col_region, (H, 1)).astype(np.int32)  # [H, W]
    L1[:5] = -1  # excluded band (void)
    L2 = np.full((H, W), -1, np.int32)
    L2[:, : W - SHIFT] = L1[:, SHIFT:] + 100
    L2[:, : W - SHIFT][L1[:, SHIFT:] < 0] = -1
    L2[:, W - SHIFT :] = 104  # region 104 extends beyond the co-visible part
    ys, xs = np.mgrid[0:H, SHIFT:W]
    uv1 = np.stack([xs.ravel(), ys.ravel()], -1)  # [N, 2]
    uv2 = uv1 - np.array([SHIFT, 0])  # [N, 2]
    return L1, L2, uv1, uv2


def _matches(L1, L2, uv1, uv2):
    r1 = L1[uv1[:, 1], uv1[:, 0]]
    r2 = L2[uv2[:, 1], uv2[:, 0]]
    return match_regions(region_overlap(r1, r2, int(L1.max()) + 1, int(L2.max()) + 1), 0.3)


@pytest.fixture(scope="module")
def scene():
    L1, L2, uv1, uv2 = _scene()
    return L1, L2, uv1, uv2, _matches(L1, L2, uv1, uv2)


def test_scene_matches(scene):
    _, _, _, _, m = scene
    # region 0 (columns 0..9) is not co-visible; regions 1..4 match their view-2 copies
    np.testing.assert_array_equal(m.src, [1, 2, 3, 4])
    np.testing.assert_array_equal(m.dst, [101, 102, 103, 104])


def test_config_and_variants():
    with pytest.raises(ValueError, match="sampling"):
        SamplingConfig(sampling="uniform")
    with pytest.raises(ValueError, match="matching"):
        SamplingConfig(matching="nearest")
    assert VARIANTS == {"BaR": ("balanced", "region"), "BaX": ("balanced", "exact"),
                        "RaR": ("random", "region"), "RaX": ("random", "exact")}
    c = SamplingConfig.variant("RaX")
    assert (c.sampling, c.matching) == ("random", "exact")
    with pytest.raises(ValueError, match="variant"):
        SamplingConfig.variant("XaB")


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("n", [1, 7, 1000])
def test_shapes_valid_pixels_deterministic(scene, name, n):
    L1, L2, uv1, uv2, m = scene
    cfg = SamplingConfig.variant(name)
    p, q = sample_pixel_pairs(uv1, uv2, L1, L2, m, n, cfg, np.random.default_rng(5))
    assert p.shape == q.shape == (n, 2) and p.dtype == q.dtype == np.int64
    assert (p[:, 0] >= 0).all() and (p[:, 0] < W).all() and (p[:, 1] >= 0).all() and (p[:, 1] < H).all()
    assert (q[:, 0] >= 0).all() and (q[:, 0] < W).all() and (q[:, 1] >= 0).all() and (q[:, 1] < H).all()
    assert (L1[p[:, 1], p[:, 0]] >= 0).all()  # never an excluded pixel
    assert (p[:, 0] >= SHIFT).all()  # only co-visible view-1 pixels
    p2, q2 = sample_pixel_pairs(uv1, uv2, L1, L2, m, n, cfg, np.random.default_rng(5))
    np.testing.assert_array_equal(p, p2)
    np.testing.assert_array_equal(q, q2)
    p3, _ = sample_pixel_pairs(uv1, uv2, L1, L2, m, n, cfg, np.random.default_rng(6))
    assert n < 7 or not np.array_equal(p, p3)


@pytest.mark.parametrize("n", [400, 403, 3])
def test_balanced_equalises_regions(scene, n):
    L1, L2, uv1, uv2, m = scene
    p, _ = sample_pixel_pairs(uv1, uv2, L1, L2, m, n, SamplingConfig("balanced", "region"), np.random.default_rng(0))
    counts = np.bincount(L1[p[:, 1], p[:, 0]], minlength=5)
    assert counts[0] == 0  # unmatched region never sampled
    R = 4
    assert counts.sum() == n
    assert set(counts[1:]) <= {n // R, n // R + 1}
    assert (counts[1:] == n // R + 1).sum() == n % R


def test_balanced_exact_includes_unmatched_regions(scene):
    L1, L2, uv1, uv2, m = scene
    # with exact matching every co-visible region is eligible; region 0 is not co-visible (x < 10)
    # so add its correspondences artificially by shifting the other way
    uv1b = np.concatenate([uv1, np.array([[1, 20], [2, 30]])])
    uv2b = np.concatenate([uv2, np.array([[11, 20], [12, 30]])])
    p, q = sample_pixel_pairs(uv1b, uv2b, L1, L2, None, 500, SamplingConfig("balanced", "exact"), np.random.default_rng(0))
    counts = np.bincount(L1[p[:, 1], p[:, 0]], minlength=5)
    np.testing.assert_array_equal(counts, [100] * 5)  # the 2-pixel region is drawn with replacement
    small = L1[p[:, 1], p[:, 0]] == 0
    assert set(map(tuple, p[small])) == {(1, 20), (2, 30)}


def test_balanced_without_replacement_when_region_is_big(scene):
    L1, L2, uv1, uv2, m = scene
    p, _ = sample_pixel_pairs(uv1, uv2, L1, L2, m, 200, SamplingConfig("balanced", "region"), np.random.default_rng(1))
    assert len(np.unique(p, axis=0)) == 200  # 50 per region; the smallest has 4 x 35 = 140 co-visible pixels


def test_random_proportional_to_region_size(scene):
    L1, L2, uv1, uv2, m = scene
    n = 20000
    p, _ = sample_pixel_pairs(uv1, uv2, L1, L2, m, n, SamplingConfig("random", "region"), np.random.default_rng(2))
    counts = np.bincount(L1[p[:, 1], p[:, 0]], minlength=5)[1:]  # regions 1..4
    r1 = L1[uv1[:, 1], uv1[:, 0]]
    sizes = np.bincount(r1[r1 >= 0], minlength=5)[1:]  # co-visible pixels per region
    expected = n * sizes / sizes.sum()
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 16.3  # chi-square, 3 dof, p = 0.001
    # balanced is clearly not proportional on the same scene
    pb, _ = sample_pixel_pairs(uv1, uv2, L1, L2, m, n, SamplingConfig("balanced", "region"), np.random.default_rng(2))
    cb = np.bincount(L1[pb[:, 1], pb[:, 0]], minlength=5)[1:]
    assert ((cb - expected) ** 2 / expected).sum() > 1000


def test_random_exact_uniform_over_correspondences(scene):
    L1, L2, uv1, uv2, m = scene
    p, q = sample_pixel_pairs(uv1, uv2, L1, L2, m, 50, SamplingConfig("random", "exact"), np.random.default_rng(3))
    assert len(np.unique(p, axis=0)) == 50  # without replacement while there are enough pixels


@pytest.mark.parametrize("sampling", ["random", "balanced"])
def test_region_matching_q_in_matched_region(scene, sampling):
    L1, L2, uv1, uv2, m = scene
    p, q = sample_pixel_pairs(uv1, uv2, L1, L2, m, 5000, SamplingConfig(sampling, "region"), np.random.default_rng(4))
    src_to_dst = dict(zip(m.src.tolist(), m.dst.tolist()))
    want = np.array([src_to_dst[r] for r in L1[p[:, 1], p[:, 0]]])
    np.testing.assert_array_equal(L2[q[:, 1], q[:, 0]], want)
    # q reaches view-2 pixels that are no correspondence's target (region 104 beyond x = 49)
    covisible2 = set(map(tuple, uv2.tolist()))
    assert any(tuple(v) not in covisible2 for v in q.tolist())
    assert (q[:, 0] >= W - SHIFT).any()
    # and q is not simply the correspondence of p
    assert (q != p - np.array([SHIFT, 0])).any(axis=1).mean() > 0.9


@pytest.mark.parametrize("sampling", ["random", "balanced"])
def test_exact_matching_q_is_correspondence(scene, sampling):
    L1, L2, uv1, uv2, m = scene
    p, q = sample_pixel_pairs(uv1, uv2, L1, L2, m, 777, SamplingConfig(sampling, "exact"), np.random.default_rng(5))
    np.testing.assert_array_equal(q, p - np.array([SHIFT, 0]))


def test_region_pixels_uniform_in_view2(scene):
    L1, L2, uv1, uv2, m = scene
    p, q = sample_pixel_pairs(uv1, uv2, L1, L2, m, 40000, SamplingConfig("balanced", "region"), np.random.default_rng(6))
    sel = L2[q[:, 1], q[:, 0]] == 103  # region 103: columns 15..22 of view 2, rows 5..39 -> 280 pixels
    counts = np.bincount(q[sel, 1] * W + q[sel, 0], minlength=H * W)[L2.ravel() == 103]
    assert len(counts) == 280 and (counts > 0).all()
    assert counts.std() / counts.mean() < 0.3  # ~36 per pixel, Poisson cv ~ 0.17


def test_empty_inputs(scene):
    L1, L2, uv1, uv2, m = scene
    rng = np.random.default_rng(0)
    for cfg in (SamplingConfig("balanced", "region"), SamplingConfig("random", "exact")):
        p, q = sample_pixel_pairs(np.zeros((0, 2), np.int64), np.zeros((0, 2), np.int64), L1, L2, m, 100, cfg, rng)
        assert p.shape == q.shape == (0, 2) and p.dtype == q.dtype == np.int64
        p, q = sample_pixel_pairs(uv1, uv2, L1, L2, m, 0, cfg, rng)
        assert p.shape == q.shape == (0, 2)
    none = (np.zeros(0, np.int64), np.zeros(0, np.int64))  # no matched region
    p, q = sample_pixel_pairs(uv1, uv2, L1, L2, none, 100, SamplingConfig("balanced", "region"), rng)
    assert p.shape == q.shape == (0, 2)
    void = np.full_like(L1, -1)  # every pixel excluded
    p, q = sample_pixel_pairs(uv1, uv2, void, L2, None, 100, SamplingConfig("random", "exact"), rng)
    assert p.shape == q.shape == (0, 2)


def test_bad_inputs(scene):
    L1, L2, uv1, uv2, m = scene
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="outside"):
        sample_pixel_pairs(uv1 + W, uv2, L1, L2, m, 10, None, rng)
    with pytest.raises(ValueError, match="integer"):
        sample_pixel_pairs(uv1, uv2 + 0.3, L1, L2, m, 10, None, rng)
    with pytest.raises(ValueError, match="matches"):
        sample_pixel_pairs(uv1, uv2, L1, L2, None, 10, SamplingConfig("random", "region"), rng)
    with pytest.raises(ValueError, match="unique"):
        sample_pixel_pairs(uv1, uv2, L1, L2, ([1, 1], [101, 102]), 10, None, rng)
    with pytest.raises(ValueError, match="same length"):
        sample_pixel_pairs(uv1, uv2[:-1], L1, L2, m, 10, None, rng)
    # float32 integer coordinates (as produced by geometry.correspond) are accepted
    p, q = sample_pixel_pairs(uv1.astype(np.float32), uv2.astype(np.float32), L1, L2, m, 10, None, rng)
    assert p.shape == (10, 2)


def test_vectorised_speed_realistic_size():
    """~300 regions per 640x480 view, ~230k correspondences: well under a second per call."""
    import time

    rng = np.random.default_rng(0)
    L1 = rng.integers(0, 300, (24, 32)).repeat(20, 0).repeat(20, 1).astype(np.int32)  # [480, 640]
    L2 = np.roll(L1, -80, axis=1)
    ys, xs = np.mgrid[0:480, 80:560]
    uv1 = np.stack([xs.ravel(), ys.ravel()], -1)
    uv2 = uv1 - np.array([80, 0])
    m = _matches(L1, L2, uv1, uv2)
    assert len(m.src) > 200
    t = time.perf_counter()
    p, q = sample_pixel_pairs(uv1, uv2, L1, L2, m, 8192, SamplingConfig(), rng)
    assert time.perf_counter() - t < 1.0
    assert p.shape == (8192, 2)
