"""The registration core with depth not aligned to colour (``depth_registered: false``)."""
from __future__ import annotations

import numpy as np
import pytest

from regconsist_ros.online.decode import camera_info_fields, encode_color, encode_depth, pose_fields
from regconsist_ros.online.registrar import Registrar, RegistrationNodeConfig
from regconsist_ros.sim.frame import Intrinsics

KC = Intrinsics(100.0, 100.0, 39.0, 29.0, 80, 60)  # colour camera
KD = Intrinsics(100.0, 100.0, 39.0, 29.0, 80, 60)  # depth camera: same, 10 cm to the left of colour


def _inputs(z: float = 2.0):
    rgb = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    depth = np.full((60, 80), z, np.float32)
    return encode_color(rgb), encode_depth(depth, "16UC1"), camera_info_fields(KC), camera_info_fields(KD), pose_fields(np.eye(4))


def test_unaligned_depth_is_registered_to_colour_before_the_frame_is_built():
    color, depth, info, dinfo, pose = _inputs()
    reg = Registrar(RegistrationNodeConfig(depth_registered=False, depth_to_color="-0.1,0,0,0,0,0,1"))
    f = reg.frame(1.0, color, depth, info, pose, dinfo)
    assert f is not None
    shift = int(round(100 * 0.1 / 2.0))  # f b / Z = 5 px
    np.testing.assert_allclose(f.depth[:, : 80 - shift], 2.0, atol=1e-3)
    np.testing.assert_array_equal(f.depth[:, 80 - shift:], 0.0)  # not seen by the depth camera: invalid
    # the aligned path (default) takes depth as it is
    g = Registrar().frame(1.0, color, depth, info, pose)
    np.testing.assert_allclose(g.depth, 2.0, atol=1e-3)


def test_missing_depth_camera_info_is_a_counted_drop_and_bad_extrinsics_a_config_error():
    color, depth, info, _, pose = _inputs()
    reg = Registrar(RegistrationNodeConfig(depth_registered=False))
    assert reg.frame(1.0, color, depth, info, pose, None) is None
    assert reg.counter.snapshot()["dropped"] == {"depth_info": 1}
    with pytest.raises(ValueError, match="depth_to_color"):
        RegistrationNodeConfig(depth_to_color="1,2,3")
