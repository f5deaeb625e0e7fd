"""`regconsist experiment objectives`: every DeepLabV3+ objective through the segmentation and
label-propagation readouts, at CPU scale.

All methods pretrain the same DeepLabV3+ (ResNet-18 at width 0.5; FlowE at output stride 8, the others
at 16) on the same views of one apartment (the RegConsist experiment's environment), for the same
number of steps; then each checkpoint is (a) fine-tuned on 5% labelled views of that apartment
(few-label segmentation, mIoU on held-out views) and (b) used frozen for label propagation on
held-out apartments (J&F). Random init is the reference. Resumable: finished pretraining runs and
readouts are reused.
"""
from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

@dataclass
class ObjectivesExperimentConfig:
    """The comparison's data, budgets and model (CPU-sized)."""

    out: str = field(default="runs/experiment_objectives", metadata={"help": "run directory"})
    methods: tuple[str, ...] = field(default=(), metadata={"help": "arms to compare, from the experiment's definition (empty = all)"})
    scene_seed: int = field(default=0, metadata={"help": "apartment of pretraining and segmentation"})
    frames: int = field(default=300, metadata={"help": "views along the exploration path"})
    width: int = field(default=128, metadata={"help": "image width"})
    height: int = field(default=96, metadata={"help": "image height"})
    eval_seeds: tuple[int, ...] = field(default=(100, 101), metadata={"help": "held-out apartments for label propagation"})
    eval_frames: int = field(default=60, metadata={"help": "frames per held-out sequence"})
    clip_len: int = field(default=20, metadata={"help": "frames per propagation clip"})
    steps: int = field(default=300, metadata={"help": "pretraining steps per method"})
    batch: int = field(default=16, metadata={"help": "batch size of every method (frame pairs, clips, view pairs; FlowE: half)"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW peak lr of the new objectives (RegConsist: SGD 0.02)"})
    finetune_steps: int = field(default=100, metadata={"help": "segmentation fine-tuning steps"})
    labels: float = field(default=0.05, metadata={"help": "fraction of labelled views for fine-tuning"})
    eval_views: int = field(default=80, metadata={"help": "held-out views of the segmentation readout"})
    width_mult: float = field(default=0.5, metadata={"help": "ResNet-18 channel multiplier"})
    seed: int = field(default=0, metadata={"help": "seed of initialisation, batches and the label split"})
    threads: int = field(default=0, metadata={"help": "torch threads (0 = default)"})

    def __post_init__(self):
        if self.steps < 1 or self.batch < 2 or self.finetune_steps < 1 or not 0 < self.labels < 1:
            raise ValueError("ObjectivesExperimentConfig: steps, finetune_steps >= 1, batch >= 2, 0 < labels < 1 needed")


CONFIG = ObjectivesExperimentConfig


def _model_cfg(cfg, output_stride: int = 16):
    from regconsist_ros.models.deeplab import DeepLabConfig

    return DeepLabConfig.small(width=cfg.width_mult, output_stride=output_stride)


def shared_budget(cfg: ObjectivesExperimentConfig, arm) -> dict:
    """The budget every arm shares (relative settings, applied where the method has them): steps,
    batch size (``batch: half`` in the arm's definition: half of it), crops and gaps, the small
    DeepLabV3+ at the method's own output stride, and AdamW methods at ``cfg.lr``."""
    from regconsist_ros.learning.runs import recipe

    base = recipe(arm.method)
    shared = {"trainer.steps": cfg.steps, "trainer.warmup": max(1, cfg.steps // 10), "trainer.seed": cfg.seed,
              "trainer.log_every": 10, "trainer.ckpt_every": 100, "trainer.device": "auto"}
    if base.trainer.optimizer == "adamw":
        shared["trainer.lr"] = cfg.lr
    shared.update({f"encoder.{k}": v for k, v in asdict(_model_cfg(cfg, base.encoder.output_stride)).items()})
    size = max(2, cfg.batch // 2) if arm.extra.get("batch") == "half" else cfg.batch
    batch = {"size": size, "height": cfg.height, "width": cfg.width, "gap_min": 1, "gap_max": 8, "repeats": 2}
    shared.update({f"batch.{k}": v for k, v in batch.items()})
    return shared


def _pretrain(arm, cfg: ObjectivesExperimentConfig, data_dir: Path, run_dir: Path) -> Path:
    from regconsist_ros.learning.pretrain import pretrain
    from regconsist_ros.models.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None and json.loads((ckpt / "config.json").read_text())["step"] >= cfg.steps:
        return ckpt
    r = pretrain(arm.run(shared_budget(cfg, arm)), str(data_dir), run_dir)
    return Path(r["checkpoint"])


def run(cfg: ObjectivesExperimentConfig, exp) -> dict:
    import torch

    from regconsist_ros.models.checkpoint import load_checkpoint
    from regconsist_ros.models.deeplab import DeepLabV3Plus
    from regconsist_ros.experiments.common import render_once, start_run
    from regconsist_ros.learning.frame_sources import load_ordered_frames
    from regconsist_ros.learning.stores import load_frames
    from regconsist_ros.readout.propagation import PropagationConfig, clips_from_frames, run_propagation
    from regconsist_ros.readout.segmentation import FinetuneConfig, run_readout
    from regconsist_ros.sim.source import SimConfig

    arms = exp.chosen(cfg.methods)
    out, t0 = start_run(cfg)
    data_dir = out / "data" / "train"
    render_once(SimConfig(seed=cfg.scene_seed, frames=cfg.frames, width=cfg.width, height=cfg.height), data_dir)
    eval_dirs = []
    for s in cfg.eval_seeds:
        d = out / "data" / f"eval_{s}"
        render_once(SimConfig(seed=s, frames=cfg.eval_frames, width=cfg.width, height=cfg.height, step=0.05), d)
        eval_dirs.append(d)
    frames, seq = load_frames(data_dir)
    clips = []
    for d in eval_dirs:
        fr = load_ordered_frames(d, progress=False)
        clips += clips_from_frames(fr.rgb, fr.instance, cfg.clip_len, d.name)
    results = {}
    for arm in arms:
        name = arm.name
        f = out / "evals" / f"{name}.json"
        if f.exists():
            results[name] = json.loads(f.read_text())
            continue
        t1 = time.perf_counter()
        if arm.method is None:
            torch.manual_seed(cfg.seed)
            model, info = DeepLabV3Plus(_model_cfg(cfg)).eval(), {"checkpoint": None}
        else:
            ckpt = _pretrain(arm, cfg, data_dir, out / "pretrain" / name)
            model, _ = load_checkpoint(ckpt)
            info = {"checkpoint": str(ckpt)}
        pretrain_s = round(time.perf_counter() - t1, 1)
        t2 = time.perf_counter()
        prop = run_propagation(model, clips, PropagationConfig(), size=None)
        ft = FinetuneConfig(labels=cfg.labels, steps=cfg.finetune_steps, seed=cfg.seed, eval_views=cfg.eval_views)
        seg = run_readout(copy.deepcopy(model), frames, seq.classes, ft)
        r = {"method": name, "miou": seg["miou"], "pixel_acc": seg["pixel_acc"],
             **{k: prop[k] for k in ("J_mean", "F_mean", "JF_mean")}, **info, "pretrain_s": pretrain_s,
             "readouts_s": round(time.perf_counter() - t2, 1)}
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(r, indent=1))
        results[name] = r
        log.info("%s: mIoU %.4f, J&F %.4f (pretrain %.0f s)", name, r["miou"], r["JF_mean"], pretrain_s)
    total = round(time.perf_counter() - t0, 1)
    (out / "results.json").write_text(json.dumps({"config": asdict(cfg), "total_s": total, "runs": results}, indent=1))
    (out / "results.md").write_text(markdown_table(results, cfg, len(clips)))
    figure(out, results, exp.floors)
    return {"out": str(out), "total_s": total,
            "table": {n: {"miou": r["miou"], "JF": r["JF_mean"]} for n, r in results.items()}}


def markdown_table(results: dict, cfg: ObjectivesExperimentConfig, clips: int, exp=None) -> str:
    lines = ["| pretraining | segmentation mIoU % | pixel acc. % | propagation J&F % | J % | F % | pretraining s |",
             "|---|---|---|---|---|---|---|"]
    for n, r in results.items():
        lines.append(f"| {n} | {100 * r['miou']:.2f} | {100 * r['pixel_acc']:.2f} | {100 * r['JF_mean']:.2f} | "
                     f"{100 * r['J_mean']:.2f} | {100 * r['F_mean']:.2f} | {r['pretrain_s']:.0f} |")
    lines += ["", f"Segmentation: {cfg.finetune_steps} fine-tuning steps on {100 * cfg.labels:.0f}% labelled views of "
              f"apartment {cfg.scene_seed} ({cfg.frames} views, {cfg.width}x{cfg.height}), mIoU on {cfg.eval_views} "
              f"held-out views. Propagation: {clips} clips of {cfg.clip_len} frames from apartments "
              f"{list(cfg.eval_seeds)}. Pretraining: {cfg.steps} steps per method, seed {cfg.seed}."]
    return "\n".join(lines) + "\n"


def figure(out: Path, results: dict, floors: list[str] = ()) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    for ax, key, title in ((axes[0], "miou", "segmentation mIoU %"), (axes[1], "JF_mean", "label propagation J&F %")):
        vals = [100 * results[n][key] for n in names]
        ax.bar(range(len(names)), vals, color=["0.6" if n in floors else "C0" for n in names])
        for n in floors:
            if n in results:
                ax.axhline(100 * results[n][key], color="0.4", ls="--", lw=1)
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = out / "objectives.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
