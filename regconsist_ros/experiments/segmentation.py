"""The few-label segmentation engine (``regconsist experiment regconsist``: config/experiments/regconsist.yaml).

Arms of one method (or random init) read out by few-label segmentation over several seeds and
fine-tuning budgets, at CPU scale; the RegConsist experiment mirrors the paper's Tables I and II
(≈ 40 min on 2 cores):
1. Render one embedded-world apartment along an exploration path. These are the environment's
   views, with semantic labels.
2. Pretrain a small DeepLabV3+ with every arm of the definition (for RegConsist: Felzenszwalb
   regions, balanced sampling, region matching) for ``seeds`` seeds (``seeds: all``) or once
   (``seeds: one``, e.g. the four supervised upper bounds with ground-truth regions; an arm with
   ``only_if: supervised`` runs only when that setting is on).
3. Fine-tune every encoder, and random-init ones with the same seeds, on ``labels`` of the views.
   Each of the ``finetune_steps`` budgets (default 100 and 300 steps) is applied to every arm
   alike. Test on the remaining labelled views (mIoU over present classes, void ignored).
4. Write ``results.md`` (the definition's ``columns`` per arm), ``results.json`` (with the margin of
   the definition's ``compare`` arm over random init) and figures into the run directory.

Every stage is resumable: finished pretrain runs and readouts are skipped when run again.
"""
from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class SegmentationExperimentConfig:
    out: str = field(default="runs/experiment_segmentation", metadata={"help": "run directory"})
    scene_seed: int = field(default=0, metadata={"help": "apartment seed (the environment)"})
    frames: int = field(default=300, metadata={"help": "views rendered along the exploration path"})
    width: int = field(default=128, metadata={"help": "image width"})
    height: int = field(default=96, metadata={"help": "image height"})
    seeds: int = field(default=3, metadata={"help": "seeds of the arms with 'seeds: all' (the method and random init)"})
    pretrain_steps: int = field(default=600, metadata={"help": "pretraining steps per run"})
    pretrain_lr: float = field(default=0.02, metadata={"help": "pretraining peak lr (SGD)"})
    view_pairs: int = field(default=8, metadata={"help": "view pairs per pretraining batch"})
    pixel_pairs: int = field(default=4096, metadata={"help": "pixel pairs per pretraining batch"})
    finetune_steps: tuple[int, ...] = field(default=(100, 300), metadata={"help": "fine-tuning budgets in steps (each applied to every method alike)"})
    finetune_lr: float = field(default=0.01, metadata={"help": "fine-tuning peak lr (SGD)"})
    labels: float = field(default=0.05, metadata={"help": "fraction of labelled views used for fine-tuning"})
    eval_views: int = field(default=80, metadata={"help": "held-out views evaluated (0 = all)"})
    supervised: bool = field(default=True, metadata={"help": "also run the arms marked 'only_if: supervised' (upper bounds)"})
    width_mult: float = field(default=0.5, metadata={"help": "ResNet-18 channel multiplier of the CPU model"})
    threads: int = field(default=0, metadata={"help": "torch threads (0 = default)"})

    def __post_init__(self):
        if self.seeds < 1 or self.frames < 20:
            raise ValueError(f"SegmentationExperimentConfig needs seeds >= 1 and frames >= 20, got {self.seeds}, {self.frames}")
        if not self.finetune_steps or min(self.finetune_steps) < 1:
            raise ValueError(f"SegmentationExperimentConfig.finetune_steps must be positive step counts, got {self.finetune_steps}")
        if not 0 < self.labels < 1:
            raise ValueError(f"SegmentationExperimentConfig.labels must be in (0, 1), got {self.labels}")


CONFIG = SegmentationExperimentConfig


def _model_cfg(cfg: SegmentationExperimentConfig):
    from regconsist_ros.models.deeplab import DeepLabConfig

    small = DeepLabConfig.small()
    return replace(small, width=cfg.width_mult)


def _render(cfg: SegmentationExperimentConfig, data_dir: Path) -> None:
    from regconsist_ros.experiments.common import render_once
    from regconsist_ros.sim.source import SimConfig

    render_once(SimConfig(seed=cfg.scene_seed, frames=cfg.frames, width=cfg.width, height=cfg.height,
                          trajectory="explore"), data_dir)


def _runs(cfg: SegmentationExperimentConfig, exp) -> list[tuple]:
    """(arm, seed) of every run the definition asks for."""
    runs = []
    for arm in exp.arms.values():
        flag = arm.extra.get("only_if")
        if flag and not getattr(cfg, flag):
            continue
        seeds = range(cfg.seeds) if arm.extra.get("seeds", "all") == "all" else [0]
        runs += [(arm, s) for s in seeds]
    return runs


def shared_budget(cfg: SegmentationExperimentConfig, seed: int) -> dict:
    """What every arm shares (relative settings, applied where the method has them)."""
    return {"batch.size": cfg.view_pairs, "batch.pixel_pairs": cfg.pixel_pairs, "trainer.steps": cfg.pretrain_steps,
            "trainer.lr": cfg.pretrain_lr, "trainer.warmup": max(1, cfg.pretrain_steps // 10), "trainer.seed": seed,
            "trainer.log_every": 10, "trainer.ckpt_every": 100, "trainer.device": "auto",
            **{f"encoder.{k}": v for k, v in asdict(_model_cfg(cfg)).items()}}


def run(cfg: SegmentationExperimentConfig, exp) -> dict:
    import torch

    from regconsist_ros.models.checkpoint import latest_checkpoint, load_checkpoint
    from regconsist_ros.models.deeplab import DeepLabV3Plus
    from regconsist_ros.experiments.common import start_run
    from regconsist_ros.learning.pretrain import make_prep, pretrain
    from regconsist_ros.learning.stores import load_frames
    from regconsist_ros.readout.segmentation import FinetuneConfig, run_readout

    out, t0 = start_run(cfg)
    data_dir = out / "data"
    _render(cfg, data_dir)
    frames, seq = load_frames(data_dir)
    classes = seq.classes
    model_cfg = _model_cfg(cfg)
    timings = {"render_and_load_s": round(time.perf_counter() - t0, 1)}
    results: dict[int, dict[str, list[dict]]] = {b: {} for b in cfg.finetune_steps}
    stores: dict = {}  # the view pairs of the sequence, loaded once per region source
    for arm, seed in _runs(cfg, exp):
        name = arm.name
        files = {b: out / "readouts" / f"{name}_s{seed}_ft{b}.json" for b in cfg.finetune_steps}
        todo = [b for b, f in files.items() if not f.exists()]
        for b, f in files.items():
            if b not in todo:
                results[b].setdefault(name, []).append(json.loads(f.read_text()))
        if not todo:
            continue
        t1 = time.perf_counter()
        if arm.method is None:
            torch.manual_seed(seed)
            model, pre = DeepLabV3Plus(model_cfg), {}
        else:
            run_dir = out / "pretrain" / f"{name}_s{seed}"
            ckpt = latest_checkpoint(run_dir)
            done = ckpt is not None and json.loads((ckpt / "config.json").read_text())["step"] >= cfg.pretrain_steps
            if not done:
                run = arm.run(shared_budget(cfg, seed))
                key = (run.spec.batch, getattr(run.batch, "regions", None))
                if key not in stores:
                    stores[key] = run.kind.load(str(data_dir), make_prep(run), run.batch, out, True)
                pre = pretrain(run, str(data_dir), run_dir, store=stores[key])
                ckpt = Path(pre["checkpoint"])
            model, _ = load_checkpoint(ckpt)
            pre = {"checkpoint": str(ckpt)}
        pretrain_s = round(time.perf_counter() - t1, 1)
        for b in todo:
            t2 = time.perf_counter()
            ft = FinetuneConfig(labels=cfg.labels, steps=b, lr=cfg.finetune_lr, seed=seed, eval_views=cfg.eval_views)
            r = run_readout(copy.deepcopy(model), frames, classes, ft, out_dir=out / "readouts" / f"{name}_s{seed}_ft{b}")
            r.pop("confusion")  # kept in the readout directory's readout.json
            r = {"method": name, "seed": seed, "finetune_steps": b, **r, **pre, "pretrain_s": pretrain_s,
                 "finetune_s": round(time.perf_counter() - t2, 1)}
            files[b].parent.mkdir(parents=True, exist_ok=True)
            files[b].write_text(json.dumps(r, indent=1))
            results[b].setdefault(name, []).append(r)
            log.info("%s seed %d, %d fine-tune steps: mIoU %.4f", name, seed, b, r["miou"])
    timings["total_s"] = round(time.perf_counter() - t0, 1)
    floor = next((a.name for a in exp.arms.values() if a.method is None), None)
    compare = exp.extra.get("compare")
    summary = {b: summarize(results[b], compare, floor) for b in cfg.finetune_steps}
    (out / "results.json").write_text(json.dumps({"config": asdict(cfg), "timings": timings,
                                                  "summary": {str(b): v for b, v in summary.items()},
                                                  "runs": {str(b): v for b, v in results.items()}}, indent=1))
    (out / "results.md").write_text(markdown_table(summary, cfg, exp))
    figures(out, results)
    return {"out": str(out), "timings": timings,
            "table": {str(b): v["table"] for b, v in summary.items()},
            f"margin_{compare}_vs_random": {str(b): v["margin"] for b, v in summary.items()}}


def summarize(results: dict, compare: str | None = None, floor: str | None = None) -> dict:
    table = {}
    for name, rs in results.items():
        m = np.array([r["miou"] for r in sorted(rs, key=lambda r: r["seed"])])
        table[name] = {"miou_mean": float(m.mean()), "miou_std": float(m.std()), "n": len(m),
                       "per_seed": [float(x) for x in m], "pixel_acc_mean": float(np.mean([r["pixel_acc"] for r in rs]))}
    margin = None
    if compare in table and floor in table:
        margin = table[compare]["miou_mean"] - table[floor]["miou_mean"]
    return {"table": table, "margin": margin}


def markdown_table(summary: dict, cfg: SegmentationExperimentConfig, exp) -> str:
    budgets = list(summary)
    columns = list(exp.extra.get("columns", []))
    lines = [f"Few-label segmentation ({cfg.labels:.0%} labelled views), apartment seed {cfg.scene_seed}, "
             f"{cfg.frames} views at {cfg.width}x{cfg.height}; pretraining {cfg.pretrain_steps} steps of "
             f"{cfg.view_pairs} view pairs / {cfg.pixel_pairs} pixel pairs; mIoU (%) mean ± std over seeds "
             f"after each fine-tuning budget.", "",
             "| pretraining | " + "".join(f"{c} | " for c in columns) + " | ".join(f"{b} fine-tune steps" for b in budgets)
             + " | seeds |", "|---|" + "---|" * len(columns) + "---|" * len(budgets) + "---|"]
    for arm in exp.arms.values():
        if arm.name in summary[budgets[0]]["table"]:
            cells = []
            for b in budgets:
                r = summary[b]["table"][arm.name]
                cells.append(f"{100 * r['miou_mean']:.2f} ± {100 * r['miou_std']:.2f}")
            values = [str(v) for v in arm.extra.get("columns", ["-"] * len(columns))]
            lines.append(f"| {arm.label} | " + "".join(f"{v} | " for v in values) + " | ".join(cells)
                         + f" | {summary[budgets[0]]['table'][arm.name]['n']} |")
    compare = exp.extra.get("compare")
    margins = [f"{100 * summary[b]['margin']:+.2f} after {b} steps" for b in budgets if summary[b]["margin"] is not None]
    if margins and compare in exp.arms:
        lines += ["", f"{exp.arms[compare].label} - random init (mIoU points): " + ", ".join(margins) + "."]
    return "\n".join(lines) + "\n"


def figures(out: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from regconsist_ros.learning.trainer import read_jsonl

    budgets = list(results)
    names = list(results[budgets[0]])
    fig, ax = plt.subplots(figsize=(8, 3.5))
    w = 0.8 / len(budgets)
    for k, b in enumerate(budgets):
        means = [np.mean([r["miou"] for r in results[b][n]]) * 100 for n in names]
        stds = [np.std([r["miou"] for r in results[b][n]]) * 100 for n in names]
        ax.bar(np.arange(len(names)) + (k - (len(budgets) - 1) / 2) * w, means, w, yerr=stds, capsize=3,
               label=f"{b} fine-tune steps")
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylabel("mIoU (%)")
    ax.set_title("few-label segmentation readout")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "miou.png", dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for run_dir in sorted((out / "pretrain").glob("*")):
        rows = read_jsonl(run_dir / "metrics.jsonl")
        if rows:
            ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=run_dir.name)
    ax.set_xlabel("step")
    ax.set_ylabel("pretraining loss")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "pretrain_loss.png", dpi=100)
    plt.close(fig)
