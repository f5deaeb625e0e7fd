"""`registration`: synchronises colour, depth, camera_info and pose, keeps keyframes, builds view pairs.

Subscribes (remappable; a RealSense driver + any pose source works as is):

| topic | type |
|---|---|
| ``camera/color/image_raw`` | sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) |
| ``camera/aligned_depth_to_color/image_raw`` | sensor_msgs/Image (16UC1 in ``depth_unit`` metres, or 32FC1 metres) |
| ``camera/color/camera_info`` | sensor_msgs/CameraInfo (rectified images expected) |
| ``camera/pose`` | geometry_msgs/PoseStamped, T_world_camera of the optical frame |

Publishes:

| topic | type |
|---|---|
| ``registration/keyframe/image_raw`` | sensor_msgs/Image rgb8 of every keyframe, with its sensor stamp |
| ``registration/view_pairs`` | sensor_msgs/PointCloud2, one view pair per message (fields in ``regconsist_ros/ros/pair_msg.py``) |
| ``/diagnostics`` | diagnostic_msgs/DiagnosticArray: received, dropped by reason, keyframes, pairs, pairs/s |

Callbacks only match stamps (:class:`regconsist_ros.online.sync.StampSync`) and enqueue matched
sets into a bounded queue; a worker thread decodes, validates and registers them. Bad input
(encodings, size mismatch, missing or broken camera_info, non-finite or non-rigid poses, stamps
going backwards, bursts beyond the queue) is dropped with a throttled warning and a counted reason.
When ``tf2_ros`` is importable and ``pose_source=tf``, poses come from TF (``world_frame`` ->
the colour image's frame) instead of the pose topic.
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Literal

from regconsist_ros.online.keyframes import KeyframeConfig
from regconsist_ros.registration.geometry import CorrespondenceConfig
from regconsist_ros.registration.pairs import PairSelectionConfig
from regconsist_ros.ros.qos import QosConfig

NAME = "registration"


@dataclass
class RegistrationNodeConfig:
    """Synchronisation, queues and output of the registration node."""

    tolerance: float = field(default=0.02, metadata={"help": "max stamp difference (s) between colour, depth and pose"})
    sync_queue: int = field(default=30, metadata={"help": "messages kept per stream while matching"})
    work_queue: int = field(default=4, metadata={"help": "matched frames waiting for the worker (more are dropped as 'busy')"})
    depth_unit: float = field(default=0.001, metadata={"help": "metres per 16UC1 depth unit (RealSense: 0.001)"})
    max_points: int = field(default=20000, metadata={"help": "correspondences published per view pair (0 = all)"})
    pose_source: Literal["topic", "tf"] = field(default="topic", metadata={"help": "poses from camera/pose, or from tf2 (when installed)"})
    world_frame: str = field(default="world", metadata={"help": "world frame for tf poses"})

    def __post_init__(self):
        if not 0 < self.tolerance < 1:
            raise ValueError(f"RegistrationNodeConfig.tolerance must be in (0, 1) s, got {self.tolerance!r}")
        if self.sync_queue < 1 or self.work_queue < 1 or self.max_points < 0:
            raise ValueError(f"RegistrationNodeConfig: sync_queue, work_queue >= 1 and max_points >= 0 needed, got "
                             f"{self.sync_queue}, {self.work_queue}, {self.max_points}")
        if not self.depth_unit > 0:
            raise ValueError(f"RegistrationNodeConfig.depth_unit must be > 0, got {self.depth_unit!r}")


class Registrar:
    """The node's work without ROS: matched message set -> Frame -> view pairs (used by the worker)."""

    def __init__(self, cfg: RegistrationNodeConfig, kf: KeyframeConfig, pairs: PairSelectionConfig,
                 corr: CorrespondenceConfig, counter):
        from regconsist_ros.online.keyframes import PairBuilder

        self.cfg, self.counter = cfg, counter
        self.builder = PairBuilder(kf, pairs, corr)

    def frame(self, stamp: float, color, depth, info, T):
        """Decoded, validated Frame, or None (the reason is counted)."""
        from regconsist_ros.online.decode import check_sizes
        from regconsist_ros.online.errors import BadInput
        from regconsist_ros.ros import convert
        from regconsist_ros.sim.frame import Frame, FrameError

        try:
            rgb = convert.decode_color_msg(color)
            d = convert.decode_depth_msg(depth, self.cfg.depth_unit)
            check_sizes(rgb, d)
            if info is None:
                raise BadInput("camera_info", "no camera_info received yet")
            intr = convert.intrinsics_from_msg(info)
            if (intr.width, intr.height) != (rgb.shape[1], rgb.shape[0]):
                raise BadInput("size_mismatch", f"camera_info is {intr.width}x{intr.height}, images are "
                                                f"{rgb.shape[1]}x{rgb.shape[0]}")
            pose = T if not hasattr(T, "pose") else convert.pose_from_msg(T)
            frame = Frame(rgb=rgb, depth=d, intrinsics=intr, T_world_cam=pose, stamp=stamp)
        except BadInput as e:
            self.counter.drop(e.reason, e.message)
            return None
        except FrameError as e:
            self.counter.drop("frame", str(e))
            return None
        self.counter.accept()
        return frame


def make_node_class():
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseStamped
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from regconsist_ros.online.counters import DropCounter, RateMeter
    from regconsist_ros.online.sync import StampSync
    from regconsist_ros.ros import convert, params
    from regconsist_ros.ros.diagnostics import status_array
    from regconsist_ros.ros.pair_msg import pair_cloud
    from regconsist_ros.ros.qos import make_qos

    class RegistrationNode(Node):
        def __init__(self, **kwargs):
            super().__init__(NAME, **kwargs)
            params.declare(self, RegistrationNodeConfig)
            params.declare(self, KeyframeConfig, "keyframes")
            params.declare(self, PairSelectionConfig, "pairs")
            params.declare(self, CorrespondenceConfig, "correspondence")
            params.declare(self, QosConfig, "qos")
            self.cfg = params.read(self, RegistrationNodeConfig)
            qos = make_qos(params.read(self, QosConfig, "qos"))
            log = logging.getLogger(f"regconsist.{NAME}")
            self.counter = DropCounter(log, NAME)
            self.registrar = Registrar(self.cfg, params.read(self, KeyframeConfig, "keyframes"),
                                       params.read(self, PairSelectionConfig, "pairs"),
                                       params.read(self, CorrespondenceConfig, "correspondence"), self.counter)
            self.sync_counter = DropCounter(log, f"{NAME} sync")
            self.tf = None
            if self.cfg.pose_source == "tf":
                self.tf = self._make_tf()
            slots = ("color", "depth", "info") + (("pose",) if self.tf is None else ())
            self.sync = StampSync(slots, self.cfg.tolerance, self.cfg.sync_queue, self.sync_counter, latched=("info",))
            self.work: queue.Queue = queue.Queue(maxsize=self.cfg.work_queue)
            self.pub_kf = self.create_publisher(Image, "registration/keyframe/image_raw", qos)
            self.pub_pairs = self.create_publisher(PointCloud2, "registration/view_pairs", qos)
            self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.create_subscription(Image, "camera/color/image_raw", lambda m: self._on("color", m), qos)
            self.create_subscription(Image, "camera/aligned_depth_to_color/image_raw", lambda m: self._on("depth", m), qos)
            self.create_subscription(CameraInfo, "camera/color/camera_info", lambda m: self._on("info", m), qos)
            if self.tf is None:
                self.create_subscription(PoseStamped, "camera/pose", lambda m: self._on("pose", m), qos)
            self.pairs_rate = RateMeter(10.0)
            self.pairs_total = 0
            self.keyframes_published = 0
            self.last_stamp = None
            self.stop = threading.Event()
            self.worker = threading.Thread(target=self._work_loop, name="registration", daemon=True)
            self.worker.start()
            self.create_timer(1.0, self._diagnostics)
            self.get_logger().info("waiting for colour, depth, camera_info and pose")

        def _make_tf(self):
            try:
                import tf2_ros
            except ImportError:
                self.get_logger().warning("pose_source=tf but tf2_ros is not installed; using camera/pose")
                return None
            buf = tf2_ros.Buffer()
            tf2_ros.TransformListener(buf, self)
            return buf

        # ---- callbacks: stamp matching and enqueueing only ---------------------------------------
        def _on(self, slot: str, msg) -> None:
            stamp = convert.stamp_to_sec(msg.header.stamp)
            for m in self.sync.add(slot, stamp, msg):
                try:
                    self.work.put_nowait(m)
                except queue.Full:
                    self.counter.drop("busy", "registration worker is behind; frame dropped")

        # ---- worker ------------------------------------------------------------------------------------
        def _pose_for(self, m):
            if self.tf is None:
                return m["pose"]
            from regconsist_ros.online.decode import pose_from_fields

            t = self.tf.lookup_transform(self.cfg.world_frame, m["color"].header.frame_id, m["color"].header.stamp)
            tr, q = t.transform.translation, t.transform.rotation
            return pose_from_fields((tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w))

        def _work_loop(self) -> None:
            while not self.stop.is_set():
                try:
                    m = self.work.get(timeout=0.2)
                except queue.Empty:
                    continue
                try:
                    self._process(m)
                except Exception as e:  # a bug or an unforeseen input must not kill the node
                    self.counter.drop("error", f"{type(e).__name__}: {e}")

        def _process(self, m) -> None:
            try:
                pose = self._pose_for(m)
            except Exception as e:
                self.counter.drop("no_pose", str(e))
                return
            frame = self.registrar.frame(m["stamp"], m["color"], m["depth"], m.get("info"), pose)
            if frame is None:
                return
            before = self.registrar.builder.counts["keyframes"]
            pairs = self.registrar.builder.add(frame)
            if self.registrar.builder.counts["keyframes"] > before:
                self.pub_kf.publish(convert.color_msg(frame.rgb, frame.stamp, m["color"].header.frame_id))
                self.keyframes_published += 1
            for p in pairs:
                self.pub_pairs.publish(pair_cloud(p["uv1"], p["uv2"], p["src"].stamp, p["dst"].stamp, p["overlap_iou"],
                                                  m["color"].header.frame_id, self.cfg.max_points))
                self.pairs_total += 1
                self.pairs_rate.tick()

        def _diagnostics(self) -> None:
            snap = self.counter.snapshot()
            sync = self.sync_counter.snapshot()
            dropped = {**{f"sync.{k}": v for k, v in sync["dropped"].items()}, **snap["dropped"]}
            self.pub_diag.publish(status_array(self, f"{NAME}: status", {
                "frames_received": snap["received"], "frames_registered": snap["accepted"],
                "dropped": dropped, "dropped_total": sum(dropped.values()),
                "keyframes": self.keyframes_published, "view_pairs": self.pairs_total,
                "pairs_per_s": self.pairs_rate.rate(), **{f"builder.{k}": v for k, v in self.registrar.builder.counts.items()}},
                level="warn" if snap["received"] and not snap["accepted"] else "ok"))

        def shutdown(self) -> None:
            self.stop.set()
            self.worker.join(timeout=2.0)

    return RegistrationNode


def main(args=None) -> int:
    from regconsist_ros.ros.runtime import run_node

    return run_node(make_node_class(), args)


if __name__ == "__main__":
    raise SystemExit(main())
