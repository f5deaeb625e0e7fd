"""`regconsist pretrain`: build the objective and its data for a method, and train it.

Batches are a pure function of (seed, step), so a resumed run sees the same batches as an
uninterrupted one.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from regconsist_ros.learning.trainer import Trainer, TrainerConfig, seed_everything

log = logging.getLogger(__name__)

METHODS = ("regconsist",)


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
        rng = np.random.default_rng([trainer.seed, step])
        return data.sample_batch(rc.view_pairs, rc.pixel_pairs, sampling, rng, hflip=rc.hflip)

    result = t.fit(batch, progress=progress)
    return {**result, "view_pairs_available": len(data), "run_dir": str(out)}
