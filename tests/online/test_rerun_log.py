"""The live viewer's core: what RerunLog writes to an .rrd file, read back with the Rerun SDK."""
import socket
import subprocess
import sys

import numpy as np
import pytest

rr = pytest.importorskip("rerun")
from rerun.chunk import RrdReader  # noqa: E402

from regconsist_ros.online.decode import camera_info_fields, encode_color, encode_depth  # noqa: E402
from regconsist_ros.online.keyframe_viz import keyframe_points  # noqa: E402
from regconsist_ros.online.rerun_log import (COLOR, DEPTH, KEYFRAME, KF_PATH, KF_POINTS, PAIR_IMAGE,  # noqa: E402
                                             PAIR_LINES, RerunLog, ViewerConfig, import_rerun, open_recording,
                                             rrd_rows)
from regconsist_ros.sim.frame import Frame, Intrinsics  # noqa: E402
from regconsist_ros.sim.poses import camera_from_yaw_pitch  # noqa: E402

W, H = 32, 24
INTR = Intrinsics.from_fov(W, H, 80)
T0 = 1_700_000_000.0  # sensor stamps (seconds since the epoch, as a ROS clock gives them)


def _frame(i: int) -> Frame:
    rng = np.random.default_rng(i)
    depth = rng.uniform(0.5, 4.0, (H, W)).astype(np.float32)
    depth[rng.random((H, W)) < 0.2] = 0.0
    T = camera_from_yaw_pitch([0.2 * i, 0.1 * i, 1.0], yaw=0.3 * i)
    return Frame(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), depth, INTR, T, stamp=T0 + 0.1 * i)


def _log(tmp_path, **kw):
    cfg = ViewerConfig(serve="none", save=str(tmp_path / "run.rrd"), nice=0, **kw)
    rec, where = open_recording(cfg)
    assert where == {"file": cfg.save}
    return RerunLog(cfg, rec), cfg.save


def _feed(core, frames, keyframes=(0, 2, 4)):
    info = {**camera_info_fields(INTR), "d": [0.0] * 5, "distortion_model": "plumb_bob"}
    for i, f in enumerate(frames):
        assert core.handle("camera_info", f.stamp, info), core.last_error
        assert core.handle("pose", f.stamp, f.T_world_cam), core.last_error
        assert core.handle("depth", f.stamp, encode_depth(f.depth, "16UC1")), core.last_error
        assert core.handle("color", f.stamp, encode_color(f.rgb)), core.last_error
        if i in keyframes:
            assert core.handle("keyframe", f.stamp, encode_color(f.rgb)), core.last_error


def _column(path, entity, column) -> list:
    out = []
    for chunk in RrdReader(path).stream():
        rb = chunk.to_record_batch()
        if chunk.entity_path.lstrip("/") == entity and column in rb.schema.names:
            out += rb.column(column).to_pylist()
    return out


def test_camera_streams_keyframes_and_pairs_are_logged_once_per_message_on_the_stamp_timeline(tmp_path):
    core, path = _log(tmp_path, image_rate=0.0, pair_rate=0.0, cloud_stride=2)
    frames = [_frame(i) for i in range(6)]
    _feed(core, frames)
    rng = np.random.default_rng(0)
    uv1, uv2 = rng.uniform(0, W - 1, (200, 2)).astype(np.float32), rng.uniform(0, W - 1, (200, 2)).astype(np.float32)
    for src, dst in ((0, 2), (2, 4), (0, 4)):
        assert core.handle("view_pair", frames[dst].stamp, {"uv1": uv1, "uv2": uv2, "src_stamp": frames[src].stamp,
                                         "dst_stamp": frames[dst].stamp, "iou": 0.5}), core.last_error
    core.close()
    rows = rrd_rows(path)
    assert rows["world"] == {"ViewCoordinates": 1}
    assert rows["world/camera"] == {"Transform3D": 6, "Pinhole": 1}  # the Pinhole once: K never changed
    assert rows[COLOR] == {"Image": 6} and rows[DEPTH] == {"DepthImage": 6}
    assert rows[KEYFRAME] == {"Image": 3} and rows[KF_PATH] == {"LineStrips3D": 3} and rows[KF_POINTS] == {"Points3D": 3}
    assert rows[PAIR_IMAGE] == {"Image": 3} and rows[PAIR_LINES] == {"LineStrips2D": 3}
    assert rows["metrics/registration/pair_iou"] == {"Scalars": 3}
    assert core.status()["errors_total"] == 0 and core.status()["logged"][COLOR] == 6
    # the stamp timeline carries the sensor stamps (nanoseconds)
    stamps = _column(path, COLOR, "stamp")
    assert [s.timestamp() if hasattr(s, "timestamp") else s / 1e9 for s in stamps] == pytest.approx([f.stamp for f in frames])
    # depth in metres (meter = 1), at the 16UC1 millimetre resolution
    assert _column(path, DEPTH, "DepthImage:meter") == [[1.0]] * 6


def test_keyframe_points_and_path_are_in_the_world_frame_and_accumulate_the_last_keyframes(tmp_path):
    core, path = _log(tmp_path, image_rate=0.0, cloud_stride=2, cloud_keyframes=2)
    frames = [_frame(i) for i in range(6)]
    _feed(core, frames, keyframes=(0, 2, 4))
    core.close()
    path_rows = _column(path, KF_PATH, "LineStrips3D:strips")
    last_strip = np.array(path_rows[-1][0])  # [3, 3]: the 3 keyframe positions, oldest first
    assert np.allclose(last_strip, [frames[i].T_world_cam[:3, 3] for i in (0, 2, 4)], atol=1e-6)
    points = _column(path, KF_POINTS, "Points3D:positions")
    assert len(points) == 3
    # the last row: keyframes 2 and 4 (cloud_keyframes=2), back-projected from the 16UC1 depth (mm)
    expect = []
    for i in (2, 4):
        f = frames[i]
        mm = Frame(f.rgb, np.round(f.depth * 1000) / 1000, INTR, f.T_world_cam, f.stamp)
        expect.append(keyframe_points(mm, 2)[0])
    assert np.allclose(np.array(points[-1]), np.concatenate(expect), atol=1e-4)


def test_a_keyframe_that_arrives_before_its_pose_and_depth_waits_for_them(tmp_path):
    core, path = _log(tmp_path, image_rate=0.0, cloud_stride=4)
    f, g = _frame(1), _frame(2)
    info = {**camera_info_fields(INTR), "d": [], "distortion_model": ""}
    core.handle("camera_info", f.stamp, info)
    core.handle("keyframe", f.stamp, encode_color(f.rgb))  # topics arrive in any order
    assert core.logged[KF_PATH] == 0
    core.handle("pose", f.stamp, f.T_world_cam)
    assert core.logged[KF_PATH] == 1 and core.logged[KF_POINTS] == 0  # on the path; points wait for the depth
    core.handle("depth", f.stamp, encode_depth(f.depth))
    assert core.logged[KF_POINTS] == 1
    core.handle("keyframe", g.stamp, encode_color(g.rgb))  # its pose never comes: the pose stream goes past it
    core.handle("pose", g.stamp + 1.0, g.T_world_cam)
    assert core.status()["skipped"] == {"keyframe_without_pose": 1} and core.logged[KF_PATH] == 1
    core.close()
    assert rrd_rows(path)[KF_POINTS] == {"Points3D": 1}


def test_keyframes_before_the_first_camera_info_get_their_points_when_it_comes(tmp_path):
    """The viewer may join after the camera's camera_info: keyframes whose pose and depth are here wait
    for the intrinsics, even once the depth stream has gone past them (in a real run 3 of 21 keyframes
    were counted as without depth that way)."""
    core, path = _log(tmp_path, image_rate=0.0, cloud_stride=4)
    frames = [_frame(i) for i in range(4)]
    for f in frames:
        core.handle("pose", f.stamp, f.T_world_cam)
        core.handle("depth", f.stamp, encode_depth(f.depth))
    core.handle("keyframe", frames[0].stamp, encode_color(frames[0].rgb))  # its depth stream is 0.3 s past it
    assert core.logged[KF_PATH] == 1 and core.logged[KF_POINTS] == 0 and not core.status()["skipped"]
    core.handle("camera_info", frames[3].stamp, {**camera_info_fields(INTR), "d": [], "distortion_model": ""})
    assert core.logged[KF_POINTS] == 1 and not core.status()["skipped"]
    core.close()


def test_pair_lines_join_the_correspondences_across_the_side_by_side_image(tmp_path):
    core, path = _log(tmp_path, image_rate=0.0, pair_lines=7)
    frames = [_frame(i) for i in range(3)]
    _feed(core, frames, keyframes=(0, 2))
    uv1 = np.stack([np.arange(20.0), np.arange(20.0) / 2], 1).astype(np.float32)  # [20, 2] (x, y)
    uv2 = uv1 + np.float32([1.5, 0.25])
    # a float stamp and a header's sec + nanosec differ by < 1 us: still the same keyframe
    assert core.handle("view_pair", frames[2].stamp, {"uv1": uv1, "uv2": uv2, "src_stamp": frames[0].stamp + 2e-7,
                                     "dst_stamp": frames[2].stamp, "iou": 0.4}), core.last_error
    core.close()
    (strips,) = _column(path, PAIR_LINES, "LineStrips2D:strips")
    seg = np.array(strips)  # [7, 2, 2]: 7 segments src -> dst
    idx = np.linspace(0, 19, 7).round().astype(int)
    assert np.allclose(seg[:, 0], uv1[idx]) and np.allclose(seg[:, 1], uv2[idx] + [W, 0])
    (buf,) = _column(path, PAIR_IMAGE, "Image:buffer")
    side = np.array(buf[0], np.uint8).reshape(H, 2 * W, 3)  # one row: a list of one buffer (bytes as ints)
    assert (side[:, :W] == frames[0].rgb).all() and (side[:, W:] == frames[2].rgb).all()


def test_a_pair_whose_keyframes_were_not_seen_is_counted_not_drawn(tmp_path):
    core, path = _log(tmp_path)
    core.handle("view_pair", 2.0, {"uv1": np.zeros((3, 2)), "uv2": np.zeros((3, 2)), "src_stamp": 1.0, "dst_stamp": 2.0, "iou": 0.3})
    core.close()
    assert core.status()["skipped"] == {"pair_without_keyframe_image": 1}
    assert PAIR_LINES not in rrd_rows(path)


def test_image_rate_thins_colour_depth_and_pose_and_pair_rate_the_pairs_by_stamp(tmp_path):
    core, path = _log(tmp_path, image_rate=5.0, pair_rate=4.0)  # frames 0.1 s apart: every second one
    frames = [_frame(i) for i in range(6)]
    _feed(core, frames, keyframes=(1, 3))
    pair = {"uv1": np.zeros((3, 2)), "uv2": np.zeros((3, 2)), "src_stamp": frames[1].stamp, "iou": 0.5}
    for dt in (0.0, 0.1, 0.2, 0.3, 0.4):  # pairs 0.1 s apart at 4 Hz: the 1st, 4th (0.3 s >= 0.9 x 0.25 s) drawn
        core.handle("view_pair", frames[3].stamp + dt, {**pair, "dst_stamp": frames[3].stamp})
    core.close()
    rows = rrd_rows(path)
    assert rows[COLOR] == {"Image": 3} and rows[DEPTH] == {"DepthImage": 3}
    assert rows["world/camera"]["Transform3D"] == 3
    assert rows[KEYFRAME] == {"Image": 2}  # keyframes are never thinned
    assert core.status()["skipped"]["thinned.color"] == 3
    assert rows[PAIR_LINES] == {"LineStrips2D": 2} and rows["metrics/registration/pair_iou"] == {"Scalars": 5}


def test_learner_losses_once_per_new_step_and_readouts_on_the_step_timeline(tmp_path):
    core, path = _log(tmp_path)
    learner = [("5", "0.9"), ("5", "0.9"), ("10", "0.7"), ("20", "0.5")]  # a repeated status: not logged again
    for i, (step, loss) in enumerate(learner):
        core.handle("diagnostics", T0 + i, "learner: status", {"rsp.step": step, "rsp.loss": loss, "rsp.ready": "True",
                                                                "buffers.frames": "7", "regconsist.step": "0",
                                                                "regconsist.loss": "None"})
    core.handle("diagnostics", T0 + 5, "evaluator: rsp", {"objective": "rsp", "step": "20", "propagation.JF_objects": "0.41",
                                                          "segmentation.probe_miou": "0.3", "error": "x", "time": "12.5"})
    core.handle("diagnostics", T0 + 5, "evaluator: status", {"evaluated": "1"})
    core.handle("diagnostics", T0 + 6, "registration: status", {"keyframes": "4", "view_pairs": "9", "frame_ms.p50": "1.0"})
    core.close()
    rows = rrd_rows(path)
    assert rows["metrics/learner/rsp/loss"] == {"Scalars": 3}
    assert rows["metrics/learner/rsp/steps_per_s"] == {"Scalars": 2}
    assert "metrics/learner/regconsist/loss" not in rows  # no loss yet
    assert _column(path, "metrics/learner/rsp/loss", "step") == [5, 10, 20]
    assert _column(path, "metrics/learner/rsp/loss", "Scalars:scalars") == [[0.9], [0.7], [0.5]]
    # steps / s between the stamps of new steps: (10 - 5) / 2 s (the repeated status in between changes nothing)
    assert _column(path, "metrics/learner/rsp/steps_per_s", "Scalars:scalars") == [[2.5], [10.0]]
    readouts = {e for e in rows if e.startswith("metrics/readouts/")}
    assert readouts == {"metrics/readouts/rsp/propagation/JF_objects", "metrics/readouts/rsp/segmentation/probe_miou"}
    assert _column(path, "metrics/readouts/rsp/propagation/JF_objects", "step") == [20]
    assert {e for e in rows if e.startswith("metrics/registration/")} == {"metrics/registration/keyframes",
                                                                          "metrics/registration/view_pairs"}


def test_errors_are_counted_never_raised(tmp_path):
    core, path = _log(tmp_path)
    assert not core.handle("color", T0, {"width": 4, "height": 4, "encoding": "weird8", "step": 12, "data": b"\0" * 48})
    assert not core.handle("camera_info", T0, {"width": 4, "height": 4, "k": [0.0] * 9})

    class Broken:
        def __getattr__(self, name):
            raise RuntimeError("gRPC server thread shut down")

    core.rec, good = Broken(), core.rec
    assert not core.handle("keyframe", T0, encode_color(np.zeros((H, W, 3), np.uint8)))
    st = core.status()
    assert st["errors"] == {"color": 1, "camera_info": 1, "keyframe": 1} and st["errors_total"] == 3
    assert "gRPC server thread shut down" in st["last_error"]
    core.rec = good
    core.close()


def test_config_checks_and_missing_sdk(monkeypatch):
    with pytest.raises(ValueError, match="nothing"):
        ViewerConfig(serve="none")
    with pytest.raises(ValueError, match="grpc_port"):
        ViewerConfig(grpc_port=0)
    with pytest.raises(ValueError, match="serve"):
        ViewerConfig(serve="browser")
    monkeypatch.setitem(sys.modules, "rerun", None)
    with pytest.raises(ImportError, match="pip install 'rerun-sdk"):
        import_rerun()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_busy_port_is_a_clear_error_before_anything_is_logged(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(OSError, match=f"viewer grpc_port: cannot listen on 127.0.0.1:{port}"):
            open_recording(ViewerConfig(serve="grpc", grpc_port=port))


def test_serve_web_hosts_the_sdk_viewer_page_and_the_grpc_server(tmp_path):
    """In a child process: the web server lives until its process ends."""
    grpc, web = _free_port(), _free_port()
    code = f"""
import urllib.request
from regconsist_ros.online.rerun_log import ViewerConfig, open_recording
rec, where = open_recording(ViewerConfig(serve="web", grpc_port={grpc}, web_port={web}, save={str(tmp_path / 'w.rrd')!r}))
print(where)
page = urllib.request.urlopen("http://127.0.0.1:{web}/", timeout=10).read().decode()
print("rerun" in page.lower(), "<html" in page.lower())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert f"'grpc': 'rerun+http://127.0.0.1:{grpc}/proxy'" in lines[0]
    assert f"'web': 'http://localhost:{web}/?url=rerun%2Bhttp%3A%2F%2Flocalhost%3A{grpc}%2Fproxy'" in lines[0]
    assert lines[1] == "True True"
