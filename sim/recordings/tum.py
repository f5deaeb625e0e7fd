"""TUM RGB-D sequences as recordings (:func:`regconsist_ros.sim.sequences.read_tum` does the reading).

A directory with ``rgb.txt``. With ``depth.txt`` it is an RGB-D recording (``groundtruth.txt``
optional: without it the poses are unknown). With ``rgb.txt`` alone it is colour only (what
``regconsist convert`` writes for an image folder or a video). Label folders (``semantic/``,
``instance/``) come along when complete.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from regconsist_ros.sim.frame import Frame, Intrinsics
from regconsist_ros.sim.recordings.base import (DROP_UNREADABLE, ColorFrame, FrameDrop, Recording, RecordingError,
                                                RecordingOptions)
from regconsist_ros.sim.recordings.images import read_color_image
from regconsist_ros.sim.sequences import SequenceError, load_uint16, read_image_list, read_tum

log = logging.getLogger(__name__)


def is_tum(path: Path) -> bool:
    return path.is_dir() and (path / "rgb.txt").is_file()


class TumRecording(Recording):
    """A TUM RGB-D sequence (:class:`~regconsist_ros.sim.sequences.TumSequence` inside, as ``.seq``)."""

    layout = "tum"

    def __init__(self, root: Path, opts: RecordingOptions):
        super().__init__()
        self.root = Path(root)
        self.seq = read_tum(self.root, intrinsics=opts.intrinsics or None, depth_scale=opts.depth_scale or None,
                            max_dt=opts.max_dt, require_poses=False)
        self.intrinsics = self.seq.intrinsics
        self.stamps = self.seq.stamps
        self.names = [_relative(p, self.root) for p in self.seq.rgb_paths]
        self.dropped = dict(self.seq.dropped)
        self.meta = dict(self.seq.meta)
        self.has_poses = self.seq.has_poses
        self.classes = self.seq.classes
        self.has_semantic, self.has_instance = self.seq.has_semantic, self.seq.has_instance
        self.depth_scale = self.seq.depth_scale
        self.source = f"TUM sequence {self.root}"

    def frame(self, i: int) -> Frame:
        return self.seq[i]


class TumColourRecording(Recording):
    """``rgb.txt`` (and complete label folders) alone: colour frames in stamp order."""

    layout = "tum"
    has_depth = False
    has_poses = False

    def __init__(self, root: Path, opts: RecordingOptions):
        super().__init__()
        self.root = Path(root)
        stamps, names = read_image_list(self.root / "rgb.txt")
        if not len(stamps):
            raise RecordingError(f"{self.root / 'rgb.txt'}: lists no images")
        order = np.argsort(stamps, kind="stable")
        self.stamps = stamps[order]
        self.names = [names[k] for k in order]
        self.label_dirs = {}
        for what in ("instance", "semantic"):
            d = self.root / what
            if d.is_dir():
                missing = [n for n in self.names if not (d / Path(n).name).is_file()]
                if missing:
                    log.warning("%s: ignoring %s labels: %d of %d frames lack an image (first: %s)", self.root, what,
                                len(missing), len(self.names), d / Path(missing[0]).name)
                else:
                    self.label_dirs[what] = d
        self.has_instance, self.has_semantic = "instance" in self.label_dirs, "semantic" in self.label_dirs
        if opts.intrinsics:
            with Image.open(self.root / self.names[0]) as im:
                self.intrinsics = opts.camera(opts.intrinsics, im.size[0], im.size[1], "intrinsics")
        elif (self.root / "intrinsics.json").is_file():
            import json

            try:
                self.intrinsics = Intrinsics.from_dict(json.loads((self.root / "intrinsics.json").read_text()))
            except (ValueError, TypeError, OSError) as e:
                raise RecordingError(f"{self.root / 'intrinsics.json'}: invalid intrinsics ({e})") from None
        self.source = f"TUM rgb list {self.root / 'rgb.txt'}"

    def color(self, i: int) -> ColorFrame:
        rgb = read_color_image(self.root / self.names[i])
        try:
            labels = {w: load_uint16(d / Path(self.names[i]).name, f"{w} labels", allow_8bit=True)
                      for w, d in self.label_dirs.items()}
        except (SequenceError, OSError) as e:
            raise FrameDrop(DROP_UNREADABLE, str(e)) from None
        if any(a.shape != rgb.shape[:2] for a in labels.values()):
            raise FrameDrop(DROP_UNREADABLE, "label image size differs from the rgb image")
        return ColorFrame(rgb, float(self.stamps[i]), self.names[i], labels.get("instance"), labels.get("semantic"))


def open_tum(root: Path, opts: RecordingOptions, colour_only: bool = False) -> Recording:
    """The RGB-D recording when depth.txt is there (and readable, for colour-only use), else rgb.txt alone."""
    if (root / "depth.txt").is_file():
        if not colour_only:
            return TumRecording(root, opts)
        try:
            return TumRecording(root, opts)
        except SequenceError as e:  # e.g. depth images missing: the colour frames are still usable
            log.info("%s: cannot read as a full TUM RGB-D sequence (%s); reading rgb.txt only", root, e)
    elif not colour_only:
        return TumColourRecording(root, opts)  # the caller checks has_depth when it needs depth
    return TumColourRecording(root, opts)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def write_colour_only(out_dir: Path, frames, intrinsics: Intrinsics | None = None) -> int:
    """Colour frames (:class:`ColorFrame`) -> ``rgb/<stamp>.png`` + ``rgb.txt`` (+ intrinsics.json when known).

    The TUM layout without depth or poses, readable by :class:`TumColourRecording`. Returns the frames
    written; stamps must increase (at microsecond resolution).
    """
    import json

    out = Path(out_dir)
    (out / "rgb").mkdir(parents=True, exist_ok=True)
    n, last = 0, None
    with open(out / "rgb.txt", "w") as f:
        f.write(f"# color images\n# file: '{out.name}'\n# timestamp filename\n")
        for c in frames:
            stamp = f"{c.stamp:.6f}"
            if last is not None and float(stamp) <= last:
                raise RecordingError(f"{out / 'rgb.txt'}: stamps must be strictly increasing, got {stamp} after {last:.6f}")
            Image.fromarray(np.ascontiguousarray(c.rgb)).save(out / "rgb" / f"{stamp}.png")
            f.write(f"{stamp} rgb/{stamp}.png\n")
            last, n = float(stamp), n + 1
    if intrinsics is not None:
        (out / "intrinsics.json").write_text(json.dumps(intrinsics.to_dict(), indent=1) + "\n")
    return n
