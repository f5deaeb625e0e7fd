"""The visualisation topics, seen by a plain rclpy node: the registration node's correspondence picture,
keyframe path and keyframe cloud; the learner's and the evaluator's scalars; with the switches off, none."""
import json
import time

import numpy as np

from regconsist_ros.ros.viz_msgs import PathPoses, ScalarPublisher, cloud_msg, pack_rgb, read_cloud, scalar_items, \
    topic_token, unpack_rgb

W, H = 96, 72
# a tiny RSP for the learner (as tests/ros/test_graph.py)
RSP_TINY = {"rsp.encoder.size": "tiny", "rsp.encoder.patch": 8, "rsp.encoder.depth": 1, "rsp.decoder_width": 32,
            "rsp.decoder_depth": 1, "rsp.decoder_heads": 4, "rsp.batch.size": 4, "rsp.batch.gap_min": 2,
            "rsp.batch.gap_max": 6, "rsp.trainer.threads": 1}
EVAL_TINY = {"readouts": "[propagation]", "floors": False, "eval_width": 64, "eval_height": 48, "eval_frames": 8,
             "clip_len": 4, "min_object_pixels": 20, "poll_s": 0.5}


# ---- message builders (no nodes) -------------------------------------------------------------------------
def test_cloud_messages_pack_rgb_as_rviz_reads_it():
    from sensor_msgs.msg import PointField

    assert pack_rgb(np.array([[1, 2, 3]], np.uint8)).view(np.uint32)[0] == 0x010203
    rng = np.random.default_rng(0)
    xyz, rgb = rng.normal(size=(50, 3)).astype(np.float32), rng.integers(0, 256, (50, 3), dtype=np.uint8)
    assert (unpack_rgb(pack_rgb(rgb)) == rgb).all()
    msg = cloud_msg(xyz, rgb, 12.5, "map")
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == \
        [(n, o, PointField.FLOAT32, 1) for n, o in (("x", 0), ("y", 4), ("z", 8), ("rgb", 12))]
    assert (msg.width, msg.height, msg.point_step, msg.is_dense, msg.header.frame_id) == (50, 1, 16, True, "map")
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 500_000_000)
    x2, rgb2 = read_cloud(msg)
    assert (x2 == xyz).all() and (rgb2 == rgb).all()


def test_scalar_names_are_valid_topic_names_of_every_finite_number():
    from rclpy.validate_topic_name import validate_topic_name

    assert topic_token("J&F") == "J_F" and topic_token("3d") == "_3d" and topic_token("") == "_"
    items = dict(scalar_items({"rsp": {"loss": 0.5, "step": 7, "ready": True, "resumed": False, "note": "x"},
                               "buffers": {"frames": 3, "frames_mb": 1.5}, "lost.frame.sequence_gap": 2,
                               "bc": {"button-press-topdown": {"success": 0.4}, "nan": float("nan")}},
                              skip=("rsp/step",)))
    assert items == {"rsp/loss": 0.5, "buffers/frames": 3.0, "buffers/frames_mb": 1.5, "lost/frame/sequence_gap": 2.0,
                     "bc/button_press_topdown/success": 0.4}
    for name in items:
        validate_topic_name(f"learner/scalars/{name}")


def test_path_poses_are_made_once_per_keyframe():
    from regconsist_ros.ros.convert import pose_from_msg

    make = PathPoses()
    poses = np.stack([np.eye(4)] * 3)
    poses[:, 0, 3] = [0.0, 1.0, 2.0]
    a = make(np.array([1.0, 2.0, 3.0]), poses, "map")
    b = make(np.array([2.0, 3.0]), poses[1:], "map")
    assert b[0] is a[1] and b[1] is a[2] and np.allclose(pose_from_msg(b[1]), poses[2])
    assert make(np.array([3.0]), poses[2:], "world")[0] is not a[2]  # another frame: made again


# ---- helpers -----------------------------------------------------------------------------------------------
from tests.ros.test_registration import _diag  # noqa: E402  (the last status of a node on /diagnostics)


def _feed(probe, frames, world="map", rate=10.0):
    """Publish ``frames`` as the four camera streams (32FC1 depth: the node sees the exact depth); -> {stamp: frame}."""
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import CameraInfo, Image

    from regconsist_ros.ros import convert

    node = probe.node
    pubs = {"color": node.create_publisher(Image, "camera/color/image_raw", 100),
            "depth": node.create_publisher(Image, "camera/aligned_depth_to_color/image_raw", 100),
            "info": node.create_publisher(CameraInfo, "camera/color/camera_info", 100),
            "pose": node.create_publisher(PoseStamped, "camera/pose", 100)}
    assert probe.spin_until(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), timeout=30)
    t0, start, sent = time.time(), time.monotonic(), {}
    for i, f in enumerate(frames):
        t = round(t0 + i / rate, 3)
        sent[t] = f
        pubs["info"].publish(convert.camera_info_msg(f.intrinsics, t, "cam"))
        pubs["depth"].publish(convert.depth_msg(f.depth, t, "cam", "32FC1"))
        pubs["pose"].publish(convert.pose_msg(f.T_world_cam, t, world))
        pubs["color"].publish(convert.color_msg(f.rgb, t, "cam"))
        probe.spin_until(lambda: False, max(0.0, start + (i + 1) / rate - time.monotonic()))
    return sent


def _at(sent: dict, stamp: float):
    t = min(sent, key=lambda s: abs(s - stamp))
    assert abs(t - stamp) < 1e-6, (stamp, t)
    return sent[t]


def _frames(n: int):
    from regconsist_ros.sim.source import SimConfig, SimSource

    return list(SimSource(SimConfig(seed=0, frames=n, width=W, height=H, step=0.05, fps=10.0, nthreads=1)))


def _topics(probe, prefix: str) -> dict:
    return {name: types for name, types in probe.node.get_topic_names_and_types() if name.startswith(prefix)}


# ---- registration ------------------------------------------------------------------------------------------
def test_registration_publishes_the_pair_picture_the_keyframe_path_and_cloud(probe, nodes):
    from nav_msgs.msg import Path
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image, PointCloud2

    from regconsist_ros.registration.draw import draw_correspondences, palette, pick
    from regconsist_ros.ros import convert
    from regconsist_ros.ros.pair_msg import read_pair_cloud
    from regconsist_ros.sim.poses import invert

    lines, every, keep, stride, cap = 20, 2, 3, 4, 1000
    for topic, tp in (("registration/view_pairs", PointCloud2), ("registration/keyframe/image_raw", Image),
                      ("registration/viz/correspondences", Image), ("registration/viz/keyframe_path", Path),
                      ("registration/viz/keyframe_cloud", PointCloud2), ("/diagnostics", DiagnosticArray)):
        probe.subscribe(tp, topic, qos=100)
    nodes.start("registration", {"keyframes.min_translation": 0.08, "keyframes.candidates": 4, "view_pairs.iou_low": 0.05,
                                 "view_pairs.iou_high": 1.0, "max_points": 400, "qos.depth": 100,
                                 "viz.correspondences": True, "viz.every": every, "viz.lines": lines, "viz.path": True,
                                 "viz.cloud": True, "viz.cloud_keyframes": keep, "viz.cloud_stride": stride,
                                 "viz.cloud_max_points": cap})
    n = 24
    sent = _feed(probe, _frames(n))

    def settled():
        d = _diag(probe, "registration")
        return int(d.get("frames_received", 0)) >= n and d.get("work_queue") == "0" and d.get("pair_queue") == "0"

    assert probe.spin_until(settled, timeout=90), (_diag(probe, "registration"), nodes.log("registration"))
    probe.spin_until(lambda: False, 2.0)  # the last path, cloud and pictures
    m = probe.msgs
    kf_stamps = [convert.stamp_to_sec(k.header.stamp) for k in m["registration/keyframe/image_raw"]]
    pairs = [read_pair_cloud(p) for p in m["registration/view_pairs"]]
    assert 4 <= len(kf_stamps) < n and len(pairs) >= 3, (len(kf_stamps), len(pairs), nodes.log("registration"))

    # the correspondence picture: every 2nd pair, its stamp, its two keyframes, its published matches
    pics = m["registration/viz/correspondences"]
    assert len(pics) == (len(pairs) + every - 1) // every
    for k, pic in enumerate(pics):
        pair = pairs[every * k]
        assert pic.header.stamp == m["registration/view_pairs"][every * k].header.stamp
        assert (pic.encoding, pic.width, pic.height, pic.header.frame_id) == ("rgb8", 2 * W, H, "cam")
        img = convert.decode_color_msg(pic)  # [H, 2W, 3]
        src, dst = _at(sent, pair["src_stamp"]), _at(sent, pair["dst_stamp"])
        expected, drawn = draw_correspondences(src.rgb, dst.rgb, pair["uv1"], pair["uv2"], lines)
        assert (img == expected).all(), f"picture {k} is not pair {every * k} drawn"
        cols = palette(len(drawn))
        ends = [(img[int(round(pair["uv1"][i, 1])), int(round(pair["uv1"][i, 0]))] == cols[j]).all()
                for j, i in enumerate(drawn)]
        assert len(drawn) == min(lines, len(pair["uv1"])) and np.mean(ends) >= 0.8  # drawn where the pair says
        assert drawn.tolist() == pick(len(pair["uv1"]), lines).tolist()

    # the path: every keyframe's pose, in the poses' frame, oldest first
    path = m["registration/viz/keyframe_path"][-1]
    assert path.header.frame_id == "map" and all(p.header.frame_id == "map" for p in path.poses)
    stamps = [convert.stamp_to_sec(p.header.stamp) for p in path.poses]
    assert np.allclose(stamps, kf_stamps, atol=1e-6) and path.header.stamp == path.poses[-1].header.stamp
    for p, t in zip(path.poses, stamps):
        assert np.allclose(convert.pose_from_msg(p), _at(sent, t).T_world_cam, atol=1e-5)

    # the cloud: the newest keyframes' pixels where their depth puts them, in colour, capped
    cloud = m["registration/viz/keyframe_cloud"][-1]
    assert cloud.header.frame_id == "map" and [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"]
    xyz, rgb = read_cloud(cloud)
    newest = convert.stamp_to_sec(cloud.header.stamp)
    assert abs(newest - kf_stamps[-1]) < 1e-6
    assert 0 < len(xyz) <= cap and np.isfinite(xyz).all()
    recent = [_at(sent, t) for t in kf_stamps[-keep:]]
    assert len(xyz) == min(cap, sum(int((f.depth[::stride, ::stride] > 0).sum()) for f in recent))
    found = np.zeros(len(xyz), bool)
    for f in recent:
        Ti = invert(f.T_world_cam)
        P = xyz.astype(np.float64) @ Ti[:3, :3].T + Ti[:3, 3]  # [N, 3] in this keyframe's camera
        K = f.intrinsics
        with np.errstate(divide="ignore", invalid="ignore"):
            u, v = K.fx * P[:, 0] / P[:, 2] + K.cx, K.fy * P[:, 1] / P[:, 2] + K.cy
        ui, vi = np.rint(np.nan_to_num(u, nan=-1)).astype(int), np.rint(np.nan_to_num(v, nan=-1)).astype(int)
        inside = (P[:, 2] > 0) & (ui >= 0) & (ui < W) & (vi >= 0) & (vi < H) & (np.abs(u - ui) < 1e-2) & (np.abs(v - vi) < 1e-2)
        uc, vc = np.clip(ui, 0, W - 1), np.clip(vi, 0, H - 1)
        hit = inside & (ui % stride == 0) & (vi % stride == 0) & (np.abs(P[:, 2] - f.depth[vc, uc]) < 1e-3) \
            & (rgb == f.rgb[vc, uc]).all(1)
        found |= hit
    assert found.all(), f"{(~found).sum()} of {len(found)} cloud points are at no keyframe pixel with that depth and colour"
    assert nodes.procs["registration"].poll() is None, nodes.log("registration")


# ---- learner and evaluator ------------------------------------------------------------------------------------
def test_learner_scalars_follow_training_and_mirror_its_diagnostics(probe, nodes, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from std_msgs.msg import Float64

    for name in ("rsp/loss", "rsp/step", "rsp/steps_per_s", "buffers/frames"):
        probe.subscribe(Float64, f"learner/scalars/{name}")
    probe.subscribe(DiagnosticArray, "/diagnostics")
    nodes.start("sim_camera", {"sim.width": 64, "sim.height": 48, "sim.frames": 100, "rate": 10.0})
    nodes.start("learner", {"learner.objectives": "[rsp]", "learner.out_dir": str(tmp_path / "online"),
                            "learner.store_height": 32, "learner.store_width": 48, "learner.min_frames": 8,
                            "learner.slice_steps": 1, "train_slice": 2, "rsp.trainer.ckpt_every": 1000, **RSP_TINY})
    ok = probe.spin_until(lambda: len(probe.msgs["learner/scalars/rsp/loss"]) >= 3
                          and len(probe.msgs["learner/scalars/rsp/steps_per_s"]) >= 2
                          and max((m.data for m in probe.msgs["learner/scalars/buffers/frames"]), default=0) >= 8,
                          timeout=120)  # the buffer's size comes once a second: it may lag the first steps
    assert ok, nodes.log("learner")
    steps = [m.data for m in probe.msgs["learner/scalars/rsp/step"]]
    losses = [m.data for m in probe.msgs["learner/scalars/rsp/loss"]]
    assert steps == sorted(steps) and steps[0] >= 1 and len(set(steps)) == len(steps)
    assert np.isfinite(losses).all() and len(losses) == len(steps)
    assert max(m.data for m in probe.msgs["learner/scalars/buffers/frames"]) >= 8
    assert max(m.data for m in probe.msgs["learner/scalars/rsp/steps_per_s"]) > 0
    # one Float64 topic per number of the /diagnostics status (its dots -> slashes)
    diag = _diag(probe, "learner: status")
    numeric = {k for k, v in diag.items() if v.replace(".", "", 1).replace("-", "", 1).isdigit()}
    topics = _topics(probe, "/learner/scalars/")
    assert {f"/learner/scalars/{k.replace('.', '/')}" for k in numeric} <= set(topics), (numeric, sorted(topics))
    assert all(types == ["std_msgs/msg/Float64"] for types in topics.values())


def _checkpoint(watch):
    from regconsist_ros.models.checkpoint import save_checkpoint
    from regconsist_ros.models.encoder import random_encoder
    from regconsist_ros.models.vit import ViTConfig

    cfg = ViTConfig(size="tiny", img_size=(32, 48), patch=8, depth=1)
    save_checkpoint(watch / "rsp" / "checkpoints" / "step_00000005", random_encoder("vit", cfg), "vit", cfg, step=5)


def test_evaluator_scalars_are_the_numbers_of_its_results(probe, nodes, tmp_path):
    from std_msgs.msg import Float64

    watch = tmp_path / "online"
    _checkpoint(watch)
    for name in ("rsp/step", "rsp/propagation/JF_objects", "rsp/propagation/J_mean", "status/evaluated"):
        probe.subscribe(Float64, f"evaluator/scalars/{name}")
    nodes.start("evaluator", {"watch_dir": str(watch), **EVAL_TINY})
    ok = probe.spin_until(lambda: probe.msgs["evaluator/scalars/rsp/propagation/JF_objects"]
                          and any(m.data == 1 for m in probe.msgs["evaluator/scalars/status/evaluated"]), timeout=120)
    assert ok, nodes.log("evaluator")
    row = json.loads((watch / "eval_results.jsonl").read_text().splitlines()[0])
    assert probe.msgs["evaluator/scalars/rsp/step"][0].data == row["step"] == 5
    assert probe.msgs["evaluator/scalars/rsp/propagation/JF_objects"][0].data == row["propagation"]["JF_objects"]
    assert probe.msgs["evaluator/scalars/rsp/propagation/J_mean"][0].data == row["propagation"]["J_mean"]
    assert all(t == ["std_msgs/msg/Float64"] for t in _topics(probe, "/evaluator/scalars/").values())


# ---- switches off ---------------------------------------------------------------------------------------------
def test_with_the_switches_off_nothing_is_published(probe, nodes, tmp_path):
    """Registration with the default viz.* (all off), learner and evaluator with scalars:=false: their usual
    topics flow, and no visualisation topic even exists in the graph."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import PointCloud2

    watch = tmp_path / "online"
    _checkpoint(watch)
    probe.subscribe(PointCloud2, "registration/view_pairs", qos=100)
    probe.subscribe(DiagnosticArray, "/diagnostics")
    nodes.start("registration", {"keyframes.min_translation": 0.08, "view_pairs.iou_low": 0.05, "qos.depth": 100})
    nodes.start("learner", {"learner.objectives": "[rsp]", "learner.out_dir": str(tmp_path / "learner"),
                            "learner.min_frames": 100000, "scalars": False, **RSP_TINY})
    nodes.start("evaluator", {"watch_dir": str(watch), "scalars": False, **EVAL_TINY})
    _feed(probe, _frames(16))
    ok = probe.spin_until(lambda: len(probe.msgs["registration/view_pairs"]) >= 2 and _diag(probe, "learner: status")
                          and _diag(probe, "evaluator: rsp"), timeout=120)
    assert ok, (nodes.log("registration"), nodes.log("learner"), nodes.log("evaluator"))
    probe.spin_until(lambda: False, 2.0)  # a few more status periods
    names = [n for n, _ in probe.node.get_topic_names_and_types()]
    assert not [n for n in names if n.startswith(("/registration/viz", "/learner/scalars", "/evaluator/scalars"))], names
    assert "/registration/view_pairs" in names
    for name, proc in nodes.procs.items():
        assert proc.poll() is None, nodes.log(name)


def test_scalar_publisher_makes_one_float64_topic_per_name(probe):
    from std_msgs.msg import Float64

    probe.subscribe(Float64, "demo/scalars/a/b")
    pub = ScalarPublisher(probe.node, "demo/scalars/")
    pub.publish([("a/b", 1.5), ("c", 2)])
    pub.publish([("a/b", 2.5)])
    assert pub.topics == ["demo/scalars/a/b", "demo/scalars/c"]
    assert probe.spin_until(lambda: len(probe.msgs["demo/scalars/a/b"]) == 2, timeout=5)
    assert [m.data for m in probe.msgs["demo/scalars/a/b"]] == [1.5, 2.5]


def test_registration_viz_starts_afresh_with_a_new_pose_segment_and_names_its_world_frame(probe):
    from regconsist_ros.online.keyframe_viz import VizConfig
    from regconsist_ros.ros.viz_msgs import RegistrationViz

    frames = _frames(3)
    viz = RegistrationViz(probe.node, VizConfig(path=True), 10, "world", pose_topic=True)
    assert viz.thread and viz.pub_corr is None and viz.pub_cloud is None
    a, b = object(), object()
    viz.keyframe(frames[0], segment=a)
    viz.keyframe(frames[1], segment=a)
    assert len(viz.view.path()[0]) == 2
    viz.keyframe(frames[2], segment=b)  # a new odometry segment: the old poses are in another frame
    assert viz.view.path()[0].tolist() == [frames[2].stamp]
    assert viz.world_frame() == "world"  # no pose message yet: the node's world_frame
    viz.pose_frame = "map"
    assert viz.world_frame() == "map"
    assert RegistrationViz(probe.node, VizConfig(path=True, frame_id="odom"), 10, "world", True).world_frame() == "odom"
    assert RegistrationViz(probe.node, VizConfig(correspondences=True), 10, "world", True).thread is False
