"""Spatiotemporal shuffling with a learned permutation schedule (jigsaw + temporal order, REINFORCE).

Two permutation-classification tasks share the DeepLabV3+ trunk (the encoder readouts use) and are
trained in parallel on clips ``{"clip": [B, U, 3, H, W]}`` of U consecutive frames in [0, 1]:

- **spatial (jigsaw)**: the middle frame ``clip[:, U // 2]`` is cut into ``grid x grid`` cells; each
  tile is a ``tile_fraction`` crop of its cell at a random offset inside the cell during training
  (centred at evaluation), so neighbouring tiles never share an edge and the task cannot be solved
  from edge continuity or exact tile positions. Every tile goes through the trunk alone
  (``forward_features`` + global average pooling) and a shared ``fc6``; the tile features are
  concatenated in the shuffled order, then ``fc7`` and a classifier over the ``spatial_perms``
  permutations predict which permutation was applied.
- **temporal (order)**: every frame goes through the trunk + pooling and its own ``fc6``; an LSTM
  reads the frames in the shuffled order and a classifier on its final hidden state predicts which of
  the ``temporal_perms`` orderings was applied.

    loss = spatial_weight * CE_spatial + temporal_weight * CE_temporal

Permutation convention: permutation ``perm`` shows, at slot ``j``, tile / frame ``perm[j]``. Since the
trunk sees every tile and frame on its own (and batch-norm statistics do not depend on order),
shuffling the inputs equals shuffling their pooled features, which is what the code does; the
evaluation of all permutations therefore costs one trunk pass per validation clip.

Permutation sets: ``hamming_permutations`` (greedy maximal minimum Hamming distance), stored as
persistent buffers so checkpoints carry the class definitions.

Schedule (which permutations the network trains on):

- ``uniform``: every training sample's permutation is uniform over the set (the baseline);
- ``policy``: the permutations of each task are split into ``groups`` k-means groups and a
  :class:`PermutationPolicy` gives a distribution over groups; each training sample draws a group
  from it, then a permutation uniformly inside the group.

  Every ``policy_every`` steps (:meth:`Shuffle.after_step`) the network (eval mode, no gradient) is
  run on the held-out validation clips under *every* permutation. For validation clip n and applied
  permutation p, the softmax ratio is ``(prob of p + 1) / (largest prob of another class + 1)`` (the
  "+1 smoothing" keeps it in [1/2, 2]); this gives a ratio matrix ``[P, N]`` (the network state) and
  the validation error (fraction of (clip, permutation) pairs misclassified). Then

  1. reward: with validation errors ``e_{t-2}, e_{t-1}, e_t``, the linear extrapolation
     ``e^_t = e_{t-1} + (e_{t-1} - e_{t-2})`` is what the trend predicted, and
     ``reward = e^_t - e_t`` (> 0 when the network improved more than the trend). With only two
     errors the prediction is ``e_{t-1}`` (constant); with one there is no reward yet.
  2. REINFORCE on the policy for the actions taken since the last update (all drawn from the same
     distribution ``pi(.|s)``, s the state of the last update): ``log pi`` of those actions is
     averaged and ``loss = -(reward - b) * mean log pi(a|s) - entropy * H(pi(.|s))``, where ``b`` is
     a moving average of the rewards (``b <- m b + (1 - m) reward``, ``m = baseline_momentum``,
     updated after the step, starting at 0). One Adam step at ``policy_lr``.
  3. regrouping: k-means (``kmeans_groups``) on the rows of the ratio matrix (each permutation
     described by its ratios on the validation clips), then the groups are renumbered by increasing
     mean ratio, so group 0 is always the hardest and a policy output keeps its meaning ("how hard")
     across regroupings.
  4. state: for each group g (in that order) the mean and the minimum over its permutations of the
     permutation's mean ratio, minus 1: ``s = [mean_0 - 1, .., mean_{G-1} - 1, min_0 - 1, ..,
     min_{G-1} - 1]`` (``2 * groups`` features). The next sampling distribution is ``pi(.|s)``.

  Before the first update, the groups are k-means groups of the permutations' one-hot encodings
  (squared distance = twice the Hamming distance) and the group distribution is uniform.

  Validation set: the first training batch :meth:`Shuffle.forward` sees (schedule ``policy`` only)
  is kept as the validation set and held out: its loss is returned multiplied by 0, so the network
  never trains on it. :meth:`Shuffle.set_validation` sets one explicitly instead. Under
  torch.distributed every rank keeps its own validation batch and policy.

  The policies are *not* trained by the trainer's optimiser: they live in a plain ``dict``
  (``Shuffle.schedules``), so they are not registered submodules, not in ``parameters()``, stay on
  the CPU (their inputs are 2 * groups numbers) and have their own Adam. They, their optimisers,
  the group assignments, the error history, the baseline and the validation clips are saved in the
  objective's ``state_dict`` through ``get_extra_state`` (key ``_extra_state``; plain tensors,
  numbers and lists, readable by ``torch.load(weights_only=True)``), so a resumed run continues the
  same schedule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from regconsist_ros.models.deeplab import DeepLabConfig, DeepLabV3Plus, normalize_images
from regconsist_ros.models.methods import DENSE_CROP, DENSE_TRAINER, Method
from regconsist_ros.models.objectives.permutations import hamming_permutations, kmeans_groups

TASKS = ("spatial", "temporal")
EVAL_ROWS = 4096  # (clip, permutation) rows per chunk when all permutations are evaluated


@dataclass
class ShuffleConfig:
    """Spatiotemporal shuffling (paper: 3x3 jigsaw with 1000 permutations; CPU-sized defaults)."""

    grid: int = field(default=3, metadata={"help": "jigsaw grid: grid x grid tiles of the middle frame"})
    frames: int = field(default=4, metadata={"help": "u: frames per clip for the temporal-order task"})
    spatial_perms: int = field(default=100, metadata={"help": "size of the jigsaw permutation set (paper: 1000)"})
    temporal_perms: int = field(default=24, metadata={"help": "size of the frame-order permutation set (<= frames!)"})
    groups: int = field(default=10, metadata={"help": "k-means groups of permutations the policy chooses from"})
    fc_dim: int = field(default=256, metadata={"help": "width of fc6 (per tile / frame) and fc7 (jigsaw)"})
    lstm_dim: int = field(default=256, metadata={"help": "hidden size of the temporal LSTM"})
    tile_fraction: float = field(default=0.85, metadata={"help": "tile side as a fraction of its cell (random offset inside the cell while training)"})
    policy_hidden: int = field(default=16, metadata={"help": "hidden units of the policy's two FC layers"})
    policy_lr: float = field(default=0.01, metadata={"help": "Adam learning rate of the policy (one step per policy update)"})
    entropy: float = field(default=0.01, metadata={"help": "entropy bonus coefficient of the policy loss"})
    baseline_momentum: float = field(default=0.9, metadata={"help": "momentum of the moving-average reward baseline"})
    policy_every: int = field(default=50, metadata={"help": "training steps between evaluations / policy updates / regroupings"})
    schedule: Literal["policy", "uniform"] = field(default="policy", metadata={"help": "policy (REINFORCE over permutation groups) or uniform random permutations"})
    spatial_weight: float = field(default=1.0, metadata={"help": "weight of the jigsaw cross-entropy (0: task off)"})
    temporal_weight: float = field(default=1.0, metadata={"help": "weight of the temporal-order cross-entropy (0: task off)"})
    seed: int = field(default=0, metadata={"help": "seed of the permutation sets and of k-means"})

    def __post_init__(self):
        name = type(self).__name__
        for f, lo in (("grid", 2), ("frames", 2), ("spatial_perms", 2), ("temporal_perms", 2), ("groups", 2),
                      ("fc_dim", 1), ("lstm_dim", 1), ("policy_hidden", 1), ("policy_every", 1), ("seed", 0)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name}.{f} must be an integer >= {lo}, got {v!r}")
        if self.spatial_perms > math.factorial(self.grid ** 2):
            raise ValueError(f"{name}.spatial_perms {self.spatial_perms} exceeds the {math.factorial(self.grid ** 2)} "
                             f"permutations of {self.grid ** 2} tiles")
        if self.temporal_perms > math.factorial(self.frames):
            raise ValueError(f"{name}.temporal_perms {self.temporal_perms} exceeds the {math.factorial(self.frames)} "
                             f"orderings of {self.frames} frames")
        if self.groups > min(self.spatial_perms, self.temporal_perms):
            raise ValueError(f"{name}.groups {self.groups} must be <= spatial_perms {self.spatial_perms} "
                             f"and temporal_perms {self.temporal_perms}")
        if not 0.0 < self.tile_fraction <= 1.0:
            raise ValueError(f"{name}.tile_fraction must be in (0, 1], got {self.tile_fraction!r}")
        if not self.policy_lr > 0:
            raise ValueError(f"{name}.policy_lr must be > 0, got {self.policy_lr!r}")
        if not self.entropy >= 0:
            raise ValueError(f"{name}.entropy must be >= 0, got {self.entropy!r}")
        if not 0.0 <= self.baseline_momentum < 1.0:
            raise ValueError(f"{name}.baseline_momentum must be in [0, 1), got {self.baseline_momentum!r}")
        if self.schedule not in ("policy", "uniform"):
            raise ValueError(f"{name}.schedule must be policy or uniform, got {self.schedule!r}")
        for f in ("spatial_weight", "temporal_weight"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ValueError(f"{name}.{f} must be a number >= 0, got {v!r}")
        if self.spatial_weight == 0 and self.temporal_weight == 0:
            raise ValueError(f"{name}: spatial_weight and temporal_weight cannot both be 0")


# ---- pure functions ---------------------------------------------------------------------------------
def sample_ratios(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row smoothed softmax ratio: probs [N, P], targets [N] -> (p_target + 1) / (max_{c != target} p_c + 1) [N]."""
    if probs.ndim != 2 or probs.shape[1] < 2 or targets.shape != probs.shape[:1]:
        raise ValueError(f"sample_ratios expects probs [N, P >= 2] and targets [N], got {tuple(probs.shape)} and {tuple(targets.shape)}")
    t = targets.long().unsqueeze(1)  # [N, 1]
    correct = probs.gather(1, t)[:, 0]  # [N]
    other = probs.scatter(1, t, float("-inf")).amax(1)  # [N]
    return (correct + 1.0) / (other + 1.0)


def softmax_ratio(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean smoothed softmax ratio per class: probs [N, P], targets [N] -> [P].

    Row n contributes ``(probs[n, t] + 1) / (max_{c != t} probs[n, c] + 1)`` (t = targets[n]) to class
    t; a class no row targets gets NaN.
    """
    r = sample_ratios(probs, targets)  # [N]
    P = probs.shape[1]
    sums = torch.zeros(P, dtype=r.dtype, device=r.device).index_add_(0, targets.long(), r)
    counts = torch.bincount(targets.long(), minlength=P).to(r.dtype)
    return sums / counts  # 0 / 0 = NaN for classes without rows


def extrapolated_reward(errors: Sequence[float]) -> float:
    """Reward of the last interval from the validation errors ``[.., e_{t-2}, e_{t-1}, e_t]``.

    ``e^_t = e_{t-1} + (e_{t-1} - e_{t-2})`` (linear extrapolation of the previous trend; with only
    two errors ``e^_t = e_{t-1}``) and ``reward = e^_t - e_t``: positive when the error fell faster
    than the trend predicted. E.g. [0.5, 0.4, 0.35] -> 0.3 - 0.35 = -0.05.
    """
    e = [float(x) for x in errors][-3:]
    if len(e) < 2:
        raise ValueError(f"extrapolated_reward needs at least 2 errors, got {len(e)}")
    predicted = e[-2] if len(e) == 2 else e[-2] + (e[-2] - e[-3])
    return predicted - e[-1]


def reinforce_loss(log_prob: torch.Tensor, reward: float, baseline: float, entropy: torch.Tensor,
                   coef: float) -> torch.Tensor:
    """REINFORCE with a baseline and an entropy bonus: ``-(reward - baseline) * mean(log_prob) - coef * entropy``.

    ``log_prob``: log pi(a|s) of the action(s) taken (any shape, averaged); ``entropy``: H(pi(.|s)).
    Minimising it raises the probability of actions with positive advantage ``reward - baseline``.
    """
    advantage = float(reward) - float(baseline)
    return -advantage * log_prob.mean() - coef * entropy


def group_state(per_perm: torch.Tensor, labels: torch.Tensor, groups: int) -> torch.Tensor:
    """Policy state from per-permutation mean ratios [P] and group labels [P] -> [2 * groups]:
    ``[mean ratio of group g - 1 for g] + [min ratio of group g - 1 for g]``."""
    means = torch.stack([per_perm[labels == g].mean() for g in range(groups)])
    mins = torch.stack([per_perm[labels == g].min() for g in range(groups)])
    return torch.cat([means, mins]).float() - 1.0


def sort_groups(labels: np.ndarray, per_perm: np.ndarray, groups: int) -> np.ndarray:
    """Renumber groups by increasing mean of ``per_perm`` (group 0: the lowest mean ratio, the hardest)."""
    means = np.array([per_perm[labels == g].mean() for g in range(groups)])
    rank = np.empty(groups, dtype=np.int64)
    rank[np.argsort(means, kind="stable")] = np.arange(groups)
    return rank[labels]


def shuffle_items(feats: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """feats [B, T, F], perms [B, T] -> [B, T, F] with slot j holding item perms[b, j]."""
    return feats.gather(1, perms.unsqueeze(-1).expand(-1, -1, feats.shape[-1]))


# ---- policy -----------------------------------------------------------------------------------------
class PermutationPolicy(nn.Module):
    """State [.., n_state_features] -> distribution over ``groups``: FC(hidden) - tanh - FC(groups) - softmax."""

    def __init__(self, n_state_features: int, groups: int, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_state_features, hidden), nn.Tanh(), nn.Linear(hidden, groups))

    def log_probs(self, state: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.net(state), dim=-1)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """Probabilities over groups (softmax)."""
        return self.log_probs(state).exp()


class TaskSchedule:
    """The permutation schedule of one task (plain object: not an nn.Module, never registered).

    Holds the policy and its Adam, the group of every permutation, the current group distribution,
    the state it was computed from, the actions taken since, the error history and the baseline.
    """

    def __init__(self, n_perms: int, groups: int, hidden: int, lr: float, labels: np.ndarray):
        self.n_perms, self.groups = n_perms, groups
        self.policy = PermutationPolicy(2 * groups, groups, hidden)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr)
        self.group_probs = torch.full((groups,), 1.0 / groups)  # [G] current sampling distribution
        self.pending_state: torch.Tensor | None = None  # [2G] state the distribution was chosen at
        self.counts = torch.zeros(groups)  # [G] actions taken since the last update
        self.errors: list[float] = []  # last 3 validation errors
        self.baseline = 0.0
        self.updates = 0
        self.set_groups(labels)

    def set_groups(self, labels) -> None:
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if labels.shape != (self.n_perms,) or labels.min() < 0 or labels.max() >= self.groups:
            raise ValueError(f"group labels must be [{self.n_perms}] in 0..{self.groups - 1}")
        sizes = torch.bincount(labels, minlength=self.groups)
        if (sizes == 0).any():
            raise ValueError("every group needs at least one permutation")
        self.labels = labels
        self.order = torch.argsort(labels, stable=True)  # permutations sorted by group
        self.sizes = sizes
        self.offsets = torch.cumsum(sizes, 0) - sizes

    def sample(self, n: int, record: bool = True) -> torch.Tensor:
        """n permutation indices [n]: a group from ``group_probs``, then uniform inside it."""
        g = torch.multinomial(self.group_probs, n, replacement=True)  # [n]
        within = (torch.rand(n) * self.sizes[g]).long().clamp(max=self.sizes[g] - 1)
        if record:
            self.counts += torch.bincount(g, minlength=self.groups).float()
        return self.order[self.offsets[g] + within]

    def reinforce(self, reward: float, entropy_coef: float, momentum: float) -> dict:
        """One REINFORCE step for the actions counted since ``pending_state`` was set."""
        logp = self.policy.log_probs(self.pending_state)  # [G]
        frac = self.counts / self.counts.sum()
        log_prob = (frac * logp).sum()  # mean log pi(a|s) over the actions taken
        ent = -(logp.exp() * logp).sum()
        loss = reinforce_loss(log_prob, reward, self.baseline, ent, entropy_coef)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        out = {"reward": reward, "advantage": reward - self.baseline, "policy_loss": float(loss.detach()),
               "policy_entropy": float(ent.detach())}
        self.baseline = momentum * self.baseline + (1.0 - momentum) * reward
        self.updates += 1
        return out

    def state_dict(self) -> dict:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "labels": self.labels.clone(), "group_probs": self.group_probs.clone(),
                "pending_state": None if self.pending_state is None else self.pending_state.clone(),
                "counts": self.counts.clone(), "errors": list(self.errors), "baseline": float(self.baseline),
                "updates": int(self.updates)}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.set_groups(state["labels"].cpu().numpy())
        self.group_probs = state["group_probs"].detach().cpu().float().clone()
        ps = state["pending_state"]
        self.pending_state = None if ps is None else ps.detach().cpu().float().clone()
        self.counts = state["counts"].detach().cpu().float().clone()
        self.errors = [float(e) for e in state["errors"]]
        self.baseline = float(state["baseline"])
        self.updates = int(state["updates"])


# ---- objective --------------------------------------------------------------------------------------
class Shuffle(nn.Module):
    """Objective: ``forward({"clip": [B, U, 3, H, W]}) -> (loss, logs)``; ``encoder`` is the DeepLabV3+ readouts use."""

    encoder_kind = "deeplabv3plus"

    def __init__(self, cfg: ShuffleConfig | None = None, encoder_cfg: DeepLabConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or ShuffleConfig()
        self.encoder_config = encoder_cfg or DeepLabConfig()
        self.encoder = DeepLabV3Plus(self.encoder_config)
        D, T, fc = self.encoder.feature_dim, cfg.grid ** 2, cfg.fc_dim
        self.register_buffer("spatial_perm_table", torch.from_numpy(hamming_permutations(T, cfg.spatial_perms, cfg.seed)))
        self.register_buffer("temporal_perm_table", torch.from_numpy(hamming_permutations(cfg.frames, cfg.temporal_perms, cfg.seed)))
        self.spatial_fc6 = nn.Sequential(nn.Linear(D, fc), nn.ReLU(inplace=True))
        self.spatial_fc7 = nn.Sequential(nn.Linear(T * fc, fc), nn.ReLU(inplace=True))
        self.spatial_cls = nn.Linear(fc, cfg.spatial_perms)
        self.temporal_fc6 = nn.Sequential(nn.Linear(D, fc), nn.ReLU(inplace=True))
        self.temporal_lstm = nn.LSTM(fc, cfg.lstm_dim, batch_first=True)
        self.temporal_cls = nn.Linear(cfg.lstm_dim, cfg.temporal_perms)
        self.val_clip: torch.Tensor | None = None  # [N, U, 3, H, W] held-out validation clips
        self.schedule_log: list[dict] = []  # one row per task and policy update
        # plain dict: the policies are not submodules (not in parameters(), not trained by the trainer)
        self.schedules: dict[str, TaskSchedule] = {}
        if cfg.schedule == "policy":
            for task in self.tasks:
                table = self.perm_table(task)
                onehot = F.one_hot(table, table.shape[1]).flatten(1).numpy()  # [P, n * n]
                labels = kmeans_groups(onehot, cfg.groups, seed=cfg.seed)
                self.schedules[task] = TaskSchedule(len(table), cfg.groups, cfg.policy_hidden, cfg.policy_lr, labels)

    @property
    def clip_len(self) -> int:
        """Frames per clip the batches must hold (``frames``)."""
        return self.cfg.frames

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks with a non-zero weight."""
        return tuple(t for t in TASKS if getattr(self.cfg, f"{t}_weight") > 0)

    def perm_table(self, task: str) -> torch.Tensor:
        return self.spatial_perm_table if task == "spatial" else self.temporal_perm_table

    # ---- named stages -------------------------------------------------------------------------------
    def pooled_features(self, images: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, h, w] in [0, 1] -> trunk features, global-average pooled [N, D]."""
        return self.encoder.forward_features(normalize_images(images)).mean(dim=(-2, -1))  # [N, D]

    def cut_tiles(self, frame: torch.Tensor, jitter: bool) -> torch.Tensor:
        """Frame [B, 3, H, W] -> tiles [B, T, 3, th, tw] in cell (row-major) order.

        Each cell is ``H // grid x W // grid``; its tile is ``tile_fraction`` of that, at a uniformly
        random offset inside the cell (per sample and cell) when ``jitter``, else centred.
        """
        B, _, H, W = frame.shape
        g = self.cfg.grid
        ch, cw = H // g, W // g
        th, tw = max(1, int(round(ch * self.cfg.tile_fraction))), max(1, int(round(cw * self.cfg.tile_fraction)))
        if ch < 1 or cw < 1:
            raise ValueError(f"Shuffle: frame {H}x{W} is too small for a {g}x{g} grid")
        T = g * g
        if jitter:
            oy = torch.randint(0, ch - th + 1, (B, T))  # [B, T]
            ox = torch.randint(0, cw - tw + 1, (B, T))
        else:
            oy = torch.full((B, T), (ch - th) // 2)
            ox = torch.full((B, T), (cw - tw) // 2)
        cell = torch.arange(T)
        y0 = (cell // g) * ch + oy  # [B, T] top-left corner of each tile
        x0 = (cell % g) * cw + ox
        rows = (y0[..., None] + torch.arange(th)).to(frame.device)  # [B, T, th]
        cols = (x0[..., None] + torch.arange(tw)).to(frame.device)  # [B, T, tw]
        b = torch.arange(B, device=frame.device).view(B, 1, 1, 1)
        tiles = frame[b, :, rows[..., None], cols[..., None, :]]  # [B, T, th, tw, 3]
        return tiles.permute(0, 1, 4, 2, 3)  # [B, T, 3, th, tw]

    def tile_features(self, tiles: torch.Tensor) -> torch.Tensor:
        """Tiles [B, T, 3, th, tw] -> fc6 features [B, T, F] (trunk per tile, pooled, shared fc6)."""
        B, T = tiles.shape[:2]
        return self.spatial_fc6(self.pooled_features(tiles.flatten(0, 1))).view(B, T, -1)

    def spatial_logits(self, feats: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
        """fc6 tile features [B, T, F] shuffled by perms [B, T] -> fc7 -> logits [B, spatial_perms]."""
        return self.spatial_cls(self.spatial_fc7(shuffle_items(feats, perms).flatten(1)))

    def frame_features(self, clip: torch.Tensor) -> torch.Tensor:
        """Clip [B, U, 3, H, W] -> per-frame fc6 features [B, U, F]."""
        B, U = clip.shape[:2]
        return self.temporal_fc6(self.pooled_features(clip.flatten(0, 1))).view(B, U, -1)

    def temporal_logits(self, feats: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
        """Frame features [B, U, F] in the order perms [B, U] -> LSTM -> last hidden -> logits [B, temporal_perms]."""
        _, (h, _) = self.temporal_lstm(shuffle_items(feats, perms))  # h [1, B, L]
        return self.temporal_cls(h[-1])

    def task_features(self, task: str, clip: torch.Tensor, jitter: bool) -> torch.Tensor:
        """Unshuffled fc6 features of a task: tiles of the middle frame [B, T, F] or frames [B, U, F]."""
        if task == "spatial":
            return self.tile_features(self.cut_tiles(clip[:, clip.shape[1] // 2], jitter))
        return self.frame_features(clip)

    def task_logits(self, task: str, feats: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
        return self.spatial_logits(feats, perms) if task == "spatial" else self.temporal_logits(feats, perms)

    def sample_permutations(self, task: str, n: int) -> torch.Tensor:
        """Permutation indices [n] (CPU) from the current sampling distribution of ``task``; in
        training mode the policy's actions are recorded for the next REINFORCE update."""
        if self.cfg.schedule == "uniform":
            return torch.randint(0, len(self.perm_table(task)), (n,))
        return self.schedules[task].sample(n, record=self.training)

    # ---- loss ---------------------------------------------------------------------------------------
    def set_validation(self, batch: dict) -> None:
        """Use ``batch["clip"]`` as the held-out validation clips of the policy schedule."""
        self.val_clip = self._check_clip(batch["clip"]).detach().clone()

    def _check_clip(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.ndim != 5 or clip.shape[1] != self.cfg.frames or clip.shape[2] != 3:
            raise ValueError(f"Shuffle expects clip [B, {self.cfg.frames}, 3, H, W], got {tuple(clip.shape)}")
        return clip

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        clip = self._check_clip(batch["clip"])  # [B, U, 3, H, W] in [0, 1]
        hold_out = self.cfg.schedule == "policy" and self.training and self.val_clip is None
        if hold_out:
            self.set_validation(batch)
        loss, logs = clip.new_zeros(()), {}
        for task in self.tasks:
            feats = self.task_features(task, clip, jitter=self.training)  # [B, T or U, F]
            idx = self.sample_permutations(task, clip.shape[0]).to(clip.device)  # [B]
            logits = self.task_logits(task, feats, self.perm_table(task)[idx]).float()  # [B, P]
            ce = F.cross_entropy(logits, idx)
            loss = loss + getattr(self.cfg, f"{task}_weight") * ce
            logs[f"{task}_ce"] = ce.detach()
            logs[f"{task}_acc"] = (logits.detach().argmax(1) == idx).float().mean()
        if hold_out:  # the validation batch is never trained on
            loss = loss * 0.0
        return loss, logs

    # ---- schedule -----------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate_permutations(self, task: str, clip: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
        """Run ``task`` on the validation clips under every permutation (eval mode, centred tiles).

        -> (ratio matrix [P, N]: smoothed softmax ratio of permutation p on clip n, validation error:
        fraction of the N * P (clip, permutation) pairs whose argmax is wrong).
        """
        clip = self.val_clip if clip is None else clip
        if clip is None:
            raise RuntimeError("Shuffle has no validation clips: call set_validation or run a training batch first")
        was_training = self.training
        self.eval()
        try:
            dev = next(self.encoder.parameters()).device
            clip = self._check_clip(clip).to(dev)
            feats = self.task_features(task, clip, jitter=False)  # [N, T, F]
            N, T, Fd = feats.shape
            table = self.perm_table(task)  # [P, T]
            P = len(table)
            chunk = max(1, EVAL_ROWS // N)
            ratios, wrong = [], 0
            for start in range(0, P, chunk):
                pc = torch.arange(start, min(P, start + chunk), device=dev)  # [C]
                C = len(pc)
                rows = feats[:, None].expand(N, C, T, Fd).reshape(N * C, T, Fd)  # row n * C + c
                perms = table[pc].repeat(N, 1)  # [N * C, T]
                targets = pc.repeat(N)  # [N * C]
                probs = self.task_logits(task, rows, perms).float().softmax(-1)  # [N * C, P]
                ratios.append(sample_ratios(probs, targets).view(N, C))
                wrong += int((probs.argmax(1) != targets).sum())
            return torch.cat(ratios, 1).t().cpu(), wrong / (N * P)  # [P, N]
        finally:
            self.train(was_training)

    def update_schedule(self, step: int | None = None) -> list[dict]:
        """Evaluate, reward, REINFORCE, regroup and choose the next group distribution (every task)."""
        rows = []
        for task in self.tasks:
            s = self.schedules[task]
            ratios, err = self.evaluate_permutations(task)  # [P, N], float
            s.errors = (s.errors + [err])[-3:]
            row = {"step": step, "task": task, "error": err}
            if s.pending_state is not None and s.counts.sum() > 0 and len(s.errors) >= 2:
                row.update(s.reinforce(extrapolated_reward(s.errors), self.cfg.entropy, self.cfg.baseline_momentum))
            per_perm = ratios.mean(1)  # [P] mean ratio of every permutation
            labels = kmeans_groups(ratios.numpy(), self.cfg.groups, seed=self.cfg.seed)
            labels = sort_groups(labels, per_perm.numpy(), self.cfg.groups)
            s.set_groups(labels)
            s.pending_state = group_state(per_perm, s.labels, self.cfg.groups)  # [2G]
            with torch.no_grad():
                s.group_probs = s.policy(s.pending_state)
            s.counts.zero_()
            row["group_probs"] = [round(float(p), 4) for p in s.group_probs]
            rows.append(row)
        self.schedule_log.extend(rows)
        return rows

    def after_step(self, step: int, total_steps: int) -> None:
        """Every ``policy_every`` steps (schedule ``policy``): :meth:`update_schedule`."""
        if self.cfg.schedule != "policy" or step % self.cfg.policy_every or self.val_clip is None:
            return
        self.update_schedule(step)

    # ---- checkpoints --------------------------------------------------------------------------------
    def get_extra_state(self) -> dict:
        return {"val_clip": None if self.val_clip is None else self.val_clip.detach().cpu(),
                "schedules": {t: s.state_dict() for t, s in self.schedules.items()}}

    def set_extra_state(self, state: dict) -> None:
        v = state.get("val_clip")
        self.val_clip = None if v is None else v.clone()
        for t, s in state.get("schedules", {}).items():
            if t in self.schedules:
                self.schedules[t].load_state_dict(s)


METHOD = Method(
    name="shuffle", config=ShuffleConfig, objective=Shuffle, batch="clips", encoder=DeepLabConfig(num_classes=0),
    trainer=DENSE_TRAINER, batch_settings=DENSE_CROP,
    summary="spatiotemporal shuffling (3x3 jigsaw + frame order) with a REINFORCE permutation schedule, DeepLabV3+ encoder")
