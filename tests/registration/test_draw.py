"""The correspondence picture: two views side by side, matches drawn as coloured lines with dots at the ends."""
import numpy as np
import pytest

from regconsist_ros.registration.draw import default_radius, draw_correspondences, palette, pick


def _views():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 60, (40, 64, 3), dtype=np.uint8)  # dark: no pixel equals a bright palette colour
    b = rng.integers(0, 60, (30, 48, 3), dtype=np.uint8)
    return a, b


def test_pick_is_evenly_spaced_distinct_and_keeps_both_ends():
    assert pick(10, 20).tolist() == list(range(10))
    assert pick(101, 5).tolist() == [0, 25, 50, 75, 100]
    for n, k in ((1000, 7), (50, 49), (3, 2), (7, 1)):
        idx = pick(n, k)
        assert len(idx) == k and len(set(idx.tolist())) == k and idx[0] == 0 and (k == 1 or idx[-1] == n - 1)
    assert len(pick(0, 5)) == 0
    with pytest.raises(ValueError):
        pick(5, -1)


def test_palette_colours_are_distinct_and_bright():
    p = palette(12)
    assert p.shape == (12, 3) and p.dtype == np.uint8
    assert len({tuple(c) for c in p}) == 12 and (p.max(1) == 255).all()
    assert palette(0).shape == (0, 3)


def _near_segments(shape, segs, tol):
    """[H, W] bool: pixel centres within ``tol`` of a segment (x1, y1, x2, y2)."""
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    near = np.zeros(shape, bool)
    for x1, y1, x2, y2 in segs:
        d = np.array([x2 - x1, y2 - y1])
        t = np.clip(((xs - x1) * d[0] + (ys - y1) * d[1]) / max(d @ d, 1e-12), 0, 1)
        near |= np.hypot(xs - (x1 + t * d[0]), ys - (y1 + t * d[1])) <= tol
    return near


def test_endpoints_and_line_middles_carry_their_colour_and_the_rest_is_the_images():
    a, b = _views()
    uv1 = np.array([[5, 5], [50, 10], [20, 35]], np.float32)
    uv2 = np.array([[40, 3], [10, 25], [30.4, 14.6]], np.float32)  # sub-pixel: dots at the nearest pixel
    img, drawn = draw_correspondences(a, b, uv1, uv2, lines=10, radius=1)
    assert img.shape == (40, 64 + 48, 3) and img.dtype == np.uint8 and drawn.tolist() == [0, 1, 2]
    cols = palette(3)
    for j in range(3):
        (x1, y1), (x2, y2) = np.rint(uv1[j]).astype(int), np.rint(uv2[j]).astype(int)
        assert (img[y1 - 1:y1 + 2, x1 - 1:x1 + 2] == cols[j]).all(), j  # the whole 3x3 dot at both ends
        assert (img[y2 - 1:y2 + 2, x2 + 63:x2 + 66] == cols[j]).all(), j
    # line 0 runs (5, 5) -> (104, 3): at x = 54 it is at y = 4.01
    assert (img[4, 54] == cols[0]).all()
    # every changed pixel lies on a line or a dot; pixels of neither view (rows 30.. on the right) stay black
    segs = np.concatenate([uv1, uv2 + [64, 0]], 1)
    full = np.zeros((40, 112), bool)
    full[:, :64] = (img[:, :64] != a).any(-1)
    full[:30, 64:] = (img[:30, 64:] != b).any(-1)
    full[30:, 64:] = (img[30:, 64:] != 0).any(-1)
    assert full.sum() > 3 * 2 * 9
    assert not (full & ~_near_segments(full.shape, segs, 2.0)).any()  # 2 px: dots sit around the rounded end


def test_undrawn_pixels_are_unchanged():
    a, b = _views()
    img, _ = draw_correspondences(a, b, np.array([[2, 2]], np.float32), np.array([[2, 2]], np.float32), lines=1, radius=1)
    left, right = (img[:, :64] != a).any(-1), (img[:30, 64:] != b).any(-1)
    ys, xs = np.nonzero(left)
    assert ys.min() >= 1 and ys.max() <= 3 and xs.min() >= 1  # the dot (1..3, 1..3), then the line along row 2
    assert right[:, 4:].sum() == 0 and right[4:].sum() == 0 and right[1:4, 1:4].all()


def test_many_matches_are_subsampled_evenly_and_non_finite_ones_skipped():
    a, b = _views()
    n = 500
    rng = np.random.default_rng(1)
    uv1 = np.stack([rng.uniform(0, 63, n), rng.uniform(0, 39, n)], 1).astype(np.float32)
    uv2 = np.stack([rng.uniform(0, 47, n), rng.uniform(0, 29, n)], 1).astype(np.float32)
    uv2[0] = np.nan  # pick() always takes the first: it must be left out, not drawn at a garbage pixel
    img, drawn = draw_correspondences(a, b, uv1, uv2, lines=20, radius=0)
    assert drawn.tolist() == pick(n, 20).tolist()
    cols = palette(20)
    assert not (img == cols[0]).all(-1).any()
    hits = sum(bool((img[int(np.rint(uv2[k, 1])), int(np.rint(uv2[k, 0])) + 64] == cols[j]).all())
               for j, k in enumerate(drawn[1:], 1))  # radius 0: a line's last pixel is its end unless crossed later
    assert hits >= 15
    assert (draw_correspondences(a, b, uv1, uv2, lines=20, radius=0)[0] == img).all()  # deterministic


def test_bad_input_is_refused_in_one_line():
    a, b = _views()
    with pytest.raises(ValueError, match="rgb2 must be uint8"):
        draw_correspondences(a, b.astype(np.float32), np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="differ in length"):
        draw_correspondences(a, b, np.zeros((2, 2)), np.zeros((1, 2)))
    assert default_radius(64) == 1 and default_radius(640) == 4
