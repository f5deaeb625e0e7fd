"""Depth registered to colour (sim/depth_register.py), checked against scenes solved by hand.

Two pinhole cameras with parallel axes and a baseline b along x (the colour camera at x = +b in the
depth camera's frame, so T_color_depth translates by -b): a point at depth Z shifts by f b / Z
pixels to the left in the colour image. Expected images are ray-cast in the colour camera; a colour
pixel has depth only where the surface it sees is also seen by the depth camera (not occluded there).
"""
import numpy as np
import pytest

from regconsist_ros.sim.depth_register import register_depth
from regconsist_ros.sim.frame import Intrinsics
from regconsist_ros.sim.poses import pose_from_tq

F, W, H = 100.0, 80, 60
K = Intrinsics(F, F, 39.0, 29.0, W, H)  # integer principal point: shifts f b / Z are whole pixels
B = 0.1  # baseline (m)
T_CD = pose_from_tq([-B, 0, 0], [0, 0, 0, 1])  # depth optical frame -> colour optical frame
Z_PLANE, Z_BOX = 2.0, 1.0  # shifts: f b / Z = 5 px and 10 px
BOX_X, BOX_Y = (-0.2, 0.3), (-0.1, 0.1)  # the box's front face (world = depth camera frame); both cameras inside its x span


def _scene_depth(cam_x: float) -> np.ndarray:
    """Ray-cast depth [H, W] of a camera at (cam_x, 0, 0) looking along +z: box front face, else the plane."""
    u = np.arange(W)[None, :] - K.cx
    v = np.arange(H)[:, None] - K.cy
    x_box = cam_x + u / F * Z_BOX  # world x where the ray meets the box plane
    y_box = v / F * Z_BOX
    on_box = (x_box >= BOX_X[0]) & (x_box < BOX_X[1]) & (y_box >= BOX_Y[0]) & (y_box < BOX_Y[1])
    return np.where(on_box, Z_BOX, Z_PLANE).astype(np.float32) * np.ones((H, W), np.float32)


def test_plane_shifts_by_f_b_over_z_and_leaves_the_border_invalid():
    depth = np.full((H, W), Z_PLANE, np.float32)
    reg = register_depth(depth, K, K, T_CD)
    shift = int(round(F * B / Z_PLANE))  # 5 px
    assert reg.dtype == np.float32 and reg.shape == (H, W)
    np.testing.assert_array_equal(reg[:, : W - shift], Z_PLANE)  # colour column u sees depth column u + 5
    np.testing.assert_array_equal(reg[:, W - shift:], 0.0)  # the strip the depth camera does not see: holes
    # identity extrinsics and equal cameras: depth comes back unchanged
    np.testing.assert_array_equal(register_depth(depth, K, K, None), depth)


def test_box_in_front_of_a_plane_occludes_by_z_buffer_and_disocclusions_stay_invalid():
    depth = _scene_depth(0.0)  # what the depth camera sees
    reg = register_depth(depth, K, K, T_CD)
    seen = _scene_depth(B)  # what the colour camera sees
    # expected: the colour camera's surface depth where the depth camera sees that surface point too
    u = np.arange(W)[None, :] - K.cx
    x_plane_world = B + u / F * Z_PLANE  # the plane point a colour ray meets
    u_in_depth = np.round(x_plane_world / Z_PLANE * F + K.cx).astype(int) * np.ones((H, 1), int)  # [H, W]
    rows = np.arange(H)[:, None] * np.ones((1, W), int)
    visible_in_depth = (u_in_depth < W) & (depth[rows, np.clip(u_in_depth, 0, W - 1)] == Z_PLANE)
    expected = np.where(seen == Z_BOX, Z_BOX, np.where(visible_in_depth, Z_PLANE, 0.0))
    np.testing.assert_array_equal(reg, expected)
    # the analytic columns, on a row through the box: the box spans depth columns [19, 69); in colour it is
    # at [9, 59); plane pixels of depth columns [14, 19) land on colour [9, 14), under the box: the z-buffer
    # keeps the box there; colour columns [59, 64) see plane hidden from the depth camera: holes
    row = int(K.cy)
    assert np.all(depth[row, 19:69] == Z_BOX) and depth[row, 18] == Z_PLANE and depth[row, 69] == Z_PLANE
    np.testing.assert_array_equal(reg[row, 9:59], Z_BOX)  # includes the occluded plane at 9..13
    np.testing.assert_array_equal(reg[row, 59:64], 0.0)  # disocclusion
    np.testing.assert_array_equal(reg[row, 64:75], Z_PLANE)
    np.testing.assert_array_equal(reg[row, 75:], 0.0)  # right border
    assert np.all(reg[row, :9] == Z_PLANE)


def test_finer_colour_camera_leaves_gaps_unless_footprints_are_filled():
    depth = np.full((H, W), Z_PLANE, np.float32)
    K2 = K.scaled(2 * W, 2 * H)  # the same camera at twice the resolution
    sparse = register_depth(depth, K, K2, None)
    frac = float((sparse > 0).mean())
    assert 0.2 < frac < 0.3  # about one colour pixel in four receives a depth pixel
    dense = register_depth(depth, K, K2, None, fill=True)
    np.testing.assert_array_equal(dense, Z_PLANE)  # every colour pixel lies in some depth pixel's footprint
    # a box with filled footprints still occludes the plane (z-buffer within footprints)
    reg = register_depth(_scene_depth(0.0), K, K2, None, fill=True)
    assert set(np.unique(reg)) == {Z_BOX, Z_PLANE}
    np.testing.assert_array_equal(reg[::2, ::2], _scene_depth(0.0))


def test_rotated_colour_camera_sees_the_plane_at_ray_plane_depths():
    """A colour camera rotated 5 degrees about y: depth = ray-plane intersection z, up to half a pixel's gradient."""
    depth = np.full((H, W), Z_PLANE, np.float32)
    a = np.radians(5.0)
    T = pose_from_tq([0, 0, 0], [0, np.sin(a / 2), 0, np.cos(a / 2)])  # R_y(a): depth -> colour frame
    reg = register_depth(depth, K, K, T)
    # the plane z_d = Z in the colour frame: n . p = Z with n = R e_z; along the colour ray r: z_c = Z / (n . r)
    n = T[:3, :3] @ np.array([0.0, 0.0, 1.0])
    u, v = np.meshgrid(np.arange(W) - K.cx, np.arange(H) - K.cy)
    r = np.stack([u / F, v / F, np.ones_like(u, float)], axis=-1)  # [H, W, 3], z = 1
    expected = Z_PLANE / (r @ n)
    valid = reg > 0
    assert valid.mean() > 0.8
    grad = np.abs(np.gradient(expected, axis=1)).max()
    assert np.abs(reg[valid] - expected[valid]).max() <= 0.6 * grad + 1e-6
    assert not valid[:, :2].any() or not valid[:, -2:].any()  # one border lost to the rotation


def test_invalid_depth_stays_invalid_and_bad_inputs_raise():
    depth = np.full((H, W), Z_PLANE, np.float32)
    depth[10:20, 30:40] = 0.0
    depth[0, 0], depth[0, 1], depth[0, 2] = np.nan, np.inf, -1.0
    reg = register_depth(depth, K, K, None)
    np.testing.assert_array_equal(reg[10:20, 30:40], 0.0)
    np.testing.assert_array_equal(reg[0, :3], 0.0)
    assert np.isfinite(reg).all()
    with pytest.raises(ValueError, match="depth intrinsics"):
        register_depth(depth[:, :-1], K, K)
    with pytest.raises(ValueError, match="T_color_depth"):
        register_depth(depth, K, K, np.diag([2.0, 1, 1, 1]))
