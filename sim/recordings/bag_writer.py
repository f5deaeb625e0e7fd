"""Writing bags with ``rosbags`` (no ROS install): rosbag2 (sqlite3 ``.db3`` or ``.mcap``), ROS 1
``.bag``, and a RealSense SDK-layout ``.bag``. For tests (fixtures of each layout) and for turning
frames into a recording a ROS user can play.

Messages: sensor_msgs/Image (colour rgb8; depth 16UC1 in ``depth_unit`` metres, or 32FC1 metres),
sensor_msgs/CameraInfo (plumb_bob, zero distortion), geometry_msgs/PoseStamped (T_world_cam), and in
the RealSense layout geometry_msgs/Transform extrinsics and the std_msgs/Float32 Depth Units option.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from regconsist_ros.sim.frame import Intrinsics
from regconsist_ros.sim.poses import pose_to_tq
from regconsist_ros.sim.recordings.bags import ROSBAG_TOPICS


class _Msgs:
    """Message builders for one typestore (ROS 1 field names differ: K/D/R/P, header.seq)."""

    def __init__(self, ros1: bool):
        from rosbags.typesys import Stores, get_typestore

        self.ros1 = ros1
        self.ts = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_JAZZY)
        self.T = self.ts.types

    def serialize(self, msg) -> bytes:
        return (self.ts.serialize_ros1 if self.ros1 else self.ts.serialize_cdr)(msg, msg.__msgtype__)

    def header(self, stamp: float, frame_id: str):
        sec, nsec = divmod(int(round(stamp * 1e9)), 1_000_000_000)
        t = self.T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec)
        kw = {"seq": 0} if self.ros1 else {}
        return self.T["std_msgs/msg/Header"](stamp=t, frame_id=frame_id, **kw)

    def image(self, stamp: float, frame_id: str, arr: np.ndarray, encoding: str):
        arr = np.ascontiguousarray(arr)
        h, w = arr.shape[:2]
        step = arr.strides[0]
        return self.T["sensor_msgs/msg/Image"](header=self.header(stamp, frame_id), height=h, width=w, encoding=encoding,
                                               is_bigendian=0, step=step, data=arr.reshape(-1).view(np.uint8))

    def camera_info(self, stamp: float, frame_id: str, K: Intrinsics):
        k = np.array([K.fx, 0, K.cx, 0, K.fy, K.cy, 0, 0, 1], np.float64)
        p = np.array([K.fx, 0, K.cx, 0, 0, K.fy, K.cy, 0, 0, 0, 1, 0], np.float64)
        r = np.eye(3).ravel()
        mats = {"D": np.zeros(5), "K": k, "R": r, "P": p} if self.ros1 else {"d": np.zeros(5), "k": k, "r": r, "p": p}
        roi = self.T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return self.T["sensor_msgs/msg/CameraInfo"](header=self.header(stamp, frame_id), height=K.height, width=K.width,
                                                    distortion_model="plumb_bob", binning_x=0, binning_y=0, roi=roi, **mats)

    def _tq(self, T):
        t, q = pose_to_tq(np.asarray(T, np.float64))
        return t, q

    def pose(self, stamp: float, T):
        (x, y, z), (qx, qy, qz, qw) = self._tq(T)
        P = self.T
        pose = P["geometry_msgs/msg/Pose"](position=P["geometry_msgs/msg/Point"](x=x, y=y, z=z),
                                           orientation=P["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw))
        return P["geometry_msgs/msg/PoseStamped"](header=self.header(stamp, "world"), pose=pose)

    def transform(self, T):
        (x, y, z), (qx, qy, qz, qw) = self._tq(T)
        P = self.T
        return P["geometry_msgs/msg/Transform"](translation=P["geometry_msgs/msg/Vector3"](x=x, y=y, z=z),
                                                rotation=P["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw))

    def float32(self, v: float):
        return self.T["std_msgs/msg/Float32"](data=float(v))


def _depth_array(depth: np.ndarray, encoding: str, depth_unit: float) -> np.ndarray:
    d = np.asarray(depth, np.float64)
    ok = np.isfinite(d) & (d > 0)
    if encoding == "32FC1":
        return np.where(ok, d, 0).astype("<f4")
    return np.where(ok, np.clip(np.rint(d / depth_unit), 0, 65535), 0).astype("<u2")


class _Writer:
    """rosbag2 (sqlite3 / mcap) or ROS 1, one interface: ``add(topic, msgtype)``, ``write(topic, stamp, msg)``."""

    def __init__(self, path: Path, storage: str):
        self.ros1 = storage == "ros1"
        self.msgs = _Msgs(self.ros1)
        if self.ros1:
            from rosbags.rosbag1 import Writer

            self.w = Writer(path)
        else:
            from rosbags.rosbag2 import StoragePlugin, Writer

            plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
            self.w = Writer(path, version=8, storage_plugin=plugin)
        self.w.open()
        self.conns = {}

    def write(self, topic: str, stamp: float, msg) -> None:
        if topic not in self.conns:
            self.conns[topic] = self.w.add_connection(topic, msg.__msgtype__, typestore=self.msgs.ts)
        self.w.write(self.conns[topic], int(round(stamp * 1e9)), self.msgs.serialize(msg))

    def close(self) -> None:
        self.w.close()


def write_rosbag(path, frames, storage: str = "sqlite3", topics: dict | None = None, poses: bool = True,
                 depth_encoding: str = "16UC1", depth_unit: float = 0.001, depth_images=None,
                 depth_intrinsics: Intrinsics | None = None, depth_offset: float = 0.0) -> Path:
    """Frames -> a bag with colour, depth, colour camera_info and (when ``poses``) PoseStamped messages.

    storage: ``sqlite3`` / ``mcap`` (rosbag2 directory ``path``) or ``ros1`` (a ``.bag`` file).
    topics: overrides of :data:`~regconsist_ros.sim.recordings.bags.ROSBAG_TOPICS` (same keys).
    depth_images: per frame an unregistered depth image [h, w] metres seen by a camera of
    ``depth_intrinsics`` (then a depth camera_info is written too) instead of the frame's depth.
    depth_offset: seconds added to the depth stamps (a driver's colour/depth offset).
    """
    t = {**ROSBAG_TOPICS, **(topics or {})}
    path = Path(path)
    w = _Writer(path, storage)
    m = w.msgs
    try:
        for k, f in enumerate(frames):
            cam = f.frame_id
            w.write(t["color_info_topic"], f.stamp, m.camera_info(f.stamp, cam, f.intrinsics))
            if depth_intrinsics is not None:
                w.write(t["depth_info_topic"], f.stamp, m.camera_info(f.stamp, "depth", depth_intrinsics))
            if poses and f.T_world_cam is not None:
                w.write(t["pose_topic"], f.stamp, m.pose(f.stamp, f.T_world_cam))
            depth = f.depth if depth_images is None else depth_images[k]
            ds = f.stamp + depth_offset
            w.write(t["depth_topic"], ds, m.image(ds, cam, _depth_array(depth, depth_encoding, depth_unit), depth_encoding))
            w.write(t["color_topic"], f.stamp, m.image(f.stamp, cam, f.rgb, "rgb8"))
    finally:
        w.close()
    return path


RS_COLOR = "/device_0/sensor_1/Color_0"
RS_DEPTH = "/device_0/sensor_0/Depth_0"


def write_realsense_bag(path, color_frames, depth_images, depth_intrinsics: Intrinsics, T_color_depth=None,
                        depth_unit: float = 0.001, depth_offset: float = 0.0) -> Path:
    """A RealSense SDK-layout ROS 1 bag (depth reference stream): colour frames (their rgb, intrinsics,
    stamps) on ``/device_0/sensor_1/Color_0/...``, unregistered Z16 depth images (metres, seen by
    ``depth_intrinsics``) on ``/device_0/sensor_0/Depth_0/...``, each stream's camera_info, the
    extrinsics librealsense writes (``<stream>/tf/0``: reference (depth) -> stream, so the colour
    stream's is T_color_depth and the depth stream's the identity) and the Depth Units option. No poses."""
    path = Path(path)
    w = _Writer(path, "ros1")
    m = w.msgs
    T_cd = np.eye(4) if T_color_depth is None else np.asarray(T_color_depth, np.float64)
    try:
        t0 = color_frames[0].stamp
        w.write("/device_0/sensor_0/option/Depth Units/value", t0, m.float32(depth_unit))
        w.write(f"{RS_DEPTH}/tf/0", t0, m.transform(np.eye(4)))
        w.write(f"{RS_COLOR}/tf/0", t0, m.transform(T_cd))
        w.write(f"{RS_DEPTH}/info/camera_info", t0, m.camera_info(t0, "", depth_intrinsics))
        w.write(f"{RS_COLOR}/info/camera_info", t0, m.camera_info(t0, "", color_frames[0].intrinsics))
        for f, d in zip(color_frames, depth_images):
            ds = f.stamp + depth_offset
            w.write(f"{RS_DEPTH}/image/data", ds, m.image(ds, "", _depth_array(d, "16UC1", depth_unit), "mono16"))
            w.write(f"{RS_COLOR}/image/data", f.stamp, m.image(f.stamp, "", f.rgb, "rgb8"))
    finally:
        w.close()
    return path
