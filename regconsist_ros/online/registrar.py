"""The registration node's work without ROS: matched message fields -> Frame -> keyframes and view pairs.

The node (:mod:`regconsist_ros.ros.nodes.registration`) matches colour, depth, camera_info and pose
by stamp and turns each message into its plain fields (:mod:`regconsist_ros.ros.convert`:
``image_msg_fields``, ``camera_info_msg_fields``, ``pose_msg_fields``); everything after that is
here: decoding and validation (:func:`regconsist_ros.online.decode.frame_from_fields`), drop counting
by reason, keyframe selection and view pairs (:class:`regconsist_ros.online.keyframes.PairBuilder`),
and the numbers the node reports on /diagnostics.

Two steps, so that a node keeps up with a camera: :meth:`Registrar.admit` looks at every matched
set (decode, validate, keyframe decision: about a millisecond at 640x480) and returns a
:class:`~regconsist_ros.online.keyframes.PairJob` for a new keyframe; :meth:`Registrar.pairs` runs
such a job (overlap estimates and exact correspondences: the expensive part). Jobs wait in a
:class:`PairQueue` that keeps the newest ``pair_queue`` of them: when the pair search is slower
than keyframes arrive, the oldest waiting keyframe's search is skipped and counted
(``pair_searches.skipped.backlog``) -- the frame itself was looked at, decoded and published as
a keyframe, and it is still a candidate partner of later keyframes. :meth:`Registrar.register`
does both steps at once (offline use, tests).
"""
from __future__ import annotations

import logging
import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from regconsist_ros.online.counters import DropCounter, RateMeter
from regconsist_ros.online.decode import decode_depth, encode_depth, frame_from_fields, intrinsics_from_camera_info
from regconsist_ros.online.errors import BadInput
from regconsist_ros.online.keyframes import KeyframeConfig, PairBuilder, PairJob
from regconsist_ros.registration.geometry import CorrespondenceConfig
from regconsist_ros.registration.pairs import PairSelectionConfig
from regconsist_ros.sim.frame import Frame, FrameError

log = logging.getLogger(__name__)


@dataclass
class RegistrationNodeConfig:
    """Synchronisation, queues and output of the registration node."""

    tolerance: float = field(default=0.0, metadata={"help": "max stamp difference (s) between colour and depth (and pose with pose_match=nearest); 0 = automatic: half the slower stream's median period (16.7 ms at 30 Hz; 0.02 s until measured)"})
    sync_queue: int = field(default=30, metadata={"help": "messages kept per stream while matching"})
    work_queue: int = field(default=30, metadata={"help": "matched frames waiting for the frame worker, a jitter buffer (when full, the oldest waiting is dropped as 'busy')"})
    sync_queue_mb: float = field(default=256.0, metadata={"help": "memory cap of the messages held while matching, all streams together (MB; oldest dropped first as sync.memory_cap)"})
    work_queue_mb: float = field(default=256.0, metadata={"help": "memory cap of the matched sets waiting for the frame worker (MB; oldest dropped first as 'busy')"})
    pose_match: Literal["interpolate", "nearest"] = field(default="interpolate", metadata={"help": "interpolate: the pose at the colour stamp from the two poses around it (SLERP + linear); nearest: the nearest pose within tolerance"})
    pose_max_gap: float = field(default=0.25, metadata={"help": "pose_match=interpolate: max seconds between the two poses around a colour stamp (else dropped as sync.pose_gap)"})
    stamp_jump: float = field(default=0.25, metadata={"help": "a stamp further than max(this, 5 x the stream's median period) from the stream's newest is a jump: held, and dropped as sync.stamp_jump unless the next stamp continues from it"})
    stamp_max_ahead: float = field(default=10.0, metadata={"help": "a stamp more than this many seconds ahead of the node's clock is dropped as sync.stamp_jump (0 = no clock check; skipped while the clock reads 0)"})
    shutdown_timeout: float = field(default=60.0, metadata={"help": "seconds shutdown waits for a busy worker (one exact correspondence at most); a worker still busy after it makes the node exit 1 without waiting"})
    pair_queue: int = field(default=2, metadata={"help": "new keyframes waiting for the pair search; when full, the oldest waiting one is skipped (counted as pair_searches.skipped.backlog)"})
    threads: int = field(default=1, metadata={"help": "torch CPU threads of the pair search (0 = torch default); 1 leaves the other cores to the learner"})
    depth_unit: float = field(default=0.001, metadata={"help": "metres per 16UC1 depth unit (RealSense: 0.001)"})
    max_points: int = field(default=20000, metadata={"help": "correspondences published per view pair (0 = all)"})
    pose_source: Literal["topic", "tf", "odometry"] = field(default="topic", metadata={"help": "poses from camera/pose, from tf2 (when installed), or estimated by RGB-D odometry (odometry.* parameters; no pose topic; docs/odometry.md)"})
    world_frame: str = field(default="world", metadata={"help": "world frame for tf poses"})
    depth_registered: bool = field(default=True, metadata={"help": "depth is pixel-aligned to colour (camera/aligned_depth_to_color/image_raw); false: depth from camera/depth/image_rect_raw is registered to colour with camera/depth/camera_info and depth_to_color (z-buffered, holes invalid)"})
    depth_to_color: str = field(default="", metadata={"help": "depth_registered=false: T_color_depth 'x,y,z,qx,qy,qz,qw' taking the depth optical frame into the colour optical frame (m); '' = identity"})

    def __post_init__(self):
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"RegistrationNodeConfig.tolerance must be in [0, 1) s (0 = automatic), got {self.tolerance!r}")
        for f in ("sync_queue_mb", "work_queue_mb", "pose_max_gap", "stamp_jump", "shutdown_timeout"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise ValueError(f"RegistrationNodeConfig.{f} must be a positive number, got {v!r}")
        if not (math.isfinite(self.stamp_max_ahead) and self.stamp_max_ahead >= 0):
            raise ValueError(f"RegistrationNodeConfig.stamp_max_ahead must be >= 0 s (0 = off), got {self.stamp_max_ahead!r}")
        if self.pose_match not in ("interpolate", "nearest"):
            raise ValueError(f"RegistrationNodeConfig.pose_match must be interpolate or nearest, got {self.pose_match!r}")
        if self.sync_queue < 1 or self.work_queue < 1 or self.max_points < 0:
            raise ValueError(f"RegistrationNodeConfig: sync_queue, work_queue >= 1 and max_points >= 0 needed, got "
                             f"{self.sync_queue}, {self.work_queue}, {self.max_points}")
        if self.pair_queue < 1:
            raise ValueError(f"RegistrationNodeConfig.pair_queue must be >= 1, got {self.pair_queue!r}")
        if self.threads < 0:
            raise ValueError(f"RegistrationNodeConfig.threads must be >= 0 (0 = torch default), got {self.threads!r}")
        if not self.depth_unit > 0:
            raise ValueError(f"RegistrationNodeConfig.depth_unit must be > 0, got {self.depth_unit!r}")
        self.T_color_depth()  # validates depth_to_color

    def T_color_depth(self):
        """[4, 4] from ``depth_to_color`` (identity when empty)."""
        from regconsist_ros.sim.recordings.base import RecordingError, RecordingOptions

        try:
            T = RecordingOptions(extrinsics=self.depth_to_color).T_color_depth()
        except RecordingError as e:
            raise ValueError(f"RegistrationNodeConfig.depth_to_color: {e}") from None
        return T


def registered_depth_fields(depth: dict, depth_info: dict | None, info: dict | None, T_color_depth, depth_unit: float) -> dict:
    """Depth Image fields of the depth camera -> 32FC1 fields registered to the colour camera
    (:func:`regconsist_ros.sim.depth_register.register_depth`); BadInput("depth_info") without its camera_info."""
    from regconsist_ros.sim.depth_register import register_depth

    if depth_info is None:
        raise BadInput("depth_info", "depth_registered=false but no depth camera_info received yet")
    if info is None:
        raise BadInput("camera_info", "no camera_info received yet")
    K_d = intrinsics_from_camera_info(depth_info["width"], depth_info["height"], depth_info["k"],
                                      depth_info.get("distortion_model", ""), depth_info.get("d", ()))
    K_c = intrinsics_from_camera_info(info["width"], info["height"], info["k"], info.get("distortion_model", ""),
                                      info.get("d", ()))
    d = decode_depth(**depth, depth_unit=depth_unit)
    if d.shape != (K_d.height, K_d.width):
        raise BadInput("size_mismatch", f"depth is {d.shape[1]}x{d.shape[0]}, its camera_info {K_d.width}x{K_d.height}")
    return encode_depth(register_depth(d, K_d, K_c, T_color_depth), "32FC1")


def set_torch_threads(threads: int) -> None:
    """Torch CPU threads of this process (0 = leave torch's default); the node calls it once at start."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))


class Durations:
    """The last ``window`` durations of one kind of work: ``add(seconds)``, ``summary()`` in milliseconds.

    ``summary()``: ``{"n": all added so far, "p50", "p90", "max": over the window}`` (ms, rounded to
    0.01; zeros before the first). Thread-safe.
    """

    def __init__(self, window: int = 4096):
        if window < 1:
            raise ValueError(f"Durations.window must be >= 1, got {window}")
        self._last: deque[float] = deque(maxlen=int(window))
        self.n = 0
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._last.append(float(seconds))
            self.n += 1

    def summary(self) -> dict:
        import numpy as np

        with self._lock:
            ms = np.asarray(self._last, dtype=np.float64) * 1000.0
            n = self.n
        if not len(ms):
            return {"n": 0, "p50": 0.0, "p90": 0.0, "max": 0.0}
        return {"n": n, "p50": round(float(np.percentile(ms, 50)), 2), "p90": round(float(np.percentile(ms, 90)), 2),
                "max": round(float(ms.max()), 2)}


class PairQueue:
    """Pair jobs waiting for the pair worker: the newest ``size`` are kept. Thread-safe.

    :meth:`put` returns the job it pushed out (the oldest waiting) when the queue was full, else
    None; :meth:`get` returns the oldest waiting job, or None after ``timeout`` seconds.
    """

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"PairQueue.size must be >= 1, got {size}")
        self._jobs: deque = deque()
        self.size = int(size)
        self._cv = threading.Condition()

    def put(self, job):
        with self._cv:
            evicted = self._jobs.popleft() if len(self._jobs) >= self.size else None
            self._jobs.append(job)
            self._cv.notify()
            return evicted

    def get(self, timeout: float | None = None):
        with self._cv:
            if not self._cv.wait_for(lambda: bool(self._jobs), timeout):
                return None
            return self._jobs.popleft()

    def __len__(self) -> int:
        with self._cv:
            return len(self._jobs)


class WorkQueue:
    """Matched sets waiting for the frame worker, capped by count and bytes; the oldest goes first. Thread-safe.

    :meth:`put` returns the items it pushed out to make room (the newest item is always kept, even
    alone over the byte cap); :meth:`get` returns the oldest, or None after ``timeout`` seconds.
    """

    def __init__(self, max_items: int, max_bytes: int):
        if max_items < 1 or max_bytes < 1:
            raise ValueError(f"WorkQueue needs max_items >= 1 and max_bytes >= 1, got {max_items}, {max_bytes}")
        self.max_items, self.max_bytes = int(max_items), int(max_bytes)
        self._items: deque = deque()  # (item, nbytes)
        self._nbytes = 0
        self._cv = threading.Condition()

    def put(self, item, nbytes: int = 0) -> list:
        with self._cv:
            self._items.append((item, int(nbytes)))
            self._nbytes += int(nbytes)
            out = []
            while len(self._items) > 1 and (len(self._items) > self.max_items or self._nbytes > self.max_bytes):
                old, nb = self._items.popleft()
                self._nbytes -= nb
                out.append(old)
            self._cv.notify()
            return out

    def get(self, timeout: float | None = None):
        with self._cv:
            if not self._cv.wait_for(lambda: bool(self._items), timeout):
                return None
            item, nb = self._items.popleft()
            self._nbytes -= nb
            return item

    def qsize(self) -> int:
        with self._cv:
            return len(self._items)

    @property
    def nbytes(self) -> int:
        with self._cv:
            return self._nbytes


class Registrar:
    """Matched sets of message fields in, validated frames and view pairs out; bad input counted, not raised.

    ``counter`` (a :class:`DropCounter`) counts every set: accepted, or dropped by the
    :class:`BadInput` reason (``encoding``, ``size_mismatch``, ``camera_info``, ``pose_non_rigid``, ...)
    or ``frame`` (the Frame's own checks). The caller may count its own reasons on it too (``busy``).
    ``pair_counter`` counts the pair searches of new keyframes: done (accepted), or skipped by
    reason (``backlog``: see :meth:`skip`; ``error``).
    """

    def __init__(self, cfg: RegistrationNodeConfig | None = None, kf: KeyframeConfig | None = None,
                 pairs: PairSelectionConfig | None = None, corr: CorrespondenceConfig | None = None,
                 counter: DropCounter | None = None, rate_window_s: float = 10.0, odom=None):
        self.cfg = cfg or RegistrationNodeConfig()
        self.counter = counter if counter is not None else DropCounter(log, "registration")
        self.pair_counter = DropCounter(log, f"{self.counter.name} pair search")
        self.builder = PairBuilder(kf, pairs, corr)
        self.keyframes = 0  # frames that became keyframes
        self.pairs_total = 0  # view pairs returned
        self.pairs_rate = RateMeter(rate_window_s)
        self.frame_time = Durations()  # per matched set: the node's time from message fields to its keyframe published
        self.pair_time = Durations()  # per pair search of a keyframe: overlaps, correspondences, pairs published
        self._lock = threading.Lock()
        self._T_color_depth = None if self.cfg.depth_registered else self.cfg.T_color_depth()
        self.odometry = None  # pose_source=odometry: poses from RGB-D odometry (odom: its OdometryConfig)
        if self.cfg.pose_source == "odometry":
            from regconsist_ros.online.odometry_poses import OdometryPoses

            self.odometry = OdometryPoses(odom, self.counter)

    def frame(self, stamp: float, color: dict, depth: dict, info: dict | None, pose, depth_info: dict | None = None) -> Frame | None:
        """Decoded, validated Frame (fields as :func:`~regconsist_ros.online.decode.frame_from_fields` takes
        them), or None (the reason is counted). With ``depth_registered`` false, ``depth`` is the depth
        camera's image and ``depth_info`` its CameraInfo fields: depth is registered to colour first.
        With ``pose_source`` odometry, ``pose`` is ignored (None is fine) and the pose is estimated
        (:mod:`regconsist_ros.online.odometry_poses`; a bad estimate is counted as ``odometry.<reason>``)."""
        if self.odometry is not None:
            from regconsist_ros.online.odometry_poses import IDENTITY_POSE

            pose = IDENTITY_POSE
        try:
            if not self.cfg.depth_registered:
                depth = registered_depth_fields(depth, depth_info, info, self._T_color_depth, self.cfg.depth_unit)
            frame = frame_from_fields(stamp, color, depth, info, pose, self.cfg.depth_unit)
        except BadInput as e:
            self.counter.drop(e.reason, e.message)
            return None
        except FrameError as e:
            self.counter.drop("frame", str(e))
            return None
        if self.odometry is not None:
            from regconsist_ros.online.odometry_poses import fresh_builder

            frame, reset = self.odometry.apply(frame)
            if frame is None:
                return None
            if reset:  # a new odometry segment: its poses do not match the kept keyframes'
                self.builder = fresh_builder(self.builder)
        self.counter.accept()
        return frame

    def admit(self, stamp: float, color: dict, depth: dict, info: dict | None, pose,
              depth_info: dict | None = None) -> tuple[Frame | None, PairJob | None]:
        """``(frame or None when dropped, its PairJob when it became a keyframe, else None)``. Cheap."""
        frame = self.frame(stamp, color, depth, info, pose, depth_info)
        if frame is None:
            return None, None
        job = self.builder.admit(frame)
        if job is not None:
            with self._lock:
                self.keyframes += 1
        return frame, job

    def pairs(self, job: PairJob | None, stop=None) -> list[dict]:
        """The view pairs of a job from :meth:`admit`, as :meth:`regconsist_ros.online.keyframes.PairBuilder.pairs`
        returns them (the expensive step; ``stop`` cuts it short between correspondences). A job that
        raises is counted as ``error`` and re-raised."""
        if job is None:
            return []
        try:
            pairs = self.builder.pairs(job, stop)
        except Exception as e:
            self.pair_counter.drop("error", f"keyframe @ {job.frame.stamp:.6f}: {type(e).__name__}: {e}")
            raise
        self.pair_counter.accept()
        with self._lock:
            self.pairs_total += len(pairs)
        if pairs:
            self.pairs_rate.tick(len(pairs))
        return pairs

    def skip(self, job: PairJob, reason: str = "backlog") -> None:
        """Count a job that will not run: ``backlog`` when newer keyframes pushed it out of the queue."""
        self.builder.skip(job)
        self.pair_counter.drop(reason, f"keyframe @ {job.frame.stamp:.6f}: pair search skipped "
                                       f"(the pair search is slower than keyframes arrive)")

    def register(self, stamp: float, color: dict, depth: dict, info: dict | None, pose,
                 depth_info: dict | None = None) -> tuple[Frame | None, bool, list[dict]]:
        """``(frame or None when dropped, whether it became a keyframe, its view pairs)``: :meth:`admit` and
        :meth:`pairs` at once; pairs as :meth:`regconsist_ros.online.keyframes.PairBuilder.add` returns them."""
        frame, job = self.admit(stamp, color, depth, info, pose, depth_info)
        return frame, job is not None, self.pairs(job)

    def status(self, sync: DropCounter | None = None) -> tuple[dict, str]:
        """``(values, level)`` for the node's diagnostics; drops of the stamp matcher ``sync`` as ``sync.<reason>``."""
        snap = self.counter.snapshot()
        searches = self.pair_counter.snapshot()
        sync_dropped = sync.snapshot()["dropped"] if sync is not None else {}
        dropped = {**{f"sync.{k}": v for k, v in sync_dropped.items()}, **snap["dropped"]}
        values = {"frames_received": snap["received"], "frames_registered": snap["accepted"],
                  "dropped": dropped, "dropped_total": sum(dropped.values()),
                  "keyframes": self.keyframes, "keyframes_kept": len(self.builder.keyframes),
                  "keyframes_mb": round(self.builder.nbytes / 2**20, 1), "view_pairs": self.pairs_total, "pairs_per_s": self.pairs_rate.rate(),
                  "pair_searches": {"done": searches["accepted"], "skipped": searches["dropped"]},
                  "keyframes_unpaired": searches["dropped_total"],
                  "frame_ms": self.frame_time.summary(), "pair_ms": self.pair_time.summary(),
                  **{f"builder.{k}": v for k, v in self.builder.counts.items()},
                  **(self.odometry.status() if self.odometry is not None else {})}
        return values, "warn" if snap["received"] and not snap["accepted"] else "ok"
