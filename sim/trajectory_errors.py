"""Trajectory errors as the TUM RGB-D benchmark defines them (Sturm et al., IROS 2012): ATE and RPE.

- **ATE** (absolute trajectory error): the estimated camera positions are aligned to the ground
  truth by the rigid transform (rotation + translation, no scale) that minimises the squared
  position differences (Horn / Umeyama, closed form); the ATE is the RMSE (also mean, median, max)
  of the remaining position differences, in metres.
- **RPE** (relative pose error) over an interval: for frame pairs (i, j) one interval apart,
  ``E = inv(inv(Q_i) Q_j) (inv(P_i) P_j)`` (Q ground truth, P estimate); the translational RPE is
  ``|trans(E)|`` (m), the rotational RPE ``angle(E)`` (degrees), summarised as RMSE, mean, median.
  The interval is a number of frames (``per frame``: consecutive frames) or of seconds (``per
  second``: j the frame whose stamp is closest to ``t_i + delta``, kept when within ``max_diff`` of it).

Poses are [4, 4] T_world_cam; an estimate of None (a frame odometry dropped) leaves that frame out:
of the alignment and ATE, and of every RPE pair it is part of. No alignment is needed for the RPE
(it is invariant to a rigid change of the world frame).
"""
from __future__ import annotations

import math

import numpy as np

from regconsist_ros.sim.poses import invert


def _angle_deg(R: np.ndarray) -> float:
    s = 0.5 * math.sqrt((R[2, 1] - R[1, 2]) ** 2 + (R[0, 2] - R[2, 0]) ** 2 + (R[1, 0] - R[0, 1]) ** 2)
    return math.degrees(math.atan2(s, 0.5 * (float(np.trace(R)) - 1.0)))


def align_rigid(src: np.ndarray, dst: np.ndarray, with_scale: bool = False) -> tuple[np.ndarray, float]:
    """``(T [4, 4], s)`` minimising ``sum |s R src_k + t - dst_k|^2`` over rotations R (det +1) and t
    (Umeyama 1991; ``s`` = 1 unless ``with_scale``). ``src``, ``dst``: [N, 3] with N >= 1; for N < 3
    (or collinear points) the rotation about the degenerate axis is not determined (SVD's choice)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or not len(src):
        raise ValueError(f"align_rigid needs two [N, 3] arrays of the same N >= 1, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)  # [3, 3]
    U, S, Vt = np.linalg.svd(cov)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt)) or 1.0])
    R = U @ D @ Vt
    var = float((a ** 2).sum() / len(src))
    s = float(np.trace(np.diag(S) @ D) / var) if with_scale and var > 0 else 1.0
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = mu_d - s * R @ mu_s
    return T, s


def _stats(e: np.ndarray, prefix: str, unit: str = "") -> dict:
    if not len(e):
        return {f"{prefix}rmse{unit}": float("nan"), f"{prefix}mean{unit}": float("nan"),
                f"{prefix}median{unit}": float("nan"), f"{prefix}max{unit}": float("nan")}
    return {f"{prefix}rmse{unit}": float(np.sqrt(np.mean(e ** 2))), f"{prefix}mean{unit}": float(np.mean(e)),
            f"{prefix}median{unit}": float(np.median(e)), f"{prefix}max{unit}": float(np.max(e))}


def _pairs_of(est, gt) -> tuple[list[int], np.ndarray, np.ndarray]:
    if len(est) != len(gt):
        raise ValueError(f"estimate and ground truth must have one pose per frame, got {len(est)} and {len(gt)}")
    idx = [i for i, (p, q) in enumerate(zip(est, gt)) if p is not None and q is not None]
    P = np.array([est[i] for i in idx], np.float64).reshape(-1, 4, 4)
    Q = np.array([gt[i] for i in idx], np.float64).reshape(-1, 4, 4)
    return idx, P, Q


def ate(est, gt, with_scale: bool = False) -> dict:
    """ATE of the estimated poses ``est`` ([N] of [4, 4] or None) against ``gt`` ([N] of [4, 4] or None).

    Returns ``{"n": frames used, "rmse", "mean", "median", "max"}`` (m), and ``"alignment"``: the
    [4, 4] applied to the estimate (as a list). NaN figures when no frame has both.
    """
    idx, P, Q = _pairs_of(est, gt)
    if not idx:
        return {"n": 0, **_stats(np.zeros(0), ""), "alignment": np.eye(4).tolist()}
    T, s = align_rigid(P[:, :3, 3], Q[:, :3, 3], with_scale)
    aligned = s * P[:, :3, 3] @ T[:3, :3].T + T[:3, 3]
    e = np.linalg.norm(aligned - Q[:, :3, 3], axis=1)
    out = {"n": len(idx), **_stats(e, ""), "alignment": T.tolist()}
    if with_scale:
        out["scale"] = s
    return out


def rpe(est, gt, delta: float = 1, unit: str = "frames", stamps=None, max_diff: float | None = None) -> dict:
    """RPE over intervals of ``delta`` frames (``unit="frames"``: pairs (i, i + delta) of frame indices)
    or seconds (``unit="seconds"``, with ``stamps`` [N]: j = the frame closest to ``t_i + delta``,
    kept when within ``max_diff`` s of it; default half the median frame period).

    Returns ``{"n": pairs, "trans_rmse", "trans_mean", "trans_median", "trans_max"}`` (m per
    interval) and the same as ``rot_*_deg`` (degrees per interval).
    """
    if len(est) != len(gt):
        raise ValueError(f"estimate and ground truth must have one pose per frame, got {len(est)} and {len(gt)}")
    n = len(est)
    pairs: list[tuple[int, int]] = []
    if unit == "frames":
        k = int(delta)
        if k != delta or k < 1:
            raise ValueError(f"rpe: delta must be a positive whole number of frames, got {delta!r}")
        pairs = [(i, i + k) for i in range(n - k)]
    elif unit == "seconds":
        if stamps is None or len(stamps) != n:
            raise ValueError("rpe: unit='seconds' needs one stamp per frame")
        t = np.asarray(stamps, np.float64)
        if np.any(np.diff(t) <= 0):
            raise ValueError("rpe: stamps must be strictly increasing")
        if not delta > 0:
            raise ValueError(f"rpe: delta must be > 0 s, got {delta!r}")
        tol = 0.5 * float(np.median(np.diff(t))) if max_diff is None and n > 1 else (max_diff or 0.0)
        for i in range(n):
            j = int(np.argmin(np.abs(t - (t[i] + delta))))
            if j > i and abs(t[j] - t[i] - delta) <= tol:
                pairs.append((i, j))
    else:
        raise ValueError(f"rpe: unit must be 'frames' or 'seconds', got {unit!r}")
    te, re = [], []
    for i, j in pairs:
        if est[i] is None or est[j] is None or gt[i] is None or gt[j] is None:
            continue
        rel_gt = invert(np.asarray(gt[i], np.float64)) @ np.asarray(gt[j], np.float64)
        rel_est = invert(np.asarray(est[i], np.float64)) @ np.asarray(est[j], np.float64)
        E = invert(rel_gt) @ rel_est
        te.append(float(np.linalg.norm(E[:3, 3])))
        re.append(_angle_deg(E[:3, :3]))
    return {"n": len(te), **_stats(np.asarray(te), "trans_"), **_stats(np.asarray(re), "rot_", "_deg")}
