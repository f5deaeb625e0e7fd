"""Bags through the ``rosbags`` library (no ROS install): rosbag2 (``.db3`` / ``.mcap`` with
metadata.yaml), ROS 1 ``.bag``, and RealSense ``.bag`` recordings in their own topic layout.

Opening reads the bag once for stamps (header stamps; the log time where a header has none),
camera infos, poses and extrinsics, and associates colour with depth (unique nearest stamps within
``max_dt``, as TUM's associate.py) and with the nearest pose. Frames are then decoded lazily:
reading them in order streams through the bag once (random access restarts the stream).

Generic bags (layout ``rosbag``): topics default to a RealSense ROS driver's
(``/camera/color/image_raw``, ``/camera/aligned_depth_to_color/image_raw``,
``/camera/color/camera_info``) plus ``/camera/pose``; each is an option (``color_topic`` ...). A
missing default pose topic means poses unknown; a pose topic named explicitly must exist. With
``depth_registered=false`` depth is registered to colour from ``depth_info_topic``
(default ``/camera/depth/camera_info``) and ``extrinsics`` (T_color_depth; identity when not given).

RealSense ``.bag`` (layout ``realsense``; what the RealSense Viewer / SDK records; ROS 1 format):
``/device_0/sensor_<i>/Depth_0/image/data`` (Z16, mono16) and ``/device_0/sensor_<j>/Color_0/image/data``,
each with ``.../info/camera_info``; extrinsics on ``<stream>/tf/<ref>`` (geometry_msgs/Transform,
librealsense's extrinsics from the reference stream to that stream: T_stream_ref); depth units on
``/device_0/sensor_<i>/option/Depth Units/value`` (default 0.001 m). No poses: frames come out with
the pose unknown. Depth is not aligned to colour: it is registered with the two camera infos and
T_color_depth = T_color_ref inv(T_depth_ref) (override with ``extrinsics``). Read from the
librealsense file-format description; tested against our own writer, not on a real recording here.
"""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from regconsist_ros.sim.depth_register import register_depth
from regconsist_ros.sim.frame import Frame, FrameError, Intrinsics
from regconsist_ros.sim.poses import invert
from regconsist_ros.sim.recordings import rosmsg
from regconsist_ros.sim.recordings.base import (DROP_BAD_POSE, DROP_NO_DEPTH, DROP_NO_POSE, ColorFrame, FrameDrop,
                                                Recording, RecordingError, RecordingOptions)
from regconsist_ros.sim.sequences import associate_nearest, associate_unique

log = logging.getLogger(__name__)

DROP_STAMP = "stamp_backwards"
RS_IMAGE = re.compile(r"^/device_(\d+)/sensor_(\d+)/(Depth|Color)_(\d+)/image/data$")
ROSBAG_TOPICS = {"color_topic": "/camera/color/image_raw", "depth_topic": "/camera/aligned_depth_to_color/image_raw",
                 "color_info_topic": "/camera/color/camera_info", "depth_info_topic": "/camera/depth/camera_info",
                 "pose_topic": "/camera/pose"}


def bag_path(path: Path) -> Path:
    """The path rosbags opens: a ROS 1 .bag file, or a rosbag2 directory (a .db3/.mcap inside one is
    mapped to its directory)."""
    if path.is_file() and path.suffix in (".db3", ".mcap") and (path.parent / "metadata.yaml").is_file():
        return path.parent
    return path


def is_bag(path: Path) -> bool:
    return (path.is_file() and path.suffix == ".bag") or (path.is_dir() and (path / "metadata.yaml").is_file()) or (
        path.is_file() and path.suffix in (".db3", ".mcap") and (path.parent / "metadata.yaml").is_file())


def is_realsense_bag(path: Path) -> bool:
    """A ROS 1 bag with RealSense SDK topics (/device_0/sensor_*/Color_0/image/data)."""
    if not (path.is_file() and path.suffix == ".bag"):
        return False
    try:
        from rosbags.highlevel import AnyReader
    except ImportError:
        return False
    try:
        with AnyReader([path]) as reader:
            return any(RS_IMAGE.match(c.topic) for c in reader.connections)
    except Exception:  # not a readable bag: the generic reader reports why
        return False


def _reader(path: Path):
    try:
        from rosbags.highlevel import AnyReader
    except ImportError:
        raise ImportError("reading bags needs the 'rosbags' package: pip install rosbags") from None
    return AnyReader([path])


@dataclass
class _Index:
    """What the first pass found (per frame k: colour / depth message ordinals, pose)."""

    color_ord: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [N]
    depth_ord: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [N]
    poses: np.ndarray | None = None  # [N, 4, 4]


class BagRecording(Recording):
    """A generic rosbag2 / ROS 1 bag (see the module docstring)."""

    layout = "rosbag"

    def __init__(self, path: Path, opts: RecordingOptions):
        super().__init__()
        self.root = Path(path)
        self.path = bag_path(self.root)
        self.opts = opts
        self.source = f"bag {self.root}"
        self.depth_unit = opts.depth_unit or 0.001
        self.depth_K: Intrinsics | None = None  # set when depth must be registered
        self.T_color_depth: np.ndarray | None = None
        self._lock = threading.Lock()
        self._stream = None  # (generator, next frame index)
        with _reader(self.path) as reader:
            self.topics = self._topics(reader)
            self._scan(reader)
        if self.depth_K is not None:
            log.info("%s: depth registered to colour (depth camera %dx%d, T_color_depth translation %s m)", self.source,
                     self.depth_K.width, self.depth_K.height, np.round(self._T()[:3, 3], 4).tolist())

    # -- opening -------------------------------------------------------------------------------

    def _topics(self, reader) -> dict[str, str]:
        have = {c.topic for c in reader.connections}
        o = self.opts
        topics = {k: getattr(o, k) or v for k, v in ROSBAG_TOPICS.items()}
        for k in ("color_topic", "depth_topic", "color_info_topic"):
            if topics[k] not in have:
                raise RecordingError(f"{self.root}: topic {topics[k]!r} ({k}) is not in the bag; it has "
                                     f"{sorted(have)} (choose with '?{k}=TOPIC')")
        if o.pose_topic == "none" or (not o.pose_topic and topics["pose_topic"] not in have):
            if o.pose_topic != "none":
                log.warning("%s: no pose topic %s: the poses are unknown", self.root, topics["pose_topic"])
            topics["pose_topic"] = ""
        elif topics["pose_topic"] not in have:
            raise RecordingError(f"{self.root}: pose topic {topics['pose_topic']!r} is not in the bag; it has {sorted(have)}")
        if not o.registered(True):
            if topics["depth_info_topic"] not in have and not o.depth_intrinsics:
                raise RecordingError(f"{self.root}: depth_registered=false needs the depth camera_info topic "
                                     f"{topics['depth_info_topic']!r} (not in the bag; '?depth_info_topic=TOPIC') or "
                                     "depth_intrinsics=fx,fy,cx,cy")
        else:
            topics["depth_info_topic"] = ""
        return topics

    def _T(self) -> np.ndarray:
        return np.eye(4) if self.T_color_depth is None else self.T_color_depth

    def _extra_scan(self, conn, msg) -> None:
        """Layout-specific latched messages (RealSense: extrinsics, depth units)."""

    def _scan(self, reader) -> None:
        t = self.topics
        conns = [c for c in reader.connections if c.topic in t.values() or self._wanted_extra(c.topic)]
        stamps = {"color": [], "depth": []}
        pose_st, pose_T = [], []
        infos: dict[str, object] = {}
        for conn, log_ns, raw in reader.messages(connections=conns):
            topic = conn.topic
            if topic in (t["color_info_topic"], t["depth_info_topic"]) and topic in infos:
                continue  # latched: the first one is the calibration
            msg = reader.deserialize(raw, conn.msgtype)
            if topic == t["color_topic"]:
                stamps["color"].append(rosmsg.stamp(msg, log_ns))
            elif topic == t["depth_topic"]:
                stamps["depth"].append(rosmsg.stamp(msg, log_ns))
            elif topic == t["pose_topic"]:
                pose_st.append(rosmsg.stamp(msg, log_ns))
                pose_T.append(rosmsg.pose(msg))
            elif topic in (t["color_info_topic"], t["depth_info_topic"]):
                infos[topic] = msg
            else:
                self._extra_scan(conn, msg)
        if not stamps["color"]:
            raise RecordingError(f"{self.root}: no message on the colour topic {t['color_topic']}")
        if t["color_info_topic"] not in infos:
            raise RecordingError(f"{self.root}: no camera_info on {t['color_info_topic']}")
        K = rosmsg.intrinsics(infos[t["color_info_topic"]], t["color_info_topic"])
        if self.opts.intrinsics:
            K = self.opts.camera(self.opts.intrinsics, K.width, K.height, "intrinsics")
        self.intrinsics = K
        if t["depth_info_topic"] or not self.opts.registered(self._layout_registered()):
            if self.opts.depth_intrinsics:
                di = infos.get(t["depth_info_topic"])
                w, h = (int(di.width), int(di.height)) if di is not None else (K.width, K.height)
                self.depth_K = self.opts.camera(self.opts.depth_intrinsics, w, h, "depth_intrinsics")
            else:
                if t["depth_info_topic"] not in infos:
                    raise RecordingError(f"{self.root}: no camera_info on {t['depth_info_topic']} to register depth")
                self.depth_K = rosmsg.intrinsics(infos[t["depth_info_topic"]], t["depth_info_topic"])
            if self.opts.extrinsics:
                self.T_color_depth = self.opts.T_color_depth()
        self._associate(np.asarray(stamps["color"]), np.asarray(stamps["depth"]),
                        np.asarray(pose_st), pose_T if t["pose_topic"] else None)

    def _wanted_extra(self, topic: str) -> bool:
        return False

    def _layout_registered(self) -> bool:
        return True

    def _associate(self, c_st: np.ndarray, d_st: np.ndarray, p_st: np.ndarray, p_T: list | None) -> None:
        dt = self.opts.max_dt
        d_match = associate_unique(c_st, d_st, dt)
        dropped = {DROP_NO_DEPTH: 0, DROP_NO_POSE: 0, DROP_BAD_POSE: 0, DROP_STAMP: 0}
        p_match = associate_nearest(c_st, p_st, dt) if p_T is not None else None
        keep, poses, last = [], [], -np.inf
        for ci in range(len(c_st)):
            if d_match[ci] < 0:
                dropped[DROP_NO_DEPTH] += 1
                continue
            if p_match is not None:
                if p_match[ci] < 0:
                    dropped[DROP_NO_POSE] += 1
                    continue
                T = p_T[p_match[ci]]
                if T is None:
                    dropped[DROP_BAD_POSE] += 1
                    continue
            if c_st[ci] <= last:
                dropped[DROP_STAMP] += 1
                continue
            last = c_st[ci]
            keep.append(ci)
            if p_match is not None:
                poses.append(T)
        self.dropped = {k: v for k, v in dropped.items() if v}
        if not keep:
            raise RecordingError(f"{self.root}: no complete frame (colour + depth{' + pose' if p_T is not None else ''} "
                                 f"within {dt} s): {len(c_st)} colour, {len(d_st)} depth, {len(p_st)} pose messages; "
                                 f"dropped {self.dropped}")
        keep = np.asarray(keep, np.int64)
        self.index = _Index(keep, d_match[keep], np.asarray(poses).reshape(-1, 4, 4) if p_T is not None else None)
        self.has_poses = p_T is not None
        self.stamps = c_st[keep]
        self.names = [f"{self.root.name}#{int(c)}" for c in keep]

    # -- frames --------------------------------------------------------------------------------

    def _frames(self, start: int):
        """Yields (k, Frame | FrameDrop) for k = start, start + 1, ... streaming through the bag."""
        idx, t = self.index, self.topics
        want = {"color": {int(c): k for k, c in enumerate(idx.color_ord) if k >= start},
                "depth": {int(d): k for k, d in enumerate(idx.depth_ord) if k >= start}}
        got: dict[str, dict] = {"color": {}, "depth": {}}
        seen = {"color": 0, "depth": 0}
        nxt = start
        reader = _reader(self.path)
        reader.open()
        try:
            conns = [c for c in reader.connections if c.topic in (t["color_topic"], t["depth_topic"])]
            for conn, _, raw in reader.messages(connections=conns):
                kind = "color" if conn.topic == t["color_topic"] else "depth"
                o, seen[kind] = seen[kind], seen[kind] + 1
                k = want[kind].get(o)
                if k is None or k < nxt:
                    continue
                msg = reader.deserialize(raw, conn.msgtype)
                try:
                    got[kind][k] = rosmsg.color(msg) if kind == "color" else rosmsg.depth(msg, self.depth_unit)
                except FrameDrop as e:
                    got[kind][k] = e
                while nxt in got["color"] and nxt in got["depth"]:
                    yield nxt, self._build(nxt, got["color"].pop(nxt), got["depth"].pop(nxt))
                    nxt += 1
                if nxt >= len(self):
                    return
        finally:
            try:
                reader.close()
            except Exception:  # closed at interpreter exit (an unfinished stream): nothing left to release
                pass

    def _build(self, k: int, rgb, d) -> Frame | FrameDrop:
        for a in (rgb, d):
            if isinstance(a, FrameDrop):
                return a
        K = self.intrinsics
        if rgb.shape[:2] != (K.height, K.width):
            return FrameDrop("size_mismatch", f"colour is {rgb.shape[1]}x{rgb.shape[0]}, camera_info {K.width}x{K.height}")
        if self.depth_K is not None:
            if d.shape != (self.depth_K.height, self.depth_K.width):
                return FrameDrop("size_mismatch", f"depth is {d.shape[1]}x{d.shape[0]}, its camera_info "
                                                  f"{self.depth_K.width}x{self.depth_K.height}")
            d = register_depth(d, self.depth_K, K, self.T_color_depth, self.opts.register_fill)
        elif d.shape != rgb.shape[:2]:
            return FrameDrop("size_mismatch", f"depth is {d.shape[1]}x{d.shape[0]} but colour {rgb.shape[1]}x{rgb.shape[0]} "
                                              "(not aligned to colour? try depth_registered=false)")
        T = None if self.index.poses is None else self.index.poses[k].copy()
        try:
            return Frame(rgb=rgb, depth=d, intrinsics=K, T_world_cam=T, stamp=float(self.stamps[k]),
                         meta={"index": k, "source": str(self.root)})
        except FrameError as e:
            return FrameDrop("frame", str(e))

    def frame_or_drop(self, i: int) -> Frame | FrameDrop:
        with self._lock:
            if self._stream is None or i < self._stream[1]:
                if self._stream is not None:
                    self._stream[0].close()
                self._stream = [self._frames(i), i]
            gen = self._stream[0]
            for k, f in gen:
                self._stream[1] = k + 1
                if k == i:
                    if k == len(self) - 1:
                        self.close()
                    return f
            self._stream = None
            return FrameDrop("unreadable", f"frame {i} not found in a second pass over the bag")

    def close(self) -> None:
        """Stop the stream in progress (the bag is reopened on the next access)."""
        if self._stream is not None:
            self._stream[0].close()
            self._stream = None

    def frame(self, i: int) -> Frame:
        f = self.frame_or_drop(i)
        if isinstance(f, FrameDrop):
            raise RecordingError(f"{self.source} frame {i}: {f}")
        return f

    def color(self, i: int) -> ColorFrame:
        f = self.frame_or_drop(i)
        if isinstance(f, FrameDrop):
            raise f
        return ColorFrame(f.rgb, f.stamp, self.names[i])

    def describe(self) -> dict:
        d = super().describe()
        d["topics"] = {k: v for k, v in self.topics.items() if v}
        d["depth_registered_here"] = self.depth_K is not None
        return d


class RealSenseBag(BagRecording):
    """A RealSense SDK recording (see the module docstring)."""

    layout = "realsense"

    def _topics(self, reader) -> dict[str, str]:
        have = {c.topic for c in reader.connections}
        streams = {}
        for topic in sorted(have):
            m = RS_IMAGE.match(topic)
            if m and m.group(4) == "0":
                streams.setdefault(m.group(3), topic)
        o = self.opts
        color = o.color_topic or streams.get("Color")
        depth = o.depth_topic or streams.get("Depth")
        if not color or not depth or color not in have or depth not in have:
            raise RecordingError(f"{self.root}: a RealSense recording needs a Color and a Depth stream "
                                 f"(/device_0/sensor_N/Color_0/image/data, .../Depth_0/image/data); it has {sorted(have)}")
        prefix = {k: v.rsplit("/image/data", 1)[0] for k, v in (("color", color), ("depth", depth))}
        self._rs = {"prefix": prefix, "tf": {}, "depth_units": None,
                    "units_topic": re.sub(r"/(Depth|Color)_\d+$", "", prefix["depth"]) + "/option/Depth Units/value"}
        topics = {"color_topic": color, "depth_topic": depth,
                  "color_info_topic": o.color_info_topic or prefix["color"] + "/info/camera_info",
                  "depth_info_topic": o.depth_info_topic or prefix["depth"] + "/info/camera_info",
                  "pose_topic": o.pose_topic if o.pose_topic not in ("", "none") else ""}
        for k in ("color_info_topic", "depth_info_topic") + (("pose_topic",) if topics["pose_topic"] else ()):
            if topics[k] not in have:
                raise RecordingError(f"{self.root}: topic {topics[k]!r} ({k}) is not in the RealSense bag; it has {sorted(have)}")
        if o.registered(False):  # the user says depth is already aligned (recorded with align)
            topics["depth_info_topic"] = ""
        return topics

    def _layout_registered(self) -> bool:
        return False

    def _wanted_extra(self, topic: str) -> bool:
        return topic.startswith(tuple(p + "/tf/" for p in self._rs["prefix"].values())) or topic == self._rs["units_topic"]

    def _extra_scan(self, conn, msg) -> None:
        if conn.topic == self._rs["units_topic"]:
            if self._rs["depth_units"] is None:
                self._rs["depth_units"] = float(msg.data)
            return
        for kind, p in self._rs["prefix"].items():
            if conn.topic.startswith(p + "/tf/") and kind not in self._rs["tf"]:
                T = rosmsg.pose(msg)
                if T is None:
                    raise RecordingError(f"{self.root}: {conn.topic}: extrinsics are not a rigid transform")
                self._rs["tf"][kind] = T

    def _scan(self, reader) -> None:
        super()._scan(reader)
        units = self._rs["depth_units"]
        if not self.opts.depth_unit and units:
            if not (0 < units < 1):
                raise RecordingError(f"{self.root}: Depth Units option {units} is not a number of metres in (0, 1)")
            self.depth_unit = units
        if self.depth_K is not None and not self.opts.extrinsics:
            tf = self._rs["tf"]
            if "color" not in tf:
                log.warning("%s: no colour extrinsics (%s/tf/*): registering depth with T_color_depth = identity",
                            self.root, self._rs["prefix"]["color"])
            # librealsense stores extrinsics reference -> stream (T_stream_ref) on <stream>/tf/<ref>
            self.T_color_depth = tf.get("color", np.eye(4)) @ invert(tf.get("depth", np.eye(4)))
        self.source = f"RealSense bag {self.root}"
