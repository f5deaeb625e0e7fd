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
sensor time of a simulated camera). Frames are rendered ahead by a worker thread into a bounded
queue; the timer only publishes. When the trajectory ends the source loops (``loop``) or stops.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from regconsist_ros.ros.qos import QosConfig
from regconsist_ros.sim.source import SimConfig

NAME = "sim_camera"


@dataclass
class CameraSourceConfig:
    """What the camera source publishes and how fast."""

    source: Literal["sim", "tum", "rosbag", "habitat"] = field(default="sim", metadata={"help": "sim: the embedded world or a scan (sim.* parameters); habitat: the scan at sim.scene rendered by habitat-sim (when installed) along a path planned on its mesh; tum / rosbag: replay the TUM sequence / rosbag2 at 'path' (RealSense topic names + camera/pose)"})
    path: str = field(default="", metadata={"help": "TUM sequence or rosbag2 directory"})
    rate: float = field(default=10.0, metadata={"help": "frames per second"})
    depth_encoding: Literal["16UC1", "32FC1"] = field(default="16UC1", metadata={"help": "16UC1 (millimetres) or 32FC1 (metres)"})
    world_frame: str = field(default="world", metadata={"help": "frame id of the poses"})
    camera_frame: str = field(default="camera_color_optical_frame", metadata={"help": "frame id of the images"})
    publish_labels: bool = field(default=True, metadata={"help": "also publish semantic/instance images (simulation only)"})
    loop: bool = field(default=True, metadata={"help": "start over at the end of the trajectory"})
    prefetch: int = field(default=4, metadata={"help": "frames rendered ahead"})

    def __post_init__(self):
        if not 0 < self.rate <= 1000:
            raise ValueError(f"CameraSourceConfig.rate must be in (0, 1000] Hz, got {self.rate!r}")
        if self.source in ("tum", "rosbag") and not self.path:
            raise ValueError(f"CameraSourceConfig: source={self.source} needs path (a TUM or rosbag2 directory)")
        if self.prefetch < 1:
            raise ValueError(f"CameraSourceConfig.prefetch must be >= 1, got {self.prefetch!r}")


def open_source(cfg: CameraSourceConfig, sim_cfg: SimConfig):
    """An indexable frame source (len, [i]) and its intrinsics."""
    if cfg.source == "tum":
        from regconsist_ros.sim.sequences import read_tum

        seq = read_tum(cfg.path)
        return seq, seq.intrinsics
    if cfg.source == "rosbag":
        from regconsist_ros.online.bag import BagSource

        bag = BagSource(cfg.path)
        return bag, bag.intrinsics
    from regconsist_ros.sim.source import SimSource

    src = SimSource(sim_cfg)
    if cfg.source == "habitat":
        from regconsist_ros.sim.habitat import HabitatTrajectorySource

        hab = HabitatTrajectorySource(sim_cfg.scene, src, sim_cfg.width, sim_cfg.height, sim_cfg.hfov)
        return hab, hab.intrinsics
    return src, src.intrinsics


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
            self.frames: queue.Queue = queue.Queue(maxsize=self.cfg.prefetch)
            self.stop = threading.Event()
            self.published = 0
            self.late = 0  # timer ticks with no rendered frame ready
            self.finished = False
            self.t0 = time.monotonic()
            self.worker = threading.Thread(target=self._render_loop, name="render", daemon=True)
            self.worker.start()
            self.timer = self.create_timer(1.0 / self.cfg.rate, self._tick)
            self.diag_timer = self.create_timer(1.0, self._diagnostics)
            self.get_logger().info(f"publishing {len(self.source)} frames at {self.cfg.rate} Hz "
                                   f"({self.intrinsics.width}x{self.intrinsics.height}, depth {self.cfg.depth_encoding})")

        def _render_loop(self) -> None:
            i = 0
            n = len(self.source)
            while not self.stop.is_set():
                if i >= n:
                    if not self.cfg.loop:
                        self.frames.put(None)
                        return
                    i = 0
                try:
                    frame = self.source[i]
                except Exception as e:  # an unreadable frame of a replayed sequence: skip it, keep going
                    self.get_logger().warning(f"frame {i} skipped: {e}", throttle_duration_sec=5.0)
                    i += 1
                    continue
                i += 1
                while not self.stop.is_set():
                    try:
                        self.frames.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue

        def _tick(self) -> None:
            if self.finished:
                return
            try:
                frame = self.frames.get_nowait()
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
            self.stop.set()
            return super().destroy_node()

    return SimCameraNode


def main(args=None) -> int:
    from regconsist_ros.ros.runtime import run_node

    return run_node(make_node_class(), args)


if __name__ == "__main__":
    raise SystemExit(main())
