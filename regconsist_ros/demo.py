"""The main job on the embedded default world (`make demo`).

Today: render a sequence from a procedural apartment, write it to disk (TUM layout), read it back,
select view pairs by overlap IoU, build exact pixel correspondences and draw them. It grows into
the full online pipeline (camera source -> registration -> learner -> evaluator) in later issues.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class DemoConfig:
    out: str = field(default="runs/demo", metadata={"help": "output directory"})
    seed: int = field(default=0, metadata={"help": "apartment and trajectory seed"})
    frames: int = field(default=60, metadata={"help": "frames to render"})
    width: int = field(default=320, metadata={"help": "image width"})
    height: int = field(default=240, metadata={"help": "image height"})
    trajectory: str = field(default="explore", metadata={"help": "explore | grid | spline"})
    iou_low: float = field(default=0.3, metadata={"help": "view pairs: lowest overlap IoU"})
    iou_high: float = field(default=0.7, metadata={"help": "view pairs: highest overlap IoU"})
    show: int = field(default=4, metadata={"help": "view pairs drawn in the figure"})

    def __post_init__(self):
        if self.frames < 2:
            raise ValueError(f"DemoConfig.frames must be >= 2, got {self.frames}")
        if self.show < 1:
            raise ValueError(f"DemoConfig.show must be >= 1, got {self.show}")


def run_demo(cfg: DemoConfig) -> dict:
    from tqdm import tqdm

    from regconsist_ros.registration.geometry import correspond
    from regconsist_ros.registration.pairs import PairSelectionConfig, select_pairs
    from regconsist_ros.registration.visualize import correspondence_figure, label_agreement
    from sim.sequences import TumWriter, read_tum
    from sim.source import SimConfig, SimSource, frames_meta

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    src = SimSource(SimConfig(seed=cfg.seed, frames=cfg.frames, width=cfg.width, height=cfg.height,
                              trajectory=cfg.trajectory))
    with TumWriter(out / "sequence", src.intrinsics, classes=src.classes, meta=frames_meta(src), overwrite=True) as w:
        for f in tqdm(src, total=len(src), desc="render", unit="frame"):
            w.write(f)
    seq = read_tum(out / "sequence")
    frames = [seq[i] for i in tqdm(range(len(seq)), desc="load", unit="frame")]
    pairs = select_pairs(frames, PairSelectionConfig(iou_low=cfg.iou_low, iou_high=cfg.iou_high))
    if not pairs:
        raise RuntimeError(f"no view pair with overlap IoU in [{cfg.iou_low}, {cfg.iou_high}] among {len(frames)} frames")
    # figure: pairs spread over the sequence
    pick = [pairs[int(k)] for k in np.linspace(0, len(pairs) - 1, min(cfg.show, len(pairs))).round()]
    items, stats = [], []
    for p in tqdm(pick, desc="correspond", unit="pair"):
        c = correspond(frames[p.i], frames[p.j])
        agree = label_agreement(frames[p.i], frames[p.j], c, "instance")
        stats.append({"i": p.i, "j": p.j, "overlap_iou": round(c.overlap_iou, 4), "pairs": len(c),
                      "instance_agreement": round(agree, 4)})
        items.append((frames[p.i], frames[p.j], c,
                      f"frames {p.i} -> {p.j}: IoU {c.overlap_iou:.2f}, {len(c)} correspondences, "
                      f"{100 * agree:.2f}% same instance"))
    fig = correspondence_figure(items, out / "correspondences.png")
    summary = {"sequence": str(out / "sequence"), "frames": len(frames), "view_pairs": len(pairs),
               "iou_band": [cfg.iou_low, cfg.iou_high], "figure": str(fig), "shown": stats}
    (out / "pairs.json").write_text(json.dumps({"pairs": [p.__dict__ for p in pairs], **summary}, indent=1))
    return summary
