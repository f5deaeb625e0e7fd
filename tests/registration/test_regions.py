"""Region overlap and matching (regconsist_ros/registration/regions.py).

The Cantor-coded overlap is checked against the dense all-pairs reference on random label vectors,
against a hand-made example with IoUs worked out by hand, and end to end on a synthetic image pair
related by a known translation.
"""
from __future__ import annotations

import numpy as np
import pytest

from regconsist_ros.registration.regions import (
    RegionConfig,
    RegionMatches,
    RegionOverlap,
    cantor,
    cantor_inverse,
    correspondence_regions,
    felzenszwalb_regions,
    gt_regions,
    match_regions,
    nearest_pixels,
    region_overlap,
    region_overlap_bruteforce,
    view_regions,
)


# ---------------------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, bad", [({"scale": 0}, "scale"), ({"sigma": -1}, "sigma"), ({"min_size": 0}, "min_size"),
                                     ({"min_size": 2.5}, "min_size"), ({"match_iou": 1.5}, "match_iou")])
def test_config_validates(kw, bad):
    with pytest.raises(ValueError, match=bad):
        RegionConfig(**kw)


# ---------------------------------------------------------------------------------------------
# Cantor pairing
# ---------------------------------------------------------------------------------------------

def test_cantor_injective_and_inverse_on_grid():
    a, b = np.meshgrid(np.arange(200), np.arange(300), indexing="ij")
    z = cantor(a.ravel(), b.ravel())
    assert z.dtype == np.int64
    assert len(np.unique(z)) == z.size  # injective
    a2, b2 = cantor_inverse(z)
    np.testing.assert_array_equal(a2, a.ravel())
    np.testing.assert_array_equal(b2, b.ravel())
    # the first diagonals enumerate 0, 1, 2, ... in order: (0,0) (1,0) (0,1) (2,0) (1,1) (0,2)
    np.testing.assert_array_equal(cantor([0, 1, 0, 2, 1, 0], [0, 0, 1, 0, 1, 2]), np.arange(6))


def test_cantor_large_values_exact():
    # near the int64 limit the float estimate of the diagonal is off; the integer correction fixes it
    a = np.array([3_000_000_000, 1_500_000_000, 0, 123_456_789, 1_518_500_249], np.int64)
    b = np.array([37_000_498, 1_537_000_498, 3_037_000_498, 987_654_321, 1_518_500_249], np.int64)
    z = cantor(a, b)
    assert (z > 0).all()  # no wrap-around
    a2, b2 = cantor_inverse(z)
    np.testing.assert_array_equal(a2, a)
    np.testing.assert_array_equal(b2, b)
    s = (a + b).astype(object)  # exact Python ints
    assert [int(v) for v in z] == [int(x * (x + 1) // 2 + y) for x, y in zip(s, b.astype(object))]


def test_cantor_rejects_negative_and_overflow():
    with pytest.raises(ValueError, match="non-negative"):
        cantor([-1], [0])
    with pytest.raises(ValueError, match="overflow"):
        cantor([3_037_000_000], [1_000])


# ---------------------------------------------------------------------------------------------
# overlap
# ---------------------------------------------------------------------------------------------

def _assert_same(ov: RegionOverlap, ref: RegionOverlap):
    ov = ov.sorted()
    np.testing.assert_array_equal(ov.r1, ref.r1)
    np.testing.assert_array_equal(ov.r2, ref.r2)
    np.testing.assert_array_equal(ov.count, ref.count)
    np.testing.assert_allclose(ov.iou, ref.iou, rtol=1e-12, atol=0)


@pytest.mark.parametrize("N, n1, n2, excluded", [(1, 1, 1, 0.0), (50, 3, 7, 0.0), (2000, 40, 25, 0.1),
                                                 (20000, 300, 280, 0.2), (5000, 1000, 3, 0.05)])
def test_overlap_matches_bruteforce(N, n1, n2, excluded):
    rng = np.random.default_rng(N + n1)
    r1 = rng.integers(0, n1, N)
    # correlated second view: mostly a fixed permutation of r1 (realistic), plus noise
    r2 = np.where(rng.random(N) < 0.7, (r1 * 7 + 3) % n2, rng.integers(0, n2, N))
    r1[rng.random(N) < excluded] = -1
    r2[rng.random(N) < excluded] = -3
    ov = region_overlap(r1, r2, n1, n2)
    ref = region_overlap_bruteforce(r1, r2, n1, n2, chunk=4093)  # several chunks when N is large
    _assert_same(ov, ref)
    keep = (r1 >= 0) & (r2 >= 0)
    assert ov.count.sum() == keep.sum()
    assert ((ov.iou > 0) & (ov.iou <= 1)).all()


def test_overlap_label_maps_via_correspondences():
    """Label maps of two views related by a shift; overlap equals brute force and is symmetric."""
    rng = np.random.default_rng(0)
    L1 = rng.integers(0, 12, (6, 8)).repeat(5, 0).repeat(5, 1)  # [30, 40] blocky regions
    L2 = rng.integers(0, 9, (6, 8)).repeat(5, 0).repeat(5, 1)
    L1[:3] = -1  # excluded band
    ys, xs = np.mgrid[0:30, 0:33]
    uv1 = np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float32)  # [N, 2]
    uv2 = uv1 + np.array([7.0, 0.2], np.float32)  # sub-pixel, rounds to +7 columns
    r1, r2 = correspondence_regions(L1, L2, uv1, uv2)
    np.testing.assert_array_equal(r2, L2[ys.ravel(), xs.ravel() + 7])
    ov = region_overlap(r1, r2, 12, 9)
    _assert_same(ov, region_overlap_bruteforce(r1, r2, 12, 9))
    back = region_overlap(r2, r1, 9, 12)  # swapping the views transposes the table
    o = np.lexsort((back.r1, back.r2))
    np.testing.assert_allclose(back.iou[o], ov.sorted().iou)


def test_overlap_hand_example():
    # 10 correspondences: region pairs (view1, view2)
    r1 = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, -1])
    r2 = np.array([0, 0, 0, 1, 1, 1, 0, 2, -1, 2])
    ov = region_overlap(r1, r2, 3, 3).sorted()
    # valid: (0,0)x3 (0,1)x1 (1,1)x2 (1,0)x1 (2,2)x1; a = [4, 3, 1], b = [4, 3, 1]
    np.testing.assert_array_equal(ov.r1, [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(ov.r2, [0, 1, 0, 1, 2])
    np.testing.assert_array_equal(ov.count, [3, 1, 1, 2, 1])
    np.testing.assert_allclose(ov.iou, [3 / 5, 1 / 6, 1 / 6, 2 / 4, 1.0])
    m = match_regions(ov, 0.5)
    np.testing.assert_array_equal(m.src, [0, 1, 2])
    np.testing.assert_array_equal(m.dst, [0, 1, 2])
    np.testing.assert_allclose(m.iou, [0.6, 0.5, 1.0])


def test_overlap_empty_and_errors():
    ov = region_overlap(np.array([-1, 2]), np.array([0, -1]), 3, 1)
    assert len(ov) == 0 and ov.r1.shape == (0,) and ov.iou.dtype == np.float64
    assert len(region_overlap([], [], 0, 0)) == 0
    assert len(region_overlap_bruteforce([], [], 0, 0)) == 0
    with pytest.raises(ValueError, match="out of range"):
        region_overlap([3], [0], 3, 1)
    with pytest.raises(ValueError, match="same length"):
        region_overlap([0, 1], [0], 3, 1)


# ---------------------------------------------------------------------------------------------
# matching
# ---------------------------------------------------------------------------------------------

def test_match_regions_best_and_threshold():
    ov = RegionOverlap(r1=np.array([0, 0, 0, 1, 1, 2, 3, 3]), r2=np.array([4, 5, 6, 5, 6, 4, 1, 0]),
                       count=np.ones(8, np.int64), iou=np.array([0.2, 0.5, 0.4, 0.31, 0.1, 0.29, 0.7, 0.7]))
    m = match_regions(ov, 0.3)
    assert isinstance(m, RegionMatches)
    np.testing.assert_array_equal(m.src, [0, 1, 3])  # region 2's best (0.29) is below the threshold
    np.testing.assert_array_equal(m.dst, [5, 5, 0])  # many-to-one allowed; tie -> smaller label
    np.testing.assert_allclose(m.iou, [0.5, 0.31, 0.7])
    assert len(match_regions(ov, 0.0).src) == 4
    assert len(match_regions(ov, 0.8).src) == 0
    src, dst, iou = match_regions(ov, 0.3)  # unpacks as arrays
    assert src.dtype == dst.dtype == np.int64
    with pytest.raises(ValueError, match="min_iou"):
        match_regions(ov, 2.0)


# ---------------------------------------------------------------------------------------------
# label maps
# ---------------------------------------------------------------------------------------------

def _blocks_image(seed=0, H=96, W=128):
    """Piecewise-constant colour blocks with mild noise: a natural over-segmentation target."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (6, 8, 3))
    img = colours.repeat(16, 0).repeat(16, 1).astype(np.float64)[:H, :W]
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_felzenszwalb_contiguous_and_scale():
    img = _blocks_image()
    lab = felzenszwalb_regions(img, RegionConfig(scale=100, min_size=20))
    assert lab.shape == img.shape[:2] and lab.dtype == np.int32
    np.testing.assert_array_equal(np.unique(lab), np.arange(lab.max() + 1))  # contiguous 0..R-1
    rng = np.random.default_rng(1)
    noisy = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    fine = felzenszwalb_regions(noisy, RegionConfig(scale=5, sigma=0.5, min_size=5)).max() + 1
    coarse = felzenszwalb_regions(noisy, RegionConfig(scale=500, sigma=0.5, min_size=5)).max() + 1
    assert fine > coarse
    with pytest.raises(ValueError, match="uint8"):
        felzenszwalb_regions(img.astype(np.float32))


def test_gt_regions_void():
    sem = np.array([[0, 1, 2], [5, 0, 1]], np.uint16)
    lab = gt_regions(sem)
    assert lab.dtype == np.int32
    np.testing.assert_array_equal(lab, [[-1, 0, 1], [4, -1, 0]])
    np.testing.assert_array_equal(gt_regions(np.full((2, 2), 65535, np.uint16)), np.full((2, 2), 65534))


def test_nearest_pixels_clip():
    px = nearest_pixels(np.array([[-0.4, 0.6], [9.7, 3.49], [3.5, -2.0]]), height=4, width=10)
    np.testing.assert_array_equal(px, [[0, 1], [9, 3], [4, 0]])  # rint: 3.5 -> 4
    assert px.dtype == np.int64


# ---------------------------------------------------------------------------------------------
# convenience
# ---------------------------------------------------------------------------------------------

def test_view_regions_shifted_pair():
    """View 2 is view 1 shifted by 16 px: each block region matches its shifted copy with IoU ~ 1."""
    img = _blocks_image(3)
    shift = 16
    img2 = np.zeros_like(img)
    img2[:, : 128 - shift] = img[:, shift:]  # view-2 pixel x shows view-1 pixel x + shift
    ys, xs = np.mgrid[0:96, shift:128]
    uv1 = np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float32)
    uv2 = uv1 - np.array([shift, 0], np.float32)
    cfg = RegionConfig(scale=100, min_size=20, match_iou=0.5)
    rp = view_regions(img, img2, uv1, uv2, cfg)
    assert rp.labels1.shape == (96, 128) and rp.labels2.shape == (96, 128)
    assert len(rp.matches.src) >= 0.8 * len(np.unique(rp.labels1[:, shift:]))
    assert np.median(rp.matches.iou) > 0.9

    sem1 = (rp.labels1 % 5).astype(np.uint16)  # class 0 = void
    sem2 = np.zeros_like(sem1)
    sem2[:, : 128 - shift] = sem1[:, shift:]
    gt = view_regions(None, None, uv1, uv2, semantic1=sem1, semantic2=sem2, source="gt")
    assert gt.labels1.min() == -1
    np.testing.assert_array_equal(gt.matches.src, gt.matches.dst)  # same class in both views
    np.testing.assert_allclose(gt.matches.iou, 1.0)
    with pytest.raises(ValueError, match="semantic"):
        view_regions(img, img2, uv1, uv2, source="gt")
    with pytest.raises(ValueError, match="source"):
        view_regions(img, img2, uv1, uv2, source="slic")
