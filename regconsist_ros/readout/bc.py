"""Behaviour-cloning readout core (CortexBench protocol): frame-history fusion, the policy, training.

A frozen encoder embeds every frame once ([CLS] or pooled, see ``regconsist_ros.models.encoder.encode``). A step's
input is the *flare* fusion of the last 3 embeddings, ``[e_t-1 - e_t-2, e_t - e_t-1, e_t]``, with
proprioception appended where the suite uses it (MetaWorld: the first 4 state dims). The policy is
BatchNorm1d on the inputs followed by an MLP 256-256-256 with ReLU whose last layer is scaled by
0.01; it is trained with MSE on the demonstrated actions (Adam 1e-3, batch 256) in the project's one
training loop (``regconsist_ros.learning.trainer.Trainer``, objective :class:`BCObjective`).

Environments, demonstrations and rollouts (MetaWorld, RLBench) build on this module.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

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


class BCObjective(nn.Module):
    """Trainer objective of BC: ``forward({"x": inputs [B, D], "y": actions [B, A]}) -> (MSE, logs)``.

    The frozen encoder is outside (inputs are precomputed embeddings), and the policy is not a registered
    model kind, so ``encoder`` is None and a BC run is never checkpointed by the trainer (``fit(checkpoint=False)``;
    a finished task's result.json is the unit ``bc_run`` resumes from)."""

    encoder = None
    encoder_kind = None
    encoder_config = None

    def __init__(self, policy: BCPolicy):
        super().__init__()
        self.policy = policy

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        return nn.functional.mse_loss(self.policy(batch["x"]), batch["y"]), {}


def steps_per_epoch(n: int, batch: int) -> int:
    """Minibatches of one epoch over ``n`` samples: a final batch of one sample is dropped (BatchNorm
    needs two)."""
    full = n // batch if batch >= 2 else 0
    return full + (1 if n % batch >= 2 else 0)


def trainer_config(cfg: BCConfig, n: int):
    """The :class:`~regconsist_ros.learning.trainer.TrainerConfig` of BC on ``n`` samples: Adam (AdamW
    without weight decay, betas 0.9/0.999) at the constant ``cfg.lr`` (no warm-up, ``min_lr_ratio=1``:
    the cosine schedule is flat), ``cfg.epochs`` epochs of :func:`steps_per_epoch` steps, no gradient
    clipping, fp32 on the CPU (the rollouts act with the policy there); one log row per epoch."""
    from regconsist_ros.learning.trainer import TrainerConfig

    spe = steps_per_epoch(n, cfg.batch)
    return TrainerConfig(steps=max(1, cfg.epochs * spe), lr=cfg.lr, optimizer="adamw", betas=(0.9, 0.999),
                         weight_decay=0.0, warmup=0, min_lr_ratio=1.0, grad_clip=0.0, log_every=max(1, spe),
                         ckpt_every=0, seed=cfg.seed, device="cpu", amp=False)


def bc_batches(inputs: torch.Tensor, actions: torch.Tensor, cfg: BCConfig, g: torch.Generator):
    """Epoch after epoch, a fresh permutation (from ``g``) cut into ``cfg.batch`` minibatches ``{"x", "y"}``
    (a final one-sample batch dropped)."""
    n = inputs.shape[0]
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, cfg.batch):
            idx = perm[i:i + cfg.batch]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            yield {"x": inputs[idx], "y": actions[idx]}


def train_bc(inputs: torch.Tensor, actions: torch.Tensor, cfg: BCConfig, on_epoch=None, *,
             run_dir=None, progress: bool = False) -> tuple[BCPolicy, list[float]]:
    """Fit a :class:`BCPolicy` with MSE; ``on_epoch(epoch, policy)`` runs after each epoch (e.g. rollouts).

    Returns the policy (eval mode) and the mean training loss per epoch. The steps run in the shared
    :class:`~regconsist_ros.learning.trainer.Trainer` (:class:`BCObjective`, :func:`trainer_config`);
    ``on_epoch`` is its step callback at each epoch's last step (policy in eval mode). With ``run_dir``
    the trainer's ``metrics.jsonl`` is written there (no checkpoints)."""
    from regconsist_ros.learning.trainer import Trainer

    if inputs.shape[0] != actions.shape[0] or inputs.shape[0] < 2:
        raise ValueError(f"train_bc: {inputs.shape[0]} inputs vs {actions.shape[0]} actions (need >= 2 matching)")
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    policy = BCPolicy(inputs.shape[1], actions.shape[1], cfg.hidden, cfg.last_scale)
    n = inputs.shape[0]
    spe = steps_per_epoch(n, cfg.batch)
    if spe == 0:  # batch 1: every minibatch is dropped, nothing to train (as before: zero losses)
        policy.eval()
        for epoch in range(cfg.epochs):
            if on_epoch is not None:
                on_epoch(epoch, policy)
        return policy, [0.0] * cfg.epochs
    sizes = [min(cfg.batch, n - i) for i in range(0, n, cfg.batch) if min(cfg.batch, n - i) >= 2]
    losses: list[float] = []
    total = [0.0]

    def step_done(step: int, row: dict) -> None:
        pos = (step - 1) % spe
        if not row["skipped"]:
            total[0] += row["loss"] * sizes[pos]
        if pos == spe - 1:  # an epoch's last step
            losses.append(total[0] / n)
            total[0] = 0.0
            if on_epoch is not None:
                policy.eval()
                on_epoch(step // spe - 1, policy)

    trainer = Trainer(BCObjective(policy), trainer_config(cfg, n), run_dir, distributed=False,
                      meta={"readout": "bc", "bc": asdict(cfg)})
    trainer.fit(bc_batches(inputs, actions, cfg, g), progress=progress, checkpoint=False, callback=step_done,
                desc="bc")
    policy.eval()
    return policy, losses
