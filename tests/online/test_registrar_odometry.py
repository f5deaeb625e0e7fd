"""``pose_source: odometry`` in the registration core (online/odometry_poses.py via Registrar): a pose-less
stream is registered with odometry poses; bad estimates are counted by reason; a reset forgets keyframes."""
from __future__ import annotations

import numpy as np
import pytest

from regconsist_ros.online.decode import camera_info_fields, encode_color, encode_depth
from regconsist_ros.online.keyframes import KeyframeConfig
from regconsist_ros.online.registrar import Registrar, RegistrationNodeConfig
from regconsist_ros.registration.pairs import PairSelectionConfig
from regconsist_ros.sim.odometry import OdometryConfig, relative_motion
from regconsist_ros.sim.poses import invert

pytest.importorskip("open3d")


@pytest.fixture(scope="module")
def frames():
    from regconsist_ros.sim.source import SimConfig, SimSource

    return list(SimSource(SimConfig(seed=0, frames=12, width=160, height=120, trajectory="spline", step=0.05)))


def _fields(f, depth=None):
    """Matched-set fields without a pose (the stream has none)."""
    return (f.stamp, encode_color(f.rgb), encode_depth(f.depth if depth is None else depth, "32FC1"),
            camera_info_fields(f.intrinsics), None)


def _sparse(depth):
    """Depth on 5% of the pixels: enough for the decoder (1%), too little for odometry (min_valid_depth 10%)."""
    out = np.zeros_like(depth)
    out[: depth.shape[0] // 20] = depth[: depth.shape[0] // 20]
    return out


def _registrar(**odo):
    return Registrar(RegistrationNodeConfig(pose_source="odometry"),
                     KeyframeConfig(min_translation=0.1, min_rotation_deg=10.0, candidates=4),
                     PairSelectionConfig(iou_low=0.3, iou_high=0.95), odom=OdometryConfig(**odo))


def test_a_poseless_stream_is_registered_with_odometry_poses(frames):
    reg = _registrar()
    out, pairs = [], []
    for f in frames:
        frame, _, ps = reg.register(*_fields(f))
        assert frame is not None and frame.meta["pose_source"] == "odometry"
        out.append(frame)
        pairs += ps
    T0 = frames[0].T_world_cam
    for f, g in zip(out, frames):  # the world is the first camera
        dt, dr = relative_motion(invert(T0) @ g.T_world_cam, f.T_world_cam)
        assert dt < 0.02 and dr < 0.5
    assert pairs and all(p["src"].stamp < p["dst"].stamp for p in pairs)
    values, level = reg.status()
    assert level == "ok" and values["frames_registered"] == len(frames) and values["dropped_total"] == 0
    assert values["odometry.accepted"] == len(frames) and values["odometry.resets"] == 0
    assert values["odometry.keyframes"] >= 2 and values["odometry.ms"]["n"] == len(frames)


def test_bad_estimates_are_dropped_by_reason_and_counted_once(frames):
    reg = _registrar()
    rng = np.random.default_rng(1)
    for i, f in enumerate(frames[:6]):
        depth = rng.uniform(0.3, 6.0, f.depth.shape).astype(np.float32) if i == 3 else None
        frame = reg.frame(*_fields(f, depth))
        assert (frame is None) == (i == 3)
    assert reg.frame(*_fields(frames[6], _sparse(frames[6].depth))) is None
    values, _ = reg.status()
    assert values["dropped"] == {"odometry.fitness": 1, "odometry.no_depth": 1}
    assert values["frames_received"] == 7 and values["frames_registered"] == 5


def test_a_reset_forgets_the_keyframes_of_the_old_segment(frames):
    reg = _registrar(reset_after=1)
    for f in frames[:4]:
        reg.register(*_fields(f))
    kept = reg.status()[0]["keyframes_kept"]
    assert kept >= 1
    assert reg.frame(*_fields(frames[4], _sparse(frames[4].depth))) is None
    frame, is_kf, pairs = reg.register(*_fields(frames[5]))
    values = reg.status()[0]
    assert frame.meta["odometry_segment"] == 1 and values["odometry.resets"] == 1
    assert is_kf and not pairs and values["keyframes_kept"] == 1  # only the new segment's first keyframe
    assert values["builder.keyframes"] == kept + 1  # counts go on


def test_pose_source_odometry_is_a_valid_setting_and_others_are_not():
    assert RegistrationNodeConfig(pose_source="odometry").pose_source == "odometry"
    reg = Registrar(RegistrationNodeConfig())
    assert reg.odometry is None and "odometry.accepted" not in reg.status()[0]
