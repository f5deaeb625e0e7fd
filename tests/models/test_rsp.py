"""RSP objective: KL balancing, straight-through latents, decoders, ablations, overfitting, checkpoints."""
import math

import pytest
import torch

from regconsist_ros.models.checkpoint import load_checkpoint
from regconsist_ros.models.decoder import CrossDecoder, fill_mask_tokens, patch_targets
from regconsist_ros.models.objectives.mae import MAE, MAEConfig
from regconsist_ros.models.objectives.rsp import (RSP, RSPConfig, balanced_kl, categorical_kl, gaussian_kl,
                                   straight_through_onehot)
from regconsist_ros.models.vit import ViT, ViTConfig
from regconsist_ros.learning.trainer import Trainer, TrainerConfig

TINY = dict(size="tiny", img_size=(32, 48), patch=8, depth=1)
SMALL_DEC = dict(decoder_width=64, decoder_depth=1, decoder_heads=4)


def _batch(B=4, H=32, W=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"x_t": torch.rand(B, 3, H, W, generator=g), "x_k": torch.rand(B, 3, H, W, generator=g)}


def test_kl_balancing_matches_a_hand_computation():
    # one variable with two classes: posterior p = (1/3, 2/3), prior q = (1/2, 1/2)
    post = torch.tensor([[[0.0, math.log(2.0)]]], requires_grad=True)
    prior = torch.tensor([[[0.0, 0.0]]], requires_grad=True)
    kl_hand = (1 / 3) * math.log((1 / 3) / 0.5) + (2 / 3) * math.log((2 / 3) / 0.5)
    assert categorical_kl(post, prior).item() == pytest.approx(kl_hand, rel=1e-6)

    loss, raw = balanced_kl(categorical_kl, post, prior, alpha=0.8, free_bits=0.0)
    assert loss.item() == pytest.approx(kl_hand, rel=1e-6)  # 0.2 * KL + 0.8 * KL
    assert raw.item() == pytest.approx(kl_hand, rel=1e-6)
    loss.backward()
    # the balancing splits the gradient: 0.2 of d KL / d post, 0.8 of d KL / d prior
    p2 = post.detach().clone().requires_grad_()
    q2 = prior.detach().clone().requires_grad_()
    categorical_kl(p2, q2).sum().backward()
    assert torch.allclose(post.grad, 0.2 * p2.grad, atol=1e-7)
    assert torch.allclose(prior.grad, 0.8 * q2.grad, atol=1e-7)
    # by hand: d KL / d prior_logits = q - p  ->  0.8 * (1/2 - 1/3, 1/2 - 2/3)
    assert torch.allclose(prior.grad, torch.tensor([[[0.8 * (0.5 - 1 / 3), 0.8 * (0.5 - 2 / 3)]]]), atol=1e-6)


def test_free_bits_clip_the_kl_from_below_and_stop_its_gradient():
    post = torch.tensor([[[0.0, 0.1]]], requires_grad=True)
    prior = torch.tensor([[[0.0, 0.0]]], requires_grad=True)
    kl = categorical_kl(post, prior).item()
    assert kl < 0.1
    loss, raw = balanced_kl(categorical_kl, post, prior, alpha=0.8, free_bits=0.1)
    assert loss.item() == pytest.approx(0.1) and raw.item() == pytest.approx(kl)
    loss.backward()
    assert post.grad.abs().sum() == 0 and prior.grad.abs().sum() == 0


def test_gaussian_kl_matches_the_closed_form():
    mp, lp = torch.tensor([[0.5, -1.0]]), torch.log(torch.tensor([[2.0, 0.5]]))
    mq, lq = torch.zeros(1, 2), torch.zeros(1, 2)
    hand = sum(math.log(1 / s) + (s * s + m * m) / 2 - 0.5 for m, s in ((0.5, 2.0), (-1.0, 0.5)))
    assert gaussian_kl((mp, lp), (mq, lq)).item() == pytest.approx(hand, rel=1e-6)
    assert gaussian_kl((mq, lq), (mq, lq)).item() == pytest.approx(0.0, abs=1e-7)


def test_straight_through_samples_are_one_hot_and_pass_gradients_to_the_logits():
    torch.manual_seed(0)
    logits = torch.randn(5, 32, 32, requires_grad=True)
    z = straight_through_onehot(logits)
    assert z.shape == (5, 32, 32)
    assert torch.equal(z.detach().sum(-1), torch.ones(5, 32))
    assert set(z.detach().unique().tolist()) <= {0.0, 1.0}
    (z * torch.randn(5, 32, 32)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    # samples follow the distribution: a heavily favoured class is drawn almost always
    biased = torch.zeros(2000, 1, 4)
    biased[..., 2] = 5.0
    frac = straight_through_onehot(biased)[..., 2].mean().item()
    assert 0.9 < frac < 0.99  # p = e^5 / (e^5 + 3) = 0.98


def test_fill_mask_tokens_restores_patch_order():
    B, L, D = 2, 6, 3
    x = torch.arange(B * (1 + L) * D, dtype=torch.float32).view(B, 1 + L, D)
    vit = ViT(ViTConfig(size="tiny", img_size=(16, 24), patch=8, depth=1))
    kept, mask, ids_restore = vit.random_masking(x[:, 1:], 0.5, torch.Generator().manual_seed(0))
    vis = torch.cat([x[:, :1], kept], 1)
    token = torch.full((1, 1, D), -1.0)
    full = fill_mask_tokens(vis, token, ids_restore)  # [B, 1 + L, D]
    assert full.shape == (B, 1 + L, D)
    assert torch.equal(full[:, 0], x[:, 0])
    keep = mask == 0
    assert torch.equal(full[:, 1:][keep], x[:, 1:][keep])
    assert (full[:, 1:][~keep] == -1).all()


def test_patch_targets_are_standardised_per_patch():
    t = patch_targets(torch.rand(2, 5, 48) * 3 + 1)
    assert torch.allclose(t.mean(-1), torch.zeros(2, 5), atol=1e-5)
    assert torch.allclose(t.var(-1), torch.ones(2, 5), atol=1e-3)


@pytest.mark.parametrize("size", ["tiny", "small", "base"])
@pytest.mark.parametrize("latent", ["categorical", "gaussian", "none"])
def test_shapes_for_every_size_and_latent(size, latent):
    ec = ViTConfig(size=size, img_size=(32, 48), patch=16, depth=1)
    obj = RSP(RSPConfig(latent=latent, **SMALL_DEC), ec)
    b = _batch()
    loss, logs = obj(b)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert set(logs) == ({"pred", "mae"} | ({"kl"} if latent != "none" else set()))
    h = obj.encoder.forward_encoder(b["x_t"])[0]
    assert h.shape == (4, 1 + 6, ec.width)
    z = None
    if latent != "none":
        z, post, prior = obj.forward_latent(h[:, 0], h[:, 0])
        assert z.shape == (4, 32 * 32)
    assert obj.forward_predict(h, z).shape == (4, 6, 16 * 16 * 3)
    pred, mask = obj.forward_mae(b["x_k"])
    assert pred.shape == (4, 6, 768) and mask.shape == (4, 6)
    assert obj.predict_future(b["x_t"]).shape == (4, 3, 32, 48)


def test_ablation_flags_change_the_model():
    ec = ViTConfig(**TINY)
    shared = RSP(RSPConfig(**SMALL_DEC), ec)
    assert shared.mae_decoder is shared.decoder
    separate = RSP(RSPConfig(separate_decoder=True, **SMALL_DEC), ec)
    assert separate.mae_decoder is not separate.decoder
    assert sum(p.numel() for p in separate.parameters()) > sum(p.numel() for p in shared.parameters())
    no_mae = RSP(RSPConfig(mae=False, **SMALL_DEC), ec)
    assert not hasattr(no_mae, "mae_embed")
    assert "mae" not in no_mae(_batch())[1]
    det = RSP(RSPConfig(latent="none", **SMALL_DEC), ec)
    assert not hasattr(det, "posterior") and "kl" not in det(_batch())[1]


def test_noise_only_feeds_the_posterior_path():
    torch.manual_seed(0)
    obj = RSP(RSPConfig(**SMALL_DEC, mae=False), ViTConfig(**TINY))
    seen = []
    orig = obj.encoder.forward_encoder

    def spy(x, *a, **k):
        seen.append(x.detach().clone())
        return orig(x, *a, **k)

    obj.encoder.forward_encoder = spy
    b = _batch()
    obj(b)
    from regconsist_ros.models.deeplab import normalize_images
    assert len(seen) == 1  # x_t and the noisy x_k go through the encoder as one batch
    x_t, noisy = seen[0].chunk(2)
    assert torch.allclose(x_t, normalize_images(b["x_t"]))  # current frame: clean
    noise = noisy - normalize_images(b["x_k"])  # future frame: noisy, sigma 0.5
    assert 0.45 < noise.std().item() < 0.55


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="latent"):
        RSPConfig(latent="vq")
    with pytest.raises(ValueError, match="kl_balance"):
        RSPConfig(kl_balance=1.5)
    with pytest.raises(ValueError, match="decoder_width"):
        RSPConfig(decoder_width=100, decoder_heads=16)
    with pytest.raises(ValueError, match="mask_ratio"):
        MAEConfig(mask_ratio=1.0)


@pytest.mark.parametrize("make,factor", [
    (lambda ec: RSP(RSPConfig(decoder_width=64, decoder_depth=2, decoder_heads=4), ec), 3.0),
    # MAE sees a new random mask every step, so it memorises more slowly (measured: 1.6-1.8x)
    (lambda ec: MAE(MAEConfig(decoder_width=64, decoder_depth=2, decoder_heads=4), ec), 1.4),
], ids=["rsp", "mae"])
def test_a_tiny_run_overfits_a_handful_of_pairs(make, factor, tmp_path):
    """Four fixed pairs of structured images: the loss must fall by the stated factor in 150 steps."""
    torch.manual_seed(0)
    H, W = 32, 32
    yy, xx = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    imgs = torch.stack([torch.stack([torch.sin(6 * xx + i), torch.cos(5 * yy - i), (xx * yy + 0.2 * i) % 1]) * 0.5 + 0.5
                        for i in range(8)])  # [8, 3, H, W]
    batch = {"x_t": imgs[:4], "x_k": imgs[4:]}
    obj = make(ViTConfig(size="tiny", img_size=(H, W), patch=8, depth=2))
    t = Trainer(obj, TrainerConfig(steps=150, lr=2e-3, optimizer="adamw", weight_decay=0.0, warmup=10,
                                   log_every=5, grad_clip=1.0), tmp_path)
    t.fit(lambda step: batch, progress=False)
    first = t.history[0]["loss"]
    last = min(r["loss"] for r in t.history[-3:])
    assert last < first / factor, (first, last)


def test_checkpoint_round_trip_and_resume_are_bit_exact(tmp_path):
    ec = ViTConfig(**TINY)
    cfg = TrainerConfig(steps=6, lr=1e-3, optimizer="adamw", warmup=2, log_every=1, ckpt_every=3)

    def batch(step):
        return _batch(seed=step)

    torch.manual_seed(0)
    full = Trainer(RSP(RSPConfig(**SMALL_DEC), ec), cfg, tmp_path / "a")
    full.fit(batch, progress=False)

    torch.manual_seed(0)
    part = Trainer(RSP(RSPConfig(**SMALL_DEC), ec), cfg, tmp_path / "b")
    part.fit(batch, progress=False, until=3)
    torch.manual_seed(123)  # a different process state: resume must restore everything
    resumed = Trainer(RSP(RSPConfig(**SMALL_DEC), ec), cfg, tmp_path / "b")
    assert resumed.resume() and resumed.step == 3
    resumed.fit(batch, progress=False)
    for (k, a), (_, b) in zip(full.objective.state_dict().items(), resumed.objective.state_dict().items()):
        assert torch.equal(a, b), k

    enc, info = load_checkpoint(tmp_path / "a" / "checkpoints" / "step_00000006")
    assert info["kind"] == "vit" and info["config"] == ec and info["step"] == 6
    x = _batch()["x_t"]
    full.objective.encoder.eval()
    assert torch.equal(enc(x)["cls"], full.objective.encoder(x)["cls"])
    for k, v in full.objective.encoder.state_dict().items():
        assert torch.equal(enc.state_dict()[k], v), k


def test_vit_runs_at_other_multiples_of_the_patch():
    vit = ViT(ViTConfig(**TINY)).eval()
    out = vit(torch.rand(2, 3, 64, 96))
    assert out["patches"].shape == (2, 8 * 12, 192)
    # the trained size still uses the stored positions
    assert torch.equal(vit.pos_for((32, 48)), vit.pos_embed)
    with pytest.raises(ValueError, match="multiple of the patch"):
        vit(torch.rand(1, 3, 30, 48))


def test_cross_decoder_output_depends_on_the_context():
    dec = CrossDecoder(32, 1, 4, (2, 3), 12)
    a = dec(torch.randn(2, 5, 32))
    b = dec(torch.randn(2, 5, 32))
    assert a.shape == (2, 6, 12) and not torch.allclose(a, b)


def test_one_encoder_batch_gives_the_loss_of_two_separate_passes():
    """The speed-up that encodes x_t and the noisy x_k as one batch leaves the loss and gradients unchanged:
    the same seed gives the loss of the former two passes (recomputed here stage by stage)."""
    from regconsist_ros.models.deeplab import normalize_images

    torch.manual_seed(0)
    obj = RSP(RSPConfig(**SMALL_DEC), ViTConfig(**TINY)).train()
    b = _batch()
    torch.manual_seed(7)
    loss, logs = obj(b)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in obj.named_parameters() if p.grad is not None}
    obj.zero_grad()

    torch.manual_seed(7)  # the former forward: x_t, then the noisy x_k, each through the encoder alone
    cfg = obj.cfg
    x_t, x_k = normalize_images(b["x_t"]), normalize_images(b["x_k"])
    target = patch_targets(obj.encoder.patchify(x_k))
    h_t = obj.encoder.forward_encoder(x_t)[0]
    noisy = x_k + cfg.noise_std * torch.randn_like(x_k)
    h_k = obj.encoder.forward_encoder(noisy)[0]
    z, post, prior = obj.forward_latent(h_t[:, 0], h_k[:, 0])
    kl_loss, kl = balanced_kl(categorical_kl, post, prior, cfg.kl_balance, cfg.free_bits)
    pred = obj.forward_loss(target, obj.forward_predict(h_t, z))
    mae_pred, mask = obj.forward_mae(x_k)
    ref = cfg.kl_scale * kl_loss + pred + cfg.mae_weight * obj.forward_loss(target, mae_pred, mask)
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logs["kl"], kl, rtol=1e-5, atol=1e-6)
    for n, p in obj.named_parameters():
        if n in grads:
            torch.testing.assert_close(grads[n], p.grad, rtol=1e-4, atol=1e-6, msg=n)


def test_diagnostics_compare_posterior_and_prior_predictions():
    """The latent diagnostics: a decoder that ignores z gains exactly nothing from the posterior; a posterior
    with constant logits is uniform (entropy log C); the deterministic ablation reports only its loss."""
    torch.manual_seed(0)
    obj = RSP(RSPConfig(**SMALL_DEC), ViTConfig(**TINY))
    d = obj.diagnostics(_batch())
    assert set(d) == {"pred_post", "pred_prior", "latent_gain", "kl", "post_entropy"}
    assert torch.isclose(d["latent_gain"], d["pred_prior"] - d["pred_post"])
    assert d["kl"] >= 0 and 0 <= d["post_entropy"] <= math.log(32) + 1e-5
    with torch.no_grad():
        obj.latent_proj.weight.zero_(), obj.latent_proj.bias.zero_()  # z no longer reaches the decoder
        obj.posterior[-1].weight.zero_(), obj.posterior[-1].bias.zero_()  # uniform posterior
    d = obj.diagnostics(_batch())
    assert d["latent_gain"] == 0 and d["pred_post"] > 0
    assert math.isclose(float(d["post_entropy"]), math.log(32), rel_tol=1e-5)
    det = RSP(RSPConfig(latent="none", **SMALL_DEC), ViTConfig(**TINY)).diagnostics(_batch())
    assert set(det) == {"pred_post"}


def test_the_trainer_logs_diagnostics_without_changing_the_training(tmp_path):
    """Logged rows at least 10 steps apart (and the last) carry ``diag_*`` columns; the diagnostics draw their
    own random numbers, so a run with them ends bit-identical to one without."""
    ec = ViTConfig(**TINY)
    cfg = TrainerConfig(steps=25, lr=1e-3, optimizer="adamw", warmup=2, log_every=5)
    runs = []
    for diagnose in (True, False):
        torch.manual_seed(0)
        obj = RSP(RSPConfig(**SMALL_DEC), ec)
        t = Trainer(obj, cfg, tmp_path / str(diagnose), diagnostics=diagnose)
        t.fit(lambda step: _batch(seed=step), progress=False)
        runs.append(t)
    with_diag, without = runs
    assert [r["step"] for r in with_diag.history] == [5, 10, 15, 20, 25]
    diagnosed = [r["step"] for r in with_diag.history if {"diag_pred_post", "diag_pred_prior", "diag_latent_gain",
                                                           "diag_kl"} <= set(r)]
    assert diagnosed == [5, 15, 25]
    assert not any(k.startswith("diag_") for r in without.history for k in r)
    assert [r["loss"] for r in with_diag.history] == [r["loss"] for r in without.history]
    for (k, a), (_, b) in zip(with_diag.objective.state_dict().items(), without.objective.state_dict().items()):
        assert torch.equal(a, b), k


def test_diagnostics_keep_their_spacing_across_the_slices_of_an_online_learner(tmp_path):
    """An online learner trains in slices of a few steps (``fit(until=...)``): the diagnostics still run at most
    once in 10 steps, not at the end of every slice."""
    cfg = TrainerConfig(steps=40, lr=1e-3, optimizer="adamw", warmup=2, log_every=1)
    torch.manual_seed(0)
    t = Trainer(RSP(RSPConfig(**SMALL_DEC), ViTConfig(**TINY)), cfg, None)
    for end in range(5, 30, 5):
        t.fit(lambda step: _batch(seed=step), progress=False, until=end, checkpoint=False)
    assert [r["step"] for r in t.history if "diag_pred_post" in r] == [1, 11, 21]


def test_a_failing_diagnostic_is_logged_and_switched_off_not_fatal(tmp_path, caplog):
    cfg = TrainerConfig(steps=25, lr=1e-3, optimizer="adamw", warmup=2, log_every=5)
    torch.manual_seed(0)
    obj = RSP(RSPConfig(**SMALL_DEC), ViTConfig(**TINY))
    calls = []

    def broken(batch):
        calls.append(1)
        raise RuntimeError("out of memory")

    obj.diagnostics = broken
    t = Trainer(obj, cfg, None)
    with caplog.at_level("WARNING"):
        t.fit(lambda step: _batch(seed=step), progress=False, checkpoint=False)
    assert t.step == 25 and len(calls) == 1 and "diagnostics failed" in caplog.text
    assert not any(k.startswith("diag_") for r in t.history for k in r)
