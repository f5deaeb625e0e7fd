"""The one frame-source layer (sim/recordings): each layout written by our own writer, detected, read back.

Fixtures: synthetic frames (random colour, smooth depth, known poses) written as TUM, 7-Scenes /
ScanNet, Replica, rosbag2 (.db3, .mcap), ROS 1 .bag and a RealSense-layout .bag (unregistered depth).
"""
import logging

import numpy as np
import pytest
from PIL import Image

from regconsist_ros.sim.depth_register import register_depth
from regconsist_ros.sim.frame import Frame, Intrinsics
from regconsist_ros.sim.poses import pose_from_tq
from regconsist_ros.sim.recordings import (PoseUnknownError, RecordingError, RecordingNotFound, detect_layout,
                                           open_recording, require_poses)
from regconsist_ros.sim.sequences import TumWriter, read_tum

pytest.importorskip("rosbags")

K = Intrinsics(60.0, 60.0, 31.5, 23.5, 64, 48)


def _frames(n: int = 5, K: Intrinsics = K, seed: int = 0) -> list[Frame]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        y, x = np.mgrid[0:K.height, 0:K.width]
        phase = rng.uniform(0, 6, 3)
        rgb = np.stack([128 + 100 * np.sin(x / (4 + c) + y / (5 + c) + phase[c] + i) for c in range(3)], -1)
        rgb = rgb.astype(np.uint8)  # smooth (JPEG keeps it close) and different in every frame
        u = np.arange(K.width, dtype=np.float32)[None, :] / K.width
        depth = (1.0 + 0.5 * u + 0.1 * i).astype(np.float32) * np.ones((K.height, 1), np.float32)
        depth[:3, :3] = 0.0  # a few invalid pixels
        a = 0.05 * i
        T = pose_from_tq([0.1 * i, 0.02 * i, 0.0], [0, np.sin(a / 2), 0, np.cos(a / 2)])
        out.append(Frame(rgb=rgb, depth=depth, intrinsics=K, T_world_cam=T, stamp=1.0 + i / 30))
    return out


@pytest.fixture(scope="module")
def frames():
    return _frames()


def _same(a: Frame, b: Frame, depth_tol: float, rgb_exact: bool = True, pose: bool = True):
    if rgb_exact:
        np.testing.assert_array_equal(a.rgb, b.rgb)
    else:  # JPEG
        assert np.abs(a.rgb.astype(int) - b.rgb.astype(int)).mean() < 12
    np.testing.assert_allclose(b.depth, a.depth, atol=depth_tol)
    assert np.array_equal(b.depth == 0, a.depth == 0)
    if pose:
        np.testing.assert_allclose(b.T_world_cam, a.T_world_cam, atol=1e-6)
    else:
        assert b.T_world_cam is None and not b.has_pose


# ---- file layouts -------------------------------------------------------------------------------------


def test_7scenes_layout_reads_colour_mm_depth_and_camera_to_world_poses(frames, tmp_path):
    from regconsist_ros.sim.recordings.scenes7 import write_7scenes

    d = write_7scenes(tmp_path / "seq-01", frames)
    assert detect_layout(d) == "7scenes"
    rec = open_recording(d)
    assert rec.layout == "7scenes" and len(rec) == len(frames) and rec.has_poses
    assert rec.intrinsics == K  # from camera-intrinsics.txt
    np.testing.assert_allclose(rec.stamps, np.arange(len(frames)) / 30)  # frame number / fps
    for a, b in zip(frames, rec):
        _same(a, b, 0.0005 + 1e-6)


def test_7scenes_defaults_invalid_depth_bad_poses_and_jpg(tmp_path, caplog):
    from regconsist_ros.sim.recordings.scenes7 import write_7scenes

    K7 = Intrinsics(585.0, 585.0, 320.0, 240.0, 640, 480)
    fr = _frames(3, K7)
    fr[0].depth[5, 5] = 80.0  # beyond 65.534 m: written as 65535 = no return
    d = write_7scenes(tmp_path / "seq", fr, intrinsics_file=False, color_ext="jpg")
    T = np.loadtxt(d / "frame-000002.pose.txt")
    T[0, 3] = -np.inf  # ScanNet marks lost tracking like this
    np.savetxt(d / "frame-000002.pose.txt", T)
    with caplog.at_level(logging.WARNING):
        rec = open_recording(d)
    assert any("7-Scenes' default camera" in r.getMessage() for r in caplog.records)
    assert rec.intrinsics == K7 and len(rec) == 2 and rec.dropped == {"bad_pose": 1}
    f = rec[0]
    assert f.depth[5, 5] == 0.0
    _same(fr[1], rec[1], 0.0005 + 1e-6, rgb_exact=False)
    # other image sizes need the intrinsics given
    small = write_7scenes(tmp_path / "small", _frames(2), intrinsics_file=False)
    with pytest.raises(RecordingError, match="intrinsics="):
        open_recording(small)
    rec = open_recording(f"{small}?intrinsics=60,60,31.5,23.5")
    assert rec.intrinsics == K and len(rec) == 2


def test_scannet_export_with_a_smaller_depth_camera_is_registered_from_info_txt(tmp_path):
    """ScanNet's SensReader export: colour and depth of different sizes, both cameras in _info.txt."""
    from regconsist_ros.sim.recordings.scenes7 import write_7scenes

    Kc = K.scaled(128, 96)
    fr = _frames(2, Kc)
    d = write_7scenes(tmp_path / "scene0000_00", fr, intrinsics_file=False)
    depth = np.full((48, 64), 1.25, np.float32)
    for i in range(2):
        Image.fromarray(np.full((48, 64), 1250, np.uint16)).save(d / f"frame-{i:06d}.depth.png")

    def mat(k):
        return " ".join(f"{v:g}" for v in (k.fx, 0, k.cx, 0, 0, k.fy, k.cy, 0, 0, 0, 1, 0, 0, 0, 0, 1))

    (d / "_info.txt").write_text(f"m_versionNumber = 4\nm_colorWidth = 128\nm_colorHeight = 96\nm_depthWidth = 64\n"
                                 f"m_depthHeight = 48\nm_depthShift = 1000\nm_calibrationColorIntrinsic = {mat(Kc)}\n"
                                 f"m_calibrationDepthIntrinsic = {mat(K)}\n")
    rec = open_recording(d)
    assert rec.intrinsics == Kc and rec.depth_camera.intrinsics == K
    f = rec[1]
    np.testing.assert_allclose(f.depth, register_depth(depth, K, Kc, None), atol=1e-6)
    assert 0.2 < (f.depth > 0).mean() < 0.3 and np.allclose(f.depth[f.depth > 0], 1.25)
    assert (open_recording(d, register_fill=True)[1].depth == 1.25).all()  # footprints fill the finer image


def test_replica_layout_reads_depth_at_6553_5_per_metre_and_traj(frames, tmp_path):
    from regconsist_ros.sim.recordings.replica import write_replica

    d = write_replica(tmp_path / "room0", frames)
    assert detect_layout(d) == "replica"
    rec = open_recording(d)
    assert rec.layout == "replica" and len(rec) == len(frames) and rec.intrinsics == K
    for a, b in zip(frames, rec):
        _same(a, b, 0.5 / 6553.5 + 1e-6, rgb_exact=False)
    (d / "cam_params.json").unlink()
    with pytest.raises(RecordingError, match="intrinsics="):
        open_recording(d)
    assert open_recording(d, intrinsics="60,60,31.5,23.5").intrinsics == K


def test_tum_without_groundtruth_has_unknown_poses_and_pose_consumers_refuse_it(frames, tmp_path):
    with TumWriter(tmp_path / "seq", K) as w:
        for f in frames:
            w.write(Frame(rgb=f.rgb, depth=f.depth, intrinsics=K, T_world_cam=None, stamp=f.stamp))
    assert not (tmp_path / "seq" / "groundtruth.txt").exists()  # the writer writes no ground truth it lacks
    rec = open_recording(tmp_path / "seq")
    assert rec.layout == "tum" and not rec.has_poses and rec[0].T_world_cam is None
    with pytest.raises(PoseUnknownError, match="pose_source: odometry"):
        require_poses(rec, "correspond")
    with pytest.raises(Exception, match="groundtruth.txt"):
        read_tum(tmp_path / "seq")  # the strict reader still wants it


def test_folder_of_depth_images_is_not_a_colour_source(frames, tmp_path):
    from regconsist_ros.learning.frame_sources import load_ordered_frames

    d = tmp_path / "depth_only"
    d.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray((f.depth * 1000).astype(np.uint16)).save(d / f"{i}.png")
    assert detect_layout(d) == "images"
    with pytest.raises(ValueError, match=r"5 of 5 .*5 not_colour"):
        load_ordered_frames(d, progress=False)


def test_unknown_missing_and_bad_options_are_clear_errors(frames, tmp_path):
    with pytest.raises(RecordingNotFound, match="not found"):
        open_recording(tmp_path / "nope")
    (tmp_path / "x.csv").write_text("1")
    with pytest.raises(RecordingError, match="not a known file type"):
        open_recording(tmp_path / "x.csv")
    from regconsist_ros.sim.recordings.scenes7 import write_7scenes

    d = write_7scenes(tmp_path / "s", frames[:2])
    with pytest.raises(RecordingError, match="unknown recording option 'colour'"):
        open_recording(f"{d}?colour=1")
    with pytest.raises(RecordingError, match="extrinsics"):
        open_recording(f"{d}?extrinsics=1,2,3")
    with pytest.raises(RecordingError, match="layout"):
        open_recording(d, layout="kinect")


# ---- bags ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("storage", ["sqlite3", "mcap", "ros1"])
def test_bags_of_each_storage_read_back_with_poses(frames, tmp_path, storage):
    from regconsist_ros.sim.recordings.bag_writer import write_rosbag

    path = tmp_path / ("rec.bag" if storage == "ros1" else "rec")
    write_rosbag(path, frames, storage=storage, depth_offset=0.004)  # depth 4 ms after colour, as drivers do
    assert detect_layout(path) == "rosbag"
    rec = open_recording(path)
    assert rec.layout == "rosbag" and len(rec) == len(frames) and rec.has_poses and rec.intrinsics == K
    np.testing.assert_allclose(rec.stamps, [f.stamp for f in frames], atol=1e-9)
    for a, b in zip(frames, rec):  # sequential: one streaming pass
        _same(a, b, 0.0005 + 1e-6)
    _same(frames[1], rec[1], 0.0005 + 1e-6)  # random access (restarts the stream)


def test_bag_topics_are_configurable_and_a_bag_without_poses_reads_pose_unknown(frames, tmp_path):
    from regconsist_ros.sim.recordings.bag_writer import write_rosbag

    topics = {"color_topic": "/robot/rgb", "depth_topic": "/robot/depth", "color_info_topic": "/robot/info"}
    path = write_rosbag(tmp_path / "b", frames, topics=topics, poses=False, depth_encoding="32FC1")
    with pytest.raises(RecordingError, match="/camera/color/image_raw.*color_topic"):
        open_recording(path)
    spec = f"{path}?" + "&".join(f"{k}={v}" for k, v in topics.items())
    rec = open_recording(spec)
    assert not rec.has_poses and len(rec) == len(frames)
    _same(frames[0], rec[0], 1e-6, pose=False)
    with pytest.raises(RecordingError, match="/robot/pose"):
        open_recording(spec + "&pose_topic=/robot/pose")  # a pose topic named explicitly must exist


def test_bag_with_unregistered_depth_is_registered_with_its_depth_camera_info(frames, tmp_path):
    from regconsist_ros.sim.recordings.bag_writer import write_rosbag

    Kd = Intrinsics(40.0, 40.0, 20.0, 15.0, 40, 30)  # a wider, coarser depth camera, same optical centre
    plane = [np.full((30, 40), 1.5 + 0.1 * i, np.float32) for i in range(len(frames))]
    path = write_rosbag(tmp_path / "b", frames, depth_images=plane, depth_intrinsics=Kd)
    rec = open_recording(f"{path}?depth_topic=/camera/depth/image_rect_raw&depth_registered=false",
                         depth_topic="/camera/aligned_depth_to_color/image_raw")  # keyword options override the spec
    f = rec[2]
    expected = register_depth(plane[2], Kd, K, None)
    np.testing.assert_allclose(f.depth, expected, atol=0.0006)
    np.testing.assert_allclose(f.depth[f.depth > 0], 1.7, atol=0.0006)  # a fronto-parallel plane stays at its depth
    assert (f.depth > 0).mean() > 0.2  # the coarser depth camera covers about a third of the finer colour pixels


def test_realsense_bag_layout_registers_depth_and_has_no_poses(tmp_path):
    """RealSense SDK layout: ROS 1, /device_0/sensor_*/..., depth (848x480-like, wider) not aligned to colour."""
    from regconsist_ros.sim.recordings.bag_writer import write_realsense_bag

    Kc = Intrinsics(100.0, 100.0, 39.0, 29.0, 80, 60)
    Kd = Intrinsics(80.0, 80.0, 42.0, 29.0, 84, 60)
    color = _frames(4, Kc)
    b = 0.05  # the colour camera 5 cm right of the depth camera: T_color_depth translates by -b
    T_cd = pose_from_tq([-b, 0, 0], [0, 0, 0, 1])
    depth = [np.full((60, 84), 2.0, np.float32) for _ in color]
    path = write_realsense_bag(tmp_path / "d435.bag", color, depth, Kd, T_cd, depth_unit=0.0001, depth_offset=-0.003)
    assert detect_layout(path) == "realsense"
    rec = open_recording(path)
    assert rec.layout == "realsense" and not rec.has_poses and len(rec) == 4 and rec.intrinsics == Kc
    np.testing.assert_allclose(rec.T_color_depth, T_cd, atol=1e-9)
    f = rec[0]
    assert f.T_world_cam is None
    np.testing.assert_array_equal(f.rgb, color[0].rgb)
    # plane at 2 m: depth pixel u_d sees x = (u_d - 42) / 80 * 2; in colour u_c = 39 + 100 (x - b) / 2
    # -> the plane covers colour columns >= ceil(39 + 50 (-42/40 - 0.05)) ... up to the depth image's right edge
    valid = f.depth > 0
    np.testing.assert_allclose(f.depth[valid], 2.0, atol=1e-4)  # Depth Units 0.1 mm honoured
    x_left, x_right = (0 - 0.5 - 42) / 80 * 2, (83 + 0.5 - 42) / 80 * 2  # the depth image's footprint on the plane
    u_lo, u_hi = 39 + 100 * (x_left - b) / 2, 39 + 100 * (x_right - b) / 2
    cols = np.flatnonzero(valid[30])
    assert cols.min() >= np.floor(u_lo) and cols.max() <= np.ceil(u_hi)
    assert cols.max() == min(79, int(np.floor(u_hi)))  # right: limited by the image, or by the depth's field
    # depth registered by hand from the same inputs agrees
    np.testing.assert_allclose(f.depth, register_depth(depth[0], Kd, Kc, T_cd), atol=1e-4)
    # told that depth is already aligned (recorded with align), a size mismatch is a counted drop, not a crash
    rec2 = open_recording(path, depth_registered="true")
    d = rec2.frame_or_drop(0)
    assert d.reason == "size_mismatch"


# ---- every layout through every data-taking path ---------------------------------------------------------


def _write(layout: str, frames, tmp_path):
    from regconsist_ros.sim.recordings.bag_writer import write_realsense_bag, write_rosbag
    from regconsist_ros.sim.recordings.replica import write_replica
    from regconsist_ros.sim.recordings.scenes7 import write_7scenes

    if layout == "tum":
        with TumWriter(tmp_path / "tum", K) as w:
            for f in frames:
                w.write(f)
        return tmp_path / "tum"
    if layout == "7scenes":
        return write_7scenes(tmp_path / "7s", frames)
    if layout == "replica":
        return write_replica(tmp_path / "replica", frames)
    if layout == "db3":
        return write_rosbag(tmp_path / "db3", frames)
    if layout == "mcap":
        return next(write_rosbag(tmp_path / "mcap", frames, storage="mcap").glob("*.mcap"))
    if layout == "ros1":
        return write_rosbag(tmp_path / "r.bag", frames, storage="ros1")
    if layout == "realsense":
        return write_realsense_bag(tmp_path / "rs.bag", frames, [f.depth for f in frames], K)
    raise AssertionError(layout)


@pytest.mark.parametrize("layout", ["tum", "7scenes", "replica", "db3", "mcap", "ros1", "realsense"])
def test_every_layout_loads_through_every_data_path_and_converts_to_tum(frames, tmp_path, layout):
    from regconsist_ros.learning.frame_sources import FrameLoadConfig, load_ordered_frames
    from regconsist_ros.learning.stores import load_frames, load_streams
    from regconsist_ros.online.camera_source import CameraSourceConfig, open_source
    from regconsist_ros.sim.recordings.convert import convert_recording
    from regconsist_ros.sim.source import SimConfig

    src = _write(layout, frames, tmp_path)
    if layout == "mcap":
        assert src.is_file()  # the .mcap file inside its rosbag2 directory is accepted too
    has_poses = layout != "realsense"
    # colour streams: embed, eval propagate / retrieve, pretrain of frame-pair and clip methods
    fr = load_ordered_frames(src, progress=False)
    assert len(fr) == len(frames) and fr.dropped == {}  # colour frames only, never depth images as colour
    if layout not in ("replica",):  # replica's colour is JPEG
        np.testing.assert_array_equal(fr.rgb, np.stack([f.rgb for f in frames]))
    store = load_streams([str(src)], FrameLoadConfig(stride=2), progress=False)
    assert store.summary()["frames"] == [3]
    # RGB-D frames with poses: correspond, pretrain of view-pair / geometric-flow methods, finetune
    if has_poses:
        got, rec = load_frames(src, progress=False)
        assert len(got) == len(frames)
        np.testing.assert_allclose(got[3].T_world_cam, frames[3].T_world_cam, atol=1e-6)
    else:
        with pytest.raises(PoseUnknownError, match="pose_source: odometry"):
            load_frames(src, progress=False)
        got, rec = load_frames(src, progress=False, poses=False)
        assert got[0].T_world_cam is None
    # the camera source's replay
    source, intr = open_source(CameraSourceConfig(source="recording", path=str(src)), SimConfig())
    assert len(source) == len(frames) and intr == K and source[4].depth.shape == (K.height, K.width)
    # convert -> TUM, read back
    out = convert_recording(rec, tmp_path / "out", progress=False)
    assert out["frames"] == len(frames) and out["poses"] == has_poses
    seq = read_tum(tmp_path / "out", require_poses=False)
    assert seq.intrinsics == K and len(seq) == len(frames) and seq.has_poses == has_poses
    tol = 0.5 / 5000 + (0.5 / 6553.5 if layout == "replica" else 0.0005) + 1e-6
    for a, b in zip(got, seq):
        _same(a, b, tol, rgb_exact=True, pose=has_poses)


def test_convert_a_colour_only_source_writes_rgb_txt_only(tmp_path, frames):
    from regconsist_ros.learning.frame_sources import load_ordered_frames
    from regconsist_ros.sim.recordings.convert import convert_recording

    d = tmp_path / "imgs"
    d.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f.rgb).save(d / f"img{i}.png")
    Image.fromarray((frames[0].depth * 1000).astype(np.uint16)).save(d / "depth0.png")  # not colour: skipped
    out = convert_recording(open_recording(d), tmp_path / "out", progress=False)
    assert out["frames"] == 5 and out["dropped"] == {"not_colour": 1} and not out["depth"]
    assert (tmp_path / "out" / "rgb.txt").is_file() and not (tmp_path / "out" / "depth.txt").exists()
    fr = load_ordered_frames(tmp_path / "out", progress=False)
    np.testing.assert_array_equal(fr.rgb, np.stack([f.rgb for f in frames]))


def test_real_redwood_frames_colour_folder_loads_and_depth_folder_is_refused(shared_data, tmp_path):
    """Real JPEG colour and 16-bit depth PNGs (Open3D's Redwood sample): the depth folder is never colour;
    the same frames in the 7-Scenes layout give 5 colour frames to pretraining, not 10."""
    from regconsist_ros.learning.frame_sources import load_ordered_frames
    from regconsist_ros.sim.recordings.scenes7 import write_7scenes
    from regconsist_ros.sim.sequences import load_rgb, load_uint16

    rgbd = shared_data / "redwood_open3d_5frames" / "examples" / "test_data" / "RGBD"
    assert len(load_ordered_frames(rgbd / "color", progress=False)) == 5
    with pytest.raises(ValueError, match="5 not_colour"):
        load_ordered_frames(rgbd / "depth", progress=False)
    Kp = Intrinsics(525.0, 525.0, 319.5, 239.5, 640, 480)
    real = [Frame(rgb=load_rgb(rgbd / "color" / f"{i:05d}.jpg"),
                  depth=(load_uint16(rgbd / "depth" / f"{i:05d}.png", "depth") / 1000.0).astype(np.float32),
                  intrinsics=Kp, T_world_cam=np.eye(4), stamp=i / 30) for i in range(5)]
    d = write_7scenes(tmp_path / "seq-01", real)
    fr = load_ordered_frames(d, progress=False)
    assert len(fr) == 5 and fr.dropped == {}
    rec = open_recording(d)
    np.testing.assert_allclose(rec[2].depth, real[2].depth, atol=1e-6)
