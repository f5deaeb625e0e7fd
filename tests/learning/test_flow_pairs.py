"""Flow batches for FlowE: geometric flow vs registration correspondences, resizing, sampler, estimators."""
import copy

import numpy as np
import pytest
import torch

from regconsist_ros.learning.flow_pairs import FarnebackFlow, FlowPairSampler, geometric_flow, resize_flow
from regconsist_ros.registration.geometry import CorrespondenceConfig, correspond


@pytest.fixture(scope="module")
def frames():
    from regconsist_ros.sim.source import SimConfig, SimSource

    return list(SimSource(SimConfig(seed=1, frames=6, width=64, height=48, step=0.05)))


def test_geometric_flow_agrees_with_correspondences(frames):
    for k in (1, 3, 5):
        flow, valid = geometric_flow(frames[0], frames[k])
        assert flow.shape == (2, 48, 64) and flow.dtype == np.float32
        assert valid.shape == (48, 64) and valid.dtype == bool
        c = correspond(frames[0], frames[k])
        x, y = c.uv1[:, 0].astype(int), c.uv1[:, 1].astype(int)
        both = valid[y, x]
        assert both.mean() > 0.9  # FB check and the inside test remove only a few co-visible pixels
        corr = np.zeros((48, 64), bool)
        corr[y, x] = True
        assert not (valid & ~corr).any()  # never valid where registration finds no correspondence
        got = flow[:, y[both], x[both]].T + c.uv1[both]
        np.testing.assert_allclose(got, c.uv2[both], atol=1e-3)
        assert np.abs(flow[:, valid]).max() > 1  # the camera moved
        assert (flow[:, ~valid] == 0).all()


def test_identical_frames_give_zero_flow(frames):
    f = frames[2]
    flow, valid = geometric_flow(f, f)
    assert np.abs(flow).max() < 1e-6
    d = f.depth
    cfg = CorrespondenceConfig()
    expected = (d >= cfg.min_depth) & (d <= cfg.max_range)
    assert expected.any() and np.array_equal(valid, expected)


def plane_frame(x: float = 0.0, depth: float = 2.0):
    """A fronto-parallel plane at ``depth`` seen by a 64x48, 90-degree camera at (x, 0, 0) looking along +z."""
    from regconsist_ros.sim.frame import Frame, Intrinsics

    T = np.eye(4)
    T[0, 3] = x
    return Frame(rgb=np.zeros((48, 64, 3), np.uint8), depth=np.full((48, 64), depth, np.float32),
                 intrinsics=Intrinsics.from_fov(64, 48, 90.0), T_world_cam=T)


def test_planar_scene_flow_is_the_analytic_parallax():
    """Camera 2 moved b = 1 m to the right of a plane 2 m away: every point moves f b / z = 16 px left."""
    f1, f2 = plane_frame(0.0), plane_frame(1.0)
    flow, valid = geometric_flow(f1, f2)
    f = f1.intrinsics.fx
    assert f == pytest.approx(32.0)
    xs = np.arange(64)[None].repeat(48, 0)
    np.testing.assert_array_equal(valid, xs - 16 >= 0)  # the rest leaves view 2
    np.testing.assert_allclose(flow[0][valid], -16.0, atol=1e-4)
    np.testing.assert_allclose(flow[1][valid], 0.0, atol=1e-4)
    back, valid21 = geometric_flow(f2, f1)
    np.testing.assert_array_equal(valid21, xs + 16 <= 63)
    np.testing.assert_allclose(back[0][valid21], 16.0, atol=1e-4)


def block_frame(x: float):
    """Camera at (x, 0, 0) looking along +z at a plane 2 m away with a 0.5 m square at 1 m in front of it."""
    f = plane_frame(x)
    K = f.intrinsics
    u, v = np.meshgrid(np.arange(64), np.arange(48))
    X, Y = x + (u - K.cx) / K.fx, (v - K.cy) / K.fy  # ray at z = 1 (world)
    f.depth = np.where((np.abs(X) <= 0.25) & (np.abs(Y) <= 0.25), 1.0, 2.0).astype(np.float32)
    return f


def test_occluded_background_is_invalid():
    f1, f2 = block_frame(0.0), block_frame(0.5)
    flow, valid = geometric_flow(f1, f2)
    K = f1.intrinsics
    u, v = np.meshgrid(np.arange(64), np.arange(48))
    z = f1.depth
    Xw, Yw = (u - K.cx) / K.fx * z, (v - K.cy) / K.fy * z  # world points (camera 1 = world)
    u2 = K.fx * (Xw - 0.5) / z + K.cx
    # background point seen from camera 2: where its ray crosses z = 1, relative to the square's edge
    Xc, Yc = 0.5 + (Xw - 0.5) / z, Yw / z
    margin = np.minimum(0.25 - np.abs(Xc), 0.25 - np.abs(Yc)) * K.fx  # > 0: hidden, in pixels at z = 1
    background = z == 2.0
    occluded = background & (margin > 1.0) & (u2 >= 0)
    visible = background & (margin < -1.0) & (u2 >= 1) & (u2 <= 62)
    assert occluded.sum() > 30 and visible.sum() > 300
    assert not valid[occluded].any()
    assert valid[visible].mean() > 0.97
    front = (z == 1.0) & (u2 >= 1)  # the square itself is seen by both cameras
    assert valid[front].mean() > 0.9
    np.testing.assert_allclose(flow[0][valid & front], -16.0, atol=1e-4)  # f b / z = 32 * 0.5 / 1


def test_forward_backward_check_removes_inconsistent_depth():
    """View 2's depth 2.5% too far passes the occlusion test (rel_tol 3%), but mapping back with it
    misses the start by f b (1/2 - 1/2.05) = 0.39 px."""
    f1, f2, bad = plane_frame(0.0), plane_frame(1.0), plane_frame(1.0, depth=2.05)
    _, clean = geometric_flow(f1, f2, fb_tol=0.2)
    _, loose = geometric_flow(f1, bad, fb_tol=1.0)
    _, tight = geometric_flow(f1, bad, fb_tol=0.2)
    assert clean.sum() == 48 * 48 and np.array_equal(loose, clean)
    assert not tight.any()
    with pytest.raises(ValueError, match="fb_tol"):
        geometric_flow(f1, f2, fb_tol=0.0)


def test_resize_flow_scales_a_translation_exactly():
    flow = np.zeros((2, 48, 64), np.float32)
    flow[0], flow[1] = 4.0, -2.0
    valid = np.ones((48, 64), bool)
    valid[:, :8] = False
    out, v = resize_flow(flow, valid, (24, 32))
    assert out.shape == (2, 24, 32) and v.shape == (24, 32)
    np.testing.assert_allclose(out[0][v], 2.0, atol=1e-5)
    np.testing.assert_allclose(out[1][v], -1.0, atol=1e-5)
    assert not v[:, :4].any() and v[:, 4:].all() and (out[:, ~v] == 0).all()
    same, vs = resize_flow(flow, valid, (48, 64))
    assert np.array_equal(same, np.where(valid, flow, 0)) and np.array_equal(vs, valid)


def test_sampler_batches(frames):
    s = FlowPairSampler(frames, batch=3, out_size=(24, 32), gap_min=1, gap_max=3, seed=7)
    b = s(0)
    assert b["x1"].shape == b["x2"].shape == (3, 3, 24, 32) and b["x1"].dtype == torch.float32
    assert 0 <= float(b["x1"].min()) and float(b["x1"].max()) <= 1
    assert b["flow"].shape == b["flow21"].shape == (3, 2, 24, 32) and b["flow"].dtype == torch.float32
    assert b["valid"].shape == b["valid21"].shape == (3, 1, 24, 32) and b["valid"].dtype == torch.bool
    gaps = (b["index1"] - b["index2"]).abs()
    assert ((gaps >= 1) & (gaps <= 3)).all()
    assert b["valid"].any() and b["valid21"].any()
    # deterministic per (seed, step), independent of what was drawn before
    fresh = FlowPairSampler(frames, batch=3, out_size=(24, 32), gap_min=1, gap_max=3, seed=7)
    s(5)
    for k, v in fresh(0).items():
        assert torch.equal(v, b[k]), k
    assert any(not torch.equal(s(step)["index1"], b["index1"]) for step in (1, 2, 3))
    other = FlowPairSampler(frames, batch=3, out_size=(24, 32), gap_min=1, gap_max=3, seed=8)
    assert any(not torch.equal(other(step)["index1"], s(step)["index1"]) for step in (0, 1, 2))
    # at native resolution the flow is geometric_flow's
    native = FlowPairSampler(frames, batch=2, out_size=(48, 64), seed=1, symmetric=False)
    nb = native(0)
    assert "flow21" not in nb
    i, j = int(nb["index1"][0]), int(nb["index2"][0])
    flow, valid = geometric_flow(frames[i], frames[j])
    assert np.array_equal(nb["valid"][0, 0].numpy(), valid)
    np.testing.assert_allclose(nb["flow"][0].numpy(), flow, atol=1e-5)


def test_sampler_argument_checks(frames):
    with pytest.raises(ValueError, match="gap_min"):
        FlowPairSampler(frames, 2, (24, 32), gap_min=0)
    with pytest.raises(ValueError, match="at least"):
        FlowPairSampler(frames[:2], 2, (24, 32), gap_min=2, gap_max=4)
    with pytest.raises(ValueError, match="out_size"):
        FlowPairSampler(frames, 2, (24,))


def test_missing_depth_needs_an_estimator(frames):
    rgb_only = [copy.copy(f) for f in frames]
    for f in rgb_only:
        f.depth = None
    with pytest.raises(ValueError, match="estimator is needed"):
        FlowPairSampler(rgb_only, 2, (24, 32))
    s = FlowPairSampler(rgb_only, 2, (24, 32), estimator=FarnebackFlow(), symmetric=False)
    b = s(0)
    assert b["flow"].shape == (2, 2, 24, 32) and b["valid"].dtype == torch.bool

    def bad(rgb1, rgb2):
        return np.zeros((2, 4, 4), np.float32), np.ones((4, 4), bool)

    with pytest.raises(ValueError, match="expected"):
        FlowPairSampler(rgb_only, 2, (24, 32), estimator=bad)(0)


def test_farneback_recovers_a_translation():
    rng = np.random.default_rng(0)
    noise = torch.from_numpy(rng.random((1, 3, 12, 12)).astype(np.float32))
    tex = torch.nn.functional.interpolate(noise, size=(72, 72), mode="bicubic", align_corners=False)[0]
    img = (tex.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()  # [72, 72, 3] smooth texture
    rgb2 = np.ascontiguousarray(img[4:68, 4:68])
    rgb1 = np.ascontiguousarray(img[3:67, 6:70])  # rgb1(p) = rgb2(p + (2, -1))
    flow, valid = FarnebackFlow()(rgb1, rgb2)
    assert flow.shape == (2, 64, 64) and valid.dtype == bool
    inner = valid[8:-8, 8:-8]
    assert inner.mean() > 0.8
    assert abs(np.median(flow[0, 8:-8, 8:-8][inner]) - 2.0) < 0.25
    assert abs(np.median(flow[1, 8:-8, 8:-8][inner]) + 1.0) < 0.25


def test_sampler_feeds_flowe_and_the_trainer(frames, tmp_path):
    from regconsist_ros.models.deeplab import DeepLabConfig
    from regconsist_ros.models.objectives.flowe import FlowE, FlowEConfig
    from regconsist_ros.learning.trainer import Trainer, TrainerConfig

    torch.manual_seed(0)
    model = FlowE(FlowEConfig(proj_dim=16, hidden=16, scale=(0.8, 1.25), rotation=10.0),
                  DeepLabConfig(width=0.25, aspp_channels=16, decoder_channels=16, num_classes=0, output_stride=8))
    s = FlowPairSampler(frames, batch=2, out_size=(32, 32), gap_min=1, gap_max=2)
    loss, logs = model(s(0))
    assert torch.isfinite(loss) and float(logs["valid_frac"]) > 0.1
    t = Trainer(model, TrainerConfig(steps=2, warmup=0, device="cpu", log_every=1), tmp_path)
    t.fit(s, progress=False)
    assert t.step == 2 and len(t.history) == 2


def test_flow_source_config_checks():
    from regconsist_ros.learning.flow_pairs import FlowSourceConfig

    for bad, field in ((dict(fb_tol=0.0), "fb_tol"), (dict(gap_min=0), "gap_min"), (dict(gap_min=5, gap_max=2), "gap_min")):
        with pytest.raises(ValueError, match=field):
            FlowSourceConfig(**bad)
    assert FlowSourceConfig().source == "geometric"
