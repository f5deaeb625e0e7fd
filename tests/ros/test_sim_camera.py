"""The camera source node seen from a plain rclpy subscriber: topics, types, encodings, frames, alignment."""
import numpy as np
import pytest



@pytest.mark.parametrize("depth_encoding", ["16UC1", "32FC1"])
def test_sim_camera_publishes_a_realsense_style_stream(depth_encoding, probe, nodes):
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import CameraInfo, Image

    from regconsist_ros.ros import convert
    from regconsist_ros.sim.poses import validate_pose

    topics = {"camera/color/image_raw": Image, "camera/aligned_depth_to_color/image_raw": Image,
              "camera/color/camera_info": CameraInfo, "camera/pose": PoseStamped,
              "camera/semantic/image_raw": Image, "camera/instance/image_raw": Image}
    for t, ty in topics.items():
        probe.subscribe(ty, t)
    proc = nodes.start("sim_camera", {"sim.width": 64, "sim.height": 48, "sim.frames": 12, "rate": 10.0,
                                      "depth_encoding": depth_encoding})
    try:
        ok = probe.spin_until(lambda: all(len(probe.msgs[t]) >= 5 for t in topics), timeout=40)
        assert ok, {t: len(m) for t, m in probe.msgs.items()} | {"log": nodes.log("sim_camera")}
        assert proc.poll() is None
    finally:
        assert nodes.stop(proc) == 0, nodes.log("sim_camera")
    color = probe.msgs["camera/color/image_raw"]
    assert {m.encoding for m in color} == {"rgb8"} and {(m.width, m.height) for m in color} == {(64, 48)}
    assert {m.header.frame_id for m in color} == {"camera_color_optical_frame"}
    depth = probe.msgs["camera/aligned_depth_to_color/image_raw"]
    assert {m.encoding for m in depth} == {depth_encoding}
    assert {m.header.frame_id for m in probe.msgs["camera/pose"]} == {"world"}
    info = probe.msgs["camera/color/camera_info"][0]
    assert info.width == 64 and info.height == 48 and info.k[0] > 0 and info.k[8] == 1.0
    stamps = [convert.stamp_to_sec(m.header.stamp) for m in color]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))  # sensor stamps increase
    # colour, depth, labels and pose of one frame share one stamp: pixel-aligned and joinable
    by_stamp = {t: {convert.stamp_to_sec(m.header.stamp): m for m in probe.msgs[t]} for t in topics}
    common = set.intersection(*(set(v) for v in by_stamp.values()))
    assert len(common) >= 3
    for s in sorted(common)[:3]:
        rgb = convert.decode_color_msg(by_stamp["camera/color/image_raw"][s])
        d = convert.decode_depth_msg(by_stamp["camera/aligned_depth_to_color/image_raw"][s])
        sem = convert.decode_labels_msg(by_stamp["camera/semantic/image_raw"][s])
        assert rgb.shape[:2] == d.shape == sem.shape == (48, 64)
        assert (d > 0).mean() > 0.9 and np.isfinite(d).all() and d.max() < 20
        validate_pose(convert.pose_from_msg(by_stamp["camera/pose"][s]))
        # depth edges and label edges coincide: the streams are aligned (same camera, same pixels)
        dz = np.abs(np.diff(d, axis=1)) > 0.3
        ds = np.diff(sem.astype(int), axis=1) != 0
        if dz.sum() > 5:
            assert (dz & ds).sum() / dz.sum() > 0.5
