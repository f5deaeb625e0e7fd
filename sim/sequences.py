"""TUM RGB-D sequences on disk: read (:func:`read_tum`) and write (:class:`TumWriter`).

Layout (the TUM RGB-D benchmark's, so public sequences load as they are)::

    <seq_dir>/
        rgb.txt            "timestamp rgb/<name>.png" per line
        depth.txt          "timestamp depth/<name>.png" per line
        groundtruth.txt    "timestamp tx ty tz qx qy qz qw" per line: T_world_cam of the
                           optical camera frame (camera-to-world), quaternion scalar-last;
                           optional with ``read_tum(..., require_poses=False)`` (frames then
                           have ``T_world_cam = None``: pose unknown)
        rgb/*.png          8-bit colour
        depth/*.png        16-bit single channel, metres = value / depth_scale (0 = invalid)
        # our additions, all optional when reading:
        semantic/*.png     16-bit class ids, same file name as the frame's rgb image
        instance/*.png     16-bit instance ids, same file name as the frame's rgb image
        intrinsics.json    {"fx", "fy", "cx", "cy", "width", "height", "depth_scale"}
        classes.json       ClassTable.to_json()
        sequence.json      free metadata dict

In the txt files, lines starting with ``#`` are comments, blank lines are ignored and fields may
be separated by any whitespace. Image paths are relative to ``<seq_dir>``.

Reading associates each rgb timestamp with the nearest depth timestamp (unique greedy matching
by ascending |dt|, like TUM's ``associate.py``) and with the nearest ground-truth pose, both
within ``max_dt`` seconds; frames left without depth or a valid pose are dropped and counted.
Images are decoded lazily, when a frame is indexed.
"""
from __future__ import annotations

import json
import logging
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

from regconsist_ros.sim.frame import Frame, FrameError, Intrinsics
from regconsist_ros.sim.poses import PoseError, pose_from_tq, pose_to_tq, validate_pose
from regconsist_ros.sim.world.classes import ClassTable

log = logging.getLogger(__name__)

DEFAULT_DEPTH_SCALE = 5000.0  # TUM: 5000 units per metre
LIST_FILES = ("rgb.txt", "depth.txt", "groundtruth.txt")
LABEL_DIRS = ("semantic", "instance")
META_FILES = ("intrinsics.json", "classes.json", "sequence.json")
UINT16_MAX = np.iinfo(np.uint16).max
_TUM_DIR_CAMERA = re.compile(r"freiburg[123]")
_16BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)

# Drop reasons counted in TumSequence.dropped.
DROP_NO_DEPTH = "no_depth"
DROP_NO_POSE = "no_pose"
DROP_BAD_POSE = "bad_pose"


class SequenceError(ValueError):
    """A sequence on disk that cannot be read or written as asked; the message names the file."""


# --------------------------------------------------------------------------------------------
# txt lists
# --------------------------------------------------------------------------------------------


def _data_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(1-based line number, whitespace-split fields) of the non-comment, non-blank lines."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SequenceError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SequenceError(f"{path}: cannot read ({e})") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield lineno, line.split()


def _parse_stamp(token: str, path: Path, lineno: int) -> float:
    try:
        t = float(token)
    except ValueError:
        raise SequenceError(f"{path}:{lineno}: timestamp {token!r} is not a number") from None
    if not math.isfinite(t):
        raise SequenceError(f"{path}:{lineno}: timestamp {token!r} is not finite")
    return t


def read_image_list(path: Path) -> tuple[np.ndarray, list[str]]:
    """Parse an ``rgb.txt`` / ``depth.txt`` -> (stamps [N] float64, relative paths), in file order."""
    stamps, names = [], []
    for lineno, fields in _data_lines(path):
        if len(fields) != 2:
            raise SequenceError(
                f"{path}:{lineno}: expected 'timestamp filename', got {len(fields)} fields: {' '.join(fields)!r}"
            )
        stamps.append(_parse_stamp(fields[0], path, lineno))
        names.append(fields[1])
    return np.asarray(stamps, dtype=np.float64), names


def read_groundtruth(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse a ``groundtruth.txt`` -> (stamps [M] float64, rows [M, 7] = tx ty tz qx qy qz qw).

    Values may be NaN/inf (such rows are dropped later, at association); words are errors.
    """
    stamps, rows = [], []
    for lineno, fields in _data_lines(path):
        if len(fields) != 8:
            raise SequenceError(
                f"{path}:{lineno}: expected 'timestamp tx ty tz qx qy qz qw' (8 fields), got {len(fields)}"
            )
        stamps.append(_parse_stamp(fields[0], path, lineno))
        try:
            rows.append([float(v) for v in fields[1:]])
        except ValueError:
            raise SequenceError(f"{path}:{lineno}: pose values must be numbers, got {' '.join(fields[1:])!r}") from None
    return np.asarray(stamps, dtype=np.float64), np.asarray(rows, dtype=np.float64).reshape(-1, 7)


# --------------------------------------------------------------------------------------------
# association
# --------------------------------------------------------------------------------------------


def associate_unique(a: np.ndarray, b: np.ndarray, max_dt: float) -> np.ndarray:
    """Greedy unique matching of stamps ``a`` [N] to ``b`` [M] by ascending |dt| <= max_dt.

    Like TUM's ``associate.py``: the closest pair overall is matched first, then the next closest
    among the unmatched, and so on. Returns [N] int64 indices into ``b``, -1 where unmatched.
    """
    match = np.full(len(a), -1, dtype=np.int64)
    if len(a) == 0 or len(b) == 0:
        return match
    order = np.argsort(b, kind="stable")
    b_sorted = b[order]
    lo = np.searchsorted(b_sorted, a - max_dt, side="left")
    hi = np.searchsorted(b_sorted, a + max_dt, side="right")
    ia = np.repeat(np.arange(len(a)), hi - lo)  # candidate pairs within the window
    ib = np.concatenate([np.arange(l, h) for l, h in zip(lo, hi)]) if len(ia) else np.zeros(0, np.int64)
    dt = np.abs(a[ia] - b_sorted[ib])
    keep = dt <= max_dt
    ia, ib, dt = ia[keep], ib[keep], dt[keep]
    used_b = np.zeros(len(b), dtype=bool)
    for k in np.lexsort((ib, ia, dt)):  # by dt, ties by a then b: deterministic
        if match[ia[k]] < 0 and not used_b[ib[k]]:
            match[ia[k]] = order[ib[k]]
            used_b[ib[k]] = True
    return match


def associate_nearest(a: np.ndarray, b: np.ndarray, max_dt: float) -> np.ndarray:
    """Nearest stamp of ``b`` [M] (any may be reused) for each of ``a`` [N] within max_dt; -1 if none."""
    match = np.full(len(a), -1, dtype=np.int64)
    if len(a) == 0 or len(b) == 0:
        return match
    order = np.argsort(b, kind="stable")
    b_sorted = b[order]
    right = np.clip(np.searchsorted(b_sorted, a), 0, len(b) - 1)
    left = np.clip(right - 1, 0, len(b) - 1)
    pick = np.where(np.abs(a - b_sorted[left]) <= np.abs(a - b_sorted[right]), left, right)
    ok = np.abs(a - b_sorted[pick]) <= max_dt
    match[ok] = order[pick[ok]]
    return match


def _pose_or_none(row: np.ndarray) -> np.ndarray | None:
    """tx ty tz qx qy qz qw -> T [4, 4], or None when non-finite / zero quaternion / not rigid."""
    try:
        return validate_pose(pose_from_tq(row[:3], row[3:]), "groundtruth pose")
    except PoseError:
        return None


# --------------------------------------------------------------------------------------------
# image decoding
# --------------------------------------------------------------------------------------------


def _open_image(path: Path) -> Image.Image:
    """Open (header only) or raise SequenceError naming the file."""
    if not path.is_file():
        raise SequenceError(f"{path}: image file not found")
    try:
        return Image.open(path)
    except _DECODE_ERRORS as e:
        raise SequenceError(f"{path}: unreadable or corrupt image ({e})") from None


def _decode(im: Image.Image, path: Path) -> Image.Image:
    try:
        im.load()
    except _DECODE_ERRORS as e:
        raise SequenceError(f"{path}: unreadable or corrupt image ({e})") from None
    return im


def load_rgb(path: Path) -> np.ndarray:
    """Colour PNG (RGB, RGBA, palette or grey) -> [H, W, 3] uint8."""
    with _open_image(path) as im:
        im = _decode(im, path)
        return np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)


def _check_16bit(im: Image.Image, path: Path, what: str, allow_8bit: bool = False) -> None:
    ok = im.mode in _16BIT_MODES or (allow_8bit and im.mode == "L")
    if not ok:
        raise SequenceError(f"{path}: {what} must be a 16-bit single-channel PNG, got mode {im.mode!r}")


def load_uint16(path: Path, what: str, allow_8bit: bool = False) -> np.ndarray:
    """16-bit single-channel PNG (mode I;16, I;16B or I) -> [H, W] uint16.

    ``allow_8bit`` also accepts 8-bit grey (promoted), for label images.
    """
    with _open_image(path) as im:
        _check_16bit(im, path, what, allow_8bit)
        a = np.asarray(_decode(im, path))
    if a.ndim != 2:
        raise SequenceError(f"{path}: {what} must be single channel, got shape {a.shape}")
    if a.dtype.kind == "i" and a.size and (a.min() < 0 or a.max() > UINT16_MAX):
        raise SequenceError(f"{path}: {what} values outside the 16-bit range [{a.min()}, {a.max()}]")
    return a.astype(np.uint16)


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header."""
    with _open_image(path) as im:
        return im.size


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


@dataclass
class _SequenceFiles:
    """What the txt lists say, before association."""

    rgb_stamps: np.ndarray  # [N]
    rgb_names: list[str]
    depth_stamps: np.ndarray  # [D]
    depth_names: list[str]
    gt_stamps: np.ndarray | None  # [M], None without groundtruth.txt
    gt_rows: np.ndarray | None  # [M, 7]


class TumSequence:
    """An associated TUM RGB-D sequence; frames are decoded lazily on indexing.

    Built by :func:`read_tum`. ``seq[i]`` is a :class:`Frame` with float32 metric depth (0 where
    invalid) and uint16 labels (or None); negative indices work. ``poses`` is None when the sequence
    has no ground truth (frames then have ``T_world_cam = None``).
    """

    def __init__(
        self,
        root: Path,
        stamps: np.ndarray,
        poses: np.ndarray | None,
        rgb_paths: list[Path],
        depth_paths: list[Path],
        intrinsics: Intrinsics,
        depth_scale: float,
        classes: ClassTable | None = None,
        semantic_paths: list[Path] | None = None,
        instance_paths: list[Path] | None = None,
        dropped: dict[str, int] | None = None,
        meta: dict | None = None,
    ):
        self.root = Path(root)
        self.stamps = np.asarray(stamps, dtype=np.float64)  # [N] seconds, increasing
        self.poses = None if poses is None else np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4)  # [N, 4, 4]
        self.rgb_paths = list(rgb_paths)
        self.depth_paths = list(depth_paths)
        self.intrinsics = intrinsics
        self.depth_scale = float(depth_scale)
        self.classes = classes
        self.semantic_paths = semantic_paths
        self.instance_paths = instance_paths
        self.dropped = dict(dropped or {})
        self.meta = dict(meta or {})
        n = len(self.stamps)
        if not ((self.poses is None or len(self.poses) == n) and len(self.rgb_paths) == len(self.depth_paths) == n):
            raise SequenceError(f"{self.root}: inconsistent sequence lengths")

    @property
    def has_semantic(self) -> bool:
        return self.semantic_paths is not None

    @property
    def has_poses(self) -> bool:
        return self.poses is not None

    @property
    def has_instance(self) -> bool:
        return self.instance_paths is not None

    def __len__(self) -> int:
        return len(self.stamps)

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, i: int) -> Frame:
        n = len(self)
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"sequence index must be an integer, got {type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"frame index {i} out of range for a sequence of {n} frames")
        i = int(i) % n
        rgb = load_rgb(self.rgb_paths[i])  # [H, W, 3] uint8
        raw = load_uint16(self.depth_paths[i], "depth")  # [H, W] uint16
        H, W = self.intrinsics.height, self.intrinsics.width
        if rgb.shape[:2] != (H, W):
            raise SequenceError(
                f"{self.rgb_paths[i]}: image is {rgb.shape[1]}x{rgb.shape[0]} but the intrinsics are {W}x{H}"
            )
        if raw.shape != rgb.shape[:2]:
            raise SequenceError(
                f"{self.depth_paths[i]}: depth is {raw.shape[1]}x{raw.shape[0]} but the rgb image "
                f"{self.rgb_paths[i]} is {rgb.shape[1]}x{rgb.shape[0]}"
            )
        depth = (raw.astype(np.float64) / self.depth_scale).astype(np.float32)  # [H, W] metres, 0 = invalid
        semantic = self._labels(self.semantic_paths, i, rgb, "semantic")  # [H, W] uint16 | None
        instance = self._labels(self.instance_paths, i, rgb, "instance")  # [H, W] uint16 | None
        return Frame(
            rgb=rgb,
            depth=depth,
            intrinsics=self.intrinsics,
            T_world_cam=None if self.poses is None else self.poses[i].copy(),
            stamp=float(self.stamps[i]),
            semantic=semantic,
            instance=instance,
            meta={"rgb_path": str(self.rgb_paths[i]), "depth_path": str(self.depth_paths[i]), "index": i},
        )

    def _labels(self, paths: list[Path] | None, i: int, rgb: np.ndarray, what: str) -> np.ndarray | None:
        if paths is None:
            return None
        labels = load_uint16(paths[i], f"{what} labels", allow_8bit=True)
        if labels.shape != rgb.shape[:2]:
            raise SequenceError(
                f"{paths[i]}: {what} image is {labels.shape[1]}x{labels.shape[0]} but the rgb image "
                f"{self.rgb_paths[i]} is {rgb.shape[1]}x{rgb.shape[0]}"
            )
        return labels

    def __repr__(self) -> str:
        return (
            f"TumSequence({str(self.root)!r}, {len(self)} frames, {self.intrinsics.width}x{self.intrinsics.height}, "
            f"depth_scale={self.depth_scale:g}, semantic={self.has_semantic}, instance={self.has_instance})"
        )


def _read_lists(root: Path, require_poses: bool = True) -> _SequenceFiles:
    needed = LIST_FILES if require_poses else LIST_FILES[:2]
    for name in needed:
        if not (root / name).is_file():
            raise SequenceError(f"{root / name}: file not found (a TUM sequence needs {', '.join(needed)})")
    rgb_stamps, rgb_names = read_image_list(root / "rgb.txt")
    depth_stamps, depth_names = read_image_list(root / "depth.txt")
    gt_stamps = gt_rows = None
    if (root / "groundtruth.txt").is_file():
        gt_stamps, gt_rows = read_groundtruth(root / "groundtruth.txt")
    if len(rgb_stamps) == 0:
        raise SequenceError(f"{root / 'rgb.txt'}: lists no images")
    order = np.argsort(rgb_stamps, kind="stable")
    return _SequenceFiles(
        rgb_stamps[order], [rgb_names[k] for k in order], depth_stamps, depth_names, gt_stamps, gt_rows
    )


def _associate(files: _SequenceFiles, max_dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, int]]:
    """-> (kept rgb indices [K], depth indices [K], poses [K, 4, 4] or None without ground truth,
    dropped counts by reason)."""
    d_match = associate_unique(files.rgb_stamps, files.depth_stamps, max_dt)
    if files.gt_stamps is None:  # no ground truth: keep every frame with depth, pose unknown
        keep = np.flatnonzero(d_match >= 0).astype(np.int64)
        n_lost = len(d_match) - len(keep)
        return keep, d_match[keep], None, ({DROP_NO_DEPTH: n_lost} if n_lost else {})
    p_match = associate_nearest(files.rgb_stamps, files.gt_stamps, max_dt)
    keep, poses = [], []
    dropped = {DROP_NO_DEPTH: 0, DROP_NO_POSE: 0, DROP_BAD_POSE: 0}
    for i, (d, p) in enumerate(zip(d_match, p_match)):
        if d < 0:
            dropped[DROP_NO_DEPTH] += 1
            continue
        if p < 0:
            dropped[DROP_NO_POSE] += 1
            continue
        T = _pose_or_none(files.gt_rows[p])
        if T is None:
            dropped[DROP_BAD_POSE] += 1
            continue
        keep.append(i)
        poses.append(T)
    keep = np.asarray(keep, dtype=np.int64)
    return keep, d_match[keep], np.asarray(poses).reshape(-1, 4, 4), {k: v for k, v in dropped.items() if v}


def _load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SequenceError(f"{path}: cannot read JSON ({e})") from None


def _positive_scale(value, source: str) -> float:
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise SequenceError(f"{source}: depth_scale must be a number, got {value!r}") from None
    if not math.isfinite(s) or s <= 0:
        raise SequenceError(f"{source}: depth_scale must be a positive finite number, got {value!r}")
    return s


def _resolve_intrinsics(
    root: Path, intrinsics, record: dict | None, width: int, height: int, size_source: Path
) -> Intrinsics:
    """Explicit Intrinsics > string > intrinsics.json (``record``) > camera from a freiburgN directory name."""
    json_path = root / "intrinsics.json"
    if isinstance(intrinsics, Intrinsics):
        K, source = intrinsics, "the given intrinsics"
    elif isinstance(intrinsics, str):
        try:
            return Intrinsics.parse(intrinsics, width, height)
        except FrameError as e:
            raise SequenceError(f"{root}: {e}") from None
    elif intrinsics is not None:
        raise TypeError(f"intrinsics must be an Intrinsics, a string or None, got {type(intrinsics).__name__}")
    elif record is not None:
        try:
            K = Intrinsics.from_dict(record)
        except (FrameError, TypeError, ValueError, AttributeError) as e:
            raise SequenceError(f"{json_path}: invalid intrinsics ({e})") from None
        source = str(json_path)
    else:
        m = _TUM_DIR_CAMERA.search(root.name)
        if m is None:
            raise SequenceError(
                f"{root}: no camera intrinsics: pass intrinsics= (an Intrinsics, 'fx,fy,cx,cy' or a TUM "
                f"camera name: freiburg1/2/3, ros_default), add {json_path.name}, or use a TUM directory "
                "name containing freiburg1, freiburg2 or freiburg3"
            )
        return Intrinsics.tum(m.group(0), width, height)
    if (K.width, K.height) != (width, height):
        raise SequenceError(
            f"{source} are for {K.width}x{K.height} images but {size_source} is {width}x{height}"
        )
    return K


def _label_paths(root: Path, folder: str, rgb_paths: list[Path]) -> list[Path] | None:
    """``<root>/<folder>/<rgb file name>`` per frame, or None when the folder is absent."""
    d = root / folder
    if not d.is_dir():
        return None
    paths = [d / p.name for p in rgb_paths]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise SequenceError(
            f"{missing[0]}: {folder} image file not found ({len(missing)} of {len(paths)} frames lack one in {d})"
        )
    return paths


def read_tum(
    seq_dir,
    intrinsics: Intrinsics | str | None = None,
    depth_scale: float | None = None,
    max_dt: float = 0.02,
    require_poses: bool = True,
) -> TumSequence:
    """Open a TUM RGB-D sequence directory (see the module docstring for the layout).

    intrinsics: an :class:`Intrinsics` (must match the image size), ``"fx,fy,cx,cy"`` or a TUM
    camera name; None reads ``intrinsics.json`` or detects ``freiburg1|2|3`` in the directory name.
    depth_scale: raw depth units per metre; None reads ``intrinsics.json``'s, else 5000.
    max_dt: association window in seconds for depth and ground truth.
    require_poses: False accepts a sequence without ``groundtruth.txt``: its frames have
    ``T_world_cam = None`` (pose unknown) and ``seq.poses`` is None.

    Raises :class:`SequenceError` naming the offending file. Dropped frames are counted in
    ``seq.dropped`` (reasons ``no_depth``, ``no_pose``, ``bad_pose``) and logged as one warning.
    """
    root = Path(seq_dir)
    if not root.is_dir():
        raise SequenceError(f"{root}: sequence directory not found")
    if not (math.isfinite(max_dt) and max_dt >= 0):
        raise ValueError(f"max_dt must be a finite number >= 0, got {max_dt}")
    files = _read_lists(root, require_poses)
    keep, d_idx, poses, dropped = _associate(files, max_dt)
    n_rgb = len(files.rgb_stamps)
    if len(keep) == 0:
        why = ", ".join(f"{v} {k}" for k, v in dropped.items())
        raise SequenceError(
            f"{root}: no frames left after association within max_dt={max_dt} s: all {n_rgb} rgb frames "
            f"of rgb.txt were dropped ({why}); {len(files.depth_stamps)} depth images, "
            f"{0 if files.gt_stamps is None else len(files.gt_stamps)} groundtruth poses"
        )
    if dropped:
        log.warning("%s: dropped %d of %d frames (%s)", root, sum(dropped.values()), n_rgb,
                    ", ".join(f"{k}: {v}" for k, v in dropped.items()))

    rgb_paths = [root / files.rgb_names[k] for k in keep]
    depth_paths = [root / files.depth_names[k] for k in d_idx]
    width, height = _image_size(rgb_paths[0])
    _check_first_depth(depth_paths[0], rgb_paths[0], (width, height))

    json_path = root / "intrinsics.json"
    record = _load_json(json_path) if json_path.is_file() else None
    if record is not None and not isinstance(record, dict):
        raise SequenceError(f"{json_path}: expected a JSON object, got {type(record).__name__}")
    K = _resolve_intrinsics(root, intrinsics, record, width, height, rgb_paths[0])
    if depth_scale is not None:
        scale = _positive_scale(depth_scale, "read_tum")
    elif record is not None and "depth_scale" in record:
        scale = _positive_scale(record["depth_scale"], str(json_path))
    else:
        scale = DEFAULT_DEPTH_SCALE

    classes = None
    if (root / "classes.json").is_file():
        try:
            classes = ClassTable.from_json((root / "classes.json").read_text())
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SequenceError(f"{root / 'classes.json'}: invalid class table ({e})") from None
    meta = _load_json(root / "sequence.json") if (root / "sequence.json").is_file() else {}
    if not isinstance(meta, dict):
        raise SequenceError(f"{root / 'sequence.json'}: expected a JSON object, got {type(meta).__name__}")

    return TumSequence(
        root=root,
        stamps=files.rgb_stamps[keep],
        poses=poses,
        rgb_paths=rgb_paths,
        depth_paths=depth_paths,
        intrinsics=K,
        depth_scale=scale,
        classes=classes,
        semantic_paths=_label_paths(root, "semantic", rgb_paths),
        instance_paths=_label_paths(root, "instance", rgb_paths),
        dropped=dropped,
        meta=meta,
    )


def _check_first_depth(depth_path: Path, rgb_path: Path, rgb_size: tuple[int, int]) -> None:
    """Fail early on the commonest problems (wrong bit depth, size mismatch), from headers only."""
    with _open_image(depth_path) as im:
        _check_16bit(im, depth_path, "depth")
        if im.size != rgb_size:
            raise SequenceError(
                f"{depth_path}: depth is {im.size[0]}x{im.size[1]} but the rgb image {rgb_path} is "
                f"{rgb_size[0]}x{rgb_size[1]}"
            )


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------

_HEADERS = {
    "rgb.txt": ("# color images", "# timestamp filename"),
    "depth.txt": ("# depth maps", "# timestamp filename"),
    "groundtruth.txt": ("# ground truth trajectory", "# timestamp tx ty tz qx qy qz qw"),
}


class TumWriter:
    """Write frames as a TUM RGB-D sequence (plus our label folders and JSON records).

    Use as a context manager or call :meth:`close`. Frames must share the writer's intrinsics and
    have strictly increasing stamps (at the microsecond resolution of the file names). Labels and
    poses are all-or-none: the first frame decides whether semantic / instance images and
    groundtruth.txt lines are written (a recording without poses gets no groundtruth.txt).

    Counters: ``written`` frames, ``depth_clipped_pixels`` (depth beyond 65535 / depth_scale metres,
    written as 0 = invalid).
    """

    def __init__(
        self,
        out_dir,
        intrinsics: Intrinsics,
        depth_scale: float = DEFAULT_DEPTH_SCALE,
        classes: ClassTable | None = None,
        meta: dict | None = None,
        overwrite: bool = False,
    ):
        self.root = Path(out_dir)
        if not isinstance(intrinsics, Intrinsics):
            raise TypeError(f"intrinsics must be an Intrinsics, got {type(intrinsics).__name__}")
        self.intrinsics = intrinsics
        self.depth_scale = _positive_scale(depth_scale, "TumWriter")
        self.written = 0
        self.depth_clipped_pixels = 0
        self._last_stamp: float | None = None
        self._labels: dict[str, bool] | None = None  # decided by the first frame
        self._poses: bool | None = None  # decided by the first frame
        self._closed = False
        self._prepare_dir(overwrite)
        for sub in ("rgb", "depth"):
            (self.root / sub).mkdir(exist_ok=True)
        self._write_records(classes, meta)
        self._lists = {name: self._open_list(name) for name in LIST_FILES}

    # -- setup ---------------------------------------------------------------------------------

    def _prepare_dir(self, overwrite: bool) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise SequenceError(f"{self.root}: output path exists and is not a directory")
        if self.root.is_dir() and any(self.root.iterdir()):
            if not overwrite:
                raise SequenceError(f"{self.root}: output directory is not empty (pass overwrite=True to replace it)")
            self._clear_previous()
        self.root.mkdir(parents=True, exist_ok=True)

    def _clear_previous(self) -> None:
        """Remove what a previous sequence left here (only our files; anything else stays)."""
        for name in LIST_FILES + META_FILES:
            (self.root / name).unlink(missing_ok=True)
        for sub in ("rgb", "depth") + LABEL_DIRS:
            d = self.root / sub
            if d.is_dir():
                for p in d.glob("*.png"):
                    p.unlink()
                if not any(d.iterdir()):
                    shutil.rmtree(d)

    def _write_records(self, classes: ClassTable | None, meta: dict | None) -> None:
        rec = {**self.intrinsics.to_dict(), "depth_scale": self.depth_scale}
        (self.root / "intrinsics.json").write_text(json.dumps(rec, indent=1) + "\n")
        if classes is not None:
            (self.root / "classes.json").write_text(classes.to_json() + "\n")
        if meta is not None:
            try:
                text = json.dumps(meta, indent=1)
            except TypeError as e:
                raise SequenceError(f"{self.root / 'sequence.json'}: meta is not JSON-serialisable ({e})") from None
            (self.root / "sequence.json").write_text(text + "\n")

    def _open_list(self, name: str):
        f = open(self.root / name, "w")
        title, columns = _HEADERS[name]
        f.write(f"{title}\n# file: '{self.root.name}'\n{columns}\n")
        return f

    # -- writing -------------------------------------------------------------------------------

    def write(self, frame: Frame) -> None:
        """Append one frame: images, then its rgb/depth/groundtruth lines."""
        if self._closed:
            raise SequenceError(f"{self.root}: writer is closed")
        self._check_frame(frame)
        stamp = f"{frame.stamp:.6f}"
        name = f"{stamp}.png"
        Image.fromarray(np.ascontiguousarray(frame.rgb)).save(self.root / "rgb" / name)
        Image.fromarray(self._encode_depth(frame.depth)).save(self.root / "depth" / name)
        for what in LABEL_DIRS:
            labels = getattr(frame, what)
            if labels is not None:
                Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint16)).save(self.root / what / name)
        self._lists["rgb.txt"].write(f"{stamp} rgb/{name}\n")
        self._lists["depth.txt"].write(f"{stamp} depth/{name}\n")
        if self._poses:
            t, q = pose_to_tq(frame.T_world_cam)
            self._lists["groundtruth.txt"].write(f"{stamp} " + " ".join(f"{v:.9f}" for v in (*t, *q)) + "\n")
        self._last_stamp = float(stamp)
        self.written += 1

    def _check_frame(self, frame: Frame) -> None:
        if not isinstance(frame, Frame):
            raise TypeError(f"expected a Frame, got {type(frame).__name__}")
        if not _same_intrinsics(frame.intrinsics, self.intrinsics):
            raise SequenceError(
                f"{self.root}: frame at stamp {frame.stamp} has intrinsics {frame.intrinsics} but the "
                f"writer's are {self.intrinsics}"
            )
        stamp = float(f"{frame.stamp:.6f}")
        if self._last_stamp is not None and stamp <= self._last_stamp:
            raise SequenceError(
                f"{self.root / 'rgb.txt'}: stamps must be strictly increasing (at microsecond resolution), "
                f"got {frame.stamp:.6f} after {self._last_stamp:.6f}"
            )
        if self._poses is None:
            self._poses = frame.T_world_cam is not None
        elif self._poses != (frame.T_world_cam is not None):
            raise SequenceError(
                f"{self.root}: frame at stamp {frame.stamp:.6f} {'lacks' if self._poses else 'has'} a pose but the "
                "first frame did not; poses must be known in all frames or none"
            )
        has = {what: getattr(frame, what) is not None for what in LABEL_DIRS}
        if self._labels is None:
            self._labels = has
            for what, present in has.items():
                if present:
                    (self.root / what).mkdir(exist_ok=True)
        elif has != self._labels:
            raise SequenceError(
                f"{self.root}: frame at stamp {frame.stamp:.6f} has labels {has} but the first frame had "
                f"{self._labels}; semantic/instance must be present in all frames or none"
            )

    def _encode_depth(self, depth: np.ndarray) -> np.ndarray:
        """[H, W] float metres -> [H, W] uint16 units; invalid (0, <0, NaN, inf) and too far -> 0."""
        d = np.asarray(depth, dtype=np.float64)
        valid = np.isfinite(d) & (d > 0)
        units = np.zeros(d.shape, dtype=np.float64)
        units[valid] = np.round(d[valid] * self.depth_scale)
        too_far = units > UINT16_MAX
        n = int(too_far.sum())
        if n:
            if self.depth_clipped_pixels == 0:
                log.warning(
                    "%s: depth beyond %.3f m does not fit 16 bits at depth_scale %g; written as 0 (invalid)",
                    self.root, UINT16_MAX / self.depth_scale, self.depth_scale,
                )
            self.depth_clipped_pixels += n
            units[too_far] = 0
        return units.astype(np.uint16)

    def close(self) -> None:
        """Flush and close the txt lists; idempotent."""
        if self._closed:
            return
        for f in self._lists.values():
            f.close()
        if self._poses is False:  # no frame had a pose: no ground truth to offer
            (self.root / "groundtruth.txt").unlink(missing_ok=True)
        self._closed = True

    def __enter__(self) -> "TumWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _same_intrinsics(a: Intrinsics, b: Intrinsics, rtol: float = 1e-9) -> bool:
    if (a.width, a.height) != (b.width, b.height):
        return False
    return all(math.isclose(getattr(a, k), getattr(b, k), rel_tol=rtol, abs_tol=1e-9) for k in ("fx", "fy", "cx", "cy"))


def write_tum(
    out_dir,
    frames: Iterable[Frame],
    intrinsics: Intrinsics,
    depth_scale: float = DEFAULT_DEPTH_SCALE,
    classes: ClassTable | None = None,
    meta: dict | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> TumWriter:
    """Write all ``frames`` to ``out_dir`` with a progress bar; returns the closed writer (counters)."""
    total = len(frames) if hasattr(frames, "__len__") else None
    with TumWriter(out_dir, intrinsics, depth_scale, classes, meta, overwrite) as writer:
        bar = tqdm(frames, total=total, desc=f"writing {Path(out_dir).name}", unit="frame", disable=not progress)
        for frame in bar:
            writer.write(frame)
    return writer
