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
sets into a bounded queue (``work_queue``; a set that finds it full is dropped as ``busy``). Two
worker threads hand the work to the ROS-free :class:`regconsist_ros.online.registrar.Registrar`:

- the *frame worker* looks at every set: decoding, validation, the keyframe decision, and the
  keyframe image published (about a millisecond per 640x480 frame, so it keeps up with a camera);
- the *pair worker* searches the view pairs of each new keyframe (overlap estimates, exact
  correspondences) and publishes them. New keyframes wait for it in a queue of ``pair_queue``;
  when it is full, the oldest waiting keyframe's search is skipped and counted as
  ``pair_searches.skipped.backlog`` (that keyframe was published and still pairs with later ones).

Bad input (encodings, size mismatch, missing or broken camera_info, non-finite or non-rigid poses,
stamps going backwards, bursts beyond the queue) is dropped with a throttled warning and a counted
reason. /diagnostics also reports messages received per stream (``messages.*``), the queues, and
the workers' times (``frame_ms.*``, ``pair_ms.*``: p50 / p90 / max over the last 4096); the same
values are logged as one JSON object (``final status: {...}``) when the node stops.
When ``tf2_ros`` is importable and ``pose_source=tf``, poses come from TF (``world_frame`` ->
the colour image's frame) instead of the pose topic.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time

from regconsist_ros.online.keyframes import KeyframeConfig
from regconsist_ros.online.registrar import PairQueue, Registrar, RegistrationNodeConfig, set_torch_threads
from regconsist_ros.registration.geometry import CorrespondenceConfig
from regconsist_ros.registration.pairs import PairSelectionConfig
from regconsist_ros.ros.qos import QosConfig

NAME = "registration"
FINAL_STATUS = "final status:"  # logged at shutdown, followed by the /diagnostics values as one JSON object
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
            set_torch_threads(cfg.threads)
            self.tf = self._make_tf() if cfg.pose_source == "tf" else None
            slots = ("color", "depth", "info") + (("pose",) if self.tf is None else ())
            self.sync = StampSync(slots, cfg.tolerance, cfg.sync_queue, self.sync_counter, latched=("info",))
            self.work: queue.Queue = queue.Queue(maxsize=cfg.work_queue)
            self.pair_jobs = PairQueue(cfg.pair_queue)
            self.messages = dict.fromkeys(slots, 0)  # messages received per stream
            self._msg_lock = threading.Lock()
            self.pub_kf = self.create_publisher(Image, "registration/keyframe/image_raw", qos)
            self.pub_pairs = self.create_publisher(PointCloud2, "registration/view_pairs", qos)
            self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.create_subscription(Image, "camera/color/image_raw", lambda m: self._on("color", m), qos)
            self.create_subscription(Image, "camera/aligned_depth_to_color/image_raw", lambda m: self._on("depth", m), qos)
            self.create_subscription(CameraInfo, "camera/color/camera_info", lambda m: self._on("info", m), qos)
            if self.tf is None:
                self.create_subscription(PoseStamped, "camera/pose", lambda m: self._on("pose", m), qos)
            self.stop = threading.Event()
            self.workers = [threading.Thread(target=self._work_loop, name="registration frames", daemon=True),
                            threading.Thread(target=self._pair_loop, name="registration pairs", daemon=True)]
            for w in self.workers:
                w.start()
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
            with self._msg_lock:
                self.messages[slot] += 1
            for m in self.sync.add(slot, convert.stamp_to_sec(msg.header.stamp), msg):
                try:
                    self.work.put_nowait(m)
                except queue.Full:
                    self.counter.drop("busy", "registration worker is behind; frame dropped")

        # ---- workers: message fields -> Registrar -> publishers ------------------------------------
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
                t0 = time.perf_counter()
                try:
                    self._admit(m)
                except Exception as e:  # a bug or an unforeseen input must not kill the node
                    self.counter.drop("error", f"{type(e).__name__}: {e}")
                self.registrar.frame_time.add(time.perf_counter() - t0)

        def _admit(self, m) -> None:
            try:
                pose = self._pose_fields(m)
            except Exception as e:
                self.counter.drop("no_pose", str(e))
                return
            info = convert.camera_info_msg_fields(m["info"]) if m.get("info") is not None else None
            frame, job = self.registrar.admit(
                m["stamp"], convert.image_msg_fields(m["color"]), convert.image_msg_fields(m["depth"]), info, pose)
            if job is None:
                return
            self.pub_kf.publish(convert.color_msg(frame.rgb, frame.stamp, m["color"].header.frame_id))
            if job.candidates:
                evicted = self.pair_jobs.put((job, m["color"].header.frame_id))
                if evicted is not None:
                    self.registrar.skip(evicted[0])

        def _pair_loop(self) -> None:
            while not self.stop.is_set():
                item = self.pair_jobs.get(timeout=0.2)
                if item is None:
                    continue
                (job, frame_id), t0 = item, time.perf_counter()
                try:
                    for p in self.registrar.pairs(job):
                        self.pub_pairs.publish(pair_cloud(p["uv1"], p["uv2"], p["src"].stamp, p["dst"].stamp,
                                                          p["overlap_iou"], frame_id, self.cfg.max_points))
                except Exception as e:  # a failed search is counted (pair_searches.skipped.error); the worker goes on
                    self.get_logger().warning(f"pair search failed: {type(e).__name__}: {e}", throttle_duration_sec=5.0)
                self.registrar.pair_time.add(time.perf_counter() - t0)

        def _status(self) -> tuple[dict, str]:
            values, level = self.registrar.status(self.sync_counter)
            with self._msg_lock:
                values["messages"] = dict(self.messages)
            values["work_queue"], values["pair_queue"] = self.work.qsize(), len(self.pair_jobs)
            return values, level

        def _diagnostics(self) -> None:
            values, level = self._status()
            self.pub_diag.publish(status_array(self, f"{NAME}: status", values, level=level))

        def shutdown(self) -> None:
            self.stop.set()
            for w in self.workers:  # the pair worker finishes the search it is in (a daemon thread killed inside
                w.join(timeout=30.0)  # torch at exit aborts the process)
            # the last numbers, for logs of `regconsist up` and for `regconsist bench registration`
            self.get_logger().info(f"{FINAL_STATUS} {json.dumps(self._status()[0])}")

    return RegistrationNode


def main(args=None) -> int:
    from regconsist_ros.ros.runtime import run_node

    return run_node(make_node_class(), args)


if __name__ == "__main__":
    raise SystemExit(main())
