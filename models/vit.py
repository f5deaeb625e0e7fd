"""Vision Transformer encoder (tiny / small / base, patch 16, fixed 2D sin-cos positions, [CLS]).

Written in the style of MAE's models: named stages (``patchify``, ``unpatchify``,
``random_masking``, ``forward_encoder``) with shape comments. Any input size divisible by the patch
size works (224 as in the papers, 96-128 for CPU runs); off the trained grid the positions are
interpolated inside the trained range (``grid_positions``), never extrapolated. The encoder
interface shared with the other models: ``forward(imgs) -> {"cls": [B, D], "patches": [B, L, D]}``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import nn

from regconsist_ros.models.attention import SelfAttention

SIZES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12)}  # width, depth, heads


@dataclass
class ViTConfig:
    """ViT encoder settings."""

    kind: ClassVar[str] = "vit"
    size: Literal["tiny", "small", "base"] = field(default="small", metadata={"help": "tiny (192), small (384) or base (768) wide"})
    img_size: tuple[int, ...] = field(default=(224, 224), metadata={"help": "input height and width (divisible by the patch)"})
    patch: int = field(default=16, metadata={"help": "patch size in pixels"})
    depth: int = field(default=0, metadata={"help": "transformer blocks (0 = the size's default, 12)"})
    mlp_ratio: float = field(default=4.0, metadata={"help": "MLP hidden width / model width"})
    in_channels: int = field(default=3, metadata={"help": "input channels"})

    def __post_init__(self):
        if self.size not in SIZES:
            raise ValueError(f"ViTConfig.size must be one of {sorted(SIZES)}, got {self.size!r}")
        if len(self.img_size) != 2 or min(self.img_size) < 1:
            raise ValueError(f"ViTConfig.img_size must be (height, width), got {self.img_size}")
        if self.patch < 1 or any(s % self.patch for s in self.img_size):
            raise ValueError(f"ViTConfig.img_size {tuple(self.img_size)} must be divisible by patch {self.patch}")
        if self.depth < 0 or self.mlp_ratio <= 0 or self.in_channels < 1:
            raise ValueError(f"ViTConfig: bad depth={self.depth}, mlp_ratio={self.mlp_ratio} or in_channels={self.in_channels}")

    @property
    def width(self) -> int:
        return SIZES[self.size][0]

    @property
    def heads(self) -> int:
        return SIZES[self.size][2]

    @property
    def blocks(self) -> int:
        return self.depth or SIZES[self.size][1]

    @property
    def grid(self) -> tuple[int, int]:
        return self.img_size[0] // self.patch, self.img_size[1] // self.patch


def grid_positions(n: int, trained: int) -> np.ndarray:
    """Positions [n] at which the sin-cos table is evaluated for an axis of ``n`` cells when the
    encoder was trained on ``trained`` cells along it.

    Corner-aligned linear mapping ``i -> i * (trained - 1) / (n - 1)``: the first and last cells map
    onto the trained table's first and last positions, so positions are interpolated inside the
    trained range [0, trained - 1] and never extrapolated (the cell-centre mapping
    ``(i + 0.5) * trained / n - 0.5`` would reach below 0 and above trained - 1 on a larger grid).
    ``n == trained`` gives exactly ``0, 1, ..., n - 1``; when ``n - 1`` is a multiple m of
    ``trained - 1`` every m-th position is exactly a trained one. A single cell sits at the middle
    of the trained range; a single trained cell puts every cell at 0.
    """
    if n < 1 or trained < 1:
        raise ValueError(f"grid_positions: axis lengths must be >= 1, got n={n}, trained={trained}")
    if n == 1:
        return np.full(1, (trained - 1) / 2, np.float64)
    i = np.arange(n, dtype=np.float64)
    return i * (trained - 1) / (n - 1)  # exact integers where i * (trained - 1) is a multiple of n - 1


def sincos_pos_embed(dim: int, grid: tuple[int, int], cls_token: bool = True,
                     trained: tuple[int, int] | None = None) -> np.ndarray:
    """Fixed 2D sin-cos position embedding [(1 +) gh * gw, dim]: half the channels encode the row,
    half the column; the [CLS] position is zeros.

    ``trained`` (gh', gw'): the grid the network was trained on; the rows and columns of ``grid``
    are then placed at fractional positions inside the trained range (``grid_positions``) instead
    of at 0..gh-1 / 0..gw-1. None (or ``trained == grid``) gives the integer positions."""
    if dim % 4:
        raise ValueError(f"sin-cos embedding needs a width divisible by 4, got {dim}")
    gh, gw = grid
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4))  # [dim/4]

    def axis(pos):  # [N] -> [N, dim/2]
        out = np.outer(pos, omega)
        return np.concatenate([np.sin(out), np.cos(out)], 1)

    if trained is None:
        ys, xs = np.arange(gh, dtype=np.float64), np.arange(gw, dtype=np.float64)  # [gh], [gw]
    else:
        ys, xs = grid_positions(gh, int(trained[0])), grid_positions(gw, int(trained[1]))
    rows, cols = np.meshgrid(ys, xs, indexing="ij")  # [gh, gw] each
    emb = np.concatenate([axis(rows.ravel()), axis(cols.ravel())], 1)  # [gh*gw, dim]
    if cls_token:
        emb = np.concatenate([np.zeros((1, dim)), emb], 0)
    return emb.astype(np.float32)


def init_transformer_weights(module: nn.Module) -> None:
    """MAE-style init: xavier-uniform Linear weights with zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Block(nn.Module):
    """Pre-norm transformer block: x + MHSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, N, D]
        h = self.norm1(x)
        x = x + self.attn(h)
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """ViT encoder with [CLS]; ``forward_encoder`` optionally drops a random fraction of patches (MAE)."""

    kind = "vit"

    def __init__(self, cfg: ViTConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or ViTConfig()
        D, p = cfg.width, cfg.patch
        self.patch_embed = nn.Conv2d(cfg.in_channels, D, kernel_size=p, stride=p)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.register_buffer("pos_embed", torch.from_numpy(sincos_pos_embed(D, cfg.grid))[None], persistent=False)
        self.blocks = nn.ModuleList(Block(D, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.blocks))
        self.norm = nn.LayerNorm(D, eps=1e-6)
        self._pos_cache: dict[tuple[int, int], torch.Tensor] = {}
        self._init()

    def _init(self):
        w = self.patch_embed.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        init_transformer_weights(self)

    @property
    def feature_dim(self) -> int:
        return self.cfg.width

    def pos_for(self, size) -> torch.Tensor:
        """Positions [1, 1 + L, D] for an input of ``size`` (H, W), any positive multiple of the patch.

        At the trained size: the stored buffer. On another grid the same sin-cos function is
        evaluated at fractional positions interpolated inside the trained grid's range
        (``grid_positions``: corner-aligned, never extrapolated), so a 16x12 grid of an encoder
        trained on 8x6 sees positions between the trained ones, not positions it never saw."""
        H, W = int(size[0]), int(size[1])
        p = self.cfg.patch
        if H % p or W % p or H < p or W < p:
            raise ValueError(f"ViT input {H}x{W} is not a positive multiple of the patch size {p}")
        if (H, W) == tuple(self.cfg.img_size):
            return self.pos_embed
        grid = (H // p, W // p)
        cached = self._pos_cache.get(grid)
        if cached is None or cached.device != self.pos_embed.device:
            table = sincos_pos_embed(self.cfg.width, grid, trained=self.cfg.grid)  # [1 + L, D]
            cached = torch.from_numpy(table)[None].to(self.pos_embed.device)
            self._pos_cache[grid] = cached
        return cached.to(self.pos_embed.dtype)

    # ---- named stages ----------------------------------------------------------------------------
    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """imgs [B, C, H, W] -> patches [B, L, p*p*C] (row-major patches, pixels (py, px, c) inside)."""
        B, C, H, W = imgs.shape
        p = self.cfg.patch
        if H % p or W % p:
            raise ValueError(f"image size {H}x{W} is not divisible by the patch size {p}")
        x = imgs.reshape(B, C, H // p, p, W // p, p)
        return torch.einsum("bchpwq->bhwpqc", x).reshape(B, (H // p) * (W // p), p * p * C)

    def unpatchify(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """patches [B, L, p*p*C] -> imgs [B, C, H, W] (the inverse of ``patchify``)."""
        H, W = size or tuple(self.cfg.img_size)
        p, C = self.cfg.patch, self.cfg.in_channels
        B = x.shape[0]
        x = x.reshape(B, H // p, W // p, p, p, C)
        return torch.einsum("bhwpqc->bchpwq", x).reshape(B, C, H, W)

    @staticmethod
    def random_masking(x: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None):
        """Keep a random (1 - mask_ratio) of the tokens of each sample.

        x [B, L, D] -> (kept [B, L_keep, D], mask [B, L] with 1 = removed, ids_restore [B, L]) where
        L_keep = round(L * (1 - mask_ratio)) exactly, for every sample.
        """
        B, L, D = x.shape
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        keep = int(round(L * (1 - mask_ratio)))
        noise = torch.rand(B, L, device=x.device, generator=generator)  # [B, L]
        ids_shuffle = torch.argsort(noise, dim=1)  # ascending: the first `keep` are kept
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        kept = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(B, keep, D))  # [B, L_keep, D]
        mask = torch.ones(B, L, device=x.device)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)  # back to patch order
        return kept, mask, ids_restore

    def forward_encoder(self, imgs: torch.Tensor, mask_ratio: float = 0.0, generator: torch.Generator | None = None):
        """imgs [B, C, H, W] (any multiple of the patch) -> (tokens [B, 1 + L_keep, D] with [CLS] first,
        mask [B, L], ids_restore [B, L])."""
        pos = self.pos_for(imgs.shape[-2:])  # [1, 1 + L, D]
        x = self.patch_embed(imgs).flatten(2).transpose(1, 2)  # [B, L, D]
        x = x + pos[:, 1:]
        if mask_ratio > 0:
            x, mask, ids_restore = self.random_masking(x, mask_ratio, generator)
        else:
            B, L, _ = x.shape
            mask = torch.zeros(B, L, device=x.device)
            ids_restore = torch.arange(L, device=x.device).expand(B, L)
        cls = (self.cls_token + pos[:, :1]).expand(x.shape[0], -1, -1)  # [B, 1, D]
        x = torch.cat([cls, x], 1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward(self, imgs: torch.Tensor) -> dict:
        """The shared encoder interface: {"cls": [B, D], "patches": [B, L, D]} (no masking)."""
        tokens, _, _ = self.forward_encoder(imgs)
        return {"cls": tokens[:, 0], "patches": tokens[:, 1:]}
