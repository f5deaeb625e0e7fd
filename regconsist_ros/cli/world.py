"""`regconsist sim render` and `regconsist correspond`: frames and registration geometry."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from regconsist_ros.cli.common import config_flag, output_flags, settings
from regconsist_ros.config import ConfigError, add_schema_arguments


def cmd_sim_render(a: argparse.Namespace) -> dict:
    from tqdm import tqdm

    from regconsist_ros.sim.sequences import TumWriter
    from regconsist_ros.sim.source import SimConfig, SimSource, frames_meta

    cfg = settings(a, [("sim", SimConfig)], where="sim render", own_sections=True)["sim"]
    if a.out.exists() and not a.out.is_dir():
        raise ConfigError(f"--out {a.out} is a file; give a directory for the sequence")
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


def cmd_correspond(a: argparse.Namespace) -> dict:
    import numpy as np

    from regconsist_ros.registration.geometry import CorrespondenceConfig, correspond
    from regconsist_ros.registration.visualize import label_agreement
    from regconsist_ros.sim.recordings import open_recording, require_depth, require_poses

    cfg = settings(a, [("correspondence", CorrespondenceConfig)], where="correspond")["correspondence"]
    seq = open_recording(a.seq_dir, intrinsics=a.intrinsics, depth_scale=a.depth_scale)
    require_depth(seq, "correspond")
    require_poses(seq, "correspond")
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
        if out.is_dir():  # an existing directory: one file per pair inside it
            out = out / f"pair_{i}_{j}.npz"
        elif out.suffix != ".npz":
            out = out.with_name(out.name + ".npz")  # what numpy writes anyway: report that path
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out, uv1=c.uv1, uv2=c.uv2, overlap_iou=np.float64(c.overlap_iou),
                            pair=np.array([i, j]), stamps=np.array([f1.stamp, f2.stamp]))
        result["out"] = str(out)
    return result


def add_parsers(sub) -> None:
    from regconsist_ros.registration.geometry import CorrespondenceConfig
    from regconsist_ros.sim.source import SimConfig

    sim = sub.add_parser("sim", help="the embedded world").add_subparsers(dest="sim_cmd", required=True)
    r = sim.add_parser("render", help="render a sequence (TUM RGB-D layout + labels) from the embedded world or a scan")
    add_schema_arguments(r, [("sim", SimConfig)])
    config_flag(r)
    r.add_argument("--out", required=True, type=Path, help="output sequence directory")
    r.add_argument("--depth-scale", type=float, default=5000.0, help="depth PNG units per metre (TUM: 5000)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing sequence in --out")
    output_flags(r)
    r.set_defaults(fn=cmd_sim_render)

    c = sub.add_parser("correspond", help="exact pixel correspondences of one view pair of a sequence")
    c.add_argument("seq_dir", help="a recording with depth and poses (TUM, 7-Scenes/ScanNet, Replica, bag; "
                   "'PATH?key=value&...' for options; see docs/recordings.md)")
    c.add_argument("--pair", nargs=2, type=int, required=True, metavar=("I", "J"),
                   help="indices of the two frames among the associated frames, in timestamp order")
    c.add_argument("--intrinsics", default=None, help="'fx,fy,cx,cy' or a TUM camera name (overrides the sequence's)")
    c.add_argument("--depth-scale", type=float, default=None, help="depth PNG units per metre (overrides the sequence's)")
    c.add_argument("--out", default=None, help="write uv1, uv2 (pairs x 2, x = column, y = row) to this .npz ('.npz' "
                   "is appended when missing; an existing directory gets pair_I_J.npz); the path is reported as out")
    output_flags(c, quiet=False)
    add_schema_arguments(c, [("correspondence", CorrespondenceConfig)])
    c.set_defaults(fn=cmd_correspond)
