"""RSP: representation learning with stochastic frame prediction, plus its MAE auxiliary.

Given a current frame x_t and a future frame x_k (same crop and flip), a ViT encodes both. A
posterior over a latent z is inferred from both [CLS] tokens (the future frame with Gaussian noise
on its normalised pixels) and a prior from the current [CLS] alone; a decoder predicts the future
frame's normalised patches from ``[proj(z); proj(h_t) + pos]``. The KL between posterior and prior
is balanced (DreamerV2) and clipped from below by free bits. An MAE on the future frame (75% of
its patches masked) goes through the same decoder with its own input projection.

    loss = pred + kl_scale * KL_balanced + mae_weight * MAE

Ablations (the paper's Table 3 rows): ``latent="none"`` (deterministic prediction),
``latent="gaussian"`` (diagonal Gaussian latent), ``separate_decoder`` (the MAE branch has its own
decoder), ``mae=False`` (prediction only). The MAE-only baseline is :mod:`regconsist_ros.models.objectives.mae`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from regconsist_ros.models.decoder import CrossDecoder, fill_mask_tokens, patch_targets
from regconsist_ros.models.deeplab import normalize_images
from regconsist_ros.models.methods import VIT_TRAINER, Method
from regconsist_ros.models.vit import ViT, ViTConfig


@dataclass
class RSPConfig:
    """RSP's latent, KL, noise, decoder and MAE settings (paper defaults; decoder size is CPU-tunable)."""

    latent: Literal["categorical", "gaussian", "none"] = field(default="categorical", metadata={"help": "stochastic latent: categorical (paper), gaussian, or none (deterministic ablation)"})
    num_latents: int = field(default=32, metadata={"help": "number of categorical variables (gaussian: dims = num_latents * latent_classes)"})
    latent_classes: int = field(default=32, metadata={"help": "classes per categorical variable"})
    kl_scale: float = field(default=0.01, metadata={"help": "weight of the KL term"})
    kl_balance: float = field(default=0.8, metadata={"help": "KL balancing alpha: weight of KL(sg(post) || prior)"})
    free_bits: float = field(default=0.1, metadata={"help": "free bits: each KL term is max(KL, free_bits)"})
    noise_std: float = field(default=0.5, metadata={"help": "std of Gaussian noise on the normalised future frame (posterior path)"})
    mae: bool = field(default=True, metadata={"help": "auxiliary MAE on the future frame"})
    mae_weight: float = field(default=1.0, metadata={"help": "weight of the MAE loss"})
    mask_ratio: float = field(default=0.75, metadata={"help": "fraction of the future frame's patches masked for MAE"})
    separate_decoder: bool = field(default=False, metadata={"help": "ablation: MAE uses its own decoder"})
    decoder_width: int = field(default=512, metadata={"help": "decoder width"})
    decoder_depth: int = field(default=8, metadata={"help": "decoder blocks (cross-attn -> self-attn -> MLP)"})
    decoder_heads: int = field(default=16, metadata={"help": "decoder attention heads"})
    norm_pix_loss: bool = field(default=True, metadata={"help": "targets are per-patch normalised pixels"})

    def __post_init__(self):
        name = type(self).__name__
        if self.latent not in ("categorical", "gaussian", "none"):
            raise ValueError(f"{name}.latent must be categorical, gaussian or none, got {self.latent!r}")
        for f in ("num_latents", "latent_classes", "decoder_width", "decoder_depth", "decoder_heads"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}.{f} must be an integer >= 1, got {v!r}")
        if self.decoder_width % self.decoder_heads or self.decoder_width % 4:
            raise ValueError(f"{name}.decoder_width {self.decoder_width} must be divisible by 4 and by decoder_heads {self.decoder_heads}")
        for f in ("kl_scale", "free_bits", "noise_std", "mae_weight"):
            if not getattr(self, f) >= 0:
                raise ValueError(f"{name}.{f} must be >= 0, got {getattr(self, f)!r}")
        if not 0.0 <= self.kl_balance <= 1.0:
            raise ValueError(f"{name}.kl_balance must be in [0, 1], got {self.kl_balance!r}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"{name}.mask_ratio must be in (0, 1), got {self.mask_ratio!r}")

    @property
    def latent_dim(self) -> int:
        return self.num_latents * self.latent_classes


# ---- latent distributions --------------------------------------------------------------------------
def categorical_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) of independent categoricals, logits [B, N, C] -> [B] (summed over the N variables)."""
    logp = F.log_softmax(logits_p.float(), -1)
    logq = F.log_softmax(logits_q.float(), -1)
    return (logp.exp() * (logp - logq)).sum((-1, -2))


def gaussian_kl(p: tuple[torch.Tensor, torch.Tensor], q: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """KL(p || q) of diagonal Gaussians given (mean, log_std) [B, K] -> [B]."""
    (mp, lp), (mq, lq) = (t.float() for t in p), (t.float() for t in q)
    return (lq - lp + (torch.exp(2 * lp) + (mp - mq) ** 2) / (2 * torch.exp(2 * lq)) - 0.5).sum(-1)


def balanced_kl(kl_fn, post, prior, alpha: float, free_bits: float) -> tuple[torch.Tensor, torch.Tensor]:
    """KL balancing with free bits (DreamerV2, as in RSP):

        (1 - alpha) * max(mean KL(post || sg(prior)), free) + alpha * max(mean KL(sg(post) || prior), free)

    ``post``/``prior`` are logits (categorical) or (mean, log_std) pairs (Gaussian). Returns
    (loss, raw mean KL(post || prior) for logging)."""
    sg = (lambda d: d.detach()) if torch.is_tensor(post) else (lambda d: tuple(t.detach() for t in d))
    lhs = kl_fn(post, sg(prior)).mean()  # trains the posterior towards the prior
    rhs = kl_fn(sg(post), prior).mean()  # trains the prior towards the posterior
    loss = (1 - alpha) * torch.clamp(lhs, min=free_bits) + alpha * torch.clamp(rhs, min=free_bits)
    return loss, lhs.detach()


def straight_through_onehot(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One-hot samples of categoricals with straight-through gradients: logits [B, N, C] -> [B, N, C].

    Forward value: an exact one-hot sample; backward: the gradient of the softmax probabilities."""
    probs = F.softmax(logits.float(), -1)
    idx = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator).view(probs.shape[:-1])
    onehot = F.one_hot(idx, probs.shape[-1]).to(probs.dtype)
    return (onehot + (probs - probs.detach())).to(logits.dtype)  # exactly one-hot forward


def _mlp(din: int, hidden: int, dout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(din, hidden), nn.GELU(), nn.Linear(hidden, dout))


class RSP(nn.Module):
    """Objective: ``forward({"x_t", "x_k"}) -> (loss, logs)``; ``encoder`` is the ViT readouts use.

    x_t, x_k: float [B, 3, H, W] in [0, 1] (the same crop and flip on both)."""

    encoder_kind = "vit"

    def __init__(self, cfg: RSPConfig | None = None, encoder_cfg: ViTConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or RSPConfig()
        self.encoder_config = encoder_cfg or ViTConfig()
        self.encoder = ViT(self.encoder_config)
        D, Dd = self.encoder.feature_dim, cfg.decoder_width
        ec = self.encoder_config
        out_dim = ec.patch * ec.patch * ec.in_channels
        if cfg.latent == "categorical":
            self.posterior = _mlp(2 * D, 2 * D, cfg.latent_dim)  # -> logits [B, N*C]
            self.prior = _mlp(D, 2 * D, cfg.latent_dim)
        elif cfg.latent == "gaussian":
            self.posterior = _mlp(2 * D, 2 * D, 2 * cfg.latent_dim)  # -> mean, log_std
            self.prior = _mlp(D, 2 * D, 2 * cfg.latent_dim)
        if cfg.latent != "none":
            self.latent_proj = nn.Linear(cfg.latent_dim, Dd)  # z -> one context token
        self.decoder_embed = nn.Linear(D, Dd)  # h_t -> decoder width
        self.decoder = CrossDecoder(Dd, cfg.decoder_depth, cfg.decoder_heads, ec.grid, out_dim)
        if cfg.mae:
            self.mae_embed = nn.Linear(D, Dd)  # the MAE branch's own input projection
            self.mae_decoder = (CrossDecoder(Dd, cfg.decoder_depth, cfg.decoder_heads, ec.grid, out_dim)
                                if cfg.separate_decoder else self.decoder)

    # ---- named stages -------------------------------------------------------------------------------
    def forward_latent(self, h_t: torch.Tensor, h_k: torch.Tensor | None):
        """[CLS] of x_t [B, D] (and of the noisy x_k, or None at inference) -> (z [B, N*C], post, prior).

        With h_k the posterior is sampled (training); without it, the prior (generation)."""
        cfg = self.cfg
        B = h_t.shape[0]
        prior = self.prior(h_t)
        post = self.posterior(torch.cat([h_t, h_k], -1)) if h_k is not None else None
        src = post if post is not None else prior
        if cfg.latent == "categorical":
            prior = prior.view(B, cfg.num_latents, cfg.latent_classes)  # [B, N, C] logits
            src = src.view(B, cfg.num_latents, cfg.latent_classes)
            post = src if post is not None else None
            z = straight_through_onehot(src).flatten(1)  # [B, N*C]
        else:
            prior = tuple(prior.chunk(2, -1))  # (mean, log_std) [B, K] each
            src = tuple(src.chunk(2, -1))
            post = src if post is not None else None
            mean, log_std = src
            z = mean + torch.exp(log_std.clamp(-10, 5)) * torch.randn_like(mean)  # reparameterised [B, K]
        return z, post, prior

    def forward_predict(self, h_t_tokens: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """Encoder tokens of x_t [B, 1 + L, D] and z -> predicted future patches [B, L, p*p*3]."""
        ctx = self.decoder_embed(h_t_tokens) + self.decoder.pos_embed  # [B, 1 + L, Dd]
        if z is not None:
            ctx = torch.cat([self.latent_proj(z)[:, None], ctx], 1)  # [B, 2 + L, Dd]
        return self.decoder(ctx)

    def forward_mae(self, x_k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised x_k -> (predicted patches [B, L, p*p*3], mask [B, L] with 1 = masked)."""
        vis, mask, ids_restore = self.encoder.forward_encoder(x_k, self.cfg.mask_ratio)  # [B, 1 + L_keep, D]
        dec = self.mae_decoder
        ctx = fill_mask_tokens(self.mae_embed(vis), dec.mask_token, ids_restore) + dec.pos_embed  # [B, 1 + L, Dd]
        return dec(ctx), mask

    def forward_loss(self, target: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """MSE per patch against normalised-pixel targets, averaged over all (or the masked) patches."""
        per_patch = ((pred.float() - target) ** 2).mean(-1)  # [B, L]
        if mask is None:
            return per_patch.mean()
        return (per_patch * mask).sum() / mask.sum().clamp(min=1)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        cfg = self.cfg
        x_t = normalize_images(batch["x_t"])  # [B, 3, H, W]
        x_k = normalize_images(batch["x_k"])
        target = patch_targets(self.encoder.patchify(x_k), cfg.norm_pix_loss)  # [B, L, p*p*3]

        logs = {}
        loss = torch.zeros((), device=x_t.device)
        z = None
        if cfg.latent == "none":
            h_t, _, _ = self.encoder.forward_encoder(x_t)  # [B, 1 + L, D]
        else:  # x_t and the noisy x_k through the encoder as one batch (per-sample the same computation)
            noisy = x_k + cfg.noise_std * torch.randn_like(x_k)
            h, _, _ = self.encoder.forward_encoder(torch.cat([x_t, noisy]))  # [2B, 1 + L, D]
            h_t, h_k = h.chunk(2)  # [B, 1 + L, D] each
            z, post, prior = self.forward_latent(h_t[:, 0], h_k[:, 0])
            kl_fn = categorical_kl if cfg.latent == "categorical" else gaussian_kl
            kl_loss, kl = balanced_kl(kl_fn, post, prior, cfg.kl_balance, cfg.free_bits)
            loss = loss + cfg.kl_scale * kl_loss
            logs["kl"] = kl
        pred_loss = self.forward_loss(target, self.forward_predict(h_t, z))
        loss = loss + pred_loss
        logs["pred"] = pred_loss.detach()
        if cfg.mae:
            mae_pred, mask = self.forward_mae(x_k)
            mae_loss = self.forward_loss(target, mae_pred, mask)
            loss = loss + cfg.mae_weight * mae_loss
            logs["mae"] = mae_loss.detach()
        return loss, logs

    @torch.no_grad()
    def diagnostics(self, batch: dict) -> dict[str, torch.Tensor]:
        """Is the latent used? (the trainer calls this on each logged step; the official code logs the same
        pair). On one batch, without gradient: the future-frame prediction loss with z from the posterior
        (``pred_post``, as trained) and with z sampled from the prior (``pred_prior``, as at generation);
        ``latent_gain = pred_prior - pred_post`` (> 0 when the posterior's z tells the decoder something about
        the future that the current frame does not; about 0 when the latent is ignored or the future is
        predictable); the KL(post || prior) in nats; for categorical latents the posterior's mean entropy per
        variable (nats; log C is uniform, 0 a one-hot). The deterministic ablation has only ``pred_post``."""
        cfg = self.cfg
        x_t = normalize_images(batch["x_t"])  # [B, 3, H, W]
        x_k = normalize_images(batch["x_k"])
        target = patch_targets(self.encoder.patchify(x_k), cfg.norm_pix_loss)  # [B, L, p*p*3]
        if cfg.latent == "none":
            h_t, _, _ = self.encoder.forward_encoder(x_t)
            return {"pred_post": self.forward_loss(target, self.forward_predict(h_t, None))}
        noisy = x_k + cfg.noise_std * torch.randn_like(x_k)
        h, _, _ = self.encoder.forward_encoder(torch.cat([x_t, noisy]))  # [2B, 1 + L, D]
        h_t, h_k = h.chunk(2)
        z_post, post, prior = self.forward_latent(h_t[:, 0], h_k[:, 0])
        z_prior, _, _ = self.forward_latent(h_t[:, 0], None)
        pred_post = self.forward_loss(target, self.forward_predict(h_t, z_post))
        pred_prior = self.forward_loss(target, self.forward_predict(h_t, z_prior))
        kl_fn = categorical_kl if cfg.latent == "categorical" else gaussian_kl
        out = {"pred_post": pred_post, "pred_prior": pred_prior, "latent_gain": pred_prior - pred_post,
               "kl": kl_fn(post, prior).mean()}
        if cfg.latent == "categorical":
            logp = F.log_softmax(post.float(), -1)  # [B, N, C]
            out["post_entropy"] = -(logp.exp() * logp).sum(-1).mean()
        return out

    @torch.no_grad()
    def predict_future(self, x_t: torch.Tensor, x_k: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted future frame [B, 3, H, W] in normalised-pixel space per patch (for figures): with
        ``x_k`` from the posterior, without it from the prior."""
        cfg = self.cfg
        h_t, _, _ = self.encoder.forward_encoder(normalize_images(x_t))
        z = None
        if cfg.latent != "none":
            h_k = None
            if x_k is not None:
                h_k = self.encoder.forward_encoder(normalize_images(x_k))[0][:, 0]
            z, _, _ = self.forward_latent(h_t[:, 0], h_k)
        return self.encoder.unpatchify(self.forward_predict(h_t, z))


# ---- pictures ------------------------------------------------------------------------------------------
def prediction_figure(objective: RSP, batch: dict, out_dir, n: int = 4) -> list:
    """RSP's predictions on frame pairs (``batch["x_t"]``, ``batch["x_k"]`` [B, 3, H, W] in [0, 1], and
    ``batch["gap"]``): x_t, x_k, the decoder output with the posterior z and with two prior samples
    (per-patch normalised pixels, shown with the true future patches' mean and std, as MAE's figures)
    -> [``out_dir/rsp_predictions.png``]."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from regconsist_ros.models.deeplab import IMAGENET_MEAN, IMAGENET_STD

    obj = objective.eval()
    x_t, x_k = batch["x_t"][:n], batch["x_k"][:n]
    n = len(x_t)
    torch.manual_seed(0)
    post = obj.predict_future(x_t, x_k)
    priors = [obj.predict_future(x_t) for _ in range(2)]
    target = obj.encoder.patchify(normalize_images(x_k))  # [n, L, p*p*3]
    mean, std = target.mean(-1, keepdim=True), (target.var(-1, keepdim=True) + 1e-6).sqrt()
    m = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    s = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def show(pred, i):  # normalised-pixel prediction [3, H, W] -> RGB [H, W, 3] with x_k's patch mean/std
        patches = obj.encoder.patchify(pred[None])[0] * std[i] + mean[i]
        img = obj.encoder.unpatchify(patches[None])[0] * s + m
        return img.clamp(0, 1).permute(1, 2, 0).numpy()

    cols = ["x_t", "x_t+k", "posterior z", "prior z (1)", "prior z (2)"]
    fig, axes = plt.subplots(n, len(cols), figsize=(2.4 * len(cols), 1.9 * n), squeeze=False)
    for i in range(n):
        imgs = [x_t[i], x_k[i], post[i], priors[0][i], priors[1][i]]
        for j, (img, title) in enumerate(zip(imgs, cols)):
            axes[i][j].imshow(show(img, i) if j > 1 else img.permute(1, 2, 0).numpy())
            axes[i][j].set_axis_off()
            if i == 0:
                axes[i][j].set_title(title, fontsize=9)
        if "gap" in batch:
            axes[i][0].text(2, 10, f"k={int(batch['gap'][i])}", color="w", fontsize=8)
    fig.tight_layout()
    path = Path(out_dir) / "rsp_predictions.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]


METHOD = Method(
    name="rsp", config=RSPConfig, objective=RSP, batch="frame_pairs", encoder=ViTConfig(), trainer=VIT_TRAINER,
    figures=prediction_figure,
    summary="stochastic future-frame prediction with categorical latents + auxiliary MAE, ViT encoder (the seed paper)")
