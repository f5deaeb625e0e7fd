"""Online view pairs: keyframes from a stream of frames, paired with recent keyframes by overlap IoU.

A frame becomes a keyframe when it moved or turned enough since the last keyframe. Each new
keyframe's overlap IoU with up to ``candidates`` recent keyframes is estimated with
:func:`regconsist_ros.registration.pairs.pair_overlaps` (every ``stride``-th pixel warped into
the full-resolution target), and pairs inside the :class:`PairSelectionConfig` IoU band get exact
correspondences from :func:`regconsist_ros.registration.geometry.correspond`.

The work comes in two steps of very different cost. :meth:`PairBuilder.admit` looks at every frame
(valid depth, motion since the last keyframe; about a millisecond at 640x480) and, for a new
keyframe, returns a :class:`PairJob`: the keyframe and the candidates it is to be compared with,
fixed at that moment. :meth:`PairBuilder.pairs` runs a job (overlap estimates, then exact
correspondences: tens to hundreds of milliseconds). :meth:`PairBuilder.add` does both at once; a
caller that must keep up with a camera (the registration node) admits every frame on one thread
and runs jobs on another, and may :meth:`PairBuilder.skip` a job it has no time for. Either way a
job's pairs are the same: they depend only on the keyframe and its candidates.

Of the PairSelectionConfig only the band (``iou_low``, ``iou_high``) and ``batch`` are used:
index gaps between keyframes are bounded by ``candidates``, and the pixel stride is
``KeyframeConfig.stride``. Keyframes hold whole frames: at 640x480 one is about 2.1 MB
(colour + depth), so the default 200 keyframes take about 420 MB; ``max_mb`` (512) caps their
bytes too (a 4096x4096 keyframe is 117 MB), the oldest evicted first and counted (``evicted``).
"""
from __future__ import annotations

import dataclasses
import math
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from regconsist_ros.registration.geometry import CorrespondenceConfig, RegistrationError, correspond
from regconsist_ros.registration.pairs import PairSelectionConfig, pair_overlaps
from regconsist_ros.sim.frame import Frame


def frame_bytes(frame: Frame) -> int:
    """Bytes of a frame's arrays (colour, depth and labels when present)."""
    return int(sum(a.nbytes for a in (frame.rgb, frame.depth, getattr(frame, "semantic", None),
                                      getattr(frame, "instance", None)) if isinstance(a, np.ndarray)))


@dataclass
class KeyframeConfig:
    """When a frame becomes a keyframe, and how many keyframes a new one is compared with."""

    min_translation: float = field(default=0.1, metadata={"help": "metres moved since the last keyframe that make a keyframe"})
    min_rotation_deg: float = field(default=10.0, metadata={"help": "degrees turned since the last keyframe that make a keyframe"})
    max_keyframes: int = field(default=200, metadata={"help": "keyframes kept (oldest dropped)"})
    max_mb: float = field(default=512.0, metadata={"help": "memory cap of the kept keyframes (MB of colour + depth; oldest evicted first, counted as builder.evicted; the newest is always kept)"})
    candidates: int = field(default=8, metadata={"help": "recent keyframes each new keyframe is compared with"})
    stride: int = field(default=4, metadata={"help": "pixel stride for the IoU estimate"})

    def __post_init__(self):
        if not (math.isfinite(self.min_translation) and self.min_translation >= 0):
            raise ValueError(f"KeyframeConfig.min_translation must be >= 0, got {self.min_translation}")
        if not (math.isfinite(self.min_rotation_deg) and 0 <= self.min_rotation_deg <= 180):
            raise ValueError(f"KeyframeConfig.min_rotation_deg must be in [0, 180], got {self.min_rotation_deg}")
        if not (math.isfinite(self.max_mb) and self.max_mb > 0):
            raise ValueError(f"KeyframeConfig.max_mb must be > 0 MB, got {self.max_mb}")
        if self.max_keyframes < 2:
            raise ValueError(f"KeyframeConfig.max_keyframes must be >= 2, got {self.max_keyframes}")
        if not 1 <= self.candidates < self.max_keyframes:
            raise ValueError(f"KeyframeConfig.candidates must be in [1, max_keyframes), got {self.candidates}")
        if self.stride < 1:
            raise ValueError(f"KeyframeConfig.stride must be >= 1, got {self.stride}")


def motion(T_a: np.ndarray, T_b: np.ndarray) -> tuple[float, float]:
    """(translation in metres, rotation in degrees) between two camera poses."""
    dt = float(np.linalg.norm(T_b[:3, 3] - T_a[:3, 3]))
    c = (np.trace(T_a[:3, :3].T @ T_b[:3, :3]) - 1.0) / 2.0
    return dt, math.degrees(math.acos(float(np.clip(c, -1.0, 1.0))))


@dataclass
class PairJob:
    """A new keyframe and the recent keyframes (same image size, newest first) it is to be paired with."""

    frame: Frame
    candidates: list[Frame]


class PairBuilder:
    """Feed frames with :meth:`add` (or :meth:`admit`, then :meth:`pairs`); get view pairs back.

    ``counts``: frames seen, keyframes made, candidate pairs checked, pairs returned, frames
    skipped for having no valid depth (``no_depth``), pairs skipped because exact correspondence
    failed or came out empty (``empty``), keyframes whose pair search was skipped (``unpaired``,
    see :meth:`skip`), keyframes evicted by the count or byte cap (``evicted``) and pair searches
    cut short by a stop request (``stopped``). Thread-safe: :meth:`admit` calls are serialised, and
    jobs may run on other threads meanwhile.
    """

    def __init__(self, cfg: KeyframeConfig | None = None, pair_cfg: PairSelectionConfig | None = None,
                 corr_cfg: CorrespondenceConfig | None = None):
        self.cfg = cfg or KeyframeConfig()
        self.pair_cfg = pair_cfg or PairSelectionConfig()
        self.corr_cfg = corr_cfg or CorrespondenceConfig()
        self._iou_cfg = dataclasses.replace(self.pair_cfg, stride=self.cfg.stride)
        self._keyframes: deque[Frame] = deque()
        self._nbytes = 0
        self.max_bytes = int(self.cfg.max_mb * 2**20)
        self.counts = {"frames": 0, "keyframes": 0, "candidates": 0, "pairs": 0, "no_depth": 0, "empty": 0,
                       "unpaired": 0, "evicted": 0, "stopped": 0}
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes of the kept keyframes."""
        with self._lock:
            return self._nbytes

    @property
    def keyframes(self) -> list[Frame]:
        with self._lock:
            return list(self._keyframes)

    def is_keyframe(self, frame: Frame) -> bool:
        """Whether ``frame`` moved or turned enough since the last keyframe (the first always does)."""
        with self._lock:
            last = self._keyframes[-1] if self._keyframes else None
        if last is None:
            return True
        dt, dr = motion(last.T_world_cam, frame.T_world_cam)
        return dt >= self.cfg.min_translation or dr >= self.cfg.min_rotation_deg

    def _count(self, **n: int) -> None:
        with self._lock:
            for k, v in n.items():
                self.counts[k] += v

    def admit(self, frame: Frame) -> PairJob | None:
        """Look at ``frame``: when it becomes a keyframe (kept, counted), its :class:`PairJob`; otherwise None.

        Cheap (a depth-validity test and a pose comparison). A job's candidates are the
        ``candidates`` most recent earlier keyframes of the same image size, possibly none.
        """
        if not isinstance(frame, Frame):
            raise TypeError(f"PairBuilder.admit needs a regconsist_ros.sim.frame.Frame, got {type(frame).__name__}")
        d = frame.depth
        has_depth = bool(np.any((d >= max(self.corr_cfg.min_depth, 1e-9)) & (d <= self.corr_cfg.max_range)))
        with self._lock:
            self.counts["frames"] += 1
            if not has_depth:
                self.counts["no_depth"] += 1
                return None
            if self._keyframes:
                dt, dr = motion(self._keyframes[-1].T_world_cam, frame.T_world_cam)
                if dt < self.cfg.min_translation and dr < self.cfg.min_rotation_deg:
                    return None
            # candidates: most recent keyframes of the same image size (pair_overlaps stacks depth maps)
            cands = [kf for kf in reversed(self._keyframes) if kf.size == frame.size][: self.cfg.candidates]
            self._keyframes.append(frame)
            self._nbytes += frame_bytes(frame)
            self.counts["keyframes"] += 1
            while len(self._keyframes) > 1 and (len(self._keyframes) > self.cfg.max_keyframes
                                                or self._nbytes > self.max_bytes):
                self._nbytes -= frame_bytes(self._keyframes.popleft())
                self.counts["evicted"] += 1
        return PairJob(frame, cands)

    def skip(self, job: PairJob) -> None:
        """Count a job that will not run (``counts["unpaired"]``); the keyframe stays a candidate of later ones."""
        self._count(unpaired=1)

    def pairs(self, job: PairJob | None, stop=None) -> list[dict]:
        """The view pairs of a keyframe's job (``[]`` for None or no candidates).

        ``stop`` (a callable or a ``threading.Event``): checked before each exact correspondence;
        once it is set, the search returns the pairs found so far (counted as ``stopped``), so a
        shutdown waits for at most one correspondence.

        Each pair: ``{"src": older keyframe, "dst": new keyframe, "overlap_iou": strided estimate
        (the value the band was applied to), "overlap_iou_exact": full-resolution IoU, "uv1": [M, 2]
        float32 integer pixel coordinates (x, y) in src, "uv2": [M, 2] float32 sub-pixel (x, y) in
        dst}`` (field names of :class:`regconsist_ros.registration.geometry.Correspondences`), in
        the order of the src stamps.
        """
        if job is None or not job.candidates:
            return []
        cands, frame = job.candidates, job.frame
        n = len(cands)
        ious = pair_overlaps(cands + [frame], [(i, n) for i in range(n)], self._iou_cfg, self.corr_cfg)
        out, empty = [], 0
        stopped = (stop.is_set if hasattr(stop, "is_set") else stop) if stop is not None else (lambda: False)
        for kf, iou in sorted(zip(cands, ious), key=lambda p: float(p[0].stamp)):
            if not self.pair_cfg.iou_low <= iou <= self.pair_cfg.iou_high:
                continue
            if stopped():
                self._count(stopped=1)
                break
            try:
                c = correspond(kf, frame, self.corr_cfg)
            except RegistrationError:
                c = None
            if c is None or len(c) == 0:
                empty += 1
                continue
            out.append({"src": kf, "dst": frame, "overlap_iou": float(iou), "overlap_iou_exact": float(c.overlap_iou),
                        "uv1": c.uv1, "uv2": c.uv2})
        self._count(candidates=n, pairs=len(out), empty=empty)
        return out

    def add(self, frame: Frame) -> list[dict]:
        """Consider ``frame``; when it becomes a keyframe, return its pairs with recent keyframes
        (:meth:`admit` then :meth:`pairs`; pairs as :meth:`pairs` returns them)."""
        if not isinstance(frame, Frame):
            raise TypeError(f"PairBuilder.add needs a regconsist_ros.sim.frame.Frame, got {type(frame).__name__}")
        return self.pairs(self.admit(frame))
