"""`regconsist convert SRC --out DIR`: any recording layout -> a TUM-layout sequence."""
from __future__ import annotations

import argparse
from pathlib import Path

from regconsist_ros.cli.common import output_flags


def cmd_convert(a: argparse.Namespace) -> dict:
    from regconsist_ros.sim.recordings import open_recording
    from regconsist_ros.sim.recordings.convert import convert_recording

    rec = open_recording(a.src, intrinsics=a.intrinsics)
    return convert_recording(rec, a.out, depth_scale=a.depth_scale, overwrite=a.overwrite, stride=a.stride,
                             max_frames=a.max_frames, progress=not a.quiet)


def add_parsers(sub) -> None:
    c = sub.add_parser("convert", help="write any recording (7-Scenes, Replica, bags, RealSense, ...) as a TUM-layout sequence",
                       description="Reads SRC through the frame-source layer (layouts and options: docs/recordings.md) and "
                       "writes rgb/, depth/ (16-bit, --depth-scale units per metre), rgb.txt, depth.txt, groundtruth.txt "
                       "(when the poses are known), intrinsics.json; colour-only sources get rgb/ and rgb.txt. Depth is "
                       "registered to colour where the recording's is not.")
    c.add_argument("src", help="recording: a path, options as 'PATH?key=value&key=value' (quote it)")
    c.add_argument("--out", required=True, type=Path, help="output sequence directory")
    c.add_argument("--depth-scale", type=float, default=5000.0, help="depth PNG units per metre (TUM: 5000, up to 13.1 m)")
    c.add_argument("--intrinsics", default=None, help="'fx,fy,cx,cy' or a TUM camera name (overrides the recording's)")
    c.add_argument("--stride", type=int, default=1, help="take every stride-th frame")
    c.add_argument("--max-frames", type=int, default=0, help="frames written (0 = all)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing sequence in --out")
    output_flags(c)
    c.set_defaults(fn=cmd_convert)
