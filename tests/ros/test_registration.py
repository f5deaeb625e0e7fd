"""Registration node: view pairs from the camera source; malformed input is counted, never fatal."""
import math
import time

import numpy as np

SIM = {"sim.width": 64, "sim.height": 48, "sim.frames": 60, "sim.step": 0.1, "rate": 10.0}


def _diag(probe, name):
    from regconsist_ros.ros.diagnostics import values_of

    out = {}
    for arr in probe.msgs.get("/diagnostics", []):
        for st in arr.status:
            if st.name.startswith(name):
                out = values_of(st)
    return out


def _camera_publishers(probe, depth: int = 10) -> dict:
    """Publishers of the four camera streams on the probe node (reliable, keep-last ``depth``), matched with
    the registration node."""
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import CameraInfo, Image

    node = probe.node
    pubs = {"color": node.create_publisher(Image, "camera/color/image_raw", depth),
            "depth": node.create_publisher(Image, "camera/aligned_depth_to_color/image_raw", depth),
            "info": node.create_publisher(CameraInfo, "camera/color/camera_info", depth),
            "pose": node.create_publisher(PoseStamped, "camera/pose", depth)}
    probe.spin_until(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), timeout=30)
    return pubs


def test_view_pairs_from_the_simulated_camera(probe, nodes):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image, PointCloud2

    from regconsist_ros.ros import convert
    from regconsist_ros.ros.pair_msg import read_pair_cloud

    probe.subscribe(PointCloud2, "registration/view_pairs")
    probe.subscribe(Image, "registration/keyframe/image_raw")
    probe.subscribe(DiagnosticArray, "/diagnostics")
    nodes.start("registration", {"keyframes.min_translation": 0.15})
    nodes.start("sim_camera", SIM)
    ok = probe.spin_until(lambda: len(probe.msgs["registration/view_pairs"]) >= 3, timeout=60)
    assert ok, nodes.log("registration") + nodes.log("sim_camera")
    probe.spin_until(lambda: int(_diag(probe, "registration").get("view_pairs", 0)) >= 3, timeout=5)
    kf_stamps = {convert.stamp_to_sec(m.header.stamp) for m in probe.msgs["registration/keyframe/image_raw"]}
    assert kf_stamps, "no keyframe image received"
    for msg in probe.msgs["registration/view_pairs"]:
        p = read_pair_cloud(msg)
        assert p["src_stamp"] < p["dst_stamp"]
        # both views were published as keyframes before the pair (joinable by stamp); keyframes sent
        # before the probe's discovery finished (volatile QoS) cannot have reached it
        for st in (p["src_stamp"], p["dst_stamp"]):
            if st >= min(kf_stamps) - 1e-6:
                assert any(abs(st - s) < 1e-6 for s in kf_stamps), (st, sorted(kf_stamps))
        assert 0.3 <= p["iou"] <= 0.7 and len(p["uv1"]) > 10
        assert (p["uv1"] >= 0).all() and (p["uv1"][:, 0] < 64).all() and (p["uv2"][:, 1] < 48).all()
    d = _diag(probe, "registration")
    assert int(d["frames_registered"]) >= 3 and int(d["view_pairs"]) >= 3, d
    for name in ("registration", "sim_camera"):
        assert nodes.procs[name].poll() is None, nodes.log(name)


def test_malformed_messages_are_counted_and_the_node_stays_alive(probe, nodes):
    from diagnostic_msgs.msg import DiagnosticArray

    from regconsist_ros.ros import convert
    from regconsist_ros.sim.frame import Intrinsics

    probe.subscribe(DiagnosticArray, "/diagnostics")
    proc = nodes.start("registration", {})
    pubs = _camera_publishers(probe)
    intr = Intrinsics.from_fov(32, 24, 90)
    rgb = np.full((24, 32, 3), 100, np.uint8)
    depth = np.full((24, 32), 2.0, np.float32)
    T = np.eye(4)
    t0 = time.time()

    def send(i, color=None, dep=None, pose=None, info=True):
        t = t0 + 0.1 * i
        if info:
            pubs["info"].publish(convert.camera_info_msg(intr, t, "cam"))
        pubs["depth"].publish(dep if dep is not None else convert.depth_msg(depth, t, "cam"))
        pubs["pose"].publish(pose if pose is not None else convert.pose_msg(T, t, "world"))
        pubs["color"].publish(color if color is not None else convert.color_msg(rgb, t, "cam"))
        probe.spin_until(lambda: False, 0.05)

    bad_enc = convert.color_msg(rgb, t0 + 0.1, "cam")
    bad_enc.encoding = "yuv422"
    send(1, color=bad_enc)
    send(2, dep=convert.depth_msg(np.full((12, 16), 2.0, np.float32), t0 + 0.2, "cam"))  # size mismatch
    nan_pose = convert.pose_msg(T, t0 + 0.3, "world")
    nan_pose.pose.position.x = math.nan
    send(3, pose=nan_pose)
    skew = convert.pose_msg(T, t0 + 0.4, "world")
    skew.pose.orientation.w = 2.0  # not a unit quaternion: not a rigid motion
    send(4, pose=skew)
    short = convert.color_msg(rgb, t0 + 0.5, "cam")
    short.data = bytes(short.data)[:100]  # truncated buffer
    send(5, color=short)
    send(6)  # a good one
    send(3)  # stamps going backwards
    def backwards(d):
        return sum(int(v) for k, v in d.items() if k.startswith("dropped.sync.stamp_backwards"))

    # the last set (stamped backwards) may still be on its way when the others are counted: wait for it too
    ok = probe.spin_until(lambda: int(_diag(probe, "registration").get("frames_registered", 0)) >= 1
                          and int(_diag(probe, "registration").get("dropped_total", 0)) >= 5
                          and backwards(_diag(probe, "registration")) >= 1, timeout=15)
    d = _diag(probe, "registration")
    assert ok, (d, nodes.log("registration"))
    for reason in ("dropped.encoding", "dropped.size_mismatch", "dropped.step",
                   "dropped.sync.pose_non_finite", "dropped.sync.pose_non_rigid"):  # poses are checked as they arrive
        assert int(d.get(reason, 0)) >= 1, (reason, d)
    assert backwards(d) >= 1, d
    assert proc.poll() is None, nodes.log("registration")


def test_frames_without_camera_info_wait_then_are_counted(probe, nodes):
    """No camera_info yet: frames wait in the bounded sync queue, overflow is counted; once camera_info
    arrives, registration proceeds."""
    from diagnostic_msgs.msg import DiagnosticArray

    from regconsist_ros.ros import convert
    from regconsist_ros.sim.frame import Intrinsics

    probe.subscribe(DiagnosticArray, "/diagnostics")
    proc = nodes.start("registration", {"sync_queue": 3})
    pubs = _camera_publishers(probe)
    intr = Intrinsics.from_fov(32, 24, 90)
    rgb, depth, T = np.full((24, 32, 3), 90, np.uint8), np.full((24, 32), 2.0, np.float32), np.eye(4)
    t0 = time.time()
    for i in range(8):
        t = t0 + 0.1 * i
        if i == 7:
            pubs["info"].publish(convert.camera_info_msg(intr, t, "cam"))
        pubs["depth"].publish(convert.depth_msg(depth, t, "cam"))
        pubs["pose"].publish(convert.pose_msg(T, t, "world"))
        pubs["color"].publish(convert.color_msg(rgb, t, "cam"))
        probe.spin_until(lambda: False, 0.05)
    ok = probe.spin_until(lambda: int(_diag(probe, "registration").get("frames_registered", 0)) >= 1, timeout=15)
    d = _diag(probe, "registration")
    assert ok, (d, nodes.log("registration"))
    assert sum(int(v) for k, v in d.items() if k.startswith("dropped.sync.")) >= 3, d
    assert proc.poll() is None


def test_a_30hz_stream_is_looked_at_in_full_while_pair_searches_lag(probe, nodes):
    """Every frame a keyframe, each paired with up to 40 earlier ones: the pair searches (~40 exact
    correspondences each) are slower than the 33 ms frame period, yet the frame worker looks at every set
    (none dropped as busy); each keyframe's pair search is done or counted as skipped (backlog).
    Small images (single UDP datagrams) and deep reliable queues on both sides (``qos.depth``) keep the
    transport lossless, so that every frame sent must be accounted for."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import PointCloud2

    from regconsist_ros.ros import convert
    from regconsist_ros.sim.source import SimConfig, SimSource

    n = 60
    frames = list(SimSource(SimConfig(seed=0, frames=n, width=160, height=120, step=0.02, fps=30.0)))
    probe.subscribe(DiagnosticArray, "/diagnostics")
    probe.subscribe(PointCloud2, "registration/view_pairs")
    proc = nodes.start("registration", {"keyframes.min_translation": 0.0, "keyframes.min_rotation_deg": 0.0,
                                        "keyframes.candidates": 40, "view_pairs.iou_low": 0.0, "view_pairs.iou_high": 1.0,
                                        "max_points": 500, "qos.depth": 100})
    pubs = _camera_publishers(probe, depth=100)
    t0 = time.time()
    start = time.monotonic()
    for i, f in enumerate(frames):
        t = t0 + i / 30.0
        pubs["info"].publish(convert.camera_info_msg(f.intrinsics, t, "cam"))
        pubs["depth"].publish(convert.depth_msg(f.depth, t, "cam"))
        pubs["pose"].publish(convert.pose_msg(f.T_world_cam, t, "world"))
        pubs["color"].publish(convert.color_msg(f.rgb, t, "cam"))
        probe.spin_until(lambda: False, max(0.0, start + (i + 1) / 30.0 - time.monotonic()))

    def settled():
        d = _diag(probe, "registration")
        return int(d.get("messages.color", 0)) >= n and int(d.get("frames_received", 0)) >= n \
            and d.get("work_queue") == "0" and d.get("pair_queue") == "0"

    ok = probe.spin_until(settled, timeout=60)
    d = _diag(probe, "registration")
    assert ok, (d, nodes.log("registration"))
    assert int(d["frames_received"]) == int(d["frames_registered"]) == int(d["keyframes"]) == n, d
    assert int(d.get("dropped.busy", 0)) == 0 and int(d["dropped_total"]) == 0, d
    done, skipped = int(d["pair_searches.done"]), int(d.get("pair_searches.skipped.backlog", 0))
    assert done + skipped == n - 1 and int(d["keyframes_unpaired"]) == skipped, d  # the first keyframe has no partner
    assert int(d["view_pairs"]) >= done >= 1 and float(d["frame_ms.p50"]) < 33.0, d
    assert probe.spin_until(lambda: len(probe.msgs["registration/view_pairs"]) >= 1, timeout=10)
    assert proc.poll() is None, nodes.log("registration")
