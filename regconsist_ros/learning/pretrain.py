"""`regconsist pretrain`: build the objective and its data for a method, and train it.

Batches are a pure function of (seed, step), so a resumed run sees the same batches as an
uninterrupted one.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from regconsist_ros.learning.trainer import Trainer, TrainerConfig, dist_rank, seed_everything

log = logging.getLogger(__name__)

METHODS = ("regconsist", "rsp", "mae", "rotation", "simclr", "byol", "tcn", "shuffle", "flowe")


def cache_dir_for(data_dir: Path, run_dir: Path) -> Path:
    """Per-sequence cache next to the data when writable, else inside the run directory."""
    d = Path(data_dir) / ".regconsist_cache"
    try:
        d.mkdir(exist_ok=True)
        if os.access(d, os.W_OK):
            return d
    except OSError:
        pass
    return Path(run_dir) / "cache"


def load_frames(data_dir: str | Path, progress: bool = True) -> tuple[list, object]:
    """All associated frames of a TUM sequence, in memory (CPU-scale sequences)."""
    from tqdm import tqdm

    from regconsist_ros.sim.sequences import read_tum

    seq = read_tum(data_dir)
    frames = [seq[i] for i in tqdm(range(len(seq)), desc="load", unit="frame", disable=not progress)]
    return frames, seq


def pretrain_regconsist(data_dir, out, rc, model, trainer: TrainerConfig, pairs, regions, resume: bool = True,
                        progress: bool = True, frames: list | None = None) -> dict:
    """Pretrain a DeepLabV3+ with RegConsist on one sequence; checkpoints go to ``out/checkpoints``."""
    from regconsist_ros.models.objectives.regconsist import RegConsist
    from regconsist_ros.learning.datasets import ViewPairData
    from regconsist_ros.registration.sampling import SamplingConfig

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if frames is None:
        frames, _ = load_frames(data_dir, progress)
    data = ViewPairData(frames, pairs, regions, regions=rc.regions, cache_dir=cache_dir_for(Path(data_dir), out),
                        progress=progress)
    seed_everything(trainer.seed)
    objective = RegConsist(rc, model)
    run = {"method": "regconsist", "data": str(data_dir), "view_pairs_available": len(data), "regconsist": asdict(rc),
           "model": asdict(model), "trainer": asdict(trainer), "pairs": asdict(pairs), "regions": asdict(regions)}
    (out / "run.json").write_text(json.dumps(run, indent=1, default=list))
    t = Trainer(objective, trainer, out, meta={"method": "regconsist", "data": str(data_dir)})
    if resume:
        t.resume()
    sampling = SamplingConfig(sampling=rc.sampling, matching=rc.matching)

    def batch(step: int) -> dict:
        rank = dist_rank()
        rng = np.random.default_rng([trainer.seed, step] + ([rank] if rank else []))
        return data.sample_batch(rc.view_pairs, rc.pixel_pairs, sampling, rng, hflip=rc.hflip)

    result = t.fit(batch, progress=progress)
    return {**result, "view_pairs_available": len(data), "run_dir": str(out)}


# ---- frame-pair methods (RSP, MAE) ----------------------------------------------------------------
FRAME_METHODS = ("rsp", "mae")
PRETEXT_METHODS = ("rotation", "simclr", "byol", "tcn")  # models/objectives/pretext.py, DeepLabV3+ encoders


@dataclass
class FrameDataConfig:
    """How ordered frames are loaded and batched for the frame-pair methods (RSP, MAE)."""

    batch: int = field(default=32, metadata={"help": "frame pairs per batch (multiple of --pairs-repeats)"})
    load_height: int = field(default=0, metadata={"help": "resize frames to this height when loading (0 = native)"})
    load_width: int = field(default=0, metadata={"help": "resize frames to this width when loading (0 = native)"})
    max_frames: int = field(default=0, metadata={"help": "frames read per source (0 = all)"})
    stride: int = field(default=1, metadata={"help": "take every stride-th frame of each source"})
    crop_height: int = field(default=96, metadata={"help": "crop height fed to a DeepLabV3+ encoder (a ViT uses its img_size)"})
    crop_width: int = field(default=128, metadata={"help": "crop width fed to a DeepLabV3+ encoder (a ViT uses its img_size)"})
    clip_gap: int = field(default=4, metadata={"help": "frames between consecutive frames of a clip (shuffle)"})

    def __post_init__(self):
        if self.batch < 1 or self.max_frames < 0 or self.stride < 1:
            raise ValueError(f"FrameDataConfig: batch >= 1, max_frames >= 0 and stride >= 1 needed, got "
                             f"batch={self.batch}, max_frames={self.max_frames}, stride={self.stride}")
        if self.clip_gap < 1:
            raise ValueError(f"FrameDataConfig: clip_gap must be >= 1, got {self.clip_gap}")
        if self.crop_height < 8 or self.crop_width < 8:
            raise ValueError(f"FrameDataConfig: crop_height and crop_width must be >= 8, got {self.crop_height}x{self.crop_width}")
        if (self.load_height > 0) != (self.load_width > 0) or min(self.load_height, self.load_width) < 0:
            raise ValueError(f"FrameDataConfig: give both load_height and load_width (or neither), got "
                             f"{self.load_height}x{self.load_width}")

    @property
    def load_size(self) -> tuple[int, int] | None:
        return (self.load_height, self.load_width) if self.load_height else None


def load_sources(specs, data: FrameDataConfig, progress: bool = True) -> list:
    """One :class:`OrderedFrames` per source spec (TUM dir, image folder, video, ``sim:...``)."""
    from regconsist_ros.learning.frame_sources import load_ordered_frames

    if isinstance(specs, (str, Path)):
        specs = [specs]
    return [load_ordered_frames(s, size=data.load_size, max_frames=data.max_frames, stride=data.stride,
                                progress=progress) for s in specs]


class FramePairSampler:
    """Batches of (x_t, x_k) pairs drawn from several ordered sources, each pair within one source.

    The batch is split over sources in units of ``pairs.repeats`` in proportion to the number of
    (t, k) pairs each source offers; a batch is a pure function of (seed, step)."""

    def __init__(self, sources: list, pairs, batch: int, out_size: tuple[int, int], seed: int = 0):
        self.sources = [s for s in sources if len(s) > pairs.gap_min]
        if not self.sources:
            lens = [len(s) for s in sources]
            raise ValueError(f"no source has more than gap_min={pairs.gap_min} frames (lengths {lens}): "
                             f"lower --pairs-gap-min or give longer sequences")
        if batch % pairs.repeats:
            raise ValueError(f"batch {batch} must be a multiple of repeats {pairs.repeats}")
        skipped = len(sources) - len(self.sources)
        if skipped:
            log.warning("%d source(s) with <= %d frames cannot give frame pairs and are not used", skipped, pairs.gap_min)
        self.pairs, self.batch, self.out_size, self.seed = pairs, batch, tuple(out_size), seed
        counts = []
        for s in self.sources:
            n, hi = len(s), min(pairs.gap_max, len(s) - 1)
            counts.append(sum(n - k for k in range(pairs.gap_min, hi + 1)))
        self.weights = np.asarray(counts, np.float64) / sum(counts)

    def __call__(self, step: int) -> dict:
        import torch

        from regconsist_ros.learning.frame_pairs import sample_frame_pairs

        rank = dist_rank()
        rng = np.random.default_rng([self.seed, step] + ([rank] if rank else []))
        units = self.batch // self.pairs.repeats
        per = rng.multinomial(units, self.weights)
        parts = [sample_frame_pairs(s.rgb, int(n) * self.pairs.repeats, self.pairs, rng, self.out_size)
                 for s, n in zip(self.sources, per) if n]
        return {k: torch.cat([p[k] for p in parts]) for k in ("x_t", "x_k", "gap")}


class FrameClipSampler:
    """Batches of clips of ``clip_len`` frames, ``frame_gap`` apart, from several ordered sources.

    Every frame of a clip gets the same random-resized crop and flip (``crop``: a FramePairConfig's
    crop settings); sources are drawn in proportion to the clips they offer; a batch is a pure
    function of (seed, step, rank). Returns ``{"clip": [B, U, 3, h, w]}`` in [0, 1]."""

    def __init__(self, sources: list, clip_len: int, frame_gap: int, batch: int, out_size: tuple[int, int],
                 crop, seed: int = 0):
        span = (clip_len - 1) * frame_gap + 1
        self.sources = [s for s in sources if len(s) >= span]
        if clip_len < 2 or frame_gap < 1 or batch < 1:
            raise ValueError(f"FrameClipSampler: clip_len >= 2, frame_gap >= 1, batch >= 1 needed, got "
                             f"{clip_len}, {frame_gap}, {batch}")
        if not self.sources:
            raise ValueError(f"no source has the {span} frames a clip of {clip_len} frames {frame_gap} apart spans "
                             f"(lengths {[len(s) for s in sources]})")
        self.clip_len, self.gap, self.batch, self.out_size, self.crop, self.seed = clip_len, frame_gap, batch, tuple(out_size), crop, seed
        starts = np.asarray([len(s) - span + 1 for s in self.sources], np.float64)
        self.weights = starts / starts.sum()

    def __call__(self, step: int) -> dict:
        from regconsist_ros.learning.frame_pairs import crop_clips

        rank = dist_rank()
        rng = np.random.default_rng([self.seed, step] + ([rank] if rank else []))
        src = rng.choice(len(self.sources), size=self.batch, p=self.weights)
        offs = np.arange(self.clip_len) * self.gap
        starts = [int(rng.integers(0, len(self.sources[i]) - offs[-1])) for i in src]
        parts = {}
        for i in sorted(set(src.tolist())):  # clips of one source share its frame size
            idx = [b for b in range(self.batch) if src[b] == i]
            rgb = self.sources[i].rgb
            out = crop_clips(lambda j: rgb[starts[idx[j]] + offs], len(idx), rgb.shape[1:3], self.crop, rng, self.out_size)
            parts[i] = (idx, out["clips"])
        clips = torch.empty(self.batch, self.clip_len, 3, *self.out_size)
        for idx, c in parts.values():
            clips[idx] = c
        return {"clip": clips}


def build_frame_objective(method: str, encoder_cfg, rsp_cfg=None, mae_cfg=None, pretext_cfg=None, repeats: int = 1):
    """The RSP or MAE objective around a ViT of ``encoder_cfg``, or a pretext baseline around a DeepLabV3+.

    ``repeats``: how often the batches repeat each (t, k) pair (``FramePairConfig.repeats``); contrastive
    baselines must know it, so that a pair's repeats are never each other's negatives."""
    if method in PRETEXT_METHODS:
        from dataclasses import replace

        from regconsist_ros.models.objectives.pretext import PRETEXT, build_pretext

        cfg = pretext_cfg or PRETEXT[method][0]()
        if "repeats" in type(cfg).__dataclass_fields__:
            cfg = replace(cfg, repeats=repeats)
        return build_pretext(method, cfg, encoder_cfg)
    if method == "rsp":
        from regconsist_ros.models.objectives.rsp import RSP
        return RSP(rsp_cfg, encoder_cfg)
    if method == "mae":
        from regconsist_ros.models.objectives.mae import MAE
        return MAE(mae_cfg, encoder_cfg)
    raise ValueError(f"unknown frame-pair method {method!r}; known: {FRAME_METHODS + PRETEXT_METHODS}")


def pretrain_frames(method: str, data_specs, out, encoder_cfg, trainer: TrainerConfig, pairs, data: FrameDataConfig,
                    rsp_cfg=None, mae_cfg=None, resume: bool = True, progress: bool = True,
                    sources: list | None = None, pretext_cfg=None) -> dict:
    """Pretrain a ViT with RSP or MAE, or a DeepLabV3+ with a pretext baseline, on frame pairs of ordered sources."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if sources is None:
        sources = load_sources(data_specs, data, progress)
    size = encoder_cfg.img_size if hasattr(encoder_cfg, "img_size") else (data.crop_height, data.crop_width)
    sampler = FramePairSampler(sources, pairs, data.batch, size, seed=trainer.seed)
    seed_everything(trainer.seed)
    objective = build_frame_objective(method, encoder_cfg, rsp_cfg, mae_cfg, pretext_cfg, repeats=pairs.repeats)
    dropped = {}
    for s in sources:
        for k, v in s.dropped.items():
            dropped[k] = dropped.get(k, 0) + v
    specs = [str(s) for s in ([data_specs] if isinstance(data_specs, (str, Path)) else (data_specs or []))]
    run = {"method": method, "data": specs, "frames": [len(s) for s in sources], "dropped_frames": dropped,
           "encoder": asdict(encoder_cfg), "trainer": asdict(trainer), "pairs": asdict(pairs), "data_config": asdict(data),
           method: asdict(objective.cfg)}
    (out / "run.json").write_text(json.dumps(run, indent=1, default=list))
    t = Trainer(objective, trainer, out, meta={"method": method, "data": specs,
                                               **({"latent": objective.cfg.latent, "mae": objective.cfg.mae,
                                                   "separate_decoder": objective.cfg.separate_decoder}
                                                  if method == "rsp" else {})})
    if resume:
        t.resume()
    result = t.fit(sampler, progress=progress)
    return {**result, "method": method, "frames": sum(len(s) for s in sources), "dropped_frames": dropped,
            "run_dir": str(out)}


def _train(objective, sampler, out: Path, trainer: TrainerConfig, run: dict, resume: bool, progress: bool) -> dict:
    """Write run.json, train ``objective`` on ``sampler`` batches (resuming), return the fit result."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps(run, indent=1, default=list))
    t = Trainer(objective, trainer, out, meta={"method": run["method"], "data": run["data"]})
    if resume:
        t.resume()
    return {**t.fit(sampler, progress=progress), "method": run["method"], "run_dir": str(out)}


def pretrain_clips(data_specs, out, encoder_cfg, trainer: TrainerConfig, crop, data: FrameDataConfig, shuffle_cfg=None,
                   resume: bool = True, progress: bool = True, sources: list | None = None) -> dict:
    """Spatiotemporal shuffling (models/objectives/shuffle.py) on clips of ordered frames."""
    from regconsist_ros.models.objectives.shuffle import Shuffle, ShuffleConfig

    shuffle_cfg = shuffle_cfg or ShuffleConfig()
    sources = sources if sources is not None else load_sources(data_specs, data, progress)
    sampler = FrameClipSampler(sources, shuffle_cfg.frames, data.clip_gap, data.batch, (data.crop_height, data.crop_width),
                               crop, seed=trainer.seed)
    seed_everything(trainer.seed)
    objective = Shuffle(shuffle_cfg, encoder_cfg)
    specs = [str(s) for s in ([data_specs] if isinstance(data_specs, (str, Path)) else (data_specs or []))]
    run = {"method": "shuffle", "data": specs, "frames": [len(s) for s in sources], "encoder": asdict(encoder_cfg),
           "trainer": asdict(trainer), "crop": asdict(crop), "data_config": asdict(data), "shuffle": asdict(shuffle_cfg)}
    return {**_train(objective, sampler, Path(out), trainer, run, resume, progress), "frames": sum(len(s) for s in sources)}


def pretrain_flowe(data_dir, out, encoder_cfg, trainer: TrainerConfig, data: FrameDataConfig, flowe_cfg=None,
                   gap_min: int = 1, gap_max: int = 8, resume: bool = True, progress: bool = True,
                   flow_source: str = "geometric") -> dict:
    """FlowE (models/objectives/flowe.py) on frame pairs of one sequence.

    ``flow_source="geometric"``: a TUM RGB-D sequence with poses, flow from depth + pose (default);
    ``"farneback"``: any ordered frames (video, image folder, ...) with OpenCV's optical flow."""
    from types import SimpleNamespace

    from regconsist_ros.models.objectives.flowe import FlowE, FlowEConfig
    from regconsist_ros.learning.flow_pairs import FarnebackFlow, FlowPairSampler
    from regconsist_ros.learning.frame_sources import load_ordered_frames

    flowe_cfg = flowe_cfg or FlowEConfig()
    if flow_source == "geometric":
        frames, _ = load_frames(data_dir, progress)
        frames = frames[::data.stride][:data.max_frames or None]
        estimator = None
    elif flow_source == "farneback":
        fr = load_ordered_frames(data_dir, size=data.load_size, max_frames=data.max_frames, stride=data.stride,
                                 progress=progress)
        frames = [SimpleNamespace(rgb=rgb, depth=None) for rgb in fr.rgb]
        estimator = FarnebackFlow(fb_tol=flowe_cfg.fb_tol)
    else:
        raise ValueError(f"flow_source must be 'geometric' or 'farneback', got {flow_source!r}")
    sampler = FlowPairSampler(frames, data.batch, (data.crop_height, data.crop_width), gap_min=gap_min, gap_max=gap_max,
                              seed=trainer.seed + 1000 * dist_rank(), fb_tol=flowe_cfg.fb_tol, estimator=estimator)
    seed_everything(trainer.seed)
    objective = FlowE(flowe_cfg, encoder_cfg)
    run = {"method": "flowe", "data": [str(data_dir)], "frames": [len(frames)], "encoder": asdict(encoder_cfg),
           "trainer": asdict(trainer), "data_config": asdict(data), "flowe": asdict(flowe_cfg),
           "gap": [gap_min, gap_max], "flow_source": flow_source}
    return {**_train(objective, sampler, Path(out), trainer, run, resume, progress), "frames": len(frames)}
