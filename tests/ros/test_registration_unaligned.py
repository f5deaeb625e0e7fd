"""Registration node with ``depth_registered: false``: unaligned depth + the depth camera_info, registered in the core."""
import time

import numpy as np


def test_registration_node_registers_unaligned_depth_to_colour(domain_id):
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo, Image

    from regconsist_ros.ros import convert
    from regconsist_ros.ros.nodes.registration import make_node_class
    from regconsist_ros.sim.frame import Intrinsics
    from regconsist_ros.sim.poses import pose_from_tq

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    node = make_node_class()(context=ctx, parameter_overrides=[
        Parameter("depth_registered", value=False), Parameter("depth_to_color", value="-0.05,0,0,0,0,0,1")])
    pub = rclpy.create_node("unaligned_camera", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    ex.add_node(pub)
    try:
        pubs = {"color": pub.create_publisher(Image, "camera/color/image_raw", 10),
                "depth": pub.create_publisher(Image, "camera/depth/image_rect_raw", 10),
                "info": pub.create_publisher(CameraInfo, "camera/color/camera_info", 10),
                "depth_info": pub.create_publisher(CameraInfo, "camera/depth/camera_info", 10),
                "pose": pub.create_publisher(PoseStamped, "camera/pose", 10)}
        end = time.monotonic() + 30
        while time.monotonic() < end and not all(p.get_subscription_count() > 0 for p in pubs.values()):
            ex.spin_once(timeout_sec=0.05)
        Kc = Intrinsics(100.0, 100.0, 39.0, 29.0, 80, 60)
        Kd = Intrinsics(80.0, 80.0, 31.5, 23.5, 64, 48)  # a coarser depth camera
        rgb = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
        for k in range(6):
            t = 10.0 + k / 10
            T = pose_from_tq([0.2 * k, 0, 0], [0, 0, 0, 1])
            pubs["info"].publish(convert.camera_info_msg(Kc, t, "color"))
            pubs["depth_info"].publish(convert.camera_info_msg(Kd, t, "depth"))
            pubs["pose"].publish(convert.pose_msg(T, t, "world"))
            pubs["depth"].publish(convert.depth_msg(np.full((48, 64), 2.0, np.float32), t, "depth"))
            pubs["color"].publish(convert.color_msg(rgb, t, "color"))
            for _ in range(5):
                ex.spin_once(timeout_sec=0.02)
        end = time.monotonic() + 60
        while time.monotonic() < end and node.registrar.counter.snapshot()["accepted"] < 4:
            ex.spin_once(timeout_sec=0.05)
        snap = node.registrar.counter.snapshot()
        assert snap["accepted"] >= 4, snap
        assert "size_mismatch" not in snap["dropped"]  # 64x48 depth beside 80x60 colour: registered, not refused
    finally:
        node.shutdown()
        ex.shutdown()
        node.destroy_node()
        pub.destroy_node()
        rclpy.shutdown(context=ctx)
