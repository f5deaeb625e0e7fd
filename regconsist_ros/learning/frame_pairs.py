"""Frame pairs (t, t+k) and clips of ordered frames: the batches of the frame-stream methods.

:func:`sample_frame_pairs` draws ``batch // repeats`` pairs from one ordered stream (an array
[N, H, W, 3] uint8, or anything with ``len()``, ``size`` and ``rgb(indices)``, such as an online
replay buffer): a gap k uniform in ``[gap_min, min(gap_max, N-1)]`` and a start t uniform in
``[0, N-1-k]``. Each pair appears ``repeats`` times in a row (repeated sampling: one decode serves
several crops). Every sample gets its own random-resized crop and horizontal flip, applied
identically to both frames of its pair so that the only difference between ``x_t`` and ``x_k`` is
what happened in time. :func:`sample_clips` does the same for clips of ``clip_len`` frames
``frame_gap`` apart (spatiotemporal shuffling). :class:`FramePairConfig` and :class:`ClipConfig`
are the settings of these two batch kinds (``<method>.batch.*``).

All randomness comes from the numpy ``Generator`` passed in, drawn in a fixed order and amount,
so equal generator states give identical batches.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

CROP_ATTEMPTS = 10  # random-resized-crop tries before the centred fallback


def check_batch_size(cfg) -> None:
    """``size`` >= 1, and an output size (``height``, ``width``) that is 0 0 (automatic) or both >= 8."""
    name = type(cfg).__name__
    if isinstance(cfg.size, bool) or not isinstance(cfg.size, int) or cfg.size < 1:
        raise ValueError(f"{name}.size must be an integer >= 1, got {cfg.size!r}")
    if (cfg.height == 0) != (cfg.width == 0) or (cfg.height and min(cfg.height, cfg.width) < 8) or min(cfg.height, cfg.width) < 0:
        raise ValueError(f"{name}: height and width must both be 0 (automatic) or both >= 8, got {cfg.height}x{cfg.width}")


def check_crop(cfg) -> None:
    """The random-resized-crop settings ``crop_scale``, ``crop_ratio`` (normalised to float pairs) and ``hflip``."""
    name = type(cfg).__name__
    cfg.crop_scale = tuple(float(v) for v in cfg.crop_scale)
    cfg.crop_ratio = tuple(float(v) for v in cfg.crop_ratio)
    lo, hi = cfg.crop_scale if len(cfg.crop_scale) == 2 else (math.nan, math.nan)
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"{name}.crop_scale must be (lo, hi) with 0 < lo <= hi <= 1, got {cfg.crop_scale}")
    lo, hi = cfg.crop_ratio if len(cfg.crop_ratio) == 2 else (math.nan, math.nan)
    if not (0 < lo <= hi and math.isfinite(hi)):
        raise ValueError(f"{name}.crop_ratio must be (lo, hi) with 0 < lo <= hi, got {cfg.crop_ratio}")
    if not 0 <= cfg.hflip <= 1:
        raise ValueError(f"{name}.hflip must be a probability in [0, 1], got {cfg.hflip}")


@dataclass
class FramePairConfig:
    """How frame pairs are drawn and augmented (the ``frame_pairs`` batch kind)."""

    size: int = field(default=32, metadata={"help": "frame pairs per batch (a multiple of repeats)"})
    gap_min: int = field(default=4, metadata={"help": "smallest frame gap k between x_t and x_k"})
    gap_max: int = field(default=48, metadata={"help": "largest frame gap k (capped at N-1)"})
    crop_scale: tuple[float, ...] = field(default=(0.5, 1.0), metadata={"help": "random-resized-crop area fraction range (lo hi)"})
    crop_ratio: tuple[float, ...] = field(default=(0.75, 4 / 3), metadata={"help": "crop aspect ratio range (lo hi), relative to the output aspect w/h"})
    hflip: float = field(default=0.5, metadata={"help": "probability of a horizontal flip (shared by both frames of a pair)"})
    repeats: int = field(default=2, metadata={"help": "repeated sampling: each pair appears this many times with independent crops"})
    height: int = field(default=0, metadata={"help": "crop output height (0: a ViT's input size, else the frames' own height)"})
    width: int = field(default=0, metadata={"help": "crop output width (0: a ViT's input size, else the frames' own width)"})

    def __post_init__(self):
        if not 1 <= self.gap_min <= self.gap_max:
            raise ValueError(f"FramePairConfig: need 1 <= gap_min <= gap_max, got gap_min={self.gap_min}, gap_max={self.gap_max}")
        check_crop(self)
        if self.repeats < 1:
            raise ValueError(f"FramePairConfig.repeats must be >= 1, got {self.repeats}")
        check_batch_size(self)
        if self.size % self.repeats:
            raise ValueError(f"FramePairConfig.size {self.size} must be a multiple of repeats {self.repeats}")


@dataclass
class ClipConfig:
    """How clips are drawn and augmented (the ``clips`` batch kind): clips of the objective's
    ``clip_len`` frames, ``frame_gap`` stream frames apart, one random-resized crop and flip per clip."""

    size: int = field(default=32, metadata={"help": "clips per batch"})
    frame_gap: int = field(default=4, metadata={"help": "stream frames between consecutive frames of a clip"})
    crop_scale: tuple[float, ...] = field(default=(0.5, 1.0), metadata={"help": "random-resized-crop area fraction range (lo hi)"})
    crop_ratio: tuple[float, ...] = field(default=(0.75, 4 / 3), metadata={"help": "crop aspect ratio range (lo hi), relative to the output aspect w/h"})
    hflip: float = field(default=0.5, metadata={"help": "probability of a horizontal flip (shared by the frames of a clip)"})
    height: int = field(default=0, metadata={"help": "crop output height (0: the frames' own height)"})
    width: int = field(default=0, metadata={"help": "crop output width (0: the frames' own width)"})

    def __post_init__(self):
        if isinstance(self.frame_gap, bool) or not isinstance(self.frame_gap, int) or self.frame_gap < 1:
            raise ValueError(f"ClipConfig.frame_gap must be an integer >= 1, got {self.frame_gap!r}")
        check_crop(self)
        check_batch_size(self)


class ArrayStream:
    """An ordered frame array [N, H, W, 3] uint8 as a stream: ``len()``, ``size``, ``rgb(indices)``."""

    def __init__(self, rgb: np.ndarray):
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 4 or rgb.shape[3] != 3:
            raise ValueError(f"frames must be uint8 [N, H, W, 3], got {getattr(rgb, 'dtype', type(rgb))} "
                             f"{getattr(rgb, 'shape', '')}")
        self.array = rgb

    def __len__(self) -> int:
        return len(self.array)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.array.shape[1]), int(self.array.shape[2])

    def rgb(self, indices) -> np.ndarray:
        """[n, H, W, 3] uint8 frames at ``indices``."""
        return self.array[np.asarray(indices, dtype=np.int64)]


def as_stream(frames):
    """A stream as is; an array [N, H, W, 3] uint8 or an ``OrderedFrames`` as an :class:`ArrayStream`."""
    if callable(getattr(frames, "rgb", None)):
        return frames
    return ArrayStream(getattr(frames, "rgb", frames))


def crop_boxes(n: int, src_hw: tuple[int, int], out_hw: tuple[int, int], scale: tuple[float, float],
               ratio: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """``n`` random-resized-crop boxes -> [n, 4] int64 (x0, y0, x1, y1), end-exclusive source pixels.

    Area fraction uniform in ``scale``; aspect (w/h) log-uniform in ``ratio`` times the output
    aspect; width and height rounded to whole pixels (so on small images the area may leave
    ``scale`` by a pixel row or column). The first of CROP_ATTEMPTS draws that fits the image wins;
    if none fits, the largest centred crop with the output aspect. Always draws the same amount
    of randomness, so later draws do not depend on which attempt fitted.
    """
    H, W = src_hw
    oh, ow = out_hw
    area = H * W * rng.uniform(scale[0], scale[1], size=(n, CROP_ATTEMPTS))  # [n, A]
    aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), size=(n, CROP_ATTEMPTS))) * (ow / oh)
    w = np.round(np.sqrt(area * aspect)).astype(np.int64)  # [n, A]
    h = np.round(np.sqrt(area / aspect)).astype(np.int64)
    fits = (w >= 1) & (w <= W) & (h >= 1) & (h <= H)
    first = np.argmax(fits, axis=1)  # [n] first fitting attempt (0 when none fits)
    ok = fits[np.arange(n), first]
    w, h = w[np.arange(n), first], h[np.arange(n), first]  # [n]
    # fallback: largest centred crop with the output aspect
    if W * oh >= H * ow:  # source wider than the output
        fh, fw = H, min(W, max(1, round(H * ow / oh)))
    else:
        fh, fw = min(H, max(1, round(W * oh / ow))), W
    w, h = np.where(ok, w, fw), np.where(ok, h, fh)
    u = rng.random((n, 2))  # position within the free range, uniform over integer offsets
    x0 = np.where(ok, np.floor(u[:, 0] * (W - w + 1)), (W - fw) // 2).astype(np.int64)
    y0 = np.where(ok, np.floor(u[:, 1] * (H - h + 1)), (H - fh) // 2).astype(np.int64)
    x0, y0 = np.minimum(x0, W - w), np.minimum(y0, H - h)
    return np.stack([x0, y0, x0 + w, y0 + h], axis=1)


def sample_frame_pairs(frames, batch: int, cfg: FramePairConfig, rng: np.random.Generator,
                       out_size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """A batch of (x_t, x_{t+k}) pairs from ordered ``frames``: [N, H, W, 3] uint8 or a stream.

    Returns ``x_t``, ``x_k``: float32 [B, 3, h, w] in [0, 1] (``out_size`` = (h, w)); ``t``, ``gap``:
    int64 [B]; ``boxes``: float32 [B, 4] (x0, y0, x1, y1) crop in source pixels (end-exclusive);
    ``flip``: bool [B]. Samples ``r*i .. r*i + r-1`` (r = cfg.repeats) share t and gap.
    """
    stream = as_stream(frames)
    N, (H, W) = len(stream), stream.size
    if N <= cfg.gap_min:
        raise ValueError(f"sample_frame_pairs needs at least gap_min+1 = {cfg.gap_min + 1} frames, got {N}")
    if batch < 1 or batch % cfg.repeats:
        raise ValueError(f"batch must be a positive multiple of repeats={cfg.repeats}, got {batch}")
    if len(out_size) != 2 or any(int(s) != s or s < 1 for s in out_size):
        raise ValueError(f"out_size must be (height, width) positive integers, got {out_size!r}")
    oh, ow = int(out_size[0]), int(out_size[1])

    pairs = batch // cfg.repeats
    gap_hi = min(cfg.gap_max, N - 1)
    gap = rng.integers(cfg.gap_min, gap_hi + 1, size=pairs)  # [P]
    t = rng.integers(0, N - gap)  # [P] in [0, N-1-gap]
    gap, t = np.repeat(gap, cfg.repeats), np.repeat(t, cfg.repeats)  # [B]
    out = crop_pairs(lambda b: stream.rgb([t[b], t[b] + gap[b]]), batch, (H, W), cfg, rng, (oh, ow))
    return {"x_t": out["x_t"], "x_k": out["x_k"], "t": torch.from_numpy(t.astype(np.int64)),
            "gap": torch.from_numpy(gap.astype(np.int64)), "boxes": out["boxes"], "flip": out["flip"]}


def sample_clips(frames, batch: int, clip_len: int, cfg: ClipConfig, rng: np.random.Generator,
                 out_size: tuple[int, int]) -> torch.Tensor:
    """``batch`` clips of ``clip_len`` frames ``cfg.frame_gap`` apart from one ordered stream (starts
    uniform), one crop and flip per clip -> [B, U, 3, h, w] float in [0, 1]."""
    stream = as_stream(frames)
    offs = np.arange(clip_len) * cfg.frame_gap  # [U]
    if len(stream) <= offs[-1]:
        raise ValueError(f"a stream of {len(stream)} frames cannot give a clip of {clip_len} frames "
                         f"{cfg.frame_gap} apart (it spans {offs[-1] + 1})")
    starts = rng.integers(0, len(stream) - offs[-1], size=batch)  # [B]
    return crop_clips(lambda b: stream.rgb(starts[b] + offs), batch, stream.size, cfg, rng, out_size)["clips"]


def crop_pairs(get_pair, batch: int, src_hw: tuple[int, int], cfg, rng: np.random.Generator,
               out_size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """The same random-resized crop and flip on both frames of each of ``batch`` pairs.

    ``get_pair(b)`` returns the b-th pair as uint8 [2, H, W, 3] (H, W = ``src_hw``); used by
    :func:`sample_frame_pairs` and by the online learner's replay buffer. Returns x_t, x_k
    [B, 3, h, w] in [0, 1], boxes [B, 4] and flip [B]."""
    out = crop_clips(get_pair, batch, src_hw, cfg, rng, out_size)
    x = out.pop("clips")
    if x.shape[1] != 2:
        raise ValueError(f"crop_pairs: get_pair must return 2 frames, got {x.shape[1]}")
    return {"x_t": x[:, 0].contiguous(), "x_k": x[:, 1].contiguous(), **out}


def crop_clips(get_clip, batch: int, src_hw: tuple[int, int], cfg, rng: np.random.Generator,
               out_size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """The same random-resized crop and flip on every frame of each of ``batch`` clips.

    ``get_clip(b)`` returns the b-th clip as uint8 [U, H, W, 3] (U fixed, H, W = ``src_hw``).
    Returns clips [B, U, 3, h, w] in [0, 1], boxes [B, 4] and flip [B]."""
    (H, W), (oh, ow) = src_hw, out_size
    boxes = crop_boxes(batch, (H, W), (oh, ow), cfg.crop_scale, cfg.crop_ratio, rng)  # [B, 4]
    flip = rng.random(batch) < cfg.hflip  # [B]

    # Resize in uint8, channels-last: torch's antialiased bilinear has a fast path for it (about 10x
    # faster than float32 on CPU); rounding to the 1/255 grid of the uint8 source costs nothing.
    x8 = None
    for b in range(batch):
        x0, y0, x1, y1 = boxes[b].tolist()
        clip = get_clip(b)
        if clip.shape[1:3] != (H, W):
            raise ValueError(f"crop_clips: clip {b} has frames of {clip.shape[1:3]}, expected {(H, W)}")
        if x8 is None:
            x8 = torch.empty(batch, clip.shape[0], 3, oh, ow, dtype=torch.uint8)  # [B, U, 3, h, w]
        elif clip.shape[0] != x8.shape[1]:
            raise ValueError(f"crop_clips: clip {b} has {clip.shape[0]} frames, expected {x8.shape[1]}")
        crop = torch.from_numpy(np.ascontiguousarray(clip[:, y0:y1, x0:x1]))  # [U, ch, cw, 3] uint8
        crop = crop.permute(0, 3, 1, 2)  # [U, 3, ch, cw], channels-last in memory
        if crop.shape[-2:] != (oh, ow):
            crop = F.interpolate(crop, size=(oh, ow), mode="bilinear", align_corners=False, antialias=True)
        x8[b] = crop
    x = x8.float().div_(255.0)  # [B, U, 3, h, w] in [0, 1]
    flip_t = torch.from_numpy(flip)
    if flip.any():
        x[flip_t] = x[flip_t].flip(-1)
    return {"clips": x, "boxes": torch.from_numpy(boxes.astype(np.float32)), "flip": flip_t}
