"""What the camera source node publishes, without ROS: its config and the frame source it opens.

:func:`open_source` turns a :class:`CameraSourceConfig` (and the ``sim.*`` :class:`SimConfig`) into
an indexable frame source (``len``, ``[i]`` -> :class:`regconsist_ros.sim.frame.Frame`): the embedded
world or a scan (:class:`regconsist_ros.sim.source.SimSource`), a scan rendered by habitat-sim, or a
recording of any layout the frame-source layer reads (:func:`regconsist_ros.sim.recordings.open_recording`:
TUM, 7-Scenes / ScanNet, Replica, rosbag2 / ROS 1 / RealSense bags), depth registered to colour.
:class:`Prefetcher` renders its frames ahead on a thread into a bounded queue. The node
(:mod:`regconsist_ros.ros.nodes.sim_camera`) only publishes them.
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Callable, Literal

from regconsist_ros.sim.source import SimConfig

log = logging.getLogger(__name__)

@dataclass
class CameraSourceConfig:
    """What the camera source publishes and how fast."""

    source: Literal["sim", "tum", "rosbag", "recording", "habitat"] = field(default="sim", metadata={"help": "sim: the embedded world or a scan (sim.* parameters); habitat: the scan at sim.scene rendered by habitat-sim (when installed) along a path planned on its mesh; recording: replay the recording at 'path', any layout (docs/recordings.md); tum / rosbag: the same, for a TUM sequence / a bag (rosbag2, ROS 1, RealSense)"})
    path: str = field(default="", metadata={"help": "recording to replay: a path, with options as 'PATH?key=value&...' (docs/recordings.md)"})
    rate: float = field(default=10.0, metadata={"help": "frames per second"})
    depth_encoding: Literal["16UC1", "32FC1"] = field(default="16UC1", metadata={"help": "16UC1 (millimetres) or 32FC1 (metres)"})
    world_frame: str = field(default="world", metadata={"help": "frame id of the poses"})
    camera_frame: str = field(default="camera_color_optical_frame", metadata={"help": "frame id of the images"})
    publish_labels: bool = field(default=True, metadata={"help": "also publish semantic/instance images (simulation only)"})
    loop: bool = field(default=True, metadata={"help": "start over at the end of the trajectory"})
    prefetch: int = field(default=4, metadata={"help": "frames rendered ahead"})

    def __post_init__(self):
        if not 0 < self.rate <= 1000:
            raise ValueError(f"CameraSourceConfig.rate must be in (0, 1000] Hz, got {self.rate!r}")
        if self.source in ("tum", "rosbag", "recording") and not self.path:
            raise ValueError(f"CameraSourceConfig: source={self.source} needs path (a recording to replay)")
        if self.prefetch < 1:
            raise ValueError(f"CameraSourceConfig.prefetch must be >= 1, got {self.prefetch!r}")


def open_source(cfg: CameraSourceConfig, sim_cfg: SimConfig):
    """An indexable frame source (len, [i]) and its intrinsics."""
    if cfg.source in ("tum", "rosbag", "recording"):
        from regconsist_ros.sim.recordings import open_recording, require_depth

        layout = {"tum": "tum", "rosbag": None, "recording": None}[cfg.source]
        rec = open_recording(cfg.path, **({"layout": layout} if layout and "layout=" not in cfg.path else {}))
        if cfg.source == "rosbag" and rec.layout not in ("rosbag", "realsense"):
            raise ValueError(f"source=rosbag: {cfg.path} is a {rec.layout} recording, not a bag (use source=recording)")
        require_depth(rec, "the camera source")
        if not rec.has_poses:
            log.warning("%s has no poses: frames are published without camera/pose; the registration node needs a "
                        "pose source (pose_source: odometry)", rec.source)
        return rec, rec.intrinsics
    from regconsist_ros.sim.source import SimSource

    src = SimSource(sim_cfg)
    if cfg.source == "habitat":
        from regconsist_ros.sim.habitat import HabitatTrajectorySource

        hab = HabitatTrajectorySource(sim_cfg.scene, src, sim_cfg.width, sim_cfg.height, sim_cfg.hfov)
        return hab, hab.intrinsics
    return src, src.intrinsics


class Prefetcher:
    """Frames of an indexable ``source`` rendered ahead by a daemon thread into a queue of ``prefetch``.

    :meth:`poll` returns the next frame, or None once a non-``loop`` source is exhausted, and raises
    :class:`queue.Empty` when no frame is ready yet. A frame the source cannot produce (an unreadable
    file of a replayed sequence) is skipped and reported to ``on_skip(index, exception)``.
    """

    def __init__(self, source, prefetch: int = 4, loop: bool = True,
                 on_skip: Callable[[int, Exception], None] | None = None):
        if prefetch < 1:
            raise ValueError(f"Prefetcher.prefetch must be >= 1, got {prefetch!r}")
        self.source, self.loop = source, loop
        self.on_skip = on_skip or (lambda i, e: log.warning("frame %d skipped: %s", i, e))
        self.frames: queue.Queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="render", daemon=True)

    def start(self) -> "Prefetcher":
        self.thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop rendering and wait (up to ``timeout`` s) for the frame in progress: the process must not
        exit while the thread is inside the renderer (an EGL/OpenGL call at interpreter exit can hang)."""
        self._stop.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def poll(self):
        return self.frames.get_nowait()

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self.frames.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        i, n = 0, len(self.source)
        while not self._stop.is_set():
            if i >= n:
                if not self.loop:
                    self._put(None)
                    return
                i = 0
            try:
                frame = self.source[i]
            except Exception as e:  # an unreadable frame of a replayed sequence: skip it, keep going
                self.on_skip(i, e)
                i += 1
                continue
            i += 1
            self._put(frame)
