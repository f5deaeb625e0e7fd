"""`regconsist embed` and `regconsist eval propagate|retrieve|rank|bc`: readouts of any encoder checkpoint."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from regconsist_ros.cli.common import encoder_flags, encoder_from, output_flags, settings, size_arg
from regconsist_ros.config import ConfigError, add_schema_arguments


def _vit():
    from regconsist_ros.models.vit import ViTConfig

    return ViTConfig


def cmd_embed(a: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from regconsist_ros.learning.frame_sources import load_ordered_frames
    from regconsist_ros.models.encoder import encode

    model, info = encoder_from(a, "vit", _vit())
    frames = load_ordered_frames(a.data, max_frames=a.max_frames, stride=a.stride, progress=not a.quiet)
    t0 = time.perf_counter()
    feats = encode(model, torch.from_numpy(frames.rgb), batch=a.batch, size=size_arg(a))
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

    cfg = settings(a, [("", PropagationConfig)], where="eval propagate")[""]
    model, info = encoder_from(a, "vit", _vit())
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
    result = run_propagation(model, clips, cfg, progress=not a.quiet, out_dir=a.out, size=size_arg(a))
    return {**result, **info}


def cmd_eval_retrieve(a: argparse.Namespace) -> dict:
    """Nearest-neighbour retrieval (top-k) of frozen [CLS]/pooled features; labels per frame from --label."""
    import numpy as np
    import torch

    from regconsist_ros.learning.frame_sources import load_ordered_frames
    from regconsist_ros.models.encoder import encode
    from regconsist_ros.readout.retrieval import nn_retrieval
    from regconsist_ros.readout.segmentation import VOID

    model, info = encoder_from(a, "vit", _vit())
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
        feats.append(encode(model, torch.from_numpy(fr.rgb), size=size_arg(a))["cls"])
        labels += lab
    r = nn_retrieval(torch.cat(feats), torch.tensor(labels), k=tuple(a.k))
    return {**r, "samples": len(labels), "label": a.label, "classes": len(set(labels)), **info}


def cmd_eval_rank(a: argparse.Namespace) -> dict:
    """Effective rank of the frozen dense features over the frames of --data (a dimensional-collapse check)."""
    import torch

    from regconsist_ros.learning.frame_sources import load_ordered_frames
    from regconsist_ros.models.encoder import encode
    from regconsist_ros.readout.feature_rank import effective_rank

    model, info = encoder_from(a, "vit", _vit())
    maps = []
    for spec in a.data:
        fr = load_ordered_frames(spec, max_frames=a.max_frames, stride=a.stride, progress=not a.quiet)
        maps.append(encode(model, torch.from_numpy(fr.rgb), size=size_arg(a))["patches"])
    patches = torch.cat(maps)  # [N, D, h, w]
    return {**effective_rank(patches), "frames": int(patches.shape[0]), "grid": list(patches.shape[2:]), **info}


def bc_schema():
    """The BC readout's groups: ``bc.*`` (the protocol) and ``policy.*`` (the policy and its training);
    the same sections name them in an evaluator's ``bc_config`` YAML."""
    from regconsist_ros.readout.bc import BCConfig
    from regconsist_ros.readout.bc_run import BCReadoutConfig

    return [("bc", BCReadoutConfig), ("policy", BCConfig)]


def cmd_eval_bc(a: argparse.Namespace) -> dict:
    """Behaviour-cloning readout: one task, several (--task a b), or the suite's list (--all)."""
    from regconsist_ros.readout.bc_run import resolve_encoder, run_readout
    from regconsist_ros.readout.suites import get_suite

    groups = settings(a, bc_schema() + [("encoder", _vit())], where="eval bc")
    cfg, bc = groups["bc"], groups["policy"]
    suite = get_suite(cfg.suite)
    if a.all == bool(a.task):
        raise ConfigError("give either --task NAME [NAME ...] or --all")
    tasks = list(suite.tasks) if a.all else a.task
    encoders = [resolve_encoder(e, groups["encoder"], bc.seed) for e in a.encoder]
    labels = [e.label for e in encoders]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"--encoder labels must differ, got {labels} (name them: label=path)")
    summary, results = run_readout(tasks, encoders, cfg, bc, a.out, progress=not a.quiet)
    if len(results) == 1:
        r = results[0]
        if r.get("status") != "ok":
            return {**r, "_exit": 1}
        keep = ("suite", "task", "encoder", "success", "best_success", "seeds", "seed_success", "seed_best_success",
                "best_epochs", "episodes", "demos", "demo_steps", "evaluations", "gifs", "gifs_missing", "videos",
                "seconds", "encoder_info")
        return {k: r[k] for k in keep} | {"out": str(Path(a.out) / cfg.suite / r["encoder"] / r["task"]),
                                          "resumed": bool(r.get("resumed"))}
    if not summary["encoders"]:
        return {**summary, "_exit": 1}
    return summary


BC_PROTOCOL = """\
Frozen encoder -> [CLS] (pooled features for dense encoders, the image itself for the floors) of every
frame -> flare fusion of the last 3 embeddings + proprioception (MetaWorld: 4 dims) -> BatchNorm + MLP
256x3 policy, MSE, Adam 1e-3, batch 256, --policy.epochs (100).

Protocol (CortexBench) defaults: --bc.demos 25 demonstrations per task, --bc.episodes 25 rollouts per
evaluation, an evaluation every --bc.eval_every 5 epochs and after the last (20 evaluations), horizon
500 (MetaWorld), 256 px frames centre-cropped to 224, --bc.seeds 3 policy-training seeds (policy.seed
+ 0..seeds-1) per (task, encoder). Each seed's result is cached under
<out>/<suite>/<encoder>/<task>/seed<s>/ and reused by a rerun with the same settings.

Report (--all, or several tasks/encoders): per encoder the IQM of the success rate over seeds x tasks
with a 95% stratified-bootstrap interval (over seeds), for "final" (last evaluation) and "best" (best
evaluation, CortexBench's number, biased upwards); paired differences against 'random' and the best
floor when they are in the run; results.md, summary.json, plots, and one GIF of a successful and one
of a failed episode of the final evaluation per (task, encoder).

Example: regconsist eval bc --all --encoder pixels colour random rsp=runs/x --bc.seeds 3
"""


def add_parsers(sub) -> None:
    from regconsist_ros.cli.common import config_flag
    from regconsist_ros.readout.propagation import PropagationConfig

    vit = _vit()
    em = sub.add_parser("embed", help="[CLS] (and patch) features of ordered frames from any encoder checkpoint")
    em.add_argument("--data", required=True, help="any recording (TUM, 7-Scenes/ScanNet, Replica, bag, image folder, video; "
                    "see docs/recordings.md) or 'sim:seed=..,frames=..'")
    em.add_argument("--out", required=True, type=Path, help="output .npz (cls [N, D], stamps, names[, patches [N, D, h, w]])")
    em.add_argument("--patches", action="store_true", help="also store the patch feature maps")
    em.add_argument("--batch", type=int, default=32, help="frames per forward pass")
    em.add_argument("--max-frames", type=int, default=0, help="frames read (0 = all)")
    em.add_argument("--stride", type=int, default=1, help="take every stride-th frame")
    encoder_flags(em, vit)
    em.set_defaults(fn=cmd_embed)

    ev = sub.add_parser("eval", help="readouts of an encoder").add_subparsers(dest="eval_cmd", required=True)
    pg = ev.add_parser("propagate", help="label propagation of first-frame instance masks (J and F)")
    pg.add_argument("--data", required=True, nargs="+", help="sequences with instance masks: TUM dirs or 'sim:...' specs")
    pg.add_argument("--clip-len", type=int, default=0, help="cut sequences into clips of this many frames (0 = whole)")
    pg.add_argument("--out", type=Path, default=None, help="write propagation.json and propagation.png here")
    encoder_flags(pg, vit)
    add_schema_arguments(pg, [("", PropagationConfig)])
    pg.set_defaults(fn=cmd_eval_propagate)

    rt = ev.add_parser("retrieve", help="nearest-neighbour retrieval top-k accuracy of frozen features")
    rt.add_argument("--data", required=True, nargs="+", help="ordered-frame sources (TUM dirs, folders, videos, 'sim:...')")
    rt.add_argument("--label", choices=["source", "semantic"], default="source",
                    help="a frame's label: which --data source (place) it comes from, or its dominant labelled "
                    "semantic class (indoors often one class for every frame)")
    rt.add_argument("--k", nargs="+", type=int, default=[1, 5], help="top-k values")
    rt.add_argument("--stride", type=int, default=1, help="take every stride-th frame")
    encoder_flags(rt, vit)
    rt.set_defaults(fn=cmd_eval_retrieve)

    rk = ev.add_parser("rank", help="effective rank of frozen dense features (does an encoder's feature map collapse "
                       "onto a few directions?)")
    rk.add_argument("--data", required=True, nargs="+", help="ordered-frame sources (TUM dirs, folders, videos, 'sim:...')")
    rk.add_argument("--max-frames", type=int, default=16, help="frames read per source (0 = all)")
    rk.add_argument("--stride", type=int, default=1, help="take every stride-th frame")
    encoder_flags(rk, vit)
    rk.set_defaults(fn=cmd_eval_rank)

    bcp = ev.add_parser("bc", help="behaviour-cloning readout (CortexBench protocol) in MetaWorld and other suites",
                        description=BC_PROTOCOL, formatter_class=argparse.RawDescriptionHelpFormatter)
    bcp.add_argument("--task", nargs="+", default=None, help="task name(s), e.g. button-press-topdown")
    bcp.add_argument("--all", action="store_true",
                     help="the suite's benchmark task list, aggregated (IQM over seeds x tasks, CIs, paired differences, "
                          "plots, GIFs)")
    bcp.add_argument("--encoder", nargs="+", required=True,
                     help="'random' (a ViT of --encoder.*, initialised from --policy.seed), the floors 'pixels' and "
                          "'colour' (no weights; on the --encoder.* ViT's patch grid), 'state' (ground-truth state, no "
                          "images), or checkpoint/run directories (label=path)")
    bcp.add_argument("--out", type=Path, default=Path("runs/bc"), help="results directory (resumes per task and seed)")
    config_flag(bcp)
    output_flags(bcp)
    add_schema_arguments(bcp, bc_schema() + [("encoder", vit)])
    bcp.set_defaults(fn=cmd_eval_bc)
