"""Rigid transforms: validation, quaternions, look-at cameras.

Conventions (see docs/interfaces.md):
- poses are 4x4 ``T_world_cam`` (camera-to-world), float64;
- camera frames use the optical convention (x right, y down, z forward);
- the embedded world is Z-up (REP 103): x, y on the floor, z up.
"""
from __future__ import annotations

import numpy as np

ROT_TOL = 1e-3  # max |R^T R - I| and |det R - 1| accepted as a rotation


class PoseError(ValueError):
    """A 4x4 pose that is not a finite rigid transform."""


def validate_pose(T, name: str = "pose") -> np.ndarray:
    """Return ``T`` as a float64 [4, 4] array or raise :class:`PoseError` naming the problem."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise PoseError(f"{name}: expected a 4x4 matrix, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise PoseError(f"{name}: contains non-finite values (NaN or inf)")
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
        raise PoseError(f"{name}: last row must be [0, 0, 0, 1], got {T[3].tolist()}")
    R = T[:3, :3]
    ortho = float(np.abs(R.T @ R - np.eye(3)).max())
    det = float(np.linalg.det(R))
    if ortho > ROT_TOL or abs(det - 1.0) > ROT_TOL:
        raise PoseError(
            f"{name}: not a rigid transform (|R^T R - I| = {ortho:.3g}, det R = {det:.4g}); "
            "scaled, sheared or reflected poses are rejected"
        )
    return T


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform [4, 4]."""
    R, t = T[:3, :3], T[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def quat_to_rot(q) -> np.ndarray:
    """Unit quaternion (qx, qy, qz, qw) -> rotation matrix [3, 3]. Normalises; rejects zero norm."""
    q = np.asarray(q, dtype=np.float64)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-9:
        raise PoseError(f"quaternion {q.tolist()} has zero or non-finite norm")
    x, y, z, w = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def rot_to_quat(R: np.ndarray) -> np.ndarray:
    """Rotation matrix [3, 3] -> unit quaternion (qx, qy, qz, qw) with qw >= 0 (Shepperd's method)."""
    R = np.asarray(R, dtype=np.float64)
    tr = np.trace(R)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s]
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s, (R[1, 0] - R[0, 1]) / s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def pose_from_tq(t, q) -> np.ndarray:
    """Translation (tx, ty, tz) + quaternion (qx, qy, qz, qw) -> T [4, 4]."""
    T = np.eye(4)
    T[:3, :3] = quat_to_rot(q)
    T[:3, 3] = np.asarray(t, dtype=np.float64)
    return T


def pose_to_tq(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """T [4, 4] -> (t [3], q [4] as qx, qy, qz, qw)."""
    return T[:3, 3].copy(), rot_to_quat(T[:3, :3])


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Optical-frame camera at ``eye`` looking at ``target`` (world Z-up by default) -> T_world_cam."""
    eye = np.asarray(eye, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    if np.linalg.norm(z) < 1e-9:
        raise PoseError("look_at: eye and target coincide")
    z /= np.linalg.norm(z)
    up = np.asarray(up, dtype=np.float64)
    x = np.cross(z, up)  # right = forward x up (y down)
    if np.linalg.norm(x) < 1e-6:
        raise PoseError("look_at: viewing direction is parallel to the up vector")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)  # down
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, z, eye
    return T


def camera_from_yaw_pitch(position, yaw: float, pitch: float = 0.0) -> np.ndarray:
    """Optical camera at ``position`` (Z-up world) heading ``yaw`` (rad, from +x towards +y),
    tilted by ``pitch`` (rad, positive looks up) -> T_world_cam."""
    forward = np.array([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.sin(pitch)])
    return look_at(position, np.asarray(position, dtype=np.float64) + forward)
