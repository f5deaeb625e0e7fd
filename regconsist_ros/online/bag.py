"""Frames from a rosbag2 recording (``.db3`` or ``.mcap`` + metadata.yaml), without a ROS install.

Reads colour, aligned depth, camera_info and pose messages with the ``rosbags`` library, matches
them by sensor stamp (the same matcher the registration node uses) and decodes them with the same
checks (:func:`regconsist_ros.online.decode.frame_from_fields`, as the registration node does). Bad messages are counted by reason and skipped.
``write_bag`` records frames the way the camera source node publishes them (for tests and for
turning a simulated run into a bag).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from regconsist_ros.sim.frame import Frame

log = logging.getLogger(__name__)


@dataclass
class BagTopics:
    """Topic names in the bag (a RealSense driver's by default, plus a pose topic)."""

    color: str = field(default="/camera/color/image_raw", metadata={"help": "colour image topic"})
    depth: str = field(default="/camera/aligned_depth_to_color/image_raw", metadata={"help": "aligned depth topic"})
    info: str = field(default="/camera/color/camera_info", metadata={"help": "camera info topic"})
    pose: str = field(default="/camera/pose", metadata={"help": "geometry_msgs/PoseStamped topic of the camera pose"})


def _stamp(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def read_bag(path: str | Path, topics: BagTopics | None = None, tolerance: float = 0.02, depth_unit: float = 0.001,
             max_frames: int = 0) -> tuple[list[Frame], dict]:
    """All matched frames of the bag, in stamp order, and the drop counts ``{reason: n}``."""
    try:
        from rosbags.highlevel import AnyReader
    except ImportError:
        raise ImportError("reading rosbag2 files needs the 'rosbags' package: pip install rosbags") from None
    from regconsist_ros.online.counters import DropCounter
    from regconsist_ros.online.decode import camera_info_msg_fields, frame_from_fields, image_msg_fields, pose_msg_fields
    from regconsist_ros.online.errors import BadInput
    from regconsist_ros.online.sync import StampSync
    from regconsist_ros.sim.frame import FrameError

    topics = topics or BagTopics()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such rosbag2 directory")
    wanted = {topics.color: "color", topics.depth: "depth", topics.info: "info", topics.pose: "pose"}
    counter = DropCounter(log, f"bag {path.name}")
    sync = StampSync(("color", "depth", "info", "pose"), tolerance, 1000, counter, latched=("info",))
    frames: list[Frame] = []
    with AnyReader([path]) as reader:
        conns = [c for c in reader.connections if c.topic in wanted]
        missing = set(wanted) - {c.topic for c in conns}
        if missing:
            raise ValueError(f"{path}: topics {sorted(missing)} are not in the bag; it has "
                             f"{sorted({c.topic for c in reader.connections})}")
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            for m in sync.add(wanted[conn.topic], _stamp(msg), msg):
                c, d, i, p = m["color"], m["depth"], m["info"], m["pose"]
                try:
                    frames.append(frame_from_fields(m["stamp"], image_msg_fields(c), image_msg_fields(d),
                                                    camera_info_msg_fields(i), pose_msg_fields(p), depth_unit,
                                                    frame_id=c.header.frame_id))
                    counter.accept()
                except BadInput as e:
                    counter.drop(e.reason, e.message)
                except FrameError as e:
                    counter.drop("frame", str(e))
            if max_frames and len(frames) >= max_frames:
                break
    snap = counter.snapshot()
    if not frames:
        raise ValueError(f"{path}: no complete frame (colour + depth + camera_info + pose within {tolerance} s); "
                         f"dropped: {snap['dropped']}")
    return frames, snap["dropped"]


class BagSource:
    """An indexable frame source over a bag (frames decoded once, in memory): ``len``, ``[i]``."""

    def __init__(self, path: str | Path, topics: BagTopics | None = None, max_frames: int = 0):
        self.frames, self.dropped = read_bag(path, topics, max_frames=max_frames)
        self.intrinsics = self.frames[0].intrinsics

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> Frame:
        return self.frames[i]


def write_bag(path: str | Path, frames, topics: BagTopics | None = None, depth_encoding: str = "16UC1") -> Path:
    """Record frames as a rosbag2 (sqlite3) the way the camera source publishes them."""
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    from regconsist_ros.online.decode import camera_info_fields, encode_color, encode_depth, pose_fields

    topics = topics or BagTopics()
    ts = get_typestore(Stores.ROS2_JAZZY)
    T = ts.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    Image, CameraInfo = T["sensor_msgs/msg/Image"], T["sensor_msgs/msg/CameraInfo"]
    RoI = T["sensor_msgs/msg/RegionOfInterest"]
    PoseStamped, Pose = T["geometry_msgs/msg/PoseStamped"], T["geometry_msgs/msg/Pose"]
    Point, Quaternion = T["geometry_msgs/msg/Point"], T["geometry_msgs/msg/Quaternion"]
    path = Path(path)
    with Writer(path, version=8) as w:
        conns = {k: w.add_connection(getattr(topics, k), t.__msgtype__, typestore=ts)
                 for k, t in (("color", Image), ("depth", Image), ("info", CameraInfo), ("pose", PoseStamped))}
        for f in frames:
            sec, nsec = divmod(int(round(f.stamp * 1e9)), 1_000_000_000)
            ns = sec * 1_000_000_000 + nsec

            def header(frame_id):
                return Header(stamp=Time(sec=sec, nanosec=nsec), frame_id=frame_id)

            def image(fields, frame_id):
                return Image(header=header(frame_id), height=fields["height"], width=fields["width"],
                             encoding=fields["encoding"], is_bigendian=fields["is_bigendian"], step=fields["step"],
                             data=np.frombuffer(fields["data"], np.uint8))

            ci = camera_info_fields(f.intrinsics)
            info = CameraInfo(header=header(f.frame_id), height=ci["height"], width=ci["width"],
                              distortion_model=ci["distortion_model"], d=np.array(ci["d"], np.float64),
                              k=np.array(ci["k"], np.float64), r=np.array(ci["r"], np.float64),
                              p=np.array(ci["p"], np.float64), binning_x=0, binning_y=0,
                              roi=RoI(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
            (x, y, z), (qx, qy, qz, qw) = pose_fields(f.T_world_cam)
            pose = PoseStamped(header=header("world"), pose=Pose(position=Point(x=x, y=y, z=z),
                                                                  orientation=Quaternion(x=qx, y=qy, z=qz, w=qw)))
            for k, msg in (("info", info), ("pose", pose), ("depth", image(encode_depth(f.depth, depth_encoding), f.frame_id)),
                           ("color", image(encode_color(f.rgb), f.frame_id))):
                w.write(conns[k], ns, ts.serialize_cdr(msg, msg.__msgtype__))
    return path
