"""Transformer decoders that predict pixel patches from mask-token queries.

* :class:`CrossDecoder` (RSP): each block is cross-attention (queries attend to a context sequence)
  -> self-attention -> MLP, all pre-norm. The queries are one learned mask token plus fixed 2D
  sin-cos positions, one per output patch; the context is whatever the caller conditions on
  (RSP: ``[proj(z); proj(h_t) + pos]``; its MAE branch: the visible tokens of the future frame with
  mask tokens filled in, ``+ pos``).
* :class:`SelfDecoder` (MAE): the plain MAE decoder, self-attention blocks over the full token
  sequence (visible tokens with mask tokens filled in).

Both end with LayerNorm + a linear layer to ``patch * patch * channels`` values per patch.
"""
from __future__ import annotations

import torch
from torch import nn

from regconsist_ros.models.attention import CrossAttention, SelfAttention
from regconsist_ros.models.vit import Block, init_transformer_weights, sincos_pos_embed


class CrossBlock(nn.Module):
    """q + CrossAttn(LN(q), LN(ctx)), then q + SelfAttn(LN(q)), then q + MLP(LN(q))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim, eps=1e-6)
        self.norm_ctx = nn.LayerNorm(dim, eps=1e-6)
        self.cross = CrossAttention(dim, heads)
        self.norm_self = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SelfAttention(dim, heads)
        self.norm_mlp = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, q: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:  # q [B, L, D], ctx [B, M, D]
        q = q + self.cross(self.norm_q(q), self.norm_ctx(ctx))
        q = q + self.attn(self.norm_self(q))
        return q + self.mlp(self.norm_mlp(q))  # [B, L, D]


class CrossDecoder(nn.Module):
    """Mask-token queries (+ sin-cos positions) cross-attend to a context; one output per patch."""

    def __init__(self, width: int, depth: int, heads: int, grid: tuple[int, int], out_dim: int):
        super().__init__()
        self.grid = tuple(grid)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        # positions of [CLS] (zeros) + patches, shared by queries and by callers building contexts
        self.register_buffer("pos_embed", torch.from_numpy(sincos_pos_embed(width, self.grid))[None], persistent=False)
        self.blocks = nn.ModuleList(CrossBlock(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.pred = nn.Linear(width, out_dim)
        init_transformer_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, ctx: torch.Tensor) -> torch.Tensor:
        """ctx [B, M, width] -> predicted patches [B, L, out_dim] (L = gh * gw)."""
        B = ctx.shape[0]
        L = self.grid[0] * self.grid[1]
        q = self.mask_token.expand(B, L, -1) + self.pos_embed[:, 1:]  # [B, L, width]
        for blk in self.blocks:
            q = blk(q, ctx)
        return self.pred(self.norm(q))  # [B, L, out_dim]


class SelfDecoder(nn.Module):
    """The MAE decoder: self-attention blocks over [CLS] + all patch tokens; predicts every patch."""

    def __init__(self, width: int, depth: int, heads: int, grid: tuple[int, int], out_dim: int):
        super().__init__()
        self.grid = tuple(grid)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.register_buffer("pos_embed", torch.from_numpy(sincos_pos_embed(width, self.grid))[None], persistent=False)
        self.blocks = nn.ModuleList(Block(width, heads, 4.0) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.pred = nn.Linear(width, out_dim)
        init_transformer_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, 1 + L, width] (mask tokens already filled in, positions added) -> [B, L, out_dim]."""
        x = tokens
        for blk in self.blocks:
            x = blk(x)
        return self.pred(self.norm(x[:, 1:]))  # [B, L, out_dim]


def fill_mask_tokens(visible: torch.Tensor, mask_token: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
    """MAE un-shuffle: visible [B, 1 + L_keep, D] ([CLS] first) + mask tokens -> [B, 1 + L, D] in patch order."""
    B, n, D = visible.shape
    L = ids_restore.shape[1]
    x = torch.cat([visible[:, 1:], mask_token.expand(B, L + 1 - n, D)], 1)  # [B, L, D] (kept first)
    x = torch.gather(x, 1, ids_restore[..., None].expand(B, L, D))  # [B, L, D] back to patch order
    return torch.cat([visible[:, :1], x], 1)  # [B, 1 + L, D]


def patch_targets(patches: torch.Tensor, norm_pix: bool = True) -> torch.Tensor:
    """Normalised-pixel targets: each patch [.., p*p*C] standardised by its own mean/variance (MAE)."""
    if not norm_pix:
        return patches
    mean = patches.mean(-1, keepdim=True)
    var = patches.var(-1, keepdim=True)
    return (patches - mean) / (var + 1e-6) ** 0.5
