"""The Replica layout of NICE-SLAM / iMAP (also used by many later RGB-D SLAM papers).

Layout::

    <scene>/results/frame000000.jpg     colour
    <scene>/results/depth000000.png     16-bit depth, 6553.5 units per metre (0 = no return)
    <scene>/traj.txt                    line k: frame k's 4x4 camera-to-world, 16 numbers row-major
    <scene>/../cam_params.json          optional: {"camera": {"w", "h", "fx", "fy", "cx", "cy", "scale"}}

Intrinsics: the ``intrinsics`` option, else cam_params.json (in the scene folder or its parent),
else the camera of NICE-SLAM's Replica config (1200x680, fx = fy = 600, cx = 599.5, cy = 339.5)
when the images are 1200x680, with a logged warning. traj.txt's poses are in the optical
convention (x right, y down, z forward). Stamps: frame number / fps. Depth is rendered from the
colour camera, so it is registered.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np

from regconsist_ros.sim.frame import FrameError, Intrinsics
from regconsist_ros.sim.recordings.base import (DROP_BAD_POSE, DROP_NO_DEPTH, DROP_NO_POSE, RecordingError,
                                                RecordingOptions, pose_or_none)
from regconsist_ros.sim.recordings.files import DepthCamera, FileRecording, image_size

log = logging.getLogger(__name__)

DEPTH_SCALE = 6553.5
NICE_SLAM_CAMERA = (600.0, 600.0, 599.5, 339.5, 1200, 680)
_COLOR = re.compile(r"frame(\d+)\.(jpg|jpeg|png)$", re.I)


def is_replica(path: Path) -> bool:
    r = path / "results"
    return path.is_dir() and r.is_dir() and any(_COLOR.match(p.name) for p in r.iterdir())


def read_traj(path: Path) -> np.ndarray:
    """traj.txt -> [M, 4, 4] (16 numbers per line; blank lines skipped)."""
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            v = [float(x) for x in line.split()]
        except ValueError:
            raise RecordingError(f"{path}:{lineno}: pose values must be numbers") from None
        if len(v) != 16:
            raise RecordingError(f"{path}:{lineno}: expected 16 numbers (a flattened 4x4), got {len(v)}")
        rows.append(v)
    return np.asarray(rows, np.float64).reshape(-1, 4, 4)


def _cam_params(root: Path) -> tuple[Path, dict] | None:
    for p in (root / "cam_params.json", root.parent / "cam_params.json"):
        if p.is_file():
            try:
                d = json.loads(p.read_text())
            except (OSError, ValueError) as e:
                raise RecordingError(f"{p}: cannot read JSON ({e})") from None
            cam = d.get("camera", d) if isinstance(d, dict) else None
            if not isinstance(cam, dict):
                raise RecordingError(f"{p}: expected {{'camera': {{'w', 'h', 'fx', 'fy', 'cx', 'cy'}}}}")
            return p, cam
    return None


class Replica(FileRecording):
    layout = "replica"

    def __init__(self, root: Path, opts: RecordingOptions):
        super().__init__()
        self.root = Path(root)
        self.source = f"Replica folder {self.root}"
        res = self.root / "results"
        frames = sorted((int(m.group(1)), p) for p in res.iterdir() if (m := _COLOR.match(p.name)))
        traj_path = self.root / "traj.txt"
        traj = read_traj(traj_path) if traj_path.is_file() else None
        if traj is None:
            log.warning("%s: no traj.txt: the poses are unknown", self.root)
        dropped = {DROP_NO_DEPTH: 0, DROP_NO_POSE: 0, DROP_BAD_POSE: 0}
        stamps, poses = [], []
        for n, cpath in frames:
            dpath = res / f"depth{cpath.stem[len('frame'):]}.png"  # same digits as the colour file
            if not dpath.is_file():
                dropped[DROP_NO_DEPTH] += 1
                continue
            if traj is not None:
                if n >= len(traj):
                    dropped[DROP_NO_POSE] += 1
                    continue
                T = pose_or_none(traj[n])
                if T is None:
                    dropped[DROP_BAD_POSE] += 1
                    continue
                poses.append(T)
            self.color_paths.append(cpath)
            self.depth_paths.append(dpath)
            self.names.append(f"results/{cpath.name}")
            stamps.append(n / opts.fps)
        self.stamps = np.asarray(stamps, np.float64)
        self.poses = None if traj is None else np.asarray(poses).reshape(-1, 4, 4)
        self.dropped = {k: v for k, v in dropped.items() if v}
        if not self.color_paths:
            raise RecordingError(f"{self.source}: no usable frame in {res} ({self.dropped or 'no frameNNNNNN images'})")
        W, H = image_size(self.color_paths[0])
        scale = DEPTH_SCALE
        if opts.intrinsics:
            K = opts.camera(opts.intrinsics, W, H, "intrinsics")
        elif (found := _cam_params(self.root)) is not None:
            p, cam = found
            try:
                K = Intrinsics(float(cam["fx"]), float(cam["fy"]), float(cam["cx"]), float(cam["cy"]), int(cam["w"]), int(cam["h"]))
                scale = float(cam.get("scale", DEPTH_SCALE))
            except (KeyError, TypeError, ValueError, FrameError) as e:
                raise RecordingError(f"{p}: invalid camera ({e})") from None
            if (K.width, K.height) != (W, H):
                raise RecordingError(f"{p}: camera is {K.width}x{K.height} but {self.color_paths[0]} is {W}x{H}")
        elif (W, H) == NICE_SLAM_CAMERA[4:]:
            log.warning("%s: no cam_params.json: using NICE-SLAM's Replica camera fx=fy=%g, cx=%g, cy=%g (pass "
                        "intrinsics=fx,fy,cx,cy if this is another camera)", self.root, *NICE_SLAM_CAMERA[1:4])
            K = Intrinsics(*NICE_SLAM_CAMERA)
        else:
            raise RecordingError(f"{self.source}: no cam_params.json and the images are {W}x{H}, not Replica's "
                                 "1200x680: give intrinsics='fx,fy,cx,cy'")
        if not opts.registered(True):
            raise RecordingError(f"{self.source}: Replica depth is rendered from the colour camera (registered); "
                                 "depth_registered=false does not apply")
        self._finish(K, DepthCamera(opts.depth_scale or scale))


def write_replica(out_dir: Path, frames, cam_params: bool = True) -> Path:
    """Frames -> a Replica (NICE-SLAM) scene folder: results/frameNNNNNN.jpg, depthNNNNNN.png
    (6553.5 per metre), traj.txt, and cam_params.json unless ``cam_params`` is False. For tests."""
    from PIL import Image

    out = Path(out_dir)
    (out / "results").mkdir(parents=True, exist_ok=True)
    lines, K = [], None
    for k, f in enumerate(frames):
        Image.fromarray(f.rgb).save(out / "results" / f"frame{k:06d}.jpg", quality=95)
        d = np.asarray(f.depth, np.float64)
        raw = np.where(np.isfinite(d) & (d > 0), np.round(d * DEPTH_SCALE), 0)
        raw[raw > 65535] = 0
        Image.fromarray(raw.astype(np.uint16)).save(out / "results" / f"depth{k:06d}.png")
        lines.append(" ".join(f"{v:.9f}" for v in f.T_world_cam.ravel()))
        K = f.intrinsics
    (out / "traj.txt").write_text("\n".join(lines) + "\n")
    if cam_params and K is not None:
        (out / "cam_params.json").write_text(json.dumps({"camera": {
            "w": K.width, "h": K.height, "fx": K.fx, "fy": K.fy, "cx": K.cx, "cy": K.cy, "scale": DEPTH_SCALE}}))
    return out
