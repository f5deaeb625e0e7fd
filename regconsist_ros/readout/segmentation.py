"""Few-label fine-tuning readout (as in the RegConsist paper).

A representation is judged by how well it segments the environment after fine-tuning on a small
fraction (5/10/20/30 %) of the environment's labelled views: the classifier is reset, the whole
network is fine-tuned with SGD (warm-up + cosine LR) and a focal loss that ignores void (0), and
the mean IoU is measured on the remaining labelled views over the classes present there.

Fine-tuning runs through the project's one training loop (``regconsist_ros.learning.trainer.Trainer``):
:class:`SegmentationFinetune` is the objective (network + focal loss), :func:`trainer_config` maps a
:class:`FinetuneConfig` onto the trainer's settings (same schedule, no gradient clipping, fp32).

Never imports rclpy. The network contract (``regconsist_ros.models.deeplab``): ``forward(x normalized [B, 3, H, W])
-> logits [B, C, H', W']`` (resized to the label size here when H', W' differ),
``reset_classifier(num_classes)`` and ``normalize_images(x in [0, 1])``.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

VOID = 0


@dataclass
class FinetuneConfig:
    """Settings of the few-label fine-tuning readout."""

    labels: float = field(default=0.05, metadata={"help": "fraction of the environment's labelled views used for fine-tuning (paper: 0.05/0.1/0.2/0.3)"})
    steps: int = field(default=300, metadata={"help": "fine-tuning optimizer steps"})
    batch: int = field(default=8, metadata={"help": "images per fine-tuning minibatch (drawn with replacement)"})
    lr: float = field(default=0.01, metadata={"help": "peak learning rate"})
    optimizer: str = field(default="sgd", metadata={"help": "sgd (momentum; the paper's) or adamw"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum"})
    weight_decay: float = field(default=1e-4, metadata={"help": "SGD weight decay"})
    gamma: float = field(default=2.0, metadata={"help": "focal loss focusing parameter"})
    warmup: int = field(default=20, metadata={"help": "linear LR warm-up steps (then the decay of `schedule`)"})
    schedule: str = field(default="cosine", metadata={"help": "LR decay after the warm-up: cosine, or poly (1 - t)^0.9, the RegConsist paper's (with weight decay 5e-4)"})
    seed: int = field(default=0, metadata={"help": "seed of the view split, minibatches and flips"})
    eval_views: int = field(default=0, metadata={"help": "test views to evaluate on (0 = all remaining labelled views)"})
    hflip: bool = field(default=True, metadata={"help": "random horizontal flips of image and label while fine-tuning"})
    jitter: float = field(default=0.0, metadata={"help": "photometric augmentation strength j while fine-tuning: brightness and contrast x U(1-j, 1+j), per-channel gain x U(1-j/2, 1+j/2) per view (0 = off; lighting that changes between views)"})
    zoom: float = field(default=1.0, metadata={"help": "random zoom-in of each view by a factor in [1, zoom] (a crop at a random place, resized back; labels nearest) while fine-tuning, so that a network read out on larger frames than it trains on sees objects at that scale too (1 = off)"})
    device: str = field(default="cpu", metadata={"help": "torch device for fine-tuning and evaluation"})

    def __post_init__(self):
        def number(name, kind=(int, float)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, kind):
                raise ValueError(f"FinetuneConfig.{name} must be a number, got {v!r}")
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"FinetuneConfig.{name} must be finite, got {v!r}")
            return v

        if not 0.0 < number("labels") < 1.0:
            raise ValueError(f"FinetuneConfig.labels must be in (0, 1), got {self.labels}")
        for name, low in (("steps", 1), ("batch", 1), ("warmup", 0), ("eval_views", 0), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"FinetuneConfig.{name} must be an integer, got {v!r}")
            if v < low:
                raise ValueError(f"FinetuneConfig.{name} must be >= {low}, got {v}")
        if not number("lr") > 0:
            raise ValueError(f"FinetuneConfig.lr must be > 0, got {self.lr}")
        if not 0.0 <= number("momentum") < 1.0:
            raise ValueError(f"FinetuneConfig.momentum must be in [0, 1), got {self.momentum}")
        if not number("weight_decay") >= 0:
            raise ValueError(f"FinetuneConfig.weight_decay must be >= 0, got {self.weight_decay}")
        if not number("gamma") >= 0:
            raise ValueError(f"FinetuneConfig.gamma must be >= 0, got {self.gamma}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"FinetuneConfig.optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "poly"):
            raise ValueError(f"FinetuneConfig.schedule must be 'cosine' or 'poly', got {self.schedule!r}")
        if not 0.0 <= number("jitter") < 1.0:
            raise ValueError(f"FinetuneConfig.jitter must be in [0, 1), got {self.jitter}")
        if not isinstance(self.hflip, bool):
            raise ValueError(f"FinetuneConfig.hflip must be a bool, got {self.hflip!r}")
        if not 1.0 <= number("zoom") <= 8.0:
            raise ValueError(f"FinetuneConfig.zoom must be in [1, 8], got {self.zoom}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"FinetuneConfig.device {self.device!r} is not a torch device: {e}") from None


# ----------------------------------------------------------------------------------------- data


def split_views(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``n`` labelled views -> (train indices, test indices), both sorted int64.

    ``ceil(fraction * n)`` views (at least 1; at most ``n - 1`` when ``n >= 2`` so that something
    is left to test on) go to training, the rest to testing. The same (n, fraction, seed) always
    gives the same split, and a larger fraction with the same seed gives a superset of training views.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"split_views needs n >= 1 views, got {n!r}")
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"split_views: fraction must be in (0, 1), got {fraction}")
    k = max(1, math.ceil(float(fraction) * n - 1e-9))  # 0.1 * 30 is 3.0000000000000004, not 4 views
    if n >= 2:
        k = min(k, n - 1)
    perm = np.random.default_rng(seed).permutation(int(n))
    return np.sort(perm[:k]).astype(np.int64), np.sort(perm[k:]).astype(np.int64)


def to_batch(frames: Sequence, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames ``idx`` -> (x float [B, 3, H, W] in [0, 1], y long [B, H, W] class ids, 0 = void)."""
    idx = [int(i) for i in np.asarray(idx).reshape(-1)]
    if not idx:
        raise ValueError("to_batch: no frame indices given")
    rgb, sem = [], []
    for i in idx:
        f = frames[i]
        if f.semantic is None:
            raise ValueError(f"to_batch: frame {i} has no semantic labels")
        rgb.append(f.rgb)
        sem.append(f.semantic)
    shapes = {a.shape[:2] for a in rgb}
    if len(shapes) != 1:
        raise ValueError(f"to_batch: frames differ in size: {sorted(shapes)}")
    x = torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).float().div_(255.0)
    y = torch.from_numpy(np.stack(sem).astype(np.int64))
    return x.contiguous(), y


# ------------------------------------------------------------------------------------ training


def lr_at(step: int, cfg: FinetuneConfig) -> float:
    """Learning rate of 0-based ``step``: linear warm-up to ``cfg.lr``, then ``cfg.schedule``'s decay to 0."""
    from regconsist_ros.learning.trainer import warmup_cosine, warmup_poly

    return (warmup_poly if cfg.schedule == "poly" else warmup_cosine)(step, cfg.lr, cfg.warmup, cfg.steps)


def _logits(model, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    from regconsist_ros.models.deeplab import normalize_images

    out = model(normalize_images(x))
    if out.shape[-2:] != size:
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
    return out


def _device(model) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


class SegmentationFinetune(nn.Module):
    """Trainer objective of the few-label readout: ``forward({"x", "y"}) -> (focal loss, logs)``.

    ``x`` [B, 3, H, W] in [0, 1] is normalised and segmented by ``model`` (logits resized to the label
    size when they differ); the focal loss (``gamma``) ignores void. A batch without a labelled pixel
    gives ``(None, logs)``: the trainer passes the step without an update. ``encoder`` is the network
    itself (its classifier included), so a trainer with a run directory checkpoints the fine-tuned model."""

    def __init__(self, model: nn.Module, gamma: float = 2.0):
        super().__init__()
        self.model = model
        self.gamma = float(gamma)

    @property
    def encoder(self) -> nn.Module:
        return self.model

    @property
    def encoder_kind(self) -> str | None:
        from regconsist_ros.models.registry import MODELS

        return next((k for k, (_, cls) in MODELS.items() if type(self.model) is cls), None)

    @property
    def encoder_config(self):
        return getattr(self.model, "cfg", None)

    def forward(self, batch: dict) -> tuple[torch.Tensor | None, dict]:
        from regconsist_ros.models import losses  # looked up per call (tests spy on focal_loss)

        x, y = batch["x"], batch["y"]
        labelled = int((y != VOID).sum())
        if not labelled:  # nothing labelled in this draw: no gradient to take
            return None, {"labelled_px": 0.0}
        loss = losses.focal_loss(_logits(self.model, x, tuple(y.shape[-2:])), y, gamma=self.gamma, ignore_index=VOID)
        return loss, {"labelled_px": float(labelled)}


def trainer_config(cfg: FinetuneConfig):
    """The :class:`~regconsist_ros.learning.trainer.TrainerConfig` of a fine-tuning readout: SGD
    (or AdamW, ``cfg.optimizer``) with ``cfg``'s momentum and weight decay, ``cfg.warmup`` warm-up steps then cosine decay to 0 over
    ``cfg.steps``, no gradient clipping and no autocast (fp32, as the readout always was), a log row
    every step, on ``cfg.device``."""
    from regconsist_ros.learning.trainer import TrainerConfig

    return TrainerConfig(steps=cfg.steps, lr=cfg.lr, optimizer=cfg.optimizer, momentum=cfg.momentum,
                         weight_decay=cfg.weight_decay, warmup=cfg.warmup, schedule=cfg.schedule, min_lr_ratio=0.0,
                         grad_clip=0.0,
                         log_every=1, ckpt_every=0, seed=cfg.seed, device=cfg.device, amp=False)


def finetune_batches(train_x: torch.Tensor, train_y: torch.Tensor, cfg: FinetuneConfig, **labels: torch.Tensor) -> Iterator[dict]:
    """Endless minibatches ``{"x", "y", **labels}``: ``cfg.batch`` views drawn with replacement, each flipped
    horizontally with probability 1/2 when ``cfg.hflip`` (image, label and every extra ``labels`` map
    [N, H, W] together), zoomed by ``zoom`` when ``cfg.zoom > 1`` and recoloured by ``photometric`` when
    ``cfg.jitter > 0``; seeded by ``cfg.seed``."""
    gen = torch.Generator().manual_seed(int(cfg.seed))
    n = train_x.shape[0]
    while True:
        pick = torch.randint(n, (cfg.batch,), generator=gen)
        batch = {"x": train_x[pick].clone(), "y": train_y[pick].clone(), **{k: v[pick].clone() for k, v in labels.items()}}
        if cfg.hflip:
            flip = torch.rand(cfg.batch, generator=gen) < 0.5
            for v in batch.values():
                v[flip] = v[flip].flip(-1)
        if cfg.zoom > 1:
            batch = zoom(batch, cfg.zoom, gen)
        if cfg.jitter > 0:
            batch["x"] = photometric(batch["x"], cfg.jitter, gen)
        yield batch


def zoom(batch: dict, most: float, gen: torch.Generator) -> dict:
    """Each view of ``batch`` ("x" [B, 3, H, W] and label maps [B, H, W]) zoomed in by s ~ U(1, ``most``): the
    window of (H/s, W/s) at a uniformly random place, resized back to (H, W), bilinear for "x" and nearest for
    the labels (so they stay valid ids); s = 1 gives the view unchanged."""
    x = batch["x"]
    B = x.shape[0]
    s = 1.0 + (most - 1.0) * torch.rand(B, generator=gen)  # [B]
    half = 1.0 - 1.0 / s  # how far the window's centre may move, in [-1, 1] coordinates
    t = half[:, None] * (2.0 * torch.rand(B, 2, generator=gen) - 1.0)  # [B, 2] window centre (x, y)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / s
    theta[:, :, 2] = t
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)  # [B, H, W, 2]
    out = {k: (F.grid_sample(v, grid, mode="bilinear", padding_mode="border", align_corners=False) if k == "x" else
               F.grid_sample(v[:, None].to(grid.dtype), grid, mode="nearest", padding_mode="border",
                             align_corners=False)[:, 0].round().to(v.dtype))
           for k, v in batch.items()}
    return out


def photometric(x: torch.Tensor, strength: float, gen: torch.Generator) -> torch.Tensor:
    """Random lighting of each view of ``x`` [B, 3, H, W] in [0, 1]: contrast c about the view's mean grey,
    brightness b and a per-channel gain g (a colour cast), ``x' = clamp(((x - m) c + m) b g, 0, 1)`` with
    b, c ~ U(1 - s, 1 + s) and g ~ U(1 - s/2, 1 + s/2) per view (and channel); labels are unchanged."""
    B = x.shape[0]
    u = lambda *shape, s=strength: 1.0 + s * (2.0 * torch.rand(*shape, generator=gen) - 1.0)
    b, c, g = u(B, 1, 1, 1), u(B, 1, 1, 1), u(B, 3, 1, 1, s=strength / 2)
    m = x.mean(dim=(1, 2, 3), keepdim=True)  # [B, 1, 1, 1]
    return (((x - m) * c + m) * b * g).clamp_(0.0, 1.0)


def finetune(model, train_x: torch.Tensor, train_y: torch.Tensor, cfg: FinetuneConfig, num_classes: int,
             progress: bool = True, *, run_dir: str | Path | None = None, on_step=None):
    """Reset the classifier to ``num_classes`` (void included) and fine-tune the whole network.

    SGD with momentum and weight decay, ``cfg.warmup`` linear warm-up steps then cosine decay;
    focal loss (gamma ``cfg.gamma``) that ignores void; each step draws ``cfg.batch`` views with
    replacement from the small labelled set and flips each horizontally with probability 1/2 when
    ``cfg.hflip``. Returns (model, history) with one ``{"step", "loss", "lr"}`` dict per step (0-based
    step; loss nan where a draw had no labelled pixel, the non-finite value where the trainer skipped it).

    The steps run in the shared :class:`~regconsist_ros.learning.trainer.Trainer`
    (:class:`SegmentationFinetune`, :func:`trainer_config`). With ``run_dir`` the trainer's
    ``metrics.jsonl`` is written there; nothing is written by default. ``on_step(steps_done, model)``
    runs after every step (it may evaluate the model: training mode is restored after it).
    """
    from regconsist_ros.learning.trainer import Trainer

    if train_x.ndim != 4 or train_x.shape[1] != 3 or train_y.shape != (train_x.shape[0], *train_x.shape[2:]):
        raise ValueError(f"finetune: expected x [B, 3, H, W] and y [B, H, W], got {tuple(train_x.shape)}, {tuple(train_y.shape)}")
    if num_classes < 2:
        raise ValueError(f"finetune: num_classes must be >= 2 (void + 1), got {num_classes}")
    if int(train_y.max()) >= num_classes or int(train_y.min()) < 0:
        raise ValueError(f"finetune: labels must lie in [0, {num_classes}), got [{int(train_y.min())}, {int(train_y.max())}]")
    model.reset_classifier(num_classes)
    trainer = Trainer(SegmentationFinetune(model, cfg.gamma), trainer_config(cfg), run_dir, distributed=False,
                      meta={"readout": "segmentation", "finetune": asdict(cfg), "num_classes": int(num_classes)})
    history: list[dict] = []

    def record(step: int, row: dict) -> None:
        history.append({"step": step - 1, "loss": row["loss"], "lr": row["lr"]})
        if on_step is not None:
            on_step(step, model)

    trainer.fit(finetune_batches(train_x, train_y, cfg), progress=progress, checkpoint=False, callback=record,
                desc="finetune")
    return model, history


# ----------------------------------------------------------------------------------- metrics


def confusion_matrix(pred, target, num_classes: int) -> np.ndarray:
    """[C, C] int64 counts, rows = target class, columns = predicted class; void targets (0) ignored.

    ``pred`` and ``target`` are equally shaped integer arrays or tensors (flattened here).
    """
    p = torch.as_tensor(pred).reshape(-1).long().cpu()
    t = torch.as_tensor(target).reshape(-1).long().cpu()
    if p.shape != t.shape:
        raise ValueError(f"confusion_matrix: pred has {p.numel()} elements, target {t.numel()}")
    keep = t != VOID
    p, t = p[keep], t[keep]
    if p.numel() and (int(p.min()) < 0 or int(p.max()) >= num_classes or int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(f"confusion_matrix: ids must lie in [0, {num_classes})")
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).numpy().astype(np.int64)


def miou(conf: np.ndarray) -> dict:
    """IoU = TP / (TP + FP + FN) per class present in the test set (row sum > 0), void excluded.

    Returns ``miou`` (mean over present classes; nan when none), ``pixel_acc`` (over non-void
    pixels), ``per_class`` {class id: IoU} and ``present`` (sorted class ids).
    """
    conf = np.asarray(conf, dtype=np.int64)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f"miou: expected a square confusion matrix, got shape {conf.shape}")
    conf = conf.copy()
    conf[VOID, :] = 0  # void targets never count
    tp = np.diag(conf).astype(np.float64)
    rows, cols = conf.sum(1), conf.sum(0)
    present = [int(c) for c in np.flatnonzero(rows > 0) if c != VOID]
    per_class = {c: float(tp[c] / (rows[c] + cols[c] - tp[c])) for c in present}
    total = rows.sum()
    return {
        "miou": float(np.mean(list(per_class.values()))) if present else float("nan"),
        "pixel_acc": float(tp.sum() / total) if total else float("nan"),
        "per_class": per_class,
        "present": present,
    }


@torch.no_grad()
def predict(model, x: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """Eval-mode argmax predictions [B, H, W] (long, on the CPU) over the non-void classes."""
    model.eval()
    device = _device(model)
    out = []
    for i in range(0, x.shape[0], batch):
        logits = _logits(model, x[i:i + batch].to(device), tuple(x.shape[-2:]))
        # void is never a training target, so its logit is meaningless: predict among classes 1..C-1
        out.append(logits[:, VOID + 1:].argmax(1).cpu() + VOID + 1)
    return torch.cat(out)


def evaluate(model, x: torch.Tensor, y: torch.Tensor, num_classes: int, batch: int = 16) -> dict:
    """mIoU of ``model`` on (x [B, 3, H, W] in [0, 1], y [B, H, W]): the ``miou`` dict plus ``confusion``."""
    conf = np.zeros((num_classes, num_classes), np.int64)
    for i in range(0, x.shape[0], batch):
        conf += confusion_matrix(predict(model, x[i:i + batch], batch), y[i:i + batch], num_classes)
    return {**miou(conf), "confusion": conf}


# ------------------------------------------------------------------------------------ figure


def prediction_figure(data, classes, path: str | Path, n: int = 4, pred=None) -> Path:
    """Rows of [image | ground truth | prediction], colourised with ``classes`` (a ClassTable).

    ``data`` is either (x, y, pred) -- images [B, 3, H, W] float in [0, 1] (or [B, H, W, 3] uint8),
    labels and predictions [B, H, W] -- or a list of Frames with labels (then ``pred`` [B, H, W]
    gives the predictions, or the prediction column is left out). The first ``n`` are drawn; a
    legend names the non-void classes present in the drawn labels and predictions.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    def arr(a):
        return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)

    if isinstance(data, tuple) and len(data) == 3:
        images, gt, pred = (arr(a) for a in data)
    else:
        frames = list(data)
        images = np.stack([f.rgb for f in frames])
        gt = np.stack([f.semantic if f.semantic is not None else np.zeros(f.rgb.shape[:2], np.uint16) for f in frames])
        pred = None if pred is None else arr(pred)
    if images.ndim == 4 and images.shape[1] == 3 and images.shape[-1] != 3:
        images = images.transpose(0, 2, 3, 1)
    if images.dtype != np.uint8:
        images = (np.clip(images, 0, 1) * 255).round().astype(np.uint8)
    k = min(int(n), len(images))
    if k < 1:
        raise ValueError("prediction_figure: nothing to draw")
    gt = gt[:k].astype(np.int64)
    pred = None if pred is None else pred[:k].astype(np.int64)
    cols = 2 if pred is None else 3
    fig, axes = plt.subplots(k, cols, figsize=(3.6 * cols, 2.9 * k + 0.6), squeeze=False)
    titles = ["image", "ground truth", "prediction"]
    for r in range(k):
        panels = [images[r], classes.colorize(gt[r])] + ([] if pred is None else [classes.colorize(pred[r])])
        for c, im in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(im)
            ax.axis("off")
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
    ids = np.unique(gt if pred is None else np.concatenate([gt.ravel(), pred.ravel()]))
    pal = classes.palette()
    handles = [Patch(color=pal[i] / 255.0, label=classes.names[i]) for i in ids if VOID < i < len(classes)]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.6 / (2.9 * k + 0.6) if handles else 0, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# -------------------------------------------------------------------------------------- glue


def finite_or_none(v):
    """JSON-safe copy: nan/inf floats become None (null)."""
    if isinstance(v, dict):
        return {k: finite_or_none(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [finite_or_none(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def labelled_views(frames: Sequence) -> list[int]:
    """Indices of frames with semantic labels that are not all void."""
    return [i for i in range(len(frames)) if frames[i].semantic is not None and bool((frames[i].semantic != VOID).any())]


def run_readout(model, frames: Sequence, classes, cfg: FinetuneConfig | None = None, out_dir: str | Path | None = None,
                progress: bool = True, figure_views: int = 4) -> dict:
    """Split the labelled views, fine-tune on ``cfg.labels`` of them, evaluate on the rest.

    With ``cfg.eval_views > 0`` a seeded subset of that many test views is evaluated. Writes
    ``readout.json``, ``readout_predictions.png`` and the trainer's ``metrics.jsonl`` (the fine-tuning
    loss curve) into ``out_dir`` when given. The result has
    ``miou``, ``per_class`` (class name -> IoU), ``pixel_acc``, ``n_train``, ``n_test``, ``labels``,
    ``steps``, plus the view indices, the present class names, the final loss and the config.
    """
    cfg = cfg or FinetuneConfig()
    frames = list(frames) if not hasattr(frames, "__getitem__") else frames
    views = labelled_views(frames)
    if len(views) < 2:
        raise ValueError(f"run_readout needs at least 2 labelled views (one to train, one to test), got {len(views)}")
    num_classes = len(classes)
    tr, te = split_views(len(views), cfg.labels, cfg.seed)
    train_idx = [views[i] for i in tr]
    test_idx = [views[i] for i in te]
    if 0 < cfg.eval_views < len(test_idx):
        keep = np.random.default_rng(cfg.seed + 1).choice(len(test_idx), size=cfg.eval_views, replace=False)
        test_idx = [test_idx[i] for i in sorted(keep)]
    x, y = to_batch(frames, train_idx)
    if out_dir is not None:  # the trainer appends to metrics.jsonl: start this readout's curve afresh
        (Path(out_dir) / "metrics.jsonl").unlink(missing_ok=True)
    model, history = finetune(model, x, y, cfg, num_classes, progress=progress, run_dir=out_dir)
    del x, y
    conf = np.zeros((num_classes, num_classes), np.int64)
    chunk = 16  # load test views a chunk at a time: a whole environment at full size need not fit
    shown = None
    for i in range(0, len(test_idx), chunk):
        xt, yt = to_batch(frames, test_idx[i:i + chunk])
        p = predict(model, xt, batch=chunk)
        conf += confusion_matrix(p, yt, num_classes)
        if shown is None:
            shown = (xt[:figure_views], yt[:figure_views], p[:figure_views])
    m = miou(conf)
    losses = [h["loss"] for h in history if math.isfinite(h["loss"])]
    result = {
        "miou": m["miou"],
        "per_class": {classes.names[c]: v for c, v in m["per_class"].items()},
        "pixel_acc": m["pixel_acc"],
        "n_train": len(train_idx),
        "n_test": len(test_idx),
        "labels": cfg.labels,
        "steps": cfg.steps,
        "present": [classes.names[c] for c in m["present"]],
        "train_views": [int(i) for i in train_idx],
        "test_views": [int(i) for i in test_idx],
        "final_loss": float(np.mean(losses[-10:])) if losses else float("nan"),
        "config": asdict(cfg),
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        record = {**result, "confusion": conf.tolist()}
        (out / "readout.json").write_text(json.dumps(finite_or_none(record), indent=1, allow_nan=False))
        if shown is not None and figure_views > 0:
            prediction_figure(shown, classes, out / "readout_predictions.png", n=figure_views)
    result["confusion"] = conf
    return result
