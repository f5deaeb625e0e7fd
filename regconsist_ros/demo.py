"""The main job on the embedded default world (`make demo`).

1. Registration, offline: render a sequence from a procedural apartment, write it to disk (TUM
   layout), read it back, select view pairs by overlap IoU, build exact pixel correspondences and
   regions, and draw them.
2. The online graph: the ``demo`` graph of config/graph.yaml (the sim graph at CPU sizes: camera source
   -> registration -> learner -> evaluator) for ``online_seconds`` on the same kind of world; the learner trains RSP and RegConsist from
   the stream, the evaluator scores every checkpoint.
3. A report (``report.md`` + PNGs, and ``report.html``: one self-contained page with the run's settings
   and timings): loss curves, readouts over training steps beside the floors, pictures. Where Debian's
   headless Chromium is installed, the page is rendered once (``report_screenshot.png``) and checked:
   self-contained and not blank.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
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
    online_seconds: float = field(default=150.0, metadata={"help": "seconds the online graph runs (0 = skip it)"})
    domain_id: int = field(default=0, metadata={"help": "ROS_DOMAIN_ID of the online graph (0 = a random one in 100..199)"})

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
    from regconsist_ros.sim.sequences import TumWriter, read_tum
    from regconsist_ros.sim.source import SimConfig, SimSource, frames_meta

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    timings, t0 = {}, time.monotonic()
    src = SimSource(SimConfig(seed=cfg.seed, frames=cfg.frames, width=cfg.width, height=cfg.height,
                              trajectory=cfg.trajectory))
    with TumWriter(out / "sequence", src.intrinsics, classes=src.classes, meta=frames_meta(src), overwrite=True) as w:
        for f in tqdm(src, total=len(src), desc="render", unit="frame"):
            w.write(f)
    seq = read_tum(out / "sequence")
    frames = [seq[i] for i in tqdm(range(len(seq)), desc="load", unit="frame")]
    timings["render, write and read back the sequence"] = time.monotonic() - t0
    t0 = time.monotonic()
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
    from regconsist_ros.report import region_figure, write_report

    f1, f2, c, _ = items[0]
    region_figure(f1, f2, c, out / "regions.png")
    summary = {"sequence": str(out / "sequence"), "frames": len(frames), "view_pairs": len(pairs),
               "iou_band": [cfg.iou_low, cfg.iou_high], "figure": str(fig), "shown": stats}
    (out / "pairs.json").write_text(json.dumps({"pairs": [p.__dict__ for p in pairs], **summary}, indent=1))
    timings["view pairs, correspondences, regions and their pictures"] = time.monotonic() - t0
    up_result = None
    if cfg.online_seconds > 0:
        t0 = time.monotonic()
        up_result = run_online(cfg, out / "online")
        timings["online graph (started, ran, stopped)"] = up_result["seconds"]
        timings["readouts of the final checkpoints"] = time.monotonic() - t0 - up_result["seconds"]
        summary["online"] = up_result
    t0 = time.monotonic()
    settings = {"demo": asdict(cfg), "registration (offline)": {
        "frames": len(frames), "view pairs": len(pairs), **{f"pair {s['i']}-{s['j']}": f"IoU {s['overlap_iou']}, "
                                                              f"{s['pairs']} correspondences" for s in stats}}}
    report = write_report(out, out / "online", up_result, {
        "Correspondences of view pairs (offline)": "correspondences.png",
        "Felzenszwalb regions and region matching of one view pair": "regions.png"}, settings, timings)
    summary["report"] = str(report)
    summary["report_html"] = str(out / "report.html")
    summary["report_check"] = check_report(out / "report.html", out / "report_screenshot.png")
    summary["seconds"] = {**{k: round(v, 1) for k, v in timings.items()}, "report": round(time.monotonic() - t0, 1)}
    return summary


def check_report(html: Path, png: Path) -> dict:
    """The page opened in headless Chromium (when installed): a screenshot that is not blank, and no
    reference outside the page; RuntimeError when either fails."""
    from regconsist_ros.report_html import check_page, find_chromium

    if find_chromium() is None:
        return {"skipped": "no headless Chromium (apt-get install chromium-headless-shell)"}
    result = check_page(html, png)
    print(f"report.html rendered by headless Chromium: {png} (pixel std {result['pixel_std']})", flush=True)
    return result


def run_online(cfg: DemoConfig, online: Path) -> dict:
    """The graph ``demo`` of config/graph.yaml (the sim graph at CPU sizes) for ``cfg.online_seconds``,
    logs to online/up.log."""
    import random
    import shutil

    from regconsist_ros.up import load_graph, up

    if online.exists():
        shutil.rmtree(online)  # a fresh learner: the report shows one run
    online.mkdir(parents=True)
    graph = load_graph("demo", overrides=[f"learner.learner.out_dir={online}", f"evaluator.watch_dir={online}",
                                          f"sim_camera.sim.seed={cfg.seed}"])
    (online / "graph.json").write_text(json.dumps(graph, indent=1, default=str))  # the report's settings
    domain = cfg.domain_id or random.randint(100, 199)
    print(f"running the online graph for {cfg.online_seconds:.0f} s (ROS_DOMAIN_ID {domain}); logs: {online / 'up.log'}",
          flush=True)
    with (online / "up.log").open("w") as log:
        result = up(graph, duration=cfg.online_seconds, grace=90.0, domain_id=domain, out=log)
    (online / "up.json").write_text(json.dumps(result, indent=1))
    if not result["ok"]:
        raise RuntimeError(f"the online graph failed: {result['stopped_by']} (see {online / 'up.log'})")
    # the learner's final checkpoints (written at shutdown) get their readouts too, with the graph's settings
    from regconsist_ros.config import build
    from regconsist_ros.online.evaluator import Evaluator, EvaluatorConfig

    ev_params = graph["nodes"]["evaluator"]["params"]
    rows = Evaluator(build(EvaluatorConfig, {k: tuple(v) if isinstance(v, list) else v for k, v in ev_params.items()})).poll()
    result["final_readouts"] = [{k: r.get(k) for k in ("objective", "step", "propagation", "segmentation")} for r in rows]
    return result
