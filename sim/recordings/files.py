"""RGB-D recordings made of one colour file, one 16-bit depth PNG and one pose per frame (the
7-Scenes / ScanNet export and Replica layouts build on this)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from regconsist_ros.sim.depth_register import register_depth
from regconsist_ros.sim.frame import Frame, Intrinsics
from regconsist_ros.sim.recordings.base import ColorFrame, Recording, RecordingError
from regconsist_ros.sim.recordings.images import read_color_image
from regconsist_ros.sim.sequences import SequenceError, load_rgb, load_uint16


@dataclass
class DepthCamera:
    """How raw depth becomes metres in the colour camera: units per metre, the raw value meaning
    'no return' besides 0, and (when not registered) the depth camera and T_color_depth."""

    scale: float  # raw units per metre
    invalid: int | None = None  # e.g. 65535 in 7-Scenes
    intrinsics: Intrinsics | None = None  # None = registered (pixel-aligned to colour)
    T_color_depth: np.ndarray | None = None  # [4, 4]; None = identity
    fill: bool = False

    def metres(self, raw: np.ndarray) -> np.ndarray:
        """[h, w] uint16 raw -> [h, w] float32 metres, 0 = invalid."""
        d = (raw.astype(np.float64) / self.scale).astype(np.float32)
        if self.invalid is not None:
            d[raw == self.invalid] = 0.0
        return d


class FileRecording(Recording):
    """Frames from per-frame files; subclasses fill the lists and call :meth:`_finish`."""

    def __init__(self):
        super().__init__()
        self.color_paths: list[Path] = []
        self.depth_paths: list[Path] = []
        self.poses: np.ndarray | None = None  # [N, 4, 4] or None (no poses)
        self.depth_camera: DepthCamera | None = None

    def _finish(self, intrinsics: Intrinsics, depth_camera: DepthCamera) -> None:
        self.intrinsics, self.depth_camera = intrinsics, depth_camera
        self.has_poses = self.poses is not None
        if not self.color_paths:
            raise RecordingError(f"{self.source}: no frames left (dropped: {self.dropped})")
        with Image.open(self.depth_paths[0]) as im:
            size = im.size
            if im.mode not in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                raise RecordingError(f"{self.depth_paths[0]}: depth must be a 16-bit single-channel PNG, got mode {im.mode!r}")
        K_d = depth_camera.intrinsics or intrinsics
        if size != (K_d.width, K_d.height):
            raise RecordingError(
                f"{self.depth_paths[0]}: depth is {size[0]}x{size[1]} but the "
                f"{'depth camera' if depth_camera.intrinsics else 'colour image (depth taken as registered)'} is "
                f"{K_d.width}x{K_d.height}; give depth_intrinsics= (and depth_registered=false) to register it")

    def frame(self, i: int) -> Frame:
        rgb = load_rgb(self.color_paths[i])  # [H, W, 3] uint8
        K = self.intrinsics
        if rgb.shape[:2] != (K.height, K.width):
            raise SequenceError(f"{self.color_paths[i]}: image is {rgb.shape[1]}x{rgb.shape[0]} but the intrinsics are "
                                f"{K.width}x{K.height}")
        raw = load_uint16(self.depth_paths[i], "depth")  # [h, w] uint16
        dc = self.depth_camera
        depth = dc.metres(raw)
        if dc.intrinsics is not None:
            if raw.shape != (dc.intrinsics.height, dc.intrinsics.width):
                raise SequenceError(f"{self.depth_paths[i]}: depth is {raw.shape[1]}x{raw.shape[0]}, the depth camera "
                                    f"{dc.intrinsics.width}x{dc.intrinsics.height}")
            depth = register_depth(depth, dc.intrinsics, K, dc.T_color_depth, dc.fill)
        elif raw.shape != rgb.shape[:2]:
            raise SequenceError(f"{self.depth_paths[i]}: depth is {raw.shape[1]}x{raw.shape[0]} but the colour image is "
                                f"{rgb.shape[1]}x{rgb.shape[0]}")
        T = None if self.poses is None else self.poses[i].copy()
        return Frame(rgb=rgb, depth=depth, intrinsics=K, T_world_cam=T, stamp=float(self.stamps[i]),
                     meta={"rgb_path": str(self.color_paths[i]), "depth_path": str(self.depth_paths[i]), "index": i})

    def color(self, i: int) -> ColorFrame:
        return ColorFrame(read_color_image(self.color_paths[i]), float(self.stamps[i]), self.names[i])


def read_matrix(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A whitespace-separated matrix file -> float64 array of ``shape``; RecordingError naming the file."""
    try:
        v = np.array(path.read_text().split(), dtype=np.float64)
    except (OSError, ValueError) as e:
        raise RecordingError(f"{path}: cannot read a {shape[0]}x{shape[1]} matrix ({e})") from None
    if v.size != shape[0] * shape[1]:
        raise RecordingError(f"{path}: expected {shape[0]}x{shape[1]} = {shape[0] * shape[1]} numbers, got {v.size}")
    return v.reshape(shape)


def intrinsics_from_K(K: np.ndarray, width: int, height: int, source: str) -> Intrinsics:
    """3x3 (or the top-left 3x3 of a 4x4) camera matrix -> Intrinsics, no skew."""
    K = np.asarray(K, dtype=np.float64)[:3, :3]
    if abs(K[0, 1]) > 1e-9 or not np.allclose(K[2], [0, 0, 1]) or abs(K[1, 0]) > 1e-9:
        raise RecordingError(f"{source}: expected [fx 0 cx; 0 fy cy; 0 0 1], got {K.tolist()}")
    try:
        return Intrinsics(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), int(width), int(height))
    except ValueError as e:
        raise RecordingError(f"{source}: {e}") from None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, SyntaxError, ValueError) as e:
        raise RecordingError(f"{path}: unreadable image ({e})") from None
