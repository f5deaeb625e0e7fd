"""ROS messages of a bag (as the ``rosbags`` library deserialises them, ROS 1 and ROS 2 alike) -> arrays.

Images: colour rgb8 / bgr8 / rgba8 / bgra8 -> [H, W, 3] uint8 (a mono or depth encoding on the
colour topic is ``not_colour``); depth 16UC1 / mono16 (``depth_unit`` metres per step) or 32FC1
(metres) -> [H, W] float32 metres, 0 = invalid. Rows may be padded; big-endian data is honoured.
CameraInfo: ``k`` (ROS 2) or ``K`` (ROS 1). Poses: PoseStamped, PoseWithCovarianceStamped,
Odometry, TransformStamped or Transform -> T [4, 4].
"""
from __future__ import annotations

import numpy as np

from regconsist_ros.sim.frame import FrameError, Intrinsics
from regconsist_ros.sim.poses import pose_from_tq
from regconsist_ros.sim.recordings.base import DROP_DECODE, DROP_NOT_COLOUR, FrameDrop, RecordingError, pose_or_none

COLOR = {"rgb8": (3, (0, 1, 2)), "bgr8": (3, (2, 1, 0)), "rgba8": (4, (0, 1, 2)), "bgra8": (4, (2, 1, 0))}
NOT_COLOR = ("mono8", "mono16", "8uc1", "16uc1", "16sc1", "32fc1", "64fc1", "z16")
DEPTH = {"16uc1": "u2", "mono16": "u2", "z16": "u2", "32fc1": "f4"}


def stamp(msg, log_time_ns: int) -> float:
    """Header stamp in seconds; the bag's log time when the header has none (0)."""
    h = getattr(msg, "header", None)
    if h is not None:
        s = h.stamp.sec + h.stamp.nanosec * 1e-9
        if s > 0:
            return float(s)
    return log_time_ns * 1e-9


def _rows(msg, bpp: int) -> np.ndarray:
    w, h, step = int(msg.width), int(msg.height), int(msg.step)
    if w <= 0 or h <= 0:
        raise FrameDrop(DROP_DECODE, f"image size {w}x{h}")
    if step < w * bpp:
        raise FrameDrop(DROP_DECODE, f"step {step} is shorter than a row ({w} x {bpp} bytes)")
    buf = np.frombuffer(memoryview(msg.data).cast("B"), np.uint8) if not isinstance(msg.data, np.ndarray) else \
        np.ascontiguousarray(msg.data).reshape(-1).view(np.uint8)
    if buf.size < step * h:
        raise FrameDrop(DROP_DECODE, f"{buf.size} bytes of data, expected step x height = {step * h}")
    return buf[: step * h].reshape(h, step)[:, : w * bpp]


def color(msg) -> np.ndarray:
    """sensor_msgs/Image -> [H, W, 3] uint8 RGB, or FrameDrop."""
    enc = str(msg.encoding).lower()
    if enc in NOT_COLOR:
        raise FrameDrop(DROP_NOT_COLOUR, f"encoding {msg.encoding!r} on the colour topic is not a colour image")
    if enc not in COLOR:
        raise FrameDrop(DROP_DECODE, f"unsupported colour encoding {msg.encoding!r}; supported: {sorted(COLOR)}")
    bpp, order = COLOR[enc]
    px = _rows(msg, bpp).reshape(int(msg.height), int(msg.width), bpp)
    return np.ascontiguousarray(px[..., list(order)])


def depth(msg, depth_unit: float) -> np.ndarray:
    """sensor_msgs/Image -> [H, W] float32 metres (0 = invalid), or FrameDrop."""
    enc = str(msg.encoding).lower()
    if enc not in DEPTH:
        raise FrameDrop(DROP_DECODE, f"unsupported depth encoding {msg.encoding!r}; supported: 16UC1, mono16, 32FC1")
    kind = DEPTH[enc]
    rows = _rows(msg, 2 if kind == "u2" else 4)
    raw = np.ascontiguousarray(rows).view(np.dtype((">" if msg.is_bigendian else "<") + kind))
    raw = raw.reshape(int(msg.height), int(msg.width))
    if kind == "u2":
        return (raw.astype(np.float64) * depth_unit).astype(np.float32)
    d = raw.astype(np.float32)
    with np.errstate(invalid="ignore"):
        d[~np.isfinite(d) | (d < 0)] = 0.0
    return d


def intrinsics(msg, topic: str) -> Intrinsics:
    """sensor_msgs/CameraInfo -> Intrinsics (no skew; distortion ignored: images are taken as rectified)."""
    k = getattr(msg, "k", None)
    if k is None:
        k = getattr(msg, "K", None)
    try:
        K = np.asarray(k, np.float64).reshape(3, 3)
        return Intrinsics(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), int(msg.width), int(msg.height))
    except (TypeError, ValueError, FrameError) as e:
        raise RecordingError(f"{topic}: unusable camera_info (uncalibrated or malformed: {e})") from None


def _tq(p, q) -> np.ndarray | None:
    v = np.array([q.x, q.y, q.z, q.w], np.float64)
    n = float(np.linalg.norm(v))
    if not np.isfinite(n) or abs(n - 1.0) > 1e-3:
        return None
    return pose_or_none(pose_from_tq([p.x, p.y, p.z], v / n))


def pose(msg) -> np.ndarray | None:
    """A pose-like message -> T [4, 4], or None when it is not a finite rigid pose."""
    if hasattr(msg, "transform"):  # TransformStamped
        msg = msg.transform
    if hasattr(msg, "translation"):  # Transform
        return _tq(msg.translation, msg.rotation)
    p = getattr(msg, "pose", msg)
    p = getattr(p, "pose", p)  # PoseWithCovarianceStamped, Odometry
    return _tq(p.position, p.orientation)
