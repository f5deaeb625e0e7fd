"""Where frames come from: the embedded world, scans, sequences on disk, Habitat.

Never imports rclpy: everything here runs without ROS.
"""
from regconsist_ros.sim.frame import Frame, Intrinsics

__all__ = ["Frame", "Intrinsics"]
