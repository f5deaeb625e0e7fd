"""Image / camera-info / pose decoding of ROS-like message fields (regconsist_ros/online/decode.py)."""
from __future__ import annotations

import array

import numpy as np
import pytest

from regconsist_ros.online.decode import (camera_info_fields, check_sizes, decode_color, decode_depth, encode_color,
                                          encode_depth, intrinsics_from_camera_info, pose_fields, pose_from_fields)
from regconsist_ros.online.errors import BadInput
from regconsist_ros.sim.frame import Intrinsics
from regconsist_ros.sim.poses import pose_from_tq

RNG = np.random.default_rng(0)
H, W = 5, 7
RGB = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)


def _pack(px: np.ndarray, pad: int = 0) -> tuple[int, bytes]:
    """[H, W, C] uint8 pixels -> (step, bytes) with ``pad`` garbage bytes after every row."""
    rows = px.reshape(px.shape[0], -1)
    if pad:
        rows = np.concatenate([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)], 1)
    return rows.shape[1], rows.tobytes()


def _reason(fn, *a, **k) -> str:
    with pytest.raises(BadInput) as e:
        fn(*a, **k)
    assert isinstance(e.value, ValueError) and e.value.message
    return e.value.reason


ALPHA = RNG.integers(0, 256, (H, W, 1), dtype=np.uint8)
RAW = {
    "rgb8": RGB,
    "bgr8": RGB[..., ::-1],
    "rgba8": np.concatenate([RGB, ALPHA], 2),
    "bgra8": np.concatenate([RGB[..., ::-1], ALPHA], 2),
}


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("enc", sorted(RAW))
def test_color_encodings_and_row_padding(enc, pad):
    step, data = _pack(np.ascontiguousarray(RAW[enc]), pad)
    out = decode_color(W, H, enc, step, data)
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    np.testing.assert_array_equal(out, RGB)


@pytest.mark.parametrize("pad", [0, 2])
def test_mono8_replicated(pad):
    g = RGB[..., :1]
    step, data = _pack(np.ascontiguousarray(g), pad)
    out = decode_color(W, H, "mono8", step, data)
    assert out.shape == (H, W, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], g[..., 0])


def test_encode_color_round_trip():
    msg = encode_color(RGB)
    assert msg["encoding"] == "rgb8" and msg["step"] == 3 * W and msg["is_bigendian"] == 0
    assert (msg["width"], msg["height"]) == (W, H) and isinstance(msg["data"], bytes)
    np.testing.assert_array_equal(decode_color(**msg), RGB)


@pytest.mark.parametrize("kind", ["bytearray", "memoryview", "ndarray", "array"])
def test_mutable_buffers_are_not_aliased(kind):
    step, data = _pack(RGB)
    buf = bytearray(data)
    src = {"bytearray": buf, "memoryview": memoryview(buf), "ndarray": np.frombuffer(buf, np.uint8),
           "array": array.array("B", data)}[kind]
    out = decode_color(W, H, "rgb8", step, src)
    np.testing.assert_array_equal(out, RGB)
    if kind == "array":
        src[0] ^= 0xFF
    else:
        buf[0] ^= 0xFF  # the ROS layer may reuse its buffer for the next message
    assert out[0, 0, 0] == RGB[0, 0, 0]
    assert out.flags.writeable


def test_immutable_bytes_decoded_without_copy():
    step, data = _pack(RGB)
    out = decode_color(W, H, "rgb8", step, data)
    assert np.shares_memory(out, np.frombuffer(data, np.uint8)) and not out.flags.writeable
    out2 = decode_color(W, H, "bgr8", step, data)  # channel swap needs a fresh array
    assert out2.flags.writeable and not np.shares_memory(out2, np.frombuffer(data, np.uint8))


def test_color_bad_inputs():
    step, data = _pack(RGB)
    assert _reason(decode_color, W, H, "yuv422", step, data) == "encoding"
    assert _reason(decode_color, W, H, "rgb8", 3 * W - 1, data) == "step"  # step shorter than a row
    assert _reason(decode_color, W, H, "rgb8", step, data[:-1]) == "step"  # data shorter than step * height
    assert _reason(decode_color, W, H, "rgba8", step, data) == "step"  # 4 bytes/pixel need a longer row
    assert _reason(decode_color, 0, H, "rgb8", step, data) == "size"
    assert _reason(encode_color, RGB[..., :2]) == "shape"


DEPTH = RNG.uniform(0.3, 8.0, (H, W)).astype(np.float32)
DEPTH[0, 0] = 0.0  # no return


@pytest.mark.parametrize("enc", ["16UC1", "mono16"])
@pytest.mark.parametrize("unit", [0.001, 0.0001])
def test_depth_16bit_round_trip(enc, unit):
    d = np.minimum(DEPTH, 65535 * unit)  # 0.1 mm units reach only 6.5535 m
    msg = encode_depth(d, "16UC1", depth_unit=unit)
    msg["encoding"] = enc
    out = decode_depth(**msg, depth_unit=unit)
    assert out.dtype == np.float32 and out.shape == (H, W)
    assert out[0, 0] == 0.0
    assert np.abs(out - d).max() <= unit / 2 + 1e-6


def test_depth_32f_round_trip_and_invalid_values():
    d = DEPTH.copy()
    d[1, 1], d[1, 2], d[1, 3], d[1, 4] = np.nan, -1.0, np.inf, -np.inf
    msg = encode_depth(d, "32FC1")
    out = decode_depth(**msg)
    assert np.all(np.isfinite(out)) and np.all(out >= 0)
    assert out[1, 1] == out[1, 2] == out[1, 3] == out[1, 4] == 0.0  # invalid -> 0 on the wire and back
    keep = np.ones((H, W), bool)
    keep[1, 1:5] = False
    np.testing.assert_array_equal(out[keep], d[keep])
    # raw 32FC1 from a driver that publishes NaN/negative: decoding maps them to 0
    raw = d.astype("<f4")
    out = decode_depth(W, H, "32FC1", 4 * W, raw.tobytes())
    assert out[1, 1] == out[1, 2] == out[1, 3] == out[1, 4] == 0.0
    np.testing.assert_array_equal(out[keep], d[keep])


def test_depth_beyond_a_kilometre_is_no_return():
    from regconsist_ros.online.decode import MAX_DEPTH_M

    d = DEPTH.copy()
    d[0, :3] = (MAX_DEPTH_M * 0.999, MAX_DEPTH_M * 1.01, 1e30)
    out = decode_depth(W, H, "32FC1", 4 * W, d.astype("<f4").tobytes())
    assert out[0, 0] == np.float32(MAX_DEPTH_M * 0.999) and out[0, 1] == out[0, 2] == 0.0
    with pytest.raises(BadInput) as e:  # all of it beyond: no valid pixel
        decode_depth(W, H, "32FC1", 4 * W, np.full((H, W), 1e30, "<f4").tobytes())
    assert e.value.reason == "depth_invalid"
    raw = np.full((H, W), 2000, "<u2")  # 16-bit steps of 1 m: 2 km
    raw[0, 0] = 900
    out = decode_depth(W, H, "16UC1", 2 * W, raw.tobytes(), depth_unit=1.0, min_valid_fraction=0.0)
    assert out[0, 0] == 900.0 and np.count_nonzero(out) == 1


@pytest.mark.parametrize("enc,dt,scale", [("16UC1", "u2", 1000.0), ("32FC1", "f4", 1.0)])
@pytest.mark.parametrize("pad", [0, 6])
def test_depth_big_endian_and_padding(enc, dt, scale, pad):
    vals = np.rint(DEPTH * 1000) / 1000  # exactly representable in mm
    raw = (vals * scale).astype(">" + dt)
    step, data = _pack(raw.view(np.uint8).reshape(H, -1)[..., None], pad)
    out = decode_depth(W, H, enc, step, data, is_bigendian=1)
    np.testing.assert_allclose(out, vals, atol=1e-6)
    wrong = decode_depth(W, H, enc, step, data, is_bigendian=0, min_valid_fraction=0.0)
    assert not np.allclose(wrong, vals, atol=1e-3)  # the flag matters


def test_encode_depth_16bit_clipping_and_invalid():
    d = np.array([[0.0, -2.0, np.nan, 70.0, 1.2344]], np.float32)
    msg = encode_depth(d, "16UC1")
    q = np.frombuffer(msg["data"], "<u2")
    assert q.tolist() == [0, 0, 0, 65535, 1234]


def test_depth_invalid_threshold():
    d = np.zeros((10, 10), np.float32)
    d.flat[:5] = 1.0  # 5 % valid
    msg = encode_depth(d, "16UC1")
    assert decode_depth(**msg).max() == pytest.approx(1.0)  # default threshold 1 %
    assert _reason(decode_depth, **msg, min_valid_fraction=0.06) == "depth_invalid"
    assert decode_depth(**msg, min_valid_fraction=0.05).shape == (10, 10)  # exactly at the threshold
    assert _reason(decode_depth, **encode_depth(np.zeros((10, 10), np.float32), "32FC1")) == "depth_invalid"
    nan = np.full((10, 10), np.nan, np.float32)
    assert _reason(decode_depth, 10, 10, "32FC1", 40, nan.tobytes()) == "depth_invalid"


def test_depth_bad_inputs():
    msg = encode_depth(DEPTH, "16UC1")
    assert _reason(decode_depth, **{**msg, "encoding": "8UC1"}) == "encoding"
    assert _reason(decode_depth, **{**msg, "step": 2 * W - 2}) == "step"
    assert _reason(decode_depth, **{**msg, "data": msg["data"][: 2 * W * (H - 1)]}) == "step"
    assert _reason(encode_depth, DEPTH, "8UC1") == "encoding"
    with pytest.raises(ValueError):
        decode_depth(**msg, depth_unit=0.0)


def test_check_sizes():
    check_sizes(RGB, DEPTH)
    assert _reason(check_sizes, RGB, DEPTH[:, :-1]) == "size_mismatch"


INTR = Intrinsics(520.5, 519.25, 319.4, 241.1, 640, 480)


def test_camera_info_round_trip():
    f = camera_info_fields(INTR)
    assert len(f["k"]) == 9 and len(f["p"]) == 12 and f["r"] == [1.0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert f["d"] == [0.0] * 5 and f["distortion_model"] == "plumb_bob"
    assert np.allclose(np.reshape(f["p"], (3, 4))[:, :3], INTR.K)
    assert intrinsics_from_camera_info(f["width"], f["height"], f["k"], f["distortion_model"], f["d"]) == INTR


def test_camera_info_distortion_models():
    k = camera_info_fields(INTR)["k"]
    assert intrinsics_from_camera_info(640, 480, k, "plumb_bob", [0.1, -0.05, 0, 0, 0.01]) == INTR  # ignored
    assert intrinsics_from_camera_info(640, 480, k, "rational_polynomial", [0.1] * 8) == INTR
    assert intrinsics_from_camera_info(640, 480, k, "equidistant", [0.0] * 4) == INTR  # zero: harmless
    assert _reason(intrinsics_from_camera_info, 640, 480, k, "equidistant", [0.1, 0, 0, 0]) == "camera_info"
    assert _reason(intrinsics_from_camera_info, 640, 480, k, "plumb_bob", [np.nan] * 5) == "camera_info"


@pytest.mark.parametrize("case", ["zero_fx", "neg_fy", "nan", "inf", "len8", "zero_width", "skew", "row3", "all_zero",
                                  "fx_1e-12", "fy_1e12"])
def test_camera_info_rejected(case):
    k = list(camera_info_fields(INTR)["k"])
    w, h = 640, 480
    if case == "zero_fx":
        k[0] = 0.0
    elif case == "neg_fy":
        k[4] = -500.0
    elif case == "nan":
        k[2] = float("nan")
    elif case == "inf":
        k[4] = float("inf")
    elif case == "len8":
        k = k[:8]
    elif case == "zero_width":
        w = 0
    elif case == "skew":
        k[1] = 2.0
    elif case == "row3":
        k[8] = 0.0
    elif case == "all_zero":
        k = [0.0] * 9  # ROS: uncalibrated camera
    elif case == "fx_1e-12":
        k[0] = 1e-12  # a 180-degree pinhole: focal lengths in metres, not pixels
    elif case == "fy_1e12":
        k[4] = 1e12  # a 0-degree field of view
    assert _reason(intrinsics_from_camera_info, w, h, k) == "camera_info"


def test_camera_info_field_of_view_bounds():
    """Focal lengths are taken while their pinhole field of view lies in FOV_DEG (0.5-179.5 deg) per axis."""
    import math

    from regconsist_ros.online.decode import FOV_DEG

    for fov in (FOV_DEG[0] + 0.01, 30.0, 150.0, FOV_DEG[1] - 0.01):
        f = 640 / (2 * math.tan(math.radians(fov) / 2))
        assert intrinsics_from_camera_info(640, 480, [f, 0, 320, 0, 400, 240, 0, 0, 1]).fx == f
    for fov in (FOV_DEG[0] - 0.01, FOV_DEG[1] + 0.01):
        f = 640 / (2 * math.tan(math.radians(fov) / 2))
        with pytest.raises(BadInput, match="field of view"):
            intrinsics_from_camera_info(640, 480, [f, 0, 320, 0, 400, 240, 0, 0, 1])


def _random_pose(rng) -> np.ndarray:
    q = rng.normal(size=4)
    return pose_from_tq(rng.normal(size=3), q / np.linalg.norm(q))


def test_pose_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(20):
        T = _random_pose(rng)
        xyz, xyzw = pose_fields(T)
        assert len(xyz) == 3 and len(xyzw) == 4 and all(isinstance(v, float) for v in xyz + xyzw)
        assert xyzw[3] >= 0
        np.testing.assert_allclose(pose_from_fields(xyz, xyzw), T, atol=1e-12)


def test_pose_quaternion_norm():
    q = np.array([0.1, -0.2, 0.3, 0.9])
    q /= np.linalg.norm(q)
    T = pose_from_fields([1, 2, 3], q)
    near = pose_from_fields([1, 2, 3], q * (1 + 5e-4))  # rounding: renormalised
    np.testing.assert_allclose(near, T, atol=1e-12)
    assert np.allclose(near[:3, :3].T @ near[:3, :3], np.eye(3), atol=1e-12)
    assert _reason(pose_from_fields, [1, 2, 3], q * 1.01) == "pose_non_rigid"
    assert _reason(pose_from_fields, [1, 2, 3], q * 0.99) == "pose_non_rigid"
    assert _reason(pose_from_fields, [1, 2, 3], [0, 0, 0, 0]) == "pose_non_rigid"


def test_pose_bad_values():
    q = [0.0, 0.0, 0.0, 1.0]
    assert _reason(pose_from_fields, [np.nan, 0, 0], q) == "pose_non_finite"
    assert _reason(pose_from_fields, [0, 0, 0], [0, 0, np.inf, 1]) == "pose_non_finite"
    assert _reason(pose_from_fields, [0, 0], q) == "pose_shape"
    assert _reason(pose_from_fields, [1e30, 0, 0], q) == "pose_out_of_range"  # finite, but not on this planet
    assert _reason(pose_from_fields, [0, 0, -2e8], q) == "pose_out_of_range"
    np.testing.assert_allclose(pose_from_fields([4.5e5, 5.4e6, 30.0], q)[:3, 3], [4.5e5, 5.4e6, 30.0])  # UTM is fine
    T = np.eye(4)
    T[:3, :3] *= 1.1
    assert _reason(pose_fields, T) == "pose_non_rigid"
    T = np.eye(4)
    T[0, 3] = np.nan
    assert _reason(pose_fields, T) == "pose_non_finite"


def _frame_fields(rgb=RGB, depth_m=None, T=None):
    intr = Intrinsics.from_fov(W, H, 90)
    depth_m = np.full((H, W), 2.0, np.float32) if depth_m is None else depth_m
    pose = pose_fields(np.eye(4) if T is None else T)
    return encode_color(rgb), encode_depth(depth_m), camera_info_fields(intr), pose


def test_frame_from_fields_round_trips_the_encoders():
    from regconsist_ros.online.decode import frame_from_fields

    T = pose_from_tq([0.5, -1.0, 2.0], [0.0, 0.0, np.sin(0.3), np.cos(0.3)])
    color, depth, info, pose = _frame_fields(T=T)
    f = frame_from_fields(3.5, color, depth, info, pose)
    assert f.stamp == 3.5 and np.array_equal(f.rgb, RGB) and np.allclose(f.depth, 2.0)
    assert (f.intrinsics.width, f.intrinsics.height) == (W, H) and np.allclose(f.T_world_cam, T)
    assert f.frame_id == "camera_color_optical_frame"
    assert frame_from_fields(0.0, color, depth, info, pose, frame_id="cam").frame_id == "cam"


def test_frame_from_fields_reasons_in_check_order():
    from regconsist_ros.online.decode import frame_from_fields

    color, depth, info, pose = _frame_fields()
    small = encode_depth(np.full((H - 1, W), 2.0, np.float32))
    other = camera_info_fields(Intrinsics.from_fov(W + 1, H, 90))
    skew = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 2.0))
    assert _reason(frame_from_fields, 0.0, {**color, "encoding": "yuv422"}, depth, info, skew) == "encoding"
    assert _reason(frame_from_fields, 0.0, color, small, None, skew) == "size_mismatch"  # sizes before camera_info
    assert _reason(frame_from_fields, 0.0, color, depth, None, skew) == "camera_info"
    assert _reason(frame_from_fields, 0.0, color, depth, {**info, "k": [0.0] * 9}, skew) == "camera_info"
    assert _reason(frame_from_fields, 0.0, color, depth, other, skew) == "size_mismatch"
    assert _reason(frame_from_fields, 0.0, color, depth, info, skew) == "pose_non_rigid"
    assert _reason(frame_from_fields, 0.0, color, depth, info, np.eye(4)) == "pose_shape"
