"""Trainer, augmentation, view-pair data and the RegConsist objective, on tiny rendered data."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from regconsist_ros.models.deeplab import DeepLabConfig
from regconsist_ros.models.objectives.regconsist import RegConsist, RegConsistConfig, gather_features
from regconsist_ros.models.augment import PhotometricAug, hflip_with_points
from regconsist_ros.learning.datasets import ViewPairBatchConfig, ViewPairData
from regconsist_ros.learning.trainer import Trainer, TrainerConfig, lr_at
from regconsist_ros.registration.sampling import SamplingConfig
from regconsist_ros.sim.source import SimConfig, SimSource

TINY = replace(DeepLabConfig.small(), width=0.25, aspp_channels=32, decoder_channels=32)


@pytest.fixture(scope="module")
def frames():
    src = SimSource(SimConfig(seed=1, frames=24, width=64, height=48))
    return [src[i] for i in range(len(src))]


@pytest.fixture(scope="module")
def data(frames, tmp_path_factory):
    return ViewPairData(frames, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    cfg = TrainerConfig(steps=100, lr=0.1, warmup=10, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lr_at(100, cfg) == pytest.approx(0.01)


def test_hflip_moves_points_with_the_pixels():
    x = torch.rand(3, 3, 5, 7)
    pts = torch.tensor([[[0, 0], [6, 4], [3, 2]]] * 3)
    flip = torch.tensor([True, False, True])
    y, q = hflip_with_points(x, pts, flip)
    for b in range(3):
        for (px, py), (qx, qy) in zip(pts[b].tolist(), q[b].tolist()):
            assert torch.equal(x[b, :, py, px], y[b, :, qy, qx])  # the same pixel content follows the point
    assert torch.equal(q[1], pts[1])


def test_photometric_aug_keeps_shape_range_and_geometry():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 16, 16)
    for aug in (PhotometricAug.strong(), PhotometricAug.weak()):
        y = aug(x, g)
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    # weak changes the image less than strong on average
    d_strong = (PhotometricAug.strong()(x, torch.Generator().manual_seed(1)) - x).abs().mean()
    d_weak = (PhotometricAug.weak()(x, torch.Generator().manual_seed(1)) - x).abs().mean()
    assert d_weak < d_strong


def test_gather_features_equals_nearest_resize_of_the_feature_map():
    feat = torch.randn(2, 5, 6, 8)  # stride-4 map of a 24 x 32 image
    H, W = 24, 32
    dense = F.interpolate(feat, size=(H, W), mode="nearest")  # what the paper resizes to
    pts = torch.stack([torch.randint(0, W, (2, 50)), torch.randint(0, H, (2, 50))], -1)
    valid = torch.rand(2, 50) > 0.3
    got = gather_features(feat, pts, valid, (H, W))
    b = torch.arange(2).view(2, 1).expand(2, 50)[valid]
    want = dense.permute(0, 2, 3, 1)[b, pts[..., 1][valid], pts[..., 0][valid]]
    assert torch.equal(got, want)


def test_view_pair_batches_have_consistent_shapes_and_cache(data, frames, tmp_path):
    rng = np.random.default_rng(0)
    b = data.sample_batch(4, 256, SamplingConfig(), rng)
    assert b["x1"].shape == (4, 3, 48, 64) and b["p"].shape == (4, 64, 2) and b["valid"].dtype == torch.bool
    assert b["valid"].any(1).all()
    assert (b["p"][..., 0] < 64).all() and (b["p"][..., 1] < 48).all()
    # the pair list and regions were cached: a second dataset reads them instead of recomputing
    files = sorted(p.name for p in data.cache_dir.iterdir())
    assert any(f.startswith("pairs_") for f in files) and any(f.startswith("regions_") for f in files)
    again = ViewPairData(frames, cache_dir=data.cache_dir, progress=False)
    assert again.pairs == data.pairs and all(np.array_equal(a, c) for a, c in zip(again.labels, data.labels))


def test_exact_pixel_pairs_look_at_the_same_surface(data, frames):
    """Without augmentation, exact pairs land on the same instance in both views (>= 97% at 64x48)."""
    same, n = 0, 0
    for k in range(min(20, len(data))):
        p, q = data.pixel_pairs(k, 200, SamplingConfig(sampling="random", matching="exact"), np.random.default_rng(k))
        f1, f2 = frames[data.pairs[k].i], frames[data.pairs[k].j]
        same += int((f1.instance[p[:, 1], p[:, 0]] == f2.instance[q[:, 1], q[:, 0]]).sum())
        n += len(p)
    assert n > 0 and same / n >= 0.97, same / n


def test_regconsist_loss_is_finite_and_trains_the_encoder(data):
    torch.manual_seed(0)
    obj = RegConsist(RegConsistConfig(), TINY)
    b = data.sample_batch(2, 128, SamplingConfig(), np.random.default_rng(1))
    loss, logs = obj(b)
    assert torch.isfinite(loss) and logs["pixel_pairs"] > 0
    loss.backward()
    grads = [p.grad for p in obj.encoder.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_trainer_resume_matches_an_uninterrupted_run(data, tmp_path):
    """Stop at step 3 and resume to 6: same weights as 6 steps in one go (batches are a function of the step)."""
    rc = RegConsistConfig()

    def run(out, until, resume):
        torch.manual_seed(0)
        obj = RegConsist(rc, TINY)
        t = Trainer(obj, TrainerConfig(steps=6, lr=0.01, warmup=1, log_every=1, device="cpu"), out)
        if resume:
            assert t.resume() and t.step == 3
        t.fit(lambda s: data.sample_batch(2, 64, SamplingConfig(), np.random.default_rng([0, s])), progress=False,
              until=until)
        return obj

    a = run(tmp_path / "a", None, False)
    run(tmp_path / "b", 3, False)  # interrupted after step 3 (a checkpoint is written)
    b = run(tmp_path / "b", None, True)
    for (n1, p1), (n2, p2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(p1.float(), p2.float(), atol=1e-6), n1
    rows = [json.loads(l) for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 7))


def test_trainer_config_rejects_bad_values():
    with pytest.raises(ValueError, match="steps"):
        TrainerConfig(steps=0)
    with pytest.raises(ValueError, match="lr"):
        TrainerConfig(lr=0)
    with pytest.raises(ValueError, match="pixel_pairs"):
        ViewPairBatchConfig(size=8, pixel_pairs=8)
    with pytest.raises(ValueError, match="lambd"):
        RegConsistConfig(lambd=-1.0)


def test_poly_schedule_warms_up_then_decays_as_deeplab():
    from regconsist_ros.learning.trainer import warmup_poly

    cfg = TrainerConfig(steps=100, lr=0.01, warmup=10, schedule="poly")
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[9] == pytest.approx(0.01)
    assert lrs[55] == pytest.approx(0.01 * (1 - 45 / 90) ** 0.9)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert warmup_poly(100, 0.01, 10, 100) == 0.0
    with pytest.raises(ValueError, match="schedule"):
        TrainerConfig(schedule="step")
