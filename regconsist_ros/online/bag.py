"""Bags for the online side: :func:`read_bag` / :class:`BagSource` read through the one frame-source
layer (:class:`regconsist_ros.sim.recordings.bags.BagRecording`: rosbag2 ``.db3`` / ``.mcap``, ROS 1
``.bag``, RealSense ``.bag``; frames associated by sensor stamp, bad messages counted by reason and
skipped). ``write_bag`` records frames the way the camera source node publishes them (for tests and
for turning a simulated run into a bag).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path


from regconsist_ros.sim.frame import Frame

log = logging.getLogger(__name__)


@dataclass
class BagTopics:
    """Topic names in the bag (a RealSense driver's by default, plus a pose topic)."""

    color: str = field(default="/camera/color/image_raw", metadata={"help": "colour image topic"})
    depth: str = field(default="/camera/aligned_depth_to_color/image_raw", metadata={"help": "aligned depth topic"})
    info: str = field(default="/camera/color/camera_info", metadata={"help": "camera info topic"})
    pose: str = field(default="/camera/pose", metadata={"help": "geometry_msgs/PoseStamped topic of the camera pose"})

    def options(self) -> dict:
        """As :class:`regconsist_ros.sim.recordings.RecordingOptions` fields (a non-default pose topic must exist)."""
        d = BagTopics()
        return {"color_topic": self.color, "depth_topic": self.depth, "color_info_topic": self.info,
                "pose_topic": "" if self.pose == d.pose else self.pose}


def read_bag(path: str | Path, topics: BagTopics | None = None, tolerance: float = 0.02, depth_unit: float = 0.001,
             max_frames: int = 0) -> tuple[list[Frame], dict]:
    """All matched frames of the bag, in stamp order, and the drop counts ``{reason: n}`` (association
    drops and frames whose messages could not be decoded). Frames have ``T_world_cam = None`` when the
    bag has no pose topic."""
    from regconsist_ros.sim.recordings import FrameDrop, RecordingError, open_recording

    rec = open_recording(Path(path), layout="rosbag", max_dt=tolerance, depth_unit=depth_unit,
                         **(topics or BagTopics()).options())
    frames, dropped = [], dict(rec.dropped)
    for i in range(len(rec)):
        f = rec.frame_or_drop(i)
        if isinstance(f, FrameDrop):
            dropped[f.reason] = dropped.get(f.reason, 0) + 1
            log.warning("bag %s: frame %d dropped (%s)", Path(path).name, i, f)
        else:
            frames.append(f)
        if max_frames and len(frames) >= max_frames:
            break
    if not frames:
        raise RecordingError(f"{path}: no complete frame could be decoded; dropped: {dropped}")
    return frames, dropped


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
    """Record frames as a rosbag2 (sqlite3) the way the camera source publishes them (the frame-source
    layer's writer, :func:`regconsist_ros.sim.recordings.bag_writer.write_rosbag`, on ``topics``)."""
    from regconsist_ros.sim.recordings.bag_writer import write_rosbag

    t = topics or BagTopics()
    return write_rosbag(path, frames, storage="sqlite3", depth_encoding=depth_encoding,
                        topics={"color_topic": t.color, "depth_topic": t.depth, "color_info_topic": t.info,
                                "pose_topic": t.pose})
