"""Camera poses from RGB-D odometry when a stream or recording has none (Open3D's tensor RGB-D odometry).

Keyframe to frame: each new frame is aligned to the current keyframe with
``open3d.t.pipelines.odometry.rgbd_odometry_multi_scale`` (``method``: point-to-plane ICP on the
depth maps, the photometric term, or both), starting from a constant-velocity guess and from the
last pose (``inits``: the better estimate of the two that pass the checks is kept). A frame becomes the new keyframe when it moved or turned enough
since the keyframe, or when its alignment got weak (tracking degrades). ``T_world_cam`` of the
first frame is the world (identity unless given).

Every estimate is checked before it is used, and a bad one is dropped with its reason (the
drop-counter keys of :data:`REASONS`, counted as ``odometry.<reason>`` by the readers and the
registration core):

- ``no_depth``: fewer than ``min_valid_depth`` of the pixels have depth in (0, ``depth_max``];
- ``solver``: Open3D gave up (a singular system: nothing to align);
- ``overlap``: under ``min_overlap`` of the frame's valid depth pixels land, warped by the estimate,
  inside the keyframe on valid depth (our own check, the same for every method);
- ``fitness``: under ``min_fitness`` of those overlapping pixels agree with the keyframe's depth
  within ``inlier_distance`` (inliers);
- ``rmse``: the depth residual of the inliers has an RMS above ``max_rmse``;
- ``translation`` / ``rotation``: the motion since the last accepted frame exceeds
  ``max_translation`` / ``max_rotation_deg`` per frame period (periods from the stamps).

After ``reset_after`` failures in a row the track restarts: the next frame with depth becomes a
keyframe of a new *segment* at the last accepted pose (the motion in between is unknown, so poses
of two segments are not consistent with each other; :func:`estimate_trajectory` says which frame
is in which, and consumers keep one segment or forget older keyframes).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Literal

import numpy as np

from regconsist_ros.sim.frame import Frame, Intrinsics
from regconsist_ros.sim.poses import invert

REASONS = ("no_depth", "solver", "overlap", "fitness", "rmse", "translation", "rotation")
METHODS = ("point_to_plane", "hybrid", "intensity")


@dataclass
class OdometryConfig:
    """RGB-D odometry (poses for cameras without them): alignment, failure checks, keyframes."""

    method: Literal["point_to_plane", "hybrid", "intensity"] = field(default="point_to_plane", metadata={"help": "Open3D tensor RGB-D odometry term: point_to_plane (ICP on depth), intensity (photometric) or hybrid (both); docs/odometry.md compares them"})
    width: int = field(default=320, metadata={"help": "odometry runs on images downsampled by the smallest integer factor that brings the width to at most this (0 = full resolution)"})
    depth_max: float = field(default=4.0, metadata={"help": "depth beyond this (m) is ignored by the alignment and the checks"})
    iterations: tuple[int, ...] = field(default=(20, 10, 5), metadata={"help": "Gauss-Newton iterations per pyramid level, coarsest first (the number of levels is the length)"})
    depth_outlier: float = field(default=0.07, metadata={"help": "Open3D depth_outlier_trunc: correspondences further apart than this (m) are ignored while aligning"})
    depth_huber: float = field(default=0.05, metadata={"help": "Open3D depth_huber_delta (m)"})
    intensity_huber: float = field(default=0.1, metadata={"help": "Open3D intensity_huber_delta (intensity in [0, 1])"})
    inlier_distance: float = field(default=0.05, metadata={"help": "check: a warped depth pixel is an inlier when its depth is within this (m) of the keyframe's"})
    min_overlap: float = field(default=0.3, metadata={"help": "check: least fraction of the frame's valid depth pixels that must land on the keyframe's valid depth (else dropped as odometry.overlap)"})
    min_fitness: float = field(default=0.7, metadata={"help": "check: least fraction of those overlapping pixels that must be inliers (else dropped as odometry.fitness)"})
    max_rmse: float = field(default=0.02, metadata={"help": "check: largest RMS depth residual (m) of the inliers (else dropped as odometry.rmse)"})
    max_translation: float = field(default=0.25, metadata={"help": "check: largest translation (m) per frame period since the last accepted frame (else dropped as odometry.translation)"})
    max_rotation_deg: float = field(default=15.0, metadata={"help": "check: largest rotation (degrees) per frame period since the last accepted frame (else dropped as odometry.rotation)"})
    min_valid_depth: float = field(default=0.1, metadata={"help": "least fraction of pixels with depth in (0, depth_max] (else dropped as odometry.no_depth)"})
    keyframe_translation: float = field(default=0.15, metadata={"help": "a frame this far (m) from the keyframe becomes the keyframe"})
    keyframe_rotation_deg: float = field(default=7.5, metadata={"help": "a frame turned this much (degrees) from the keyframe becomes the keyframe"})
    keyframe_overlap: float = field(default=0.7, metadata={"help": "an accepted frame whose overlap with the keyframe falls below this becomes the keyframe"})
    keyframe_fitness: float = field(default=0.85, metadata={"help": "an accepted frame whose fitness falls below this becomes the keyframe (tracking degrades)"})
    inits: Literal["both", "fallback", "velocity"] = field(default="both", metadata={"help": "starting guesses: both = align from the constant-velocity guess and from the last pose, keep the better (fitness x overlap) of those passing the checks; fallback = the last pose only when the first fails; velocity = the constant-velocity guess only"})
    reset_after: int = field(default=10, metadata={"help": "failures in a row after which the track restarts as a new segment (0 = never)"})

    def __post_init__(self):
        if self.inits not in ("both", "fallback", "velocity"):
            raise ValueError(f"OdometryConfig.inits must be both, fallback or velocity, got {self.inits!r}")
        if self.method not in METHODS:
            raise ValueError(f"OdometryConfig.method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if isinstance(self.width, bool) or not isinstance(self.width, int) or not (self.width == 0 or self.width >= 16):
            raise ValueError(f"OdometryConfig.width must be 0 (full resolution) or >= 16 pixels, got {self.width!r}")
        self.iterations = tuple(self.iterations)
        if not self.iterations or len(self.iterations) > 5 or any(
                isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in self.iterations):
            raise ValueError(f"OdometryConfig.iterations must be 1 to 5 positive integers (one per pyramid level), "
                             f"got {self.iterations!r}")
        for name in ("depth_max", "depth_outlier", "depth_huber", "intensity_huber", "inlier_distance", "max_rmse",
                     "max_translation", "max_rotation_deg", "keyframe_translation", "keyframe_rotation_deg"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise ValueError(f"OdometryConfig.{name} must be a positive number, got {v!r}")
        for name in ("min_overlap", "min_fitness", "min_valid_depth", "keyframe_overlap", "keyframe_fitness"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError(f"OdometryConfig.{name} must be a fraction in [0, 1], got {v!r}")
        if self.max_rotation_deg > 180 or self.keyframe_rotation_deg > 180:
            raise ValueError(f"OdometryConfig rotations must be <= 180 degrees, got max_rotation_deg="
                             f"{self.max_rotation_deg!r}, keyframe_rotation_deg={self.keyframe_rotation_deg!r}")
        if isinstance(self.reset_after, bool) or not isinstance(self.reset_after, int) or self.reset_after < 0:
            raise ValueError(f"OdometryConfig.reset_after must be an integer >= 0 (0 = never), got {self.reset_after!r}")


@dataclass
class Estimate:
    """What :meth:`Odometry.update` says about one frame.

    ``pose``: [4, 4] T_world_cam, or None when the frame is dropped (``reason`` one of
    :data:`REASONS`, ``detail`` in words). ``overlap`` / ``fitness`` / ``rmse`` (m): the check's numbers (NaN
    when not aligned: the first frame, a reset, no depth). ``keyframe``: the frame became the
    keyframe. ``segment``: the track segment (0 until the first reset; ``reset`` marks a frame that
    starts a new one). ``ms``: time spent on this frame.
    """

    pose: np.ndarray | None
    reason: str = ""
    detail: str = ""
    fitness: float = float("nan")
    rmse: float = float("nan")
    keyframe: bool = False
    overlap: float = float("nan")
    segment: int = 0
    reset: bool = False
    ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.pose is not None


def rotation_deg(R: np.ndarray) -> float:
    """Angle (degrees) of a rotation matrix [3, 3], accurate near 0 and 180 (atan2 of sine and cosine parts)."""
    R = np.asarray(R, dtype=np.float64)
    s = 0.5 * math.sqrt((R[2, 1] - R[1, 2]) ** 2 + (R[0, 2] - R[2, 0]) ** 2 + (R[1, 0] - R[0, 1]) ** 2)
    c = 0.5 * (float(np.trace(R)) - 1.0)
    return math.degrees(math.atan2(s, c))


def relative_motion(T_a: np.ndarray, T_b: np.ndarray) -> tuple[float, float]:
    """(translation in m, rotation in degrees) of ``inv(T_a) @ T_b``."""
    D = invert(T_a) @ T_b
    return float(np.linalg.norm(D[:3, 3])), rotation_deg(D[:3, :3])


def downsample_factor(width: int, max_width: int) -> int:
    """Smallest integer factor bringing ``width`` to at most ``max_width`` (1 when ``max_width`` is 0)."""
    return 1 if max_width <= 0 else max(1, -(-int(width) // int(max_width)))


def _subsampled(frame: Frame, s: int) -> tuple[np.ndarray, np.ndarray, Intrinsics]:
    """(rgb [h, w, 3] uint8, depth [h, w] float32, intrinsics) every ``s``-th pixel (pixel centres kept exact)."""
    K = frame.intrinsics
    if s == 1:
        return frame.rgb, frame.depth, K
    rgb = np.ascontiguousarray(frame.rgb[::s, ::s])
    depth = np.ascontiguousarray(frame.depth[::s, ::s])
    h, w = depth.shape
    # pixel (x', y') of the subsampled image is pixel (s x', s y') of the original
    return rgb, depth, Intrinsics(K.fx / s, K.fy / s, K.cx / s, K.cy / s, w, h)


def depth_agreement(src_depth: np.ndarray, dst_depth: np.ndarray, K: Intrinsics, T_dst_src: np.ndarray,
                    inlier_distance: float, depth_max: float, stride: int = 1) -> tuple[float, float, float, int]:
    """How well ``src_depth`` warped by ``T_dst_src`` lands on ``dst_depth`` (same camera ``K``, both [H, W] m).

    Every ``stride``-th valid source pixel (depth in (0, depth_max]) is back-projected, moved into
    the destination camera and projected to its nearest pixel; it is an inlier when that pixel has
    valid depth (it *overlaps*) within ``inlier_distance`` of the point's depth. Returns ``(fitness =
    inliers / overlapping pixels, RMS depth residual of the inliers in m (NaN when none), overlap =
    overlapping / valid source pixels, valid source pixels)``.
    """
    d = src_depth[::stride, ::stride].astype(np.float64)  # [h, w]
    ys, xs = np.mgrid[0:src_depth.shape[0]:stride, 0:src_depth.shape[1]:stride]
    valid = np.isfinite(d) & (d > 0) & (d <= depth_max)
    n = int(valid.sum())
    if n == 0:
        return 0.0, float("nan"), 0.0, 0
    z = d[valid]
    P = np.stack([(xs[valid] - K.cx) / K.fx * z, (ys[valid] - K.cy) / K.fy * z, z])  # [3, n]
    Q = T_dst_src[:3, :3] @ P + T_dst_src[:3, 3:4]  # [3, n]
    front = Q[2] > 1e-6
    zq = np.where(front, Q[2], 1.0)
    u = np.rint(K.fx * Q[0] / zq + K.cx)
    v = np.rint(K.fy * Q[1] / zq + K.cy)
    inside = front & (u >= 0) & (u < dst_depth.shape[1]) & (v >= 0) & (v < dst_depth.shape[0])
    r = np.full(n, np.inf)
    ui, vi = u[inside].astype(np.int64), v[inside].astype(np.int64)
    dt = dst_depth[vi, ui].astype(np.float64)
    ok = np.isfinite(dt) & (dt > 0) & (dt <= depth_max)
    r_in = np.where(ok, Q[2][inside] - dt, np.inf)
    r[inside] = r_in
    m = int(ok.sum())
    inl = np.abs(r) < inlier_distance
    k = int(inl.sum())
    return (k / m if m else 0.0), (float(np.sqrt(np.mean(r[inl] ** 2))) if k else float("nan")), m / n, n


class _Keyframe:
    """A keyframe as the aligner needs it: Open3D RGBD image, depth, pose."""

    def __init__(self, image, depth: np.ndarray, pose: np.ndarray, stamp: float):
        self.image, self.depth, self.pose, self.stamp = image, depth, pose, stamp


class Odometry:
    """Incremental RGB-D odometry: :meth:`update` each frame in stamp order -> :class:`Estimate`.

    ``initial_pose``: T_world_cam given to the first frame (identity by default: the world is the
    first camera). ``counts``: accepted, dropped per reason, keyframes, resets. Not thread-safe:
    one caller (the registration core's frame worker, or :func:`estimate_trajectory`).
    """

    def __init__(self, cfg: OdometryConfig | None = None, initial_pose: np.ndarray | None = None):
        import open3d as o3d  # noqa: F401  (a clear ImportError here, not mid-stream)

        self.cfg = cfg or OdometryConfig()
        self._o3d = o3d
        self._origin = np.eye(4) if initial_pose is None else np.asarray(initial_pose, np.float64).copy()
        self.counts: dict[str, int] = {"frames": 0, "accepted": 0, "keyframes": 0, "resets": 0, "retried": 0,
                                       **{r: 0 for r in REASONS}}
        self.segment = 0
        self._kf: _Keyframe | None = None
        self._last: tuple[np.ndarray, float] | None = None  # (pose, stamp) of the last accepted frame
        self._velocity: np.ndarray | None = None  # [4, 4] motion per frame period, camera frame
        self._periods: deque[float] = deque(maxlen=32)
        self._prev_stamp: float | None = None
        self._failures = 0
        self._factor: int | None = None

    # ---- Open3D --------------------------------------------------------------------------------------
    def _image(self, rgb: np.ndarray, depth: np.ndarray):
        o3c, tg = self._o3d.core, self._o3d.t.geometry
        color = tg.Image(o3c.Tensor(np.ascontiguousarray(rgb, dtype=np.float32) / 255.0))  # [h, w, 3] in [0, 1]
        d = np.where(np.isfinite(depth), depth, 0).astype(np.float32)
        return tg.RGBDImage(color, tg.Image(o3c.Tensor(np.ascontiguousarray(d))))  # depth in m (scale 1)

    def _align(self, src, K: Intrinsics, init: np.ndarray) -> np.ndarray:
        """T_kf_src (source camera -> keyframe camera) from Open3D, starting at ``init``; RuntimeError when it fails."""
        o3c, odo = self._o3d.core, self._o3d.t.pipelines.odometry
        c = self.cfg
        method = {"point_to_plane": odo.Method.PointToPlane, "hybrid": odo.Method.Hybrid,
                  "intensity": odo.Method.Intensity}[c.method]
        res = odo.rgbd_odometry_multi_scale(
            src, self._kf.image, o3c.Tensor(K.K, o3c.float64), o3c.Tensor(np.ascontiguousarray(init), o3c.float64),
            1.0, float(c.depth_max), [odo.OdometryConvergenceCriteria(int(n)) for n in c.iterations], method,
            odo.OdometryLossParams(float(c.depth_outlier), float(c.depth_huber), float(c.intensity_huber)))
        T = res.transformation.numpy().astype(np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise RuntimeError("non-finite transformation")
        # re-orthonormalise (float32 accumulation inside Open3D)
        U, _, Vt = np.linalg.svd(T[:3, :3])
        T[:3, :3] = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
        return T

    # ---- the track -------------------------------------------------------------------------------------
    def _periods_between(self, stamp: float) -> float:
        """Frame periods between the last accepted frame and ``stamp`` (>= 1; 1 without usable stamps)."""
        if self._last is None or not self._periods:
            return 1.0
        period = float(np.median(self._periods))
        dt = stamp - self._last[1]
        return max(1.0, dt / period) if period > 0 and dt > 0 else 1.0

    def _drop(self, reason: str, detail: str, t0: float, fitness=float("nan"), rmse=float("nan"),
              overlap=float("nan")) -> Estimate:
        import time

        self.counts[reason] += 1
        self._failures += 1
        return Estimate(None, reason, detail, fitness, rmse, segment=self.segment, overlap=overlap,
                        ms=(time.perf_counter() - t0) * 1e3)

    def _start(self, image, depth, stamp: float, t0: float, reset: bool) -> Estimate:
        import time

        pose = self._origin if self._last is None else self._last[0]
        if reset:
            self.segment += 1
            self.counts["resets"] += 1
            self._velocity = None
        self._kf = _Keyframe(image, depth, pose.copy(), stamp)
        self._last = (pose.copy(), stamp)
        self._failures = 0
        self.counts["accepted"] += 1
        self.counts["keyframes"] += 1
        return Estimate(pose.copy(), keyframe=True, segment=self.segment, reset=reset,
                        ms=(time.perf_counter() - t0) * 1e3)

    def update(self, frame: Frame) -> Estimate:
        """Estimate ``frame``'s T_world_cam (its own pose, if any, is ignored); frames in stamp order."""
        import time

        t0 = time.perf_counter()
        c = self.cfg
        self.counts["frames"] += 1
        stamp = float(frame.stamp)
        if self._prev_stamp is not None and stamp > self._prev_stamp:
            self._periods.append(stamp - self._prev_stamp)
        self._prev_stamp = stamp
        if self._factor is None:
            self._factor = downsample_factor(frame.intrinsics.width, c.width)
        rgb, depth, K = _subsampled(frame, self._factor)
        if self._kf is not None and (K.width, K.height) != (self._kf.depth.shape[1], self._kf.depth.shape[0]):
            self._factor = downsample_factor(frame.intrinsics.width, c.width)  # the camera changed: start over
            rgb, depth, K = _subsampled(frame, self._factor)
            self._kf = None
        valid = float(np.mean(np.isfinite(depth) & (depth > 0) & (depth <= c.depth_max)))
        if valid < c.min_valid_depth:
            out = self._drop("no_depth", f"{valid:.1%} of the pixels have depth in (0, {c.depth_max}] m "
                                         f"(min_valid_depth {c.min_valid_depth:.0%})", t0)
            return out
        image = self._image(rgb, depth)
        if self._kf is None:
            return self._start(image, depth, stamp, t0, reset=False)
        if c.reset_after and self._failures >= c.reset_after:
            return self._start(image, depth, stamp, t0, reset=True)

        k = self._periods_between(stamp)
        T_kf_last = invert(self._kf.pose) @ self._last[0]
        inits = []
        if self._velocity is not None:
            inits.append(("constant velocity", T_kf_last @ _power(self._velocity, k)))
        if not inits or c.inits != "velocity":
            inits.append(("last pose", T_kf_last))
        stride = max(1, int(math.sqrt(depth.size / 20000.0)))
        best, passed = None, None
        for i, (what, init) in enumerate(inits):
            if i and c.inits == "fallback":
                self.counts["retried"] += 1
            try:
                T = self._align(image, K, init)
            except RuntimeError as e:
                cand = ("solver", f"Open3D odometry failed from the {what}: {str(e).strip().splitlines()[-1][:200]}",
                        float("nan"), float("nan"), float("nan"))
            else:
                fit, rmse, ovl, _ = depth_agreement(depth, self._kf.depth, K, T, c.inlier_distance, c.depth_max, stride)
                pose = self._kf.pose @ T
                dt, dr = relative_motion(self._last[0], pose)
                if ovl < c.min_overlap:
                    why = ("overlap", f"overlap {ovl:.3f} < min_overlap {c.min_overlap}")
                elif fit < c.min_fitness:
                    why = ("fitness", f"fitness {fit:.3f} < min_fitness {c.min_fitness}")
                elif not rmse <= c.max_rmse:
                    why = ("rmse", f"inlier RMSE {rmse:.4f} m > max_rmse {c.max_rmse}")
                elif dt > c.max_translation * k:
                    why = ("translation", f"moved {dt:.3f} m in {k:.1f} frame periods > max_translation "
                                          f"{c.max_translation} m per frame")
                elif dr > c.max_rotation_deg * k:
                    why = ("rotation", f"turned {dr:.1f} deg in {k:.1f} frame periods > max_rotation_deg "
                                       f"{c.max_rotation_deg} per frame")
                else:
                    if c.inits != "both":
                        return self._accept(image, depth, stamp, pose, T, fit, rmse, ovl, k, t0)
                    if passed is None or fit * ovl > passed[0]:
                        passed = (fit * ovl, (image, depth, stamp, pose, T, fit, rmse, ovl, k, t0))
                    continue
                cand = (why[0], f"{why[1]} (from the {what})", fit, rmse, ovl)
            score = np.nan_to_num(cand[2] * cand[4], nan=-1.0)
            if best is None or score > best[0]:
                best = (score, cand)
        if passed is not None:
            return self._accept(*passed[1])
        return self._drop(*best[1][:2], t0, *best[1][2:])

    def _accept(self, image, depth, stamp, pose, T_kf_cur, fit, rmse, ovl, k, t0) -> Estimate:
        import time

        c = self.cfg
        step = invert(self._last[0]) @ pose  # motion since the last accepted frame, k periods
        self._velocity = _power(step, 1.0 / k) if k > 1 else step
        self._last = (pose.copy(), stamp)
        self._failures = 0
        self.counts["accepted"] += 1
        dt, dr = float(np.linalg.norm(T_kf_cur[:3, 3])), rotation_deg(T_kf_cur[:3, :3])
        key = (dt >= c.keyframe_translation or dr >= c.keyframe_rotation_deg or fit < c.keyframe_fitness
               or ovl < c.keyframe_overlap)
        if key:
            self._kf = _Keyframe(image, depth, pose.copy(), stamp)
            self.counts["keyframes"] += 1
        return Estimate(pose.copy(), fitness=fit, rmse=rmse, keyframe=key, segment=self.segment, overlap=ovl,
                        ms=(time.perf_counter() - t0) * 1e3)


def _power(T: np.ndarray, a: float) -> np.ndarray:
    """``T`` to the real power ``a`` (screw-linear: rotation angle and translation scaled by ``a``)."""
    if a == 1.0:
        return T.copy()
    from scipy.spatial.transform import Rotation

    out = np.eye(4)
    out[:3, :3] = Rotation.from_rotvec(Rotation.from_matrix(T[:3, :3]).as_rotvec() * a).as_matrix()
    out[:3, 3] = T[:3, 3] * a  # small motions: the first-order screw interpolation is enough for a guess
    return out


@dataclass
class Trajectory:
    """Poses of a whole recording from :func:`estimate_trajectory` (index i = the i-th frame given).

    ``poses``: [N] of [4, 4] or None (dropped or unreadable); ``reasons``: "" or the drop reason
    (``unreadable`` for an input that was not a Frame); ``segments`` [N] int (-1 = no pose);
    ``fitness`` [N], ``rmse`` [N] (m) of the checks; ``counts`` as :attr:`Odometry.counts`; ``ms`` [N] per frame.
    """

    poses: list
    reasons: list
    segments: np.ndarray
    fitness: np.ndarray
    rmse: np.ndarray
    counts: dict
    ms: np.ndarray

    def largest_segment(self) -> int:
        """The segment with the most posed frames (-1 when none)."""
        seg = self.segments[self.segments >= 0]
        return int(np.bincount(seg).argmax()) if len(seg) else -1

    def dropped(self, keep_segment: int | None = None) -> dict[str, int]:
        """``{"odometry.<reason>": n}`` (``unreadable`` without the prefix: the reader's); with
        ``keep_segment``, posed frames of other segments count as ``odometry.segment``."""
        out: dict[str, int] = {}
        for r in self.reasons:
            if r:
                key = r if r == "unreadable" else f"odometry.{r}"
                out[key] = out.get(key, 0) + 1
        if keep_segment is not None:
            n = int(np.sum((self.segments >= 0) & (self.segments != keep_segment)))
            if n:
                out["odometry.segment"] = n
        return out


def estimate_trajectory(frames: Iterable, cfg: OdometryConfig | None = None,
                        initial_pose: np.ndarray | None = None) -> Trajectory:
    """Poses of every frame of a pose-less recording (frames in stamp order; a non-Frame item, e.g. a
    reader's FrameDrop, is skipped as ``unreadable``). See :class:`Trajectory`."""
    odo = Odometry(cfg, initial_pose)
    poses, reasons, segs, fits, rmses, ms = [], [], [], [], [], []
    for f in frames:
        e = odo.update(f) if isinstance(f, Frame) else Estimate(None, "unreadable")
        poses.append(e.pose), reasons.append(e.reason), fits.append(e.fitness), rmses.append(e.rmse), ms.append(e.ms)
        segs.append(e.segment if e.ok else -1)
    return Trajectory(poses, reasons, np.asarray(segs, np.int64), np.asarray(fits, np.float64),
                      np.asarray(rmses, np.float64), dict(odo.counts), np.asarray(ms, np.float64))
