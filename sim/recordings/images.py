"""Colour-only recordings: a folder of images (natural order) and a video file (PyAV).

Only colour images are colour frames: a single-channel image (grey, 16-bit, float: typically a depth
map or a label image beside the colour images) is skipped and counted as ``not_colour``, never
replicated into three channels. Stamps of an image folder are index / fps; a video's are its
presentation times.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from regconsist_ros.sim.recordings.base import (DROP_DECODE, DROP_NOT_COLOUR, DROP_UNREADABLE, DROP_UNSUPPORTED,
                                                ColorFrame, FrameDrop, Recording, RecordingError)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif", ".m4v")
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
SINGLE_CHANNEL_MODES = ("1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N", "I;32", "I;32B", "I;32L")
GREY_PIX_FMTS = ("gray", "gray8", "gray10le", "gray12le", "gray16le", "gray16be", "grayf32le", "ya8", "ya16le")


def pil_to_rgb(im: Image.Image) -> np.ndarray:
    """Decoded colour PIL image -> [H, W, 3] uint8, or FrameDrop.

    RGB, RGBA, palette, CMYK, YCbCr, ... go through PIL's conversion (alpha dropped). A single-channel
    mode (1, L, LA, I, I;16, F, ...) is not a colour frame: FrameDrop("not_colour"). A palette image
    whose palette is grey is a colour image as far as its file says, and is converted.
    """
    if im.mode in SINGLE_CHANNEL_MODES:
        raise FrameDrop(DROP_NOT_COLOUR, f"single-channel image (mode {im.mode}): a depth or label image, not colour")
    try:
        rgb = im if im.mode == "RGB" else im.convert("RGB")
    except (ValueError, OSError) as e:
        raise FrameDrop(DROP_UNSUPPORTED, f"mode {im.mode}: {e}") from None
    a = np.asarray(rgb, dtype=np.uint8)
    if a.ndim != 3 or a.shape[2] != 3:
        raise FrameDrop(DROP_UNSUPPORTED, f"mode {im.mode} gave shape {a.shape}")
    return a


def read_color_image(path: Path) -> np.ndarray:
    """Colour image file -> [H, W, 3] uint8, or FrameDrop(unreadable | not_colour | unsupported_mode)."""
    try:
        with Image.open(path) as im:
            if im.mode in SINGLE_CHANNEL_MODES:  # from the header: no need to decode a depth image
                raise FrameDrop(DROP_NOT_COLOUR, f"single-channel image (mode {im.mode}): a depth or label image, "
                                                 "not colour")
            im.load()
            return pil_to_rgb(im)
    except FrameDrop:
        raise
    except _DECODE_ERRORS as e:
        raise FrameDrop(DROP_UNREADABLE, str(e)) from None


def natural_key(name: str) -> tuple:
    """'frame10.png' -> ('frame', 10, '.png', ...): digit runs compare as numbers."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)) + (name,)


def image_files(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                  key=lambda p: natural_key(p.name))


class ImageFolder(Recording):
    """Images of a folder in natural order (frame2 < frame10); colour only, stamps index / fps."""

    layout = "images"
    has_depth = False
    has_poses = False

    def __init__(self, root: Path, fps: float = 30.0):
        super().__init__()
        self.root = Path(root)
        if not self.root.is_dir():
            raise RecordingError(f"{self.root}: image folder not found")
        self.files = image_files(self.root)
        if not self.files:
            raise RecordingError(f"{self.root}: no images ({' '.join(IMAGE_SUFFIXES)})")
        self.stamps = np.arange(len(self.files), dtype=np.float64) / fps
        self.names = [p.name for p in self.files]
        self.source = f"image folder {self.root} ({len(self.files)} images)"

    def color(self, i: int) -> ColorFrame:
        return ColorFrame(read_color_image(self.files[i]), float(self.stamps[i]), self.names[i])


class VideoFile(Recording):
    """Frames of a video decoded with PyAV, in presentation order; colour only.

    Its length is known only once decoded: ``len()`` and ``[i]`` are not offered, :meth:`iter_color`
    streams. A packet that fails to decode is counted (``decode_error``) and skipped; a demuxing error
    ends the stream (counted too). Grey videos are ``not_colour``.
    """

    layout = "video"
    has_depth = False
    has_poses = False

    def __init__(self, path: Path, fps: float = 30.0):
        super().__init__()
        try:
            import av
        except ImportError:
            raise ImportError("reading video needs PyAV: pip install av") from None
        self.root = Path(path)
        self.default_fps = fps
        try:
            container = av.open(str(self.root))
        except Exception as e:  # PyAV's FFmpegError subclasses (InvalidDataError, ...) and OS errors
            raise RecordingError(f"{self.root}: cannot open as a video ({type(e).__name__}: {e})") from None
        with container:
            if not container.streams.video:
                raise RecordingError(f"{self.root}: the file has no video stream")
            stream = container.streams.video[0]
            self.rate = float(stream.average_rate) if stream.average_rate else fps
            self.total = stream.frames or None  # the container's frame count, when it has one
            self.codec = stream.codec_context.name
        self.source = f"video {self.root} ({self.codec}, {self.rate:g} fps)"

    def __len__(self) -> int:
        raise RecordingError(f"{self.source}: a video's length is known only once decoded; stream it with iter_color()")

    def candidates(self, stride: int = 1, max_frames: int = 0) -> None:
        return None

    def expected(self, stride: int = 1, max_frames: int = 0) -> int | None:
        """Candidate frames expected from the container's frame count (None when it has none)."""
        if not self.total:
            return None
        n = -(-self.total // stride)
        return min(n, max_frames) if max_frames else n

    def iter_color(self, stride: int = 1, max_frames: int = 0) -> Iterator[ColorFrame | FrameDrop]:
        import av

        errors = (av.FFmpegError, OSError, ValueError)
        name = self.root.name
        with av.open(str(self.root)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            packets = container.demux(stream)
            i = taken = 0
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    return
                except errors as e:
                    yield _named(FrameDrop(DROP_DECODE, str(e)), f"{name}@demux")
                    return
                try:
                    frames = packet.decode()
                except errors as e:
                    yield _named(FrameDrop(DROP_DECODE, str(e)), f"{name}@pts={packet.pts}")
                    continue
                for frame in frames:
                    k, i = i, i + 1
                    if k % stride:
                        continue
                    taken += 1
                    fname = f"{name}#{k}"
                    if frame.format.name in GREY_PIX_FMTS:
                        yield _named(FrameDrop(DROP_NOT_COLOUR, f"grey video (pixel format {frame.format.name})"), fname)
                    else:
                        try:
                            rgb = frame.to_ndarray(format="rgb24")  # [H, W, 3] uint8
                        except errors as e:
                            yield _named(FrameDrop(DROP_DECODE, str(e)), fname)
                        else:
                            t = float(frame.time) if frame.time is not None else k / self.rate
                            yield ColorFrame(rgb, t, fname)
                    if max_frames and taken >= max_frames:
                        return


def _named(d: FrameDrop, name: str) -> FrameDrop:
    d.name = name
    return d
