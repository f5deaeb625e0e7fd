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

from regconsist_ros.learning.trainer import Trainer, TrainerConfig, dist_rank, seed_everything

log = logging.getLogger(__name__)

METHODS = ("regconsist", "rsp", "mae")


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

    from sim.sequences import read_tum

    seq = read_tum(data_dir)
    frames = [seq[i] for i in tqdm(range(len(seq)), desc="load", unit="frame", disable=not progress)]
    return frames, seq


def pretrain_regconsist(data_dir, out, rc, model, trainer: TrainerConfig, pairs, regions, resume: bool = True,
                        progress: bool = True, frames: list | None = None) -> dict:
    """Pretrain a DeepLabV3+ with RegConsist on one sequence; checkpoints go to ``out/checkpoints``."""
    from models.objectives.regconsist import RegConsist
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


@dataclass
class FrameDataConfig:
    """How ordered frames are loaded and batched for the frame-pair methods (RSP, MAE)."""

    batch: int = field(default=32, metadata={"help": "frame pairs per batch (multiple of --pairs-repeats)"})
    load_height: int = field(default=0, metadata={"help": "resize frames to this height when loading (0 = native)"})
    load_width: int = field(default=0, metadata={"help": "resize frames to this width when loading (0 = native)"})
    max_frames: int = field(default=0, metadata={"help": "frames read per source (0 = all)"})
    stride: int = field(default=1, metadata={"help": "take every stride-th frame of each source"})

    def __post_init__(self):
        if self.batch < 1 or self.max_frames < 0 or self.stride < 1:
            raise ValueError(f"FrameDataConfig: batch >= 1, max_frames >= 0 and stride >= 1 needed, got "
                             f"batch={self.batch}, max_frames={self.max_frames}, stride={self.stride}")
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


def build_frame_objective(method: str, encoder_cfg, rsp_cfg=None, mae_cfg=None):
    """The RSP or MAE objective around a ViT of ``encoder_cfg``."""
    if method == "rsp":
        from models.objectives.rsp import RSP
        return RSP(rsp_cfg, encoder_cfg)
    if method == "mae":
        from models.objectives.mae import MAE
        return MAE(mae_cfg, encoder_cfg)
    raise ValueError(f"unknown frame-pair method {method!r}; known: {FRAME_METHODS}")


def pretrain_frames(method: str, data_specs, out, encoder_cfg, trainer: TrainerConfig, pairs, data: FrameDataConfig,
                    rsp_cfg=None, mae_cfg=None, resume: bool = True, progress: bool = True,
                    sources: list | None = None) -> dict:
    """Pretrain a ViT with RSP or MAE on frame pairs of one or more ordered sources."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if sources is None:
        sources = load_sources(data_specs, data, progress)
    sampler = FramePairSampler(sources, pairs, data.batch, encoder_cfg.img_size, seed=trainer.seed)
    seed_everything(trainer.seed)
    objective = build_frame_objective(method, encoder_cfg, rsp_cfg, mae_cfg)
    dropped = {}
    for s in sources:
        for k, v in s.dropped.items():
            dropped[k] = dropped.get(k, 0) + v
    specs = [str(s) for s in ([data_specs] if isinstance(data_specs, (str, Path)) else (data_specs or []))]
    run = {"method": method, "data": specs, "frames": [len(s) for s in sources], "dropped_frames": dropped,
           "encoder": asdict(encoder_cfg), "trainer": asdict(trainer), "pairs": asdict(pairs), "data_config": asdict(data),
           **({"rsp": asdict(rsp_cfg or objective.cfg)} if method == "rsp" else {"mae": asdict(mae_cfg or objective.cfg)})}
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
