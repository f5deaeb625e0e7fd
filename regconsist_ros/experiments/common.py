"""What every committed experiment does first: its run directory, and rendered sequences made once."""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path


def start_run(cfg) -> tuple[Path, float]:
    """Create ``cfg.out``, record the config as ``experiment.json``, apply ``cfg.threads``; -> (out, t0)."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "experiment.json").write_text(json.dumps(asdict(cfg), indent=1))
    return out, time.perf_counter()


def render_once(sim_cfg, out: Path, desc: str = "render") -> None:
    """Render ``sim_cfg`` into a TUM sequence at ``out`` unless an identical one is already there."""
    from tqdm import tqdm

    from regconsist_ros.sim.sequences import TumWriter
    from regconsist_ros.sim.source import SimSource, frames_meta

    stamp = out / "sim_config.json"
    if stamp.exists() and json.loads(stamp.read_text()) == asdict(sim_cfg):
        return
    src = SimSource(sim_cfg)
    with TumWriter(out, src.intrinsics, classes=src.classes, meta=frames_meta(src), overwrite=True) as w:
        for f in tqdm(src, total=len(src), desc=desc, unit="frame"):
            w.write(f)
    stamp.write_text(json.dumps(asdict(sim_cfg)))
