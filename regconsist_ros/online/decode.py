"""Decoding and validating ROS-like message fields (sensor_msgs Image / CameraInfo, geometry Pose).

Pure numpy: the ROS nodes pass message fields in (``msg.width, msg.height, msg.encoding, msg.step,
msg.data, msg.is_bigendian``) and get arrays back, or a :class:`BadInput` whose ``reason`` names
the problem. The encoders produce the same fields for the camera source node.

Images are expected to be rectified and pixel-aligned (as RealSense's ``aligned_depth_to_color``
streams are): camera-info distortion coefficients are checked for sanity but not applied.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from regconsist_ros.online.errors import BadInput
from regconsist_ros.sim.frame import Frame, FrameError, Intrinsics
from regconsist_ros.sim.poses import PoseError, pose_from_tq, pose_to_tq, validate_pose

# encoding -> (bytes per pixel, channel order producing RGB, or None for mono)
COLOR_ENCODINGS = {"rgb8": (3, (0, 1, 2)), "bgr8": (3, (2, 1, 0)), "rgba8": (4, (0, 1, 2)),
                   "bgra8": (4, (2, 1, 0)), "mono8": (1, None)}
DEPTH_ENCODINGS = {"16UC1": "u2", "mono16": "u2", "32FC1": "f4"}
DISTORTION_MODELS = ("", "plumb_bob", "rational_polynomial")
QUAT_TOL = 1e-3  # |‖q‖ - 1| beyond this is a broken pose source, not rounding
MAX_DEPTH_M = 1000.0  # depth beyond any depth camera's range: no return (0)
MAX_POSITION_M = 1e8  # a position coordinate beyond this (beyond the Earth; UTM stays below 1e7) is a broken pose
FOV_DEG = (0.5, 179.5)  # the pinhole field of view a camera_info's focal lengths may give, per axis


def _size(width, height) -> tuple[int, int]:
    try:
        w, h = int(width), int(height)
    except (TypeError, ValueError):
        raise BadInput("size", f"image size must be integers, got {width!r}x{height!r}") from None
    if w != width or h != height or w <= 0 or h <= 0:
        raise BadInput("size", f"image size must be positive integers, got {width!r}x{height!r}")
    return w, h


def _rows(width: int, height: int, step, data, bpp: int) -> tuple[np.ndarray, bool]:
    """``data`` as a uint8 [H, W*bpp] view (row padding skipped) and whether that view may be kept.

    Only an immutable ``bytes`` object may be aliased; anything else (bytearray, array.array,
    memoryview, numpy array) is a buffer its owner may reuse, so the caller must copy.
    """
    try:
        step = int(step)
    except (TypeError, ValueError):
        raise BadInput("step", f"step must be an integer, got {step!r}") from None
    if step < width * bpp:
        raise BadInput("step", f"step {step} is shorter than a row ({width} px x {bpp} bytes = {width * bpp})")
    if isinstance(data, np.ndarray):
        buf = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    else:
        try:
            buf = np.frombuffer(memoryview(data).cast("B") if not isinstance(data, bytes) else data, dtype=np.uint8)
        except TypeError:
            raise BadInput("step", f"image data must be a byte buffer, got {type(data).__name__}") from None
    if buf.size < step * height:
        raise BadInput("step", f"data has {buf.size} bytes, expected step x height = {step} x {height} = {step * height}")
    rows = buf[: step * height].reshape(height, step)[:, : width * bpp]
    return rows, isinstance(data, bytes)


def _encoding(encoding, table: dict, kind: str) -> str:
    key = str(encoding)
    if key not in table:
        lower = {k.lower(): k for k in table}
        key = lower.get(key.lower(), "")
    if not key:
        raise BadInput("encoding", f"unsupported {kind} encoding {encoding!r}; supported: {sorted(table)}")
    return key


def decode_color(width, height, encoding, step, data, is_bigendian=False) -> np.ndarray:
    """Colour image fields -> [H, W, 3] uint8 RGB.

    Encodings: rgb8, bgr8, rgba8, bgra8 (alpha dropped), mono8 (replicated to 3 channels). Rows may
    be padded (step > width x bytes per pixel). ``is_bigendian`` is irrelevant for 8-bit data.
    An unpadded rgb8 image in an immutable ``bytes`` object is returned without copying, as a
    *read-only* view (``.copy()`` it before writing, or before ``torch.from_numpy``, which warns on
    read-only arrays); every other case returns a fresh contiguous array that aliases no input.
    """
    w, h = _size(width, height)
    enc = _encoding(encoding, COLOR_ENCODINGS, "colour")
    bpp, order = COLOR_ENCODINGS[enc]
    rows, may_alias = _rows(w, h, step, data, bpp)
    px = rows.reshape(h, w, bpp)
    if order is None:
        return np.repeat(px, 3, axis=2)  # a new array
    if order == (0, 1, 2) and bpp == 3 and may_alias and px.flags.c_contiguous:
        return px  # read-only view of immutable bytes
    out = np.empty((h, w, 3), np.uint8)
    for c, src in enumerate(order):
        out[..., c] = px[..., src]
    return out


def decode_depth(width, height, encoding, step, data, is_bigendian=False, depth_unit: float = 0.001,
                 min_valid_fraction: float = 0.01) -> np.ndarray:
    """Depth image fields -> [H, W] float32 metres, 0 = invalid. Always a new array.

    16UC1 / mono16: integer ``depth_unit`` steps (millimetres by default), 0 = no return.
    32FC1: metres (``depth_unit`` unused); NaN, inf and negative values become 0. Either way, depth
    beyond :data:`MAX_DEPTH_M` (1 km) becomes 0.
    Big-endian data (``is_bigendian`` true) is honoured. Fewer than ``min_valid_fraction`` valid
    (> 0) pixels -> BadInput("depth_invalid").
    """
    if not (math.isfinite(depth_unit) and depth_unit > 0):
        raise ValueError(f"depth_unit must be a positive number of metres, got {depth_unit}")
    if not 0 <= min_valid_fraction <= 1:
        raise ValueError(f"min_valid_fraction must be in [0, 1], got {min_valid_fraction}")
    w, h = _size(width, height)
    enc = _encoding(encoding, DEPTH_ENCODINGS, "depth")
    kind = DEPTH_ENCODINGS[enc]
    rows, _ = _rows(w, h, step, data, 2 if kind == "u2" else 4)
    dt = np.dtype((">" if is_bigendian else "<") + kind)
    raw = np.ascontiguousarray(rows).view(dt).reshape(h, w)  # copy only when rows are padded
    if kind == "u2":
        depth = raw.astype(np.float32) * np.float32(depth_unit)
        depth[depth > MAX_DEPTH_M] = 0.0
    else:
        depth = raw.astype(np.float32)  # new native-endian array
        with np.errstate(invalid="ignore"):
            depth[~np.isfinite(depth) | (depth < 0) | (depth > MAX_DEPTH_M)] = 0.0
    frac = float(np.count_nonzero(depth > 0)) / depth.size
    if frac < min_valid_fraction:
        raise BadInput("depth_invalid", f"only {frac:.2%} of the depth pixels are valid (< {min_valid_fraction:.2%})")
    return depth


def encode_color(rgb: np.ndarray) -> dict:
    """[H, W, 3] uint8 RGB -> Image fields ``{width, height, encoding="rgb8", step, is_bigendian=0, data}``."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise BadInput("shape", f"colour must be uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    return {"width": w, "height": h, "encoding": "rgb8", "step": 3 * w, "is_bigendian": 0,
            "data": np.ascontiguousarray(rgb).tobytes()}


def encode_depth(depth_m: np.ndarray, encoding: str = "16UC1", depth_unit: float = 0.001) -> dict:
    """[H, W] metres -> Image fields.

    16UC1: ``round(depth / depth_unit)`` clipped to 65535; invalid pixels (0, negative, NaN, inf)
    -> 0. 32FC1: float32 metres; invalid pixels -> 0.0 too (not NaN), so both encodings share the
    "0 = no return" convention of :class:`regconsist_ros.sim.frame.Frame`. Little-endian.
    """
    if not (math.isfinite(depth_unit) and depth_unit > 0):
        raise ValueError(f"depth_unit must be a positive number of metres, got {depth_unit}")
    d = np.asarray(depth_m)
    if d.ndim != 2 or 0 in d.shape or not np.issubdtype(d.dtype, np.floating):
        raise BadInput("shape", f"depth must be a float [H, W] array, got {d.dtype} {d.shape}")
    h, w = d.shape
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(d) & (d > 0)
    if encoding == "16UC1":
        q = np.zeros((h, w), "<u2")
        q[ok] = np.clip(np.rint(d[ok].astype(np.float64) / depth_unit), 0, 65535)
        step, data = 2 * w, q.tobytes()
    elif encoding == "32FC1":
        f = np.where(ok, d, 0.0).astype("<f4")
        step, data = 4 * w, f.tobytes()
    else:
        raise BadInput("encoding", f"depth can be encoded as 16UC1 or 32FC1, not {encoding!r}")
    return {"width": w, "height": h, "encoding": encoding, "step": step, "is_bigendian": 0, "data": data}


def intrinsics_from_camera_info(width, height, k: Sequence[float], distortion_model: str = "",
                                d: Sequence[float] = ()) -> Intrinsics:
    """CameraInfo fields -> :class:`regconsist_ros.sim.frame.Intrinsics`; BadInput("camera_info") when unusable.

    Rejects: zero/negative size, ``k`` not 9 finite numbers, non-positive focal lengths (an
    all-zero K is ROS's "uncalibrated") or ones whose pinhole field of view on the image is outside
    :data:`FOV_DEG` (focal lengths in other units, or for another image size), skew or a last row other than [0, 0, 1], non-finite
    distortion, and non-zero distortion under a model other than plumb_bob / rational_polynomial.
    Distortion is otherwise ignored: images must already be rectified.
    """
    try:
        w, h = _size(width, height)
    except BadInput as e:
        raise BadInput("camera_info", e.message) from None
    try:
        K = np.asarray(list(k), dtype=np.float64)
        D = np.asarray(list(d), dtype=np.float64)
    except (TypeError, ValueError):
        raise BadInput("camera_info", f"k and d must be sequences of numbers, got {k!r}, {d!r}") from None
    if K.shape != (9,):
        raise BadInput("camera_info", f"k must have 9 elements (row-major 3x3), got {K.size}")
    if not np.all(np.isfinite(K)):
        raise BadInput("camera_info", f"k contains non-finite values: {K.tolist()}")
    if not np.all(np.isfinite(D)):
        raise BadInput("camera_info", f"d contains non-finite values: {D.tolist()}")
    fx, fy, cx, cy = K[0], K[4], K[2], K[5]
    if fx <= 0 or fy <= 0:
        raise BadInput("camera_info", f"focal lengths must be > 0 (camera uncalibrated?), got fx={fx}, fy={fy}")
    for axis, f, n in (("horizontal", fx, w), ("vertical", fy, h)):
        fov = math.degrees(2 * math.atan(n / (2 * f)))
        if not FOV_DEG[0] <= fov <= FOV_DEG[1]:
            raise BadInput("camera_info", f"focal length {f:g} px gives a {axis} field of view of {fov:.3g} deg on "
                                          f"{n} px (outside {FOV_DEG[0]}-{FOV_DEG[1]} deg): wrong units or size?")
    if abs(K[1]) > 1e-9 * fx or abs(K[3]) > 1e-9 * fy or not np.allclose(K[6:], [0, 0, 1], atol=1e-9):
        raise BadInput("camera_info", f"k must be [fx 0 cx; 0 fy cy; 0 0 1] (no skew), got {K.tolist()}")
    if np.any(D != 0) and str(distortion_model) not in DISTORTION_MODELS:
        raise BadInput("camera_info", f"unsupported distortion model {distortion_model!r} with non-zero coefficients")
    try:
        return Intrinsics(float(fx), float(fy), float(cx), float(cy), w, h)
    except FrameError as e:
        raise BadInput("camera_info", str(e)) from None


def camera_info_fields(intr: Intrinsics) -> dict:
    """Intrinsics -> CameraInfo fields ``{width, height, k, p, r, d, distortion_model}`` (rectified, plumb_bob)."""
    fx, fy, cx, cy = float(intr.fx), float(intr.fy), float(intr.cx), float(intr.cy)
    return {"width": int(intr.width), "height": int(intr.height),
            "k": [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0],
            "p": [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
            "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            "d": [0.0] * 5, "distortion_model": "plumb_bob"}


def _vec(v, n: int, name: str) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise BadInput("pose_shape", f"{name} must be {n} numbers, got {v!r}") from None
    if a.shape != (n,):
        raise BadInput("pose_shape", f"{name} must be {n} numbers, got {a.size}")
    if not np.all(np.isfinite(a)):
        raise BadInput("pose_non_finite", f"{name} contains NaN or inf: {a.tolist()}")
    return a


def pose_from_fields(position, orientation) -> np.ndarray:
    """Position (x, y, z) and orientation quaternion (x, y, z, w) -> T [4, 4] float64.

    A position coordinate beyond :data:`MAX_POSITION_M` is rejected (BadInput("pose_out_of_range")).
    A quaternion whose norm is off by more than 1e-3 is rejected (BadInput("pose_non_rigid")): it
    means a broken pose source, so it is not silently renormalised; smaller deviations (rounding
    in serialisation) are renormalised.
    """
    t = _vec(position, 3, "position")
    if np.max(np.abs(t)) > MAX_POSITION_M:
        raise BadInput("pose_out_of_range", f"position {t.tolist()} is more than {MAX_POSITION_M:g} m from the origin "
                                            "on an axis")
    q = _vec(orientation, 4, "orientation")
    n = float(np.linalg.norm(q))
    if abs(n - 1.0) > QUAT_TOL:
        raise BadInput("pose_non_rigid", f"orientation quaternion has norm {n:.6g}, not 1")
    return pose_from_tq(t, q / n)


def pose_fields(T) -> tuple[tuple[float, float, float], tuple[float, float, float, float]]:
    """T [4, 4] -> ((x, y, z), (qx, qy, qz, qw)) as Python floats, qw >= 0; the pose is validated first."""
    try:
        T = validate_pose(T, "pose")
    except PoseError as e:
        try:
            finite = bool(np.all(np.isfinite(np.asarray(T, dtype=np.float64))))
        except (TypeError, ValueError):
            finite = True
        reason = "pose_non_rigid" if finite else "pose_non_finite"
        raise BadInput(reason, str(e)) from None
    t, q = pose_to_tq(T)
    return tuple(float(x) for x in t), tuple(float(x) for x in q)


def check_sizes(rgb: np.ndarray, depth: np.ndarray) -> None:
    """BadInput("size_mismatch") unless colour [H, W, 3] and depth [H, W] are pixel-aligned."""
    if tuple(rgb.shape[:2]) != tuple(depth.shape[:2]):
        raise BadInput("size_mismatch", f"colour is {rgb.shape[1]}x{rgb.shape[0]} but depth is "
                                        f"{depth.shape[1]}x{depth.shape[0]} (not aligned to colour?)")


def frame_from_fields(stamp: float, color: dict, depth: dict, info: dict | None, pose, depth_unit: float = 0.001,
                      frame_id: str = "") -> Frame:
    """Image, CameraInfo and pose fields of one matched set -> a validated :class:`Frame`.

    ``color`` / ``depth``: Image fields ``{width, height, encoding, step, data, is_bigendian}`` (as
    :func:`encode_color` / :func:`encode_depth` make them); ``info``: CameraInfo fields ``{width,
    height, k, distortion_model, d}`` (extra keys such as ``p``, ``r`` are ignored), or None when no
    camera_info has arrived yet; ``pose``: ``(position (x, y, z), orientation (x, y, z, w))``.
    Checked in this order, the first problem raising: colour, depth, colour/depth sizes, camera_info
    present, camera_info valid, camera_info size = image size, pose (BadInput with its reason);
    then the Frame's own checks (FrameError). ``frame_id`` "" keeps the Frame's default.
    """
    rgb = decode_color(**color)
    d = decode_depth(**depth, depth_unit=depth_unit)
    check_sizes(rgb, d)
    if info is None:
        raise BadInput("camera_info", "no camera_info received yet")
    intr = intrinsics_from_camera_info(info["width"], info["height"], info["k"], info.get("distortion_model", ""),
                                       info.get("d", ()))
    if (intr.width, intr.height) != (rgb.shape[1], rgb.shape[0]):
        raise BadInput("size_mismatch", f"camera_info is {intr.width}x{intr.height}, images are "
                                        f"{rgb.shape[1]}x{rgb.shape[0]}")
    try:
        position, orientation = pose
    except (TypeError, ValueError):
        raise BadInput("pose_shape", f"pose must be (position, orientation), got {type(pose).__name__}") from None
    T = pose_from_fields(position, orientation)
    return Frame(rgb=rgb, depth=d, intrinsics=intr, T_world_cam=T, stamp=stamp, **({"frame_id": frame_id} if frame_id else {}))


# ---- messages -> plain fields (rclpy and rosbags messages alike; what the core takes; no checks here) -----
def image_msg_fields(msg) -> dict:
    """sensor_msgs/Image -> ``{width, height, encoding, step, data (bytes), is_bigendian}``."""
    return {"width": msg.width, "height": msg.height, "encoding": msg.encoding, "step": msg.step,
            "data": bytes(msg.data), "is_bigendian": msg.is_bigendian}


def camera_info_msg_fields(msg) -> dict:
    """sensor_msgs/CameraInfo -> ``{width, height, k, distortion_model, d}``."""
    return {"width": msg.width, "height": msg.height, "k": list(msg.k), "distortion_model": msg.distortion_model,
            "d": list(msg.d)}


def pose_msg_fields(msg) -> tuple[tuple[float, float, float], tuple[float, float, float, float]]:
    """geometry_msgs/PoseStamped (or Pose) -> ``((x, y, z), (qx, qy, qz, qw))``."""
    pose = getattr(msg, "pose", msg)
    p, q = pose.position, pose.orientation
    return (p.x, p.y, p.z), (q.x, q.y, q.z, q.w)
