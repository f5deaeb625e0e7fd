"""The frozen dense linear probe and the segmentation network around any encoder."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from regconsist_ros.models.encoder import random_encoder
from regconsist_ros.models.vit import ViTConfig
from regconsist_ros.readout.dense_probe import (ProbeConfig, Segmenter, fit_probes, inner_encoder, pixel_features,
                                                run_linear_probe, segmentation_network, three_way_split)
from regconsist_ros.readout.segmentation import FinetuneConfig, finetune


def test_pixel_features_are_the_upsampled_grid_at_those_pixels():
    feats = torch.randn(2, 5, 3, 4)  # [N, D, h, w]
    y = torch.randint(1, 4, (2, 12, 16))
    y[0, :2] = 0  # some void
    px, py = pixel_features(feats, y, per_view=50, seed=0)
    up = F.interpolate(feats, size=(12, 16), mode="bilinear", align_corners=False)  # [2, 5, 12, 16]
    # find each sampled pixel in the upsampled map: its feature vector must be there exactly
    flat = up.permute(0, 2, 3, 1).reshape(-1, 5)
    d = torch.cdist(px, flat, compute_mode="donot_use_mm_for_euclid_dist").min(1).values
    assert d.max() < 1e-5
    assert px.shape == (100, 5) and bool((py != 0).all())


def _toy_views(n=12, H=16, W=16, C=3, seed=0):
    """Views whose class is a linear function of a dense feature: a perfect probe exists."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(1, C + 1, (n, H // 4, W // 4), generator=g)
    feats = F.one_hot(y, C + 1).permute(0, 3, 1, 2).float() + 0.05 * torch.randn(n, C + 1, H // 4, W // 4, generator=g)
    labels = y.repeat_interleave(4, 1).repeat_interleave(4, 2)  # [n, H, W]
    return feats, labels


def test_a_linear_code_is_read_out_and_noise_is_not():
    feats, y = _toy_views()
    rgb = np.zeros((12, 16, 16, 3), np.uint8)
    good = run_linear_probe(None, rgb, y.numpy(), 4, ProbeConfig(labels=0.3, steps=150), feats=feats)
    noise = run_linear_probe(None, rgb, y.numpy(), 4, ProbeConfig(labels=0.3, steps=150), feats=torch.randn_like(feats))
    assert good["miou"] > 0.9
    assert noise["miou"] < 0.6
    assert good["n_train"] + good["n_val"] + good["n_test"] == 12
    assert set(good["val"]) == {str(w) for w in ProbeConfig().weight_decays}


def test_the_sweep_trains_each_probe_as_if_alone():
    feats, y = _toy_views(n=6)
    cfg = ProbeConfig(steps=20)
    both = fit_probes(feats, y, 4, (1e-4, 0.5), cfg)
    alone = fit_probes(feats, y, 4, (0.5,), cfg)
    assert torch.allclose(both[0.5].head.weight, alone[0.5].head.weight, atol=1e-5)
    assert not torch.allclose(both[0.5].head.weight, both[1e-4].head.weight)


def test_train_validation_and_test_views_never_overlap():
    for n in (3, 10, 57):
        tr, va, te = three_way_split(n, ProbeConfig(labels=0.1, val=0.25, seed=3))
        assert len(tr) and len(va) and len(te)
        assert not (set(tr) & set(va) or set(tr) & set(te) or set(va) & set(te))
        assert sorted([*tr, *va, *te]) == list(range(n))
    with pytest.raises(ValueError, match=">= 3"):
        three_way_split(2, ProbeConfig())


def test_a_vit_is_fine_tuned_through_a_segmenter():
    vit = random_encoder("vit", ViTConfig(size="tiny", depth=1, img_size=(32, 32), patch=16))
    net = segmentation_network(vit)
    assert isinstance(net, Segmenter) and inner_encoder(net) is vit
    x = torch.rand(4, 3, 32, 32)
    y = torch.randint(0, 3, (4, 32, 32))
    before = [p.detach().clone() for p in vit.parameters()]
    net, hist = finetune(net, x, y, FinetuneConfig(steps=3, batch=2, warmup=1, optimizer="adamw", lr=1e-3,
                                                   schedule="poly"), 3, progress=False)
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 2, 2)
    assert any(not torch.equal(a, b) for a, b in zip(before, vit.parameters()))  # the encoder itself trained
    assert [h["lr"] for h in hist][-1] < hist[1]["lr"]
    deeplab = random_encoder("deeplabv3plus", {"width": 0.25, "aspp_channels": 16, "decoder_channels": 16})
    assert segmentation_network(deeplab) is deeplab  # DeepLabV3+ keeps its own head


def test_probe_settings_are_validated():
    with pytest.raises(ValueError, match="labels"):
        ProbeConfig(labels=1.5)
    with pytest.raises(ValueError, match="weight_decays"):
        ProbeConfig(weight_decays=())
    with pytest.raises(ValueError, match="pixels"):
        ProbeConfig(pixels=0)


def test_the_finetuning_curve_is_measured_in_one_run_at_each_point():
    from regconsist_ros.readout.dense_probe import finetune_curve

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    sem = (rgb[..., 0] > 127).astype(np.int64) + 1  # class = bright red or not: learnable from colour
    vit = random_encoder("vit", ViTConfig(size="tiny", depth=1, img_size=(32, 32), patch=8))
    cfg = FinetuneConfig(labels=0.5, steps=1, batch=4, lr=3e-3, optimizer="adamw", warmup=1, schedule="poly",
                         weight_decay=5e-4)
    r = finetune_curve(vit, rgb, sem, 3, cfg, points=(2, 6, 12))
    assert r["steps"] == [2, 6, 12] and len(r["miou"]) == 3
    assert all(0 <= m <= 1 for m in r["miou"]) and r["config"]["steps"] == 12
    assert r["n_train"] + r["n_test"] == 10
    with pytest.raises(ValueError, match="points"):
        finetune_curve(vit, rgb, sem, 3, cfg, points=(0,))
