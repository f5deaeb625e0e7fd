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

Parameters: :class:`~regconsist_ros.online.registrar.RegistrationNodeConfig` (top level),
``keyframes.*`` (KeyframeConfig), ``view_pairs.*`` (PairSelectionConfig), ``correspondence.*``
(CorrespondenceConfig), ``qos.*``.

Callbacks only match stamps (:class:`regconsist_ros.online.sync.StampSync`) and enqueue matched
sets into a bounded queue; a worker thread hands their fields to the ROS-free
:class:`regconsist_ros.online.registrar.Registrar` (decoding, validation, keyframes, view pairs) and
publishes what it returns. Bad input (encodings, size mismatch, missing or broken camera_info,
non-finite or non-rigid poses, stamps going backwards, bursts beyond the queue) is dropped with a
throttled warning and a counted reason.
When ``tf2_ros`` is importable and ``pose_source=tf``, poses come from TF (``world_frame`` ->
the colour image's frame) instead of the pose topic.
"""
from __future__ import annotations

import logging
import queue
import threading

from regconsist_ros.online.keyframes import KeyframeConfig
from regconsist_ros.online.registrar import Registrar, RegistrationNodeConfig
from regconsist_ros.registration.geometry import CorrespondenceConfig
from regconsist_ros.registration.pairs import PairSelectionConfig
from regconsist_ros.ros.qos import QosConfig

NAME = "registration"
# parameter groups: (config dataclass, prefix); `pairs` is reserved for frame pairs, so view pairs are `view_pairs.*`
PARAMS = ((RegistrationNodeConfig, ""), (KeyframeConfig, "keyframes"), (PairSelectionConfig, "view_pairs"),
          (CorrespondenceConfig, "correspondence"), (QosConfig, "qos"))
__all__ = ["NAME", "PARAMS", "Registrar", "RegistrationNodeConfig", "make_node_class", "main"]


def make_node_class():
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseStamped
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from regconsist_ros.online.counters import DropCounter
    from regconsist_ros.online.sync import StampSync
    from regconsist_ros.ros import convert, params
    from regconsist_ros.ros.diagnostics import status_array
    from regconsist_ros.ros.pair_msg import pair_cloud
    from regconsist_ros.ros.qos import make_qos

    class RegistrationNode(Node):
        def __init__(self, **kwargs):
            super().__init__(NAME, **kwargs)
            for cls, prefix in PARAMS:
                params.declare(self, cls, prefix)
            params.reject_undeclared(self, NAME)
            cfg, kf, pairs, corr, qos_cfg = (params.read(self, cls, prefix) for cls, prefix in PARAMS)
            self.cfg, qos = cfg, make_qos(qos_cfg)
            log = logging.getLogger(f"regconsist.{NAME}")
            self.counter, self.sync_counter = DropCounter(log, NAME), DropCounter(log, f"{NAME} sync")
            self.registrar = Registrar(cfg, kf, pairs, corr, self.counter)
            self.tf = self._make_tf() if cfg.pose_source == "tf" else None
            slots = ("color", "depth", "info") + (("pose",) if self.tf is None else ())
            self.sync = StampSync(slots, cfg.tolerance, cfg.sync_queue, self.sync_counter, latched=("info",))
            self.work: queue.Queue = queue.Queue(maxsize=cfg.work_queue)
            self.pub_kf = self.create_publisher(Image, "registration/keyframe/image_raw", qos)
            self.pub_pairs = self.create_publisher(PointCloud2, "registration/view_pairs", qos)
            self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.create_subscription(Image, "camera/color/image_raw", lambda m: self._on("color", m), qos)
            self.create_subscription(Image, "camera/aligned_depth_to_color/image_raw", lambda m: self._on("depth", m), qos)
            self.create_subscription(CameraInfo, "camera/color/camera_info", lambda m: self._on("info", m), qos)
            if self.tf is None:
                self.create_subscription(PoseStamped, "camera/pose", lambda m: self._on("pose", m), qos)
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
            for m in self.sync.add(slot, convert.stamp_to_sec(msg.header.stamp), msg):
                try:
                    self.work.put_nowait(m)
                except queue.Full:
                    self.counter.drop("busy", "registration worker is behind; frame dropped")

        # ---- worker: message fields -> Registrar -> publishers -------------------------------------
        def _pose_fields(self, m):
            if self.tf is None:
                return convert.pose_msg_fields(m["pose"])
            t = self.tf.lookup_transform(self.cfg.world_frame, m["color"].header.frame_id, m["color"].header.stamp)
            tr, q = t.transform.translation, t.transform.rotation
            return (tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w)

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
                pose = self._pose_fields(m)
            except Exception as e:
                self.counter.drop("no_pose", str(e))
                return
            info = convert.camera_info_msg_fields(m["info"]) if m.get("info") is not None else None
            frame, is_keyframe, pairs = self.registrar.register(
                m["stamp"], convert.image_msg_fields(m["color"]), convert.image_msg_fields(m["depth"]), info, pose)
            frame_id = m["color"].header.frame_id
            if is_keyframe:
                self.pub_kf.publish(convert.color_msg(frame.rgb, frame.stamp, frame_id))
            for p in pairs:
                self.pub_pairs.publish(pair_cloud(p["uv1"], p["uv2"], p["src"].stamp, p["dst"].stamp, p["overlap_iou"],
                                                  frame_id, self.cfg.max_points))

        def _diagnostics(self) -> None:
            values, level = self.registrar.status(self.sync_counter)
            self.pub_diag.publish(status_array(self, f"{NAME}: status", values, level=level))

        def shutdown(self) -> None:
            self.stop.set()
            self.worker.join(timeout=2.0)

    return RegistrationNode


def main(args=None) -> int:
    from regconsist_ros.ros.runtime import run_node

    return run_node(make_node_class(), args)


if __name__ == "__main__":
    raise SystemExit(main())
