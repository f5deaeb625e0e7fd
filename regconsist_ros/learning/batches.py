"""Batch kinds: one table from the kind of batch a method eats to the builder that makes it.

A method declares its kind (``Method.batch``); the kind brings

- ``config``: its settings dataclass, the method's ``<method>.batch.*`` group;
- ``build(store, cfg, rng, out_size, objective) -> batch``: the builder, over any
  :class:`~regconsist_ros.learning.stores.FrameStore` (offline arrays and online replay buffers
  alike), all randomness from ``rng``;
- ``ready(store, cfg, objective) -> bool``: whether the store can give a batch yet (online);
- ``prep`` and ``load``: the offline data preparation (root-level settings groups such as
  ``load.*``, ``view_pairs.*``) and the loader that turns ``--data`` into a store.

Kinds:

| kind | batch | store part |
|---|---|---|
| ``frame_pairs`` | ``x_t``, ``x_k`` [B, 3, h, w], ``gap`` [B], ``pair`` [B] (same id = same two frames) | streams |
| ``clips`` | ``clip`` [B, U, 3, h, w] (U = the objective's ``clip_len``) | streams |
| ``view_pairs`` | ``x1``, ``x2`` [B, 3, H, W], ``p``, ``q`` [B, n, 2], ``valid`` [B, n] | view pairs |
| ``flow_pairs`` | ``x1``, ``x2`` [B, 3, h, w], ``flow`` [B, 2, h, w], ``valid`` [B, 1, h, w] (+ ``flow21``, ``valid21``) | flow pairs |
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from regconsist_ros.config import ConfigError
from regconsist_ros.learning.datasets import ViewPairBatchConfig, ViewPairData, view_pair_batch
from regconsist_ros.learning.flow_pairs import FarnebackFlow, FlowPairConfig, FlowPairSampler, FlowSourceConfig
from regconsist_ros.learning.frame_pairs import ClipConfig, FramePairConfig, sample_clips, sample_frame_pairs
from regconsist_ros.learning.frame_sources import FrameLoadConfig
from regconsist_ros.learning.stores import OfflineStore, cache_dir_for, load_frames, load_streams, one_spec
from regconsist_ros.registration.pairs import PairSelectionConfig
from regconsist_ros.registration.regions import RegionConfig


class NotReady(ValueError):
    """The store cannot give this kind of batch (yet): too few frames, no view pairs, ..."""


@dataclass(frozen=True)
class BatchKind:
    name: str
    config: type
    source: str  # the store part it reads: "streams", "view_pairs" or "flow_pairs"
    build: Callable
    ready: Callable
    prep: tuple[tuple[str, type], ...]  # offline data-preparation groups (name, config class)
    load: Callable  # load(data, prep: {name: config}, batch_cfg, run_dir, progress) -> FrameStore
    summary: str


# ---- frame pairs ---------------------------------------------------------------------------------------
def _pair_counts(streams: list, cfg: FramePairConfig) -> np.ndarray:
    """Number of (t, k) pairs each stream offers."""
    out = []
    for s in streams:
        n, hi = len(s), min(cfg.gap_max, len(s) - 1)
        out.append(sum(n - k for k in range(cfg.gap_min, hi + 1)))
    return np.asarray(out, np.float64)


def frame_pair_batch(store, cfg: FramePairConfig, rng: np.random.Generator, out_size, objective=None) -> dict:
    """``cfg.size`` frame pairs split over the streams (in units of ``repeats``) in proportion to the
    (t, k) pairs each offers; each pair within one stream."""
    streams = [s for s in store.streams() if len(s) > cfg.gap_min]
    if not streams:
        raise NotReady(f"no stream has more than gap_min={cfg.gap_min} frames "
                       f"(lengths {[len(s) for s in store.streams()]})")
    counts = _pair_counts(streams, cfg)
    per = rng.multinomial(cfg.size // cfg.repeats, counts / counts.sum())
    parts = [sample_frame_pairs(s, int(n) * cfg.repeats, cfg, rng, out_size) for s, n in zip(streams, per) if n]
    batch = {k: torch.cat([p[k] for p in parts]) for k in ("x_t", "x_k", "gap")}
    batch["pair"] = torch.arange(cfg.size) // cfg.repeats  # [B] items with one id show the same two frames
    return batch


def _frame_pairs_ready(store, cfg: FramePairConfig, objective=None) -> bool:
    return any(len(s) > cfg.gap_min for s in store.streams())


# ---- clips ---------------------------------------------------------------------------------------------
def _span(cfg: ClipConfig, objective) -> int:
    return (objective.clip_len - 1) * cfg.frame_gap + 1


def clip_batch(store, cfg: ClipConfig, rng: np.random.Generator, out_size, objective) -> dict:
    """``cfg.size`` clips of the objective's ``clip_len`` frames, streams drawn in proportion to the
    clips they offer."""
    span = _span(cfg, objective)
    streams = [s for s in store.streams() if len(s) >= span]
    if not streams:
        raise NotReady(f"no stream has the {span} frames a clip of {objective.clip_len} frames {cfg.frame_gap} apart "
                       f"spans (lengths {[len(s) for s in store.streams()]})")
    starts = np.asarray([len(s) - span + 1 for s in streams], np.float64)
    per = rng.multinomial(cfg.size, starts / starts.sum())
    clips = [sample_clips(s, int(n), objective.clip_len, cfg, rng, out_size) for s, n in zip(streams, per) if n]
    return {"clip": torch.cat(clips)}


def _clips_ready(store, cfg: ClipConfig, objective) -> bool:
    return any(len(s) >= _span(cfg, objective) for s in store.streams())


# ---- view pairs ----------------------------------------------------------------------------------------
def view_pairs_batch(store, cfg: ViewPairBatchConfig, rng: np.random.Generator, out_size=None, objective=None) -> dict:
    pairs = store.view_pairs()
    if pairs is None or not len(pairs):
        raise NotReady("no registered view pairs")
    return view_pair_batch(pairs, cfg, rng)


def _view_pairs_ready(store, cfg, objective=None) -> bool:
    pairs = store.view_pairs()
    return pairs is not None and len(pairs) > 0


def load_view_pairs(data, prep: dict, cfg: ViewPairBatchConfig, run_dir, progress: bool = True) -> OfflineStore:
    """View pairs of one TUM RGB-D sequence (selected by ``view_pairs.*``, regions by ``regions.*``)."""
    spec = one_spec(data, "a view-pair method (one TUM RGB-D sequence with depth and poses)")
    frames, _ = load_frames(spec, progress)
    vp = ViewPairData(frames, prep["view_pairs"], prep["regions"], regions=cfg.regions,
                      cache_dir=cache_dir_for(spec, run_dir), progress=progress)
    return OfflineStore(view_pairs=vp, summary={"frames": [len(frames)], "view_pairs_available": len(vp)})


# ---- flow pairs ----------------------------------------------------------------------------------------
def flow_pairs_batch(store, cfg: FlowPairConfig, rng: np.random.Generator, out_size=None, objective=None) -> dict:
    src = store.flow_pairs()
    if src is None:
        raise NotReady("no flow pairs")
    return src.sample(cfg.size, rng)


def _flow_pairs_ready(store, cfg, objective=None) -> bool:
    src = store.flow_pairs()
    return src is not None and len(src) > 0


def load_flow_pairs(data, prep: dict, cfg: FlowPairConfig, run_dir, progress: bool = True) -> OfflineStore:
    """Frame pairs of one sequence with their flow: geometric (a TUM RGB-D sequence with depth and
    poses) or optical (``flow.source=farneback``: any ordered frames)."""
    flow, load = prep["flow"], prep["load"]
    spec = one_spec(data, f"flow pairs ({flow.source} flow)")
    if flow.source == "geometric":
        frames, _ = load_frames(spec, progress)
        frames = frames[::load.stride][:load.max_frames or None]
        estimator = None
    else:
        frames = load.load(spec, progress=progress)  # OrderedFrames: colour only
        estimator = FarnebackFlow(fb_tol=flow.fb_tol)
    n = len(frames)
    if not n:
        raise ValueError(f"{spec}: no frames")
    first = frames.rgb[0] if hasattr(frames, "stamps") else frames[0].rgb
    size = (cfg.height, cfg.width) if cfg.height else first.shape[:2]
    sampler = FlowPairSampler(frames, cfg.size, size, gap_min=flow.gap_min, gap_max=flow.gap_max, fb_tol=flow.fb_tol,
                              estimator=estimator, symmetric=cfg.symmetric)
    return OfflineStore(flow_pairs=sampler, summary={"frames": [n], "flow_source": flow.source})


def _load_streams(data, prep: dict, cfg, run_dir, progress: bool = True) -> OfflineStore:
    return load_streams(data, prep["load"], progress)


BATCHES: dict[str, BatchKind] = {
    "frame_pairs": BatchKind("frame_pairs", FramePairConfig, "streams", frame_pair_batch, _frame_pairs_ready,
                             (("load", FrameLoadConfig),), _load_streams,
                             "frame pairs (t, t+k) of ordered frames: TUM sequences, image folders, videos, 'sim:...'"),
    "clips": BatchKind("clips", ClipConfig, "streams", clip_batch, _clips_ready, (("load", FrameLoadConfig),), _load_streams,
                       "clips of ordered frames: TUM sequences, image folders, videos, 'sim:...'"),
    "view_pairs": BatchKind("view_pairs", ViewPairBatchConfig, "view_pairs", view_pairs_batch, _view_pairs_ready,
                            (("view_pairs", PairSelectionConfig), ("regions", RegionConfig)), load_view_pairs,
                            "registered view pairs of one TUM RGB-D sequence (depth and poses)"),
    "flow_pairs": BatchKind("flow_pairs", FlowPairConfig, "flow_pairs", flow_pairs_batch, _flow_pairs_ready,
                            (("load", FrameLoadConfig), ("flow", FlowSourceConfig)), load_flow_pairs,
                            "frame pairs with their flow: a TUM RGB-D sequence (geometric), or any ordered frames "
                            "with flow.source=farneback"),
}


def batch_kind(name: str) -> BatchKind:
    try:
        return BATCHES[name]
    except KeyError:
        raise ValueError(f"unknown batch kind {name!r}; known: {sorted(BATCHES)}") from None


def out_size(cfg, encoder_cfg, store) -> tuple[int, int] | None:
    """The image size of a batch: a ViT's input size; else ``cfg.height x cfg.width``; else the
    streams' own size (None when the kind does not resize)."""
    img = getattr(encoder_cfg, "img_size", None)
    h, w = getattr(cfg, "height", 0), getattr(cfg, "width", 0)
    if img is not None:
        if h and (h, w) != tuple(img):
            raise ConfigError(f"batch height x width {h}x{w} must be 0 0 (the ViT's input size) or equal to the "
                              f"encoder's img_size {tuple(img)}")
        return tuple(int(v) for v in img)
    if h:
        return int(h), int(w)
    sizes = {tuple(s.size) for s in store.streams()}
    if len(sizes) > 1:
        raise ConfigError(f"the frame sources have different sizes {sorted(sizes)}: set the batch's height and width "
                          f"(or load.height / load.width)")
    return next(iter(sizes)) if sizes else None
