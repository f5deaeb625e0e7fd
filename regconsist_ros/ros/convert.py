"""sensor_msgs / geometry_msgs <-> our Frame pieces (thin: the checks live in regconsist_ros.online.decode)."""
from __future__ import annotations

import numpy as np

from regconsist_ros.online.decode import (camera_info_msg_fields, image_msg_fields, pose_msg_fields,  # re-exported
                                          camera_info_fields, decode_color, decode_depth, encode_color, encode_depth,
                                          intrinsics_from_camera_info, pose_fields, pose_from_fields)


def stamp_to_sec(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def sec_to_stamp(t: float, stamp) -> None:
    """Write seconds ``t`` into a builtin_interfaces/Time."""
    ns = int(round(t * 1e9))
    stamp.sec, stamp.nanosec = divmod(ns, 1_000_000_000)


def image_msg(fields: dict, stamp: float, frame_id: str):
    from sensor_msgs.msg import Image

    msg = Image(height=fields["height"], width=fields["width"], encoding=fields["encoding"],
                is_bigendian=fields["is_bigendian"], step=fields["step"])
    msg.data = fields["data"]
    sec_to_stamp(stamp, msg.header.stamp)
    msg.header.frame_id = frame_id
    return msg


def color_msg(rgb: np.ndarray, stamp: float, frame_id: str):
    return image_msg(encode_color(rgb), stamp, frame_id)


def depth_msg(depth: np.ndarray, stamp: float, frame_id: str, encoding: str = "16UC1", depth_unit: float = 0.001):
    return image_msg(encode_depth(depth, encoding, depth_unit), stamp, frame_id)


def labels_msg(labels: np.ndarray, stamp: float, frame_id: str):
    """uint16 label image as 16UC1 (semantic / instance ids, 0 = void)."""
    a = np.ascontiguousarray(labels, dtype=np.uint16)
    return image_msg({"height": a.shape[0], "width": a.shape[1], "encoding": "16UC1", "is_bigendian": 0,
                      "step": a.shape[1] * 2, "data": a.tobytes()}, stamp, frame_id)


def camera_info_msg(intr, stamp: float, frame_id: str):
    from sensor_msgs.msg import CameraInfo

    f = camera_info_fields(intr)
    msg = CameraInfo(width=f["width"], height=f["height"], distortion_model=f["distortion_model"])
    msg.k, msg.p, msg.r, msg.d = [float(x) for x in f["k"]], [float(x) for x in f["p"]], \
        [float(x) for x in f["r"]], [float(x) for x in f["d"]]
    sec_to_stamp(stamp, msg.header.stamp)
    msg.header.frame_id = frame_id
    return msg


def pose_msg(T: np.ndarray, stamp: float, world_frame: str):
    from geometry_msgs.msg import PoseStamped

    (x, y, z), (qx, qy, qz, qw) = pose_fields(T)
    msg = PoseStamped()
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = x, y, z
    msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z, msg.pose.orientation.w = qx, qy, qz, qw
    sec_to_stamp(stamp, msg.header.stamp)
    msg.header.frame_id = world_frame
    return msg


# ---- messages -> arrays (raise BadInput with a reason) ---------------------------------------------
def decode_color_msg(msg) -> np.ndarray:
    return decode_color(**image_msg_fields(msg))


def decode_depth_msg(msg, depth_unit: float = 0.001) -> np.ndarray:
    return decode_depth(**image_msg_fields(msg), depth_unit=depth_unit)


def decode_labels_msg(msg) -> np.ndarray:
    from regconsist_ros.online.errors import BadInput

    if msg.encoding not in ("16UC1", "mono16"):
        raise BadInput("encoding", f"label images must be 16UC1, got {msg.encoding!r}")
    a = np.frombuffer(bytes(msg.data), dtype=">u2" if msg.is_bigendian else "<u2")
    if msg.step < msg.width * 2 or a.size * 2 < msg.step * msg.height:
        raise BadInput("step", f"label image {msg.width}x{msg.height} step {msg.step} with {a.size * 2} bytes")
    return a.reshape(msg.height, msg.step // 2)[:, :msg.width].astype(np.uint16)


def intrinsics_from_msg(msg):
    f = camera_info_msg_fields(msg)
    return intrinsics_from_camera_info(f["width"], f["height"], f["k"], f["distortion_model"], f["d"])


def pose_from_msg(msg) -> np.ndarray:
    return pose_from_fields(*pose_msg_fields(msg))
