"""`regconsist`: one command, many subcommands. Thin: parse config dataclasses, call the core.

Every measuring subcommand accepts ``--json`` and then prints one JSON object as its last line.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from regconsist_ros.config import ConfigError, add_arguments, from_args

log = logging.getLogger("regconsist")


def _emit(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, sort_keys=True))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")


def _yaml_base(cls, path, section):
    """Config from a YAML file's section (flags given on the command line override it)."""
    if path is None:
        return None
    from regconsist_ros.config import load_yaml

    return load_yaml(cls, path, section)


# ---- sim render ----------------------------------------------------------------------------------
def cmd_sim_render(a: argparse.Namespace) -> dict:
    from tqdm import tqdm

    from sim.sequences import TumWriter
    from sim.source import SimConfig, SimSource, frames_meta

    cfg = from_args(SimConfig, a, base=_yaml_base(SimConfig, a.config, "sim"))
    if a.out.exists() and any(a.out.iterdir()) and not a.overwrite:
        raise ConfigError(f"--out {a.out} is not empty; pass --overwrite to replace the sequence there")
    t0 = time.perf_counter()
    src = SimSource(cfg)
    setup_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    with TumWriter(a.out, src.intrinsics, depth_scale=a.depth_scale, classes=src.classes,
                   meta=frames_meta(src), overwrite=a.overwrite) as w:
        for f in tqdm(src, total=len(src), desc="render", unit="frame", disable=a.quiet):
            w.write(f)
    render_s = time.perf_counter() - t1
    return {"out": str(a.out), "frames": len(src), "width": cfg.width, "height": cfg.height,
            "trajectory": cfg.trajectory, "scene": cfg.scene, "seed": cfg.seed,
            "setup_s": round(setup_s, 3), "render_fps": round(len(src) / max(render_s, 1e-9), 2),
            "depth_clipped_pixels": w.depth_clipped_pixels}


# ---- correspond ---------------------------------------------------------------------------------
def cmd_correspond(a: argparse.Namespace) -> dict:
    import numpy as np

    from regconsist_ros.registration.geometry import CorrespondenceConfig, correspond
    from regconsist_ros.registration.visualize import label_agreement
    from sim.sequences import read_tum

    cfg = from_args(CorrespondenceConfig, a)
    seq = read_tum(a.seq_dir, intrinsics=a.intrinsics, depth_scale=a.depth_scale)
    i, j = a.pair
    for k in (i, j):
        if not 0 <= k < len(seq):
            raise ConfigError(f"--pair index {k} out of range: the sequence has {len(seq)} associated frames (0..{len(seq) - 1})")
    f1, f2 = seq[i], seq[j]
    t0 = time.perf_counter()
    c = correspond(f1, f2, cfg)
    ms = (time.perf_counter() - t0) * 1000
    result = {"pairs": len(c), "overlap_iou": round(c.overlap_iou, 6), "ms": round(ms, 3), "i": i, "j": j,
              "valid1": c.valid1, "valid2": c.valid2}
    agree = label_agreement(f1, f2, c, "instance")
    if agree is not None:
        result["instance_agreement"] = round(agree, 6)
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out, uv1=c.uv1, uv2=c.uv2, overlap_iou=np.float64(c.overlap_iou),
                            pair=np.array([i, j]), stamps=np.array([f1.stamp, f2.stamp]))
        result["out"] = str(out)
    return result


# ---- bench ----------------------------------------------------------------------------------------
def cmd_bench(a: argparse.Namespace) -> dict:
    from regconsist_ros import bench

    if a.what == "regions":
        return bench.bench_regions(width=a.width, height=a.height, n=a.n, seed=a.seed)
    if a.what == "sim":
        return bench.bench_sim(width=a.width, height=a.height, n=a.n, seed=a.seed, nthreads=a.nthreads, backend=a.backend)
    return bench.bench_correspond(width=a.width, height=a.height, n=a.n, seed=a.seed, nthreads=a.nthreads)


# ---- pretrain / finetune ---------------------------------------------------------------------------
def cmd_pretrain(a: argparse.Namespace) -> dict:
    from models.deeplab import DeepLabConfig
    from models.objectives.regconsist import RegConsistConfig
    from regconsist_ros.learning.pretrain import pretrain_regconsist
    from regconsist_ros.learning.trainer import TrainerConfig
    from regconsist_ros.registration.pairs import PairSelectionConfig
    from regconsist_ros.registration.regions import RegionConfig

    if a.method != "regconsist":
        raise ConfigError(f"--method {a.method}: not implemented yet (available: regconsist)")
    return pretrain_regconsist(
        a.data, a.out, from_args(RegConsistConfig, a), from_args(DeepLabConfig, a, prefix="model_"),
        from_args(TrainerConfig, a), from_args(PairSelectionConfig, a, prefix="pair_"),
        from_args(RegionConfig, a, prefix="region_"), resume=not a.no_resume, progress=not a.quiet)


def load_encoder(init: str, model_cfg, seed: int = 0):
    """A checkpoint directory, a run directory (its latest checkpoint) or 'random' -> (model, description)."""
    import torch

    from models.checkpoint import latest_checkpoint, load_checkpoint
    from models.deeplab import DeepLabV3Plus

    if init == "random":
        torch.manual_seed(seed)
        return DeepLabV3Plus(model_cfg), {"init": "random"}
    path = Path(init)
    if not path.exists():
        raise ConfigError(f"--init {init}: no such run or checkpoint directory (or use 'random')")
    ckpt = path if (path / "model.safetensors").exists() else latest_checkpoint(path)
    if ckpt is None:
        raise ConfigError(f"--init {init}: no checkpoint under {path}/checkpoints")
    model, info = load_checkpoint(ckpt)
    return model, {"init": str(ckpt), "step": info["step"], "kind": info["kind"]}


def cmd_finetune(a: argparse.Namespace) -> dict:
    from models.deeplab import DeepLabConfig
    from regconsist_ros.learning.pretrain import load_frames
    from regconsist_ros.readout.segmentation import FinetuneConfig, run_readout

    cfg = from_args(FinetuneConfig, a)
    frames, seq = load_frames(a.data, progress=not a.quiet)
    if seq.classes is None or not seq.has_semantic:
        raise ConfigError(f"--data {a.data}: the sequence has no semantic labels (semantic/ and classes.json)")
    model, info = load_encoder(a.init, from_args(DeepLabConfig, a, prefix="model_"), seed=cfg.seed)
    result = run_readout(model, frames, seq.classes, cfg, out_dir=a.out, progress=not a.quiet)
    result.pop("confusion")  # an array; readout.json in --out keeps it
    return {**result, **info}


# ---- experiment -------------------------------------------------------------------------------------
def cmd_experiment(a: argparse.Namespace) -> dict:
    from regconsist_ros.experiments import regconsist as exp

    return exp.run(exp.ExperimentConfig(**{k: v for k, v in vars(a).items()
                                           if k in exp.ExperimentConfig.__dataclass_fields__ and v is not None}))


# ---- demo -----------------------------------------------------------------------------------------
def cmd_demo(a: argparse.Namespace) -> dict:
    from regconsist_ros.demo import DemoConfig, run_demo

    return run_demo(from_args(DemoConfig, a, base=_yaml_base(DemoConfig, a.config, "demo")))


def build_parser() -> argparse.ArgumentParser:
    from regconsist_ros.demo import DemoConfig
    from regconsist_ros.registration.geometry import CorrespondenceConfig
    from sim.source import SimConfig

    p = argparse.ArgumentParser(prog="regconsist", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="cmd", required=True)

    sim = sub.add_parser("sim", help="the embedded world").add_subparsers(dest="sim_cmd", required=True)
    r = sim.add_parser("render", help="render a sequence (TUM RGB-D layout + labels) from the embedded world or a scan")
    add_arguments(r, SimConfig)
    r.add_argument("--config", type=Path, default=None, help="YAML file whose 'sim' section sets defaults (e.g. config/sim.yaml)")
    r.add_argument("--out", required=True, type=Path, help="output sequence directory")
    r.add_argument("--depth-scale", type=float, default=5000.0, help="depth PNG units per metre (TUM: 5000)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing sequence in --out")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    r.set_defaults(fn=cmd_sim_render)

    c = sub.add_parser("correspond", help="exact pixel correspondences of one view pair of a sequence")
    c.add_argument("seq_dir", type=Path, help="TUM-layout sequence directory")
    c.add_argument("--pair", nargs=2, type=int, required=True, metavar=("I", "J"),
                   help="indices of the two frames among the associated frames, in timestamp order")
    c.add_argument("--intrinsics", default=None, help="'fx,fy,cx,cy' or a TUM camera name (overrides the sequence's)")
    c.add_argument("--depth-scale", type=float, default=None, help="depth PNG units per metre (overrides the sequence's)")
    c.add_argument("--out", default=None, help="write uv1, uv2 (pairs x 2, x = column, y = row) to this .npz")
    c.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    add_arguments(c, CorrespondenceConfig)
    c.set_defaults(fn=cmd_correspond)

    b = sub.add_parser("bench", help="benchmarks (print JSON)")
    b.add_argument("what", choices=["sim", "correspond", "regions"],
                   help="sim: frames/s of the renderer; correspond: ms per pair; regions: Cantor vs all-pairs region overlap")
    b.add_argument("--width", type=int, default=640)
    b.add_argument("--height", type=int, default=480)
    b.add_argument("--n", type=int, default=30, help="frames (sim) or pairs (correspond) to time")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--nthreads", type=int, default=1, help="renderer threads (sim), torch threads (correspond)")
    b.add_argument("--backend", choices=["auto", "raycast", "gl"], default="auto", help="renderer backend (sim)")
    b.add_argument("--json", action="store_true", default=True, help=argparse.SUPPRESS)
    b.set_defaults(fn=cmd_bench)

    from models.deeplab import DeepLabConfig
    from models.objectives.regconsist import RegConsistConfig
    from regconsist_ros.learning.trainer import TrainerConfig
    from regconsist_ros.readout.segmentation import FinetuneConfig
    from regconsist_ros.registration.pairs import PairSelectionConfig
    from regconsist_ros.registration.regions import RegionConfig

    pt = sub.add_parser("pretrain", help="self-supervised pretraining of an encoder on a sequence")
    pt.add_argument("--method", required=True, choices=["regconsist", "rsp", "mae"], help="objective")
    pt.add_argument("--data", required=True, type=Path, help="TUM-layout sequence directory")
    pt.add_argument("--out", required=True, type=Path, help="run directory (checkpoints, metrics.jsonl, run.json)")
    pt.add_argument("--no-resume", action="store_true", help="start over even if --out holds checkpoints")
    pt.add_argument("--quiet", action="store_true", help="no progress bars")
    pt.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    add_arguments(pt, RegConsistConfig)
    add_arguments(pt, DeepLabConfig, prefix="model_")
    add_arguments(pt, TrainerConfig)
    add_arguments(pt, PairSelectionConfig, prefix="pair_")
    add_arguments(pt, RegionConfig, prefix="region_")
    pt.set_defaults(fn=cmd_pretrain)

    ft = sub.add_parser("finetune", help="few-label segmentation readout: fine-tune and report mIoU")
    ft.add_argument("--init", required=True, help="run directory, checkpoint directory, or 'random'")
    ft.add_argument("--data", required=True, type=Path, help="TUM-layout sequence with semantic labels")
    ft.add_argument("--out", default=None, type=Path, help="write readout.json and a prediction figure here")
    ft.add_argument("--quiet", action="store_true", help="no progress bars")
    ft.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    add_arguments(ft, FinetuneConfig)
    add_arguments(ft, DeepLabConfig, prefix="model_")
    ft.set_defaults(fn=cmd_finetune)

    from regconsist_ros.experiments.regconsist import ExperimentConfig

    ex = sub.add_parser("experiment", help="committed experiments").add_subparsers(dest="exp", required=True)
    er = ex.add_parser("regconsist", help="RegConsist vs random init and the supervised variants (CPU scale)")
    add_arguments(er, ExperimentConfig)
    er.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    er.set_defaults(fn=cmd_experiment)

    d = sub.add_parser("demo", help="the main job on the embedded default world")
    add_arguments(d, DemoConfig)
    d.add_argument("--config", type=Path, default=None, help="YAML file whose 'demo' section sets defaults")
    d.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = a.fn(a)
    except (ConfigError, ValueError, FileNotFoundError, ImportError) as e:
        # bad input: one clear line, no traceback (use -v for one)
        if a.verbose:
            log.exception("failed")
        print(f"regconsist {a.cmd}: error: {e}", file=sys.stderr)
        return 2
    _emit(result, getattr(a, "json", False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
