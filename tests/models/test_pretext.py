"""Pretext baselines (rotation, SimCLR, BYOL, TCN): losses by hand, rotation helper, BYOL's EMA target,
view augmentation, overfitting a fixed batch, trainer + checkpoint round trip (tiny DeepLabV3+, CPU)."""
import math

import pytest
import torch
import torch.nn.functional as F

from regconsist_ros.models.checkpoint import load_checkpoint
from regconsist_ros.models.deeplab import DeepLabConfig, DeepLabV3Plus
from regconsist_ros.models.augment import PhotometricAug, ViewAugment, random_resized_crop
from regconsist_ros.models.losses import npairs_loss, nt_xent, triplet_loss
from regconsist_ros.models.methods import UnknownMethodError, get, methods
from regconsist_ros.models.objectives.byol import BYOL, BYOLConfig
from regconsist_ros.models.objectives.rotation import RotationConfig, all_rotations, center_crop_square, rotate_images
from regconsist_ros.models.objectives.simclr import SimCLR, SimCLRConfig
from regconsist_ros.models.objectives.tcn import TCN, TCNConfig
from regconsist_ros.learning.trainer import Trainer, TrainerConfig

ENC = DeepLabConfig(width=0.25, aspp_channels=16, decoder_channels=16, num_classes=0)
SMALL = {"rotation": RotationConfig(), "simclr": SimCLRConfig(hidden=32, proj_dim=16),
         "byol": BYOLConfig(hidden=32, proj_dim=16), "tcn": TCNConfig()}
PRETEXT = ("byol", "rotation", "simclr", "tcn")


def _batch(B=4, H=32, W=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"x_t": torch.rand(B, 3, H, W, generator=g), "x_k": torch.rand(B, 3, H, W, generator=g),
            "gap": torch.full((B,), 4)}


def _structured_batch(B=4, S=32, seed=0):
    """Images with a clear 'up' (dark top, bright bottom) plus texture: rotations are learnable."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, S).view(1, 1, S, 1).expand(B, 3, S, S)
    x = (0.7 * ramp + 0.3 * torch.rand(B, 3, S, S, generator=g)).clamp(0, 1)
    return {"x_t": x, "x_k": x.flip(-1), "gap": torch.full((B,), 4)}


def _build(name, cfg=None):
    torch.manual_seed(0)
    return get(name).build(cfg or SMALL[name], ENC)


# ---- interfaces ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PRETEXT))
def test_forward_gives_finite_loss_and_encoder_gradients(name):
    m = _build(name)
    assert m.encoder_kind == "deeplabv3plus" and get(name).batch == "frame_pairs"
    assert m.encoder_config == ENC and isinstance(m.encoder, DeepLabV3Plus) and m.encoder.classifier is None
    loss, logs = m(_batch())
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(torch.isfinite(torch.as_tensor(v)) for v in logs.values())
    loss.backward()
    grads = [p.grad for p in m.encoder.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert m.encoder.backbone.conv1.weight.grad.abs().sum() > 0  # reaches the first layer


def test_logs_and_default_encoder():
    assert set(_build("rotation")(_batch())[1]) == {"rot_ce", "rot_acc"}
    assert set(_build("simclr")(_batch())[1]) == {"nt_xent", "pos_sim"}
    assert set(_build("byol")(_batch())[1]) == {"byol"}
    assert set(_build("tcn")(_batch())[1]) == {"tcn", "tcn_acc"}
    assert DeepLabConfig(num_classes=0).num_classes == 0
    m = TCN(TCNConfig(embed_dim=8))  # default encoder: DeepLabConfig(num_classes=0)
    assert m.encoder_config == DeepLabConfig(num_classes=0) and m.encoder.classifier is None


def test_registry_and_config_validation():
    assert set(PRETEXT) <= set(methods())
    assert isinstance(get("byol").build(None, ENC), BYOL)
    assert isinstance(get("simclr").build(SMALL["simclr"], ENC), SimCLR)
    with pytest.raises(UnknownMethodError, match=r"unknown method 'moco'.*byol.*rotation.*simclr.*tcn"):
        get("moco")
    with pytest.raises(TypeError, match="SimCLRConfig"):
        get("simclr").build(TCNConfig(), ENC)
    for bad in (dict(views="both"), dict(temperature=0), dict(crop_scale=(0.5, 0.2)), dict(hflip=2.0), dict(proj_dim=0)):
        with pytest.raises(ValueError, match="SimCLRConfig"):
            SimCLRConfig(**bad)
    for bad in (dict(ema=1.5), dict(views="both")):
        with pytest.raises(ValueError, match="BYOLConfig"):
            BYOLConfig(**bad)
    for bad in (dict(loss="lifted"), dict(embed_dim=0), dict(margin=-1.0), dict(temperature=-0.1)):
        with pytest.raises(ValueError, match="TCNConfig"):
            TCNConfig(**bad)
    for bad in (dict(rotations="some"), dict(head="conv"), dict(hidden=0)):
        with pytest.raises(ValueError, match="RotationConfig"):
            RotationConfig(**bad)
    assert SimCLRConfig(crop_scale=[0.3, 1]).crop_scale == (0.3, 1.0)


# ---- overfitting a fixed batch ---------------------------------------------------------------------
def _train(m, batch, steps=15, lr=2e-3):
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=lr)
    hist = []
    for step in range(steps):
        loss, logs = m(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if hasattr(m, "after_step"):
            m.after_step(step + 1, steps)
        hist.append({"loss": float(loss.detach()), **{k: float(v) for k, v in logs.items()}})
    return hist


# crop + flip only: with colour jitter, 15 steps on 4 images are dominated by augmentation noise
CROP_ONLY = dict(hidden=32, proj_dim=16, crop_scale=(0.6, 1.0), jitter_p=0.0, gray_p=0.0, blur_p=0.0)


def _smooth_batch(B=4, S=32, seed=0):
    """Distinct low-frequency colour fields (random crops of one still look like it); x_k a perturbed x_t."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(B, 3, 4, 4, generator=g), size=(S, S), mode="bilinear", align_corners=False)
    d = F.interpolate(0.2 * torch.rand(B, 3, 4, 4, generator=g), size=(S, S), mode="bilinear", align_corners=False)
    return {"x_t": x, "x_k": (0.9 * x + d).clamp(0, 1), "gap": torch.full((B,), 4)}


@pytest.mark.parametrize("name,cfg", [
    ("simclr", SimCLRConfig(**CROP_ONLY)),
    ("simclr", SimCLRConfig(views="time", **CROP_ONLY)),
    ("byol", None),
    ("tcn", None),
    ("tcn", TCNConfig(loss="triplet")),
])
def test_loss_decreases_on_a_fixed_batch(name, cfg):
    m = _build(name, cfg)
    hist = _train(m, _smooth_batch())
    first = sum(h["loss"] for h in hist[:3]) / 3
    last = sum(h["loss"] for h in hist[-3:]) / 3
    assert last < 0.8 * first, (name, [round(h["loss"], 3) for h in hist])


def test_rotation_accuracy_rises_on_a_fixed_batch():
    m = _build("rotation")
    hist = _train(m, _structured_batch(), steps=15, lr=3e-3)
    assert hist[0]["rot_acc"] <= 0.5
    assert max(h["rot_acc"] for h in hist[-3:]) > hist[0]["rot_acc"] + 0.3, [h["rot_acc"] for h in hist]
    assert hist[-1]["rot_ce"] < hist[0]["rot_ce"]


# ---- rotation helper ---------------------------------------------------------------------------------
def test_rotation_then_inverse_rotation_is_identity():
    x = torch.rand(8, 3, 6, 6)
    k = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    r = rotate_images(x, k)
    assert torch.equal(r[k == 0], x[k == 0]) and not torch.equal(r[1], x[1])
    assert torch.equal(rotate_images(r, (4 - k) % 4), x)
    # label 1 = 90 degrees counter-clockwise: the top-right pixel goes to the top-left
    e = torch.zeros(1, 1, 3, 3)
    e[0, 0, 0, 2] = 1
    assert rotate_images(e, torch.tensor([1]))[0, 0, 0, 0] == 1
    assert torch.equal(rotate_images(rotate_images(x, torch.full((8,), 2)), torch.full((8,), 2)), x)
    imgs, labels = all_rotations(x[:2])
    assert imgs.shape == (8, 3, 6, 6) and labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert torch.equal(rotate_images(imgs, (4 - labels) % 4), x[:2].repeat(4, 1, 1, 1))
    with pytest.raises(ValueError, match="square"):
        rotate_images(torch.rand(1, 3, 4, 6), torch.tensor([1]))
    with pytest.raises(ValueError, match="0..3"):
        rotate_images(x[:1], torch.tensor([4]))


def test_rotation_handles_non_square_input():
    x = torch.rand(2, 3, 32, 48)
    c = center_crop_square(x)
    assert c.shape == (2, 3, 32, 32) and torch.equal(c, x[..., :, 8:40])
    assert center_crop_square(x.transpose(-1, -2)).shape == (2, 3, 32, 32)
    m = _build("rotation")
    batch = _batch(H=32, W=48)
    imgs, labels = m.rotated_batch(batch)
    assert imgs.shape == (32, 3, 32, 32) and labels.shape == (32,)
    loss, logs = m(batch)
    assert torch.isfinite(loss)
    r = _build("rotation", RotationConfig(rotations="random", head="mlp", hidden=16))
    imgs, labels = r.rotated_batch(batch)
    assert imgs.shape == (8, 3, 32, 32) and set(labels.tolist()) <= {0, 1, 2, 3}
    src = center_crop_square(torch.cat([batch["x_t"], batch["x_k"]]))
    assert torch.equal(rotate_images(imgs, (4 - labels) % 4), src)
    assert torch.isfinite(r(batch)[0])


# ---- BYOL target -------------------------------------------------------------------------------------
def test_byol_target_is_an_ema_without_gradients():
    m = _build("byol")
    targets = list(m.target_encoder.parameters()) + list(m.target_projector.parameters())
    assert targets and not any(p.requires_grad for p in targets)
    trainable = {id(p) for p in m.parameters() if p.requires_grad}
    assert not trainable & {id(p) for p in targets}
    assert {id(p) for p in m.encoder.parameters()} <= trainable and {id(p) for p in m.predictor.parameters()} <= trainable
    # starts as a copy of the online network
    for po, pt in zip(m.encoder.parameters(), m.target_encoder.parameters()):
        assert torch.equal(po, pt)

    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
    loss, _ = m(_batch())
    loss.backward()
    assert all(p.grad is None for p in targets)
    before_t = [p.detach().clone() for p in targets]
    opt.step()
    assert all(torch.equal(p, b) for p, b in zip(targets, before_t))  # the optimiser leaves the target alone
    online = [p.detach().clone() for p in list(m.encoder.parameters()) + list(m.projector.parameters())]
    assert any(not torch.equal(o, b) for o, b in zip(online, before_t))

    step, total = 3, 10
    tau = 1 - (1 - 0.99) * (math.cos(math.pi * step / total) + 1) / 2
    assert m.momentum(step, total) == pytest.approx(tau)
    m.after_step(step, total)
    for p, b, o in zip(targets, before_t, online):
        torch.testing.assert_close(p, tau * b + (1 - tau) * o, rtol=0, atol=1e-6)
    assert any(not torch.equal(p, b) for p, b in zip(targets, before_t))
    for bo, bt in zip(m.encoder.buffers(), m.target_encoder.buffers()):
        assert torch.equal(bo, bt)
    assert m.momentum(0, 10) == pytest.approx(0.99) and m.momentum(10, 10) == 1.0
    snap = [p.detach().clone() for p in targets]
    m.after_step(10, 10)  # tau = 1 at the end: the target stays
    assert all(torch.equal(p, s) for p, s in zip(targets, snap))


def test_trainer_runs_byol_and_checkpoints_the_online_encoder(tmp_path):
    m = _build("byol")
    before = [p.detach().clone() for p in m.target_encoder.parameters()]
    t = Trainer(m, TrainerConfig(steps=2, lr=1e-3, optimizer="adamw", warmup=0, log_every=1, device="cpu"), tmp_path)
    assert {id(p) for g in t.opt.param_groups for p in g["params"]}.isdisjoint(
        {id(p) for p in m.target_encoder.parameters()})
    batch = _batch()
    result = t.fit(lambda step: batch, progress=False)
    assert result["steps"] == 2 and t.history[-1]["byol"] >= 0
    assert any(not torch.equal(p, b) for p, b in zip(m.target_encoder.parameters(), before))  # after_step ran
    enc, info = load_checkpoint(result["checkpoint"])
    assert info["kind"] == "deeplabv3plus" and info["config"] == ENC
    for (k, a), b in zip(enc.state_dict().items(), m.encoder.state_dict().values()):
        assert torch.equal(a, b), k


# ---- losses on hand-made embeddings ----------------------------------------------------------------
def test_nt_xent_prefers_aligned_views_and_matches_a_direct_computation():
    z = F.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    aligned, pos_sim = nt_xent(z, z + 0.01 * torch.randn(6, 8), 0.1)
    shuffled, _ = nt_xent(z, z[torch.tensor([1, 2, 3, 4, 5, 0])], 0.1)
    assert aligned < shuffled and pos_sim > 0.99

    z1 = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    z2 = torch.tensor([[2.0, 1.0], [0.0, 3.0]])  # not unit: nt_xent normalises
    T = 0.5
    u = [v / v.norm() for v in (*z1, *z2)]  # 4 embeddings: views 1 of items 0, 1, then views 2
    total = 0.0
    for i in range(4):
        pos = (i + 2) % 4
        num = math.exp(float(u[i] @ u[pos]) / T)
        den = sum(math.exp(float(u[i] @ u[j]) / T) for j in range(4) if j != i)
        total += -math.log(num / den)
    loss, pos_sim = nt_xent(z1, z2, T)
    assert loss.item() == pytest.approx(total / 4, rel=1e-5)
    assert pos_sim.item() == pytest.approx(float(u[0] @ u[2] + u[1] @ u[3]) / 2, rel=1e-5)


def test_npairs_prefers_aligned_pairs_and_matches_a_direct_computation():
    a = F.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(2)), dim=1)
    aligned, acc = npairs_loss(a, a, 0.1)
    shuffled, acc_s = npairs_loss(a, a[torch.tensor([1, 2, 3, 4, 5, 0])], 0.1)
    assert aligned < shuffled and acc == 1.0 and acc_s < 1.0

    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    p = torch.tensor([[3.0, 1.0], [1.0, 1.0]])
    T = 0.2
    an = [v / v.norm() for v in a]
    pn = [v / v.norm() for v in p]
    total = 0.0
    for i in range(2):
        s = [float(an[i] @ pn[j]) / T for j in range(2)]
        total += math.log(1 + sum(math.exp(s[j] - s[i]) for j in range(2) if j != i))  # Sohn's form
    loss, acc = npairs_loss(a, p, T)
    assert loss.item() == pytest.approx(total / 2, rel=1e-5)
    assert acc.item() == 1.0  # a0 nearest p0 (cos 0.95 vs 0.71), a1 nearest p1 (0.71 vs 0.32)


def test_triplet_loss_matches_a_direct_computation():
    a = F.normalize(torch.randn(4, 5, generator=torch.Generator().manual_seed(3)), dim=1)
    aligned, acc = triplet_loss(a, a, 0.2)
    shuffled, _ = triplet_loss(a, a.roll(1, 0), 0.2)
    assert aligned < shuffled and acc == 1.0

    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 1.0], [-1.0, 1.0]])
    an, pn = F.normalize(a, dim=1), F.normalize(p, dim=1)
    m = 1.5
    terms = []
    for i in range(2):
        j = 1 - i  # negatives: both frames of the other item
        d_ap = float((an[i] - pn[i]).pow(2).sum())
        for neg in (an[j], pn[j]):
            terms.append(max(0.0, d_ap - float((an[i] - neg).pow(2).sum()) + m))
    loss, _ = triplet_loss(a, p, m)
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_block_mates_are_not_negatives():
    g = torch.Generator().manual_seed(4)
    a, p = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    an, pn = F.normalize(a, dim=1), F.normalize(p, dim=1)
    T = 0.3
    total = 0.0
    for i in range(4):
        cands = [j for j in range(4) if j == i or j // 2 != i // 2]
        logits = torch.stack([an[i] @ pn[j] / T for j in cands])
        total += float(-torch.log_softmax(logits, 0)[cands.index(i)])
    loss, _ = npairs_loss(a, p, T, repeats=2)
    assert loss.item() == pytest.approx(total / 4, rel=1e-5)
    # NT-Xent: anchor i (of 2N = 8 views) sees its positive and the views of the other block only
    z1, z2 = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    u = F.normalize(torch.cat([z1, z2]), dim=1)
    total = 0.0
    for i in range(8):
        pos = (i + 4) % 8
        cands = [j for j in range(8) if j == pos or (j % 4) // 2 != (i % 4) // 2]
        logits = torch.stack([u[i] @ u[j] / T for j in cands])
        total += float(-torch.log_softmax(logits, 0)[cands.index(pos)])
    loss, _ = nt_xent(z1, z2, T, repeats=2)
    assert loss.item() == pytest.approx(total / 8, rel=1e-5)
    with pytest.raises(ValueError, match="repeats"):
        nt_xent(z1[:3], z2[:3], T, repeats=2)
    with pytest.raises(ValueError, match="at least 2 blocks"):
        npairs_loss(a, p, T, repeats=4)


# ---- augmentation ------------------------------------------------------------------------------------
def test_view_augment_keeps_shape_and_range_and_is_deterministic():
    x = torch.rand(4, 3, 32, 24)
    aug = SimCLRConfig().augment()
    assert isinstance(aug, ViewAugment) and isinstance(aug.photometric, PhotometricAug)
    y1 = aug(x, torch.Generator().manual_seed(7))
    y2 = aug(x, torch.Generator().manual_seed(7))
    y3 = aug(x, torch.Generator().manual_seed(8))
    assert y1.shape == x.shape and y1.dtype == torch.float32
    assert float(y1.min()) >= 0.0 and float(y1.max()) <= 1.0
    assert torch.equal(y1, y2) and not torch.equal(y1, y3)
    assert not y1.requires_grad


def test_random_resized_crop_identity_and_flip():
    x = torch.rand(3, 3, 16, 20)
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(random_resized_crop(x, (1.0, 1.0), (1.0, 1.0), 0.0, g), x, rtol=0, atol=1e-5)
    torch.testing.assert_close(random_resized_crop(x, (1.0, 1.0), (1.0, 1.0), 1.0, g), x.flip(-1), rtol=0, atol=1e-5)
    y = random_resized_crop(x, (0.2, 0.2), (1.0, 1.0), 0.0, g)
    assert y.shape == x.shape and not torch.allclose(y, x)
    # a crop of a constant-per-column image keeps its columns in order (no flip): monotone ramp stays monotone
    ramp = torch.linspace(0, 1, 20).view(1, 1, 1, 20).expand(2, 3, 16, 20).contiguous()
    r = random_resized_crop(ramp, (0.2, 0.5), (0.75, 1.33), 0.0, g)
    assert (r[..., 1:] - r[..., :-1] >= -1e-6).all()
    assert float(r.min()) >= 0.0 and float(r.max()) <= 1.0


def test_views_modes_use_the_right_frames():
    cfg = dict(hidden=32, proj_dim=16, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=0.0,
               jitter_p=0.0, gray_p=0.0, blur_p=0.0)
    b = _batch()
    m = _build("simclr", SimCLRConfig(**cfg))
    v = m.views(b)
    torch.testing.assert_close(v[:4], b["x_t"], rtol=0, atol=1e-5)
    torch.testing.assert_close(v[4:], b["x_t"], rtol=0, atol=1e-5)
    m = _build("byol", BYOLConfig(views="time", **cfg))
    v = m.views(b)
    torch.testing.assert_close(v[:4], b["x_t"], rtol=0, atol=1e-5)
    torch.testing.assert_close(v[4:], b["x_k"], rtol=0, atol=1e-5)
