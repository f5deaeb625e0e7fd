"""RGB-D odometry (sim/odometry.py): known motion recovered on rendered frames, bad estimates dropped by reason.

Tolerances are about three times what was measured on these frames (embedded world, seed 0, spline
path 0.05 m per frame, 160x120; measured ATE 3.6 mm, largest per-frame RPE 6.5 mm / 0.09 deg).
"""
import dataclasses

import numpy as np
import pytest

from regconsist_ros.sim.frame import Frame, Intrinsics
from regconsist_ros.sim.odometry import (Odometry, OdometryConfig, depth_agreement, estimate_trajectory,
                                         relative_motion)
from regconsist_ros.sim.poses import pose_from_tq
from regconsist_ros.sim.trajectory_errors import ate, rpe

pytest.importorskip("open3d")


@pytest.fixture(scope="module")
def rendered():
    """Frames 0-9 of a slow spline path, and frame 45 (2 m and ~47 degrees away from frame 0)."""
    from regconsist_ros.sim.source import SimConfig, SimSource

    src = SimSource(SimConfig(seed=0, frames=60, width=160, height=120, trajectory="spline", step=0.05))
    return [src[i] for i in range(10)], src[45]


def test_config_rejects_bad_values_by_name():
    with pytest.raises(ValueError, match="method must be one of"):
        OdometryConfig(method="icp")
    with pytest.raises(ValueError, match=r"min_fitness must be a fraction in \[0, 1\], got 1.5"):
        OdometryConfig(min_fitness=1.5)
    with pytest.raises(ValueError, match="iterations must be 1 to 5 positive integers"):
        OdometryConfig(iterations=(10, 0))
    with pytest.raises(ValueError, match="max_translation must be a positive number"):
        OdometryConfig(max_translation=float("nan"))
    with pytest.raises(ValueError, match="reset_after must be an integer >= 0"):
        OdometryConfig(reset_after=-1)


def test_depth_agreement_of_a_plane_moved_along_the_axis():
    K = Intrinsics(50.0, 50.0, 31.5, 23.5, 64, 48)
    plane = np.full((48, 64), 2.0, np.float32)
    assert depth_agreement(plane, plane, K, np.eye(4), 0.05, 4.0) == (1.0, 0.0, 1.0, 64 * 48)
    T = pose_from_tq([0, 0, 0.1], [0, 0, 0, 1])  # every point 10 cm deeper in the destination camera
    fit, _, overlap, _ = depth_agreement(plane, plane, K, T, 0.05, 4.0)
    assert fit == 0.0 and overlap == 1.0  # further away, the plane shrinks: all land inside, none agrees
    fit, rmse, _, _ = depth_agreement(plane, plane, K, T, 0.2, 4.0)
    assert fit == 1.0 and rmse == pytest.approx(0.1, abs=1e-6)
    holes = plane.copy()
    holes[:, :32] = 0  # the destination has depth on its right half only
    fit, _, overlap, _ = depth_agreement(plane, holes, K, np.eye(4), 0.05, 4.0)
    assert fit == 1.0 and overlap == pytest.approx(0.5, abs=1e-9)
    side = pose_from_tq([0.5, 0, 0], [0, 0, 0, 1])  # shifted sideways by 0.5 m = 12.5 px at 2 m
    _, _, overlap, _ = depth_agreement(plane, plane, K, side, 0.05, 4.0)
    assert overlap == pytest.approx((64 - 12.5) / 64, abs=1.5 / 64)


def test_odometry_recovers_the_rendered_motion(rendered):
    frames, _ = rendered
    gt = [f.T_world_cam for f in frames]
    tr = estimate_trajectory(frames, OdometryConfig(), initial_pose=gt[0])
    assert all(p is not None for p in tr.poses) and tr.counts["accepted"] == len(frames)
    assert 1 < tr.counts["keyframes"] < len(frames)  # keyframe to frame, not frame to frame
    a, r = ate(tr.poses, gt), rpe(tr.poses, gt)
    moved = relative_motion(gt[0], gt[-1])[0]
    assert moved > 0.4  # the camera really moved (an identity estimate would be 0.4 m off at the end)
    assert a["rmse"] < 0.015, a
    assert r["trans_max"] < 0.02 and r["rot_max_deg"] < 0.5, r
    assert np.nanmin(tr.fitness) > 0.8


def test_frame_poses_in_the_input_are_ignored(rendered):
    frames, _ = rendered
    wrong = [dataclasses.replace(f, T_world_cam=np.eye(4)) for f in frames[:4]]
    est = estimate_trajectory(wrong).poses
    ref = estimate_trajectory([dataclasses.replace(f, T_world_cam=None) for f in frames[:4]]).poses
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(est, ref))  # (Open3D sums in parallel: not bit-exact)
    assert relative_motion(est[0], est[-1])[0] > 0.1


def _run(frames, bad, cfg=None):
    """Estimates of frames 0-2, ``bad`` in place of frame 3, then frames 4 and 5."""
    odo = Odometry(cfg)
    return [odo.update(f) for f in frames[:3]] + [odo.update(bad)] + [odo.update(f) for f in frames[4:6]], odo


def test_garbage_depth_is_dropped_and_tracking_continues(rendered):
    frames, _ = rendered
    rng = np.random.default_rng(0)
    bad = dataclasses.replace(frames[3], depth=rng.uniform(0.3, 6.0, frames[3].depth.shape).astype(np.float32))
    out, odo = _run(frames, bad)
    assert [e.ok for e in out] == [True, True, True, False, True, True]
    assert out[3].reason in ("fitness", "overlap") and out[3].pose is None and "min_" in out[3].detail
    assert odo.counts["fitness"] + odo.counts["overlap"] == 1 and odo.counts["accepted"] == 5
    gt = [f.T_world_cam for f in frames[:6]]
    est = [e.pose for e in out]
    assert ate(est, gt)["rmse"] < 0.015  # frames after the drop are still right


def test_a_teleport_is_dropped(rendered):
    frames, far = rendered
    out, odo = _run(frames, dataclasses.replace(far, stamp=frames[3].stamp))
    assert not out[3].ok and out[3].reason in ("overlap", "fitness", "rmse", "translation", "rotation"), out[3]
    assert out[4].ok and out[5].ok


def test_motion_limits_drop_by_translation_and_rotation(rendered):
    frames, _ = rendered  # about 0.05 m per frame
    odo = Odometry(OdometryConfig(max_translation=0.01))
    out = [odo.update(f) for f in frames[:4]]  # every later frame is aligned to frame 0: still well aligned
    assert [e.reason for e in out] == ["", "translation", "translation", "translation"]
    assert "max_translation" in out[1].detail and odo.counts["translation"] == 3
    # two frame periods apart (stamps): the limit is per period, so skipping frame 3 is not a teleport
    odo = Odometry(OdometryConfig(max_translation=0.08))
    assert all(odo.update(f).ok for f in frames[:3])
    assert relative_motion(frames[2].T_world_cam, frames[4].T_world_cam)[0] > 0.08
    assert odo.update(frames[4]).ok
    # a rotation limit below the camera's turn from frame 0 to 1 (about 0.26 deg)
    turned = relative_motion(frames[0].T_world_cam, frames[1].T_world_cam)[1]
    assert turned > 0.1
    odo = Odometry(OdometryConfig(max_rotation_deg=0.25 * turned, max_translation=1.0))
    odo.update(frames[0])
    assert odo.update(frames[1]).reason == "rotation"


def test_no_depth_is_dropped_and_a_reset_starts_a_new_segment(rendered):
    frames, _ = rendered
    empty = dataclasses.replace(frames[3], depth=np.zeros_like(frames[3].depth))
    odo = Odometry(OdometryConfig(reset_after=2))
    out = [odo.update(f) for f in (frames[0], frames[1], empty, empty, frames[4], frames[5])]
    assert [e.reason for e in out] == ["", "", "no_depth", "no_depth", "", ""]
    assert out[4].reset and out[4].keyframe and out[4].segment == 1 and not out[5].reset
    assert np.allclose(out[4].pose, out[1].pose)  # the new segment starts at the last accepted pose
    assert odo.counts["resets"] == 1 and odo.counts["no_depth"] == 2


def test_estimate_trajectory_counts_unreadable_inputs_and_segments(rendered):
    frames, _ = rendered
    empty = dataclasses.replace(frames[2], depth=np.zeros_like(frames[2].depth))
    tr = estimate_trajectory([frames[0], "not a frame", empty, frames[3], frames[4], frames[5]],
                             OdometryConfig(reset_after=1))
    assert tr.reasons == ["", "unreadable", "no_depth", "", "", ""]
    assert list(tr.segments) == [0, -1, -1, 1, 1, 1] and tr.largest_segment() == 1
    assert tr.dropped(keep_segment=1) == {"unreadable": 1, "odometry.no_depth": 1, "odometry.segment": 1}


def test_frames_wider_than_the_odometry_width_are_downsampled(rendered):
    frames, _ = rendered
    full = estimate_trajectory(frames[:3], OdometryConfig(width=0))
    half = estimate_trajectory(frames[:3], OdometryConfig(width=80))
    gt = [f.T_world_cam for f in frames[:3]]
    for tr in (full, half):
        assert all(p is not None for p in tr.poses)
        assert rpe(tr.poses, gt)["trans_max"] < 0.02


def test_the_first_frame_is_the_world():
    K = Intrinsics(50.0, 50.0, 15.5, 11.5, 32, 24)
    f = Frame(np.zeros((24, 32, 3), np.uint8), np.full((24, 32), 1.0, np.float32), K, None)
    e = Odometry().update(f)
    assert e.ok and e.keyframe and np.allclose(e.pose, np.eye(4))  # the first frame is the world
