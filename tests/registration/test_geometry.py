"""Registration geometry (regconsist_ros/registration/geometry.py) against analytic scenes.

Depth maps are built in closed form (ray-plane intersection), never with the renderer: a tilted wall
~4 m ahead of the camera, a small rectangular occluder 2 m ahead, and a second wall behind the camera
(seen only by a camera turned round). For every pixel of view 1 the expected target pixel and its
visibility in view 2 are computed analytically in float64 and compared with ``correspond``/``warp``.

World is Z-up; cameras come from ``camera_from_yaw_pitch`` (optical frame, T_world_cam).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation, maximum_filter, minimum_filter

from regconsist_ros.registration.geometry import (
    CorrespondenceConfig,
    RegistrationError,
    correspond,
    overlap_iou,
    project,
    relative_pose,
    transform,
    unproject,
    valid_depth,
    warp,
)
from regconsist_ros.sim.frame import Frame, FrameError, Intrinsics
from regconsist_ros.sim.poses import PoseError, camera_from_yaw_pitch, pose_from_tq

# ---------------------------------------------------------------------------------------------
# analytic scene
# ---------------------------------------------------------------------------------------------

K1 = Intrinsics.from_fov(160, 120, 90.0)  # fx = fy = 80, cx = 79.5, cy = 59.5


class Plane:
    """n . X = c, optionally bounded by an axis-aligned box test on the hit point (a rectangle)."""

    def __init__(self, n, c, lo=None, hi=None):
        n = np.asarray(n, np.float64)
        self.n, self.c = n / np.linalg.norm(n), c / np.linalg.norm(n)
        self.lo = None if lo is None else np.asarray(lo, np.float64)
        self.hi = None if hi is None else np.asarray(hi, np.float64)

    def hit(self, o, d):
        """Ray parameter s > 0 with o + s d on the surface, inf where there is none. o [3], d [..., 3]."""
        nd = d @ self.n
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (self.c - o @ self.n) / nd
        s = np.where(np.isfinite(s) & (s > 1e-12), s, np.inf)
        if self.lo is not None:
            X = o + np.where(np.isfinite(s), s, 0.0)[..., None] * d
            eps = 1e-9
            inside = np.all((X >= self.lo - eps) & (X <= self.hi + eps), axis=-1)
            s = np.where(inside, s, np.inf)
        return s


WALL = Plane([1.0, 0.25, 0.1], 4.0)  # tilted wall in front (x ~ 4 m)
BACK = Plane([1.0, 0.0, 0.0], -4.0)  # wall behind the start position (x = -4 m)
OCCLUDER = Plane([1.0, 0.0, 0.0], 2.0, lo=[1.9, -0.35, 0.6], hi=[2.1, 0.35, 1.4])  # 0.7 x 0.8 m board at x = 2
SCENE = (WALL, BACK, OCCLUDER)


def rays(intr: Intrinsics, T: np.ndarray) -> np.ndarray:
    """World-frame ray directions [H, W, 3] whose camera-frame z component is 1."""
    ys, xs = np.mgrid[0 : intr.height, 0 : intr.width].astype(np.float64)
    d = np.stack([(xs - intr.cx) / intr.fx, (ys - intr.cy) / intr.fy, np.ones_like(xs)], -1)
    return d @ T[:3, :3].T


def analytic_depth(intr: Intrinsics, T: np.ndarray, scene=SCENE) -> np.ndarray:
    """Closed-form z-depth [H, W] float64 (0 where no surface). Along a ray with camera z = 1 the hit
    parameter *is* the z-depth."""
    d = rays(intr, T)
    s = np.min([p.hit(T[:3, 3], d) for p in scene], axis=0)
    return np.where(np.isfinite(s), s, 0.0)


def n_valid(depth: np.ndarray, lo=0.05, hi=10.0) -> int:
    """Valid depth pixels under the default CorrespondenceConfig."""
    return int(((depth >= lo) & (depth <= hi)).sum())


def make_frame(intr: Intrinsics, T: np.ndarray, depth: np.ndarray | None = None) -> Frame:
    if depth is None:
        depth = analytic_depth(intr, T)
    return Frame(rgb=np.zeros((intr.height, intr.width, 3), np.uint8), depth=depth.astype(np.float32),
                 intrinsics=intr, T_world_cam=T)


CAM1 = camera_from_yaw_pitch([0.0, 0.0, 1.0], 0.0)
MOTIONS = {
    # camera centre fixed: no parallax, so nothing becomes occluded
    "rotation": camera_from_yaw_pitch([0.0, 0.0, 1.0], 0.3, 0.12),
    # sideways + up: the occluder hides some wall seen in view 1 and the view shifts out of frame
    "translation": camera_from_yaw_pitch([0.3, -0.7, 1.15], 0.0),
    "general": camera_from_yaw_pitch([0.5, 0.8, 1.2], -0.35, -0.08),
}
VIEW2_INTRINSICS = {
    "same": K1,
    "half_res": K1.scaled(80, 60),
    "narrow_4x3": Intrinsics(95.0, 97.0, 50.3, 37.8, 100, 75),  # other focal, principal point, size
}


def expected(f1: Frame, f2: Frame, scene=SCENE, lo: float = 0.05, hi: float = 10.0):
    """Analytic ground truth for every view-1 pixel.

    Returns a dict of [H1, W1] arrays: uv2 (float64 target pixel), valid1, inside (round(uv2) in view 2,
    safely), outside (safely not inside), visible (nothing between camera 2 and the point), near_edge
    (round(uv2) within 1 px of a depth discontinuity of view 2), valid2 (valid depth at round(uv2) clipped
    into the image; meaningful where not ``outside``).
    """
    i1, i2 = f1.intrinsics, f2.intrinsics
    T1, T2 = f1.T_world_cam, f2.T_world_cam
    z1 = analytic_depth(i1, T1, scene)
    valid1 = (z1 > 0) & np.isfinite(f1.depth) & (f1.depth >= lo) & (f1.depth <= hi)
    X = T1[:3, 3] + z1[..., None] * rays(i1, T1)  # world points [H, W, 3]
    Xc = (X - T2[:3, 3]) @ T2[:3, :3]  # camera-2 frame
    z2 = Xc[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = i2.fx * Xc[..., 0] / z2 + i2.cx
        v = i2.fy * Xc[..., 1] / z2 + i2.cy
    front = z2 > 1e-6
    m = 1e-3  # stay away from rounding ties at the image border
    inside = front & (u >= -0.5 + m) & (u < i2.width - 0.5 - m) & (v >= -0.5 + m) & (v < i2.height - 0.5 - m)
    outside = ~front | (u < -0.5 - m) | (u > i2.width - 0.5 + m) | (v < -0.5 - m) | (v > i2.height - 0.5 + m)
    # visibility from camera 2: no surface strictly between camera 2 and X (X is at s = 1)
    d = X - T2[:3, 3]
    s = np.min([p.hit(T2[:3, 3], d) for p in scene], axis=0)
    visible = s >= 1 - 1e-6
    # depth discontinuities of view 2 (both sides marked), dilated by one pixel
    D2 = analytic_depth(i2, T2, scene)
    dmax, dmin = maximum_filter(D2, 3), minimum_filter(D2, 3)
    edge = binary_dilation((dmax - dmin) > 0.05 * np.maximum(dmin, 1e-3), iterations=1)
    px = np.clip(np.rint(np.nan_to_num(u)), 0, i2.width - 1).astype(int)
    py = np.clip(np.rint(np.nan_to_num(v)), 0, i2.height - 1).astype(int)
    dd2 = f2.depth[py, px]
    valid2 = np.isfinite(dd2) & (dd2 >= lo) & (dd2 <= hi)
    return dict(uv2=np.stack([u, v], -1), valid1=valid1, inside=inside, outside=outside, visible=visible,
                near_edge=edge[py, px] & inside, valid2=valid2)


def accepted_mask(c, shape) -> np.ndarray:
    m = np.zeros(shape, bool)
    xy = c.uv1.astype(int)
    assert np.array_equal(xy, c.uv1), "uv1 must hold integer pixel coordinates"
    m[xy[:, 1], xy[:, 0]] = True
    assert m.sum() == len(c), "uv1 contains duplicates"
    return m


def check_against_analytic(f1, f2, c, min_occluded=0, min_outside=0, cfg=CorrespondenceConfig()):
    e = expected(f1, f2, lo=cfg.min_depth, hi=cfg.max_range)
    H, W = f1.size
    acc = accepted_mask(c, (H, W))
    xy = c.uv1.astype(int)
    # 1) accuracy of every correspondence
    err = np.linalg.norm(c.uv2.astype(np.float64) - e["uv2"][xy[:, 1], xy[:, 0]], axis=1)
    assert len(c) > 0
    assert err.max() < 0.01, f"max reprojection error {err.max():.4g} px (mean {err.mean():.3g})"
    # 2) nothing accepted that is invalid, outside, or occluded (unless the nearest pixel is on an edge)
    covis = e["valid1"] & e["inside"] & e["visible"] & e["valid2"]
    assert not (acc & ~e["valid1"]).any(), "correspondence from an invalid view-1 pixel"
    assert not (acc & ~e["outside"] & ~e["valid2"]).any(), "correspondence onto an invalid view-2 pixel"
    n_out = int((acc & e["outside"]).sum())
    assert n_out == 0, f"{n_out} correspondences whose analytic projection lies outside view 2"
    occluded = e["valid1"] & e["inside"] & ~e["visible"]
    n_occ = int((acc & occluded & ~e["near_edge"]).sum())
    assert n_occ == 0, f"{n_occ} of {int((occluded & ~e['near_edge']).sum())} occluded pixels (away from edges) accepted"
    covis_loose = e["valid1"] & ~e["outside"] & e["visible"] & e["valid2"]  # border rounding ties allowed
    wrong = acc & ~covis_loose & ~e["near_edge"]
    assert not wrong.any(), f"{int(wrong.sum())} accepted pixels are not analytically co-visible"
    # 3) recall on co-visible pixels away from depth edges
    strict = covis & ~e["near_edge"]
    recall = (acc & strict).sum() / strict.sum()
    assert recall >= 0.99, f"recall {recall:.4f} on {int(strict.sum())} co-visible pixels"
    # the scene must actually exercise what is tested
    assert int((occluded & ~e["near_edge"]).sum()) >= min_occluded
    assert int((e["valid1"] & e["outside"]).sum()) >= min_outside
    return e, acc


# ---------------------------------------------------------------------------------------------
# correspondences vs analytic ground truth
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k2", list(VIEW2_INTRINSICS))
@pytest.mark.parametrize("motion", list(MOTIONS))
def test_correspondences_match_analytic_projection_and_visibility(motion, k2):
    f1 = make_frame(K1, CAM1)
    f2 = make_frame(VIEW2_INTRINSICS[k2], MOTIONS[motion])
    c = correspond(f1, f2)
    min_occ = 0 if motion == "rotation" else 50
    e, acc = check_against_analytic(f1, f2, c, min_occluded=min_occ, min_outside=200)
    if motion == "rotation":  # no parallax: nothing can be occluded
        assert not (e["valid1"] & e["inside"] & ~e["visible"]).any()
    assert c.valid1 == n_valid(f1.depth) and c.valid2 == n_valid(f2.depth)
    assert 0 < c.overlap_iou <= 1


def test_occluder_hides_wall_pixels_after_translation():
    """Directly: wall pixels of view 1 that the board hides from camera 2 are absent, and the board
    itself (seen from both) is present."""
    f1 = make_frame(K1, CAM1)
    f2 = make_frame(K1, MOTIONS["translation"])
    c = correspond(f1, f2)
    e = expected(f1, f2)
    acc = accepted_mask(c, f1.size)
    on_wall = np.abs(f1.depth - analytic_depth(K1, CAM1, (WALL,))) < 1e-4
    hidden = on_wall & e["inside"] & ~e["visible"] & ~e["near_edge"]
    board = (f1.depth > 0) & (f1.depth < 2.2) & e["inside"] & ~e["near_edge"]
    assert hidden.sum() > 100 and board.sum() > 100
    assert not (acc & hidden).any()
    assert (acc & board).sum() / board.sum() >= 0.99


def test_max_range_keeps_only_near_surfaces():
    """With max_range 3 m only the board (2 m) is valid; the wall (~4 m) is never used."""
    f1 = make_frame(K1, CAM1)
    f2 = make_frame(K1, MOTIONS["general"])
    cfg = CorrespondenceConfig(max_range=3.0)
    c = correspond(f1, f2, cfg)
    board1 = (f1.depth > 0) & (f1.depth <= 3.0)
    assert c.valid1 == int(board1.sum()) > 100
    acc = accepted_mask(c, f1.size)
    assert len(c) > 50 and not (acc & ~board1).any()
    uv2 = np.rint(c.uv2).astype(int)
    assert np.all(f2.depth[uv2[:, 1], uv2[:, 0]] <= 3.0)


@pytest.mark.parametrize("views", [("start", "general"), ("translation", "start")])
def test_target_depth_out_of_range_excludes_point(views):
    """max_range 4.3 m: part of the wall is in range in view 1 but out of range at its view-2 pixel;
    such points must be dropped even though the two depths agree."""
    cfg = CorrespondenceConfig(max_range=4.3)
    poses = {"start": CAM1, **MOTIONS}
    f1, f2 = make_frame(K1, poses[views[0]]), make_frame(K1, poses[views[1]])
    c = correspond(f1, f2, cfg)
    e, acc = check_against_analytic(f1, f2, c, cfg=cfg)
    lost = e["valid1"] & e["inside"] & e["visible"] & ~e["valid2"] & ~e["near_edge"]
    assert lost.sum() > 100, "scene does not exercise out-of-range target depth"
    assert not (acc & lost).any()
    assert c.valid1 == n_valid(f1.depth, hi=4.3) and c.valid2 == n_valid(f2.depth, hi=4.3)


def _corrupt(depth: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """Write every kind of invalid depth into blocks of ``depth``; return it and the invalid mask."""
    d = depth.astype(np.float32).copy()
    bad = np.zeros(d.shape, bool)
    H, W = d.shape
    values = [0.0, np.nan, np.inf, -np.inf, -1.0, 10.5, 1e6, 0.02]  # 10.5 > max_range, 0.02 < min_depth
    for k, val in enumerate(values):
        y0 = int(rng.integers(0, H - 8))
        x0 = (k * W) // len(values)
        sl = (slice(y0, y0 + 8), slice(x0, x0 + max(W // len(values) - 2, 2)))
        d[sl] = val
        bad[sl] = True
    # plus scattered single pixels
    idx = rng.choice(d.size, d.size // 20, replace=False)
    d.flat[idx] = np.array(values, np.float32)[rng.integers(0, len(values), idx.size)]
    bad.flat[idx] = True
    return d, bad


@pytest.mark.parametrize("motion", ["rotation", "general"])
def test_invalid_depth_in_either_view_is_never_used(motion):
    rng = np.random.default_rng(3)
    T2 = MOTIONS[motion]
    d1, bad1 = _corrupt(analytic_depth(K1, CAM1), rng)
    d2, bad2 = _corrupt(analytic_depth(K1, T2), rng)
    f1, f2 = make_frame(K1, CAM1, d1), make_frame(K1, T2, d2)
    c = correspond(f1, f2)
    acc = accepted_mask(c, f1.size)
    assert not (acc & bad1).any(), "an invalid view-1 depth pixel was used"
    uv2 = np.rint(c.uv2).astype(int)
    assert not bad2[uv2[:, 1], uv2[:, 0]].any(), "a correspondence lands on an invalid view-2 depth pixel"
    assert c.valid1 == n_valid(d1) == int((~bad1).sum())
    assert c.valid2 == n_valid(d2) <= int((~bad2).sum())  # the general view also sees the wall beyond 10 m
    # reverse direction, and the remaining valid pixels are still found (analytic check)
    c21 = correspond(f2, f1)
    acc21 = accepted_mask(c21, f2.size)
    assert not (acc21 & bad2).any()
    uv1 = np.rint(c21.uv2).astype(int)
    assert not bad1[uv1[:, 1], uv1[:, 0]].any()
    check_against_analytic(f1, f2, c)


def test_valid_depth_classification():
    cfg = CorrespondenceConfig(min_depth=0.1, max_range=5.0)
    d = torch.tensor([[[0.0, -1.0, float("nan"), float("inf"), -float("inf"), 0.05, 0.1, 2.0, 5.0, 5.01]]])
    got = valid_depth(d, cfg)[0, 0].tolist()
    assert got == [False, False, False, False, False, False, True, True, True, False]


# ---------------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------------


def _random_rigid(rng) -> np.ndarray:
    return pose_from_tq(rng.normal(size=3), rng.normal(size=4))


def test_unproject_project_round_trip():
    rng = np.random.default_rng(0)
    B, H, W = 2, 48, 64
    depth = torch.from_numpy(rng.uniform(0.3, 8.0, (B, H, W)).astype(np.float32))
    K = torch.tensor([[[70.0, 0, 31.5], [0, 72.0, 23.5], [0, 0, 1]], [[50.0, 0, 30.0], [0, 50.0, 20.0], [0, 0, 1]]])
    P = unproject(depth, K)
    assert P.shape == (B, H, W, 3)
    torch.testing.assert_close(P[..., 2], depth)
    # explicit pixel: b=1, row 5, column 7 -> ((7-30)/50 d, (5-20)/50 d, d)
    d = float(depth[1, 5, 7])
    np.testing.assert_allclose(P[1, 5, 7].numpy(), [(7 - 30) / 50 * d, (5 - 20) / 50 * d, d], rtol=1e-6)
    uv, z = project(P, K)
    ys, xs = np.mgrid[0:H, 0:W]
    np.testing.assert_allclose(uv[..., 0].numpy(), np.broadcast_to(xs, (B, H, W)), atol=1e-4)
    np.testing.assert_allclose(uv[..., 1].numpy(), np.broadcast_to(ys, (B, H, W)), atol=1e-4)
    torch.testing.assert_close(z, depth)
    # points behind (or on) the camera plane project to NaN
    uvb, _ = project(torch.tensor([[[0.1, 0.2, -1.0], [0.1, 0.2, 0.0], [0.1, 0.2, 1.0]]]), K[:1])
    assert torch.isnan(uvb[0, :2]).all() and torch.isfinite(uvb[0, 2]).all()


def test_transform_and_relative_pose_match_numpy():
    rng = np.random.default_rng(1)
    B = 4
    T1 = np.stack([_random_rigid(rng) for _ in range(B)])
    T2 = np.stack([_random_rigid(rng) for _ in range(B)])
    rel = relative_pose(torch.from_numpy(T1), torch.from_numpy(T2)).numpy()
    np.testing.assert_allclose(rel, np.linalg.inv(T2) @ T1, atol=1e-12)
    P = rng.normal(size=(B, 5, 7, 3))
    out = transform(torch.from_numpy(rel), torch.from_numpy(P)).numpy()
    ref = np.einsum("bij,bhwj->bhwi", rel[:, :3, :3], P) + rel[:, None, None, :3, 3]
    np.testing.assert_allclose(out, ref, atol=1e-12)
    # camera 1 -> world -> camera 2 equals the relative transform
    Pw = np.einsum("bij,bhwj->bhwi", T1[:, :3, :3], P) + T1[:, None, None, :3, 3]
    T2inv = np.linalg.inv(T2)
    P2 = np.einsum("bij,bhwj->bhwi", T2inv[:, :3, :3], Pw) + T2inv[:, None, None, :3, 3]
    np.testing.assert_allclose(out, P2, atol=1e-10)


def _batch(frames):
    return (torch.from_numpy(np.stack([f.depth for f in frames])),
            torch.from_numpy(np.stack([f.intrinsics.K for f in frames]).astype(np.float32)),
            torch.from_numpy(np.stack([f.T_world_cam for f in frames])))


def test_warp_batched_equals_per_item():
    src = [make_frame(K1, CAM1), make_frame(K1, MOTIONS["translation"]), make_frame(K1, MOTIONS["general"])]
    dst = [make_frame(K1, MOTIONS["general"]), make_frame(K1, CAM1), make_frame(K1, MOTIONS["rotation"])]
    ds, Ks, Ts = _batch(src)
    dd, Kd, Td = _batch(dst)
    wb = warp(ds, dd, Ks, Kd, Ts, Td)
    assert wb.uv.shape == (3, 120, 160, 2) and wb.valid.shape == (3, 120, 160)
    for b in range(3):
        w = warp(ds[b : b + 1], dd[b : b + 1], Ks[b : b + 1], Kd[b : b + 1], Ts[b : b + 1], Td[b : b + 1])
        assert torch.equal(w.valid[0], wb.valid[b]) and torch.equal(w.src_valid[0], wb.src_valid[b])
        torch.testing.assert_close(w.uv[0], wb.uv[b], equal_nan=True, atol=1e-5, rtol=0)
        assert torch.isnan(wb.uv[b][~wb.valid[b]]).all() and torch.isfinite(wb.uv[b][wb.valid[b]]).all()
    iou_b = overlap_iou(wb, warp(dd, ds, Kd, Ks, Td, Ts))
    for b in range(3):
        assert abs(float(iou_b[b]) - correspond(src[b], dst[b]).overlap_iou) < 1e-9


def test_correspond_accepts_non_contiguous_depth_views():
    """A Frame may hold a view such as np.flipud(a) (negative strides) or a strided slice."""
    rgb = np.zeros((120, 160, 3), np.uint8)
    d1 = np.flipud(np.ascontiguousarray(np.flipud(analytic_depth(K1, CAM1).astype(np.float32))))
    assert d1.strides[0] < 0
    big = np.zeros((240, 320), np.float32)
    big[::2, ::2] = analytic_depth(K1, MOTIONS["general"])
    d2 = big[::2, ::2]
    assert not d2.flags.c_contiguous
    c = correspond(Frame(rgb=rgb, depth=d1, intrinsics=K1, T_world_cam=CAM1),
                   Frame(rgb=rgb, depth=d2, intrinsics=K1, T_world_cam=MOTIONS["general"]))
    ref = correspond(make_frame(K1, CAM1), make_frame(K1, MOTIONS["general"]))
    assert np.array_equal(c.uv1, ref.uv1) and np.array_equal(c.uv2, ref.uv2)


def test_float32_cpu_determinism():
    f1, f2 = make_frame(K1, CAM1), make_frame(VIEW2_INTRINSICS["half_res"], MOTIONS["general"])
    a, b = correspond(f1, f2), correspond(f1, f2)
    assert a.uv1.dtype == np.float32 and a.uv2.dtype == np.float32
    assert np.array_equal(a.uv1, b.uv1) and np.array_equal(a.uv2, b.uv2) and a.overlap_iou == b.overlap_iou


# ---------------------------------------------------------------------------------------------
# overlap IoU
# ---------------------------------------------------------------------------------------------


def test_overlap_iou_identical_views_is_one():
    f = make_frame(K1, MOTIONS["general"])
    c = correspond(f, f)
    assert abs(c.overlap_iou - 1.0) < 1e-6
    assert len(c) == c.valid1 == n_valid(f.depth)
    np.testing.assert_allclose(c.uv2, c.uv1, atol=1e-3)


def test_overlap_iou_disjoint_views_is_zero():
    f1 = make_frame(K1, CAM1)
    f2 = make_frame(K1, camera_from_yaw_pitch([0.0, 0.0, 1.0], math.pi))  # turned round: sees the back wall
    assert (f2.depth > 0).all() and np.allclose(f2.depth, 4.0, atol=1e-4)
    c = correspond(f1, f2)
    assert len(c) == 0 and c.overlap_iou == 0.0
    assert correspond(f2, f1).overlap_iou == 0.0


@pytest.mark.parametrize("motion", list(MOTIONS))
def test_overlap_iou_symmetric_and_matches_analytic(motion):
    f1 = make_frame(K1, CAM1)
    f2 = make_frame(VIEW2_INTRINSICS["half_res"], MOTIONS[motion])
    c12, c21 = correspond(f1, f2), correspond(f2, f1)
    assert abs(c12.overlap_iou - c21.overlap_iou) < 1e-9, (c12.overlap_iou, c21.overlap_iou)
    e12, e21 = expected(f1, f2), expected(f2, f1)
    n12 = (e12["valid1"] & e12["inside"] & e12["visible"] & e12["valid2"]).sum()
    n21 = (e21["valid1"] & e21["inside"] & e21["visible"] & e21["valid2"]).sum()
    n = (n12 + n21) / 2
    v1, v2 = n_valid(f1.depth), n_valid(f2.depth)
    ref = n / (v1 + v2 - n)
    assert abs(c12.overlap_iou - ref) < 0.01, f"IoU {c12.overlap_iou:.4f} vs analytic {ref:.4f}"
    assert 0.05 < c12.overlap_iou < 0.95


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


def test_frame_construction_rejects_bad_depth_and_pose():
    good = analytic_depth(K1, CAM1).astype(np.float32)
    rgb = np.zeros((120, 160, 3), np.uint8)
    with pytest.raises(FrameError, match="depth must be"):
        Frame(rgb=rgb, depth=good[:, :100], intrinsics=K1, T_world_cam=CAM1)
    T = CAM1.copy()
    T[1, 3] = np.nan
    with pytest.raises(PoseError, match="non-finite"):
        Frame(rgb=rgb, depth=good, intrinsics=K1, T_world_cam=T)
    T = CAM1.copy()
    T[:3, :3] *= 1.1
    with pytest.raises(PoseError, match="rigid"):
        Frame(rgb=rgb, depth=good, intrinsics=K1, T_world_cam=T)


@pytest.mark.parametrize("which", [1, 2])
def test_correspond_rejects_depth_shape_mismatch(which):
    f1, f2 = make_frame(K1, CAM1), make_frame(K1, MOTIONS["general"])
    f = f1 if which == 1 else f2
    f.depth = f.depth[:60]  # Frame is mutable: the check in correspond must catch it
    with pytest.raises(RegistrationError, match=rf"view {which}: depth is \(60, 160\) but the intrinsics say 120x160"):
        correspond(f1, f2)


@pytest.mark.parametrize("which", [1, 2])
@pytest.mark.parametrize("kind", ["nan", "inf", "scaled", "reflected"])
def test_correspond_rejects_bad_pose(kind, which):
    f1, f2 = make_frame(K1, CAM1), make_frame(K1, MOTIONS["general"])
    T = (f1 if which == 1 else f2).T_world_cam.copy()
    if kind == "nan":
        T[0, 3] = np.nan
    elif kind == "inf":
        T[2, 2] = np.inf
    elif kind == "scaled":
        T[:3, :3] *= 1.05
    else:
        T[:3, 0] *= -1
    (f1 if which == 1 else f2).T_world_cam = T
    msg = "contains non-finite" if kind in ("nan", "inf") else "not a rigid transform"
    with pytest.raises(RegistrationError, match=rf"view {which}\.T_world_cam: {msg}"):
        correspond(f1, f2)


@pytest.mark.parametrize("which", [1, 2])
@pytest.mark.parametrize("fill", [0.0, np.nan, np.inf, -2.0, 50.0])
def test_correspond_rejects_all_invalid_depth(fill, which):
    T = CAM1 if which == 1 else MOTIONS["general"]
    bad = make_frame(K1, T, np.full((120, 160), fill, np.float32))
    good = make_frame(K1, MOTIONS["general"] if which == 1 else CAM1)
    f1, f2 = (bad, good) if which == 1 else (good, bad)
    with pytest.raises(RegistrationError, match=rf"view {which}: no valid depth pixel"):
        correspond(f1, f2)


def test_correspond_all_invalid_under_custom_range():
    f1, f2 = make_frame(K1, CAM1), make_frame(K1, MOTIONS["rotation"])
    # the board is at 2 m, the wall beyond 3.9 m: nothing within [0.05, 1.5]
    with pytest.raises(RegistrationError, match=r"view 1: no valid depth pixel.*\[0\.05, 1\.5\]"):
        correspond(f1, f2, CorrespondenceConfig(max_range=1.5))


def test_warp_rejects_mismatched_shapes():
    f1, f2 = make_frame(K1, CAM1), make_frame(K1, MOTIONS["general"])
    d, K, T = _batch([f1, f2])
    with pytest.raises(RegistrationError, match="same B"):
        warp(d, d[:1], K, K[:1], T, T[:1])
    with pytest.raises(RegistrationError, match=r"\[B, H, W\]"):
        warp(d[0], d[0], K[0], K[0], T[0], T[0])
    with pytest.raises(RegistrationError, match=r"K_src must have shape \(2, 3, 3\), got \(1, 3, 3\)"):
        warp(d, d, K[:1], K, T, T)
    with pytest.raises(RegistrationError, match=r"K_dst must have shape \(2, 3, 3\), got \(2, 4, 4\)"):
        warp(d, d, K, T.float(), T, T)
    with pytest.raises(RegistrationError, match=r"T_world_dst must have shape \(2, 4, 4\), got \(2, 3, 4\)"):
        warp(d, d, K, K, T, T[:, :3])


@pytest.mark.parametrize("kw", [dict(rel_tol=0.0), dict(rel_tol=1.0), dict(min_depth=-0.1),
                                dict(min_depth=5.0, max_range=5.0), dict(max_range=float("nan"))])
def test_correspondence_config_rejects_bad_values(kw):
    with pytest.raises(ValueError, match="CorrespondenceConfig"):
        CorrespondenceConfig(**kw)


# ---------------------------------------------------------------------------------------------
# CUDA
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    for motion in MOTIONS:
        f1, f2 = make_frame(K1, CAM1), make_frame(VIEW2_INTRINSICS["half_res"], MOTIONS[motion])
        a, b = correspond(f1, f2), correspond(f1, f2, device="cuda")
        assert np.array_equal(a.uv1, b.uv1), motion
        np.testing.assert_allclose(a.uv2, b.uv2, atol=1e-3)
        assert abs(a.overlap_iou - b.overlap_iou) < 1e-9
        assert (a.valid1, a.valid2) == (b.valid1, b.valid2)
