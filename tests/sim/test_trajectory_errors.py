"""ATE and RPE (sim/trajectory_errors.py) on hand-computed cases, as the TUM RGB-D benchmark defines them."""
import math

import numpy as np
import pytest

from regconsist_ros.sim.poses import pose_from_tq
from regconsist_ros.sim.trajectory_errors import align_rigid, ate, rpe


def _rot_z(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return pose_from_tq([0, 0, 0], [0, 0, math.sin(a / 2), math.cos(a / 2)])


def _translate(x, y=0.0, z=0.0) -> np.ndarray:
    return pose_from_tq([x, y, z], [0, 0, 0, 1])


def _curvy(n: int = 12) -> list:
    """A trajectory that turns and climbs (not planar, so a rigid alignment is fully determined)."""
    return [_translate(0.3 * i, 0.05 * i * i, 0.02 * i) @ _rot_z(7.0 * i) for i in range(n)]


def test_a_rigid_change_of_world_gives_zero_ate_and_zero_rpe():
    gt = _curvy()
    G = pose_from_tq([1.0, -2.0, 0.5], np.array([0.1, 0.3, -0.2, 0.9]) / np.linalg.norm([0.1, 0.3, -0.2, 0.9]))
    est = [G @ T for T in gt]
    raw = np.linalg.norm(np.array([T[:3, 3] for T in est]) - np.array([T[:3, 3] for T in gt]), axis=1)
    assert raw.min() > 0.5  # before alignment the positions are far apart
    a = ate(est, gt)
    assert a["n"] == len(gt) and a["rmse"] < 1e-9 and a["max"] < 1e-9
    assert np.allclose(np.array(a["alignment"]), np.linalg.inv(G), atol=1e-9)  # the alignment undoes G
    r = rpe(est, gt)
    assert r["n"] == len(gt) - 1 and r["trans_max"] < 1e-9 and r["rot_max_deg"] < 1e-6


def test_ate_is_the_rms_of_the_residual_offsets_when_they_cannot_be_aligned_away():
    # ground truth on the x axis; the estimate is off by +e, -e, -e, +e in y: the offsets have zero mean and
    # no correlation with x, so the best rigid alignment is the identity and every residual is e
    e = 0.03
    gt = [_translate(float(i)) for i in range(4)]
    est = [_translate(float(i), s * e) for i, s in enumerate((1, -1, -1, 1))]
    a = ate(est, gt)
    assert a["rmse"] == pytest.approx(e, abs=1e-9) and a["median"] == pytest.approx(e, abs=1e-9)
    assert np.allclose(np.array(a["alignment"]), np.eye(4), atol=1e-9)


def test_ate_with_scale_removes_a_scale_error_that_rigid_alignment_keeps():
    gt = _curvy()
    est = [_translate(*(2.0 * T[:3, 3])) for T in gt]  # positions doubled
    assert ate(est, gt)["rmse"] > 0.1
    a = ate(est, gt, with_scale=True)
    assert a["scale"] == pytest.approx(0.5, abs=1e-9) and a["rmse"] < 1e-9


def test_a_known_per_frame_drift_gives_the_expected_rpe_per_frame_and_per_second():
    n, fps, drift = 31, 10.0, 0.01
    gt = [_translate(0.1 * i) for i in range(n)]  # 0.1 m per frame along x
    est = [_translate(0.11 * i) for i in range(n)]  # 0.11 m per frame: 1 cm per frame too much
    stamps = np.arange(n) / fps
    r = rpe(est, gt)
    assert r["n"] == n - 1
    assert r["trans_rmse"] == pytest.approx(drift, abs=1e-9) and r["trans_max"] == pytest.approx(drift, abs=1e-9)
    assert r["rot_rmse_deg"] < 1e-9
    r5 = rpe(est, gt, delta=5)
    assert r5["n"] == n - 5 and r5["trans_rmse"] == pytest.approx(5 * drift, abs=1e-9)
    rs = rpe(est, gt, delta=1.0, unit="seconds", stamps=stamps)  # 1 s = 10 frames
    assert rs["n"] == n - 10 and rs["trans_rmse"] == pytest.approx(10 * drift, abs=1e-9)
    # and the ATE of the same drift is not zero (it cannot be aligned away: the estimate is longer)
    assert ate(est, gt)["rmse"] > 0.05


def test_a_known_rotation_drift_gives_the_expected_rotational_rpe():
    n = 8
    gt = [np.eye(4) for _ in range(n)]  # the camera stands still
    est = [_rot_z(0.5 * i) for i in range(n)]  # the estimate turns 0.5 degree per frame
    r = rpe(est, gt)
    assert r["rot_rmse_deg"] == pytest.approx(0.5, abs=1e-9) and r["trans_max"] < 1e-12
    assert rpe(est, gt, delta=3)["rot_mean_deg"] == pytest.approx(1.5, abs=1e-9)


def test_dropped_frames_are_left_out_of_ate_and_of_every_rpe_pair_they_are_in():
    gt = [_translate(0.1 * i) for i in range(6)]
    est = [_translate(0.1 * i) for i in range(6)]
    est[2] = None
    est[4] = _translate(5.0)  # a wild estimate, kept: it must show
    a = ate(est, gt)
    assert a["n"] == 5 and a["max"] > 1.0
    r = rpe(est, gt)
    assert r["n"] == 3  # pairs (0,1), (3,4), (4,5); (1,2) and (2,3) have no estimate at 2
    est[4] = None
    assert rpe(est, gt)["n"] == 1 and rpe(est, gt)["trans_max"] < 1e-12


def test_rpe_per_second_needs_stamps_and_skips_intervals_it_cannot_match():
    gt = [_translate(0.1 * i) for i in range(5)]
    with pytest.raises(ValueError, match="needs one stamp per frame"):
        rpe(gt, gt, 1.0, "seconds")
    # stamps 0, 0.1, 0.2, 1.0, 1.1: partners 1 s later exist only for frames 0 (-> 3) and 1 (-> 4)
    r = rpe(gt, gt, 1.0, "seconds", [0.0, 0.1, 0.2, 1.0, 1.1], max_diff=0.02)
    assert r["n"] == 2
    with pytest.raises(ValueError, match="whole number of frames"):
        rpe(gt, gt, 0.5)
    with pytest.raises(ValueError, match="one pose per frame"):
        ate(gt, gt[:3])


def test_align_rigid_recovers_a_known_transform_of_points():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(20, 3))
    T = pose_from_tq([0.5, -1.0, 2.0], np.array([0.2, -0.1, 0.4, 0.9]) / np.linalg.norm([0.2, -0.1, 0.4, 0.9]))
    dst = src @ T[:3, :3].T + T[:3, 3]
    A, s = align_rigid(src, dst)
    assert s == 1.0 and np.allclose(A, T, atol=1e-9)
    assert np.linalg.det(align_rigid(src, -dst)[0][:3, :3]) == pytest.approx(1.0)  # never a reflection
