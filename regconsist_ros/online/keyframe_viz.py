"""What the registration node shows of its keyframes, without ROS: the trajectory and a coloured cloud.

:class:`KeyframeView` is fed every new keyframe (:meth:`KeyframeView.add`: an append, so the
frame worker pays nothing measurable) and keeps the poses of the last ``viz.path_max`` keyframes
and the last ``viz.cloud_keyframes`` frames themselves. :meth:`KeyframeView.cloud` back-projects
each kept keyframe once (every ``viz.cloud_stride``-th pixel with valid depth, into the world with
its ``T_world_cam``; cached) and joins them, newest last, capped at ``viz.cloud_max_points``
(evenly thinned). The node's viz worker calls it and publishes the result
(:mod:`regconsist_ros.ros.viz_msgs`). :class:`VizConfig` holds the node's ``viz.*`` switches; every
one is off by default, and off means no publisher, no thread and no work.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from regconsist_ros.sim.frame import Frame


@dataclass
class VizConfig:
    """The registration node's visualisation topics (``registration/viz/*``): all off by default."""

    correspondences: bool = field(default=False, metadata={"help": "publish registration/viz/correspondences: each view pair's matches drawn on its two images side by side (sensor_msgs/Image rgb8, stamp = its view_pairs message's)"})
    every: int = field(default=1, metadata={"help": "correspondences: draw every N-th view pair"})
    lines: int = field(default=50, metadata={"help": "correspondences: matches drawn per picture (evenly spaced over the published ones)"})
    path: bool = field(default=False, metadata={"help": "publish registration/viz/keyframe_path: the keyframe trajectory (nav_msgs/Path in frame_id) at each new keyframe"})
    path_max: int = field(default=1000, metadata={"help": "path: newest keyframe poses kept in the Path"})
    cloud: bool = field(default=False, metadata={"help": "publish registration/viz/keyframe_cloud: recent keyframes' points in the world (sensor_msgs/PointCloud2 x, y, z, rgb) at each new keyframe"})
    cloud_keyframes: int = field(default=10, metadata={"help": "cloud: newest keyframes in the cloud"})
    cloud_stride: int = field(default=4, metadata={"help": "cloud: every N-th pixel in x and y of each keyframe"})
    cloud_max_points: int = field(default=100000, metadata={"help": "cloud: most points per message (evenly thinned beyond)"})
    frame_id: str = field(default="", metadata={"help": "world frame of the path and the cloud ('' = the poses' frame: camera/pose's frame_id, world_frame with tf or odometry)"})

    def __post_init__(self):
        for name in ("every", "lines", "path_max", "cloud_keyframes", "cloud_stride", "cloud_max_points"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"VizConfig.{name} must be an integer >= 1, got {v!r}")

    @property
    def any(self) -> bool:
        """Whether any topic is on."""
        return self.correspondences or self.path or self.cloud


def keyframe_points(frame: Frame, stride: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """``(xyz [N, 3] float32 in the world, rgb [N, 3] uint8)`` of every ``stride``-th pixel (x and y,
    from 0) with finite depth > 0, back-projected with the frame's intrinsics and ``T_world_cam``."""
    if frame.T_world_cam is None:
        raise ValueError("keyframe_points needs a frame with a pose")
    K = frame.intrinsics
    d = frame.depth[::stride, ::stride].astype(np.float64)  # [h, w]
    ys, xs = np.mgrid[0:frame.depth.shape[0]:stride, 0:frame.depth.shape[1]:stride]  # [h, w] pixel rows, columns
    ok = np.isfinite(d) & (d > 0)
    z, x, y = d[ok], xs[ok], ys[ok]
    P = np.stack([(x - K.cx) / K.fx * z, (y - K.cy) / K.fy * z, z], 1)  # [N, 3] camera (optical) frame
    T = frame.T_world_cam
    xyz = P @ T[:3, :3].T + T[:3, 3]  # [N, 3] world
    return xyz.astype(np.float32), frame.rgb[::stride, ::stride][ok]


class KeyframeView:
    """Keyframe poses (for the path) and recent keyframes' points (for the cloud). Thread-safe.

    ``version`` grows with every :meth:`add` and :meth:`reset`, so a publisher can tell whether there
    is anything new since it last looked.
    """

    def __init__(self, cfg: VizConfig | None = None):
        self.cfg = cfg or VizConfig()
        self._poses: deque[tuple[float, np.ndarray]] = deque(maxlen=self.cfg.path_max)  # (stamp, [4, 4])
        self._frames: deque[list] = deque(maxlen=self.cfg.cloud_keyframes)  # [frame, (xyz, rgb) or None]
        self._lock = threading.Lock()
        self.version = 0

    def add(self, frame: Frame) -> None:
        """A new keyframe (with a pose): O(1), nothing computed here."""
        with self._lock:
            self._poses.append((float(frame.stamp), np.array(frame.T_world_cam, np.float64)))
            if self.cfg.cloud:
                self._frames.append([frame, None])
            self.version += 1

    def reset(self) -> None:
        """Forget everything (the poses started a new frame: a new odometry segment)."""
        with self._lock:
            self._poses.clear()
            self._frames.clear()
            self.version += 1

    def path(self) -> tuple[np.ndarray, np.ndarray]:
        """``(stamps [N] float64, T_world_cam [N, 4, 4] float64)`` of the kept keyframes, oldest first."""
        with self._lock:
            rows = list(self._poses)
        if not rows:
            return np.zeros(0), np.zeros((0, 4, 4))
        return np.array([s for s, _ in rows]), np.stack([T for _, T in rows])

    def cloud(self) -> tuple[np.ndarray, np.ndarray, float]:
        """``(xyz [N, 3] float32 world, rgb [N, 3] uint8, newest keyframe's stamp)`` of the kept keyframes
        (each back-projected once, by the first call that needs it), at most ``cloud_max_points``."""
        with self._lock:
            items = list(self._frames)
        if not items:
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), 0.0
        for item in items:
            if item[1] is None:  # only this (viz) thread fills the cache; a race would compute it twice, no harm
                item[1] = keyframe_points(item[0], self.cfg.cloud_stride)
        xyz = np.concatenate([it[1][0] for it in items])  # [N, 3]
        rgb = np.concatenate([it[1][1] for it in items])  # [N, 3]
        if len(xyz) > self.cfg.cloud_max_points:
            keep = np.round(np.linspace(0, len(xyz) - 1, self.cfg.cloud_max_points)).astype(np.int64)
            xyz, rgb = xyz[keep], rgb[keep]
        return xyz, rgb, float(items[-1][0].stamp)
