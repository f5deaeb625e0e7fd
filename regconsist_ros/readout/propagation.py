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
   J (region IoU, ``j_measure``) and F (boundary F-measure, ``f_measure``), both as the DAVIS 2017
   evaluation computes them: boundaries by seg2bmap, matched within a disk of
   ``tolerance_px`` = ceil(``boundary_tolerance`` x image diagonal) pixels. Each object's J and F are
   means over its frames.
5. ``run_propagation`` does this for a list of clips (``clips_from_frames`` cuts long rendered
   sequences into clips). Its headline is the DAVIS J&F-Mean, ``JF_objects``: the mean over all
   objects of all clips; per-clip means (``JF_mean``) are kept beside it.

Settings default to RSP's DAVIS values (``PAPER_DEFAULTS``); ``search_propagation`` picks them per
encoder on validation clips (features encoded once, only ``propagate`` re-run per setting), and
``split_clips`` keeps validation and test clips of different sequences (apartments).
``run_propagation`` writes ``propagation.json`` and ``propagation.png`` when asked.
"""
from __future__ import annotations

import json
import math
import re
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from regconsist_ros.readout.segmentation import finite_or_none

BACKGROUND = 0


# Defaults (``PropagationConfig``): RSP's DAVIS settings (paper, Table 5): top-k 7, neighbourhood 30,
# queue 30. Temperature 0.1: RSP evaluates with DINO's video-segmentation script, which weighs the
# affinities by exp(a / 0.1), keeps the top-k and normalises them to sum 1, i.e. exactly a softmax over
# the top-k at temperature 0.1 (CRW uses 0.05 the same way); our old 0.7 followed neither.
PAPER_DEFAULTS = {"topk": 7, "radius": 30.0, "queue": 30, "temperature": 0.1}


@dataclass
class PropagationConfig:
    """Settings of the k-NN label propagation readout (defaults: RSP's DAVIS settings, ``PAPER_DEFAULTS``)."""

    topk: int = field(default=7, metadata={"help": "neighbours (context positions) per target position (RSP, DAVIS: 7)"})
    queue: int = field(default=30, metadata={"help": "past predicted frames kept as context, the first frame with GT always kept in addition (RSP, DAVIS: 30)"})
    radius: float = field(default=30.0, metadata={"help": "spatial neighbourhood radius in feature-grid cells, 0 = unrestricted (RSP, DAVIS: 30)"})
    temperature: float = field(default=0.1, metadata={"help": "softmax temperature over the top-k cosine affinities (DINO's evaluation script, used by RSP: 0.1)"})
    min_object_pixels: int = field(default=100, metadata={"help": "first-frame objects smaller than this (pixels at label resolution) are ignored (background)"})
    max_objects: int = field(default=8, metadata={"help": "keep at most this many largest first-frame objects"})
    boundary_tolerance: float = field(default=0.008, metadata={"help": "F-measure boundary tolerance as a fraction of the image diagonal, rounded up to pixels (DAVIS bound_th)"})
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


def _normalised(feats: torch.Tensor) -> torch.Tensor:
    """[T, D, h, w] -> L2-normalised per position [T, N, D]."""
    T, D, h, w = feats.shape
    return F.normalize(feats.float().reshape(T, D, h * w), dim=1).transpose(1, 2).contiguous()


def _context(t: int, queue: int) -> list[int]:
    """The frames frame ``t`` takes its labels from: the first frame, then the last ``queue`` predicted ones."""
    return [0] + list(range(max(1, t - int(queue)), t))


def _nearest(f: torch.Tensor, t: int, queue: int, far: torch.Tensor | None, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest affinities of frame ``t``'s positions to its context -> (values [N, k], indices [N, k]
    into the context positions, frame-major as ``_context`` orders them)."""
    aff = _affinity(f[t], f[_context(t, queue)])  # [N, M, N]
    if far is not None:
        aff = aff.masked_fill(far[:, None, :], float("-inf"))
    aff = aff.reshape(aff.shape[0], -1)  # [N, M * N]
    return aff.topk(min(int(k), aff.shape[1]), dim=1)  # sorted; the same cell is always within the radius


@torch.no_grad()
def neighbours(feats: torch.Tensor, queue: int, radius: float, k: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The nearest context positions of every frame ``t >= 1`` of a clip: ``[(values [N, k'], indices [N, k'])]``
    with ``k' = min(k, context size)``, sorted by decreasing affinity.

    They depend on the features, ``queue`` and ``radius`` only (not on the propagated labels), so
    ``propagate(..., nearest=...)`` reuses them for every ``topk <= k`` and temperature: the search
    computes the affinities once per (queue, radius) instead of once per setting."""
    T, D, h, w = feats.shape
    f = _normalised(feats)
    far = _grid_far(h, w, float(radius), feats.device)
    return [_nearest(f, t, queue, far, k) for t in range(1, T)]


@torch.no_grad()
def propagate(feats: torch.Tensor, first_labels: np.ndarray, num_objects: int, cfg: PropagationConfig,
              nearest: list | None = None) -> np.ndarray:
    """Propagate the first frame's labels through a clip by k-NN over feature affinities.

    ``feats`` [T, D, h, w] are patch features of every frame, ``first_labels`` [H, W] the given
    labels of frame 0 (0 = background, 1..``num_objects``). Returns predicted labels [T, H, W] int64
    at the label resolution (frame 0 = ``first_labels``). See the module doc for the algorithm.
    ``nearest``: ``neighbours(feats, cfg.queue, cfg.radius, k)`` with ``k >= cfg.topk``, computed once
    and shared by settings that differ only in ``topk`` / ``temperature`` (the same predictions, up to
    float rounding: the benchmark's validation search table agrees within 1e-8 J&F).
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
    if nearest is not None and len(nearest) != T - 1:
        raise ValueError(f"propagate: nearest has {len(nearest)} frames, the clip needs {T - 1}")

    onehot = F.one_hot(torch.from_numpy(first.astype(np.int64)).to(device), C).permute(2, 0, 1).float()  # [C, H, W]
    soft0 = F.adaptive_avg_pool2d(onehot[None], (h, w))[0].reshape(C, N).T.contiguous()  # [N, C] area average
    if nearest is None:
        f = _normalised(feats)  # [T, N, D]
        far = _grid_far(h, w, float(cfg.radius), device)  # [N, N] or None
    soft = [soft0]  # soft labels [N, C] of every frame so far

    out = np.empty((T, H, W), np.int64)
    out[0] = first
    for t in range(1, T):
        context = _context(t, cfg.queue)
        k = min(int(cfg.topk), len(context) * N)
        if nearest is None:
            vals, idx = _nearest(f, t, cfg.queue, far, k)  # [N, k]
        else:
            vals, idx = nearest[t - 1]
            if vals.shape[1] < k:
                raise ValueError(f"propagate: nearest holds {vals.shape[1]} neighbours, topk needs {k}")
            vals, idx = vals[:, :k], idx[:, :k]
        ctx_l = torch.cat([soft[m] for m in context])  # [M * N, C]
        weights = torch.softmax(vals / float(cfg.temperature), dim=1)  # [N, k]; masked ones get 0
        s = torch.einsum("nk,nkc->nc", weights, ctx_l[idx])  # [N, C]
        soft.append(s)
        up = F.interpolate(s.T.reshape(1, C, h, w), size=(H, W), mode="bilinear", align_corners=False)  # [1, C, H, W]
        out[t] = up[0].max(0).indices.cpu().numpy()  # = argmax(0) (first maximum), ~5x faster on the CPU
    return out


# ----------------------------------------------------------------------------------- metrics


def j_measure(pred: np.ndarray, gt: np.ndarray) -> float:
    """Region similarity J = |pred & gt| / |pred | gt| of two boolean masks [H, W]; 1.0 when both are empty."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"j_measure: shapes differ: {pred.shape} vs {gt.shape}")
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else float(np.count_nonzero(pred & gt) / union)


def boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary map [H, W] bool of a mask, as DAVIS's ``seg2bmap`` (the Berkeley benchmark's) defines it.

    A pixel is a boundary pixel when it differs from its east, south or south-east neighbour; on the
    last row only the east neighbour counts, on the last column only the south one, and the
    bottom-right pixel never is (the image edge itself is no boundary). The map is one pixel thick
    and lies on the mask's right / lower rim and just outside its left / upper rim."""
    m = np.asarray(mask, bool)
    if m.ndim != 2:
        raise ValueError(f"boundary: expected a mask [H, W], got shape {m.shape}")
    b = np.zeros_like(m)
    b[:, :-1] |= m[:, :-1] ^ m[:, 1:]  # east
    b[:-1, :] |= m[:-1, :] ^ m[1:, :]  # south
    b[:-1, :-1] |= m[:-1, :-1] ^ m[1:, 1:]  # south-east
    return b


def dilate_disk(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation of ``mask`` [H, W] by the disk dy^2 + dx^2 <= r^2 (skimage ``disk(r)``), pixels
    beyond the image counting as empty. Small radii (the F-measure's tolerances: 2-8 px) OR shifted
    copies, one per disk offset, ~10x faster than a distance transform; larger ones use
    ``distance_transform_edt(~mask) <= r``, the same set."""
    mask = np.asarray(mask, bool)
    if r <= 0:
        return mask.copy()
    if r > 8:
        from scipy.ndimage import distance_transform_edt

        return distance_transform_edt(~mask) <= r
    H, W = mask.shape
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if (dy or dx) and dy * dy + dx * dx <= r * r and abs(dy) < H and abs(dx) < W:
                out[max(0, dy):H + min(0, dy), max(0, dx):W + min(0, dx)] |= \
                    mask[max(0, -dy):H + min(0, -dy), max(0, -dx):W + min(0, -dx)]
    return out


def f_measure(pred: np.ndarray, gt: np.ndarray, tolerance_px: int) -> float:
    """Boundary F-measure of two boolean masks [H, W], as DAVIS's ``f_measure`` computes it.

    Boundaries by ``boundary`` (seg2bmap). Each boundary is dilated with a disk of radius
    ``tolerance_px`` (skimage ``disk``: offsets with dy^2 + dx^2 <= r^2; 0 = exact match). Precision =
    fraction of predicted boundary pixels inside the dilated ground-truth boundary, recall = fraction
    of ground-truth boundary pixels inside the dilated predicted one, F = 2PR / (P + R) (0 when
    P + R = 0). Empty boundaries: both empty -> P = R = 1 (F = 1); only the prediction's -> P = 1,
    R = 0; only the ground truth's -> P = 0, R = 1 (F = 0 either way).
    """
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
    r = int(tolerance_px)
    near_g = dilate_disk(bg, r)  # within the tolerance disk of a GT boundary pixel
    near_p = dilate_disk(bp, r)
    precision = np.count_nonzero(bp & near_g) / n_p
    recall = np.count_nonzero(bg & near_p) / n_g
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def tolerance_px(height: int, width: int, cfg: PropagationConfig) -> int:
    """Boundary tolerance in pixels as DAVIS's ``bound_pix``: ceil(cfg.boundary_tolerance * ||(H, W)||)
    (rounded UP: 2 px at 128x96, 8 px at 854x480)."""
    return int(np.ceil(cfg.boundary_tolerance * np.linalg.norm((height, width))))


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


def _prepare(clips: list[dict], cfg: PropagationConfig, where: str) -> tuple[list[dict], list[dict]]:
    """Validate and trim ``clips`` and pick their objects -> (evaluable clips {"name", "rgb", "labels",
    "ids"}, skipped clips {"name", "reason"}); a clip without a qualifying object is skipped with a warning."""
    ready: list[dict] = []
    skipped: list[dict] = []
    seen: set[str] = set()
    for clip in clips:
        name = str(clip["name"])
        if name in seen:
            raise ValueError(f"{where}: clip name {name!r} appears twice (names key the features and the results)")
        seen.add(name)
        rgb, instance = np.asarray(clip["rgb"]), np.asarray(clip["instance"])
        if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8 or instance.shape != rgb.shape[:3]:
            raise ValueError(f"{where}: clip {name!r} needs rgb uint8 [T, H, W, 3] and instance [T, H, W], "
                             f"got {rgb.dtype} {rgb.shape} and {instance.shape}")
        if cfg.frames > 0:
            rgb, instance = rgb[: cfg.frames], instance[: cfg.frames]
        if rgb.shape[0] < 2:
            raise ValueError(f"{where}: clip {name!r} has {rgb.shape[0]} frame(s); needs >= 2")
        try:
            labels, ids = object_masks(instance, cfg)  # [T, H, W]
        except ValueError as e:
            warnings.warn(f"{where}: skipping clip {name!r}: {e}", stacklevel=3)
            skipped.append({"name": name, "reason": str(e)})
            continue
        ready.append({"name": name, "rgb": rgb, "labels": labels, "ids": ids})
    return ready, skipped


def encode_clips(model, clips: list[dict], cfg: PropagationConfig | None = None, size="model",
                 progress: bool = True) -> dict[str, torch.Tensor]:
    """Frozen-encoder patch features of every clip, keyed by clip name: ``{name: [T, D, h, w]}``.

    Frames are trimmed to ``cfg.frames`` first (when > 0); ``size`` as in
    ``regconsist_ros.models.encoder.encode``. Encode once, then pass the dict as ``features=`` to
    ``run_propagation`` or as the source of ``search_propagation`` to try many settings."""
    from tqdm import tqdm

    from regconsist_ros.models.encoder import encode

    cfg = cfg or PropagationConfig()
    out: dict[str, torch.Tensor] = {}
    for clip in tqdm(list(clips), desc="encode", unit="clip", disable=not progress):
        name = str(clip["name"])
        if name in out:
            raise ValueError(f"encode_clips: clip name {name!r} appears twice")
        rgb = np.asarray(clip["rgb"])
        if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"encode_clips: clip {name!r} needs rgb uint8 [T, H, W, 3], got {rgb.dtype} {rgb.shape}")
        if cfg.frames > 0:
            rgb = rgb[: cfg.frames]
        out[name] = encode(model, torch.from_numpy(np.ascontiguousarray(rgb)), size=size)["patches"]  # [T, D, h, w]
    return out


def _clip_features(features, name: str, frames: int, where: str) -> torch.Tensor:
    """``features[name]`` [T', D, h, w] cut to the clip's ``frames`` (T' >= frames) with a clear error otherwise."""
    if name not in features:
        raise ValueError(f"{where}: no features for clip {name!r} (features has {len(features)} clips)")
    f = features[name]
    if not isinstance(f, torch.Tensor) or f.ndim != 4 or f.shape[0] < frames:
        raise ValueError(f"{where}: features of clip {name!r} must be [T, D, h, w] with T >= {frames}, "
                         f"got {getattr(f, 'shape', type(f))}")
    return f[:frames]


def _score(ready: list[dict], features, cfg: PropagationConfig, where: str, nearest: dict | None = None) -> list[dict]:
    """Propagate and score every prepared clip -> per-clip rows (and the predictions under "pred");
    ``nearest`` = {clip name: ``neighbours(...)``} for ``cfg``'s queue and radius, when precomputed."""
    rows = []
    for c in ready:
        labels, ids = c["labels"], c["ids"]
        feats = _clip_features(features, c["name"], labels.shape[0], where)  # [T, D, h, w]
        pred = propagate(feats, labels[0], len(ids), cfg, None if nearest is None else nearest[c["name"]])  # [T, H, W]
        m = evaluate_clip(pred, labels, len(ids), cfg)
        rows.append({"name": c["name"], "J": m["J"], "F": m["F"], "JF": m["JF"], "objects": len(ids),
                     "object_ids": ids, "per_object": m["per_object"], "frames": m["frames"], "pred": pred})
    return rows


def _means(rows: list[dict]) -> dict:
    """Per-clip means (J_mean, F_mean, JF_mean) and object-level means over all objects of all clips
    (J_objects, F_objects, JF_objects = (J_objects + F_objects) / 2, the DAVIS 2017 J&F-Mean)."""
    objs = [o for r in rows for o in r["per_object"]]
    J_o = float(np.mean([o["J"] for o in objs]))
    F_o = float(np.mean([o["F"] for o in objs]))
    return {
        "J_objects": J_o, "F_objects": F_o, "JF_objects": (J_o + F_o) / 2, "num_objects": len(objs),
        "J_mean": float(np.mean([r["J"] for r in rows])),
        "F_mean": float(np.mean([r["F"] for r in rows])),
        "JF_mean": float(np.mean([r["JF"] for r in rows])),
    }


def run_propagation(model, clips: list[dict], cfg: PropagationConfig | None = None, progress: bool = True,
                    out_dir: str | Path | None = None, size="model", *, features=None) -> dict:
    """Label propagation readout of a frozen encoder over ``clips``.

    Each clip is ``{"name": str, "rgb": uint8 [T, H, W, 3], "instance": uint16 [T, H, W]}`` (names
    unique); it is trimmed to ``cfg.frames`` frames when > 0. Features come from
    ``regconsist_ros.models.encoder.encode`` at the encoder's grid (``size`` is the encoder input
    size, see there), or from ``features`` (``{name: [T', D, h, w]}`` with T' >= the clip's frames,
    e.g. from ``encode_clips``; then ``model`` may be None and is not used). Labels stay at the
    clip's resolution (mapped onto the grid by resizing). A clip whose first frame has no qualifying
    object is skipped (listed under ``skipped``, with a warning).

    Returns ``{"JF_objects", "J_objects", "F_objects", "num_objects", "J_mean", "F_mean", "JF_mean",
    "clips": [{"name", "J", "F", "JF", "objects" (count), "object_ids", "per_object", "frames"}],
    "skipped", "seconds"}``. **The headline is ``JF_objects``** (with ``J_objects`` / ``F_objects``):
    means over all objects of all clips of each object's mean over its frames, as DAVIS 2017 reports
    J&F-Mean. ``J_mean`` / ``F_mean`` / ``JF_mean`` are means over clips of the per-clip means (each
    clip weighs the same however many objects it has), kept for continuity. Writes
    ``propagation.json`` and ``propagation.png`` (first evaluated clip) into ``out_dir`` when given.
    """
    from tqdm import tqdm

    cfg = cfg or PropagationConfig()
    start = time.perf_counter()
    ready, skipped = _prepare(list(clips), cfg, "run_propagation")
    if not ready:
        raise ValueError(f"run_propagation: no clip could be evaluated ({len(skipped)} skipped: no object with "
                         f">= {cfg.min_object_pixels} pixels in the first frame)")
    rows: list[dict] = []
    for c in tqdm(ready, desc="propagation", unit="clip", disable=not progress):
        feats = features
        if feats is None:
            feats = encode_clips(model, [{"name": c["name"], "rgb": c["rgb"]}], size=size, progress=False)
        rows += _score([c], feats, cfg, "run_propagation")
    shown = (rows[0]["name"], ready[0]["rgb"], ready[0]["labels"], rows[0]["pred"])
    for r in rows:
        del r["pred"]
    result = {**_means(rows), "clips": rows, "skipped": skipped, "seconds": time.perf_counter() - start}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        record = {**result, "config": asdict(cfg)}
        (out / "propagation.json").write_text(json.dumps(finite_or_none(record), indent=1, allow_nan=False))
        name, rgb, labels, pred = shown
        propagation_figure(rgb, labels, pred, out / "propagation.png",
                           title=f"{name}: J {rows[0]['J']:.3f}  F {rows[0]['F']:.3f}")
    return result


# ------------------------------------------------------------------------- validation search

# A small grid around the paper values (``PAPER_DEFAULTS``): 3 x 3 x 2 x 2 = 36 settings.
SEARCH_GRID: dict[str, tuple] = {
    "topk": (5, 7, 10),
    "temperature": (0.05, 0.1, 0.7),
    "queue": (7, 30),
    "radius": (12.0, 30.0),
}
SEARCHABLE = ("topk", "queue", "radius", "temperature")  # the settings that change only ``propagate``


def search_propagation(source, val_clips: list[dict], grid: dict | None = None, *, base: PropagationConfig | None = None,
                       size="model", progress: bool = True) -> tuple[PropagationConfig, list[dict]]:
    """Choose the propagation settings of one encoder on validation clips.

    ``source`` is the encoder (its features of every clip are computed once, ``encode_clips``) or
    precomputed features ``{name: [T, D, h, w]}``. Every setting of ``grid`` (``{field: values}``
    over ``SEARCHABLE`` fields; default ``SEARCH_GRID``, the product in the order given) replaces
    those fields of ``base`` (default ``PropagationConfig()``, the paper values) and re-runs only
    ``propagate`` and the scoring. The score is ``JF_objects`` (the DAVIS J&F-Mean). Ties (equal
    scores) go to the setting that differs from ``base`` in the fewest fields, then to the earliest
    in grid order, so the choice is deterministic.

    Returns (the best ``PropagationConfig``, a table: one row per setting in grid order with the
    setting's fields, ``J_objects``, ``F_objects``, ``JF_objects``, ``J_mean``, ``F_mean``,
    ``JF_mean`` and ``rank`` (1 = chosen)). Use clips disjoint from the test clips (``split_clips``).
    """
    import itertools
    from collections.abc import Mapping

    from tqdm import tqdm

    base = base or PropagationConfig()
    grid = {k: tuple(v) if hasattr(v, "__iter__") and not isinstance(v, (str, bytes)) else v
            for k, v in (SEARCH_GRID if grid is None else grid).items()}
    if not grid:
        raise ValueError("search_propagation: grid is empty; give {field: [values]} over " + ", ".join(SEARCHABLE))
    for key, values in grid.items():
        if key not in SEARCHABLE:
            raise ValueError(f"search_propagation: cannot search {key!r}; searchable settings are {', '.join(SEARCHABLE)}")
        if not isinstance(values, tuple) or len(values) == 0:
            raise ValueError(f"search_propagation: grid[{key!r}] must be a non-empty list of values, got {values!r}")
    keys = list(grid)
    settings = [dict(zip(keys, combo)) for combo in itertools.product(*(list(grid[k]) for k in keys))]
    configs = [replace(base, **st) for st in settings]  # validates every value (ValueError naming the field)

    ready, _ = _prepare(list(val_clips), base, "search_propagation")
    if not ready:
        raise ValueError("search_propagation: no validation clip has an object to propagate")
    if isinstance(source, Mapping):
        features = source
    else:
        features = encode_clips(source, [{"name": c["name"], "rgb": c["rgb"]} for c in ready], size=size, progress=progress)

    # the nearest context positions depend on (queue, radius) only: found once per pair, at the largest top-k
    kmax: dict[tuple, int] = {}
    for cfg in configs:
        kmax[(cfg.queue, cfg.radius)] = max(kmax.get((cfg.queue, cfg.radius), 0), cfg.topk)
    cache: dict[tuple, dict] = {}
    table = []
    for st, cfg in zip(tqdm(settings, desc="propagation search", unit="setting", disable=not progress), configs):
        key = (cfg.queue, cfg.radius)
        if key not in cache:  # small: [N, k] per frame and clip
            cache[key] = {c["name"]: neighbours(_clip_features(features, c["name"], c["labels"].shape[0], "search_propagation"),
                                                cfg.queue, cfg.radius, kmax[key]) for c in ready}
        m = _means(_score(ready, features, cfg, "search_propagation", cache[key]))
        table.append({**st, **{k: m[k] for k in ("J_objects", "F_objects", "JF_objects", "J_mean", "F_mean", "JF_mean")}})

    def distance(st: dict) -> int:  # fields that differ from base
        return sum(float(v) != float(getattr(base, k)) for k, v in st.items())

    order = sorted(range(len(table)), key=lambda i: (-table[i]["JF_objects"], distance(settings[i]), i))
    for rank, i in enumerate(order, start=1):
        table[i]["rank"] = rank
    return configs[order[0]], table


# ------------------------------------------------------------------------------- clip split


def sequence_of(name: str) -> str:
    """The sequence (apartment) a clip belongs to: ``"apt3_012" -> "apt3"`` (clips are named
    ``f"{sequence}_{i:03d}"`` by ``clips_from_frames``); a name without that suffix is its own sequence."""
    m = re.fullmatch(r"(.+)_(\d{3,})", str(name))
    return m.group(1) if m else str(name)


def split_clips(clips: list[dict], val=0.25, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Split clips into (validation, test) by sequence, so no sequence (apartment) feeds both.

    ``val`` is either a fraction in (0, 1): that share of the sequences (rounded, at least one,
    leaving at least one for test), drawn with a ``seed``-ed permutation of the sorted sequence
    names; or a collection of sequence names for validation (every other sequence is test). Clips
    keep their input order within each part."""
    clips = list(clips)
    seqs = sorted({sequence_of(c["name"]) for c in clips})
    if isinstance(val, (str, bytes)):
        val = [val]
    if isinstance(val, (float, int, np.floating, np.integer)) and not isinstance(val, bool):
        frac = float(val)
        if not 0 < frac < 1:
            raise ValueError(f"split_clips: val must be a fraction in (0, 1) or sequence names, got {val!r}")
        if len(seqs) < 2:
            raise ValueError(f"split_clips: needs >= 2 sequences to split by sequence, got {seqs}")
        n_val = min(max(1, int(round(frac * len(seqs)))), len(seqs) - 1)
        perm = np.random.default_rng(seed).permutation(len(seqs))
        chosen = {seqs[i] for i in perm[:n_val]}
    else:
        chosen = {str(v) for v in val}
        unknown = sorted(chosen - set(seqs))
        if unknown or not chosen:
            raise ValueError(f"split_clips: validation sequences {unknown or '(none)'} are not among the clips' sequences {seqs}")
        if chosen == set(seqs):
            raise ValueError(f"split_clips: every sequence {seqs} is in validation; none is left for test")
    return ([c for c in clips if sequence_of(c["name"]) in chosen],
            [c for c in clips if sequence_of(c["name"]) not in chosen])
