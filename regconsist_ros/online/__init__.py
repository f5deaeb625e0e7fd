"""ROS-free core of the online graph (camera source -> registration -> learner -> evaluator).

Plain Python/numpy in, plain values out: the ROS nodes in ``regconsist_ros.ros`` pass message
fields in. Never imports rclpy or ROS message packages. ``keyframes`` (which needs torch) is not
imported here: ``from regconsist_ros.online.keyframes import PairBuilder``.
"""
from regconsist_ros.online.counters import DropCounter, LossCounter, RateMeter
from regconsist_ros.online.decode import (camera_info_fields, check_sizes, decode_color, decode_depth, encode_color,
                                          encode_depth, intrinsics_from_camera_info, pose_fields, pose_from_fields)
from regconsist_ros.online.errors import BadInput
from regconsist_ros.online.replay import FrameBuffer, ReplayBuffer, frame_nbytes
from regconsist_ros.online.stamps import StampGuard
from regconsist_ros.online.sync import StampSync

__all__ = ["BadInput", "DropCounter", "LossCounter", "RateMeter", "StampGuard", "StampSync", "ReplayBuffer", "FrameBuffer", "frame_nbytes",
           "decode_color", "decode_depth", "encode_color", "encode_depth", "intrinsics_from_camera_info",
           "camera_info_fields", "pose_from_fields", "pose_fields", "check_sizes"]
