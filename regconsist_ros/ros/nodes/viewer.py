"""`viewer`: the graph's streams in the Rerun viewer (browser or native) and/or an .rrd recording.

``regconsist up sim --view`` (and ``--save run.rrd``) adds this node to the graph; on a robot,
``ros2 run regconsist_ros viewer --ros-args -p save:=run.rrd``. Subscribes (remappable, like the
registration node):

| topic | type | logged as (:mod:`regconsist_ros.online.rerun_log`) |
|---|---|---|
| ``camera/color/image_raw`` | sensor_msgs/Image | ``world/camera/image`` (at most ``image_rate`` Hz) |
| ``camera/aligned_depth_to_color/image_raw`` | sensor_msgs/Image | ``world/camera/depth``; joined to keyframes for their points |
| ``camera/color/camera_info`` | sensor_msgs/CameraInfo | Pinhole of ``world/camera`` |
| ``camera/pose`` | geometry_msgs/PoseStamped | Transform3D of ``world/camera``; the keyframe path |
| ``registration/keyframe/image_raw`` | sensor_msgs/Image | ``keyframes/image``, ``world/keyframes/points``, ``world/keyframes/path`` |
| ``registration/view_pairs`` | sensor_msgs/PointCloud2 | ``pairs/image`` + ``pairs/lines`` (correspondences as segments) |
| ``/diagnostics`` | diagnostic_msgs/DiagnosticArray | ``metrics/learner/...``, ``metrics/readouts/...``, ``metrics/registration/...`` |

Publishes ``/diagnostics`` (``viewer: status``: rows logged per entity, skipped, dropped, errors,
where the viewer is) once per second and logs ``final status: {...}`` at shutdown. Parameters:
:class:`~regconsist_ros.online.rerun_log.ViewerConfig` at the root, ``qos.*``.

Callbacks only enqueue (``queue`` messages, ``queue_mb``; the oldest dropped as ``busy``); one worker
logs. An error while logging is counted and logged (throttled), never raised: the viewer cannot stop
the graph, and ``regconsist up`` goes on without it if it exits. Its threads run ``nice`` steps nicer,
so that they yield the CPU to the learner. (Not SCHED_IDLE: measured, the viewer then used ~3x the
CPU time, 0.43 vs 0.15 cores at the demo's rates.)
"""
from __future__ import annotations

import json
import os
import threading
import time

from regconsist_ros.online.rerun_log import RerunLog, ViewerConfig, open_recording
from regconsist_ros.ros.qos import QosConfig

NAME = "viewer"
FINAL_STATUS = "final status:"
PARAMS = ((ViewerConfig, ""), (QosConfig, "qos"))
__all__ = ["NAME", "PARAMS", "ViewerConfig", "make_node_class", "main"]


def lower_priority(nice: int) -> None:
    """Every thread of this process ``nice`` steps nicer (Linux: nice is per thread; threads started
    later inherit it from their creator)."""
    tids = [int(t) for t in os.listdir("/proc/self/task")] if os.path.isdir("/proc/self/task") else [0]
    for tid in tids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
        except OSError:  # a thread that just ended
            continue


def make_node_class():
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseStamped
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from regconsist_ros.config import ConfigError
    from regconsist_ros.online.counters import LossCounter
    from regconsist_ros.online.registrar import WorkQueue
    from regconsist_ros.ros import convert, params
    from regconsist_ros.ros.diagnostics import status_array, values_of
    from regconsist_ros.ros.pair_msg import read_pair_cloud
    from regconsist_ros.ros.qos import make_qos, subscribe_counted

    def fields(kind, msg):
        """``(stamp, args of RerunLog.<kind>)`` of one message."""
        stamp = convert.stamp_to_sec(msg.header.stamp)
        if kind in ("color", "depth", "keyframe"):
            return stamp, (convert.image_msg_fields(msg),)
        if kind == "camera_info":
            return stamp, (convert.camera_info_msg_fields(msg),)
        if kind == "pose":
            return stamp, (convert.pose_from_msg(msg),)
        return stamp, (read_pair_cloud(msg),)  # view_pair

    class ViewerNode(Node):
        def __init__(self, **kwargs):
            super().__init__(NAME, **kwargs)
            for cls, prefix in PARAMS:
                params.declare(self, cls, prefix)
            params.reject_undeclared(self, NAME)
            self.cfg, qos_cfg = (params.read(self, cls, prefix) for cls, prefix in PARAMS)
            if self.cfg.nice:
                lower_priority(self.cfg.nice)  # before Rerun starts its threads, which inherit it
            try:
                rec, self.where = open_recording(self.cfg)
            except (OSError, RuntimeError) as e:  # a busy port, no display for serve=native, an unwritable file
                raise ConfigError(str(e)) from None
            self.core = RerunLog(self.cfg, rec)
            self.work = WorkQueue(self.cfg.queue, int(self.cfg.queue_mb * 2**20))
            self.dropped = 0  # messages pushed out of the full queue (busy)
            self._drop_lock = threading.Lock()
            self.losses = LossCounter()
            qos = make_qos(qos_cfg)
            for kind, msg_type, topic in (("color", Image, "camera/color/image_raw"),
                                          ("depth", Image, "camera/aligned_depth_to_color/image_raw"),
                                          ("camera_info", CameraInfo, "camera/color/camera_info"),
                                          ("pose", PoseStamped, "camera/pose"),
                                          ("keyframe", Image, "registration/keyframe/image_raw"),
                                          ("view_pair", PointCloud2, "registration/view_pairs"),
                                          ("diagnostics", DiagnosticArray, "/diagnostics")):
                subscribe_counted(self, msg_type, topic, lambda m, k=kind: self._on(k, m),
                                  50 if kind == "diagnostics" else qos, self.losses, kind)
            self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.stop = threading.Event()
            self.worker = threading.Thread(target=self._loop, name="viewer log", daemon=True)
            self.worker.start()
            self.create_timer(1.0, self._diagnostics)
            for what, url in self.where.items():
                self.get_logger().info(f"{what}: {url}" + ("  <- open this in a browser" if what == "web" else ""))

        def _on(self, kind: str, msg) -> None:
            data = getattr(msg, "data", None)
            out = self.work.put((kind, msg), len(data) if data is not None else 0)
            if out:
                with self._drop_lock:
                    self.dropped += len(out)

        def _handle(self, kind: str, msg) -> None:
            if kind == "diagnostics":
                stamp = convert.stamp_to_sec(msg.header.stamp)
                for st in msg.status:
                    if not st.name.startswith(f"{NAME}:"):
                        self.core.handle("diagnostics", stamp, st.name, values_of(st))
                return
            try:
                stamp, args = fields(kind, msg)
            except Exception as e:  # noqa: BLE001 - a message the core cannot read: counted like a logging error
                self.core.errors[kind] += 1
                self.core.last_error = f"{kind}: {type(e).__name__}: {e}"
                return
            self.core.handle(kind, stamp, *args)

        def _loop(self) -> None:
            while not self.stop.is_set():
                item = self.work.get(timeout=0.2)
                if item is not None:
                    errors = sum(self.core.errors.values())
                    self._handle(*item)
                    if sum(self.core.errors.values()) > errors:
                        self.get_logger().warning(f"viewer: {self.core.last_error}", throttle_duration_sec=10.0)

        def _status(self) -> dict:
            return {**self.core.status(), "dropped": {"busy": self.dropped}, "queue": self.work.qsize(),
                    "lost": self.losses.snapshot(), **{f"url.{k}": v for k, v in self.where.items()}}

        def _diagnostics(self) -> None:
            st = self._status()
            self.pub_diag.publish(status_array(self, f"{NAME}: status", st, level="warn" if st["errors_total"] else "ok"))

        def shutdown(self) -> None:
            """Log what is still queued (up to 5 s), then flush and close the sinks (the .rrd file's footer)."""
            self.stop.set()
            self.worker.join(timeout=5.0)
            deadline = time.monotonic() + 5.0
            while not self.worker.is_alive() and time.monotonic() < deadline:
                item = self.work.get(timeout=0)
                if item is None:
                    break
                self._handle(*item)
            try:
                self.core.close()
            except Exception as e:  # noqa: BLE001
                self.core.errors["close"] += 1
                self.core.last_error = f"close: {type(e).__name__}: {e}"
            self.get_logger().info(f"{FINAL_STATUS} {json.dumps(self._status())}")

    return ViewerNode


def main(args=None) -> int:
    from regconsist_ros.ros.runtime import run_node

    return run_node(make_node_class(), args, threads=1)  # callbacks only enqueue: one thread, half the CPU (measured)


if __name__ == "__main__":
    raise SystemExit(main())
