"""The label-propagation engine (``regconsist experiment rsp``: config/experiments/rsp.yaml).

ViT methods and their ablations against random init, by label propagation, at CPU scale (the RSP
experiment is the counterpart of the RSP paper's Table 3, ≈ 40 min on 2 cores with its defaults):
1. Render exploration trajectories through ``train_seeds`` apartments (the pretraining stream) and
   short trajectories through held-out ``eval_seeds`` apartments, with instance masks.
2. Pretrain a small ViT on frame pairs of the training stream with every arm of the definition
   (a method and its settings): same steps, batch, optimiser, model size and data for all.
3. Propagate the first-frame instance masks of every held-out clip with each frozen encoder (and a
   random-init one): J (region IoU), F (boundary F-measure), J&F.
4. Write ``results.md``, ``results.json`` and figures (bar chart, every logged loss, the methods'
   own pictures: ``Method.figures``, e.g. RSP's predicted future frames) into the run directory.

Every stage is resumable: finished pretraining runs and evaluations are skipped when run again.
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
class PropagationExperimentConfig:
    out: str = field(default="runs/experiment_propagation", metadata={"help": "run directory"})
    methods: tuple[str, ...] = field(default=(), metadata={"help": "arms to compare, from the experiment's definition (empty = all)"})
    train_seeds: tuple[int, ...] = field(default=(1, 2, 3, 4), metadata={"help": "apartments of the pretraining stream"})
    train_frames: int = field(default=300, metadata={"help": "frames per training trajectory"})
    train_width: int = field(default=160, metadata={"help": "rendered width of training frames (crops are resized to the ViT input)"})
    train_height: int = field(default=120, metadata={"help": "rendered height of training frames"})
    eval_seeds: tuple[int, ...] = field(default=(100, 101, 102), metadata={"help": "held-out apartments for label propagation"})
    eval_frames: int = field(default=60, metadata={"help": "frames per held-out trajectory"})
    clip_len: int = field(default=20, metadata={"help": "frames per propagation clip"})
    eval_width: int = field(default=256, metadata={"help": "evaluation width (encoder input and label resolution)"})
    eval_height: int = field(default=192, metadata={"help": "evaluation height"})
    step: float = field(default=0.05, metadata={"help": "metres per frame of the trajectories"})
    vit_size: str = field(default="tiny", metadata={"help": "ViT size"})
    vit_depth: int = field(default=6, metadata={"help": "ViT blocks (CPU scale)"})
    img_width: int = field(default=128, metadata={"help": "ViT training input width"})
    img_height: int = field(default=96, metadata={"help": "ViT training input height"})
    patch: int = field(default=16, metadata={"help": "ViT patch"})
    decoder_width: int = field(default=256, metadata={"help": "decoder width (paper 512)"})
    decoder_depth: int = field(default=2, metadata={"help": "decoder blocks (paper 8)"})
    steps: int = field(default=500, metadata={"help": "pretraining steps per variant"})
    batch: int = field(default=32, metadata={"help": "frame pairs per step (repeated sampling 2)"})
    lr: float = field(default=1e-3, metadata={"help": "peak AdamW lr (the paper's 1.5e-4 x batch/256 is for 400 epochs)"})
    gap_min: int = field(default=4, metadata={"help": "smallest frame gap k"})
    gap_max: int = field(default=24, metadata={"help": "largest frame gap k"})
    seed: int = field(default=0, metadata={"help": "seed of every pretraining run and of the random encoder"})
    threads: int = field(default=0, metadata={"help": "torch threads (0 = default)"})

    def __post_init__(self):
        if self.clip_len < 2 or self.eval_frames < self.clip_len:
            raise ValueError(f"PropagationExperimentConfig needs 2 <= clip_len <= eval_frames, got {self.clip_len}, {self.eval_frames}")
        if not self.train_seeds or not self.eval_seeds or set(self.train_seeds) & set(self.eval_seeds):
            raise ValueError(f"PropagationExperimentConfig: train and eval apartments must be non-empty and disjoint, got "
                             f"{self.train_seeds} and {self.eval_seeds}")
        if self.steps < 1 or self.batch < 2 or self.batch % 2:
            raise ValueError(f"PropagationExperimentConfig: steps >= 1 and an even batch >= 2 needed, got {self.steps}, {self.batch}")


CONFIG = PropagationExperimentConfig


def _render(seed: int, frames: int, width: int, height: int, step: float, out: Path):
    """Render one exploration trajectory into a TUM sequence (skipped when an identical one exists)."""
    from regconsist_ros.experiments.common import render_once
    from regconsist_ros.sim.source import SimConfig

    render_once(SimConfig(seed=seed, frames=frames, width=width, height=height, trajectory="explore", step=step), out,
                desc=f"render apartment {seed}")


def _encoder_cfg(cfg: PropagationExperimentConfig):
    from regconsist_ros.models.vit import ViTConfig

    return ViTConfig(size=cfg.vit_size, depth=cfg.vit_depth, img_size=(cfg.img_height, cfg.img_width), patch=cfg.patch)


def shared_budget(cfg: PropagationExperimentConfig) -> dict:
    """What every arm shares (settings relative to the method; applied where the method has them): the
    ViT, the decoder size, steps, batch, gaps and AdamW at ``cfg.lr`` as given."""
    return {"trainer.steps": cfg.steps, "trainer.lr": cfg.lr, "trainer.lr_batch": 0, "trainer.optimizer": "adamw",
            "trainer.betas": (0.9, 0.95), "trainer.weight_decay": 0.05, "trainer.warmup": max(1, cfg.steps // 10),
            "trainer.seed": cfg.seed, "trainer.log_every": 10, "trainer.ckpt_every": 100,
            "batch.size": cfg.batch, "batch.gap_min": cfg.gap_min, "batch.gap_max": cfg.gap_max,
            **{f"encoder.{k}": v for k, v in asdict(_encoder_cfg(cfg)).items()},
            "decoder_width": cfg.decoder_width, "decoder_depth": cfg.decoder_depth,
            "decoder_heads": max(1, cfg.decoder_width // 32)}


def _pretrain(arm, cfg: PropagationExperimentConfig, train_dirs: list, run_dir: Path) -> Path:
    from regconsist_ros.learning.pretrain import pretrain
    from regconsist_ros.models.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None and json.loads((ckpt / "config.json").read_text())["step"] >= cfg.steps:
        return ckpt
    res = pretrain(arm.run(shared_budget(cfg)), [str(d) for d in train_dirs], run_dir)
    return Path(res["checkpoint"])



def run(cfg: PropagationExperimentConfig, exp) -> dict:
    from regconsist_ros.models.checkpoint import load_checkpoint
    from regconsist_ros.models.encoder import random_encoder
    from regconsist_ros.learning.frame_sources import load_ordered_frames
    from regconsist_ros.experiments.common import start_run
    from regconsist_ros.readout.propagation import PropagationConfig, clips_from_frames, run_propagation

    arms = exp.chosen(cfg.methods)
    out, t0 = start_run(cfg)
    train_dirs = [out / "data" / f"train_{s}" for s in cfg.train_seeds]
    eval_dirs = [out / "data" / f"eval_{s}" for s in cfg.eval_seeds]
    for s, d in zip(cfg.train_seeds, train_dirs):
        _render(s, cfg.train_frames, cfg.train_width, cfg.train_height, cfg.step, d)
    for s, d in zip(cfg.eval_seeds, eval_dirs):
        _render(s, cfg.eval_frames, cfg.eval_width, cfg.eval_height, cfg.step, d)
    clips = []
    for d in eval_dirs:
        fr = load_ordered_frames(d, progress=False)
        clips += clips_from_frames(fr.rgb, fr.instance, cfg.clip_len, d.name)
    timings = {"render_and_load_s": round(time.perf_counter() - t0, 1)}
    prop_cfg = PropagationConfig()
    size = (cfg.eval_height, cfg.eval_width)
    results = {}
    for arm in arms:
        name = arm.name
        f = out / "evals" / f"{name}.json"
        if f.exists():
            results[name] = json.loads(f.read_text())
            continue
        t1 = time.perf_counter()
        if arm.method is None:
            model, info = random_encoder("vit", _encoder_cfg(cfg), seed=cfg.seed), {"checkpoint": None}
        else:
            ckpt = _pretrain(arm, cfg, train_dirs, out / "pretrain" / name)
            model, _ = load_checkpoint(ckpt)
            info = {"checkpoint": str(ckpt)}
        pretrain_s = round(time.perf_counter() - t1, 1)
        t2 = time.perf_counter()
        r = run_propagation(model, clips, prop_cfg, out_dir=out / "evals" / name, size=size)
        r = {"method": name, **{k: r[k] for k in ("J_mean", "F_mean", "JF_mean", "clips")}, **info,
             "pretrain_s": pretrain_s, "eval_s": round(time.perf_counter() - t2, 1)}
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(r, indent=1))
        results[name] = r
        log.info("%s: J %.4f F %.4f J&F %.4f", name, r["J_mean"], r["F_mean"], r["JF_mean"])
    timings["total_s"] = round(time.perf_counter() - t0, 1)
    table = {n: {"J": r["J_mean"], "F": r["F_mean"], "JF": r["JF_mean"], "J_clip_std": float(np.std([c["J"] for c in r["clips"]])),
                 "clips": len(r["clips"])} for n, r in results.items()}
    from regconsist_ros.experiments.latent_use import latent_use
    from regconsist_ros.learning.trainer import read_jsonl

    latent = {n: latent_use(read_jsonl(out / "pretrain" / n / "metrics.jsonl")) for n in results}
    latent = {n: v for n, v in latent.items() if v is not None}
    (out / "results.json").write_text(json.dumps({"config": asdict(cfg), "timings": timings, "table": table,
                                                  "propagation": asdict(prop_cfg), "runs": results,
                                                  "latent_use": latent}, indent=1))
    (out / "results.md").write_text(markdown_table(table, cfg, exp, clips=len(clips), latent=latent))
    figures(out, cfg, exp, results)
    return {"out": str(out), "timings": timings, "table": table}


def markdown_table(table: dict, cfg: PropagationExperimentConfig, exp, clips: int, latent: dict | None = None) -> str:
    lines = [f"Label propagation of first-frame instance masks on {clips} held-out clips of {cfg.clip_len} frames "
             f"(apartments {list(cfg.eval_seeds)}, {cfg.eval_width}x{cfg.eval_height}, k-NN top-5, queue 7, radius 12). "
             f"Encoders: ViT-{cfg.vit_size} depth {cfg.vit_depth}, patch {cfg.patch}, trained at "
             f"{cfg.img_width}x{cfg.img_height} for {cfg.steps} steps of {cfg.batch} frame pairs "
             f"(gap {cfg.gap_min}-{cfg.gap_max}) from apartments {list(cfg.train_seeds)}; decoder "
             f"{cfg.decoder_width} wide, {cfg.decoder_depth} blocks. J, F and J&F in %.", "",
             "| encoder | J&F | J (mean) | F (mean) | J std over clips |", "|---|---|---|---|---|"]
    for name, r in table.items():
        lines.append(f"| {exp.arms[name].label} | {100 * r['JF']:.2f} | {100 * r['J']:.2f} | {100 * r['F']:.2f} | "
                     f"{100 * r['J_clip_std']:.2f} |")
    from regconsist_ros.experiments.latent_use import latent_markdown

    # RSP's latent diagnostics, one pretraining per arm (the benchmark's table, with one seed)
    latent_rows = [{"row": n, "label": exp.arms[n].label, "latent_use": u} for n, u in (latent or {}).items()]
    return "\n".join(lines) + "\n" + latent_markdown(latent_rows)


def figures(out: Path, cfg: PropagationExperimentConfig, exp, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from regconsist_ros.experiments.latent_use import latent_use_figure
    from regconsist_ros.learning.trainer import read_jsonl

    names = list(results)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    x = np.arange(len(names))
    for k, (key, label) in enumerate((("J_mean", "J"), ("F_mean", "F"), ("JF_mean", "J&F"))):
        ax.bar(x + (k - 1) * 0.27, [100 * results[n][key] for n in names], 0.27, label=label)
    ax.set_xticks(x, [n.replace("_", "\n", 1) for n in names], fontsize=8)
    ax.set_ylabel("%")
    ax.set_title("label propagation on held-out apartments")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "propagation_scores.png", dpi=100)
    plt.close(fig)

    runs = {d.name: read_jsonl(d / "metrics.jsonl") for d in sorted((out / "pretrain").glob("*"))}
    runs = {n: rows for n, rows in runs.items() if rows}
    skip = {"step", "loss", "lr", "grad_norm", "elapsed_s"}
    keys = sorted({k for rows in runs.values() for k in rows[0] if k not in skip and not k.startswith("diag_")})[:4]
    if keys:
        fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
        for ax, key in zip(axes[0], keys):
            for name, rows in runs.items():
                if key in rows[0]:
                    ax.plot([r["step"] for r in rows], [r[key] for r in rows], label=name)
            ax.set_title(f"pretraining: {key}")
            ax.set_xlabel("step")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "pretrain_loss.png", dpi=100)
        plt.close(fig)
    latent_use_figure(runs, out / "rsp_latent_use.png")  # RSP's diagnostics, for the runs that log them
    for name, r in results.items():
        if r.get("checkpoint") and not exp.arms[name].settings:  # the full methods, not their ablations
            method_figures(exp.arms[name], cfg, out, Path(r["checkpoint"]))


def method_figures(arm, cfg: PropagationExperimentConfig, out: Path, ckpt: Path, n: int = 4) -> list:
    """The method's own pictures (``Method.figures``, e.g. RSP's predicted future frames) of a trained
    arm on frame pairs of the first held-out apartment; [] for methods without any."""
    import torch

    from regconsist_ros.learning.frame_sources import FrameLoadConfig
    from regconsist_ros.learning.pretrain import BatchSampler
    from regconsist_ros.learning.stores import load_streams
    from regconsist_ros.models.checkpoint import load_trainer_state

    run = arm.run(shared_budget(cfg))
    if run.spec.figures is None:
        return []
    fig_run = run.replace({f"{run.method}.batch.size": n, f"{run.method}.batch.repeats": 1,
                           f"{run.method}.batch.hflip": 0.0}, only_known=True)
    obj = fig_run.build_objective()
    obj.load_state_dict(load_trainer_state(ckpt)["objective"])
    store = load_streams(str(out / "data" / f"eval_{cfg.eval_seeds[0]}"), FrameLoadConfig(), progress=False)
    with torch.no_grad():
        batch = BatchSampler(fig_run, store, obj, seed=0)(0)
    return run.spec.figures(obj.eval(), batch, out)
