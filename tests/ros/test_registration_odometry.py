"""Registration node with ``pose_source: odometry``: a pose-less recording replayed by the camera source
(no camera/pose topic at all) gives view pairs, with the odometry figures on /diagnostics."""
import pytest

pytest.importorskip("open3d")


def _diag(probe, name):
    from regconsist_ros.ros.diagnostics import values_of

    out = {}
    for arr in probe.msgs.get("/diagnostics", []):
        for st in arr.status:
            if st.name.startswith(name):
                out = values_of(st)
    return out


def test_view_pairs_from_a_poseless_recording_with_odometry_poses(probe, nodes, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import PointCloud2

    from regconsist_ros.ros.pair_msg import read_pair_cloud
    from regconsist_ros.sim.sequences import TumWriter
    from regconsist_ros.sim.source import SimConfig, SimSource

    src = SimSource(SimConfig(seed=0, frames=30, width=160, height=120, trajectory="spline", step=0.05))
    seq = tmp_path / "poseless"
    with TumWriter(seq, src.intrinsics) as w:
        for f in src:
            w.write(f)
    (seq / "groundtruth.txt").unlink()  # a camera without poses

    probe.subscribe(PointCloud2, "registration/view_pairs")
    probe.subscribe(DiagnosticArray, "/diagnostics")
    nodes.start("registration", {"pose_source": "odometry", "keyframes.min_translation": 0.1,
                                 "view_pairs.iou_high": 0.95})
    # start the 6 s recording only once the node listens (under a loaded suite it came up after the
    # camera had finished: "waiting for colour ..." logged after "end of the sequence")
    topics = ("camera/color/image_raw", "camera/aligned_depth_to_color/image_raw", "camera/color/camera_info")
    assert probe.spin_until(lambda: all(probe.node.count_subscribers(t) >= 1 for t in topics), timeout=90), \
        nodes.log("registration")
    nodes.start("sim_camera", {"source": "recording", "path": str(seq), "rate": 5.0, "loop": False})
    ok = probe.spin_until(lambda: len(probe.msgs["registration/view_pairs"]) >= 2, timeout=120)
    assert ok, nodes.log("registration") + nodes.log("sim_camera")
    probe.spin_until(lambda: int(_diag(probe, "registration").get("odometry.accepted", 0)) >= 5, timeout=20)
    d = _diag(probe, "registration")
    assert "messages.pose" not in d and "messages.color" in d and int(d["odometry.accepted"]) >= 5, d
    for msg in probe.msgs["registration/view_pairs"]:
        p = read_pair_cloud(msg)
        assert p["src_stamp"] < p["dst_stamp"] and len(p["uv1"]) > 10
    assert "no pose" not in nodes.log("registration")
    for name in ("registration", "sim_camera"):
        assert nodes.procs[name].poll() is None, nodes.log(name)
