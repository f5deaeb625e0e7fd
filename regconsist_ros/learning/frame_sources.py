"""Any ordered frames -> one uint8 array in memory, for self-supervised pretraining on video.

:func:`load_ordered_frames` reads the colour frames of any recording the one frame-source layer
opens (:func:`regconsist_ros.sim.recordings.open_recording`: the embedded world ``sim:...``, TUM,
7-Scenes / ScanNet, Replica, rosbag2 / ROS 1 / RealSense bags, image folders, videos; options as
``PATH?key=value&...``). Labels come along when the recording has them (TUM sequences with
``instance/`` / ``semantic/``, the embedded world).

Bad frames are never replaced by another one: they are skipped and counted in
``OrderedFrames.dropped`` by reason, and summarised in one warning:

- ``unreadable``: an image that cannot be opened or decoded (missing, truncated, corrupt);
- ``not_colour``: a single-channel or 16-bit image (a depth or label image) where a colour frame
  is expected: never turned into a grey colour frame;
- ``unsupported_mode``: an image whose pixel format has no sensible 8-bit RGB conversion;
- ``decode_error``: video packets or bag messages that fail to decode;
- ``blank``: a frame whose pixels are all equal (e.g. a black frame from a camera glitch);
- ``size_mismatch``: without ``size=``, a frame whose size differs from the first good frame's;
- the recording's own drops when it was opened (``no_depth``, ``no_pose``, ``bad_pose``, ...).

``stride`` and ``max_frames`` pick the candidate frames before decoding where the source allows
it: every ``stride``-th frame, then at most ``max_frames`` of those. Dropped candidates are not
replaced, so a source with bad frames yields fewer than ``max_frames`` frames.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from regconsist_ros.sim.recordings import ACCEPTED, FrameDrop
from regconsist_ros.sim.recordings.base import DROP_DECODE, DROP_NOT_COLOUR, DROP_UNREADABLE, DROP_UNSUPPORTED
from regconsist_ros.sim.recordings.images import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from regconsist_ros.sim.recordings.images import pil_to_rgb as _pil_to_rgb  # noqa: F401  (the old name)
from regconsist_ros.sim.recordings.simspec import parse_sim_spec

log = logging.getLogger(__name__)

_Drop = FrameDrop  # the old name, kept for callers
IMAGE_FOLDER_FPS = 30.0  # stamps of an image folder: index / 30

# Drop reasons (besides the readers').
DROP_BLANK = "blank"
DROP_SIZE = "size_mismatch"
__all__ = ["ACCEPTED", "DROP_BLANK", "DROP_DECODE", "DROP_NOT_COLOUR", "DROP_SIZE", "DROP_UNREADABLE", "DROP_UNSUPPORTED",
           "FrameLoadConfig", "IMAGE_SUFFIXES", "OrderedFrames", "VIDEO_SUFFIXES", "load_ordered_frames", "parse_sim_spec"]


@dataclass
class OrderedFrames:
    """Frames of one source in temporal order, all at one size."""

    rgb: np.ndarray  # [N, H, W, 3] uint8
    stamps: np.ndarray  # [N] float64 seconds (index / fps when the source has no time)
    names: list[str]  # per-frame identifier: file name, "video.mp4#123", "sim:17"
    source: str  # where the frames came from, for logs
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> skipped frames (empty when none)
    instance: np.ndarray | None = None  # [N, H, W] uint16 instance ids, when the source has them
    semantic: np.ndarray | None = None  # [N, H, W] uint16 class ids, when the source has them

    def __len__(self) -> int:
        return len(self.rgb)

    def __repr__(self) -> str:
        H, W = self.rgb.shape[1:3]
        return (f"OrderedFrames({self.source!r}, {len(self)} frames, {W}x{H}, dropped={self.dropped}, "
                f"instance={self.instance is not None}, semantic={self.semantic is not None})")


@dataclass
class _Decoded:
    """One decoded candidate frame before the blank/size checks."""

    rgb: np.ndarray  # [H, W, 3] uint8
    stamp: float
    name: str
    instance: np.ndarray | None = None  # [H, W] uint16
    semantic: np.ndarray | None = None  # [H, W] uint16


# --------------------------------------------------------------------------------------------
# collecting frames
# --------------------------------------------------------------------------------------------


class _Collector:
    """Checks, resizes and stores frames into preallocated arrays (no list-then-stack copy)."""

    def __init__(self, size: tuple[int, int] | None):
        self.size = size  # (H, W): the requested size, else the first good frame's once known
        self.resize = size is not None  # resize every frame to `size` (else drop other sizes)
        self.capacity = 64  # frames to preallocate; sources of known length set it
        self.want_instance = self.want_semantic = False  # the source has labels for every frame
        self.rgb: np.ndarray | None = None  # [C, H, W, 3] uint8
        self.instance: np.ndarray | None = None  # [C, H, W] uint16
        self.semantic: np.ndarray | None = None  # [C, H, W] uint16
        self.stamps: list[float] = []
        self.names: list[str] = []
        self.dropped: dict[str, int] = {}
        self.offenders: list[str] = []  # "name (reason: detail)" of the first few drops

    def drop(self, name: str, reason: str, detail: str = "") -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if len(self.offenders) < 5:
            self.offenders.append(f"{name} ({reason}{': ' + detail if detail else ''})")

    def add(self, f: _Decoded) -> None:
        rgb = f.rgb  # [h, w, 3] uint8
        flat = rgb.reshape(-1, 3)
        if flat.size == 0 or (flat == flat[0]).all():
            self.drop(f.name, DROP_BLANK)
            return
        if self.size is None:
            self.size = rgb.shape[:2]
        H, W = self.size
        if rgb.shape[:2] != (H, W):
            if not self.resize:
                self.drop(f.name, DROP_SIZE, f"{rgb.shape[1]}x{rgb.shape[0]}, expected {W}x{H}")
                return
            rgb = np.asarray(Image.fromarray(rgb).resize((W, H), Image.Resampling.BILINEAR))
        inst = self._label(f.instance, self.want_instance, f.name, "instance")
        sem = self._label(f.semantic, self.want_semantic, f.name, "semantic")
        self._reserve()
        n = len(self.stamps)
        self.rgb[n] = rgb
        if self.instance is not None:
            self.instance[n] = inst
        if self.semantic is not None:
            self.semantic[n] = sem
        self.stamps.append(float(f.stamp))
        self.names.append(f.name)

    def _label(self, a: np.ndarray | None, wanted: bool, name: str, what: str) -> np.ndarray | None:
        if not wanted:
            return None
        if a is None:  # the source promised labels for every frame
            raise RuntimeError(f"{name}: frame has no {what} labels although its source has them")
        H, W = self.size
        if a.shape != (H, W):
            a = np.asarray(Image.fromarray(a.astype(np.uint16)).resize((W, H), Image.Resampling.NEAREST))
        return a.astype(np.uint16, copy=False)

    def _reserve(self) -> None:
        n = len(self.stamps)
        H, W = self.size
        if self.rgb is None:
            self.rgb = np.empty((self.capacity, H, W, 3), np.uint8)
            self.instance = np.empty((self.capacity, H, W), np.uint16) if self.want_instance else None
            self.semantic = np.empty((self.capacity, H, W), np.uint16) if self.want_semantic else None
        elif n == len(self.rgb):  # unknown length (video): grow geometrically
            grow = lambda a: None if a is None else np.concatenate([a, np.empty_like(a)])  # noqa: E731
            self.rgb, self.instance, self.semantic = grow(self.rgb), grow(self.instance), grow(self.semantic)

    def __len__(self) -> int:
        return len(self.stamps)

    def result(self, source: str) -> OrderedFrames:
        n = len(self)
        n_candidates = n + sum(self.dropped.values())
        if n_candidates == 0:
            raise ValueError(f"{source}: no frames to read")
        if n == 0:
            why = ", ".join(f"{v} {k}" for k, v in self.dropped.items())
            raise ValueError(f"{source}: no usable frames: {sum(self.dropped.values())} of {n_candidates} "
                             f"candidate frames were dropped ({why}); first: {'; '.join(self.offenders) or '-'}")
        if self.dropped:
            log.warning("%s: dropped %d of %d frames (%s); first: %s", source, sum(self.dropped.values()),
                        n_candidates, ", ".join(f"{k}: {v}" for k, v in self.dropped.items()),
                        "; ".join(self.offenders))

        def trim(a: np.ndarray | None) -> np.ndarray | None:
            if a is None:
                return None
            return a if len(a) == n else a[:n].copy()  # copy: do not keep the unused capacity alive

        return OrderedFrames(rgb=trim(self.rgb), stamps=np.asarray(self.stamps, np.float64), names=list(self.names),
                             source=source, dropped=dict(self.dropped), instance=trim(self.instance),
                             semantic=trim(self.semantic))


def _progress(it: Iterable, total: int | None, desc: str, progress: bool) -> Iterable:
    from tqdm import tqdm

    return tqdm(it, total=total, desc=desc, unit="frame", disable=not progress, leave=False)


# --------------------------------------------------------------------------------------------
# reading a recording's colour frames (the readers are in regconsist_ros.sim.recordings)
# --------------------------------------------------------------------------------------------


def _recording(rec, col: _Collector, stride: int, max_frames: int, progress: bool) -> str:
    """Every stride-th colour frame of a recording (at most max_frames), drops counted by reason."""
    for reason, n in rec.dropped.items():  # left out when the recording was opened (no_depth, no_pose, ...)
        col.dropped[reason] = col.dropped.get(reason, 0) + n
    total = rec.expected(stride, max_frames)
    col.capacity = max(1, total or 64)
    col.want_instance, col.want_semantic = rec.has_instance, rec.has_semantic
    desc = f"reading {rec.root.name if rec.root is not None else rec.layout}"
    for item in _progress(rec.iter_color(stride, max_frames), total, desc, progress):
        if isinstance(item, FrameDrop):
            col.drop(getattr(item, "name", "?"), item.reason, item.detail)
        else:
            col.add(_Decoded(item.rgb, item.stamp, item.name, item.instance, item.semantic))
    return rec.source


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------


@dataclass
class FrameLoadConfig:
    """Which frames of each offline source are read, and at what size (``load.*``)."""

    height: int = field(default=0, metadata={"help": "resize frames to this height when loading (0 = native)"})
    width: int = field(default=0, metadata={"help": "resize frames to this width when loading (0 = native)"})
    max_frames: int = field(default=0, metadata={"help": "frames read per source (0 = all)"})
    stride: int = field(default=1, metadata={"help": "take every stride-th frame of each source"})

    def __post_init__(self):
        if self.max_frames < 0 or self.stride < 1:
            raise ValueError(f"FrameLoadConfig: max_frames >= 0 and stride >= 1 needed, got max_frames={self.max_frames}, "
                             f"stride={self.stride}")
        if (self.height > 0) != (self.width > 0) or min(self.height, self.width) < 0:
            raise ValueError(f"FrameLoadConfig: give both height and width (or neither), got {self.height}x{self.width}")

    @property
    def size(self) -> tuple[int, int] | None:
        return (self.height, self.width) if self.height else None

    def load(self, spec, progress: bool = True) -> "OrderedFrames":
        """:func:`load_ordered_frames` of ``spec`` with these settings."""
        return load_ordered_frames(spec, size=self.size, max_frames=self.max_frames, stride=self.stride, progress=progress)


def load_ordered_frames(spec: str | Path, size: tuple[int, int] | None = None, max_frames: int = 0,
                        stride: int = 1, progress: bool = True) -> OrderedFrames:
    """Load ordered frames from ``spec`` (see the module docstring for the kinds) into memory.

    size: (height, width) to resize every frame to (bilinear; labels nearest). None keeps the first
    good frame's size and drops later frames of another size (``size_mismatch``).
    max_frames: at most this many candidate frames (0 = all), after ``stride``.
    stride: take every stride-th frame of the source.

    Raises ValueError for an unknown kind of spec, a video that cannot be opened, a bad ``sim:``
    spec, or when no good frame is left (the message counts the drops by reason).
    """
    if size is not None:
        if (len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in size)):
            raise ValueError(f"size must be (height, width) positive integers, got {size!r}")
        size = (int(size[0]), int(size[1]))
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
    if isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer)) or max_frames < 0:
        raise ValueError(f"max_frames must be an integer >= 0 (0 = all), got {max_frames!r}")
    stride, max_frames = int(stride), int(max_frames)

    col = _Collector(size)
    from regconsist_ros.sim.recordings import open_recording

    try:
        rec = open_recording(spec, colour_only=True)
    except FileNotFoundError:
        raise ValueError(f"{spec}: does not exist; accepted: {ACCEPTED}") from None
    source = _recording(rec, col, stride, max_frames, progress)
    return col.result(source)
