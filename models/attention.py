"""Multi-head attention on ``F.scaled_dot_product_attention`` (the fused kernels), for the ViT and decoders.

Parameters are laid out and initialised exactly as :class:`torch.nn.MultiheadAttention`'s (``in_proj_weight``
[3D, D] = [W_q; W_k; W_v], ``in_proj_bias`` [3D], ``out_proj`` Linear, the same RNG draws in the same order),
so checkpoints of either load into the other and the same seed gives the same network. What differs is the
forward: one packed projection, a view into heads and one fused attention call, without
``nn.MultiheadAttention``'s argument checks, re-packing and copies.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Projections(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.dim, self.heads = dim, heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)  # default init first, as nn.MultiheadAttention (same RNG stream)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """[B, N, n * D] -> n tensors [B, H, N, D / H] (views, no copy)."""
        B, N, _ = x.shape
        return x.view(B, N, n, self.heads, self.dim // self.heads).permute(2, 0, 3, 1, 4).unbind(0)

    def _out(self, o: torch.Tensor) -> torch.Tensor:
        """[B, H, N, D / H] -> [B, N, D] through the output projection."""
        B, _, N, _ = o.shape
        return self.out_proj(o.transpose(1, 2).reshape(B, N, self.dim))


class SelfAttention(_Projections):
    """x [B, N, D] -> softmax(q k^T / sqrt(d)) v over the N tokens, H heads -> [B, N, D]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(F.linear(x, self.in_proj_weight, self.in_proj_bias), 3)  # [B, H, N, d] each
        return self._out(F.scaled_dot_product_attention(q, k, v))


class CrossAttention(_Projections):
    """Queries q [B, L, D] attend to a context c [B, M, D] -> [B, L, D]."""

    def forward(self, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        D = self.dim
        (qh,) = self._heads(F.linear(q, self.in_proj_weight[:D], self.in_proj_bias[:D]), 1)  # [B, H, L, d]
        k, v = self._heads(F.linear(c, self.in_proj_weight[D:], self.in_proj_bias[D:]), 2)  # [B, H, M, d] each
        return self._out(F.scaled_dot_product_attention(qh, k, v))
