"""The registration node's work without ROS: matched message fields -> Frame -> keyframes and view pairs.

The node (:mod:`regconsist_ros.ros.nodes.registration`) matches colour, depth, camera_info and pose
by stamp and turns each message into its plain fields (:mod:`regconsist_ros.ros.convert`:
``image_msg_fields``, ``camera_info_msg_fields``, ``pose_msg_fields``); everything after that is
here: decoding and validation (:func:`regconsist_ros.online.decode.frame_from_fields`), drop counting
by reason, keyframe selection and view pairs (:class:`regconsist_ros.online.keyframes.PairBuilder`),
and the numbers the node reports on /diagnostics.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

from regconsist_ros.online.counters import DropCounter, RateMeter
from regconsist_ros.online.decode import frame_from_fields
from regconsist_ros.online.errors import BadInput
from regconsist_ros.online.keyframes import KeyframeConfig, PairBuilder
from regconsist_ros.registration.geometry import CorrespondenceConfig
from regconsist_ros.registration.pairs import PairSelectionConfig
from regconsist_ros.sim.frame import Frame, FrameError

log = logging.getLogger(__name__)


@dataclass
class RegistrationNodeConfig:
    """Synchronisation, queues and output of the registration node."""

    tolerance: float = field(default=0.02, metadata={"help": "max stamp difference (s) between colour, depth and pose"})
    sync_queue: int = field(default=30, metadata={"help": "messages kept per stream while matching"})
    work_queue: int = field(default=4, metadata={"help": "matched frames waiting for the worker (more are dropped as 'busy')"})
    depth_unit: float = field(default=0.001, metadata={"help": "metres per 16UC1 depth unit (RealSense: 0.001)"})
    max_points: int = field(default=20000, metadata={"help": "correspondences published per view pair (0 = all)"})
    pose_source: Literal["topic", "tf"] = field(default="topic", metadata={"help": "poses from camera/pose, or from tf2 (when installed)"})
    world_frame: str = field(default="world", metadata={"help": "world frame for tf poses"})

    def __post_init__(self):
        if not 0 < self.tolerance < 1:
            raise ValueError(f"RegistrationNodeConfig.tolerance must be in (0, 1) s, got {self.tolerance!r}")
        if self.sync_queue < 1 or self.work_queue < 1 or self.max_points < 0:
            raise ValueError(f"RegistrationNodeConfig: sync_queue, work_queue >= 1 and max_points >= 0 needed, got "
                             f"{self.sync_queue}, {self.work_queue}, {self.max_points}")
        if not self.depth_unit > 0:
            raise ValueError(f"RegistrationNodeConfig.depth_unit must be > 0, got {self.depth_unit!r}")


class Registrar:
    """Matched sets of message fields in, validated frames and view pairs out; bad input counted, not raised.

    ``counter`` (a :class:`DropCounter`) counts every set: accepted, or dropped by the
    :class:`BadInput` reason (``encoding``, ``size_mismatch``, ``camera_info``, ``pose_non_rigid``, ...)
    or ``frame`` (the Frame's own checks). The caller may count its own reasons on it too (``busy``).
    """

    def __init__(self, cfg: RegistrationNodeConfig | None = None, kf: KeyframeConfig | None = None,
                 pairs: PairSelectionConfig | None = None, corr: CorrespondenceConfig | None = None,
                 counter: DropCounter | None = None, rate_window_s: float = 10.0):
        self.cfg = cfg or RegistrationNodeConfig()
        self.counter = counter if counter is not None else DropCounter(log, "registration")
        self.builder = PairBuilder(kf, pairs, corr)
        self.keyframes = 0  # frames that became keyframes
        self.pairs_total = 0  # view pairs returned
        self.pairs_rate = RateMeter(rate_window_s)

    def frame(self, stamp: float, color: dict, depth: dict, info: dict | None, pose) -> Frame | None:
        """Decoded, validated Frame (fields as :func:`~regconsist_ros.online.decode.frame_from_fields` takes
        them), or None (the reason is counted)."""
        try:
            frame = frame_from_fields(stamp, color, depth, info, pose, self.cfg.depth_unit)
        except BadInput as e:
            self.counter.drop(e.reason, e.message)
            return None
        except FrameError as e:
            self.counter.drop("frame", str(e))
            return None
        self.counter.accept()
        return frame

    def register(self, stamp: float, color: dict, depth: dict, info: dict | None, pose) -> tuple[Frame | None, bool, list[dict]]:
        """``(frame or None when dropped, whether it became a keyframe, its view pairs)``; pairs as
        :meth:`regconsist_ros.online.keyframes.PairBuilder.add` returns them."""
        frame = self.frame(stamp, color, depth, info, pose)
        if frame is None:
            return None, False, []
        before = self.builder.counts["keyframes"]
        pairs = self.builder.add(frame)
        is_keyframe = self.builder.counts["keyframes"] > before
        self.keyframes += int(is_keyframe)
        self.pairs_total += len(pairs)
        if pairs:
            self.pairs_rate.tick(len(pairs))
        return frame, is_keyframe, pairs

    def status(self, sync: DropCounter | None = None) -> tuple[dict, str]:
        """``(values, level)`` for the node's diagnostics; drops of the stamp matcher ``sync`` as ``sync.<reason>``."""
        snap = self.counter.snapshot()
        sync_dropped = sync.snapshot()["dropped"] if sync is not None else {}
        dropped = {**{f"sync.{k}": v for k, v in sync_dropped.items()}, **snap["dropped"]}
        values = {"frames_received": snap["received"], "frames_registered": snap["accepted"],
                  "dropped": dropped, "dropped_total": sum(dropped.values()),
                  "keyframes": self.keyframes, "view_pairs": self.pairs_total, "pairs_per_s": self.pairs_rate.rate(),
                  **{f"builder.{k}": v for k, v in self.builder.counts.items()}}
        return values, "warn" if snap["received"] and not snap["accepted"] else "ok"
