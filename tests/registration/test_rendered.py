"""Correspondences on rendered embedded-world pairs and on real RGB-D frames.

Rendered: the procedural apartment (SimSource, explore trajectory, 160x120) gives instance labels,
so an exact correspondence should join the same object instance in both views. Real: the Open3D
"Redwood" sample (estimated odometry poses) should be photometrically consistent.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import maximum_filter, minimum_filter

from regconsist_ros.registration.geometry import correspond
from regconsist_ros.sim.frame import Frame, Intrinsics
from regconsist_ros.sim.source import SimConfig, SimSource

N_FRAMES = 16
STARTS = (0, 4, 8, 12)
GAPS = (1, 3)


@pytest.fixture(scope="module")
def rendered():
    """seed -> list of frames (only the ones the pairs use)."""
    out = {}
    for seed in (0, 1, 2):
        src = SimSource(SimConfig(seed=seed, frames=N_FRAMES, width=160, height=120, trajectory="explore"))
        need = sorted({i for i in STARTS} | {i + k for i in STARTS for k in GAPS if i + k < N_FRAMES})
        out[seed] = {i: src[i] for i in need}
    return out


def _pairs():
    return [(i, i + k) for i in STARTS for k in GAPS if i + k < N_FRAMES]


def _instance_stats(f1: Frame, f2: Frame):
    c = correspond(f1, f2)
    assert 0 < c.overlap_iou <= 1, c.overlap_iou
    assert len(c) > 0.2 * f1.depth.size, f"only {len(c)} correspondences"
    uv1 = c.uv1.astype(int)
    uv2 = np.rint(c.uv2).astype(int)
    a = f1.instance[uv1[:, 1], uv1[:, 0]]
    b = f2.instance[uv2[:, 1], uv2[:, 0]]
    inst2 = f2.instance.astype(np.int32)
    boundary2 = maximum_filter(inst2, 3) != minimum_filter(inst2, 3)  # instance changes within 1 px
    interior = ~boundary2[uv2[:, 1], uv2[:, 0]]
    return c, a == b, interior


def test_instance_ids_agree_across_views(rendered):
    """>= 99% of exact correspondences join the same instance (seeds 0 and 1, 16 pairs aggregated)."""
    same = total = 0
    per_pair = []
    for seed in (0, 1):
        fr = rendered[seed]
        for i, j in _pairs():
            assert fr[i].instance is not None and (fr[i].instance > 0).mean() > 0.9
            c, agree, _ = _instance_stats(fr[i], fr[j])
            same += int(agree.sum())
            total += len(agree)
            per_pair.append((seed, i, j, round(float(agree.mean()), 4), round(c.overlap_iou, 3)))
    assert len(per_pair) >= 6
    rate = same / total
    assert rate >= 0.99, f"instance agreement {rate:.4f} over {total} correspondences; per pair {per_pair}"
    assert min(p[3] for p in per_pair) >= 0.98, per_pair


def test_instance_ids_agree_away_from_instance_boundaries(rendered):
    """Where the view-2 instance is constant within 1 px of the target pixel, rounding cannot change the
    label, so mismatches would be real geometric errors: allow at most 0.1% (flush parts, e.g. a
    picture on a wall, legitimately pass the 3% depth test)."""
    same = total = 0
    for seed, fr in rendered.items():
        for i, j in _pairs():
            _, agree, interior = _instance_stats(fr[i], fr[j])
            same += int(agree[interior].sum())
            total += int(interior.sum())
    rate = same / total
    assert total > 100_000 and rate >= 0.999, f"interior instance agreement {rate:.5f} over {total} correspondences"


def test_overlap_decreases_with_gap_and_correspondences_are_cycle_consistent(rendered):
    fr = rendered[0]
    ious = [correspond(fr[0], fr[k]).overlap_iou for k in (1, 3, 8)]
    assert ious[0] > ious[1] > ious[2] >= 0, ious
    # 1 -> 2 -> 1: the reverse correspondence from the target pixel lands back within 1.5 px
    c12, c21 = correspond(fr[4], fr[5]), correspond(fr[5], fr[4])
    back = np.full(fr[5].size + (2,), np.nan, np.float32)
    p = c21.uv1.astype(int)
    back[p[:, 1], p[:, 0]] = c21.uv2
    t = np.rint(c12.uv2).astype(int)
    ret = back[t[:, 1], t[:, 0]]
    ok = np.isfinite(ret[:, 0])
    err = np.linalg.norm(ret[ok] - c12.uv1[ok], axis=1)
    assert ok.mean() > 0.97, f"only {ok.mean():.3f} of targets have a reverse correspondence"
    assert np.mean(err < 1.5) > 0.99, f"cycle error: median {np.median(err):.3f} px, 99th pct {np.percentile(err, 99):.3f} px"


# ---------------------------------------------------------------------------------------------
# real data: Open3D / Redwood sample
# ---------------------------------------------------------------------------------------------

REDWOOD = Path("redwood_open3d_5frames/examples/test_data/RGBD")


def _read_log(path: Path) -> list[np.ndarray]:
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    assert len(lines) % 5 == 0
    return [np.array(lines[b * 5 + 1 : b * 5 + 5], dtype=np.float64) for b in range(len(lines) // 5)]


def _redwood_frame(root: Path, i: int, pose: np.ndarray) -> Frame:
    Image = pytest.importorskip("PIL.Image")
    depth = np.asarray(Image.open(root / "depth" / f"{i:05d}.png"))
    assert depth.dtype == np.uint16 and depth.shape == (480, 640)
    rgb = np.asarray(Image.open(root / "color" / f"{i:05d}.jpg").convert("RGB"))
    return Frame(rgb=np.ascontiguousarray(rgb), depth=depth.astype(np.float32) / 1000.0,
                 intrinsics=Intrinsics(525.0, 525.0, 319.5, 239.5, 640, 480), T_world_cam=pose)


def _bilinear(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    H, W = img.shape
    x = np.clip(uv[:, 0], 0, W - 1)
    y = np.clip(uv[:, 1], 0, H - 1)
    x0 = np.minimum(np.floor(x).astype(int), W - 2)
    y0 = np.minimum(np.floor(y).astype(int), H - 2)
    ax, ay = x - x0, y - y0
    return ((1 - ay) * ((1 - ax) * img[y0, x0] + ax * img[y0, x0 + 1])
            + ay * ((1 - ax) * img[y0 + 1, x0] + ax * img[y0 + 1, x0 + 1]))


@pytest.mark.parametrize("j", [1, 2])
def test_redwood_correspondences_are_photometrically_consistent(shared_data, j):
    root = shared_data / REDWOOD
    poses = _read_log(root / "odometry.log")
    assert len(poses) == 5 and np.allclose(poses[0][:3, 3], [2.0, 2.0, -0.3])
    f1, f2 = _redwood_frame(root, 0, poses[0]), _redwood_frame(root, j, poses[j])
    c = correspond(f1, f2)
    grey = np.array([0.299, 0.587, 0.114])
    g1, g2 = f1.rgb.astype(np.float64) @ grey, f2.rgb.astype(np.float64) @ grey
    a = g1[c.uv1[:, 1].astype(int), c.uv1[:, 0].astype(int)]
    matched = np.abs(a - _bilinear(g2, c.uv2.astype(np.float64))).mean()
    rng = np.random.default_rng(0)
    shuffled = np.abs(a - _bilinear(g2, c.uv2[rng.permutation(len(c))].astype(np.float64))).mean()
    static = np.abs(a - _bilinear(g2, c.uv1.astype(np.float64))).mean()  # "camera did not move"
    msg = (f"frames 0-{j}: {len(c)} correspondences, IoU {c.overlap_iou:.3f}, mean |grey diff| matched "
           f"{matched:.2f}, shuffled {shuffled:.2f}, same pixel {static:.2f}")
    assert c.overlap_iou > 0.5, msg
    assert len(c) > 0.5 * c.valid1, msg
    assert matched < 0.6 * shuffled, msg
    assert matched < 0.6 * static, msg  # the poses are used, not just the identity
