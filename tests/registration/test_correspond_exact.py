"""``geometry.correspond`` (the fast CPU path) returns bit-identical results to the implementation
before the speed-up, ``geometry_reference.correspond_reference``.

Rendered embedded-world pairs at 640x480 and other sizes, different intrinsics per view (non-square
pixels, off-centre principal points, odd sizes), invalid depth of every kind (0, NaN, inf, negative,
out of range), pairs with no overlap, non-default configurations, half-pixel rounding ties, errors, and
calls from several threads. "Identical" means same dtypes, shapes and bytes of uv1/uv2, same type and
bits of overlap_iou, same valid counts.
"""
from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from regconsist_ros.registration import geometry
from regconsist_ros.registration.geometry import CorrespondenceConfig, RegistrationError, correspond
from regconsist_ros.registration.geometry_reference import correspond_reference
from regconsist_ros.sim.frame import Frame, Intrinsics
from regconsist_ros.sim.poses import pose_from_tq
from regconsist_ros.sim.source import SimConfig, SimSource


def assert_identical(c, r):
    for name in ("uv1", "uv2"):
        a, b = getattr(c, name), getattr(r, name)
        assert a.dtype == b.dtype == np.float32, (name, a.dtype, b.dtype)
        assert a.shape == b.shape, (name, a.shape, b.shape)
        assert a.tobytes() == b.tobytes(), f"{name}: {int((a.view(np.uint32) != b.view(np.uint32)).sum())} values differ"
    assert type(c.overlap_iou) is type(r.overlap_iou) is float
    assert np.float64(c.overlap_iou).tobytes() == np.float64(r.overlap_iou).tobytes(), (c.overlap_iou, r.overlap_iou)
    assert type(c.valid1) is type(r.valid1) is int and c.valid1 == r.valid1
    assert type(c.valid2) is type(r.valid2) is int and c.valid2 == r.valid2


def check(f1, f2, cfg=None):
    r = correspond_reference(f1, f2, cfg)
    c = correspond(f1, f2, cfg)
    assert_identical(c, r)
    return c


def corrupt(f: Frame, seed: int) -> Frame:
    """Blocks and scattered pixels of every kind of invalid depth, plus an invalid left quarter."""
    rng = np.random.default_rng(seed)
    d = f.depth.copy()
    H, W = d.shape
    values = [0.0, np.nan, np.inf, -np.inf, -1.0, 10.5, 1e6, 0.02, 1e38]
    for k, val in enumerate(values):
        y0, x0 = int(rng.integers(0, H - 20)), int(rng.integers(W // 4, W - 20))
        d[y0 : y0 + 20, x0 : x0 + 20] = val
    idx = rng.choice(d.size, d.size // 20, replace=False)
    d.flat[idx] = np.array(values, np.float32)[rng.integers(0, len(values), idx.size)]
    d[:, : W // 4] = 0.0
    return dataclasses.replace(f, depth=d)


def turned_round(f: Frame, src: SimSource) -> Frame:
    """The same camera centre looking the other way (rotated by pi about its y axis): no overlap."""
    T = f.T_world_cam @ np.diag([-1.0, 1.0, -1.0, 1.0])
    return src.renderer.render(f.intrinsics, T)


@pytest.fixture(scope="module")
def world():
    src = SimSource(SimConfig(seed=0, frames=12, width=640, height=480))
    frames = {i: src[i] for i in (0, 1, 3, 4, 7, 11)}
    other = {  # the same poses through other cameras
        "fxfy": src.renderer.render(Intrinsics(300.0, 310.0, 330.2, 228.7, 640, 480), src.poses[4]),
        "odd": src.renderer.render(Intrinsics(251.5, 249.0, 251.3, 190.1, 501, 375), src.poses[5]),
        "small": src.renderer.render(Intrinsics.from_fov(160, 120, 70.0), src.poses[3]),
    }
    return src, frames, other


def test_fast_path_is_taken_where_the_blas_rounds_plainly(world, monkeypatch):
    """On a machine whose BLAS does the 3x3 product without FMA (as here), correspond() must not fall
    back to the torch path; elsewhere it does, and the other tests still hold."""
    _, fr, _ = world
    if not geometry._blas_transform_is_plain(640 * 480, geometry.torch.get_num_threads()):
        pytest.skip("this BLAS rounds [N, 3] @ R^T differently: correspond() uses the torch path")

    def fail(*a, **k):
        raise AssertionError("fell back to the torch path")

    monkeypatch.setattr(geometry, "_correspond_torch", fail)
    assert len(correspond(fr[0], fr[3])) > 100_000


@pytest.mark.parametrize("i, j", [(0, 3), (3, 0), (1, 4), (4, 11), (0, 0)])
def test_identical_on_rendered_640x480_pairs(world, i, j):
    _, fr, _ = world
    c = check(fr[i], fr[j])
    if i != j:
        assert 0 < c.overlap_iou < 1
    else:
        assert len(c) == fr[i].depth.size and c.overlap_iou == 1.0


@pytest.mark.parametrize("a, b", [("fxfy", 0), (4, "fxfy"), ("odd", 3), (7, "odd"), ("small", 1), ("odd", "small")])
def test_identical_with_different_intrinsics_per_view(world, a, b):
    _, fr, other = world
    get = lambda k: other[k] if isinstance(k, str) else fr[k]  # noqa: E731
    c = check(get(a), get(b))
    assert len(c) > 0


@pytest.mark.parametrize("which", ["view1", "view2", "both"])
def test_identical_with_invalid_depth(world, which):
    _, fr, other = world
    f1, f2 = fr[1], other["fxfy"]
    if which in ("view1", "both"):
        f1 = corrupt(f1, 1)
    if which in ("view2", "both"):
        f2 = corrupt(f2, 2)
    c = check(f1, f2)
    assert c.valid1 < f1.depth.size or c.valid2 < f2.depth.size
    check(f2, f1)


def test_identical_without_overlap(world):
    src, fr, other = world
    away = turned_round(fr[3], src)
    c = check(fr[3], away)
    assert len(c) == 0 and c.uv1.shape == (0, 2) and c.uv2.shape == (0, 2) and c.overlap_iou == 0.0
    check(away, fr[3])
    away_small = turned_round(other["small"], src)
    assert len(check(other["small"], away_small)) == 0


@pytest.mark.parametrize("cfg", [
    CorrespondenceConfig(rel_tol=0.1, max_range=4.3),
    CorrespondenceConfig(min_depth=0.0, rel_tol=0.005),  # min_depth 0: the explicit z > 1e-9 test
    CorrespondenceConfig(min_depth=0.7, max_range=9.7),  # thresholds whose float32 value is below the double
    CorrespondenceConfig(rel_tol=0.3, min_depth=1.0, max_range=2.5),
], ids=["range4.3", "mindepth0", "float32_thresholds", "narrow"])
def test_identical_with_other_configs(world, cfg):
    _, fr, other = world
    check(fr[0], fr[3], cfg)
    check(corrupt(other["odd"], 3), fr[7], cfg)


def test_identical_at_half_pixel_ties():
    """A fronto-parallel wall and a sideways shift of exactly half a pixel at its depth: many target
    coordinates are exact .5 ties. View 2's depth alternates by column parity, so only the right
    rounding (half to even, like torch.round) finds the consistent pixel; the last column's tie
    rounds out of the image."""
    K = Intrinsics(80.0, 80.0, 79.5, 59.5, 160, 120)
    rgb = np.zeros((120, 160, 3), np.uint8)
    T1 = np.eye(4)
    T2 = np.eye(4)
    T2[0, 3] = 0.0125  # fx * tx / z = 80 * 0.0125 / 2 = 0.5 px
    d1 = np.full((120, 160), 2.0, np.float32)
    d2 = np.where(np.arange(160) % 2 == 0, 2.0, 3.0).astype(np.float32)[None].repeat(120, 0)
    f1, f2 = Frame(rgb=rgb, depth=d1, intrinsics=K, T_world_cam=T1), Frame(rgb=rgb, depth=d2, intrinsics=K, T_world_cam=T2)
    c = check(f1, f2)
    frac = c.uv2[:, 0] - np.floor(c.uv2[:, 0])
    assert (frac == 0.5).sum() > 1000, "the scene must produce exact ties"
    assert np.all(np.rint(c.uv2[:, 0]) % 2 == 0)
    check(f2, f1)
    check(f1, f2, CorrespondenceConfig(rel_tol=0.6))  # both parities consistent: only the border decides


def test_target_index_matches_round_and_inside_test():
    """_target_index + take(mode="clip") on a NaN-bordered array == round, inside test, lookup; for
    coordinates at ties, at the borders, huge, infinite and NaN."""
    rng = np.random.default_rng(0)
    for W2, H2 in ((640, 480), (161, 97), (1, 1)):
        Wp = W2 + 2
        padded = np.full((H2 + 2, Wp), np.nan, np.float32)
        padded[1:-1, 1:-1] = np.arange(H2 * W2, dtype=np.float32).reshape(H2, W2)
        special = [-np.inf, -1e30, -2.0**24, -2.0**23, -2.0**22 - 1, -1e5, -19601.0, -2.5, -1.5, -1.0, -0.5000001,
                   -0.5, -0.49999997, -0.0, 0.0, 0.5, 1.5, 2.5, 2.0**22, 2.0**23 + 1, 1e30, np.inf, np.nan]
        for n in (W2, H2):
            special += [n - 1.5, n - 1.0, n - 0.5000001, n - 0.5, n - 0.49999997, n, n + 0.5, n + 1]
        vals = np.concatenate([np.array(special, np.float32),
                               rng.uniform(-3 * max(W2, H2), 3 * max(W2, H2), 200).astype(np.float32)])
        u, v = (a.ravel().copy() for a in np.meshgrid(vals, vals))
        ru, rv = np.rint(u), np.rint(v)
        inside = (ru >= 0) & (ru <= W2 - 1) & (rv >= 0) & (rv <= H2 - 1)
        want = np.full(u.shape, np.nan, np.float32)
        want[inside] = padded[rv[inside].astype(int) + 1, ru[inside].astype(int) + 1]
        tmp, out = np.empty_like(u), np.empty_like(u)
        with np.errstate(invalid="ignore", over="ignore"):
            idx = geometry._target_index(u, v, W2, tmp, out)
        got = np.take(padded.ravel(), idx, mode="clip")
        assert np.array_equal(got, want, equal_nan=True), (W2, H2)


def test_identical_across_sizes_and_threads(world):
    """Per-thread workspaces: pairs of different sizes, interleaved, from two threads at once."""
    _, fr, other = world
    jobs = [(fr[0], fr[3]), (other["small"], fr[1]), (fr[4], other["odd"]), (other["odd"], other["small"])]
    refs = [correspond_reference(a, b) for a, b in jobs]
    errors = []

    def work(order):
        try:
            for _ in range(2):
                for k in order:
                    assert_identical(correspond(*jobs[k]), refs[k])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(o,)) for o in ([0, 1, 2, 3], [3, 2, 1, 0])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_same_errors_as_reference(world):
    _, fr, _ = world
    f = fr[0]
    empty = dataclasses.replace(f, depth=np.zeros_like(f.depth))
    nan = dataclasses.replace(f, depth=np.full_like(f.depth, np.nan))
    bad_pose = dataclasses.replace(f)
    bad_pose.T_world_cam = f.T_world_cam * 2.0  # scaled: not rigid
    wrong_size = dataclasses.replace(f)
    wrong_size.depth = f.depth[:-1]
    for a, b in [(empty, f), (f, nan), (bad_pose, f), (f, bad_pose), (wrong_size, f), (empty, bad_pose), (f, wrong_size)]:
        with pytest.raises(RegistrationError) as want:
            correspond_reference(a, b)
        with pytest.raises(RegistrationError) as got:
            correspond(a, b)
        assert str(got.value) == str(want.value)


def test_numpy_relative_pose_has_the_torch_bits():
    """The fast path composes poses in numpy only where that gives relative_pose()'s float64 bits."""
    if not geometry._relative_pose_np_is_exact():
        pytest.skip("torch's small-matrix product rounds differently here: the fast path calls relative_pose()")
    rng = np.random.default_rng(5)
    for _ in range(200):
        T = [pose_from_tq(rng.normal(size=3) * 4, rng.normal(size=4)) for _ in range(2)]
        want = geometry.relative_pose(geometry.torch.from_numpy(T[0])[None], geometry.torch.from_numpy(T[1])[None])[0]
        assert geometry._relative_pose_np(T[0], T[1]).tobytes() == want.numpy().tobytes()


def test_quick_pose_accept_implies_validate_pose_accepts():
    """_surely_rigid() only ever skips validate_pose() for poses that validate_pose() accepts."""
    from regconsist_ros.sim.poses import PoseError, validate_pose

    rng = np.random.default_rng(7)
    accepted = 0
    for k in range(3000):
        T = pose_from_tq(rng.normal(size=3), rng.normal(size=4))
        T[:3, :3] += rng.normal(size=(3, 3)) * 10.0 ** rng.uniform(-7, -2)  # up to well past ROT_TOL
        if k % 10 == 0:
            T[3, :3] = rng.normal(size=3) * 10.0 ** rng.uniform(-9, -3)
        if k % 97 == 0:
            T[rng.integers(0, 3), rng.integers(0, 4)] = np.nan
        if geometry._surely_rigid(T):
            accepted += 1
            validate_pose(T)  # must not raise
        else:
            try:
                validate_pose(T)
            except PoseError:
                pass
    assert 500 < accepted < 3000
