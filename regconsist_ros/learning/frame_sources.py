"""Any ordered frames -> one uint8 array in memory, for self-supervised pretraining on video.

:func:`load_ordered_frames` reads, in this order of detection:

1. ``sim:key=value,...``: the embedded world (:class:`regconsist_ros.sim.source.SimSource`, fields of
   :class:`regconsist_ros.sim.source.SimConfig`), with instance and semantic labels;
2. a directory with ``rgb.txt``: a TUM RGB-D sequence (labels kept when ``instance/`` or
   ``semantic/`` exist, as our renderer writes them);
3. a directory of images (``.png .jpg .jpeg .bmp .webp``) in natural order (frame2 < frame10);
4. a video file (``.mp4 .avi .mov .mkv .webm .gif .m4v``), decoded with PyAV.

Bad frames are never replaced by another one: they are skipped and counted in
``OrderedFrames.dropped`` by reason, and summarised in one warning:

- ``unreadable``: an image that cannot be opened or decoded (missing, truncated, corrupt);
- ``unsupported_mode``: an image whose pixel format has no sensible 8-bit RGB conversion;
- ``decode_error``: video packets that fail to decode (counted per packet);
- ``blank``: a frame whose pixels are all equal (e.g. a black frame from a camera glitch);
- ``size_mismatch``: without ``size=``, a frame whose size differs from the first good frame's;
- TUM sequences read with :func:`regconsist_ros.sim.sequences.read_tum` also report its association drops
  (``no_depth``, ``no_pose``, ``bad_pose``).

``stride`` and ``max_frames`` pick the candidate frames before decoding where the source allows
it: every ``stride``-th frame, then at most ``max_frames`` of those. Dropped candidates are not
replaced, so a source with bad frames yields fewer than ``max_frames`` frames.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif", ".m4v")
IMAGE_FOLDER_FPS = 30.0  # stamps of an image folder: index / 30
ACCEPTED = ("'sim:key=value,...' (the embedded world), a TUM RGB-D directory (with rgb.txt), a directory of "
            f"images ({' '.join(IMAGE_SUFFIXES)}) or a video file ({' '.join(VIDEO_SUFFIXES)})")

# Drop reasons.
DROP_UNREADABLE = "unreadable"
DROP_UNSUPPORTED = "unsupported_mode"
DROP_DECODE = "decode_error"
DROP_BLANK = "blank"
DROP_SIZE = "size_mismatch"

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
_16BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


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


class _Drop(Exception):
    """Internal: skip the current frame for ``reason``."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


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


def _select(n: int, stride: int, max_frames: int) -> list[int]:
    """Candidate indices of a source of known length: every stride-th, at most max_frames."""
    idx = list(range(0, n, stride))
    return idx[:max_frames] if max_frames else idx


def _progress(it: Iterable, total: int | None, desc: str, progress: bool) -> Iterable:
    from tqdm import tqdm

    return tqdm(it, total=total, desc=desc, unit="frame", disable=not progress, leave=False)


# --------------------------------------------------------------------------------------------
# decoding images
# --------------------------------------------------------------------------------------------


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    """Decoded PIL image -> [H, W, 3] uint8, or raise _Drop(unsupported_mode).

    8-bit modes (grey, palette, RGBA, CMYK, ...) go through PIL's conversion. 16-bit grey keeps its
    top 8 bits (PIL itself would clip at 255); 32-bit integer images are treated the same when their
    values fit 16 bits. Float images have no known range and are not converted.
    """
    if im.mode in _16BIT_MODES or im.mode == "I":
        a = np.asarray(im)
        if a.ndim != 2 or (a.size and (a.min() < 0 or a.max() > 65535)):
            raise _Drop(DROP_UNSUPPORTED, f"mode {im.mode} with values outside 16 bits")
        g = (a.astype(np.uint32) >> 8).astype(np.uint8)  # [H, W]
        return np.repeat(g[:, :, None], 3, axis=2)
    if im.mode in ("F", "I;32", "I;32B", "I;32L"):
        raise _Drop(DROP_UNSUPPORTED, f"mode {im.mode}")
    try:
        rgb = im if im.mode == "RGB" else im.convert("RGB")
    except (ValueError, OSError) as e:
        raise _Drop(DROP_UNSUPPORTED, f"mode {im.mode}: {e}") from None
    a = np.asarray(rgb, dtype=np.uint8)
    if a.ndim != 3 or a.shape[2] != 3:
        raise _Drop(DROP_UNSUPPORTED, f"mode {im.mode} gave shape {a.shape}")
    return a


def _read_image(path: Path) -> np.ndarray:
    """Image file -> [H, W, 3] uint8, or raise _Drop(unreadable | unsupported_mode)."""
    try:
        with Image.open(path) as im:
            im.load()
            return _pil_to_rgb(im)
    except _Drop:
        raise
    except _DECODE_ERRORS as e:
        raise _Drop(DROP_UNREADABLE, str(e)) from None


def _natural_key(name: str) -> tuple:
    """'frame10.png' -> ('frame', 10, '.png', ...): digit runs compare as numbers."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)) + (name,)


def _image_folder(root: Path, col: _Collector, stride: int, max_frames: int, progress: bool) -> str:
    files = sorted((p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: _natural_key(p.name))
    picked = _select(len(files), stride, max_frames)
    col.capacity = max(1, len(picked))
    for i in _progress(picked, len(picked), f"reading {root.name}", progress):
        try:
            rgb = _read_image(files[i])
        except _Drop as d:
            col.drop(files[i].name, d.reason, d.detail)
            continue
        col.add(_Decoded(rgb, i / IMAGE_FOLDER_FPS, files[i].name))
    return f"image folder {root} ({len(files)} images)"


# --------------------------------------------------------------------------------------------
# TUM sequences
# --------------------------------------------------------------------------------------------


def _tum(root: Path, col: _Collector, stride: int, max_frames: int, progress: bool) -> str:
    """Through read_tum when the sequence has depth and poses; else from rgb.txt alone."""
    from regconsist_ros.sim.sequences import SequenceError, read_tum

    if (root / "depth.txt").is_file() and (root / "groundtruth.txt").is_file():
        try:
            seq = read_tum(root)
        except SequenceError as e:
            log.info("%s: cannot read as a full TUM RGB-D sequence (%s); reading rgb.txt only", root, e)
        else:
            picked = _select(len(seq), stride, max_frames)
            col.capacity = max(1, len(picked))
            col.want_instance, col.want_semantic = seq.has_instance, seq.has_semantic
            for reason, n in seq.dropped.items():  # association drops (no_depth, no_pose, bad_pose)
                col.dropped[reason] = col.dropped.get(reason, 0) + n
            for i in _progress(picked, len(picked), f"reading {root.name}", progress):
                name = _relative(seq.rgb_paths[i], root)
                try:
                    f = seq[i]
                except (SequenceError, OSError) as e:
                    col.drop(name, DROP_UNREADABLE, str(e))
                    continue
                col.add(_Decoded(f.rgb, f.stamp, name, f.instance, f.semantic))
            return f"TUM sequence {root}"
    return _tum_rgb_only(root, col, stride, max_frames, progress)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def _tum_rgb_only(root: Path, col: _Collector, stride: int, max_frames: int, progress: bool) -> str:
    """rgb.txt (``stamp path`` lines, ``#`` comments) -> frames, plus label images when complete."""
    from regconsist_ros.sim.sequences import SequenceError, load_uint16, read_image_list

    stamps, names = read_image_list(root / "rgb.txt")
    order = np.argsort(stamps, kind="stable")
    picked = [int(order[i]) for i in _select(len(order), stride, max_frames)]
    col.capacity = max(1, len(picked))
    label_dirs = {}
    for what in ("instance", "semantic"):
        d = root / what
        if d.is_dir():
            missing = [names[k] for k in picked if not (d / Path(names[k]).name).is_file()]
            if missing:
                log.warning("%s: ignoring %s labels: %d of %d frames lack an image (first: %s)", root, what,
                            len(missing), len(picked), d / Path(missing[0]).name)
            else:
                label_dirs[what] = d
    col.want_instance, col.want_semantic = "instance" in label_dirs, "semantic" in label_dirs
    for k in _progress(picked, len(picked), f"reading {root.name}", progress):
        try:
            rgb = _read_image(root / names[k])
            labels = {w: load_uint16(d / Path(names[k]).name, f"{w} labels", allow_8bit=True)
                      for w, d in label_dirs.items()}
        except _Drop as d:
            col.drop(names[k], d.reason, d.detail)
            continue
        except (SequenceError, OSError) as e:
            col.drop(names[k], DROP_UNREADABLE, str(e))
            continue
        if any(a.shape != rgb.shape[:2] for a in labels.values()):
            col.drop(names[k], DROP_UNREADABLE, "label image size differs from the rgb image")
            continue
        col.add(_Decoded(rgb, float(stamps[k]), names[k], labels.get("instance"), labels.get("semantic")))
    return f"TUM rgb list {root / 'rgb.txt'}"


# --------------------------------------------------------------------------------------------
# video
# --------------------------------------------------------------------------------------------


def _video(path: Path, col: _Collector, stride: int, max_frames: int, progress: bool) -> str:
    try:
        import av
    except ImportError:
        raise ImportError("reading video needs PyAV: pip install av") from None
    from tqdm import tqdm

    errors = (av.FFmpegError, OSError, ValueError)
    try:
        container = av.open(str(path))
    except Exception as e:  # PyAV's FFmpegError subclasses (InvalidDataError, ...) and OS errors
        raise ValueError(f"{path}: cannot open as a video ({type(e).__name__}: {e})") from None
    with container:
        if not container.streams.video:
            raise ValueError(f"{path}: the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate) if stream.average_rate else IMAGE_FOLDER_FPS
        total = stream.frames or None  # container's frame count, when it has one
        if total and max_frames:
            total = min(total, max_frames * stride)

        def decoded() -> Iterator:
            """Decoded frames in presentation order. A packet that fails to decode is counted and
            skipped; a demuxing error (the container is unreadable past that point) ends the stream."""
            packets = container.demux(stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    return
                except errors as e:
                    col.drop(f"{path.name}@demux", DROP_DECODE, str(e))
                    return
                try:
                    frames = packet.decode()
                except errors as e:
                    col.drop(f"{path.name}@pts={packet.pts}", DROP_DECODE, str(e))
                    continue
                yield from frames

        taken = 0  # candidate frames (every stride-th decoded frame)
        with tqdm(total=total, desc=f"decoding {path.name}", unit="frame", disable=not progress, leave=False) as bar:
            for i, frame in enumerate(decoded()):
                bar.update(1)
                if i % stride:
                    continue
                taken += 1
                name = f"{path.name}#{i}"
                try:
                    rgb = frame.to_ndarray(format="rgb24")  # [H, W, 3] uint8
                except errors as e:
                    col.drop(name, DROP_DECODE, str(e))
                else:
                    col.add(_Decoded(rgb, float(frame.time) if frame.time is not None else i / rate, name))
                if max_frames and taken >= max_frames:
                    break
        codec = stream.codec_context.name
    return f"video {path} ({codec}, {rate:g} fps)"


# --------------------------------------------------------------------------------------------
# the embedded world
# --------------------------------------------------------------------------------------------


def _parse_value(text: str):
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_sim_spec(spec: str):
    """``"sim:seed=3,frames=200,width=128"`` -> SimConfig; ValueError naming the spec when invalid."""
    from regconsist_ros.config import build
    from regconsist_ros.sim.source import SimConfig

    body = spec[len("sim:"):].strip()
    values = {}
    for item in filter(None, (p.strip() for p in body.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"{spec!r}: expected 'key=value' items separated by commas, got {item!r}")
        values[key.strip()] = _parse_value(value.strip())
    try:
        return build(SimConfig, values)
    except ValueError as e:
        raise ValueError(f"{spec!r}: {e}") from None


def _sim(spec: str, col: _Collector, stride: int, max_frames: int, progress: bool) -> str:
    from regconsist_ros.sim.source import SimSource

    cfg = parse_sim_spec(spec)
    src = SimSource(cfg)
    picked = _select(len(src), stride, max_frames)
    col.capacity = max(1, len(picked))
    first = src[picked[0]] if picked else None
    col.want_instance = first is not None and first.instance is not None
    col.want_semantic = first is not None and first.semantic is not None
    for i in _progress(picked, len(picked), "rendering sim", progress):
        f = first if i == picked[0] else src[i]
        col.add(_Decoded(f.rgb, f.stamp, f"sim:{i}", f.instance, f.semantic))
    return f"sim {spec[4:] or 'defaults'} ({cfg.width}x{cfg.height}, {len(src)} frames)"


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
    path = None if isinstance(spec, str) and spec.startswith("sim:") else Path(spec)
    if path is None:
        source = _sim(str(spec), col, stride, max_frames, progress)
    elif path.is_dir() and (path / "rgb.txt").is_file():
        source = _tum(path, col, stride, max_frames, progress)
    elif path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir() if p.is_file()):
        source = _image_folder(path, col, stride, max_frames, progress)
    elif path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        source = _video(path, col, stride, max_frames, progress)
    else:
        what = ("does not exist" if not path.exists() else
                "is a directory without rgb.txt or images" if path.is_dir() else "is not a known file type")
        raise ValueError(f"{spec}: {what}; accepted: {ACCEPTED}")
    return col.result(source)
