"""``PATH?poses=odometry``: a recording whose poses come from RGB-D odometry (:mod:`regconsist_ros.sim.odometry`).

``poses=recording`` (the default) keeps the reader's poses (none for a recording without them);
``poses=odometry`` estimates every frame's pose, replacing recorded ones (what the odometry
benchmark compares against them); ``poses=auto`` estimates them only when the recording has none.
Odometry settings are ``odometry.<field>=value`` options (the fields of
:class:`~regconsist_ros.sim.odometry.OdometryConfig`, the same dotted names as the registration
node's parameters), e.g. ``seq?poses=odometry&odometry.method=hybrid``.

The poses are estimated once, when the recording is opened (every frame read once, in stamp
order). Frames whose estimate failed the checks are left out and counted in ``dropped`` as
``odometry.<reason>``; when the track restarted (``odometry.reset_after``), only its longest
segment is kept (poses of two segments do not share a world frame) and the others are counted
as ``odometry.segment``. The first frame posed is the world (identity pose).
"""
from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from regconsist_ros.sim.frame import Frame
from regconsist_ros.sim.recordings.base import ColorFrame, Recording, RecordingError

log = logging.getLogger(__name__)

POSE_MODES = ("recording", "odometry", "auto")
PREFIX = "odometry."


def odometry_config(values: dict):
    """``{"method": "hybrid", "iterations": "20,10,5", ...}`` (strings from a data spec, or typed values)
    -> OdometryConfig; RecordingError naming the option when a value is unknown or invalid."""
    from regconsist_ros.config import ConfigError, build
    from regconsist_ros.sim.odometry import OdometryConfig
    from regconsist_ros.sim.recordings.base import _bool

    defaults = {f.name: f.default for f in dataclasses.fields(OdometryConfig)}
    typed = {}
    for k, v in values.items():
        if k not in defaults:
            raise RecordingError(f"unknown recording option {PREFIX}{k}; known: {', '.join(PREFIX + n for n in defaults)}")
        kind = type(defaults[k])
        if isinstance(v, str) and kind is not str:
            try:
                if kind is tuple:  # "20,10,5"
                    v = [type(defaults[k][0])(x) for x in v.replace(" ", "").split(",") if x]
                else:
                    v = _bool(v) if kind is bool else kind(v)
            except ValueError as e:
                raise RecordingError(f"recording option {PREFIX}{k}={v!r}: {e}") from None
        typed[k] = v
    try:
        return build(OdometryConfig, typed)
    except (ConfigError, ValueError) as e:
        raise RecordingError(f"recording option: {str(e).replace('OdometryConfig.', PREFIX)}") from None


class OdometryRecording(Recording):
    """``inner``'s frames with poses estimated by RGB-D odometry (see the module docstring).

    ``index`` [M]: the inner frame of each kept frame; ``recorded_poses`` [M]: the inner recording's
    own poses of the kept frames (None where it has none): ground truth for the benchmark;
    ``trajectory``: the whole :class:`~regconsist_ros.sim.odometry.Trajectory` (every inner frame).
    """

    def __init__(self, inner: Recording, cfg=None, progress: bool = False):
        from regconsist_ros.sim.odometry import OdometryConfig, estimate_trajectory

        super().__init__()
        if not inner.has_depth:
            raise RecordingError(f"{inner.source}: poses=odometry needs depth, and this {inner.layout} recording "
                                 "has colour only")
        self.inner, self.cfg = inner, cfg or OdometryConfig()
        self.layout, self.root, self.intrinsics = inner.layout, inner.root, inner.intrinsics
        self.has_depth, self.has_poses = True, True
        self.classes, self.has_semantic, self.has_instance = inner.classes, inner.has_semantic, inner.has_instance
        self.source = f"{inner.source} (poses from RGB-D odometry)"
        n, t0 = len(inner), time.perf_counter()
        recorded: list = [None] * n

        def frames():
            for i in range(n):
                f = inner.frame_or_drop(i)
                if isinstance(f, Frame):
                    recorded[i] = f.T_world_cam
                if progress and i and i % 100 == 0:
                    log.info("%s: odometry %d/%d frames", inner.source, i, n)
                yield f

        tr = estimate_trajectory(frames(), self.cfg)
        seg = tr.largest_segment()
        self.trajectory = tr
        self.index = np.array([i for i in range(n) if tr.segments[i] == seg and seg >= 0], np.int64)
        if not len(self.index):
            raise RecordingError(f"{inner.source}: RGB-D odometry gave no pose for any of its {n} frames "
                                 f"(dropped: {tr.dropped()}); see docs/odometry.md for the odometry.* options")
        self._poses = [tr.poses[i] for i in self.index]
        self.recorded_poses = [recorded[i] for i in self.index]
        self.stamps = np.asarray(inner.stamps, np.float64)[self.index]
        self.names = [inner.names[i] for i in self.index]
        self.dropped = dict(inner.dropped)
        for k, v in tr.dropped(keep_segment=seg).items():
            self.dropped[k] = self.dropped.get(k, 0) + v
        seconds = time.perf_counter() - t0
        self.meta = {**inner.meta, "poses": "odometry",
                     "odometry": {"frames": n, "kept": len(self.index), "segment": seg,
                                  "segments": int(tr.segments.max()) + 1 if n else 0, "counts": dict(tr.counts),
                                  "ms_per_frame": round(1000 * seconds / max(n, 1), 1),
                                  "config": dataclasses.asdict(self.cfg)}}
        log.info("%s: RGB-D odometry posed %d of %d frames in %.1f s (%s)", inner.source, len(self.index), n, seconds,
                 ", ".join(f"{k}: {v}" for k, v in tr.dropped(keep_segment=seg).items()) or "none dropped")

    def frame(self, i: int) -> Frame:
        f = self.inner.frame(int(self.index[i]))
        meta = {**f.meta, "pose_source": "odometry"}
        return dataclasses.replace(f, T_world_cam=self._poses[i].copy(), meta=meta)

    def color(self, i: int) -> ColorFrame:
        return self.inner.color(int(self.index[i]))

    def close(self) -> None:
        self.inner.close()

    def describe(self) -> dict:
        return {**super().describe(), "poses": "odometry", "odometry": self.meta["odometry"]}


def with_poses(rec: Recording, mode: str, cfg=None) -> Recording:
    """``rec`` as ``poses=mode`` asks (see the module docstring)."""
    if mode not in POSE_MODES:
        raise RecordingError(f"poses={mode!r}: choose one of {', '.join(POSE_MODES)}")
    if mode == "recording" or (mode == "auto" and rec.has_poses):
        return rec
    return OdometryRecording(rec, cfg)
