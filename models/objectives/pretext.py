"""Small pretext-task baselines around the same DeepLabV3+ encoder as RegConsist.

Every objective here trains on the frame-pair batches of the RSP/MAE sampler
(``batch_kind = "pairs"``: ``{"x_t", "x_k": [B, 3, H, W] float in [0, 1], "gap": [B]}``, frame t and
frame t+k of one ordered stream under the same random-resized crop and flip) and exposes
``encoder`` (a :class:`DeepLabV3Plus`, default ``DeepLabConfig(num_classes=0)``: no classifier),
``encoder_kind = "deeplabv3plus"`` and ``encoder_config``, so their checkpoints feed the
segmentation, label-propagation and BC readouts exactly like RegConsist's. The image-level
embedding is the global average of ``forward_features`` (``[B, D]``, D = ``decoder_channels``).

- :class:`Rotation` (Gidaris et al., 2018): predict which of 0/90/180/270 degrees an image was
  rotated by (4-way cross-entropy). Both frames of the pair are used as independent images.
- :class:`SimCLR` (Chen et al., 2020): two augmented views, MLP projector, NT-Xent.
- :class:`BYOL` (Grill et al., 2020): online encoder + projector + predictor regress an EMA target
  encoder + projector; symmetric ``2 - 2 cos`` loss; the EMA momentum follows BYOL's cosine schedule
  in ``after_step``.
- :class:`TCN` (Sermanet et al., 2018), single-view time-contrastive: anchor x_t, positive x_k (a
  nearby frame of the same stream), the other items of the batch as negatives; multi-pair
  InfoNCE ("n-pairs", Sohn 2016) or the paper's triplet margin loss.

SimCLR and BYOL take ``views="augment"`` (two augmentations of x_t, the classic methods) or
``views="time"`` (x_t and x_k, each augmented, as the two views: time as an augmentation). Both views
go through the encoder as one concatenated batch (BatchNorm statistics are shared across views).

Repeated sampling: the frame-pair sampler puts each (t, k) pair ``repeats`` times in a row with
different crops. Those block mates show the same frames, so SimCLR and TCN take ``repeats`` and never
use block mates as negatives (set it to the sampler's ``FramePairConfig.repeats``; 1 = every other
item is a negative).

:data:`PRETEXT` maps method names to ``(config class, objective class)``; :func:`build_pretext`
builds one.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from regconsist_ros.models.deeplab import DeepLabConfig, DeepLabV3Plus, normalize_images
from regconsist_ros.learning.augment import PhotometricAug


# ---- config validation helpers ---------------------------------------------------------------------
def _check_int(name: str, f: str, v, lo: int = 1) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name}.{f} must be an integer >= {lo}, got {v!r}")


def _check_choice(name: str, f: str, v, choices: tuple) -> None:
    if v not in choices:
        raise ValueError(f"{name}.{f} must be one of {choices}, got {v!r}")


def _check_range(name: str, f: str, v) -> tuple[float, float]:
    try:
        lo, hi = (float(t) for t in v)
    except (TypeError, ValueError):
        raise ValueError(f"{name}.{f} must be a pair (lo, hi), got {v!r}") from None
    return lo, hi


def _check_prob(name: str, f: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
        raise ValueError(f"{name}.{f} must be a probability in [0, 1], got {v!r}")


def _check_positive(name: str, f: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name}.{f} must be a finite number > 0, got {v!r}")


# ---- shared pieces ---------------------------------------------------------------------------------
class _PairObjective(nn.Module):
    """Base: a DeepLabV3+ encoder and its pooled image embedding."""

    encoder_kind = "deeplabv3plus"
    batch_kind = "pairs"

    def __init__(self, encoder_cfg: DeepLabConfig | None):
        super().__init__()
        self.encoder_config = ec = encoder_cfg if encoder_cfg is not None else DeepLabConfig(num_classes=0)
        self.encoder = DeepLabV3Plus(ec)

    @property
    def feature_dim(self) -> int:
        return self.encoder.feature_dim

    def pooled(self, imgs: torch.Tensor, encoder: nn.Module | None = None) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> global average of ``forward_features`` [B, D]."""
        enc = self.encoder if encoder is None else encoder
        return enc.forward_features(normalize_images(imgs)).mean((2, 3))  # [B, D, H/4, W/4] -> [B, D]


def mlp(cin: int, hidden: int, cout: int) -> nn.Sequential:
    """Linear -> BatchNorm1d -> ReLU -> Linear (the SimCLR/BYOL projector and predictor shape)."""
    return nn.Sequential(nn.Linear(cin, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, cout))


def _blocks(n: int, repeats: int, device) -> torch.Tensor:
    """Block id of each of ``n`` items (items ``r*i .. r*i + r-1`` show the same frames) -> [n]."""
    if n % repeats:
        raise ValueError(f"batch of {n} items is not a multiple of repeats={repeats}")
    if n // repeats < 2:
        raise ValueError(f"need at least 2 blocks of repeats={repeats} items for negatives, got {n} items")
    return torch.arange(n, device=device) // repeats


# ---- rotation ----------------------------------------------------------------------------------------
def center_crop_square(x: torch.Tensor) -> torch.Tensor:
    """[..., H, W] -> the centred [..., S, S] crop, S = min(H, W) (a view; unchanged when square)."""
    H, W = x.shape[-2:]
    s = min(H, W)
    top, left = (H - s) // 2, (W - s) // 2
    return x[..., top:top + s, left:left + s]


def rotate_images(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Rotate each square image x [N, C, S, S] by k[n] * 90 degrees counter-clockwise (``torch.rot90``
    over (H, W)); k [N] integers in 0..3. Rotating by k and then by (4 - k) % 4 gives the original."""
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotate_images expects square images [N, C, S, S], got {tuple(x.shape)} "
                         f"(crop with center_crop_square first)")
    k = torch.as_tensor(k, device=x.device).long()
    if k.shape != x.shape[:1]:
        raise ValueError(f"rotate_images: k must have shape [{x.shape[0]}], got {tuple(k.shape)}")
    if bool(((k < 0) | (k > 3)).any()):
        raise ValueError(f"rotate_images: labels must be in 0..3, got {k.unique().tolist()}")
    out = x.clone()
    for r in (1, 2, 3):
        m = k == r
        if bool(m.any()):
            out[m] = torch.rot90(x[m], r, dims=(-2, -1))
    return out


def all_rotations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Square images [N, C, S, S] -> all four rotations [4N, C, S, S] (rotation-major) and labels [4N]."""
    imgs = torch.cat([torch.rot90(x, r, dims=(-2, -1)) for r in range(4)])  # [4N, C, S, S]
    labels = torch.arange(4, device=x.device).repeat_interleave(x.shape[0])  # [4N]
    return imgs, labels


@dataclass
class RotationConfig:
    """Rotation prediction (Gidaris et al., 2018) on square centre crops of both frames of each pair."""

    rotations: Literal["all", "random"] = field(default="all", metadata={"help": "all: every image in all four rotations (the paper's best setting, 4x the images); random: one random rotation per image"})
    head: Literal["linear", "mlp"] = field(default="linear", metadata={"help": "4-way classifier on the pooled feature: linear, or Linear-BN-ReLU-Linear"})
    hidden: int = field(default=256, metadata={"help": "hidden width of the mlp head"})

    def __post_init__(self):
        name = type(self).__name__
        _check_choice(name, "rotations", self.rotations, ("all", "random"))
        _check_choice(name, "head", self.head, ("linear", "mlp"))
        _check_int(name, "hidden", self.hidden)


class Rotation(_PairObjective):
    """Objective: ``forward({"x_t", "x_k"}) -> (loss, logs)``; logs ``rot_ce``, ``rot_acc``.

    Non-square inputs are centre-cropped to their shorter side first, so that all four rotations
    have the same shape (the encoder sees S x S images, S = min(H, W))."""

    def __init__(self, cfg: RotationConfig | None = None, encoder_cfg: DeepLabConfig | None = None):
        super().__init__(encoder_cfg)
        self.cfg = cfg = cfg or RotationConfig()
        D = self.feature_dim
        self.head = nn.Linear(D, 4) if cfg.head == "linear" else mlp(D, cfg.hidden, 4)

    def rotated_batch(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Both frames, square-cropped and rotated -> images [M, 3, S, S] and labels [M] (M = 8B or 2B)."""
        imgs = center_crop_square(torch.cat([batch["x_t"], batch["x_k"]]))  # [2B, 3, S, S]
        if self.cfg.rotations == "all":
            return all_rotations(imgs)  # [8B, 3, S, S], [8B]
        labels = torch.randint(0, 4, (imgs.shape[0],), device=imgs.device)  # [2B]
        return rotate_images(imgs, labels), labels

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        imgs, labels = self.rotated_batch(batch)
        logits = self.head(self.pooled(imgs)).float()  # [M, 4]
        loss = F.cross_entropy(logits, labels)
        acc = (logits.detach().argmax(1) == labels).float().mean()
        return loss, {"rot_ce": loss.detach(), "rot_acc": acc}


# ---- view augmentation -------------------------------------------------------------------------------
def random_resized_crop(x: torch.Tensor, scale: tuple[float, float] = (0.2, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), hflip: float = 0.5,
                        g: torch.Generator | None = None) -> torch.Tensor:
    """Batched random-resized crop (+ horizontal flip) of x [B, C, H, W], back to H x W (bilinear).

    Per sample: area fraction uniform in ``scale``, aspect (w/h, relative to the image's) log-uniform
    in ``ratio``; crop sides as fractions of the image sides are sqrt(area * aspect) and
    sqrt(area / aspect), clipped to 1 (instead of torchvision's rejection sampling; clipping can only
    shrink the area); position uniform among the placements inside the image; flipped with
    probability ``hflip``. One ``grid_sample`` for the batch; the full-image crop without flip is the
    identity. Randomness: one ``torch.rand((B, 5))`` from ``g`` (on x's device)."""
    B = x.shape[0]
    u = torch.rand((B, 5), generator=g, device=x.device, dtype=torch.float32)  # area, aspect, cx, cy, flip
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    aspect = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1])
    fw = torch.sqrt(area * aspect).clamp(max=1.0)  # [B] crop width / image width
    fh = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (1.0 - fw) * (2.0 * u[:, 2] - 1.0)  # crop centre in [-1, 1] coordinates, crop inside the image
    cy = (1.0 - fh) * (2.0 * u[:, 3] - 1.0)
    sx = torch.where(u[:, 4] < hflip, -fw, fw)
    theta = torch.zeros(B, 2, 3, device=x.device, dtype=torch.float32)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, fh, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # [B, H, W, 2] output -> source
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)


@dataclass(frozen=True)
class ViewAugment:
    """SimCLR/BYOL-style views on image tensors: random-resized crop + flip, then colour jitter,
    random grayscale and Gaussian blur (:class:`PhotometricAug`). x [B, 3, H, W] in [0, 1] -> same
    shape, in [0, 1], no gradient; deterministic given the generator ``g`` (on x's device)."""

    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    photometric: PhotometricAug | None = PhotometricAug()

    def __call__(self, x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            y = random_resized_crop(x.float(), self.scale, self.ratio, self.hflip, g)
            if self.photometric is not None:
                y = self.photometric(y, g)
            return y.clamp(0.0, 1.0)


# ---- contrastive / self-distillation losses ----------------------------------------------------------
def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1,
            repeats: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """NT-Xent (SimCLR) on two views z1, z2 [N, P] of N items -> (loss, mean positive cosine).

    The 2N embeddings are L2-normalised; for each one the positive is the other view of its item
    and the candidates are all 2N embeddings except itself and, with ``repeats`` > 1, except the
    views of its block mates (items ``r*i .. r*i + r-1`` show the same frames). The loss is the mean
    over the 2N anchors of ``-log softmax(cos / temperature)[positive]``."""
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(f"nt_xent expects z1, z2 of the same shape [N, P], got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = z1.shape[0]
    block = _blocks(n, repeats, z1.device).repeat(2)  # [2N]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # [2N, P]
    sim = z @ z.T  # [2N, 2N] cosine
    idx = torch.arange(2 * n, device=z.device)
    pos = (idx + n) % (2 * n)  # [2N] index of the other view
    drop = block[:, None] == block[None, :]  # self and block mates
    drop[idx, pos] = False
    logits = (sim / temperature).masked_fill(drop, float("-inf"))
    return F.cross_entropy(logits, pos), sim[idx[:n], pos[:n]].detach().mean()


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL regression loss: mean over the batch of ``2 - 2 cos(p, z)`` (p [N, P] predictions, z
    [N, P] targets; z gets no gradient)."""
    return (2.0 - 2.0 * F.cosine_similarity(p.float(), z.detach().float(), dim=-1)).mean()


def npairs_loss(anchors: torch.Tensor, positives: torch.Tensor, temperature: float = 0.1,
                repeats: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-pair InfoNCE / N-pairs (Sohn, 2016) on L2-normalised embeddings -> (loss, accuracy).

    ``anchors``, ``positives`` [N, E]; anchor i's candidates are all positives (its own and the other
    items', minus its block mates' with ``repeats`` > 1). ``loss = mean_i -log softmax_j(cos(a_i, p_j)
    / temperature)[i]``, which equals Sohn's ``log(1 + sum_{j != i} exp(s_ij - s_ii))``. Sohn (and the
    TCN code) use unnormalised dot products with an L2 penalty on the embeddings; here embeddings are
    unit vectors and a temperature sets the sharpness. Accuracy: fraction of anchors whose most
    similar candidate is their own positive."""
    if anchors.ndim != 2 or anchors.shape != positives.shape:
        raise ValueError(f"npairs_loss expects anchors, positives of the same shape [N, E], got "
                         f"{tuple(anchors.shape)} and {tuple(positives.shape)}")
    logits = _pair_logits(anchors, positives, repeats) / temperature  # [N, N]
    labels = torch.arange(anchors.shape[0], device=anchors.device)
    return F.cross_entropy(logits, labels), (logits.detach().argmax(1) == labels).float().mean()


def _pair_logits(anchors: torch.Tensor, positives: torch.Tensor, repeats: int) -> torch.Tensor:
    """cos(a_i, p_j) [N, N], -inf where j is a block mate of i (j != i)."""
    n = anchors.shape[0]
    block = _blocks(n, repeats, anchors.device)
    sim = F.normalize(anchors.float(), dim=1) @ F.normalize(positives.float(), dim=1).T  # [N, N]
    drop = (block[:, None] == block[None, :]) & ~torch.eye(n, dtype=torch.bool, device=sim.device)
    return sim.masked_fill(drop, float("-inf"))


def triplet_loss(anchors: torch.Tensor, positives: torch.Tensor, margin: float = 0.2,
                 repeats: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """TCN's triplet loss on L2-normalised embeddings -> (loss, accuracy).

    ``mean over triplets of max(0, |a_i - p_i|^2 - |a_i - n|^2 + margin)`` where the negatives n of
    anchor i are both frames (anchor and positive) of every item that is not a block mate of i.
    The paper takes negatives as temporally distant frames of the same video; a pair batch only has
    the other items' frames, which come from other times (or other streams), so they stand in for
    distant frames (a frame of another item may happen to lie close in time). Accuracy as in
    :func:`npairs_loss`."""
    if anchors.ndim != 2 or anchors.shape != positives.shape:
        raise ValueError(f"triplet_loss expects anchors, positives of the same shape [N, E], got "
                         f"{tuple(anchors.shape)} and {tuple(positives.shape)}")
    n = anchors.shape[0]
    block = _blocks(n, repeats, anchors.device)
    a = F.normalize(anchors.float(), dim=1)
    p = F.normalize(positives.float(), dim=1)
    d_ap = (a - p).pow(2).sum(1)  # [N]
    negs = torch.cat([a, p])  # [2N, E]
    d_an = (a[:, None, :] - negs[None, :, :]).pow(2).sum(-1)  # [N, 2N]
    valid = block[:, None] != block.repeat(2)[None, :]  # [N, 2N]
    loss = F.relu(d_ap[:, None] - d_an + margin)[valid].mean()
    acc = (_pair_logits(a, p, repeats).argmax(1) == torch.arange(n, device=a.device)).float().mean()
    return loss, acc


# ---- SimCLR and BYOL ---------------------------------------------------------------------------------
@dataclass
class ContrastiveConfig:
    """SimCLR / BYOL settings (paper recipes scaled down for small encoders and CPU)."""

    views: Literal["augment", "time"] = field(default="augment", metadata={"help": "augment: two augmentations of x_t (classic); time: x_t and x_k, each augmented"})
    proj_dim: int = field(default=128, metadata={"help": "projector output dimension"})
    hidden: int = field(default=512, metadata={"help": "hidden width of the projector (and BYOL predictor)"})
    temperature: float = field(default=0.1, metadata={"help": "SimCLR: NT-Xent temperature"})
    repeats: int = field(default=1, metadata={"help": "SimCLR: items come in blocks of this many showing the same frames (the sampler's repeats); block mates are not negatives"})
    ema: float = field(default=0.99, metadata={"help": "BYOL: base target momentum, raised to 1 by a cosine schedule"})
    crop_scale: tuple[float, ...] = field(default=(0.2, 1.0), metadata={"help": "random-resized-crop area fraction range (lo hi)"})
    crop_ratio: tuple[float, ...] = field(default=(3 / 4, 4 / 3), metadata={"help": "crop aspect ratio range (lo hi), relative to the image's"})
    hflip: float = field(default=0.5, metadata={"help": "probability of a horizontal flip"})
    jitter_p: float = field(default=0.8, metadata={"help": "probability of colour jitter (brightness/contrast/saturation 0.4, hue 0.1)"})
    gray_p: float = field(default=0.2, metadata={"help": "probability of grayscale"})
    blur_p: float = field(default=0.5, metadata={"help": "probability of Gaussian blur (0 = off)"})

    def __post_init__(self):
        name = type(self).__name__
        _check_choice(name, "views", self.views, ("augment", "time"))
        for f in ("proj_dim", "hidden", "repeats"):
            _check_int(name, f, getattr(self, f))
        _check_positive(name, "temperature", self.temperature)
        if isinstance(self.ema, bool) or not isinstance(self.ema, (int, float)) or not 0.0 <= self.ema <= 1.0:
            raise ValueError(f"{name}.ema must be in [0, 1], got {self.ema!r}")
        self.crop_scale = lo_hi = _check_range(name, "crop_scale", self.crop_scale)
        if not 0.0 < lo_hi[0] <= lo_hi[1] <= 1.0:
            raise ValueError(f"{name}.crop_scale must be (lo, hi) with 0 < lo <= hi <= 1, got {self.crop_scale}")
        self.crop_ratio = lo_hi = _check_range(name, "crop_ratio", self.crop_ratio)
        if not (0.0 < lo_hi[0] <= lo_hi[1] and math.isfinite(lo_hi[1])):
            raise ValueError(f"{name}.crop_ratio must be (lo, hi) with 0 < lo <= hi, got {self.crop_ratio}")
        for f in ("hflip", "jitter_p", "gray_p", "blur_p"):
            _check_prob(name, f, getattr(self, f))

    def augment(self) -> ViewAugment:
        photometric = None
        if self.jitter_p or self.gray_p or self.blur_p:
            photometric = PhotometricAug(p_jitter=self.jitter_p, p_gray=self.gray_p, p_blur=self.blur_p)
        return ViewAugment(tuple(self.crop_scale), tuple(self.crop_ratio), self.hflip, photometric)


class _TwoViewObjective(_PairObjective):
    def __init__(self, cfg: ContrastiveConfig | None, encoder_cfg: DeepLabConfig | None):
        super().__init__(encoder_cfg)
        self.cfg = cfg = cfg or ContrastiveConfig()
        self.augment = cfg.augment()
        self.projector = mlp(self.feature_dim, cfg.hidden, cfg.proj_dim)

    def views(self, batch: dict) -> torch.Tensor:
        """The two views of each item, concatenated -> [2B, 3, H, W] (view 1 of every item, then view 2)."""
        x1 = batch["x_t"]
        x2 = batch["x_t"] if self.cfg.views == "augment" else batch["x_k"]
        return torch.cat([self.augment(x1), self.augment(x2)])


class SimCLR(_TwoViewObjective):
    """Objective: two views -> encoder -> pooled -> projector -> NT-Xent; logs ``nt_xent``, ``pos_sim``."""

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        v = self.views(batch)  # [2B, 3, H, W]
        z1, z2 = self.projector(self.pooled(v)).chunk(2)  # [B, P] each
        loss, pos_sim = nt_xent(z1, z2, self.cfg.temperature, self.cfg.repeats)
        return loss, {"nt_xent": loss.detach(), "pos_sim": pos_sim}


class BYOL(_TwoViewObjective):
    """Objective: online encoder + projector + predictor regress the EMA target's projection of the
    other view, ``loss = (2 - 2 cos(q1, z2')) + (2 - 2 cos(q2, z1'))`` (each term a batch mean; their
    sum as in the paper, so the loss lies in [0, 8]); logs ``byol``.

    The target encoder and projector are deep copies of the online ones with ``requires_grad=False``
    (the trainer's optimiser only takes parameters that require grad), run under ``no_grad``, and are
    updated only by :meth:`after_step`: ``target = tau * target + (1 - tau) * online`` with
    ``tau = 1 - (1 - ema) * (cos(pi * step / total) + 1) / 2``; their buffers (BatchNorm running
    statistics) are copied from the online network. They are submodules, so ``state_dict`` (and a
    resumed run) keeps them; checkpoints for readouts hold the online encoder."""

    def __init__(self, cfg: ContrastiveConfig | None = None, encoder_cfg: DeepLabConfig | None = None):
        super().__init__(cfg, encoder_cfg)
        self.predictor = mlp(self.cfg.proj_dim, self.cfg.hidden, self.cfg.proj_dim)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.tau = self.cfg.ema

    def momentum(self, step: int, total_steps: int) -> float:
        """BYOL's cosine schedule: ``ema`` at step 0, 1 at ``total_steps``."""
        if total_steps < 1:
            raise ValueError(f"BYOL.momentum: total_steps must be >= 1, got {total_steps}")
        frac = min(max(step / total_steps, 0.0), 1.0)
        return 1.0 - (1.0 - self.cfg.ema) * (math.cos(math.pi * frac) + 1.0) / 2.0

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        """EMA update of the target after an optimiser step."""
        self.tau = tau = self.momentum(step, total_steps)
        for online, target in ((self.encoder, self.target_encoder), (self.projector, self.target_projector)):
            for po, pt in zip(online.parameters(), target.parameters()):
                pt.mul_(tau).add_(po.detach(), alpha=1.0 - tau)
            for bo, bt in zip(online.buffers(), target.buffers()):
                bt.copy_(bo)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        v = self.views(batch)  # [2B, 3, H, W]
        q1, q2 = self.predictor(self.projector(self.pooled(v))).chunk(2)  # [B, P] each
        with torch.no_grad():
            t1, t2 = self.target_projector(self.pooled(v, self.target_encoder)).chunk(2)  # [B, P]
        loss = byol_loss(q1, t2) + byol_loss(q2, t1)
        return loss, {"byol": loss.detach()}


# ---- TCN ---------------------------------------------------------------------------------------------
@dataclass
class TCNConfig:
    """Single-view time-contrastive networks (Sermanet et al., 2018) on frame pairs."""

    loss: Literal["npairs", "triplet"] = field(default="npairs", metadata={"help": "npairs: multi-pair InfoNCE, the other items' positives as negatives; triplet: the paper's margin loss, the other items' frames as negatives"})
    embed_dim: int = field(default=32, metadata={"help": "embedding dimension (linear head on the pooled feature, L2-normalised)"})
    temperature: float = field(default=0.1, metadata={"help": "npairs: softmax temperature on cosine similarities"})
    margin: float = field(default=0.2, metadata={"help": "triplet: margin on squared distances of unit embeddings"})
    repeats: int = field(default=1, metadata={"help": "items come in blocks of this many showing the same frames (the sampler's repeats); block mates are not negatives"})

    def __post_init__(self):
        name = type(self).__name__
        _check_choice(name, "loss", self.loss, ("npairs", "triplet"))
        _check_int(name, "embed_dim", self.embed_dim)
        _check_int(name, "repeats", self.repeats)
        _check_positive(name, "temperature", self.temperature)
        if isinstance(self.margin, bool) or not isinstance(self.margin, (int, float)) or not self.margin >= 0:
            raise ValueError(f"{name}.margin must be >= 0, got {self.margin!r}")


class TCN(_PairObjective):
    """Objective: anchors x_t, positives x_k -> L2-normalised embeddings -> n-pairs or triplet loss;
    logs ``tcn`` and ``tcn_acc`` (fraction of anchors whose nearest candidate positive is their own).
    No augmentation beyond the sampler's shared crop and flip."""

    def __init__(self, cfg: TCNConfig | None = None, encoder_cfg: DeepLabConfig | None = None):
        super().__init__(encoder_cfg)
        self.cfg = cfg = cfg or TCNConfig()
        self.head = nn.Linear(self.feature_dim, cfg.embed_dim)

    def embed(self, imgs: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> unit embeddings [B, E]."""
        return F.normalize(self.head(self.pooled(imgs)).float(), dim=1)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        a, p = self.embed(torch.cat([batch["x_t"], batch["x_k"]])).chunk(2)  # [B, E] each
        if self.cfg.loss == "npairs":
            loss, acc = npairs_loss(a, p, self.cfg.temperature, self.cfg.repeats)
        else:
            loss, acc = triplet_loss(a, p, self.cfg.margin, self.cfg.repeats)
        return loss, {"tcn": loss.detach(), "tcn_acc": acc}


# ---- registry ----------------------------------------------------------------------------------------
PRETEXT: dict[str, tuple[type, type[nn.Module]]] = {
    "rotation": (RotationConfig, Rotation),
    "simclr": (ContrastiveConfig, SimCLR),
    "byol": (ContrastiveConfig, BYOL),
    "tcn": (TCNConfig, TCN),
}


def build_pretext(name: str, cfg=None, encoder_cfg: DeepLabConfig | None = None) -> nn.Module:
    """The pretext objective ``name`` (a key of :data:`PRETEXT`) with its config (None: defaults)
    around a DeepLabV3+ of ``encoder_cfg`` (None: ``DeepLabConfig(num_classes=0)``)."""
    if name not in PRETEXT:
        raise ValueError(f"unknown pretext method {name!r}; known: {sorted(PRETEXT)}")
    cfg_cls, obj_cls = PRETEXT[name]
    if cfg is not None and not isinstance(cfg, cfg_cls):
        raise TypeError(f"pretext method {name!r} takes a {cfg_cls.__name__}, got a {type(cfg).__name__}")
    return obj_cls(cfg, encoder_cfg)
