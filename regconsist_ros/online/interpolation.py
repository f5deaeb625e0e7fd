"""Poses between their stamps: SLERP of the rotation, linear translation (scipy's ``Slerp``)."""
from __future__ import annotations

import numpy as np


def interpolate_pose(T_a: np.ndarray, T_b: np.ndarray, w: float) -> np.ndarray:
    """The pose a fraction ``w`` in [0, 1] of the way from ``T_a`` to ``T_b`` (both [4, 4] rigid):
    rotation by spherical linear interpolation (the shorter arc), translation linearly. [4, 4] float64."""
    from scipy.spatial.transform import Rotation, Slerp

    w = float(w)
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"interpolate_pose: w must be in [0, 1], got {w}")
    T_a, T_b = np.asarray(T_a, np.float64), np.asarray(T_b, np.float64)
    rots = Rotation.from_matrix(np.stack([T_a[:3, :3], T_b[:3, :3]]))
    out = np.eye(4)
    out[:3, :3] = Slerp([0.0, 1.0], rots)([w]).as_matrix()[0]
    out[:3, 3] = (1.0 - w) * T_a[:3, 3] + w * T_b[:3, 3]
    return out


def pose_interpolator(item_a, stamp_a: float, item_b, stamp_b: float, stamp: float) -> np.ndarray:
    """:class:`~regconsist_ros.online.sync.StampSync` interpolator for [4, 4] pose items."""
    w = 0.0 if stamp_b == stamp_a else (stamp - stamp_a) / (stamp_b - stamp_a)
    return interpolate_pose(item_a, item_b, min(1.0, max(0.0, w)))
