"""The 7-Scenes / ScanNet export layout (also 3DMatch's sequences).

Layout of one sequence folder::

    frame-000000.color.png | .jpg   colour
    frame-000000.depth.png          16-bit depth in millimetres (0 and 65535 = no return)
    frame-000000.pose.txt           4x4 camera-to-world (T_world_cam, optical frame), 4 rows of 4 numbers
    camera-intrinsics.txt           3x3 colour camera matrix (here or in the parent folder), optional
    _info.txt                       ScanNet SensReader's header (optional): m_calibrationColorIntrinsic,
                                    m_calibrationDepthIntrinsic (4x4), m_depthShift, m_colorWidth, ...

Intrinsics: the ``intrinsics`` option, else camera-intrinsics.txt, else _info.txt, else 7-Scenes'
published default for its 640x480 Kinect (fx = fy = 585, cx = 320, cy = 240; 7-Scenes ships no
intrinsics file) with a logged warning. Depth is taken as pixel-aligned to colour when both have
one size (7-Scenes' convention); a ScanNet export with a smaller depth image (_info.txt's depth
camera) is registered to colour. Stamps: frame number / fps. A non-finite pose (ScanNet marks lost
tracking with -inf) drops the frame (``bad_pose``); a missing pose file drops it (``no_pose``); a
folder without any pose file has unknown poses.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from regconsist_ros.sim.frame import Intrinsics
from regconsist_ros.sim.poses import invert
from regconsist_ros.sim.recordings.base import (DROP_BAD_POSE, DROP_NO_DEPTH, DROP_NO_POSE, RecordingError,
                                                RecordingOptions, pose_or_none)
from regconsist_ros.sim.recordings.files import DepthCamera, FileRecording, image_size, intrinsics_from_K, read_matrix

log = logging.getLogger(__name__)

SEVEN_SCENES_K = (585.0, 585.0, 320.0, 240.0)  # fx, fy, cx, cy at 640x480 (the dataset's documentation)
DEPTH_SCALE = 1000.0  # millimetres
INVALID = 65535
_COLOR = re.compile(r"frame-(\d+)\.color\.(png|jpg|jpeg)$", re.I)


def is_7scenes(path: Path) -> bool:
    return path.is_dir() and any(_COLOR.match(p.name) for p in path.iterdir())


def _info(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        key, eq, value = line.partition("=")
        if eq:
            out[key.strip()] = value.strip()
    return out


class SevenScenes(FileRecording):
    layout = "7scenes"

    def __init__(self, root: Path, opts: RecordingOptions):
        super().__init__()
        self.root = Path(root)
        self.source = f"7-Scenes/ScanNet folder {self.root}"
        frames = sorted((int(m.group(1)), p) for p in self.root.iterdir() if (m := _COLOR.match(p.name)))
        if not frames:
            raise RecordingError(f"{self.root}: no frame-NNNNNN.color.png|jpg files")
        any_pose = any(True for _ in self.root.glob("frame-*.pose.txt"))
        dropped = {DROP_NO_DEPTH: 0, DROP_NO_POSE: 0, DROP_BAD_POSE: 0}
        stamps, poses = [], []
        for n, cpath in frames:
            stem = cpath.name[: cpath.name.index(".color.")]
            dpath = self.root / f"{stem}.depth.png"
            if not dpath.is_file():
                dropped[DROP_NO_DEPTH] += 1
                continue
            if any_pose:
                ppath = self.root / f"{stem}.pose.txt"
                if not ppath.is_file():
                    dropped[DROP_NO_POSE] += 1
                    continue
                T = pose_or_none(read_matrix(ppath, (4, 4)))
                if T is None:
                    dropped[DROP_BAD_POSE] += 1
                    continue
                poses.append(T)
            self.color_paths.append(cpath)
            self.depth_paths.append(dpath)
            self.names.append(cpath.name)
            stamps.append(n / opts.fps)
        self.stamps = np.asarray(stamps, np.float64)
        self.poses = np.asarray(poses).reshape(-1, 4, 4) if any_pose else None
        self.dropped = {k: v for k, v in dropped.items() if v}
        if not self.color_paths:
            raise RecordingError(f"{self.source}: no usable frame ({self.dropped})")
        W, H = image_size(self.color_paths[0])
        K, depth_K, T_cd, scale = self._cameras(opts, W, H)
        registered = opts.registered(depth_K is None)
        if not registered:
            if depth_K is None:
                if not opts.depth_intrinsics:
                    raise RecordingError(f"{self.source}: depth_registered=false needs depth_intrinsics='fx,fy,cx,cy'")
                dw, dh = image_size(self.depth_paths[0])
                depth_K = opts.camera(opts.depth_intrinsics, dw, dh, "depth_intrinsics")
            if opts.extrinsics:
                T_cd = opts.T_color_depth()
        else:
            depth_K = None
        self._finish(K, DepthCamera(opts.depth_scale or scale, INVALID, depth_K, T_cd, opts.register_fill))

    def _cameras(self, opts: RecordingOptions, W: int, H: int):
        """-> (colour Intrinsics, depth Intrinsics or None when registered, T_color_depth or None, depth scale)."""
        info_path = self.root / "_info.txt"
        info = _info(info_path) if info_path.is_file() else {}
        depth_K, T_cd, scale = None, None, DEPTH_SCALE
        if info:
            try:
                scale = float(info.get("m_depthShift", DEPTH_SCALE))
                if "m_calibrationDepthIntrinsic" in info:
                    dw, dh = int(info["m_depthWidth"]), int(info["m_depthHeight"])
                    Kd = np.array(info["m_calibrationDepthIntrinsic"].split(), float).reshape(4, 4)
                    if (dw, dh) != (W, H):
                        depth_K = intrinsics_from_K(Kd, dw, dh, f"{info_path} m_calibrationDepthIntrinsic")
                        eye = " ".join(map(str, np.eye(4).ravel()))
                        Ec = np.array(info.get("m_calibrationColorExtrinsic", eye).split(), float).reshape(4, 4)
                        Ed = np.array(info.get("m_calibrationDepthExtrinsic", eye).split(), float).reshape(4, 4)
                        T_cd = invert(Ec) @ Ed  # each: its camera -> the common frame
            except (KeyError, ValueError) as e:
                raise RecordingError(f"{info_path}: cannot read ({e})") from None
        if opts.intrinsics:
            return opts.camera(opts.intrinsics, W, H, "intrinsics"), depth_K, T_cd, scale
        for p in (self.root / "camera-intrinsics.txt", self.root.parent / "camera-intrinsics.txt"):
            if p.is_file():
                return intrinsics_from_K(read_matrix(p, (3, 3)), W, H, str(p)), depth_K, T_cd, scale
        if "m_calibrationColorIntrinsic" in info:
            Kc = np.array(info["m_calibrationColorIntrinsic"].split(), float).reshape(4, 4)
            return intrinsics_from_K(Kc, W, H, f"{info_path} m_calibrationColorIntrinsic"), depth_K, T_cd, scale
        if (W, H) != (640, 480):
            raise RecordingError(f"{self.source}: no camera-intrinsics.txt and the images are {W}x{H}, not 7-Scenes' "
                                 "640x480: give intrinsics='fx,fy,cx,cy'")
        log.warning("%s: no camera-intrinsics.txt: using 7-Scenes' default camera fx=fy=%g, cx=%g, cy=%g (pass "
                    "intrinsics=fx,fy,cx,cy if this is another camera)", self.root, *SEVEN_SCENES_K[1:])
        return Intrinsics(*SEVEN_SCENES_K, 640, 480), depth_K, T_cd, scale


def write_7scenes(out_dir: Path, frames, intrinsics_file: bool = True, color_ext: str = "png",
                  start: int = 0) -> Path:
    """Frames -> a 7-Scenes / ScanNet export folder (colour, mm depth with 65535 beyond range,
    camera-to-world pose text, and camera-intrinsics.txt unless ``intrinsics_file`` is False).
    For tests and for turning a sequence into that layout; frame numbers from ``start``."""
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    K = None
    for k, f in enumerate(frames):
        stem = f"frame-{start + k:06d}"
        Image.fromarray(f.rgb).save(out / f"{stem}.color.{color_ext}", **({"quality": 95} if color_ext == "jpg" else {}))
        d = np.asarray(f.depth, np.float64)
        raw = np.where(np.isfinite(d) & (d > 0), np.round(d * DEPTH_SCALE), 0)
        raw[raw > 65534] = INVALID
        Image.fromarray(raw.astype(np.uint16)).save(out / f"{stem}.depth.png")
        if f.T_world_cam is not None:
            np.savetxt(out / f"{stem}.pose.txt", f.T_world_cam, fmt="%.9f")
        K = f.intrinsics
    if intrinsics_file and K is not None:
        np.savetxt(out / "camera-intrinsics.txt", K.K, fmt="%.6f")
    return out
