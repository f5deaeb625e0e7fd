"""What the registration node shows of its keyframes: poses for the path, back-projected points for the cloud."""
import numpy as np
import pytest

from regconsist_ros.online.keyframe_viz import KeyframeView, VizConfig, keyframe_points
from regconsist_ros.sim.frame import Frame, Intrinsics
from regconsist_ros.sim.poses import camera_from_yaw_pitch, invert


def _frame(i: int, W: int = 32, H: int = 24) -> Frame:
    rng = np.random.default_rng(i)
    depth = rng.uniform(0.5, 4.0, (H, W)).astype(np.float32)
    depth[rng.random((H, W)) < 0.2] = 0.0  # invalid pixels
    T = camera_from_yaw_pitch([0.3 * i, -0.2 * i, 1.0], yaw=0.4 * i, pitch=0.1)
    return Frame(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), depth, Intrinsics.from_fov(W, H, 80), T, stamp=10.0 + i)


def test_keyframe_points_project_back_onto_their_pixels_with_their_depth_and_colour():
    f = _frame(3)
    xyz, rgb = keyframe_points(f, stride=2)
    assert xyz.dtype == np.float32 and rgb.dtype == np.uint8 and xyz.shape == (len(rgb), 3)
    valid = f.depth[::2, ::2] > 0
    assert len(xyz) == valid.sum() > 0
    P = xyz.astype(np.float64) @ invert(f.T_world_cam)[:3, :3].T + invert(f.T_world_cam)[:3, 3]  # [N, 3] camera
    K = f.intrinsics
    u, v = K.fx * P[:, 0] / P[:, 2] + K.cx, K.fy * P[:, 1] / P[:, 2] + K.cy
    ui, vi = np.rint(u).astype(int), np.rint(v).astype(int)
    assert np.abs(u - ui).max() < 1e-3 and np.abs(v - vi).max() < 1e-3  # on pixel centres
    assert (ui % 2 == 0).all() and (vi % 2 == 0).all()  # every 2nd pixel from 0
    assert np.allclose(P[:, 2], f.depth[vi, ui], rtol=1e-5)
    assert (rgb == f.rgb[vi, ui]).all()
    # the camera's own position is not a point, and points are in the world (not camera) frame
    assert not np.allclose(xyz, P.astype(np.float32), atol=1e-2)


def test_path_keeps_the_newest_poses_oldest_first():
    view = KeyframeView(VizConfig(path=True, path_max=3))
    frames = [_frame(i) for i in range(5)]
    for f in frames:
        view.add(f)
    stamps, poses = view.path()
    assert stamps.tolist() == [12.0, 13.0, 14.0]
    assert np.array_equal(poses, np.stack([f.T_world_cam for f in frames[2:]]))
    v = view.version
    view.reset()
    assert view.version > v and len(view.path()[0]) == 0 and len(view.cloud()[0]) == 0


def test_cloud_joins_the_newest_keyframes_and_is_capped_evenly():
    frames = [_frame(i) for i in range(4)]
    view = KeyframeView(VizConfig(cloud=True, cloud_keyframes=2, cloud_stride=3))
    for f in frames:
        view.add(f)
    xyz, rgb, stamp = view.cloud()
    parts = [keyframe_points(f, 3) for f in frames[2:]]
    assert stamp == frames[-1].stamp
    assert np.array_equal(xyz, np.concatenate([p[0] for p in parts])) and np.array_equal(rgb, np.concatenate([p[1] for p in parts]))
    capped = KeyframeView(VizConfig(cloud=True, cloud_keyframes=2, cloud_stride=3, cloud_max_points=50))
    for f in frames:
        capped.add(f)
    cx, crgb, _ = capped.cloud()
    assert len(cx) == 50 and np.array_equal(cx[0], xyz[0]) and np.array_equal(cx[-1], xyz[-1])
    assert all((xyz == p).all(1).any() for p in cx)  # a subset of the full cloud
    assert len(KeyframeView(VizConfig(path=True)).cloud()[0]) == 0  # cloud off: frames are not even kept


def test_viz_config_is_off_by_default_and_checks_its_numbers():
    assert not VizConfig().any and VizConfig(path=True).any
    for name in ("every", "lines", "path_max", "cloud_keyframes", "cloud_stride", "cloud_max_points"):
        with pytest.raises(ValueError, match=f"VizConfig.{name} must be an integer >= 1"):
            VizConfig(**{name: 0})
    with pytest.raises(ValueError, match="a frame with a pose"):
        keyframe_points(Frame(np.zeros((2, 2, 3), np.uint8), np.ones((2, 2), np.float32), Intrinsics.from_fov(2, 2, 90), None))
