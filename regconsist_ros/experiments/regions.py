"""`regconsist experiment regions`: choose RegConsist's Felzenszwalb settings on labelled validation views.

The RegConsist paper tuned its Felzenszwalb over-segmentation against the few labelled views it fine-tunes on
(scale near 250, a minimum region of 1-2% of the image). This engine does the same, on the benchmark's
*validation* apartments only (never its test ones): it renders them at the benchmark's training frame size (the
size regions are computed at during pretraining), takes ``labels`` of each apartment's labelled views, runs
every (scale, min_size) of the grid and scores the regions against the labels
(:mod:`regconsist_ros.registration.region_quality`). The setting with the best segmentation covering of the
object segments wins; the table shows purity, the VI terms and the region counts beside it, and the arms of the
definition (e.g. the current default and the paper's values) as marked rows.

Writes ``results.json`` (every setting's scores, the choice and the settings to pass on), ``results.md``, a
covering heat map and an overlay figure of one view (``regions_covering.png``, ``regions_examples.png``).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class RegionsExperimentConfig:
    out: str = field(default="runs/regions", metadata={"help": "run directory"})
    world: str = field(default="hard", metadata={"help": "embedded-world preset of the apartments (the benchmark's)"})
    val_seeds: tuple[int, ...] = field(default=(50, 51), metadata={"help": "validation apartments scored (the benchmark's; never its test apartments)"})
    frames: int = field(default=80, metadata={"help": "frames per apartment trajectory"})
    width: int = field(default=160, metadata={"help": "frame width (the benchmark's training frames: regions are computed at this size)"})
    height: int = field(default=120, metadata={"help": "frame height"})
    step: float = field(default=0.05, metadata={"help": "metres per frame of the exploration paths"})
    labels: float = field(default=0.05, metadata={"help": "fraction of each apartment's labelled views scored (0.05: the paper's share)"})
    scales: tuple[float, ...] = field(default=(50.0, 100.0, 250.0, 500.0, 1000.0), metadata={"help": "Felzenszwalb scales tried"})
    min_sizes: tuple[int, ...] = field(default=(25, 50, 100, 200, 400), metadata={"help": "Felzenszwalb minimum region sizes tried, in pixels at width x height"})
    sigma: float = field(default=0.8, metadata={"help": "Felzenszwalb pre-smoothing sigma (fixed)"})
    seed: int = field(default=0, metadata={"help": "seed of the choice of labelled views"})
    threads: int = field(default=0, metadata={"help": "torch threads (0 = default)"})

    def __post_init__(self):
        self.val_seeds = tuple(int(s) for s in self.val_seeds)
        self.scales = tuple(float(s) for s in self.scales)
        self.min_sizes = tuple(int(m) for m in self.min_sizes)
        if not self.val_seeds or not self.scales or not self.min_sizes:
            raise ValueError("RegionsExperimentConfig: val_seeds, scales and min_sizes must each name at least one value")
        if not 0.0 < self.labels <= 1.0:
            raise ValueError(f"RegionsExperimentConfig.labels must be in (0, 1], got {self.labels}")
        if self.world not in ("default", "hard"):
            raise ValueError(f"RegionsExperimentConfig.world must be 'default' or 'hard', got {self.world!r}")


CONFIG = RegionsExperimentConfig


def labelled_views(d: Path, fraction: float, seed: int) -> list:
    """``fraction`` (at least one) of the frames of sequence ``d`` that have labelled pixels, evenly spread."""
    from regconsist_ros.learning.stores import load_frames

    frames, _ = load_frames(str(d), progress=False)
    labelled = [f for f in frames if f.semantic is not None and (f.semantic != 0).any()]
    if not labelled:
        raise ValueError(f"{d}: no frame has labelled pixels")
    n = max(1, round(fraction * len(labelled)))
    offset = np.random.default_rng(seed).integers(len(labelled) // n) if len(labelled) >= 2 * n else 0
    return [labelled[int(offset + i * (len(labelled) // n))] for i in range(n)]


def score_grid(views: list, cfg: RegionsExperimentConfig) -> list[dict]:
    """Mean scores over ``views`` of every (scale, min_size): [{"scale", "min_size", score: mean...}]."""
    from tqdm import tqdm

    from regconsist_ros.registration.region_quality import region_scores
    from regconsist_ros.registration.regions import RegionConfig, felzenszwalb_regions

    rows = []
    grid = [(s, m) for s in cfg.scales for m in cfg.min_sizes]
    for scale, min_size in tqdm(grid, desc="Felzenszwalb settings", unit="setting"):
        rc = RegionConfig(scale=scale, sigma=cfg.sigma, min_size=min_size)
        per = [region_scores(felzenszwalb_regions(f.rgb, rc), f.instance, f.semantic) for f in views]
        rows.append({"scale": scale, "min_size": min_size, "min_size_pct": 100 * min_size / (cfg.width * cfg.height),
                     **{k: float(np.mean([p[k] for p in per])) for k in per[0]},
                     "covering_std": float(np.std([p["covering"] for p in per]))})
    return rows


def run(cfg: RegionsExperimentConfig, exp) -> dict:
    from regconsist_ros.experiments.common import render_once, start_run
    from regconsist_ros.sim.source import SimConfig

    out, t0 = start_run(cfg)
    views = []
    for s in cfg.val_seeds:
        d = out / "data" / f"val_{s}"
        render_once(SimConfig(seed=s, frames=cfg.frames, width=cfg.width, height=cfg.height, trajectory="explore",
                              step=cfg.step, world=cfg.world), d, desc=f"render validation apartment {s}")
        views += labelled_views(d, cfg.labels, cfg.seed)
    rows = score_grid(views, cfg)
    best = max(rows, key=lambda r: r["covering"])
    marked = {}  # the definition's arms: named settings shown beside the grid (default, the paper's)
    for arm in exp.arms.values():
        scale, min_size = float(arm.extra.get("scale", 100.0)), int(arm.extra.get("min_size", 50))
        hit = [r for r in rows if r["scale"] == scale and r["min_size"] == min_size]
        marked[arm.name] = {"label": arm.label, "scale": scale, "min_size": min_size,
                            "row": hit[0] if hit else score_grid(views, _only(cfg, scale, min_size))[0]}
    chosen = {"regions.scale": best["scale"], "regions.min_size": best["min_size"], "regions.sigma": cfg.sigma}
    result = {"config": asdict(cfg), "views": len(views), "grid": rows, "best": best, "chosen": chosen,
              "marked": marked, "seconds": round(time.perf_counter() - t0, 1)}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    (out / "results.md").write_text(markdown(result, cfg))
    figures(out, cfg, rows, views, best, marked)
    log.info("regions: best covering %.3f at scale %g, min_size %d", best["covering"], best["scale"], best["min_size"])
    return {"out": str(out), "chosen": chosen, "best": {k: best[k] for k in ("covering", "purity", "regions")},
            "views": len(views)}


def _only(cfg: RegionsExperimentConfig, scale: float, min_size: int) -> RegionsExperimentConfig:
    from dataclasses import replace

    return replace(cfg, scales=(scale,), min_sizes=(min_size,))


def markdown(result: dict, cfg: RegionsExperimentConfig) -> str:
    best, rows = result["best"], result["grid"]
    marks = {(m["scale"], m["min_size"]): m["label"] for m in result["marked"].values()}
    lines = [f"Felzenszwalb settings scored on {result['views']} labelled views ({100 * cfg.labels:g}% of the labelled "
             f"views) of validation apartments {list(cfg.val_seeds)} (world `{cfg.world}`, {cfg.width}x{cfg.height}, "
             f"sigma {cfg.sigma:g}). Covering and VI against the object segments, purity against the classes; "
             f"mean over views. **Chosen (best covering): scale {best['scale']:g}, min_size {best['min_size']}** "
             f"({best['min_size_pct']:.2f}% of a frame).", "",
             "| scale | min_size (px) | % of frame | covering | covering std | purity | VI under | VI over | regions/view | median region px | |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    extra = [m["row"] for m in result["marked"].values() if m["row"] not in rows]
    for r in sorted(rows + extra, key=lambda r: -r["covering"]):
        tag = " / ".join(t for t in ("chosen" if r == best else "", marks.get((r["scale"], r["min_size"]), "")) if t)
        lines.append(f"| {r['scale']:g} | {r['min_size']} | {r['min_size_pct']:.2f} | {r['covering']:.3f} | "
                     f"{r['covering_std']:.3f} | {r['purity']:.3f} | {r['vi_under']:.2f} | {r['vi_over']:.2f} | "
                     f"{r['regions']:.1f} | {r['region_px']:.0f} | {tag} |")
    return "\n".join(lines) + "\n"


def figures(out: Path, cfg: RegionsExperimentConfig, rows: list[dict], views: list, best: dict, marked: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.segmentation import mark_boundaries

    from regconsist_ros.registration.regions import RegionConfig, felzenszwalb_regions

    grid = np.array([[next(r["covering"] for r in rows if r["scale"] == s and r["min_size"] == m) for m in cfg.min_sizes]
                     for s in cfg.scales])
    fig, ax = plt.subplots(figsize=(1.2 * len(cfg.min_sizes) + 2, 0.6 * len(cfg.scales) + 1.5))
    im = ax.imshow(grid, cmap="viridis")
    for i in range(len(cfg.scales)):
        for j in range(len(cfg.min_sizes)):
            ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", fontsize=8,
                    color="w" if grid[i, j] < grid.max() - 0.3 * np.ptp(grid) else "k")
    ax.set_xticks(range(len(cfg.min_sizes)), [str(m) for m in cfg.min_sizes])
    ax.set_yticks(range(len(cfg.scales)), [f"{s:g}" for s in cfg.scales])
    ax.set_xlabel("min_size (px)")
    ax.set_ylabel("scale")
    ax.set_title("segmentation covering of the objects (validation)", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(out / "regions_covering.png", dpi=100)
    plt.close(fig)

    view = views[0]
    shown = [("view", None)] + [(f"{m['label']} (scale {m['scale']:g}, min {m['min_size']})", (m["scale"], m["min_size"]))
                                for m in marked.values()]
    shown.append((f"chosen (scale {best['scale']:g}, min {best['min_size']})", (best["scale"], best["min_size"])))
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 2.8), squeeze=False)
    for ax, (title, setting) in zip(axes[0], shown):
        if setting is None:
            ax.imshow(view.rgb)
        else:
            regions = felzenszwalb_regions(view.rgb, RegionConfig(scale=setting[0], sigma=cfg.sigma, min_size=setting[1]))
            ax.imshow(mark_boundaries(view.rgb, regions, color=(1, 1, 0)))
            title += f"\n{len(np.unique(regions))} regions"
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(out / "regions_examples.png", dpi=100)
    plt.close(fig)
