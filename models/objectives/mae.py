"""MAE baseline: masked autoencoding of single frames (He et al.), the RSP paper's MAE row.

75% of the patches are masked, the visible ones encoded by the ViT, and a self-attention decoder
(visible tokens with mask tokens filled in, plus positions) predicts the normalised pixels of the
masked patches. Batches are the same frame pairs RSP uses; MAE trains on both frames
independently (``x_t`` and ``x_k`` concatenated), so it sees the same images per step as RSP.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from regconsist_ros.models.decoder import SelfDecoder, fill_mask_tokens, patch_targets
from regconsist_ros.models.deeplab import normalize_images
from regconsist_ros.models.methods import VIT_TRAINER, Method
from regconsist_ros.models.vit import ViT, ViTConfig


@dataclass
class MAEConfig:
    """MAE settings (paper defaults; the decoder size is CPU-tunable)."""

    mask_ratio: float = field(default=0.75, metadata={"help": "fraction of patches masked"})
    decoder_width: int = field(default=512, metadata={"help": "decoder width"})
    decoder_depth: int = field(default=8, metadata={"help": "decoder self-attention blocks"})
    decoder_heads: int = field(default=16, metadata={"help": "decoder attention heads"})
    norm_pix_loss: bool = field(default=True, metadata={"help": "targets are per-patch normalised pixels"})

    def __post_init__(self):
        name = type(self).__name__
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"{name}.mask_ratio must be in (0, 1), got {self.mask_ratio!r}")
        for f in ("decoder_width", "decoder_depth", "decoder_heads"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}.{f} must be an integer >= 1, got {v!r}")
        if self.decoder_width % self.decoder_heads or self.decoder_width % 4:
            raise ValueError(f"{name}.decoder_width {self.decoder_width} must be divisible by 4 and by decoder_heads {self.decoder_heads}")


class MAE(nn.Module):
    """Objective: ``forward({"x_t"[, "x_k"]}) -> (loss, logs)``; ``encoder`` is the ViT readouts use."""

    encoder_kind = "vit"

    def __init__(self, cfg: MAEConfig | None = None, encoder_cfg: ViTConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or MAEConfig()
        self.encoder_config = ec = encoder_cfg or ViTConfig()
        self.encoder = ViT(ec)
        self.decoder_embed = nn.Linear(self.encoder.feature_dim, cfg.decoder_width)
        self.decoder = SelfDecoder(cfg.decoder_width, cfg.decoder_depth, cfg.decoder_heads, ec.grid,
                                   ec.patch * ec.patch * ec.in_channels)

    # ---- named stages -------------------------------------------------------------------------------
    def forward_encoder(self, x: torch.Tensor):
        """Normalised images -> (visible tokens [B, 1 + L_keep, D], mask [B, L], ids_restore [B, L])."""
        return self.encoder.forward_encoder(x, self.cfg.mask_ratio)

    def forward_decoder(self, vis: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Visible tokens -> predicted patches [B, L, p*p*3]."""
        x = fill_mask_tokens(self.decoder_embed(vis), self.decoder.mask_token, ids_restore)  # [B, 1 + L, Dd]
        return self.decoder(x + self.decoder.pos_embed)

    def forward_loss(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error on the masked patches only."""
        target = patch_targets(self.encoder.patchify(x), self.cfg.norm_pix_loss)  # [B, L, p*p*3]
        per_patch = ((pred.float() - target) ** 2).mean(-1)  # [B, L]
        return (per_patch * mask).sum() / mask.sum().clamp(min=1)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        imgs = batch["x_t"] if "x_k" not in batch else torch.cat([batch["x_t"], batch["x_k"]])
        x = normalize_images(imgs)  # [B, 3, H, W]
        vis, mask, ids_restore = self.forward_encoder(x)
        loss = self.forward_loss(x, self.forward_decoder(vis, ids_restore), mask)
        return loss, {"mae": loss.detach()}


METHOD = Method(
    name="mae", config=MAEConfig, objective=MAE, batch="frame_pairs", encoder=ViTConfig(), trainer=VIT_TRAINER,
    summary="masked autoencoding of single frames (75% of the patches masked), ViT encoder: the RSP paper's MAE row")
