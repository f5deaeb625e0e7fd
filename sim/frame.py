"""Frame and Intrinsics: the one record every source produces (world, scans, disk, Habitat, ROS)."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from regconsist_ros.sim.poses import validate_pose

# Published intrinsics of the TUM RGB-D cameras (colour, 640x480), and the ROS default
# that TUM recommends for the already-registered depth images.
TUM_CAMERAS = {
    "freiburg1": (517.3, 516.5, 318.6, 255.3),
    "freiburg2": (520.9, 521.0, 325.1, 249.7),
    "freiburg3": (535.4, 539.2, 320.1, 247.6),
    "ros_default": (525.0, 525.0, 319.5, 239.5),
}


class FrameError(ValueError):
    """A frame whose arrays or metadata are inconsistent."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics. Pixel (x = column, y = row) has its centre at integer coordinates."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self):
        for name in ("fx", "fy", "cx", "cy"):
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(float(v)):
                raise FrameError(f"Intrinsics.{name} must be a finite number, got {v!r}")
        if self.fx <= 0 or self.fy <= 0:
            raise FrameError(f"Intrinsics focal lengths must be > 0, got fx={self.fx}, fy={self.fy}")
        if int(self.width) != self.width or int(self.height) != self.height or self.width <= 0 or self.height <= 0:
            raise FrameError(f"Intrinsics size must be positive integers, got {self.width}x{self.height}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    @property
    def K(self) -> np.ndarray:
        """[3, 3] camera matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float) -> "Intrinsics":
        """Square pixels, principal point at the image centre, horizontal field of view in degrees."""
        f = 0.5 * width / math.tan(math.radians(hfov_deg) / 2)
        return cls(f, f, (width - 1) / 2, (height - 1) / 2, int(width), int(height))

    @classmethod
    def tum(cls, name: str, width: int = 640, height: int = 480) -> "Intrinsics":
        """TUM camera by name: freiburg1, freiburg2, freiburg3 or ros_default (``fr1`` etc. accepted)."""
        key = name.lower()
        if re.fullmatch(r"fr[123]", key):
            key = "freiburg" + key[2]
        if key not in TUM_CAMERAS:
            raise FrameError(f"unknown TUM camera {name!r}; choose one of {sorted(TUM_CAMERAS)}")
        native = cls(*TUM_CAMERAS[key], 640, 480)  # published for 640x480; rescale for other sizes
        return native if (width, height) == (640, 480) else native.scaled(int(width), int(height))

    @classmethod
    def parse(cls, text: str, width: int, height: int) -> "Intrinsics":
        """``"fx,fy,cx,cy"`` or a TUM camera name -> Intrinsics of the given size."""
        parts = [p for p in text.replace(" ", "").split(",") if p]
        if len(parts) == 1:
            return cls.tum(parts[0], width, height)
        if len(parts) != 4:
            raise FrameError(f"intrinsics {text!r}: expected 'fx,fy,cx,cy' or a TUM camera name")
        try:
            fx, fy, cx, cy = (float(p) for p in parts)
        except ValueError as e:
            raise FrameError(f"intrinsics {text!r}: {e}") from None
        return cls(fx, fy, cx, cy, int(width), int(height))

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """The same camera resampled to another image size."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, width, height)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("fx", "fy", "cx", "cy", "width", "height")}

    @classmethod
    def from_dict(cls, d: dict) -> "Intrinsics":
        missing = [k for k in ("fx", "fy", "cx", "cy", "width", "height") if k not in d]
        if missing:
            raise FrameError(f"intrinsics record lacks {missing}")
        return cls(float(d["fx"]), float(d["fy"]), float(d["cx"]), float(d["cy"]), int(d["width"]), int(d["height"]))


@dataclass
class Frame:
    """One RGB-D observation with its pose. All images are pixel-aligned [H, W].

    depth is z-depth along the optical axis in metres; 0 marks an invalid pixel (no return).
    semantic / instance are uint16 ids (0 = void) or None when the source has no labels.
    T_world_cam is None when the pose is unknown (a recording without poses): ``has_pose`` is then
    False, and consumers that need poses refuse such frames
    (:func:`regconsist_ros.sim.recordings.require_poses`).
    """

    rgb: np.ndarray  # [H, W, 3] uint8
    depth: np.ndarray  # [H, W] float32, metres, 0 = invalid
    intrinsics: Intrinsics
    T_world_cam: np.ndarray | None  # [4, 4] float64, optical camera frame -> world; None = pose unknown
    stamp: float = 0.0  # seconds, sensor time
    semantic: np.ndarray | None = None  # [H, W] uint16
    instance: np.ndarray | None = None  # [H, W] uint16
    frame_id: str = "camera_color_optical_frame"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        H, W = self.intrinsics.height, self.intrinsics.width
        if not isinstance(self.rgb, np.ndarray) or self.rgb.dtype != np.uint8 or self.rgb.shape != (H, W, 3):
            raise FrameError(
                f"rgb must be uint8 [{H}, {W}, 3] to match the intrinsics, got "
                f"{getattr(self.rgb, 'dtype', type(self.rgb))} {getattr(self.rgb, 'shape', '')}"
            )
        if not isinstance(self.depth, np.ndarray) or self.depth.shape != (H, W):
            raise FrameError(f"depth must be [{H}, {W}] to match the intrinsics, got {getattr(self.depth, 'shape', type(self.depth))}")
        if self.depth.dtype != np.float32:
            raise FrameError(f"depth must be float32 metres, got {self.depth.dtype} (convert raw sensor units first)")
        for name in ("semantic", "instance"):
            a = getattr(self, name)
            if a is not None and (not isinstance(a, np.ndarray) or a.shape != (H, W) or a.dtype != np.uint16):
                raise FrameError(f"{name} must be uint16 [{H}, {W}], got {getattr(a, 'dtype', type(a))} {getattr(a, 'shape', '')}")
        if self.T_world_cam is not None:
            self.T_world_cam = validate_pose(self.T_world_cam, "T_world_cam")
        if not math.isfinite(float(self.stamp)):
            raise FrameError(f"stamp must be finite, got {self.stamp}")

    @property
    def has_pose(self) -> bool:
        """False for a frame whose pose is unknown (``T_world_cam is None``)."""
        return self.T_world_cam is not None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.intrinsics.height, self.intrinsics.width
