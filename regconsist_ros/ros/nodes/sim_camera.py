"""`sim_camera`: publishes the embedded world (or a TUM sequence) exactly as a RealSense-style driver.

Topics (relative, so a namespace per robot works: ``/robot1/camera/...``):

| topic | type | notes |
|---|---|---|
| ``camera/color/image_raw`` | sensor_msgs/Image | rgb8, frame ``camera_frame`` |
| ``camera/aligned_depth_to_color/image_raw`` | sensor_msgs/Image | 16UC1 millimetres or 32FC1 metres (``depth_encoding``), 0 = invalid |
| ``camera/color/camera_info``, ``camera/aligned_depth_to_color/camera_info`` | sensor_msgs/CameraInfo | rectified, plumb_bob, zero distortion |
| ``camera/pose`` | geometry_msgs/PoseStamped | T_world_camera (optical frame: x right, y down, z forward) in ``world_frame`` |
| ``camera/semantic/image_raw``, ``camera/instance/image_raw`` | sensor_msgs/Image | 16UC1 class / instance ids (simulation only, for evaluation) |
| ``/diagnostics`` | diagnostic_msgs/DiagnosticArray | published / late frames, rate |

All messages of one frame carry the same stamp: the node's clock when the frame is published (the
sensor time of a simulated camera). The ROS-free :mod:`regconsist_ros.online.camera_source` opens
the source and renders frames ahead on a thread into a bounded queue; the timer only publishes.
When the trajectory ends the source loops (``loop``) or stops.
"""
from __future__ import annotations

import queue
import time

from regconsist_ros.online.camera_source import CameraSourceConfig, Prefetcher, open_source
from regconsist_ros.ros.qos import QosConfig
from regconsist_ros.sim.source import SimConfig

NAME = "sim_camera"
__all__ = ["NAME", "CameraSourceConfig", "Prefetcher", "open_source", "make_node_class", "main"]


def make_node_class():
    from rclpy.node import Node
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import CameraInfo, Image

    from regconsist_ros.ros import convert, params
    from regconsist_ros.ros.diagnostics import status_array
    from regconsist_ros.ros.qos import make_qos

    class SimCameraNode(Node):
        """Camera source node; ``cfg``/``sim_cfg``/``qos`` come from ROS parameters (same dataclasses as the CLI)."""

        def __init__(self, **kwargs):
            super().__init__(NAME, **kwargs)
            params.declare(self, CameraSourceConfig)
            params.declare(self, SimConfig, "sim")
            params.declare(self, QosConfig, "qos")
            params.reject_undeclared(self, NAME)
            self.cfg = params.read(self, CameraSourceConfig)
            self.sim_cfg = params.read(self, SimConfig, "sim")
            qos = make_qos(params.read(self, QosConfig, "qos"))
            self.get_logger().info(f"preparing {self.cfg.source} source ...")
            self.source, self.intrinsics = open_source(self.cfg, self.sim_cfg)
            self.pub_color = self.create_publisher(Image, "camera/color/image_raw", qos)
            self.pub_depth = self.create_publisher(Image, "camera/aligned_depth_to_color/image_raw", qos)
            self.pub_info = self.create_publisher(CameraInfo, "camera/color/camera_info", qos)
            self.pub_depth_info = self.create_publisher(CameraInfo, "camera/aligned_depth_to_color/camera_info", qos)
            self.pub_pose = self.create_publisher(PoseStamped, "camera/pose", qos)
            self.pub_sem = self.create_publisher(Image, "camera/semantic/image_raw", qos) if self.cfg.publish_labels else None
            self.pub_inst = self.create_publisher(Image, "camera/instance/image_raw", qos) if self.cfg.publish_labels else None
            self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.published = 0
            self.late = 0  # timer ticks with no rendered frame ready
            self.finished = False
            self.t0 = time.monotonic()
            self.prefetcher = Prefetcher(self.source, self.cfg.prefetch, self.cfg.loop, on_skip=self._skipped).start()
            self.timer = self.create_timer(1.0 / self.cfg.rate, self._tick)
            self.diag_timer = self.create_timer(1.0, self._diagnostics)
            self.get_logger().info(f"publishing {len(self.source)} frames at {self.cfg.rate} Hz "
                                   f"({self.intrinsics.width}x{self.intrinsics.height}, depth {self.cfg.depth_encoding})")

        def _skipped(self, i: int, e: Exception) -> None:
            self.get_logger().warning(f"frame {i} skipped: {e}", throttle_duration_sec=5.0)

        def _tick(self) -> None:
            if self.finished:
                return
            try:
                frame = self.prefetcher.poll()
            except queue.Empty:
                self.late += 1
                return
            if frame is None:
                self.finished = True
                self.get_logger().info(f"end of the sequence after {self.published} frames")
                return
            t = self.get_clock().now().nanoseconds * 1e-9
            cam, cfg = self.cfg.camera_frame, self.cfg
            self.pub_info.publish(convert.camera_info_msg(self.intrinsics, t, cam))
            self.pub_depth_info.publish(convert.camera_info_msg(self.intrinsics, t, cam))
            if frame.T_world_cam is not None:  # a recording without poses: no camera/pose
                self.pub_pose.publish(convert.pose_msg(frame.T_world_cam, t, cfg.world_frame))
            self.pub_depth.publish(convert.depth_msg(frame.depth, t, cam, cfg.depth_encoding))
            if self.pub_sem is not None and frame.semantic is not None:
                self.pub_sem.publish(convert.labels_msg(frame.semantic, t, cam))
            if self.pub_inst is not None and frame.instance is not None:
                self.pub_inst.publish(convert.labels_msg(frame.instance, t, cam))
            self.pub_color.publish(convert.color_msg(frame.rgb, t, cam))  # last: subscribers key on colour
            self.published += 1

        def _diagnostics(self) -> None:
            dt = max(1e-9, time.monotonic() - self.t0)
            self.pub_diag.publish(status_array(self, f"{NAME}: source", {
                "published": self.published, "late_ticks": self.late, "rate_hz": self.published / dt,
                "frames_in_source": len(self.source), "finished": self.finished}))

        def destroy_node(self):
            self.prefetcher.stop()
            return super().destroy_node()

    return SimCameraNode


def main(args=None) -> int:
    from regconsist_ros.ros.runtime import run_node

    return run_node(make_node_class(), args)


if __name__ == "__main__":
    raise SystemExit(main())
