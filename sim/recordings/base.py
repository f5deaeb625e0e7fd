"""What every recording reader offers: :class:`Recording`, its options and its errors.

A recording is an ordered, indexable source of frames on disk (a TUM sequence, a 7-Scenes folder,
a bag, ...). ``rec[i]`` is a :class:`~regconsist_ros.sim.frame.Frame` (colour, metric depth
registered to colour, intrinsics, pose or None when the recording has no poses);
``rec.iter_color()`` yields the colour images alone (what video pretraining needs), which also
works for colour-only recordings (image folders, videos). Bad frames are skipped and counted by
reason (:class:`FrameDrop`), never replaced by another one.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterator

import numpy as np

from regconsist_ros.sim.frame import Frame, FrameError, Intrinsics
from regconsist_ros.sim.poses import PoseError, pose_from_tq, validate_pose
from regconsist_ros.sim.sequences import SequenceError

log = logging.getLogger(__name__)

# Drop reasons shared by the readers (each reader may add its own).
DROP_UNREADABLE = "unreadable"  # an image that cannot be opened or decoded
DROP_NOT_COLOUR = "not_colour"  # a single-channel or 16-bit image offered as a colour frame
DROP_UNSUPPORTED = "unsupported_mode"  # a pixel format without a sensible 8-bit RGB conversion
DROP_DECODE = "decode_error"  # video packets / bag messages that fail to decode
DROP_NO_DEPTH = "no_depth"
DROP_NO_POSE = "no_pose"
DROP_BAD_POSE = "bad_pose"

POSE_FUTURE = ("estimate them by RGB-D odometry (pose_source: odometry): append '?poses=odometry' to the data spec "
               "(quoted, e.g. 'DIR?poses=odometry'; docs/odometry.md)")


class RecordingError(SequenceError):
    """A recording that cannot be read as asked; the message names the file or the option."""


class RecordingNotFound(RecordingError, FileNotFoundError):
    """The path of a data spec does not exist (both a RecordingError and a FileNotFoundError)."""


class PoseUnknownError(RecordingError):
    """A consumer that needs camera poses was given a recording without them."""


class FrameDrop(Exception):
    """One frame of a recording skipped for ``reason`` (a drop-counter key); ``detail`` says why in words."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class ColorFrame:
    """A colour image of a recording with its time and name (labels when the recording has them)."""

    rgb: np.ndarray  # [H, W, 3] uint8
    stamp: float  # seconds
    name: str  # file name, "clip.mp4#12", "bag#3", ...
    instance: np.ndarray | None = None  # [H, W] uint16
    semantic: np.ndarray | None = None  # [H, W] uint16


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


@dataclass
class RecordingOptions:
    """How a recording is read. Given as ``PATH?key=value&key=value`` in a data spec (or as keyword
    arguments of :func:`regconsist_ros.sim.recordings.open_recording`); "" / 0 = the layout's default."""

    layout: str = field(default="auto", metadata={"help": "auto (detect), tum, 7scenes, replica, images, video, rosbag, realsense"})
    intrinsics: str = field(default="", metadata={"help": "colour camera 'fx,fy,cx,cy' or a TUM camera name (overrides the recording's)"})
    depth_intrinsics: str = field(default="", metadata={"help": "depth camera 'fx,fy,cx,cy' when depth is not registered and the recording lacks it"})
    depth_scale: float = field(default=0.0, metadata={"help": "depth PNG units per metre (0 = the layout's: TUM 5000, 7-Scenes 1000, Replica 6553.5)"})
    depth_registered: str = field(default="auto", metadata={"help": "true: depth is pixel-aligned to colour; false: register it (two intrinsics + extrinsics); auto: the layout's"})
    extrinsics: str = field(default="", metadata={"help": "T_color_depth 'x,y,z,qx,qy,qz,qw' (depth optical frame -> colour optical frame, metres) for registration; '' = the recording's, else identity"})
    register_fill: bool = field(default=False, metadata={"help": "registration fills each depth pixel's footprint (depth_image_proc fill_upsampling_holes), not one pixel"})
    max_dt: float = field(default=0.02, metadata={"help": "association window (s) between colour, depth and pose"})
    fps: float = field(default=30.0, metadata={"help": "frame rate giving stamps (index / fps) to layouts without time"})
    color_topic: str = field(default="", metadata={"help": "bag colour image topic"})
    depth_topic: str = field(default="", metadata={"help": "bag depth image topic"})
    color_info_topic: str = field(default="", metadata={"help": "bag colour camera_info topic"})
    depth_info_topic: str = field(default="", metadata={"help": "bag depth camera_info topic (depth_registered=false)"})
    pose_topic: str = field(default="", metadata={"help": "bag geometry_msgs/PoseStamped topic ('none' = no poses)"})
    depth_unit: float = field(default=0.0, metadata={"help": "metres per 16-bit depth unit in a bag (0 = 0.001, or the RealSense bag's Depth Units)"})
    poses: str = field(default="recording", metadata={"help": "recording: the recording's poses (or none); odometry: estimated by RGB-D odometry for every frame (odometry.<field>=value options set OdometryConfig); auto: odometry only when the recording has none"})

    def __post_init__(self):
        from regconsist_ros.sim.recordings import LAYOUTS

        if self.layout not in ("auto",) + tuple(LAYOUTS):
            raise RecordingError(f"layout={self.layout!r}: choose auto or one of {', '.join(LAYOUTS)}")
        if self.depth_registered not in ("auto", "true", "false"):
            raise RecordingError(f"depth_registered={self.depth_registered!r}: choose auto, true or false")
        for name in ("depth_scale", "depth_unit"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise RecordingError(f"{name}={v!r}: must be a positive number (0 = the layout's default)")
        if not (math.isfinite(self.max_dt) and self.max_dt >= 0):
            raise RecordingError(f"max_dt={self.max_dt!r}: must be a number of seconds >= 0")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise RecordingError(f"fps={self.fps!r}: must be > 0")
        if self.poses not in ("recording", "odometry", "auto"):
            raise RecordingError(f"poses={self.poses!r}: choose recording, odometry or auto")
        if self.extrinsics:
            self.T_color_depth()  # validates
        self.odometry = None  # OdometryConfig from odometry.* options (build), None = its defaults

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def build(cls, values: dict) -> "RecordingOptions":
        """From ``{name: value}`` (strings are converted to the field's type); unknown names are errors."""
        known = {f.name: f for f in fields(cls)}
        kw, odometry = {}, {}
        for k, v in values.items():
            if k.startswith("odometry."):  # the OdometryConfig fields (sim/recordings/odometry.py)
                odometry[k[len("odometry."):]] = v
                continue
            if k not in known:
                raise RecordingError(f"unknown recording option {k!r}; known: {', '.join(known)}")
            kind = type(known[k].default)
            try:
                if isinstance(v, str) and kind is not str:
                    v = _bool(v) if kind is bool else kind(v)
                elif kind is str and isinstance(v, bool):
                    v = "true" if v else "false"
                elif kind is str and v is not None:
                    v = str(v)
                elif kind is float:
                    v = float(v)
            except ValueError as e:
                raise RecordingError(f"recording option {k}={v!r}: {e}") from None
            kw[k] = v
        opts = cls(**kw)
        if odometry:
            from regconsist_ros.sim.recordings.odometry import odometry_config

            if opts.poses == "recording":
                raise RecordingError(f"options {', '.join('odometry.' + k for k in odometry)} need poses=odometry "
                                     "(or poses=auto)")
            opts.odometry = odometry_config(odometry)
        return opts

    def registered(self, layout_default: bool) -> bool:
        """Whether depth is already aligned to colour (the option, or the layout's default)."""
        return layout_default if self.depth_registered == "auto" else self.depth_registered == "true"

    def T_color_depth(self) -> np.ndarray | None:
        """[4, 4] from ``extrinsics``, or None when not given."""
        if not self.extrinsics:
            return None
        try:
            v = [float(x) for x in self.extrinsics.replace(" ", "").split(",") if x]
        except ValueError:
            raise RecordingError(f"extrinsics={self.extrinsics!r}: expected 'x,y,z,qx,qy,qz,qw' numbers") from None
        if len(v) != 7:
            raise RecordingError(f"extrinsics={self.extrinsics!r}: expected 7 numbers 'x,y,z,qx,qy,qz,qw', got {len(v)}")
        q = np.asarray(v[3:])
        if not np.all(np.isfinite(v)) or abs(float(np.linalg.norm(q)) - 1.0) > 1e-3:
            raise RecordingError(f"extrinsics={self.extrinsics!r}: the quaternion must be finite with norm 1")
        return pose_from_tq(v[:3], q / np.linalg.norm(q))

    def camera(self, text: str, width: int, height: int, what: str) -> Intrinsics:
        try:
            return Intrinsics.parse(text, width, height)
        except FrameError as e:
            raise RecordingError(f"{what}={text!r}: {e}") from None


def parse_spec(spec) -> tuple[Path, dict]:
    """``"PATH?key=value&key=value"`` -> (PATH, {key: value}); a plain path has no options."""
    text = str(spec)
    path, sep, query = text.partition("?")
    values = {}
    if sep:
        for item in filter(None, query.split("&")):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise RecordingError(f"{text!r}: options after '?' must be 'key=value' joined by '&', got {item!r}")
            values[key.strip()] = value.strip()
    return Path(path), values


def pose_or_none(T) -> np.ndarray | None:
    """A finite rigid [4, 4] or None (non-finite, not rigid: e.g. ScanNet's -inf poses)."""
    try:
        return validate_pose(T, "pose")
    except PoseError:
        return None


class Recording:
    """Base of every reader: ``len``, ``[i] -> Frame``, ``iter_color()``, and what the recording has.

    Subclasses set ``layout``, ``source`` (for logs), ``root``, ``intrinsics`` (colour camera; None
    for a colour-only recording of unknown camera), ``stamps`` [N], ``names`` [N], ``has_depth``,
    ``has_poses``, and implement :meth:`frame` (and :meth:`color` when cheaper than a whole frame).
    ``dropped`` counts the frames left out when the recording was opened (association), by reason.
    """

    layout = "?"
    has_depth = True
    has_poses = True
    classes = None
    has_semantic = False
    has_instance = False

    def __init__(self):
        self.source = ""
        self.root: Path | None = None
        self.intrinsics: Intrinsics | None = None
        self.stamps = np.zeros(0, np.float64)
        self.names: list[str] = []
        self.dropped: dict[str, int] = {}
        self.meta: dict = {}

    def __len__(self) -> int:
        return len(self.stamps)

    def _index(self, i) -> int:
        n = len(self)
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"recording index must be an integer, got {type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"frame index {i} out of range for a recording of {n} frames")
        return int(i) % n

    def __getitem__(self, i) -> Frame:
        return self.frame(self._index(i))

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self)):
            yield self[i]

    def frame(self, i: int) -> Frame:
        raise RecordingError(f"{self.source}: a {self.layout} recording has colour only (no depth); it cannot give "
                             "RGB-D frames")

    def frame_or_drop(self, i: int) -> Frame | FrameDrop:
        """Frame ``i``, or the :class:`FrameDrop` saying why it cannot be read."""
        try:
            return self[i]
        except (SequenceError, OSError) as e:
            return FrameDrop(DROP_UNREADABLE, str(e))
        except FrameError as e:
            return FrameDrop("frame", str(e))

    def color(self, i: int) -> ColorFrame:
        """Frame ``i``'s colour (and labels); raises :class:`FrameDrop` for a bad frame."""
        try:
            f = self.frame(i)
        except (SequenceError, OSError) as e:
            raise FrameDrop(DROP_UNREADABLE, str(e)) from None
        except FrameError as e:
            raise FrameDrop("frame", str(e)) from None
        return ColorFrame(f.rgb, f.stamp, self.names[i], f.instance, f.semantic)

    def candidates(self, stride: int = 1, max_frames: int = 0) -> list[int] | None:
        """Indices :meth:`iter_color` visits (every stride-th, at most max_frames); None when unknown up front."""
        idx = list(range(0, len(self), stride))
        return idx[:max_frames] if max_frames else idx

    def expected(self, stride: int = 1, max_frames: int = 0) -> int | None:
        """How many candidates :meth:`iter_color` visits (None when unknown up front)."""
        return len(self.candidates(stride, max_frames))

    def iter_color(self, stride: int = 1, max_frames: int = 0) -> Iterator[ColorFrame | FrameDrop]:
        """Colour frames of the candidates in order; a bad one comes as its :class:`FrameDrop` (name in ``.name``)."""
        for i in self.candidates(stride, max_frames):
            try:
                yield self.color(i)
            except FrameDrop as d:
                d.name = self.names[i]
                yield d

    def close(self) -> None:
        """Release what reading holds open (a bag's stream); reading again reopens it."""

    def describe(self) -> dict:
        """What the recording is, for logs, run.json and ``regconsist convert``."""
        K = self.intrinsics
        return {"layout": self.layout, "source": self.source, "frames": len(self), "has_depth": self.has_depth,
                "has_poses": self.has_poses, "intrinsics": K.to_dict() if K is not None else None,
                "dropped": dict(self.dropped)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, {len(self)} frames, poses={self.has_poses}, depth={self.has_depth})"


def require_poses(rec, what: str) -> None:
    """PoseUnknownError unless ``rec`` (a recording, or a list of frames) has camera poses."""
    has = rec.has_poses if hasattr(rec, "has_poses") else all(getattr(f, "has_pose", True) for f in rec)
    if not has:
        name = getattr(rec, "source", "") or "the frames"
        raise PoseUnknownError(f"{name}: {what} needs camera poses, and this recording has none; {POSE_FUTURE}")


def require_depth(rec, what: str) -> None:
    if not rec.has_depth:
        raise RecordingError(f"{rec.source}: {what} needs depth, and this {rec.layout} recording has colour only")


def warn_drops(rec: Recording) -> None:
    if rec.dropped:
        log.warning("%s: dropped %d frames when opening (%s)", rec.source, sum(rec.dropped.values()),
                    ", ".join(f"{k}: {v}" for k, v in rec.dropped.items()))
