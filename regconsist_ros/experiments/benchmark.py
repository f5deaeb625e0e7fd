"""The benchmark engine (``regconsist experiment benchmark``: config/experiments/benchmark.yaml).

Every encoder of a list is read out the same way, beside floors that learn nothing and a supervised
ceiling, on evaluation apartments that pretraining never sees:

1. **Worlds.** ``train_seeds`` apartments (pretraining, and the ceiling's labels), ``val_seeds``
   apartments (the propagation settings are chosen on them) and ``test_seeds`` apartments (the
   reported scores), all of the embedded world's ``world`` preset ("hard": textures shared across
   classes, lighting that changes between views, clutter, moving objects; docs/world.md).
2. **Encoders** (the definition's arms), per architecture (a ViT for the ViT methods, DeepLabV3+ for
   the dense ones): the floors ``pixels`` and ``colour`` (:mod:`regconsist_ros.models.floors`) on that
   architecture's grid, ``random`` (the architecture, randomly initialised), ``supervised`` (the
   architecture trained on the training apartments' semantic labels: the ceiling), and every method arm
   pretrained on the training apartments; all but the floors for ``seeds`` seeds.
3. **Readouts** of each frozen encoder (a ViT and its floors at the evaluation frames' size, positions
   interpolated within the trained grid, never extrapolated; DeepLabV3+ at its training size; labels
   always scored at the frames' size):
   - label propagation of first-frame instance masks (``readout.propagation``), its settings searched
     per encoder on the validation clips (``search_propagation``), J&F averaged over objects on the
     test clips (DAVIS's J&F-Mean);
   - the frozen dense linear probe (``readout.dense_probe``) in each test apartment (its labelled views
     split into probe training, validation for the weight decay, and test), mIoU averaged over the
     test apartments.
4. **Report**: ``results.json``, ``results.md`` (each encoder with its 95% bootstrap interval over
   seeds and items, and paired differences to the best floor and to random init), figures and a
   self-contained ``report.html`` (:mod:`.benchmark_report`).

Resumable: rendered worlds, pretraining runs, ceilings and every readout are files reused on a rerun.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# the propagation settings searched per encoder on the validation clips: around the RSP paper's
# (top-k 7, radius 30, queue 30, temperature 0.1), 12 of readout.propagation.SEARCH_GRID's 36 so that
# the default benchmark fits in an hour on 2 cores
SEARCH = {"topk": (5, 10), "temperature": (0.05, 0.1, 0.7), "radius": (12.0, 30.0), "queue": (30,)}


@dataclass
class BenchmarkConfig:
    out: str = field(default="runs/benchmark", metadata={"help": "run directory"})
    methods: tuple[str, ...] = field(default=(), metadata={"help": "arms to run (empty = the definition's `default` list; `all` = every arm)"})
    world: str = field(default="hard", metadata={"help": "embedded-world preset of every apartment: default or hard (docs/world.md)"})
    train_seeds: tuple[int, ...] = field(default=(1, 2, 3), metadata={"help": "apartments for pretraining and the supervised ceiling"})
    val_seeds: tuple[int, ...] = field(default=(50, 51), metadata={"help": "apartments the readout settings are chosen on"})
    test_seeds: tuple[int, ...] = field(default=(100, 101, 102), metadata={"help": "apartments the scores are reported on"})
    train_frames: int = field(default=300, metadata={"help": "frames per training trajectory"})
    train_width: int = field(default=160, metadata={"help": "training frame width"})
    train_height: int = field(default=120, metadata={"help": "training frame height"})
    eval_frames: int = field(default=80, metadata={"help": "frames per validation / test trajectory"})
    eval_width: int = field(default=256, metadata={"help": "validation / test frame width (labels are scored at this size)"})
    eval_height: int = field(default=192, metadata={"help": "validation / test frame height"})
    width: int = field(default=128, metadata={"help": "encoder training input width"})
    height: int = field(default=96, metadata={"help": "encoder training input height"})
    step: float = field(default=0.05, metadata={"help": "metres per frame of the exploration paths"})
    clip_len: int = field(default=20, metadata={"help": "frames per propagation clip"})
    seeds: int = field(default=3, metadata={"help": "pretraining seeds of every trained encoder (random init and the ceiling too)"})
    steps: int = field(default=300, metadata={"help": "pretraining steps of the ViT methods"})
    batch: int = field(default=16, metadata={"help": "frame pairs per ViT pretraining batch"})
    lr: float = field(default=1e-3, metadata={"help": "ViT pretraining peak lr (AdamW)"})
    vit_size: str = field(default="tiny", metadata={"help": "ViT width"})
    vit_depth: int = field(default=4, metadata={"help": "ViT blocks"})
    patch: int = field(default=16, metadata={"help": "ViT patch"})
    decoder_width: int = field(default=128, metadata={"help": "RSP/MAE decoder width"})
    decoder_depth: int = field(default=2, metadata={"help": "RSP/MAE decoder blocks"})
    dense_steps: int = field(default=200, metadata={"help": "pretraining steps of the DeepLabV3+ methods"})
    dense_lr: float = field(default=0.02, metadata={"help": "DeepLabV3+ pretraining peak lr of the methods that train with SGD (RegConsist)"})
    dense_adamw_lr: float = field(default=1e-3, metadata={"help": "DeepLabV3+ pretraining peak lr of the methods that train with AdamW (rotation, SimCLR, BYOL, TCN, shuffling, FlowE: the lr of `experiment objectives`)"})
    width_mult: float = field(default=0.5, metadata={"help": "ResNet-18 channel multiplier of DeepLabV3+"})
    ceiling_steps: int = field(default=1000, metadata={"help": "steps of the supervised ceiling (AdamW on every training apartment's labels; 1000 chosen on the validation apartments, docs/results/benchmark.md)"})
    ceiling_lr: float = field(default=1e-3, metadata={"help": "peak lr of the supervised ceiling"})
    ceiling_instance: float = field(default=0.0, metadata={"help": "weight of the ceiling's instance loss (supervised contrastive on its dense features, readout.ceiling): 0 = semantic labels only"})
    ceiling_jitter: float = field(default=0.0, metadata={"help": "photometric augmentation of the supervised ceiling's views (FinetuneConfig.jitter)"})
    ceiling_zoom: bool = field(default=False, metadata={"help": "zoom the ceiling's views in by up to its readout size / input size (a ViT read at 256x192 after training at 128x96: 2x; DeepLabV3+, read at its input size: never), so that it trains at the object scale it is read out at"})
    report: str = field(default="test", metadata={"help": "apartments the table is scored on: test, or val to choose settings (the ceiling's recipe) on the validation apartments without looking at the test ones"})
    probe_labels: float = field(default=0.1, metadata={"help": "fraction of a test apartment's labelled views the linear probe trains on"})
    curve_steps: tuple[int, ...] = field(default=(), metadata={"help": "fine-tuning curve: mIoU after each of these steps of one full fine-tuning run (poly, weight decay 5e-4) of every trained encoder on the first test apartment (empty = off)"})
    curve_labels: float = field(default=0.1, metadata={"help": "fraction of that apartment's labelled views the curve fine-tunes on"})
    curve_lrs: tuple[float, ...] = field(default=(), metadata={"help": "fine-tuning lrs each row chooses from (its seed-0 encoder fine-tuned for the curve's full schedule on the first validation apartment; the best final mIoU wins) before its test curves; empty = 0.01 for every row"})
    search: bool = field(default=True, metadata={"help": "search the propagation settings per encoder on the validation clips (else the paper's)"})
    threads: int = field(default=0, metadata={"help": "torch threads (0 = default)"})

    def __post_init__(self):
        for name in ("train_seeds", "val_seeds", "test_seeds"):
            setattr(self, name, tuple(int(s) for s in getattr(self, name)))
            if not getattr(self, name):
                raise ValueError(f"BenchmarkConfig.{name} must name at least one apartment")
        groups = [set(self.train_seeds), set(self.val_seeds), set(self.test_seeds)]
        if groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2]:
            raise ValueError(f"BenchmarkConfig: train {self.train_seeds}, val {self.val_seeds} and test {self.test_seeds} "
                             f"apartments must be disjoint")
        if self.report not in ("test", "val"):
            raise ValueError(f"BenchmarkConfig.report must be 'test' or 'val', got {self.report!r}")
        if self.world not in ("default", "hard"):
            raise ValueError(f"BenchmarkConfig.world must be 'default' or 'hard', got {self.world!r}")
        for name in ("seeds", "steps", "batch", "dense_steps", "ceiling_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"BenchmarkConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.clip_len < 2 or self.eval_frames < self.clip_len:
            raise ValueError(f"BenchmarkConfig: need clip_len >= 2 and eval_frames >= clip_len, got {self.clip_len}, {self.eval_frames}")
        for w, h in ((self.width, self.height), (self.eval_width, self.eval_height)):
            if h % self.patch or w % self.patch or h % 16 or w % 16:
                raise ValueError(f"BenchmarkConfig: {w}x{h} must be divisible by the patch {self.patch} and by 16")


CONFIG = BenchmarkConfig


# ------------------------------------------------------------------------------------ encoders


def vit_config(cfg: BenchmarkConfig):
    from regconsist_ros.models.vit import ViTConfig

    return ViTConfig(size=cfg.vit_size, depth=cfg.vit_depth, img_size=(cfg.height, cfg.width), patch=cfg.patch)


def dense_config(cfg: BenchmarkConfig):
    from regconsist_ros.models.deeplab import DeepLabConfig

    return DeepLabConfig.small(width=cfg.width_mult)


def architectures(cfg: BenchmarkConfig, arms) -> dict[str, object]:
    """kind -> encoder config of every architecture the method arms use (the ViT alone when none does)."""
    from regconsist_ros.models.methods import get

    kinds = {get(a.method).encoder_kind for a in arms if a.method is not None}
    kinds = kinds or {"vit"}
    table = {"vit": vit_config(cfg), "deeplabv3plus": dense_config(cfg)}
    return {k: table[k] for k in ("vit", "deeplabv3plus") if k in kinds}


def eval_size(cfg: BenchmarkConfig, kind: str) -> tuple[int, int]:
    """(H, W) an architecture's frozen features are computed at: a ViT (and the floors beside it) at the
    evaluation frames' size, its positions interpolated within the trained grid (never extrapolated),
    so that its patch grid is as fine as the labels allow; DeepLabV3+ (stride 4) at its training size."""
    return (cfg.eval_height, cfg.eval_width) if kind == "vit" else (cfg.height, cfg.width)


def role(arm) -> str:
    """floor | random | ceiling | method."""
    if arm.method is not None:
        return "method"
    if arm.extra.get("floor"):
        return "floor"
    return "ceiling" if arm.extra.get("ceiling") else "random"


def pretrain_budget(cfg: BenchmarkConfig, kind: str, seed: int) -> dict:
    """What every method arm of one architecture shares (relative settings, applied where they exist)."""
    common = {"trainer.seed": seed, "trainer.log_every": 10, "trainer.ckpt_every": 100, "trainer.warmup": 0}
    if kind == "vit":
        return {**common, "trainer.steps": cfg.steps, "trainer.lr": cfg.lr, "trainer.lr_batch": 0,
                "trainer.optimizer": "adamw", "trainer.betas": (0.9, 0.95), "trainer.weight_decay": 0.05,
                "trainer.warmup": max(1, cfg.steps // 10), "batch.size": cfg.batch,
                **{f"encoder.{k}": v for k, v in asdict(vit_config(cfg)).items()},
                "decoder_width": cfg.decoder_width, "decoder_depth": cfg.decoder_depth,
                "decoder_heads": max(1, cfg.decoder_width // 32)}
    return {**common, "trainer.steps": cfg.dense_steps, "trainer.lr": cfg.dense_lr,
            "trainer.warmup": max(1, cfg.dense_steps // 10), "batch.size": 8,
            **{f"encoder.{k}": v for k, v in asdict(dense_config(cfg)).items()}}


def method_run(arm, cfg: BenchmarkConfig, kind: str, seed: int):
    """The arm's pretraining run: its method's recipe under the shared budget, then the arm's own settings. A
    DeepLabV3+ method keeps its recipe's optimizer at that optimizer's lr (``dense_lr`` for SGD,
    ``dense_adamw_lr`` for AdamW): one lr for both gave AdamW 20x the lr it was chosen at, and every AdamW
    objective fell below the floors (docs/results/benchmark.md, "The budget bug")."""
    run = arm.run(pretrain_budget(cfg, kind, seed))
    if kind != "vit" and run.trainer.optimizer == "adamw":  # (an lr among the arm's own settings still wins)
        run = arm.run({**pretrain_budget(cfg, kind, seed), "trainer.lr": cfg.dense_adamw_lr})
    return run


def arm_prep(arm, run) -> dict:
    """The data preparation of the arm's pretraining: the defaults, with the arm's ``prep:`` settings (dotted
    root-level names such as ``regions.scale``, e.g. the Felzenszwalb settings `experiment regions` chose)."""
    from regconsist_ros.learning.pretrain import make_prep

    return make_prep(run, dict(arm.extra.get("prep") or {}), where=f"benchmark arm {arm.name} (prep)")


def _prep_tree(prep: dict) -> dict:
    from regconsist_ros.config import group_values, nest

    values = {}
    for name, c in prep.items():
        values.update(group_values(c, name))
    return json.loads(json.dumps(nest(values), default=list))


def _done(run_dir: Path, run, prep: dict | None = None) -> Path | None:
    """The finished checkpoint of ``run`` in ``run_dir``: its steps reached and its settings those of ``run``
    (a run made with other settings, e.g. another lr, is not reused: it is trained again), its data prepared
    as ``prep`` says (when given; the run's ``run.json`` records it)."""
    from regconsist_ros.models.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        return None
    saved = json.loads((ckpt / "config.json").read_text())
    same = saved.get("meta", {}).get("settings") == json.loads(json.dumps(run.tree(), default=str))
    if same and prep is not None and (run_dir / "run.json").exists():
        same = json.loads((run_dir / "run.json").read_text()).get("data_settings") == _prep_tree(prep)
    if saved["step"] >= run.trainer.steps and same:
        return ckpt
    if not same:
        log.warning("%s: pretrained with other settings than this benchmark's; training it again", run_dir)
    return None


def pretrained(arm, cfg: BenchmarkConfig, kind: str, seed: int, train_dirs: list[Path], run_dir: Path) -> Path:
    """The arm's checkpoint for ``seed`` (pretrained now unless a finished run is there)."""
    from regconsist_ros.learning.pretrain import pretrain

    run = method_run(arm, cfg, kind, seed)
    prep = arm_prep(arm, run)
    ckpt = _done(run_dir, run, prep)
    if ckpt is not None:
        return ckpt
    data = [str(d) for d in train_dirs]
    if run.spec.batch in ("view_pairs", "flow_pairs"):  # these kinds read one registered sequence
        data = data[:1]
    return Path(pretrain(run, data, run_dir, prep=prep)["checkpoint"])


def ceiling(kind: str, model_cfg, cfg: BenchmarkConfig, seed: int, train: dict, num_classes: int, path: Path,
            steps: int | None = None):
    """The supervised ceiling: the architecture trained from random init on every labelled view of the
    training apartments (AdamW, poly decay, focal loss ignoring void, plus ``cfg.ceiling_instance`` x the
    instance loss of :mod:`regconsist_ros.readout.ceiling`, photometric jitter ``cfg.ceiling_jitter``, zoom
    up to ``ceiling_zoom(cfg, kind)``) for ``steps`` (default ``cfg.ceiling_steps``). ``train``: rgb, semantic and instance (ids unique across
    apartments). Saved at ``path``; reused."""
    import torch

    from regconsist_ros.models.checkpoint import load_checkpoint, save_checkpoint
    from regconsist_ros.models.encoder import random_encoder
    from regconsist_ros.readout.ceiling import train_ceiling
    from regconsist_ros.readout.dense_probe import inner_encoder, segmentation_network
    from regconsist_ros.readout.segmentation import FinetuneConfig

    if (path / "model.safetensors").exists():
        return load_checkpoint(path)[0].eval()
    net = segmentation_network(random_encoder(kind, model_cfg, seed=seed))
    x = torch.from_numpy(train["rgb"]).permute(0, 3, 1, 2).float().div_(255.0)  # [N, 3, H, W]
    y = torch.from_numpy(train["semantic"].astype(np.int64))  # [N, H, W]
    inst = torch.from_numpy(train["instance"].astype(np.int64))  # [N, H, W]
    steps = int(steps or cfg.ceiling_steps)
    ft = FinetuneConfig(labels=0.5, steps=steps, batch=8, lr=cfg.ceiling_lr, optimizer="adamw",
                        weight_decay=5e-4, schedule="poly", warmup=max(1, steps // 20), seed=seed,
                        jitter=cfg.ceiling_jitter, zoom=ceiling_zoom(cfg, kind))
    net = train_ceiling(net, x, y, inst, ft, num_classes, instance_weight=cfg.ceiling_instance, progress=True)
    enc = inner_encoder(net).eval()
    save_checkpoint(path, enc, kind, model_cfg, step=steps,
                    meta={"benchmark": "supervised ceiling", "seed": seed, "train_views": int(x.shape[0])})
    return enc


def ceiling_zoom(cfg: BenchmarkConfig, kind: str) -> float:
    """The ceiling's largest zoom: readout size / input size when ``cfg.ceiling_zoom`` (else 1)."""
    if not cfg.ceiling_zoom:
        return 1.0
    h, w = eval_size(cfg, kind)
    return max(1.0, min(h / cfg.height, w / cfg.width))


# ------------------------------------------------------------------------------------ worlds


def render_world(cfg: BenchmarkConfig, out: Path) -> dict:
    """Render every apartment once; -> {"train": [dirs], "val": [dirs], "test": [dirs]}."""
    from regconsist_ros.experiments.common import render_once
    from regconsist_ros.sim.source import SimConfig

    dirs = {}
    for split, seeds, frames, w, h in (("train", cfg.train_seeds, cfg.train_frames, cfg.train_width, cfg.train_height),
                                       ("val", cfg.val_seeds, cfg.eval_frames, cfg.eval_width, cfg.eval_height),
                                       ("test", cfg.test_seeds, cfg.eval_frames, cfg.eval_width, cfg.eval_height)):
        dirs[split] = []
        for s in seeds:
            d = out / "data" / f"{split}_{s}"
            render_once(SimConfig(seed=s, frames=frames, width=w, height=h, trajectory="explore", step=cfg.step,
                                  world=cfg.world), d, desc=f"render {split} apartment {s}")
            dirs[split].append(d)
    return dirs


def load_views(d: Path, size: tuple[int, int] | None = None) -> dict:
    """rgb uint8 [N, H, W, 3], semantic and instance [N, H, W] of a rendered sequence (resized to
    ``size`` = (H, W) when given: area for colour, nearest for labels), and its class table."""
    import torch
    import torch.nn.functional as F

    from regconsist_ros.learning.stores import load_frames

    frames, seq = load_frames(str(d), progress=False)
    rgb = np.stack([f.rgb for f in frames])
    sem = np.stack([f.semantic for f in frames]).astype(np.int64)
    inst = np.stack([f.instance for f in frames]).astype(np.int64)
    if size is not None and rgb.shape[1:3] != tuple(size):
        t = torch.from_numpy(rgb).permute(0, 3, 1, 2).float()
        rgb = F.interpolate(t, size=size, mode="area").round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        near = lambda a: F.interpolate(torch.from_numpy(a)[:, None].float(), size=size, mode="nearest")[:, 0].long().numpy()
        sem, inst = near(sem), near(inst)
    return {"rgb": rgb, "semantic": sem, "instance": inst, "classes": seq.classes, "name": d.name}


def training_views(cfg: BenchmarkConfig, dirs: list[Path]) -> dict:
    """Every view of the training apartments at the encoders' input size: rgb, semantic, and instance ids
    made unique across apartments (apartment i's object k -> ``i * OFFSET + k``; background stays 0)."""
    parts = [load_views(d, (cfg.height, cfg.width)) for d in dirs]
    for i, p in enumerate(parts):
        if p["instance"].max() >= INSTANCE_OFFSET:
            raise ValueError(f"{dirs[i]}: instance ids reach {p['instance'].max()}, above {INSTANCE_OFFSET}")
        p["instance"] = np.where(p["instance"] > 0, p["instance"] + i * INSTANCE_OFFSET, 0)
    return {k: np.concatenate([p[k] for p in parts]) for k in ("rgb", "semantic", "instance")}


INSTANCE_OFFSET = 1 << 20


# ------------------------------------------------------------------------------------ readouts


def write_json_atomic(f: Path, obj) -> None:
    """``obj`` as JSON at ``f``: a kill while writing leaves no half file for a resumed run to fail on."""
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(f)


def read_out(model, cfg: BenchmarkConfig, val_clips: list, test_clips: list, tests: list[dict], num_classes: int,
             size: tuple[int, int]) -> dict:
    """Propagation (settings searched on ``val_clips``) and the linear probe of one frozen encoder, its
    features computed at ``size`` (labels stay at the frames' size)."""
    from regconsist_ros.readout.dense_probe import ProbeConfig, run_linear_probe
    from regconsist_ros.readout.propagation import PropagationConfig, encode_clips, run_propagation, search_propagation

    t0 = time.perf_counter()
    if cfg.search:
        chosen, table = search_propagation(model, val_clips, grid=SEARCH, size=size, progress=False)
        search = [{k: r[k] for k in ("topk", "temperature", "queue", "radius", "JF_objects", "rank")} for r in table]
    else:
        chosen, search = PropagationConfig(), []
    feats = encode_clips(model, test_clips, chosen, size=size, progress=False)
    prop = run_propagation(None, test_clips, chosen, progress=False, features=feats)
    objects = [(o["J"] + o["F"]) / 2 for c in prop["clips"] for o in c["per_object"]]
    t1 = time.perf_counter()
    probes = [run_linear_probe(model, v["rgb"], v["semantic"], num_classes, ProbeConfig(labels=cfg.probe_labels), size=size)
              for v in tests]
    return {"propagation": {"JF": prop["JF_objects"], "J": prop["J_objects"], "F": prop["F_objects"],
                            "JF_clip_mean": prop["JF_mean"], "per_object_JF": objects, "chosen": asdict(chosen),
                            "search": search, "seconds": round(t1 - t0, 1)},
            "probe": {"miou": float(np.mean([p["miou"] for p in probes])),
                      "per_apartment": [p["miou"] for p in probes],
                      "per_view_miou": [m for p in probes for m in p["per_view_miou"]],
                      "weight_decay": [p["weight_decay"] for p in probes],
                      "seconds": round(time.perf_counter() - t1, 1)},
            "features": feature_rank(model, tests, size)}  # (after the timings: neither readout's seconds include it)


RANK_VIEWS = 16  # views of the first test apartment whose dense features the effective rank is taken over


def feature_rank(model, tests: list[dict], size: tuple[int, int]) -> dict:
    """Effective rank of the frozen dense features (``readout.feature_rank``) over the first ``RANK_VIEWS``
    views of the first test apartment at the readout ``size``: near 1 when the features have collapsed."""
    import torch

    from regconsist_ros.models.encoder import encode
    from regconsist_ros.readout.feature_rank import effective_rank

    rgb = torch.from_numpy(np.ascontiguousarray(tests[0]["rgb"][:RANK_VIEWS]))  # [V, H, W, 3] uint8
    with torch.no_grad():
        patches = encode(model.eval(), rgb, size=size)["patches"]  # [V, D, h, w]
    return {**effective_rank(patches), "views": int(patches.shape[0]), "apartment": tests[0]["name"]}


def encoder_at_hand(ctx: dict, row: str, arm, kind: str, seed: int) -> bool:
    """Whether :func:`make_encoder` can build this row's encoder without training anything (floors, random
    init, a saved ceiling, a finished pretraining run): a record resumed from committed files alone has none."""
    cfg, out = ctx["cfg"], ctx["out"]
    r = role(arm)
    if r in ("floor", "random"):
        return True
    if r == "ceiling":
        return (out / "ceiling" / f"{row}_s{seed}" / "model.safetensors").exists()
    run = method_run(arm, cfg, kind, seed)
    return _done(out / "pretrain" / f"{row}_s{seed}", run, arm_prep(arm, run)) is not None


def make_encoder(ctx: dict, row: str, arm, kind: str, seed: int):
    """The frozen encoder of one (row, seed): a floor, random init, the ceiling (trained once, saved) or a
    pretrained method (checkpoint reused) -> (model, info)."""
    from regconsist_ros.experiments.latent_use import latent_use
    from regconsist_ros.learning.trainer import read_jsonl
    from regconsist_ros.models.checkpoint import load_checkpoint
    from regconsist_ros.models.encoder import load_encoder, random_encoder

    cfg, out, dirs = ctx["cfg"], ctx["out"], ctx["dirs"]
    model_cfg = ctx["archs"].get(kind) or (vit_config(cfg) if kind == "vit" else dense_config(cfg))
    r = role(arm)
    if r == "floor":
        return load_encoder(arm.extra["floor"], kind=kind, config=model_cfg)[0], {}
    if r == "random":
        return random_encoder(kind, model_cfg, seed=seed), {}
    if r == "ceiling":
        if ctx["train_views"] is None:
            ctx["train_views"] = training_views(cfg, dirs["train"])
        path = out / "ceiling" / f"{row}_s{seed}"
        steps = int(arm.extra.get("steps") or cfg.ceiling_steps)  # an arm may train its ceiling longer
        return (ceiling(kind, model_cfg, cfg, seed, ctx["train_views"], ctx["num_classes"], path, steps),
                {"checkpoint": str(path), "ceiling_steps": steps})
    run_dir = out / "pretrain" / f"{row}_s{seed}"
    ckpt = pretrained(arm, cfg, kind, seed, dirs["train"], run_dir)
    info = {"checkpoint": str(ckpt)}
    if (use := latent_use(read_jsonl(run_dir / "metrics.jsonl"))) is not None:  # RSP's latent diagnostics
        info["latent_use"] = use
    return load_checkpoint(ckpt)[0], info


def curve_dir(out: Path, cfg: BenchmarkConfig) -> Path:
    """Where the curves of these curve settings live: one folder per (steps, labels), since a poly schedule
    to 1600 steps passes 800 at another lr than one that ends there, so no curve stands for another."""
    steps = "-".join(str(s) for s in cfg.curve_steps)
    lrs = f"_lrs{'-'.join(f'{lr:g}' for lr in cfg.curve_lrs)}" if cfg.curve_lrs else ""
    return out / "curves" / f"steps{steps}_labels{cfg.curve_labels:g}{lrs}"


CURVE_LR = 0.01  # the fine-tuning lr of every row when no lrs are given to choose from


def curve_finetune_config(cfg: BenchmarkConfig, seed: int, lr: float = CURVE_LR):
    from regconsist_ros.readout.segmentation import FinetuneConfig

    return FinetuneConfig(labels=cfg.curve_labels, steps=1, batch=8, lr=lr, weight_decay=5e-4, schedule="poly",
                          warmup=10, seed=seed)


def chosen_curve_lr(ctx: dict, row: str, arm, kind: str, folder: Path) -> float:
    """The fine-tuning lr of ``row``'s curves: ``CURVE_LR``, or where ``cfg.curve_lrs`` are given, the one whose
    fine-tuning of the row's seed-0 encoder for the curve's whole schedule ends with the best mIoU on the first
    *validation* apartment (never the test one the curves are scored on). The choice, with every lr's score,
    is kept in ``folder/lr_choice/<row>.json`` and reused."""
    import copy

    from regconsist_ros.readout.dense_probe import finetune_curve

    cfg = ctx["cfg"]
    if not cfg.curve_lrs:
        return CURVE_LR
    f = folder / "lr_choice" / f"{row}.json"
    if f.exists():
        return float(json.loads(f.read_text())["lr"])
    if ctx.get("val_curve_views") is None:
        ctx["val_curve_views"] = load_views(ctx["dirs"]["val"][0], (cfg.height, cfg.width))
    views = ctx["val_curve_views"]
    model, _ = make_encoder(ctx, row, arm, kind, 0)
    scores = {}
    for lr in cfg.curve_lrs:  # one evaluation, at the end of the full schedule
        c = finetune_curve(copy.deepcopy(model), views["rgb"], views["semantic"], ctx["num_classes"],
                           curve_finetune_config(cfg, 0, lr), [max(cfg.curve_steps)])
        scores[f"{lr:g}"] = c["miou"][-1]
        log.info("%s: fine-tuning lr %g -> validation mIoU %.1f", row, lr, 100 * c["miou"][-1])
    best = max(cfg.curve_lrs, key=lambda lr: scores[f"{lr:g}"])
    write_json_atomic(f, {"row": row, "lr": best, "val_miou": scores, "apartment": ctx["dirs"]["val"][0].name,
                          "steps": max(cfg.curve_steps)})
    return float(best)


def fine_tuning_curves(ctx: dict, todo: list[tuple]) -> dict:
    """{row: [curve per seed]}: ``finetune_curve`` of every trained encoder (floors have nothing to
    fine-tune) on the first test apartment at the encoders' input size; one file per (row, seed) in
    ``curve_dir``, reused by a run with the same curve settings only."""
    from regconsist_ros.readout.dense_probe import finetune_curve

    from tqdm import tqdm

    cfg = ctx["cfg"]
    folder = curve_dir(ctx["out"], cfg)
    views = load_views(ctx["dirs"][cfg.report][0], (cfg.height, cfg.width))
    curves: dict[str, list] = {}
    trained = [t for t in todo if role(t[1]) != "floor"]
    bar = tqdm(trained, desc="fine-tuning curves", unit="curve")
    for row, arm, kind, seed in bar:
        bar.set_postfix_str(f"{row} seed {seed}")
        f = folder / f"{row}_s{seed}.json"
        if not f.exists():
            lr = chosen_curve_lr(ctx, row, arm, kind, folder)
            model, _ = make_encoder(ctx, row, arm, kind, seed)
            ft = curve_finetune_config(cfg, seed, lr)
            c = finetune_curve(model, views["rgb"], views["semantic"], ctx["num_classes"], ft, cfg.curve_steps)
            write_json_atomic(f, {"row": row, "seed": seed, **c})
        curves.setdefault(row, []).append(json.loads(f.read_text()))
    bar.close()
    return curves


def chosen_arms(cfg: BenchmarkConfig, exp) -> list:
    """The arms of ``cfg.methods`` (when empty, the definition's ``default`` list, or every arm without one;
    ``all`` = every arm), plus the references of the default list (floors, random init, the ceiling), which
    every run reads out so that any row can be set against them."""
    default = list(exp.extra.get("default") or exp.arms)
    names = list(cfg.methods) or default
    arms = exp.chosen(list(exp.arms) if names == ["all"] else names)
    refs = [a for a in exp.chosen(default) if a.method is None and a not in arms]
    return refs + arms


def jobs(cfg: BenchmarkConfig, exp) -> list[tuple]:
    """(row name, arm, kind, seed) of every encoder to read out, floors once per architecture."""
    arms = chosen_arms(cfg, exp)
    archs = architectures(cfg, arms)
    out = []
    for arm in arms:
        kinds = [arm_kind(arm)] if arm.method is not None else list(archs)
        for kind in kinds:
            # references are named by architecture whatever the pick, so that a later pick of one
            # architecture (``--methods simclr``) reuses the rows an earlier run of both read out
            row = arm.name if arm.method is not None else f"{arm.name}@{kind}"
            seeds = [0] if role(arm) == "floor" else range(cfg.seeds)
            out += [(row, arm, kind, s) for s in seeds]
    return out


def arm_kind(arm) -> str:
    from regconsist_ros.models.methods import get

    return get(arm.method).encoder_kind


# settings that change no stored result: which rows to run, threads, the optional curve
FREE = ("methods", "threads", "curve_steps", "curve_labels", "curve_lrs", "out")  # curves: one folder per setting


def check_same_settings(cfg: BenchmarkConfig) -> None:
    """A run directory is resumed only with the settings it was made with (apart from ``FREE``): reused
    readouts of other settings would be silently stale. ConfigError naming the differences otherwise."""
    from regconsist_ros.config import ConfigError

    f = Path(cfg.out) / "experiment.json"
    if not f.exists():
        return
    old = json.loads(f.read_text())
    new = json.loads(json.dumps(asdict(cfg)))
    diff = {k: (old.get(k), v) for k, v in new.items() if k not in FREE and old.get(k) != v}
    if diff:
        raise ConfigError(f"{cfg.out} holds a benchmark made with other settings "
                          f"({', '.join(f'{k}: {a} -> {b}' for k, (a, b) in diff.items())}); "
                          f"use another --out, or delete it to start afresh")


def run(cfg: BenchmarkConfig, exp) -> dict:
    from tqdm import tqdm

    from regconsist_ros.experiments.benchmark_report import write_report
    from regconsist_ros.experiments.common import start_run
    from regconsist_ros.readout.propagation import clips_from_frames

    check_same_settings(cfg)
    out, t0 = start_run(cfg)
    dirs = render_world(cfg, out)
    vals = [load_views(d) for d in dirs["val"]]
    tests = [load_views(d) for d in dirs[cfg.report]]  # report val: settings chosen and scored on validation
    classes = tests[0]["classes"]
    num_classes = len(classes)
    clips = lambda views: [c for v in views for c in clips_from_frames(v["rgb"], v["instance"], cfg.clip_len, v["name"])]
    val_clips, test_clips = clips(vals), clips(tests)
    timings = {"render_and_load_s": round(time.perf_counter() - t0, 1)}
    todo = jobs(cfg, exp)
    archs = architectures(cfg, chosen_arms(cfg, exp))
    records: list[dict] = []
    # updated by hand: iterating tqdm over the jobs shows a stale count while reused rows skip past
    bar = tqdm(total=len(todo), desc="benchmark", unit="encoder")
    ctx = {"cfg": cfg, "archs": archs, "dirs": dirs, "out": out, "num_classes": num_classes, "train_views": None}
    for row, arm, kind, seed in todo:
        f = out / "readouts" / f"{row}_s{seed}.json"
        if f.exists():
            rec = json.loads(f.read_text())
            if "features" not in rec and encoder_at_hand(ctx, row, arm, kind, seed):  # records older than the rank
                bar.set_postfix_str(f"{row} seed {seed}: feature rank")
                rec["features"] = feature_rank(make_encoder(ctx, row, arm, kind, seed)[0], tests, eval_size(cfg, kind))
                write_json_atomic(f, rec)
            records.append(rec)
            timings["readouts_reused"] = timings.get("readouts_reused", 0) + 1
            bar.update(1)
            continue
        bar.set_postfix_str(f"{row} seed {seed}")
        t1 = time.perf_counter()
        model, info = make_encoder(ctx, row, arm, kind, seed)
        made_s = round(time.perf_counter() - t1, 1)
        res = read_out(model.eval(), cfg, val_clips, test_clips, tests, num_classes, eval_size(cfg, kind))
        rec = {"row": row, "arm": arm.name, "label": arm.label, "role": role(arm), "kind": kind, "seed": seed, **info,
               "eval_size": list(eval_size(cfg, kind)), "make_s": made_s, **res}
        write_json_atomic(f, rec)
        records.append(rec)
        log.info("%s seed %d: J&F %.1f, probe mIoU %.1f", row, seed, 100 * res["propagation"]["JF"], 100 * res["probe"]["miou"])
        bar.update(1)
    bar.close()
    done = {(r["row"], r["seed"]) for r in records}  # rows of earlier runs in this directory (same settings)
    for f in sorted((out / "readouts").glob("*.json")):
        rec = json.loads(f.read_text())
        if rec.get("arm") in exp.arms and (rec["row"], rec["seed"]) not in done:
            records.append(rec)
    curves = fine_tuning_curves(ctx, todo) if cfg.curve_steps else {}
    timings["total_s"] = round(time.perf_counter() - t0, 1)
    summary = write_report(out, cfg, exp, records, timings, test_clips=len(test_clips), val_clips=len(val_clips),
                           curves=curves)
    return {"out": str(out), "timings": timings, "table": summary["table"]}
