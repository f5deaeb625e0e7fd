"""Messages of the visualisation topics (standard types, so RViz, Foxglove, rqt and PlotJuggler show them as is).

Registration node (``viz.*`` parameters, :class:`regconsist_ros.online.keyframe_viz.VizConfig`):

``registration/viz/correspondences`` sensor_msgs/Image rgb8
    one picture per drawn view pair: the older view (src) left, the newer (dst) right, ``viz.lines``
    of the pair's published correspondences as coloured lines with dots at both ends
    (:func:`regconsist_ros.registration.draw.draw_correspondences`, deterministic).
    ``header.stamp`` = the pair's ``registration/view_pairs`` message's (the dst stamp),
    ``header.frame_id`` the camera frame; published right after that pair. A keyframe paired with
    several older ones gives several pictures with one stamp, in the order of their pairs.
``registration/viz/keyframe_path`` nav_msgs/Path
    the last ``viz.path_max`` keyframes' camera poses (T_world_cam, optical frame), oldest first,
    each PoseStamped with its keyframe's sensor stamp; ``header`` = the newest keyframe's stamp and
    the world frame (``viz.frame_id``).
``registration/viz/keyframe_cloud`` sensor_msgs/PointCloud2
    the last ``viz.cloud_keyframes`` keyframes back-projected (every ``viz.cloud_stride``-th pixel
    with valid depth, at most ``viz.cloud_max_points``): fields ``x y z`` float32 (metres, world
    frame) and ``rgb`` float32 holding 0x00RRGGBB (the packing RViz and PCL read); height 1,
    is_dense, little-endian; ``header`` = newest keyframe's stamp and the world frame.

Learner and evaluator (``scalars`` parameter, on by default): every number they report is also a
std_msgs/Float64 on a topic of its own under ``learner/scalars/`` or ``evaluator/scalars/``
(:class:`ScalarPublisher`; names from the nested keys, :func:`scalar_items`).
"""
from __future__ import annotations

import math
import re
import threading

import numpy as np

CLOUD_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])
CLOUD_FIELDS = [("x", 0), ("y", 4), ("z", 8), ("rgb", 12)]  # all PointField.FLOAT32 (7)


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """[N, 3] uint8 -> [N] float32 whose bits are 0x00RRGGBB (PCL / RViz ``rgb``)."""
    rgb = np.asarray(rgb, np.uint32).reshape(-1, 3)
    return ((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]).astype("<u4").view("<f4")


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """[N] float32 of :func:`pack_rgb` -> [N, 3] uint8."""
    u = np.ascontiguousarray(packed, "<f4").view("<u4")
    return np.stack([(u >> 16) & 255, (u >> 8) & 255, u & 255], 1).astype(np.uint8)


def cloud_msg(xyz: np.ndarray, rgb: np.ndarray, stamp: float, frame_id: str):
    """sensor_msgs/PointCloud2 with fields x, y, z, rgb (float32) of ``xyz`` [N, 3] and ``rgb`` [N, 3] uint8."""
    from sensor_msgs.msg import PointCloud2, PointField

    from regconsist_ros.ros.convert import sec_to_stamp

    rows = np.zeros(len(xyz), CLOUD_DTYPE)
    rows["x"], rows["y"], rows["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    rows["rgb"] = pack_rgb(rgb)
    msg = PointCloud2(height=1, width=len(rows), is_bigendian=False, point_step=CLOUD_DTYPE.itemsize,
                      row_step=CLOUD_DTYPE.itemsize * len(rows), is_dense=True)
    msg.fields = [PointField(name=n, offset=o, datatype=PointField.FLOAT32, count=1) for n, o in CLOUD_FIELDS]
    msg.data = rows.tobytes()
    sec_to_stamp(stamp, msg.header.stamp)
    msg.header.frame_id = frame_id
    return msg


def read_cloud(msg) -> tuple[np.ndarray, np.ndarray]:
    """``(xyz [N, 3] float32, rgb [N, 3] uint8)`` of a cloud written by :func:`cloud_msg` (ValueError otherwise)."""
    names = [(f.name, f.offset) for f in msg.fields]
    if names != CLOUD_FIELDS or msg.point_step != CLOUD_DTYPE.itemsize or msg.is_bigendian:
        raise ValueError(f"not a keyframe cloud: fields {names}, point_step {msg.point_step}")
    rows = np.frombuffer(bytes(msg.data), CLOUD_DTYPE)
    return np.stack([rows["x"], rows["y"], rows["z"]], 1), unpack_rgb(rows["rgb"])


class PathPoses:
    """geometry_msgs/PoseStamped of keyframe poses, each made once: ``(stamps [N], poses [N, 4, 4], frame_id)`` ->
    list of N messages (a Path of 1000 poses is then a list copy, not 1000 new messages per keyframe)."""

    def __init__(self):
        self._msgs: dict[float, object] = {}
        self._frame = None

    def __call__(self, stamps: np.ndarray, poses: np.ndarray, frame_id: str) -> list:
        from regconsist_ros.ros.convert import pose_msg

        if frame_id != self._frame:
            self._msgs, self._frame = {}, frame_id
        out = [self._msgs.get(float(t)) or pose_msg(T, float(t), frame_id) for t, T in zip(stamps, poses)]
        self._msgs = {float(t): m for t, m in zip(stamps, out)}  # forget poses no longer in the path
        return out


def path_msg(poses: list, frame_id: str):
    """nav_msgs/Path of PoseStamped ``poses`` (oldest first), stamped with the newest one's stamp."""
    from nav_msgs.msg import Path

    msg = Path()
    msg.header.frame_id = frame_id
    if poses:
        msg.header.stamp = poses[-1].header.stamp
    msg.poses = poses
    return msg


class RegistrationViz:
    """The registration node's ``viz.*`` topics: only the switched-on publishers exist; the node calls
    :meth:`keyframe` from its frame worker (an append), :meth:`pair` from its pair worker (draws and
    publishes the picture), and runs :meth:`run` on a thread of its own when ``thread`` is needed
    (path or cloud: built there after each new keyframe).

    ``pose_frame`` is the node's latest ``camera/pose`` frame_id (with ``pose_topic``); the world frame
    is ``cfg.frame_id``, else that, else ``fallback_frame`` (the node's ``world_frame``).
    """

    def __init__(self, node, cfg, qos, fallback_frame: str, pose_topic: bool):
        from sensor_msgs.msg import Image, PointCloud2

        from regconsist_ros.online.keyframe_viz import KeyframeView

        self.node, self.cfg, self.fallback, self.pose_topic = node, cfg, fallback_frame, pose_topic
        self.pose_frame = ""
        self.pub_corr = node.create_publisher(Image, "registration/viz/correspondences", qos) if cfg.correspondences else None
        self.pub_path = self.pub_cloud = None
        if cfg.path:
            from nav_msgs.msg import Path

            self.pub_path = node.create_publisher(Path, "registration/viz/keyframe_path", qos)
        if cfg.cloud:
            self.pub_cloud = node.create_publisher(PointCloud2, "registration/viz/keyframe_cloud", qos)
        self.view = KeyframeView(cfg) if cfg.path or cfg.cloud else None
        self.thread = cfg.path or cfg.cloud  # whether run() needs a thread
        self._wake, self._segment, self._pairs = threading.Event(), None, 0
        self._path_poses = PathPoses()

    def world_frame(self) -> str:
        return self.cfg.frame_id or (self.pose_frame if self.pose_topic and self.pose_frame else self.fallback)

    def keyframe(self, frame, segment=None) -> None:
        """A new keyframe (frame worker: O(1)). ``segment``: what identifies the poses' frame (the node's
        PairBuilder, replaced at a new odometry segment); when it changes, the path and cloud start afresh."""
        if self.view is None:
            return
        if segment is not self._segment:
            if self._segment is not None:
                self.view.reset()
            self._segment = segment
        self.view.add(frame)
        self._wake.set()

    def pair(self, p: dict, msg) -> None:
        """Every ``every``-th view pair ``p`` (with its published message ``msg``): the picture of its
        published correspondences on its two keyframes, with the message's stamp (pair worker)."""
        from regconsist_ros.registration.draw import draw_correspondences
        from regconsist_ros.ros.convert import color_msg
        from regconsist_ros.ros.pair_msg import read_pair_cloud

        if self.pub_corr is None:
            return
        self._pairs += 1
        if (self._pairs - 1) % self.cfg.every:
            return
        q = read_pair_cloud(msg)  # exactly the correspondences subscribers got (after max_points)
        img, _ = draw_correspondences(p["src"].rgb, p["dst"].rgb, q["uv1"], q["uv2"], self.cfg.lines)  # [H, W1 + W2, 3]
        out = color_msg(img, 0.0, msg.header.frame_id)
        out.header.stamp = msg.header.stamp
        self.pub_corr.publish(out)

    def publish_keyframes(self) -> None:
        """The path and the cloud of the kept keyframes, now."""
        world = self.world_frame()
        if self.pub_path is not None:
            stamps, poses = self.view.path()
            self.pub_path.publish(path_msg(self._path_poses(stamps, poses, world), world))
        if self.pub_cloud is not None:
            xyz, rgb, stamp = self.view.cloud()
            self.pub_cloud.publish(cloud_msg(xyz, rgb, stamp, world))

    def run(self, stop) -> None:
        """Until ``stop`` (a threading.Event) is set: :meth:`publish_keyframes` after each new keyframe (once
        for several when behind); a failure is logged (throttled) and the loop goes on."""
        while not stop.is_set():
            if not self._wake.wait(timeout=0.2):
                continue
            self._wake.clear()
            try:
                self.publish_keyframes()
            except Exception as e:  # keep the thread (and the node) alive
                self.node.get_logger().warning(f"keyframe path/cloud failed: {type(e).__name__}: {e}",
                                               throttle_duration_sec=5.0)


# ---- scalars ------------------------------------------------------------------------------------------
def topic_token(name: str) -> str:
    """``name`` as one ROS topic name token: letters, digits and ``_`` (others -> ``_``), not starting
    with a digit (then ``_`` first); '' -> ``_``. E.g. ``J&F`` -> ``J_F``."""
    t = re.sub(r"[^A-Za-z0-9_]", "_", str(name))
    return "_" + t if not t or t[0].isdigit() else t


def scalar_items(values: dict, skip: tuple[str, ...] = ()) -> list[tuple[str, float]]:
    """``[(name, value)]`` of every finite number (int or float, not bool) in nested dict ``values``,
    names joined with ``/`` (each key a :func:`topic_token`; a key with dots is split at them, as
    /diagnostics flattens it); keys whose joined name is in ``skip`` are left out."""
    out: list[tuple[str, float]] = []

    def walk(prefix: str, v) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                name = "/".join(topic_token(p) for p in str(k).split("."))
                walk(f"{prefix}/{name}" if prefix else name, x)
        elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)):
            if math.isfinite(float(v)) and prefix not in skip:
                out.append((prefix, float(v)))

    walk("", values)
    return out


class ScalarPublisher:
    """std_msgs/Float64 publishers under ``prefix`` (e.g. ``learner/scalars``), made at a name's first value."""

    def __init__(self, node, prefix: str, qos=10):
        self.node, self.prefix, self.qos = node, prefix.rstrip("/"), qos
        self._pubs: dict = {}
        self._lock = threading.Lock()  # publish() may be called from several threads

    def publish(self, items) -> None:
        """Publish ``(name, value)`` pairs (names as :func:`scalar_items` makes them)."""
        from std_msgs.msg import Float64

        for name, value in items:
            with self._lock:
                pub = self._pubs.get(name)
                if pub is None:
                    pub = self._pubs[name] = self.node.create_publisher(Float64, f"{self.prefix}/{name}", self.qos)
            pub.publish(Float64(data=float(value)))

    @property
    def topics(self) -> list[str]:
        with self._lock:
            return sorted(f"{self.prefix}/{n}" for n in self._pubs)
