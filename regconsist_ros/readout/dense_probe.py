"""Dense readouts for every encoder: a frozen linear probe, and a segmentation head for fine-tuning.

**Linear probe** (:func:`run_linear_probe`). The encoder is frozen; its dense features (a ViT's patch
grid, DeepLabV3+'s stride-4 decoder output, a floor's cells: ``encode(...)["patches"]``) are computed
once per view, standardised per channel with the training views' statistics, and a 1x1 classifier
(a linear map per cell) is trained on them with AdamW; its logits are upsampled bilinearly to the
label size, the loss is cross-entropy that ignores void (estimated on sampled labelled pixels, where
the upsampled logits are those of the bilinearly interpolated features), and predictions are the
arg-max over the non-void classes. Per environment the labelled views are split (seeded) three ways: ``labels`` of
them train the probe, ``val`` of the rest choose the weight decay among ``weight_decays`` (the
probe's only searched setting), and the remaining views are the test views the mIoU is reported on;
validation and test views never overlap.

**Segmenter** wraps any encoder with a 1x1 classifier on its dense features so that the few-label
fine-tuning readout (:func:`regconsist_ros.readout.segmentation.finetune`) and the supervised
ceiling can train a ViT as they train DeepLabV3+; :func:`segmentation_network` picks DeepLabV3+'s own
head and the wrapper for everything else.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from regconsist_ros.readout.segmentation import VOID, confusion_matrix, miou, split_views


@dataclass
class ProbeConfig:
    """Settings of the frozen dense linear probe."""

    labels: float = field(default=0.1, metadata={"help": "fraction of the environment's labelled views the probe is trained on"})
    val: float = field(default=0.25, metadata={"help": "fraction of the remaining views that choose the weight decay (never tested on)"})
    steps: int = field(default=300, metadata={"help": "AdamW steps of the 1x1 classifier"})
    lr: float = field(default=0.01, metadata={"help": "AdamW learning rate (cosine decay to 0)"})
    batch: int = field(default=16, metadata={"help": "views' worth of sampled pixels per step (all of them when fewer)"})
    pixels: int = field(default=1000, metadata={"help": "labelled pixels sampled per training view (the loss is that of the upsampled logits there)"})
    weight_decays: tuple[float, ...] = field(default=(1e-4, 1e-2, 1e-1), metadata={"help": "weight decays tried; the best on the validation views is reported"})
    seed: int = field(default=0, metadata={"help": "seed of the view split and the minibatches"})

    def __post_init__(self):
        for name in ("labels", "val"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < float(v) < 1.0:
                raise ValueError(f"ProbeConfig.{name} must be in (0, 1), got {v!r}")
        for name in ("steps", "batch", "pixels"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ProbeConfig.{name} must be an integer >= 1, got {v!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"ProbeConfig.lr must be a finite number > 0, got {self.lr!r}")
        self.weight_decays = tuple(float(w) for w in self.weight_decays)
        if not self.weight_decays or any(not (math.isfinite(w) and w >= 0) for w in self.weight_decays):
            raise ValueError(f"ProbeConfig.weight_decays must be finite numbers >= 0, got {self.weight_decays}")


# ---------------------------------------------------------------------------------- the probe


def dense_features(model: nn.Module, rgb: np.ndarray, size="model", batch: int = 16) -> torch.Tensor:
    """Frozen dense features of uint8 frames [N, H, W, 3] -> [N, D, h, w] float32 on the CPU."""
    from regconsist_ros.models.encoder import encode

    return encode(model, torch.from_numpy(np.ascontiguousarray(rgb)), batch=batch, size=size)["patches"]


class LinearProbe(nn.Module):
    """Per-channel standardisation + a 1x1 classifier: features [B, D, h, w] -> logits [B, C, h, w]."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_classes: int):
        super().__init__()
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).float())  # [1, D, 1, 1]
        self.register_buffer("std", std.reshape(1, -1, 1, 1).float())  # [1, D, 1, 1]
        self.head = nn.Conv2d(mean.numel(), num_classes, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head((feats - self.mean) / self.std)

    @torch.no_grad()
    def predict(self, feats: torch.Tensor, size: tuple[int, int], batch: int = 16) -> torch.Tensor:
        """Arg-max over the non-void classes at the label size: feats [N, D, h, w] -> [N, H, W] long."""
        out = []
        for i in range(0, feats.shape[0], batch):
            logits = F.interpolate(self(feats[i:i + batch]), size=size, mode="bilinear", align_corners=False)
            out.append(logits[:, VOID + 1:].argmax(1) + VOID + 1)
        return torch.cat(out) if out else torch.zeros((0, *size), dtype=torch.long)


def pixel_features(feats: torch.Tensor, y: torch.Tensor, per_view: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of sampled labelled pixels: up to ``per_view`` non-void pixels of each view (seeded), each
    given the bilinear interpolation of the feature grid at its centre, exactly what
    ``F.interpolate(..., mode="bilinear", align_corners=False)`` of the grid gives there. Because a 1x1
    classifier is linear, classifying these is classifying the upsampled logits at those pixels.
    feats [N, D, h, w], y [N, H, W] -> (features [P, D], labels [P])."""
    N, D, h, w = feats.shape
    H, W = y.shape[-2:]
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i in range(N):
        idx = np.flatnonzero(y[i].reshape(-1).numpy() != VOID)
        if not idx.size:
            continue
        idx = rng.choice(idx, size=min(per_view, idx.size), replace=False)
        r, c = idx // W, idx % W
        # source coordinate of align_corners=False upsampling, clamped at the border like F.interpolate
        sy = np.clip((r + 0.5) * h / H - 0.5, 0, h - 1)
        sx = np.clip((c + 0.5) * w / W - 0.5, 0, w - 1)
        grid = torch.from_numpy(np.stack([(sx + 0.5) / w * 2 - 1, (sy + 0.5) / h * 2 - 1], -1)).float()  # [P, 2] (x, y)
        f = F.grid_sample(feats[i:i + 1], grid[None, None], mode="bilinear", padding_mode="border",
                          align_corners=False)  # [1, D, 1, P]
        xs.append(f[0, :, 0].T)
        ys.append(y[i].reshape(-1)[torch.from_numpy(idx)])
    if not xs:
        raise ValueError("pixel_features: the training views have no labelled pixel")
    return torch.cat(xs), torch.cat(ys)


def fit_probes(feats: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decays: Sequence[float],
               cfg: ProbeConfig) -> dict[float, LinearProbe]:
    """Train one :class:`LinearProbe` per weight decay on features [N, D, h, w] and labels [N, H, W]
    (0 = void ignored): cross-entropy of the upsampled logits at ``cfg.pixels`` sampled labelled
    pixels per view (:func:`pixel_features`), AdamW with cosine decay, minibatches of
    ``cfg.batch`` views' worth of pixels. The probes see the same minibatches and train side by side
    (one AdamW parameter group per decay); their losses are independent, so each is what it would be alone."""
    if feats.ndim != 4 or y.ndim != 3 or feats.shape[0] != y.shape[0]:
        raise ValueError(f"fit_probes: expected features [N, D, h, w] and labels [N, H, W], got "
                         f"{tuple(feats.shape)} and {tuple(y.shape)}")
    if not bool((y != VOID).any()):
        raise ValueError("fit_probes: the training views have no labelled pixel")
    wds = [float(w) for w in weight_decays]
    C, D = int(num_classes), feats.shape[1]
    flat = feats.transpose(0, 1).reshape(D, -1)  # [D, N h w]
    mean, std = flat.mean(1), flat.std(1).clamp_min(1e-6)
    px, py = pixel_features(feats, y, cfg.pixels, cfg.seed)  # [P, D], [P]
    px = (px - mean) / std
    weights = [nn.Parameter(torch.zeros(D, C)) for _ in wds]  # [D, C] per decay
    biases = [nn.Parameter(torch.zeros(C)) for _ in wds]  # [C] per decay
    opt = torch.optim.AdamW([{"params": [w_, b_], "weight_decay": wd} for w_, b_, wd in zip(weights, biases, wds)], lr=cfg.lr)
    gen = torch.Generator().manual_seed(int(cfg.seed))
    P, mb = px.shape[0], cfg.batch * cfg.pixels
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        pick = torch.randint(P, (mb,), generator=gen) if P > mb else slice(None)
        logits = (px[pick] @ torch.cat(weights, 1) + torch.cat(biases)).unflatten(1, (len(wds), C))  # [B, G, C]
        logits = logits.transpose(1, 2)  # [B, C, G]
        target = py[pick][:, None].expand(-1, len(wds))  # [B, G]
        loss = F.cross_entropy(logits, target, ignore_index=VOID) * len(wds)  # the sum of the probes' losses
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    probes = {}
    with torch.no_grad():
        for g, wd in enumerate(wds):
            p = LinearProbe(mean, std, C)
            p.head.weight.copy_(weights[g].T[..., None, None])
            p.head.bias.copy_(biases[g])
            probes[wd] = p.eval()
    return probes


def _scores(probe: LinearProbe, feats: torch.Tensor, y: torch.Tensor, num_classes: int) -> dict:
    """mIoU over the views and each view's own mIoU (the items intervals resample)."""
    pred = probe.predict(feats, tuple(y.shape[-2:]))
    conf = np.zeros((num_classes, num_classes), np.int64)
    per_view = []
    for p, t in zip(pred, y):
        c = confusion_matrix(p, t, num_classes)
        conf += c
        per_view.append(miou(c)["miou"])
    return {**miou(conf), "per_view_miou": per_view, "confusion": conf}


def three_way_split(n: int, cfg: ProbeConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices of ``n`` labelled views: ``split_views`` for train, then a seeded
    ``cfg.val`` of the rest (at least 1) for validation; test gets what is left (at least 1)."""
    if n < 3:
        raise ValueError(f"the linear probe needs >= 3 labelled views (train, validation, test), got {n}")
    tr, rest = split_views(n, cfg.labels, cfg.seed)
    if len(rest) < 2:
        tr, rest = tr[:-1], np.sort(np.concatenate([tr[-1:], rest]))
    k = min(len(rest) - 1, max(1, int(round(cfg.val * len(rest)))))
    perm = np.random.default_rng(cfg.seed + 7).permutation(rest)
    return tr, np.sort(perm[:k]), np.sort(perm[k:])


def run_linear_probe(model: nn.Module, rgb: np.ndarray, semantic: np.ndarray, num_classes: int,
                     cfg: ProbeConfig | None = None, size="model", class_names: Sequence[str] | None = None,
                     feats: torch.Tensor | None = None) -> dict:
    """The frozen linear probe on one environment's views (rgb uint8 [N, H, W, 3], semantic [N, H, W]).

    Views without a labelled pixel are left out. ``feats`` reuses precomputed features of all N views.
    Returns ``miou`` (test views), ``per_view_miou``, ``per_class`` (name or id -> IoU), ``pixel_acc``,
    ``weight_decay`` (chosen on validation), ``val`` ({weight decay: val mIoU}), ``n_train``,
    ``n_val``, ``n_test`` and the config."""
    cfg = cfg or ProbeConfig()
    rgb, semantic = np.asarray(rgb), np.asarray(semantic)
    if rgb.ndim != 4 or rgb.shape[-1] != 3 or semantic.shape != rgb.shape[:3]:
        raise ValueError(f"run_linear_probe: expected rgb [N, H, W, 3] and semantic [N, H, W], got {rgb.shape} and {semantic.shape}")
    views = np.asarray([i for i in range(len(semantic)) if (semantic[i] != VOID).any()], np.int64)
    tr, va, te = (views[s] for s in three_way_split(len(views), cfg))
    if feats is None:
        feats = dense_features(model, rgb, size)
    y = torch.from_numpy(semantic.astype(np.int64))
    probes = fit_probes(feats[tr], y[tr], num_classes, cfg.weight_decays, cfg)
    val = {wd: _scores(p, feats[va], y[va], num_classes)["miou"] for wd, p in probes.items()}
    best = max(cfg.weight_decays, key=lambda w: (np.nan_to_num(val[w], nan=-1.0), -w))  # ties: less decay
    test = _scores(probes[best], feats[te], y[te], num_classes)
    name = (lambda c: class_names[c]) if class_names is not None else (lambda c: int(c))
    return {"miou": test["miou"], "pixel_acc": test["pixel_acc"], "per_view_miou": test["per_view_miou"],
            "per_class": {name(c): v for c, v in test["per_class"].items()}, "weight_decay": best,
            "val": {str(w): v for w, v in val.items()}, "n_train": len(tr), "n_val": len(va), "n_test": len(te),
            "feature_dim": int(feats.shape[1]), "grid": list(feats.shape[-2:]), "config": asdict(cfg)}


# ------------------------------------------------------------------------- segmentation network


class Segmenter(nn.Module):
    """Any encoder + a 1x1 classifier on its dense features, in the network contract of the
    fine-tuning readout: ``forward(x normalised [B, 3, H, W]) -> logits [B, C, h, w]``,
    ``reset_classifier(num_classes)``; ``forward_features`` gives the encoder's own features, so the
    trained encoder can be read out like any other (``encode``)."""

    def __init__(self, encoder: nn.Module, num_classes: int = 2):
        super().__init__()
        from regconsist_ros.models.encoder import features

        self.encoder = encoder
        self.cfg = getattr(encoder, "cfg", None)
        self._features = features
        dim = self._features(encoder.eval(), torch.zeros(1, 3, *self._probe_size()))["patches"].shape[1]
        self.dim = int(dim)
        self.classifier = nn.Conv2d(self.dim, num_classes, 1)

    def _probe_size(self) -> tuple[int, int]:
        size = getattr(self.cfg, "img_size", None)
        return (int(size[0]), int(size[1])) if size is not None else (64, 64)

    def reset_classifier(self, num_classes: int) -> None:
        dev = self.classifier.weight.device
        self.classifier = nn.Conv2d(self.dim, int(num_classes), 1).to(dev)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(self.encoder, x)["patches"]  # [B, D, h, w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))  # [B, C, h, w]


def segmentation_network(encoder: nn.Module) -> nn.Module:
    """The network the fine-tuning readout trains: DeepLabV3+ with its own head, anything else wrapped
    in a :class:`Segmenter`."""
    return encoder if hasattr(encoder, "reset_classifier") else Segmenter(encoder)


def inner_encoder(net: nn.Module) -> nn.Module:
    """The encoder inside a network :func:`segmentation_network` made (the network itself otherwise)."""
    return net.encoder if isinstance(net, Segmenter) else net


# ------------------------------------------------------------------------- fine-tuning curve


def finetune_curve(model: nn.Module, rgb: np.ndarray, semantic: np.ndarray, num_classes: int, cfg, points: Sequence[int],
                   progress: bool = False, eval_batch: int = 16) -> dict:
    """Full fine-tuning of ``model`` (through :func:`segmentation_network`, so a ViT too) on ``cfg.labels`` of
    one environment's labelled views, with the test views' mIoU measured after each of ``points`` steps: a
    learning curve, so that a readout that stops before the plateau shows it. ``cfg`` is a
    :class:`~regconsist_ros.readout.segmentation.FinetuneConfig`; its ``steps`` become ``max(points)``
    (the schedule, e.g. ``schedule="poly"`` with weight decay 5e-4 as in the RegConsist paper, spans the
    whole run, so the curve is one run, not one per budget). rgb uint8 [N, H, W, 3], semantic [N, H, W].

    Returns ``{"steps": [...], "miou": [...], "final_gain": miou[-1] - miou[-2] (how much the last stretch
    still gained; small = plateau), "n_train", "n_test"}``."""
    from dataclasses import replace

    from regconsist_ros.readout.segmentation import finetune, predict

    pts = sorted({int(p) for p in points})
    if not pts or pts[0] < 1:
        raise ValueError(f"finetune_curve: points must be step counts >= 1, got {list(points)}")
    rgb, semantic = np.asarray(rgb), np.asarray(semantic)
    views = np.asarray([i for i in range(len(semantic)) if (semantic[i] != VOID).any()], np.int64)
    if len(views) < 2:
        raise ValueError(f"finetune_curve needs >= 2 labelled views, got {len(views)}")
    tr, te = split_views(len(views), cfg.labels, cfg.seed)
    tr, te = views[tr], views[te]
    to_x = lambda idx: torch.from_numpy(rgb[idx]).permute(0, 3, 1, 2).float().div_(255.0)  # noqa: E731
    y_all = torch.from_numpy(semantic.astype(np.int64))
    curve: list[tuple[int, float]] = []

    def measure(step: int, net) -> None:
        if step not in pts:
            return
        conf = np.zeros((num_classes, num_classes), np.int64)
        for i in range(0, len(te), eval_batch):
            idx = te[i:i + eval_batch]
            conf += confusion_matrix(predict(net, to_x(idx), batch=eval_batch), y_all[idx], num_classes)
        curve.append((step, miou(conf)["miou"]))

    net = segmentation_network(model)
    finetune(net, to_x(tr), y_all[tr], replace(cfg, steps=pts[-1]), num_classes, progress=progress, on_step=measure)
    m = [v for _, v in curve]
    return {"steps": [s for s, _ in curve], "miou": m, "final_gain": (m[-1] - m[-2]) if len(m) > 1 else float("nan"),
            "n_train": len(tr), "n_test": len(te), "config": asdict(replace(cfg, steps=pts[-1]))}
