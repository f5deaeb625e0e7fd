"""Video object segmentation by k-NN label propagation over frozen patch features (DAVIS protocol).

The readout used by CRW, DINO and RSP to judge dense correspondence in a representation without
training anything: the ground-truth object masks of the first frame of a clip are given, and the
masks of every later frame are inferred from feature affinities alone.

Per clip:

1. ``object_masks`` picks the objects of the first frame (instance ids with at least
   ``min_object_pixels`` pixels, the ``max_objects`` largest) and relabels every frame to
   0 = background, 1..K = those objects.
2. A frozen encoder (``regconsist_ros.models.encoder.encode``) turns every frame into a patch feature map
   ``[D, h, w]``; the features are L2-normalised per position, so affinities are cosine similarities.
3. ``propagate``: the first frame's one-hot labels are area-averaged down to the feature grid
   (soft labels ``[K + 1, h, w]``). For frame ``t >= 1`` the context is the first frame plus the
   soft labels of the last ``queue`` predicted frames. Each target position takes the affinities to
   every context position within ``radius`` grid cells (Euclidean, same (y, x) grid; the rest are
   masked to -inf), keeps the ``topk`` largest, weighs them with ``softmax(a / temperature)`` and
   averages the neighbours' soft labels. The soft map joins the queue; upsampled bilinearly to the
   label size and arg-maxed it is the frame's prediction.
4. ``evaluate_clip`` scores frames 1..T-1 (the given first frame is excluded) per object with
   J (region IoU, ``j_measure``) and F (boundary F-measure, ``f_measure``, boundary matching
   tolerance ``boundary_tolerance`` x image diagonal pixels); the clip's J and F are means over
   objects of the per-object means over frames, and JF = (J + F) / 2.

``run_propagation`` does this for a list of clips (``clips_from_frames`` cuts long rendered
sequences into clips) and writes ``propagation.json`` and ``propagation.png`` when asked.
"""
from __future__ import annotations

import json
import math
import time
import warnings
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from regconsist_ros.readout.segmentation import finite_or_none

BACKGROUND = 0


@dataclass
class PropagationConfig:
    """Settings of the k-NN label propagation readout."""

    topk: int = field(default=5, metadata={"help": "neighbours (context positions) per target position"})
    queue: int = field(default=7, metadata={"help": "past predicted frames kept as context (the first frame with GT is always kept in addition)"})
    radius: float = field(default=12.0, metadata={"help": "spatial neighbourhood radius in feature-grid cells (0 = unrestricted)"})
    temperature: float = field(default=0.7, metadata={"help": "softmax temperature over the top-k cosine affinities"})
    min_object_pixels: int = field(default=100, metadata={"help": "first-frame objects smaller than this (pixels at label resolution) are ignored (background)"})
    max_objects: int = field(default=8, metadata={"help": "keep at most this many largest first-frame objects"})
    boundary_tolerance: float = field(default=0.008, metadata={"help": "F-measure boundary matching tolerance as a fraction of the image diagonal (DAVIS convention)"})
    frames: int = field(default=0, metadata={"help": "evaluate at most this many frames per clip (0 = all; otherwise >= 2)"})

    def __post_init__(self):
        def integer(name: str, low: int) -> int:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"PropagationConfig.{name} must be an integer, got {v!r}")
            if v < low:
                raise ValueError(f"PropagationConfig.{name} must be >= {low}, got {v}")
            return int(v)

        def number(name: str) -> float:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(float(v)):
                raise ValueError(f"PropagationConfig.{name} must be a finite number, got {v!r}")
            return float(v)

        for name, low in (("topk", 1), ("queue", 0), ("min_object_pixels", 1), ("max_objects", 1), ("frames", 0)):
            integer(name, low)
        if self.frames == 1:
            raise ValueError("PropagationConfig.frames must be 0 (all) or >= 2 (frame 0 is given, so 1 frame scores nothing), got 1")
        if not number("radius") >= 0:
            raise ValueError(f"PropagationConfig.radius must be >= 0 (0 = unrestricted), got {self.radius}")
        if not number("temperature") > 0:
            raise ValueError(f"PropagationConfig.temperature must be > 0, got {self.temperature}")
        if not 0 <= number("boundary_tolerance") < 1:
            raise ValueError(f"PropagationConfig.boundary_tolerance must be in [0, 1), got {self.boundary_tolerance}")


# ---------------------------------------------------------------------------------- objects


def object_masks(instance: np.ndarray, cfg: PropagationConfig) -> tuple[np.ndarray, list[int]]:
    """Instance ids [T, H, W] -> (labels [T, H, W] int64, original ids of objects 1..K).

    The objects are chosen in the FIRST frame: ids != 0 with >= ``cfg.min_object_pixels`` pixels,
    the ``cfg.max_objects`` largest (ties broken by the smaller id). Object ``k`` (1-based) is
    ``ids[k - 1]``, ordered by decreasing first-frame area; every other id becomes background (0).
    Raises ValueError when no object qualifies.
    """
    instance = np.asarray(instance)
    if instance.ndim != 3 or instance.shape[0] < 1:
        raise ValueError(f"object_masks: expected instance ids [T, H, W], got shape {instance.shape}")
    if not np.issubdtype(instance.dtype, np.integer):
        raise ValueError(f"object_masks: instance ids must be integers, got {instance.dtype}")
    ids, counts = np.unique(instance[0], return_counts=True)
    keep = (ids != BACKGROUND) & (counts >= cfg.min_object_pixels)
    ids, counts = ids[keep], counts[keep]
    if ids.size == 0:
        raise ValueError(f"object_masks: no object in the first frame has >= {cfg.min_object_pixels} pixels "
                         f"(min_object_pixels)")
    order = np.lexsort((ids, -counts))[: cfg.max_objects]  # largest first, then smaller id
    chosen = [int(i) for i in ids[order]]
    lut_ids = np.asarray(chosen, dtype=instance.dtype)
    labels = np.zeros(instance.shape, np.int64)
    for k, i in enumerate(lut_ids, start=1):
        labels[instance == i] = k
    return labels, chosen


# ------------------------------------------------------------------------------ propagation


def _grid_far(h: int, w: int, radius: float, device) -> torch.Tensor | None:
    """[N, N] bool: True where two grid cells are further apart than ``radius`` (None when unrestricted)."""
    if radius <= 0:
        return None
    yy, xx = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    pos = torch.stack([yy.reshape(-1), xx.reshape(-1)], 1).float()  # [N, 2] (y, x)
    return torch.cdist(pos, pos) > radius + 1e-6  # [N, N]


def _affinity(target: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """Cosine affinities of L2-normalised features: target [N, D], context [M, N, D] -> [N, M, N]."""
    return torch.einsum("nd,mkd->nmk", target, context)


@torch.no_grad()
def propagate(feats: torch.Tensor, first_labels: np.ndarray, num_objects: int, cfg: PropagationConfig) -> np.ndarray:
    """Propagate the first frame's labels through a clip by k-NN over feature affinities.

    ``feats`` [T, D, h, w] are patch features of every frame, ``first_labels`` [H, W] the given
    labels of frame 0 (0 = background, 1..``num_objects``). Returns predicted labels [T, H, W] int64
    at the label resolution (frame 0 = ``first_labels``). See the module doc for the algorithm.
    """
    if not isinstance(feats, torch.Tensor) or feats.ndim != 4 or feats.shape[0] < 1:
        raise ValueError(f"propagate: expected features [T, D, h, w], got {getattr(feats, 'shape', type(feats))}")
    first = np.asarray(first_labels)
    if first.ndim != 2:
        raise ValueError(f"propagate: expected first-frame labels [H, W], got shape {first.shape}")
    if isinstance(num_objects, bool) or not isinstance(num_objects, (int, np.integer)) or num_objects < 1:
        raise ValueError(f"propagate: num_objects must be an integer >= 1, got {num_objects!r}")
    if first.size and (int(first.min()) < 0 or int(first.max()) > num_objects):
        raise ValueError(f"propagate: first-frame labels must lie in [0, {num_objects}], got [{int(first.min())}, {int(first.max())}]")
    T, D, h, w = feats.shape
    H, W = first.shape
    C, N = int(num_objects) + 1, h * w
    device = feats.device

    f = F.normalize(feats.float().reshape(T, D, N), dim=1).transpose(1, 2).contiguous()  # [T, N, D]
    onehot = F.one_hot(torch.from_numpy(first.astype(np.int64)).to(device), C).permute(2, 0, 1).float()  # [C, H, W]
    soft0 = F.adaptive_avg_pool2d(onehot[None], (h, w))[0].reshape(C, N).T.contiguous()  # [N, C] area average
    far = _grid_far(h, w, float(cfg.radius), device)  # [N, N] or None
    recent: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=int(cfg.queue))  # (features [N, D], soft labels [N, C])

    out = np.empty((T, H, W), np.int64)
    out[0] = first
    for t in range(1, T):
        ctx_f = torch.stack([f[0]] + [r[0] for r in recent])  # [M, N, D]
        ctx_l = torch.cat([soft0] + [r[1] for r in recent])  # [M * N, C]
        aff = _affinity(f[t], ctx_f)  # [N, M, N]
        if far is not None:
            aff = aff.masked_fill(far[:, None, :], float("-inf"))
        aff = aff.reshape(N, -1)  # [N, M * N]
        k = min(int(cfg.topk), aff.shape[1])
        vals, idx = aff.topk(k, dim=1)  # [N, k]; the same cell is always within the radius, so some are finite
        weights = torch.softmax(vals / float(cfg.temperature), dim=1)  # [N, k]; masked ones get 0
        soft = torch.einsum("nk,nkc->nc", weights, ctx_l[idx])  # [N, C]
        recent.append((f[t], soft))
        up = F.interpolate(soft.T.reshape(1, C, h, w), size=(H, W), mode="bilinear", align_corners=False)  # [1, C, H, W]
        out[t] = up[0].argmax(0).cpu().numpy()
    return out


# ----------------------------------------------------------------------------------- metrics


def j_measure(pred: np.ndarray, gt: np.ndarray) -> float:
    """Region similarity J = |pred & gt| / |pred | gt| of two boolean masks [H, W]; 1.0 when both are empty."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"j_measure: shapes differ: {pred.shape} vs {gt.shape}")
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else float(np.count_nonzero(pred & gt) / union)


_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)


def boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels [H, W] bool: mask pixels with a 4-neighbour inside the image that is outside the mask."""
    from scipy.ndimage import binary_erosion

    mask = np.asarray(mask, bool)
    # border_value=1: beyond the image edge counts as inside, so the edge alone makes no boundary
    return mask & ~binary_erosion(mask, structure=_CROSS, border_value=1)


def f_measure(pred: np.ndarray, gt: np.ndarray, tolerance_px: int) -> float:
    """Boundary F-measure of two boolean masks [H, W].

    Precision = fraction of predicted boundary pixels within ``tolerance_px`` (Euclidean distance,
    i.e. a disk; 0 = exact match) of a ground-truth boundary pixel; recall the same the other way
    round; F = 2PR / (P + R) (0 when P + R = 0). Both boundaries empty -> 1.0, one empty -> 0.0.
    """
    from scipy.ndimage import distance_transform_edt

    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"f_measure: expected two equally shaped [H, W] masks, got {pred.shape} and {gt.shape}")
    if isinstance(tolerance_px, bool) or not isinstance(tolerance_px, (int, np.integer)) or tolerance_px < 0:
        raise ValueError(f"f_measure: tolerance_px must be an integer >= 0, got {tolerance_px!r}")
    bp, bg = boundary(pred), boundary(gt)
    n_p, n_g = np.count_nonzero(bp), np.count_nonzero(bg)
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    near_g = distance_transform_edt(~bg) <= tolerance_px  # within the tolerance disk of a GT boundary pixel
    near_p = distance_transform_edt(~bp) <= tolerance_px
    precision = np.count_nonzero(bp & near_g) / n_p
    recall = np.count_nonzero(bg & near_p) / n_g
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def tolerance_px(height: int, width: int, cfg: PropagationConfig) -> int:
    """Boundary tolerance in pixels: max(1, round(cfg.boundary_tolerance * image diagonal))."""
    return max(1, int(round(cfg.boundary_tolerance * math.hypot(height, width))))


def evaluate_clip(pred: np.ndarray, gt: np.ndarray, num_objects: int, cfg: PropagationConfig) -> dict:
    """J and F of predicted labels [T, H, W] against ground truth [T, H, W] (both 0 = background, 1..K).

    Frame 0 (given) is excluded. Per object k: mean over frames 1..T-1 of J and F of the masks
    ``== k``; the clip's J / F are means over objects. Returns ``{"J", "F", "JF", "per_object":
    [{"J", "F"}, ...], "frames": T}``.
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"evaluate_clip: expected equally shaped [T, H, W] labels, got {pred.shape} and {gt.shape}")
    T, H, W = gt.shape
    if T < 2:
        raise ValueError(f"evaluate_clip: needs >= 2 frames (frame 0 is given), got {T}")
    if isinstance(num_objects, bool) or not isinstance(num_objects, (int, np.integer)) or num_objects < 1:
        raise ValueError(f"evaluate_clip: num_objects must be an integer >= 1, got {num_objects!r}")
    tol = tolerance_px(H, W, cfg)
    per_object = []
    for k in range(1, int(num_objects) + 1):
        js = [j_measure(pred[t] == k, gt[t] == k) for t in range(1, T)]
        fs = [f_measure(pred[t] == k, gt[t] == k, tol) for t in range(1, T)]
        per_object.append({"J": float(np.mean(js)), "F": float(np.mean(fs))})
    J = float(np.mean([o["J"] for o in per_object]))
    Fm = float(np.mean([o["F"] for o in per_object]))
    return {"J": J, "F": Fm, "JF": (J + Fm) / 2, "per_object": per_object, "frames": int(T)}


# ------------------------------------------------------------------------------------- clips


def clips_from_frames(rgb: np.ndarray, instance: np.ndarray, clip_len: int, name: str) -> list[dict]:
    """Cut a sequence (rgb [N, H, W, 3] uint8, instance [N, H, W]) into consecutive non-overlapping
    clips of ``clip_len`` frames, dropping a shorter tail. Clip ``i`` is named ``f"{name}_{i:03d}"``."""
    rgb, instance = np.asarray(rgb), np.asarray(instance)
    if rgb.ndim != 4 or rgb.shape[-1] != 3 or instance.shape != rgb.shape[:3]:
        raise ValueError(f"clips_from_frames: expected rgb [N, H, W, 3] and instance [N, H, W], got {rgb.shape} and {instance.shape}")
    if isinstance(clip_len, bool) or not isinstance(clip_len, (int, np.integer)) or clip_len < 2:
        raise ValueError(f"clips_from_frames: clip_len must be an integer >= 2, got {clip_len!r}")
    return [{"name": f"{name}_{i:03d}", "rgb": rgb[s:s + clip_len], "instance": instance[s:s + clip_len]}
            for i, s in enumerate(range(0, rgb.shape[0] - clip_len + 1, clip_len))]


# ------------------------------------------------------------------------------------ figure

_PALETTE = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40),
], np.float32)


def overlay(rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """rgb [H, W, 3] uint8 with objects 1..K of ``labels`` [H, W] alpha-blended in a colour each."""
    out = rgb.astype(np.float32).copy()
    for k in np.unique(labels):
        if k == BACKGROUND:
            continue
        m = labels == k
        out[m] = (1 - alpha) * out[m] + alpha * _PALETTE[(int(k) - 1) % len(_PALETTE)]
    return np.clip(out, 0, 255).round().astype(np.uint8)


def propagation_figure(rgb: np.ndarray, gt: np.ndarray, pred: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Rows = frames first, 1/3, 2/3, last of a clip; columns = rgb | ground truth | prediction overlays."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T = rgb.shape[0]
    rows = sorted({0, T // 3, (2 * T) // 3, T - 1})
    fig, axes = plt.subplots(len(rows), 3, figsize=(3.4 * 3, 2.7 * len(rows) + 0.4), squeeze=False)
    for r, t in enumerate(rows):
        panels = [rgb[t], overlay(rgb[t], gt[t]), overlay(rgb[t], pred[t])]
        names = [f"frame {t}", "ground truth" + (" (given)" if t == 0 else ""), "prediction"]
        for c, im in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(im)
            ax.axis("off")
            ax.set_title(names[c], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# -------------------------------------------------------------------------------------- glue




def run_propagation(model, clips: list[dict], cfg: PropagationConfig | None = None, progress: bool = True,
                    out_dir: str | Path | None = None, size="model") -> dict:
    """Label propagation readout of a frozen encoder over ``clips``.

    Each clip is ``{"name": str, "rgb": uint8 [T, H, W, 3], "instance": uint16 [T, H, W]}``; it is
    trimmed to ``cfg.frames`` frames when > 0. Features come from ``regconsist_ros.models.encoder.encode`` at the
    encoder's grid, labels stay at the clip's resolution (mapped onto the grid by resizing). A clip
    whose first frame has no qualifying object is skipped (listed under ``skipped``, with a
    warning). Returns ``{"J_mean", "F_mean", "JF_mean", "clips": [{"name", "J", "F", "JF", "objects"
    (count), "object_ids", "per_object", "frames"}], "skipped", "seconds"}`` with means over the
    evaluated clips. Writes ``propagation.json`` and ``propagation.png`` (first evaluated clip) into
    ``out_dir`` when given. ``size`` is the encoder input size (see ``regconsist_ros.models.encoder.encode``).
    """
    from tqdm import tqdm

    from regconsist_ros.models.encoder import encode

    cfg = cfg or PropagationConfig()
    start = time.perf_counter()
    rows: list[dict] = []
    skipped: list[dict] = []
    shown = None
    for clip in tqdm(list(clips), desc="propagation", unit="clip", disable=not progress):
        name = str(clip["name"])
        rgb, instance = np.asarray(clip["rgb"]), np.asarray(clip["instance"])
        if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8 or instance.shape != rgb.shape[:3]:
            raise ValueError(f"run_propagation: clip {name!r} needs rgb uint8 [T, H, W, 3] and instance [T, H, W], "
                             f"got {rgb.dtype} {rgb.shape} and {instance.shape}")
        if cfg.frames > 0:
            rgb, instance = rgb[: cfg.frames], instance[: cfg.frames]
        if rgb.shape[0] < 2:
            raise ValueError(f"run_propagation: clip {name!r} has {rgb.shape[0]} frame(s); needs >= 2")
        try:
            labels, ids = object_masks(instance, cfg)  # [T, H, W]
        except ValueError as e:
            warnings.warn(f"run_propagation: skipping clip {name!r}: {e}", stacklevel=2)
            skipped.append({"name": name, "reason": str(e)})
            continue
        feats = encode(model, torch.from_numpy(np.ascontiguousarray(rgb)), size=size)["patches"]  # [T, D, h, w]
        pred = propagate(feats, labels[0], len(ids), cfg)  # [T, H, W]
        m = evaluate_clip(pred, labels, len(ids), cfg)
        rows.append({"name": name, "J": m["J"], "F": m["F"], "JF": m["JF"], "objects": len(ids), "object_ids": ids,
                     "per_object": m["per_object"], "frames": m["frames"]})
        if shown is None:
            shown = (name, rgb, labels, pred)
    if not rows:
        raise ValueError(f"run_propagation: no clip could be evaluated ({len(skipped)} skipped: no object with "
                         f">= {cfg.min_object_pixels} pixels in the first frame)")
    result = {
        "J_mean": float(np.mean([r["J"] for r in rows])),
        "F_mean": float(np.mean([r["F"] for r in rows])),
        "JF_mean": float(np.mean([r["JF"] for r in rows])),
        "clips": rows,
        "skipped": skipped,
        "seconds": time.perf_counter() - start,
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        record = {**result, "config": asdict(cfg)}
        (out / "propagation.json").write_text(json.dumps(finite_or_none(record), indent=1, allow_nan=False))
        name, rgb, labels, pred = shown
        propagation_figure(rgb, labels, pred, out / "propagation.png",
                           title=f"{name}: J {rows[0]['J']:.3f}  F {rows[0]['F']:.3f}")
    return result
