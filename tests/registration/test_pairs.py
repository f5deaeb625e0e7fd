"""View-pair selection (regconsist_ros/registration/pairs.py) on analytic plane scenes.

A camera slides sideways along a wall (closed-form depth, no renderer), so the overlap between frames
i and j shrinks with the gap |j - i|. With a fronto-parallel wall 4 m away, fx = 80 px and a 0.8 m
step, each frame shifts the image by exactly 16 px, so the IoU of a gap g is (160 - 16 g) / (160 + 16 g)
at every stride that divides 16.
"""
from __future__ import annotations

import numpy as np
import pytest

from regconsist_ros.registration.geometry import correspond
from regconsist_ros.registration.pairs import PairSelectionConfig, ViewPair, pair_overlaps, select_pairs
from regconsist_ros.sim.frame import Frame, Intrinsics
from regconsist_ros.sim.poses import camera_from_yaw_pitch

K = Intrinsics.from_fov(160, 120, 90.0)  # fx = 80


def _plane_depth(intr: Intrinsics, T: np.ndarray, planes) -> np.ndarray:
    """z-depth [H, W] of the nearest of ``planes`` (n, c, lo, hi): n . X = c, hit point within [lo, hi]."""
    ys, xs = np.mgrid[0 : intr.height, 0 : intr.width].astype(np.float64)
    d = np.stack([(xs - intr.cx) / intr.fx, (ys - intr.cy) / intr.fy, np.ones_like(xs)], -1) @ T[:3, :3].T
    o = T[:3, 3]
    best = np.full(xs.shape, np.inf)
    for n, c, lo, hi in planes:
        n = np.asarray(n, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (c - o @ n) / (d @ n)
        s = np.where(np.isfinite(s) & (s > 0), s, np.inf)
        X = o + np.where(np.isfinite(s), s, 0)[..., None] * d
        s = np.where(np.all((X >= np.asarray(lo) - 1e-9) & (X <= np.asarray(hi) + 1e-9), -1), s, np.inf)
        best = np.minimum(best, s)
    return np.where(np.isfinite(best), best, 0.0).astype(np.float32)


INF = 1e9
FLAT_WALL = [([1.0, 0.0, 0.0], 4.0, [-INF] * 3, [INF] * 3)]
CLUTTERED = [
    ([1.0, 0.3, 0.1], 4.0, [-INF] * 3, [INF] * 3),  # tilted wall
    ([1.0, 0.0, 0.0], 2.0, [1.9, -2.0, 0.5], [2.1, -1.4, 1.5]),  # boards in front of it
    ([1.0, 0.0, 0.0], 2.5, [2.4, -4.0, 0.2], [2.6, -3.5, 1.1]),
    ([0.0, 0.0, 1.0], 0.0, [-INF, -INF, -1.0], [3.0, INF, 1.0]),  # floor up to the wall's foot
]


def _sequence(planes, n=10, step=0.8, yaw=0.0) -> list[Frame]:
    frames = []
    for k in range(n):
        T = camera_from_yaw_pitch([0.0, -step * k, 1.0], yaw)  # moving right (world -y) while looking +x
        frames.append(Frame(rgb=np.zeros((K.height, K.width, 3), np.uint8), depth=_plane_depth(K, T, planes),
                            intrinsics=K, T_world_cam=T))
    return frames


@pytest.fixture(scope="module")
def flat():
    return _sequence(FLAT_WALL)


@pytest.fixture(scope="module")
def cluttered():
    return _sequence(CLUTTERED, n=8, step=0.5, yaw=-0.1)


def _all_pairs(n, max_gap):
    return [(i, j) for i in range(n) for j in range(i + 1, min(n, i + max_gap + 1))]


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_pair_overlaps_match_analytic_iou(flat, stride):
    pairs = _all_pairs(len(flat), 9)
    iou = pair_overlaps(flat, pairs, PairSelectionConfig(stride=stride))
    assert iou.shape == (len(pairs),)
    gaps = np.array([j - i for i, j in pairs])
    ref = np.clip((160 - 16 * gaps) / (160 + 16 * gaps), 0, None)
    np.testing.assert_allclose(iou, ref, atol=1e-6, err_msg=f"stride {stride}")


def test_pair_overlaps_agree_with_correspond(cluttered):
    pairs = _all_pairs(len(cluttered), 7)
    iou = pair_overlaps(cluttered, pairs, PairSelectionConfig(stride=1))
    ref = [correspond(cluttered[i], cluttered[j]).overlap_iou for i, j in pairs]
    np.testing.assert_allclose(iou, ref, atol=1e-9)


def test_iou_decreases_with_gap(cluttered):
    n = len(cluttered)
    pairs = _all_pairs(n, n)
    iou = dict(zip(pairs, pair_overlaps(cluttered, pairs, PairSelectionConfig(stride=1))))
    for i in range(n - 2):
        seq = [iou[(i, j)] for j in range(i + 1, n)]
        assert all(a > b for a, b in zip(seq, seq[1:])), f"IoU from frame {i} not decreasing with gap: {np.round(seq, 3)}"
    assert iou[(0, 1)] > 0.6 and iou[(0, n - 1)] < 0.5 * iou[(0, 1)], (iou[(0, 1)], iou[(0, n - 1)])


def test_stride_1_and_2_agree(cluttered):
    pairs = _all_pairs(len(cluttered), 7)
    a = pair_overlaps(cluttered, pairs, PairSelectionConfig(stride=1))
    b = pair_overlaps(cluttered, pairs, PairSelectionConfig(stride=2))
    assert np.abs(a - b).max() < 0.05, f"max |IoU(stride 1) - IoU(stride 2)| = {np.abs(a - b).max():.3f}"
    assert not np.array_equal(a, b)  # really computed on different pixels


def test_default_stride_is_unbiased_with_a_floor():
    """A floor seen at a grazing angle: if the *target* depth were subsampled too, the occlusion test
    would compare against a depth up to stride/2 px away, fail rel_tol = 3% and bias the strided IoU
    low (~0.17 at stride 4, ~0.07 at stride 2 on this scene)."""
    floor = ([0.0, 0.0, 1.0], 0.0, [-INF] * 3, [INF] * 3)
    frames = _sequence([CLUTTERED[0], floor], n=8, step=0.5, yaw=-0.1)
    pairs = _all_pairs(len(frames), 7)
    full = pair_overlaps(frames, pairs, PairSelectionConfig(stride=1))
    for stride in (2, PairSelectionConfig().stride):
        est = pair_overlaps(frames, pairs, PairSelectionConfig(stride=stride))
        dev = np.abs(est - full).max()
        assert dev < 0.05, f"stride {stride}: max |IoU - IoU(stride 1)| = {dev:.3f}, mean bias {np.mean(full - est):.3f}"


def test_batching_does_not_change_overlaps(cluttered):
    pairs = _all_pairs(len(cluttered), 7)
    a = pair_overlaps(cluttered, pairs, PairSelectionConfig(stride=2, chunk=32))
    b = pair_overlaps(cluttered, pairs, PairSelectionConfig(stride=2, chunk=3))
    c = pair_overlaps(cluttered, pairs[::-1], PairSelectionConfig(stride=2, chunk=5))[::-1]
    np.testing.assert_allclose(a, b, atol=1e-12)
    np.testing.assert_allclose(a, c, atol=1e-12)
    assert pair_overlaps(cluttered, []).shape == (0,)


def test_select_pairs_band_on_flat_wall(flat):
    # gap -> IoU: 1: .818, 2: .667, 3: .538, 4: .429, 5: .333, 6: .25, ...
    cfg = PairSelectionConfig(iou_low=0.3, iou_high=0.7, min_gap=1, max_gap=9, stride=2)
    sel = select_pairs(flat, cfg)
    assert all(isinstance(p, ViewPair) for p in sel)
    got = {(p.i, p.j) for p in sel}
    want = {(i, j) for i in range(10) for j in range(i + 2, min(10, i + 6))}
    assert got == want
    for p in sel:
        assert cfg.iou_low <= p.iou <= cfg.iou_high
        g = p.j - p.i
        assert abs(p.iou - (160 - 16 * g) / (160 + 16 * g)) < 1e-6


def test_select_pairs_respects_gap_limits(flat):
    sel = select_pairs(flat, PairSelectionConfig(iou_low=0.3, iou_high=0.7, min_gap=3, max_gap=4, stride=4))
    assert {p.j - p.i for p in sel} == {3, 4}
    assert len(sel) == (10 - 3) + (10 - 4)


def test_selected_pairs_inside_band_and_rest_outside(cluttered):
    cfg = PairSelectionConfig(iou_low=0.35, iou_high=0.6, min_gap=1, max_gap=7, stride=2)
    sel = select_pairs(cluttered, cfg)
    cand = _all_pairs(len(cluttered), cfg.max_gap)
    iou = dict(zip(cand, pair_overlaps(cluttered, cand, cfg)))
    chosen = {(p.i, p.j) for p in sel}
    assert 0 < len(chosen) < len(cand)
    for p in sel:
        assert p.i < p.j and cfg.iou_low <= p.iou <= cfg.iou_high and p.iou == pytest.approx(iou[(p.i, p.j)])
    for pair, v in iou.items():
        if pair not in chosen:
            assert not cfg.iou_low <= v <= cfg.iou_high, f"{pair} has IoU {v:.3f} inside the band but was not selected"
    assert any(v > cfg.iou_high for v in iou.values()) and any(v < cfg.iou_low for v in iou.values())


@pytest.mark.parametrize("kw, field", [
    (dict(iou_low=0.7, iou_high=0.3), "iou_low"),
    (dict(iou_low=0.5, iou_high=0.5), "iou_low"),
    (dict(iou_low=-0.1), "iou_low"),
    (dict(iou_high=1.2), "iou_high"),
    (dict(iou_low=float("nan")), "iou_low"),
    (dict(min_gap=5, max_gap=2), "min_gap"),
    (dict(min_gap=0), "min_gap"),
    (dict(min_gap=-1), "min_gap"),
    (dict(max_gap=-3), "max_gap"),
    (dict(stride=0), "stride"),
    (dict(chunk=-1), "chunk"),
])
def test_pair_selection_config_rejects_bad_values(kw, field):
    with pytest.raises(ValueError, match=field):
        PairSelectionConfig(**kw)
