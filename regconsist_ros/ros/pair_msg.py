"""View pairs as sensor_msgs/PointCloud2 with named fields (a standard type any ROS tool can read).

One message per view pair, one point per correspondence::

    header.stamp     the newer view's (dst) sensor stamp; header.frame_id the camera frame
    fields           u1, v1 (float32): pixel (x, y) in the older view (src)
                     u2, v2 (float32): sub-pixel (x, y) in the newer view (dst)
                     src_stamp (float64): the older view's sensor stamp in seconds (same on every point)
                     iou (float32): the pair's overlap IoU (same on every point)
    height = 1, width = number of correspondences, is_dense = true, little-endian

Both views are published on ``registration/keyframe/image_raw`` (rgb8) with their own stamps
before any pair that refers to them, so a subscriber joins pairs to images by stamp.
"""
from __future__ import annotations

import numpy as np

PAIR_DTYPE = np.dtype([("u1", "<f4"), ("v1", "<f4"), ("u2", "<f4"), ("v2", "<f4"), ("src_stamp", "<f8"), ("iou", "<f4")])
FIELDS = [("u1", 0, 7), ("v1", 4, 7), ("u2", 8, 7), ("v2", 12, 7), ("src_stamp", 16, 8), ("iou", 24, 7)]  # PointField FLOAT32=7, FLOAT64=8


def pair_cloud(uv1: np.ndarray, uv2: np.ndarray, src_stamp: float, dst_stamp: float, iou: float, frame_id: str,
               max_points: int = 0, rng: np.random.Generator | None = None):
    """PointCloud2 of one view pair (optionally a random subset of ``max_points`` correspondences)."""
    from sensor_msgs.msg import PointCloud2, PointField

    from regconsist_ros.ros.convert import sec_to_stamp

    n = len(uv1)
    idx = np.arange(n)
    if max_points and n > max_points:
        idx = np.sort((rng or np.random.default_rng()).choice(n, max_points, replace=False))
    rows = np.zeros(len(idx), PAIR_DTYPE)
    rows["u1"], rows["v1"] = uv1[idx, 0], uv1[idx, 1]
    rows["u2"], rows["v2"] = uv2[idx, 0], uv2[idx, 1]
    rows["src_stamp"], rows["iou"] = src_stamp, iou
    msg = PointCloud2(height=1, width=len(idx), is_bigendian=False, point_step=PAIR_DTYPE.itemsize,
                      row_step=PAIR_DTYPE.itemsize * len(idx), is_dense=True)
    msg.fields = [PointField(name=nm, offset=off, datatype=dt, count=1) for nm, off, dt in FIELDS]
    msg.data = rows.tobytes()
    sec_to_stamp(dst_stamp, msg.header.stamp)
    msg.header.frame_id = frame_id
    return msg


def read_pair_cloud(msg) -> dict:
    """The pair of a PointCloud2 written by :func:`pair_cloud`: uv1, uv2 [M, 2] float32, stamps, iou.

    BadInput (reason ``encoding``, ``size``, ``view_pair_stamp``, ``view_pair_iou``) for a cloud that
    is not one; per-point coordinates are left to the learner, which knows the images' sizes."""
    from regconsist_ros.online.errors import BadInput
    from regconsist_ros.ros.convert import stamp_to_sec

    names = [f.name for f in msg.fields]
    if names != [f[0] for f in FIELDS] or msg.point_step != PAIR_DTYPE.itemsize or msg.is_bigendian:
        raise BadInput("encoding", f"not a view-pair cloud: fields {names}, point_step {msg.point_step}")
    if len(msg.data) != msg.point_step * msg.width * msg.height or msg.width * msg.height == 0:
        raise BadInput("size", f"view-pair cloud with {len(msg.data)} bytes for {msg.width}x{msg.height} points")
    rows = np.frombuffer(bytes(msg.data), PAIR_DTYPE)
    src, dst = float(rows["src_stamp"][0]), stamp_to_sec(msg.header.stamp)
    if not (np.isfinite(src) and np.isfinite(dst) and src < dst):
        raise BadInput("view_pair_stamp", f"view pair stamps {src} -> {dst} (need finite, src older than dst)")
    iou = float(rows["iou"][0])
    if not 0.0 <= iou <= 1.0:  # NaN fails too
        raise BadInput("view_pair_iou", f"view pair iou {iou} outside [0, 1]")
    # coordinates are checked against the keyframes' sizes where the pair is joined to them (the learner)
    return {"uv1": np.stack([rows["u1"], rows["v1"]], 1), "uv2": np.stack([rows["u2"], rows["v2"]], 1),
            "src_stamp": src, "dst_stamp": dst, "iou": iou}
