"""``pose_source: odometry`` in the registration core: poses of a pose-less stream from RGB-D odometry.

:class:`OdometryPoses` sits between decoding and keyframe selection in
:class:`regconsist_ros.online.registrar.Registrar`: every decoded frame gets its T_world_cam from
:class:`regconsist_ros.sim.odometry.Odometry` (the world is the first frame's camera), or is
dropped and counted on the registrar's counter as ``odometry.<reason>`` (``no_depth``, ``solver``,
``fitness``, ``rmse``, ``translation``, ``rotation``; /diagnostics shows them under ``dropped``).
When the track restarts (``odometry.reset_after`` failures in a row) the new segment's poses do
not share a world frame with the old keyframes, so the registrar forgets them
(:func:`fresh_builder`): pairs never join two segments.
"""
from __future__ import annotations

import dataclasses
import threading

from regconsist_ros.online.counters import DropCounter
from regconsist_ros.sim.frame import Frame
from regconsist_ros.sim.odometry import Odometry, OdometryConfig

IDENTITY_POSE = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0))  # pose fields standing in until odometry sets the pose


class OdometryPoses:
    """Frames in (stamp order), frames with odometry poses out; bad estimates counted on ``counter``."""

    def __init__(self, cfg: OdometryConfig | None, counter: DropCounter):
        from regconsist_ros.online.registrar import Durations

        self.odometry = Odometry(cfg or OdometryConfig())
        self.counter = counter
        self.time = Durations()
        self.last_fitness = float("nan")
        self._lock = threading.Lock()

    def apply(self, frame: Frame) -> tuple[Frame | None, bool]:
        """``(frame with its estimated pose, whether it starts a new segment)``, or ``(None, False)`` when the
        estimate was dropped (counted as ``odometry.<reason>``)."""
        with self._lock:
            e = self.odometry.update(frame)
            self.time.add(e.ms / 1000.0)
            if e.ok and e.fitness == e.fitness:
                self.last_fitness = float(e.fitness)
        if not e.ok:
            self.counter.drop(f"odometry.{e.reason}", f"frame @ {frame.stamp:.6f}: {e.detail}")
            return None, False
        meta = {**frame.meta, "pose_source": "odometry", "odometry_segment": e.segment}
        return dataclasses.replace(frame, T_world_cam=e.pose, meta=meta), e.reset

    def status(self) -> dict:
        """Values for /diagnostics: ``odometry.{accepted, keyframes, resets, retried, segment, fitness, ms}``."""
        with self._lock:
            c = dict(self.odometry.counts)
            seg, fit = self.odometry.segment, self.last_fitness
        return {"odometry.accepted": c["accepted"], "odometry.keyframes": c["keyframes"],
                "odometry.resets": c["resets"], "odometry.retried": c["retried"], "odometry.segment": seg,
                "odometry.fitness": round(fit, 3) if fit == fit else None, "odometry.ms": self.time.summary()}


def fresh_builder(old):
    """A PairBuilder like ``old`` without its keyframes (a new odometry segment), counting on in the same counts."""
    from regconsist_ros.online.keyframes import PairBuilder

    new = PairBuilder(old.cfg, old.pair_cfg, old.corr_cfg)
    new.counts = old.counts
    return new
