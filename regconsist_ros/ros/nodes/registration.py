"""`registration`: synchronises colour, depth, camera_info and pose, keeps keyframes, builds view pairs.

Subscribes (remappable; a RealSense driver + any pose source works as is):

| topic | type |
|---|---|
| ``camera/color/image_raw`` | sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) |
| ``camera/aligned_depth_to_color/image_raw`` | sensor_msgs/Image (16UC1 in ``depth_unit`` metres, or 32FC1 metres) |
| ``camera/color/camera_info`` | sensor_msgs/CameraInfo (rectified images expected) |
| ``camera/depth/image_rect_raw``, ``camera/depth/camera_info`` | instead of the aligned depth when ``depth_registered`` is false: registered to colour here (``depth_to_color``) |
| ``camera/pose`` | geometry_msgs/PoseStamped, T_world_camera of the optical frame |

Publishes:

| topic | type |
|---|---|
| ``registration/keyframe/image_raw`` | sensor_msgs/Image rgb8 of every keyframe, with its sensor stamp |
| ``registration/view_pairs`` | sensor_msgs/PointCloud2, one view pair per message (fields in ``regconsist_ros/ros/pair_msg.py``) |
| ``/diagnostics`` | diagnostic_msgs/DiagnosticArray: received, dropped by reason, keyframes, pairs, pairs/s |
| ``registration/viz/correspondences`` | sensor_msgs/Image rgb8: a view pair's matches drawn on its two images (``viz.correspondences``) |
| ``registration/viz/keyframe_path`` | nav_msgs/Path: the keyframe trajectory in the world frame (``viz.path``) |
| ``registration/viz/keyframe_cloud`` | sensor_msgs/PointCloud2 x, y, z, rgb: recent keyframes' points in the world frame (``viz.cloud``) |

Parameters: :class:`~regconsist_ros.online.registrar.RegistrationNodeConfig` (top level),
``keyframes.*`` (KeyframeConfig), ``view_pairs.*`` (PairSelectionConfig), ``correspondence.*``
(CorrespondenceConfig), ``qos.*``, ``viz.*`` (:class:`~regconsist_ros.online.keyframe_viz.VizConfig`).

The ``registration/viz/*`` topics (messages in :mod:`regconsist_ros.ros.viz_msgs`) are all off by
default; off, they have no publisher, no thread and no work. The correspondence picture is drawn by
the pair worker right after its pair is published (from the published correspondences); the path and
the cloud by a third thread, the *viz worker*, woken by each new keyframe (the frame worker only
appends the keyframe to a :class:`~regconsist_ros.online.keyframe_viz.KeyframeView`).

Callbacks only match stamps (:class:`regconsist_ros.online.sync.StampSync`: depth within
``tolerance``, 0 = half the slower stream's period; the pose interpolated at the colour stamp,
``pose_match``; stamps far ahead of the node's clock or from the stream are dropped as
``sync.stamp_jump`` without moving its "now") and enqueue matched sets into a bounded queue
(``work_queue`` sets and ``work_queue_mb``; when full, the oldest waiting set is dropped as ``busy``).
Messages lost before the callbacks are counted per stream (``lost.*``, :func:`~regconsist_ros.ros.qos.subscribe_counted`). Two
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
values are logged as one JSON object (``final status: {...}``) when the node stops. Shutdown waits
``shutdown_timeout`` for the workers (the pair search stops before its next correspondence), then
exits 1 if one is still busy. Memory caps: ``sync_queue_mb``, ``work_queue_mb``, ``keyframes.max_mb``.
When ``tf2_ros`` is importable and ``pose_source=tf``, poses come from TF (``world_frame`` ->
the colour image's frame) instead of the pose topic. With ``pose_source=odometry`` there is no pose
topic: poses come from RGB-D odometry in the core (``odometry.*`` parameters, OdometryConfig; bad
estimates dropped as ``odometry.<reason>``; see docs/odometry.md).
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time

from regconsist_ros.online.keyframe_viz import VizConfig
from regconsist_ros.online.keyframes import KeyframeConfig
from regconsist_ros.online.registrar import PairQueue, Registrar, RegistrationNodeConfig, set_torch_threads
from regconsist_ros.registration.geometry import CorrespondenceConfig
from regconsist_ros.registration.pairs import PairSelectionConfig
from regconsist_ros.ros.qos import QosConfig
from regconsist_ros.sim.odometry import OdometryConfig

NAME = "registration"
FINAL_STATUS = "final status:"  # logged at shutdown, followed by the /diagnostics values as one JSON object
# parameter groups: (config dataclass, prefix); `pairs` is reserved for frame pairs, so view pairs are `view_pairs.*`
PARAMS = ((RegistrationNodeConfig, ""), (KeyframeConfig, "keyframes"), (PairSelectionConfig, "view_pairs"),
          (CorrespondenceConfig, "correspondence"), (QosConfig, "qos"), (OdometryConfig, "odometry"),
          (VizConfig, "viz"))
__all__ = ["NAME", "PARAMS", "Registrar", "RegistrationNodeConfig", "make_node_class", "main"]


def make_node_class():
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseStamped
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from regconsist_ros.online.counters import DropCounter, LossCounter
    from regconsist_ros.online.decode import pose_fields, pose_from_fields
    from regconsist_ros.online.interpolation import pose_interpolator
    from regconsist_ros.online.registrar import WorkQueue
    from regconsist_ros.online.sync import StampSync
    from regconsist_ros.ros import convert, params
    from regconsist_ros.ros.diagnostics import status_array
    from regconsist_ros.ros.pair_msg import pair_cloud
    from regconsist_ros.ros.qos import make_qos, subscribe_counted
    from regconsist_ros.ros.viz_msgs import RegistrationViz

    class RegistrationNode(Node):
        def __init__(self, **kwargs):
            super().__init__(NAME, **kwargs)
            for cls, prefix in PARAMS:
                params.declare(self, cls, prefix)
            params.reject_undeclared(self, NAME)
            cfg, kf, pairs, corr, qos_cfg, odom, viz = (params.read(self, cls, prefix) for cls, prefix in PARAMS)
            self.cfg, qos = cfg, make_qos(qos_cfg)
            log = logging.getLogger(f"regconsist.{NAME}")
            self.counter, self.sync_counter = DropCounter(log, NAME), DropCounter(log, f"{NAME} sync")
            self.registrar = Registrar(cfg, kf, pairs, corr, self.counter, odom=odom)
            set_torch_threads(cfg.threads)
            self.tf = self._make_tf() if cfg.pose_source == "tf" else None
            self.pose_topic = self.tf is None and cfg.pose_source != "odometry"
            slots = ("color", "depth", "info") + (("pose",) if self.pose_topic else ()) + (
                () if cfg.depth_registered else ("depth_info",))
            interp = ("pose",) if "pose" in slots and cfg.pose_match == "interpolate" else ()
            self.sync = StampSync(slots, cfg.tolerance or None, cfg.sync_queue, self.sync_counter,
                                  latched=tuple(s for s in ("info", "depth_info") if s in slots),
                                  interpolated=interp, interpolate=pose_interpolator, max_gap_s=cfg.pose_max_gap,
                                  max_bytes=int(cfg.sync_queue_mb * 2**20),
                                  validate={"pose": lambda msg: pose_from_fields(*convert.pose_msg_fields(msg))}
                                  if "pose" in slots else None,
                                  guard={"jump_s": cfg.stamp_jump, "max_ahead_s": cfg.stamp_max_ahead,
                                         "clock": lambda: self.get_clock().now().nanoseconds * 1e-9})
            self.work = WorkQueue(cfg.work_queue, int(cfg.work_queue_mb * 2**20))
            self.losses = LossCounter()  # messages lost before the callbacks, per stream
            self.pair_jobs = PairQueue(cfg.pair_queue)
            self.messages = dict.fromkeys(slots, 0)  # messages received per stream
            self._msg_lock = threading.Lock()
            self.pub_kf = self.create_publisher(Image, "registration/keyframe/image_raw", qos)
            self.pub_pairs = self.create_publisher(PointCloud2, "registration/view_pairs", qos)
            self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.viz = RegistrationViz(self, viz, qos, cfg.world_frame, self.pose_topic) if viz.any else None

            def sub(msg_type, topic, slot):
                subscribe_counted(self, msg_type, topic, lambda m: self._on(slot, m), qos, self.losses, slot)

            sub(Image, "camera/color/image_raw", "color")
            depth_topic = "camera/aligned_depth_to_color/image_raw" if cfg.depth_registered else "camera/depth/image_rect_raw"
            sub(Image, depth_topic, "depth")
            if not cfg.depth_registered:  # registered to colour in the core (Registrar.frame)
                sub(CameraInfo, "camera/depth/camera_info", "depth_info")
            sub(CameraInfo, "camera/color/camera_info", "info")
            if self.pose_topic:
                sub(PoseStamped, "camera/pose", "pose")
            self.stop = threading.Event()
            self.workers = [threading.Thread(target=self._work_loop, name="registration frames", daemon=True),
                            threading.Thread(target=self._pair_loop, name="registration pairs", daemon=True)]
            if self.viz is not None and self.viz.thread:
                self.workers.append(threading.Thread(target=self.viz.run, args=(self.stop,), name="registration viz",
                                                     daemon=True))
            for w in self.workers:
                w.start()
            self.create_timer(1.0, self._diagnostics)
            self.get_logger().info("waiting for colour, depth, camera_info" + (" and pose" if self.pose_topic else
                                   " (poses from RGB-D odometry)" if cfg.pose_source == "odometry" else " and tf"))

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
            if slot == "pose" and self.viz is not None:
                self.viz.pose_frame = msg.header.frame_id  # the world frame of the path and cloud
            data = getattr(msg, "data", None)
            for m in self.sync.add(slot, convert.stamp_to_sec(msg.header.stamp), msg, len(data) if data is not None else 0):
                nbytes = sum(len(getattr(m.get(s), "data", None) or ()) for s in ("color", "depth"))
                for old in self.work.put(m, nbytes):
                    self.counter.drop("busy", f"registration worker is behind; the oldest waiting set "
                                              f"(@ {old['stamp']:.6f}) dropped")

        # ---- workers: message fields -> Registrar -> publishers ------------------------------------
        def _pose_fields(self, m):
            if self.cfg.pose_source == "odometry":
                return None  # estimated in the core (Registrar.frame)
            if self.tf is None:
                return pose_fields(m["pose"])  # a checked [4, 4] pose (interpolated at the colour stamp)
            t = self.tf.lookup_transform(self.cfg.world_frame, m["color"].header.frame_id, m["color"].header.stamp)
            tr, q = t.transform.translation, t.transform.rotation
            return (tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w)

        def _work_loop(self) -> None:
            while not self.stop.is_set():
                m = self.work.get(timeout=0.2)
                if m is None:
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
            dinfo = convert.camera_info_msg_fields(m["depth_info"]) if m.get("depth_info") is not None else None
            frame, job = self.registrar.admit(
                m["stamp"], convert.image_msg_fields(m["color"]), convert.image_msg_fields(m["depth"]), info, pose, dinfo)
            if job is None:
                return
            self.pub_kf.publish(convert.color_msg(frame.rgb, frame.stamp, m["color"].header.frame_id))
            if self.viz is not None:  # a new odometry segment has a new builder: its poses are in a new frame
                self.viz.keyframe(frame, segment=self.registrar.builder)
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
                    for p in self.registrar.pairs(job, self.stop):
                        msg = pair_cloud(p["uv1"], p["uv2"], p["src"].stamp, p["dst"].stamp, p["overlap_iou"], frame_id,
                                         self.cfg.max_points)
                        self.pub_pairs.publish(msg)
                        if self.viz is not None:
                            self._picture(p, msg)
                except Exception as e:  # a failed search is counted (pair_searches.skipped.error); the worker goes on
                    self.get_logger().warning(f"pair search failed: {type(e).__name__}: {e}", throttle_duration_sec=5.0)
                self.registrar.pair_time.add(time.perf_counter() - t0)

        def _picture(self, p: dict, msg) -> None:
            try:
                self.viz.pair(p, msg)
            except Exception as e:  # a picture must never stop the pair search
                self.get_logger().warning(f"correspondence picture failed: {type(e).__name__}: {e}", throttle_duration_sec=5.0)

        def _status(self) -> tuple[dict, str]:
            values, level = self.registrar.status(self.sync_counter)
            with self._msg_lock:
                values["messages"] = dict(self.messages)
            values["work_queue"], values["pair_queue"] = self.work.qsize(), len(self.pair_jobs)
            values["memory_mb"] = {"sync": round(self.sync.nbytes / 2**20, 1), "work_queue": round(self.work.nbytes / 2**20, 1),
                                   "keyframes": values["keyframes_mb"]}
            values["sync_tolerance_s"] = self.sync.tolerance()
            values["sync_pending"] = self.sync.pending()  # messages waiting for their set (queued) or latched
            values["lost"] = self.losses.snapshot()
            return values, level

        def _diagnostics(self) -> None:
            values, level = self._status()
            self.pub_diag.publish(status_array(self, f"{NAME}: status", values, level=level))

        def shutdown(self) -> None:
            """Stop the workers: the pair worker ends its search before the next correspondence. Waits up to
            ``shutdown_timeout``; a worker still inside torch then would abort the process at exit
            ("terminate called without an active exception"), so the node exits 1 at once instead."""
            self.stop.set()
            deadline = time.monotonic() + self.cfg.shutdown_timeout
            for w in self.workers:
                w.join(timeout=max(0.0, deadline - time.monotonic()))
            # the last numbers, for logs of `regconsist up` and for `regconsist bench registration`
            self.get_logger().info(f"{FINAL_STATUS} {json.dumps(self._status()[0])}")
            busy = [w.name for w in self.workers if w.is_alive()]
            if busy:
                self.get_logger().error(f"{', '.join(busy)} still busy after shutdown_timeout="
                                        f"{self.cfg.shutdown_timeout} s: exiting without waiting (exit 1)")
                sys.stdout.flush(), sys.stderr.flush()
                os._exit(1)

    return RegistrationNode


def main(args=None) -> int:
    from regconsist_ros.ros.runtime import run_node

    return run_node(make_node_class(), args)


if __name__ == "__main__":
    raise SystemExit(main())
