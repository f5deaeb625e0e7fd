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

    from regconsist_ros.sim.sequences import TumWriter
    from regconsist_ros.sim.source import SimConfig, SimSource, frames_meta

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
    from regconsist_ros.sim.sequences import read_tum

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

    pre = a.what == "pretrain"
    a.width = a.width if a.width is not None else (128 if pre or a.what == "bc" else 640)
    a.height = a.height if a.height is not None else (96 if pre else 480)
    a.n = a.n if a.n is not None else (10 if pre else 50 if a.what == "bc" else 30)
    a.nthreads = a.nthreads if a.nthreads is not None else (0 if pre else 1)

    if a.what == "bc":
        return bench.bench_bc(task=a.task, size=a.width, n=a.n, seed=a.seed)
    if a.what == "regions":
        return bench.bench_regions(width=a.width, height=a.height, n=a.n, seed=a.seed)
    if a.what == "transport":
        from regconsist_ros.ros.transport_bench import bench_transport

        return bench_transport(width=a.width, height=a.height, rate=a.rate, seconds=a.seconds,
                               reliability=a.reliability, depth=a.qos_depth, transport=a.transport,
                               rgbd=not a.colour_only)
    if a.what == "pretrain":
        if a.method not in ("rsp", "mae"):
            raise ConfigError(f"bench pretrain: --method must be rsp or mae, got {a.method!r}")
        return bench.bench_pretrain(method=a.method, size=a.vit_size, height=a.height, width=a.width, patch=a.patch,
                                    batch=a.batch, steps=a.n, decoder_width=a.decoder_width,
                                    decoder_depth=a.decoder_depth, device=a.device, amp=not a.no_amp,
                                    nthreads=a.nthreads)
    if a.what == "sim":
        return bench.bench_sim(width=a.width, height=a.height, n=a.n, seed=a.seed, nthreads=a.nthreads, backend=a.backend)
    return bench.bench_correspond(width=a.width, height=a.height, n=a.n, seed=a.seed, nthreads=a.nthreads)


# ---- pretrain / finetune ---------------------------------------------------------------------------
def cmd_pretrain(a: argparse.Namespace) -> dict:
    from regconsist_ros.learning.trainer import TrainerConfig, dist_rank, init_distributed_from_env

    if init_distributed_from_env():  # under torchrun: DDP, rank 0 shows progress and writes checkpoints
        a.quiet = a.quiet or dist_rank() != 0

    if a.method != "regconsist":
        return _pretrain_frames(a)
    from regconsist_ros.models.deeplab import DeepLabConfig
    from regconsist_ros.models.objectives.regconsist import RegConsistConfig
    from regconsist_ros.learning.pretrain import pretrain_regconsist
    from regconsist_ros.registration.pairs import PairSelectionConfig
    from regconsist_ros.registration.regions import RegionConfig

    if len(a.data) != 1:
        raise ConfigError(f"--method regconsist takes one TUM sequence as --data, got {len(a.data)}")
    return pretrain_regconsist(
        Path(a.data[0]), a.out, from_args(RegConsistConfig, a), from_args(DeepLabConfig, a, prefix="model_"),
        from_args(TrainerConfig, a), from_args(PairSelectionConfig, a, prefix="pair_"),
        from_args(RegionConfig, a, prefix="region_"), resume=not a.no_resume, progress=not a.quiet)


def frame_trainer_defaults(batch: int):
    """RSP/MAE optimisation defaults (paper): AdamW (0.9, 0.95), weight decay 0.05, lr 1.5e-4 x batch / 256."""
    from regconsist_ros.learning.trainer import TrainerConfig

    return TrainerConfig(optimizer="adamw", betas=(0.9, 0.95), weight_decay=0.05, lr=1.5e-4 * batch / 256)


def _pretrain_frames(a: argparse.Namespace) -> dict:
    from regconsist_ros.models.objectives.mae import MAEConfig
    from regconsist_ros.models.objectives.rsp import RSPConfig
    from regconsist_ros.models.vit import ViTConfig
    from regconsist_ros.learning.frame_pairs import FramePairConfig
    from regconsist_ros.learning.pretrain import FrameDataConfig, pretrain_frames
    from regconsist_ros.learning.trainer import TrainerConfig

    data = from_args(FrameDataConfig, a)
    if a.method not in ("rsp", "mae"):  # DeepLabV3+ objectives: AdamW 1e-3 by default
        return _pretrain_dense(a, data)
    return pretrain_frames(
        a.method, a.data, a.out, from_args(ViTConfig, a, prefix="vit_"),
        from_args(TrainerConfig, a, base=frame_trainer_defaults(data.batch)), from_args(FramePairConfig, a, prefix="pairs_"),
        data, rsp_cfg=from_args(RSPConfig, a, prefix="rsp_"), mae_cfg=from_args(MAEConfig, a, prefix="mae_"),
        resume=not a.no_resume, progress=not a.quiet)


def _pretrain_dense(a: argparse.Namespace, data) -> dict:
    """Pretext baselines, shuffling and FlowE: DeepLabV3+ encoders (--model-*), so every readout takes them."""
    from regconsist_ros.models.deeplab import DeepLabConfig
    from regconsist_ros.learning.frame_pairs import FramePairConfig
    from regconsist_ros.learning import pretrain as P
    from regconsist_ros.learning.trainer import TrainerConfig

    enc = from_args(DeepLabConfig, a, prefix="model_")
    trainer = from_args(TrainerConfig, a, base=TrainerConfig(optimizer="adamw", lr=1e-3, weight_decay=1e-4))
    progress, resume = not a.quiet, not a.no_resume
    if a.method == "flowe":
        from regconsist_ros.models.objectives.flowe import FlowEConfig

        if len(a.data) != 1:
            raise ConfigError(f"--method flowe takes one sequence as --data (a TUM RGB-D sequence unless "
                              f"--flow-source farneback), got {len(a.data)}")
        gmin = a.pairs_gap_min if a.pairs_gap_min is not None else 1
        gmax = a.pairs_gap_max if a.pairs_gap_max is not None else 8
        return P.pretrain_flowe(a.data[0], a.out, enc, trainer, data, from_args(FlowEConfig, a, prefix="flowe_"),
                                gap_min=gmin, gap_max=gmax, resume=resume, progress=progress, flow_source=a.flow_source)
    pairs = from_args(FramePairConfig, a, prefix="pairs_")
    if a.method == "shuffle":
        from regconsist_ros.models.objectives.shuffle import ShuffleConfig

        return P.pretrain_clips(a.data, a.out, enc, trainer, pairs, data, from_args(ShuffleConfig, a, prefix="shuffle_"),
                                resume=resume, progress=progress)
    from regconsist_ros.models.objectives.pretext import PRETEXT

    cfg_cls = PRETEXT[a.method][0]
    prefix = {"RotationConfig": "rotation_", "ContrastiveConfig": "contrastive_", "TCNConfig": "tcn_"}[cfg_cls.__name__]
    return P.pretrain_frames(a.method, a.data, a.out, enc, trainer, pairs, data,
                             pretext_cfg=from_args(cfg_cls, a, prefix=prefix), resume=resume, progress=progress)


def load_encoder(init: str, model_cfg, seed: int = 0):
    """A checkpoint directory, a run directory (its latest checkpoint) or 'random' (a DeepLabV3+ of
    ``model_cfg``) -> (model, description)."""
    from regconsist_ros.models.checkpoint import CheckpointError
    from regconsist_ros.models.encoder import load_encoder as load

    try:
        return load(init, kind="deeplabv3plus", config=model_cfg, seed=seed)
    except (FileNotFoundError, CheckpointError) as e:
        raise ConfigError(f"--init {init}: {e}") from None


def cmd_finetune(a: argparse.Namespace) -> dict:
    from regconsist_ros.models.deeplab import DeepLabConfig
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


# ---- embed / eval -----------------------------------------------------------------------------------
def _encoder_from(a: argparse.Namespace):
    """--ckpt CKPT|RUN|random: a checkpoint of any kind, or a random ViT built from the --vit-* flags."""
    from regconsist_ros.models.encoder import load_encoder
    from regconsist_ros.models.vit import ViTConfig

    return load_encoder(a.ckpt, kind="vit", config=from_args(ViTConfig, a, prefix="vit_"), seed=a.seed)


def _size(a) -> tuple[int, int] | str | None:
    if a.size is None:
        return "model"
    if a.size == [0, 0]:
        return None
    return tuple(a.size)


def cmd_embed(a: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from regconsist_ros.models.encoder import encode
    from regconsist_ros.learning.frame_sources import load_ordered_frames

    model, info = _encoder_from(a)
    frames = load_ordered_frames(a.data, max_frames=a.max_frames, stride=a.stride, progress=not a.quiet)
    t0 = time.perf_counter()
    feats = encode(model, torch.from_numpy(frames.rgb), batch=a.batch, size=_size(a))
    seconds = time.perf_counter() - t0
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"cls": feats["cls"].numpy(), "stamps": frames.stamps, "names": np.array(frames.names)}
    if a.patches:
        arrays["patches"] = feats["patches"].numpy()
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out)
    return {"out": str(out), "frames": len(frames), "dim": int(feats["cls"].shape[1]),
            "patch_grid": list(feats["patches"].shape[2:]), "patches_saved": bool(a.patches),
            "dropped_frames": frames.dropped, "frames_per_s": round(len(frames) / max(seconds, 1e-9), 2), **info}


def cmd_eval_propagate(a: argparse.Namespace) -> dict:
    from regconsist_ros.learning.frame_sources import load_ordered_frames
    from regconsist_ros.readout.propagation import PropagationConfig, clips_from_frames, run_propagation

    cfg = from_args(PropagationConfig, a)
    model, info = _encoder_from(a)
    clips = []
    for spec in a.data:
        fr = load_ordered_frames(spec, progress=not a.quiet)
        if fr.instance is None:
            raise ConfigError(f"--data {spec}: no instance masks (a TUM sequence with instance/ or a sim: source is needed)")
        name = Path(str(spec)).name or str(spec)
        clips += clips_from_frames(fr.rgb, fr.instance, a.clip_len, name) if a.clip_len else [
            {"name": name, "rgb": fr.rgb, "instance": fr.instance}]
    if not clips:
        raise ConfigError(f"--clip-len {a.clip_len}: longer than every sequence; no clip to evaluate")
    result = run_propagation(model, clips, cfg, progress=not a.quiet, out_dir=a.out, size=_size(a))
    return {**result, **info}


def cmd_eval_bc(a: argparse.Namespace) -> dict:
    """Behaviour-cloning readout: one task, several (--task a b), or the suite's list (--all)."""
    from regconsist_ros.models.vit import ViTConfig
    from regconsist_ros.readout.bc import BCConfig
    from regconsist_ros.readout.bc_run import BCReadoutConfig, resolve_encoder, run_readout
    from regconsist_ros.readout.suites import get_suite

    cfg = from_args(BCReadoutConfig, a)
    bc = from_args(BCConfig, a)
    suite = get_suite(cfg.suite)
    if a.all == bool(a.task):
        raise ConfigError("give either --task NAME [NAME ...] or --all")
    tasks = list(suite.tasks) if a.all else a.task
    encoders = [resolve_encoder(e, from_args(ViTConfig, a, prefix="vit_"), bc.seed) for e in a.encoder]
    labels = [e.label for e in encoders]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"--encoder labels must differ, got {labels} (name them: label=path)")
    summary, results = run_readout(tasks, encoders, cfg, bc, a.out, progress=not a.quiet)
    if len(results) == 1:
        r = results[0]
        if r.get("status") != "ok":
            return {**r, "_exit": 1}
        keep = ("suite", "task", "encoder", "success", "best_success", "best_epoch", "episodes", "demos", "demo_steps",
                "evaluations", "videos", "seconds", "encoder_info")
        return {k: r[k] for k in keep} | {"out": str(Path(a.out) / cfg.suite / r["encoder"] / r["task"]),
                                          "resumed": bool(r.get("resumed"))}
    if not summary["encoders"]:
        return {**summary, "_exit": 1}
    return summary


def cmd_eval_retrieve(a: argparse.Namespace) -> dict:
    """Nearest-neighbour retrieval (top-k) of frozen [CLS]/pooled features; labels per frame from --label."""
    import numpy as np
    import torch

    from regconsist_ros.models.encoder import encode
    from regconsist_ros.learning.frame_sources import load_ordered_frames
    from regconsist_ros.readout.retrieval import nn_retrieval
    from regconsist_ros.readout.segmentation import VOID

    model, info = _encoder_from(a)
    feats, labels = [], []
    for i, spec in enumerate(a.data):
        fr = load_ordered_frames(spec, progress=not a.quiet, stride=a.stride)
        if a.label == "semantic":
            if fr.semantic is None:
                raise ConfigError(f"--data {spec}: no semantic labels for --label semantic")
            lab = []
            for sem in fr.semantic:  # the dominant labelled class of each frame
                counts = np.bincount(sem[sem != VOID].ravel().astype(np.int64), minlength=1)
                lab.append(int(counts.argmax()) if counts.sum() else VOID)
        else:
            lab = [i] * len(fr)
        feats.append(encode(model, torch.from_numpy(fr.rgb), size=_size(a))["cls"])
        labels += lab
    r = nn_retrieval(torch.cat(feats), torch.tensor(labels), k=tuple(a.k))
    return {**r, "samples": len(labels), "label": a.label, "classes": len(set(labels)), **info}


# ---- up -----------------------------------------------------------------------------------------------
def cmd_up(a: argparse.Namespace) -> dict:
    from regconsist_ros.up import load_graph, up

    graph = load_graph(a.graph, a.graph_file, a.set or ())
    result = up(graph, duration=a.duration, grace=a.grace, domain_id=a.domain_id)
    result["_exit"] = 0 if result["ok"] else 1
    return result


# ---- experiment -------------------------------------------------------------------------------------
def cmd_experiment(a: argparse.Namespace) -> dict:
    if a.exp == "rsp":
        from regconsist_ros.experiments import rsp as exp

        return exp.run(from_args(exp.RSPExperimentConfig, a))
    if a.exp == "objectives":
        from regconsist_ros.experiments import objectives as exp

        return exp.run(from_args(exp.ObjectivesExperimentConfig, a))
    from regconsist_ros.experiments import regconsist as exp

    return exp.run(from_args(exp.ExperimentConfig, a))


# ---- demo -----------------------------------------------------------------------------------------
def cmd_demo(a: argparse.Namespace) -> dict:
    from regconsist_ros.demo import DemoConfig, run_demo

    return run_demo(from_args(DemoConfig, a, base=_yaml_base(DemoConfig, a.config, "demo")))


def build_parser() -> argparse.ArgumentParser:
    from regconsist_ros.demo import DemoConfig
    from regconsist_ros.registration.geometry import CorrespondenceConfig
    from regconsist_ros.sim.source import SimConfig

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
    b.add_argument("what", choices=["sim", "correspond", "regions", "pretrain", "transport", "bc"],
                   help="sim: frames/s of the renderer; correspond: ms per pair; regions: Cantor vs all-pairs region "
                   "overlap; pretrain: RSP/MAE training steps/s and images/s; transport: delivered fraction and "
                   "latency of images between two ROS 2 processes; bc: ms per MetaWorld frame and BC rollout step")
    b.add_argument("--task", default="hammer", help="MetaWorld task (bc)")
    b.add_argument("--width", type=int, default=None, help="image width (default 640; pretrain 128)")
    b.add_argument("--height", type=int, default=None, help="image height (default 480; pretrain 96)")
    b.add_argument("--n", type=int, default=None, help="frames (sim), pairs (correspond) or steps (pretrain) to time")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--nthreads", type=int, default=None, help="renderer threads (sim), torch threads (correspond, pretrain; 0 = all)")
    b.add_argument("--backend", choices=["auto", "raycast", "gl"], default="auto", help="renderer backend (sim)")
    b.add_argument("--method", choices=["rsp", "mae"], default="rsp", help="objective (pretrain)")
    b.add_argument("--vit-size", choices=["tiny", "small", "base"], default="tiny", help="ViT size (pretrain)")
    b.add_argument("--patch", type=int, default=16, help="ViT patch (pretrain)")
    b.add_argument("--batch", type=int, default=32, help="frame pairs per step (pretrain)")
    b.add_argument("--decoder-width", type=int, default=512, help="decoder width (pretrain)")
    b.add_argument("--decoder-depth", type=int, default=8, help="decoder blocks (pretrain)")
    b.add_argument("--device", default="auto", help="auto, cpu, cuda (pretrain)")
    b.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA (pretrain)")
    b.add_argument("--rate", type=float, default=30.0, help="messages per second (transport)")
    b.add_argument("--seconds", type=float, default=5.0, help="publishing time (transport)")
    b.add_argument("--reliability", choices=["reliable", "best_effort"], default="reliable", help="QoS (transport)")
    b.add_argument("--qos-depth", type=int, default=10, help="QoS history depth (transport)")
    b.add_argument("--transport", choices=["default", "large_data", "udpv4", "shm"], default="default",
                   help="Fast DDS builtin transports (transport)")
    b.add_argument("--colour-only", action="store_true", help="one rgb8 stream instead of colour + 16UC1 depth (transport)")
    b.add_argument("--json", action="store_true", default=True, help=argparse.SUPPRESS)
    b.set_defaults(fn=cmd_bench)

    from regconsist_ros.models.deeplab import DeepLabConfig
    from regconsist_ros.models.objectives.regconsist import RegConsistConfig
    from regconsist_ros.models.objectives.mae import MAEConfig
    from regconsist_ros.models.objectives.rsp import RSPConfig
    from regconsist_ros.models.vit import ViTConfig
    from regconsist_ros.learning.frame_pairs import FramePairConfig
    from regconsist_ros.learning.pretrain import FrameDataConfig
    from regconsist_ros.learning.trainer import TrainerConfig
    from regconsist_ros.readout.segmentation import FinetuneConfig
    from regconsist_ros.registration.pairs import PairSelectionConfig
    from regconsist_ros.registration.regions import RegionConfig

    pt = sub.add_parser("pretrain", help="self-supervised pretraining of an encoder on a sequence",
                        description="RegConsist trains a DeepLabV3+ on view pairs of one TUM RGB-D sequence "
                        "(--model-*, --pair-*, --region-* flags). RSP and MAE train a ViT (--vit-*) on frame pairs "
                        "of any ordered frames: TUM sequences, image folders, videos, or 'sim:seed=3,frames=200' "
                        "(--rsp-*, --mae-*, --pairs-* and the data flags). Ablations: --rsp-latent none|gaussian, "
                        "--rsp-separate-decoder, --no-rsp-mae.")
    from regconsist_ros.models.objectives.flowe import FlowEConfig
    from regconsist_ros.models.objectives.pretext import ContrastiveConfig, RotationConfig, TCNConfig
    from regconsist_ros.models.objectives.shuffle import ShuffleConfig
    from regconsist_ros.learning.pretrain import METHODS

    pt.add_argument("--method", required=True, choices=list(METHODS),
                    help="objective: regconsist | rsp | mae | rotation | simclr | byol | tcn (pretext baselines on frame "
                    "pairs) | shuffle (jigsaw + temporal order, --shuffle-schedule policy|uniform) | flowe (flow "
                    "equivariance on a TUM RGB-D sequence)")
    pt.add_argument("--data", required=True, nargs="+",
                    help="TUM sequence (regconsist); one or more ordered-frame sources (rsp, mae)")
    pt.add_argument("--out", required=True, type=Path, help="run directory (checkpoints, metrics.jsonl, run.json)")
    pt.add_argument("--no-resume", action="store_true", help="start over even if --out holds checkpoints")
    pt.add_argument("--quiet", action="store_true", help="no progress bars")
    pt.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    add_arguments(pt, TrainerConfig)
    add_arguments(pt, RegConsistConfig)
    add_arguments(pt, DeepLabConfig, prefix="model_")
    add_arguments(pt, PairSelectionConfig, prefix="pair_")
    add_arguments(pt, RegionConfig, prefix="region_")
    add_arguments(pt, ViTConfig, prefix="vit_")
    add_arguments(pt, RSPConfig, prefix="rsp_")
    add_arguments(pt, MAEConfig, prefix="mae_")
    add_arguments(pt, FramePairConfig, prefix="pairs_")
    add_arguments(pt, FrameDataConfig)
    add_arguments(pt, RotationConfig, prefix="rotation_")
    add_arguments(pt, ContrastiveConfig, prefix="contrastive_")
    add_arguments(pt, TCNConfig, prefix="tcn_")
    add_arguments(pt, ShuffleConfig, prefix="shuffle_")
    add_arguments(pt, FlowEConfig, prefix="flowe_")
    pt.add_argument("--flow-source", choices=["geometric", "farneback"], default="geometric",
                    help="FlowE's flow: from depth + poses of a TUM RGB-D sequence, or OpenCV optical flow of any frames")
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

    from regconsist_ros.readout.propagation import PropagationConfig

    def encoder_flags(q):
        q.add_argument("--ckpt", required=True, help="checkpoint directory, run directory (latest checkpoint) or 'random'")
        q.add_argument("--size", nargs=2, type=int, default=None, metavar=("H", "W"),
                       help="input size for the encoder (default: its training size; 0 0 = the frames' own size)")
        q.add_argument("--seed", type=int, default=0, help="seed of a random encoder")
        q.add_argument("--quiet", action="store_true", help="no progress bars")
        q.add_argument("--json", action="store_true", help="print one JSON object as the last line")
        add_arguments(q, ViTConfig, prefix="vit_")

    em = sub.add_parser("embed", help="[CLS] (and patch) features of ordered frames from any encoder checkpoint")
    em.add_argument("--data", required=True, help="TUM sequence, image folder, video file or 'sim:seed=..,frames=..'")
    em.add_argument("--out", required=True, type=Path, help="output .npz (cls [N, D], stamps, names[, patches [N, D, h, w]])")
    em.add_argument("--patches", action="store_true", help="also store the patch feature maps")
    em.add_argument("--batch", type=int, default=32, help="frames per forward pass")
    em.add_argument("--max-frames", type=int, default=0, help="frames read (0 = all)")
    em.add_argument("--stride", type=int, default=1, help="take every stride-th frame")
    encoder_flags(em)
    em.set_defaults(fn=cmd_embed)

    ev = sub.add_parser("eval", help="readouts of an encoder").add_subparsers(dest="eval_cmd", required=True)
    pg = ev.add_parser("propagate", help="label propagation of first-frame instance masks (J and F)")
    pg.add_argument("--data", required=True, nargs="+", help="sequences with instance masks: TUM dirs or 'sim:...' specs")
    pg.add_argument("--clip-len", type=int, default=0, help="cut sequences into clips of this many frames (0 = whole)")
    pg.add_argument("--out", type=Path, default=None, help="write propagation.json and propagation.png here")
    encoder_flags(pg)
    add_arguments(pg, PropagationConfig)
    pg.set_defaults(fn=cmd_eval_propagate)
    rt = ev.add_parser("retrieve", help="nearest-neighbour retrieval top-k accuracy of frozen features")
    rt.add_argument("--data", required=True, nargs="+", help="ordered-frame sources (TUM dirs, folders, videos, 'sim:...')")
    rt.add_argument("--label", choices=["source", "semantic"], default="source",
                    help="a frame's label: which --data source (place) it comes from, or its dominant labelled "
                    "semantic class (indoors often one class for every frame)")
    rt.add_argument("--k", nargs="+", type=int, default=[1, 5], help="top-k values")
    rt.add_argument("--stride", type=int, default=1, help="take every stride-th frame")
    encoder_flags(rt)
    rt.set_defaults(fn=cmd_eval_retrieve)
    from regconsist_ros.readout.bc import BCConfig
    from regconsist_ros.readout.bc_run import BCReadoutConfig

    bcp = ev.add_parser("bc", help="behaviour-cloning readout (CortexBench protocol) in MetaWorld and other suites",
                        description="Frozen encoder -> flare-fused embeddings (+ proprioception) -> BatchNorm-MLP policy "
                                    "trained on demonstrations, rolled out every --eval-every epochs.")
    bcp.add_argument("--task", nargs="+", default=None, help="task name(s), e.g. button-press-topdown")
    bcp.add_argument("--all", action="store_true", help="the suite's benchmark task list, aggregated (IQM, bootstrap CIs, plots)")
    bcp.add_argument("--encoder", nargs="+", required=True,
                     help="'random', 'state' (ground-truth state, no images), or checkpoint/run directories (label=path)")
    bcp.add_argument("--out", type=Path, default=Path("runs/bc"), help="results directory (resumes per task)")
    bcp.add_argument("--quiet", action="store_true", help="no progress bars")
    bcp.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    add_arguments(bcp, BCReadoutConfig)
    add_arguments(bcp, BCConfig)
    add_arguments(bcp, ViTConfig, prefix="vit_")
    bcp.set_defaults(fn=cmd_eval_bc)

    from regconsist_ros.experiments.regconsist import ExperimentConfig

    ex = sub.add_parser("experiment", help="committed experiments").add_subparsers(dest="exp", required=True)
    er = ex.add_parser("regconsist", help="RegConsist vs random init and the supervised variants (CPU scale)")
    add_arguments(er, ExperimentConfig)
    er.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    er.set_defaults(fn=cmd_experiment)
    from regconsist_ros.experiments.rsp import RSPExperimentConfig

    xr = ex.add_parser("rsp", help="RSP and ablations vs MAE and random init by label propagation (CPU scale)")
    add_arguments(xr, RSPExperimentConfig)
    xr.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    xr.set_defaults(fn=cmd_experiment)

    from regconsist_ros.experiments.objectives import ObjectivesExperimentConfig

    xo = ex.add_parser("objectives", help="every DeepLabV3+ objective through segmentation and label propagation (CPU scale)")
    add_arguments(xo, ObjectivesExperimentConfig)
    xo.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    xo.set_defaults(fn=cmd_experiment)

    u = sub.add_parser("up", help="start a node graph (config/graph.yaml) as processes, like a launch file")
    u.add_argument("graph", help="graph name in the graph file: sim, robot or eval")
    u.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = until Ctrl-C)")
    u.add_argument("--graph-file", default=None, help="graph definition (default: config/graph.yaml)")
    u.add_argument("--set", action="append", metavar="NODE.PARAM=VALUE", help="override a node parameter (repeatable)")
    u.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID for every node (default: inherited)")
    u.add_argument("--grace", type=float, default=60.0, help="seconds nodes get to stop before they are killed")
    u.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    u.set_defaults(fn=cmd_up)

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
    code = result.pop("_exit", 0) if isinstance(result, dict) else 0
    _emit(result, getattr(a, "json", False))
    return code


if __name__ == "__main__":
    sys.exit(main())
