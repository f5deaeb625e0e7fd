"""Behaviour-cloning readout core (CortexBench protocol): frame-history fusion, the policy, training.

A frozen encoder embeds every frame once ([CLS] or pooled, see ``regconsist_ros.models.encoder.encode``). A step's
input is the *flare* fusion of the last 3 embeddings, ``[e_t-1 - e_t-2, e_t - e_t-1, e_t]``, with
proprioception appended where the suite uses it (MetaWorld: the first 4 state dims). The policy is
BatchNorm1d on the inputs followed by an MLP 256-256-256 with ReLU whose last layer is scaled by
0.01; it is trained with MSE on the demonstrated actions (Adam 1e-3, batch 256).

Environments, demonstrations and rollouts (MetaWorld, RLBench) build on this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass
class BCConfig:
    """Policy and optimisation settings of the BC readout (CortexBench defaults)."""

    history: int = field(default=3, metadata={"help": "frames fused per step (flare: differences + the last one)"})
    hidden: tuple[int, ...] = field(default=(256, 256, 256), metadata={"help": "MLP hidden widths"})
    last_scale: float = field(default=0.01, metadata={"help": "scale of the last layer's initial weights"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    batch: int = field(default=256, metadata={"help": "minibatch size"})
    epochs: int = field(default=100, metadata={"help": "training epochs"})
    seed: int = field(default=0, metadata={"help": "seed of initialisation and minibatches"})

    def __post_init__(self):
        if self.history < 1 or not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"BCConfig: history >= 1 and positive hidden widths needed, got {self.history}, {self.hidden}")
        if not self.lr > 0 or self.batch < 1 or self.epochs < 1 or not self.last_scale > 0:
            raise ValueError(f"BCConfig: lr, last_scale > 0 and batch, epochs >= 1 needed, got lr={self.lr}, "
                             f"last_scale={self.last_scale}, batch={self.batch}, epochs={self.epochs}")


def flare(emb: torch.Tensor, history: int = 3) -> torch.Tensor:
    """Frame embeddings of one episode [T, D] -> fused inputs [T, history * D].

    Row t is ``[e_t-h+1 - e_t-h, ..., e_t - e_t-1, e_t]`` (h = history): history-1 differences of
    consecutive embeddings, then the current one. Before the episode's start the first embedding
    is repeated (so the first differences are zero)."""
    if emb.ndim != 2:
        raise ValueError(f"flare expects one episode's embeddings [T, D], got {tuple(emb.shape)}")
    T = emb.shape[0]
    idx = torch.arange(T)[:, None] + torch.arange(-history + 1, 1)[None]  # [T, h], oldest first
    win = emb[idx.clamp(min=0)]  # [T, h, D]
    diffs = win[:, 1:] - win[:, :-1]  # [T, h-1, D]
    return torch.cat([diffs.flatten(1), win[:, -1]], 1)  # [T, h*D]


class BCPolicy(nn.Module):
    """BatchNorm1d(inputs) -> MLP with ReLU -> actions; the last layer's weights scaled by ``last_scale``."""

    def __init__(self, in_dim: int, act_dim: int, hidden=(256, 256, 256), last_scale: float = 0.01):
        super().__init__()
        layers: list[nn.Module] = [nn.BatchNorm1d(in_dim)]
        d = in_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        self.net = nn.Sequential(*layers)
        self.head = nn.Linear(d, act_dim)
        with torch.no_grad():
            self.head.weight.mul_(last_scale)
            self.head.bias.mul_(last_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, in_dim] -> [B, act_dim]
        return self.head(self.net(x))


def episode_inputs(embeddings: list[torch.Tensor], proprio: list[np.ndarray] | None, history: int) -> torch.Tensor:
    """Per-episode embeddings [T_i, D] (+ proprioception [T_i, P]) -> stacked policy inputs [sum T_i, h*D (+P)]."""
    rows = []
    for i, e in enumerate(embeddings):
        x = flare(e.float(), history)
        if proprio is not None:
            x = torch.cat([x, torch.as_tensor(np.asarray(proprio[i]), dtype=torch.float32)], 1)
        rows.append(x)
    return torch.cat(rows)


def train_bc(inputs: torch.Tensor, actions: torch.Tensor, cfg: BCConfig, on_epoch=None) -> tuple[BCPolicy, list[float]]:
    """Fit a :class:`BCPolicy` with MSE; ``on_epoch(epoch, policy)`` runs after each epoch (e.g. rollouts).

    Returns the policy (eval mode) and the mean training loss per epoch."""
    if inputs.shape[0] != actions.shape[0] or inputs.shape[0] < 2:
        raise ValueError(f"train_bc: {inputs.shape[0]} inputs vs {actions.shape[0]} actions (need >= 2 matching)")
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    policy = BCPolicy(inputs.shape[1], actions.shape[1], cfg.hidden, cfg.last_scale)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    n = inputs.shape[0]
    losses = []
    for epoch in range(cfg.epochs):
        policy.train()
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for i in range(0, n, cfg.batch):
            idx = perm[i:i + cfg.batch]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            loss = nn.functional.mse_loss(policy(inputs[idx]), actions[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / n)
        if on_epoch is not None:
            policy.eval()
            on_epoch(epoch, policy)
    policy.eval()
    return policy, losses
