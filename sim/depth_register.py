"""Depth registered to colour: a depth image reprojected into the colour camera, z-buffered.

What ROS image_pipeline's ``depth_image_proc/register`` does (its behaviour, our code): every valid
depth pixel is back-projected with the depth camera's intrinsics, moved into the colour camera's
optical frame by ``T_color_depth`` and projected with the colour intrinsics onto the nearest colour
pixel. Several depth pixels landing on one colour pixel keep the nearest (z-buffer), so a surface
in front occludes the one behind. Colour pixels no depth pixel lands on stay invalid (0, the
project's convention): disocclusions, the border the depth camera does not see, and, when the colour
image is finer than the depth image, the gaps between projected pixels -- unless ``fill`` is set,
which fills each depth pixel's projected footprint (the rectangle of its projected corners, as
depth_image_proc's ``fill_upsampling_holes``), still z-buffered.

Values are z-depth along the colour camera's optical axis in metres. Distortion is not modelled:
both images must be rectified.
"""
from __future__ import annotations

import numpy as np

from regconsist_ros.sim.frame import Intrinsics
from regconsist_ros.sim.poses import validate_pose

MAX_FOOTPRINT = 16  # px: a footprint wider or taller than this (a grazing surface) is clipped to it


def _zbuffer(H: int, W: int, idx: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Per colour pixel the smallest z of the points on it -> [H, W] float32, 0 where none."""
    out = np.full(H * W, np.inf, np.float32)
    np.minimum.at(out, idx, z.astype(np.float32))  # unbuffered: every point counts, the nearest wins
    out[np.isinf(out)] = 0.0
    return out.reshape(H, W)


def register_depth(depth: np.ndarray, K_depth: Intrinsics, K_color: Intrinsics, T_color_depth=None,
                   fill: bool = False) -> np.ndarray:
    """Depth in the depth camera -> depth in the colour camera.

    depth: [h, w] metres in the depth camera (h, w = K_depth's size); 0, negative, NaN, inf = invalid.
    T_color_depth: [4, 4] rigid transform taking points of the depth optical frame into the colour
    optical frame (None = identity: same optical centre, other intrinsics or resolution).
    fill: fill each depth pixel's projected footprint instead of only its centre's pixel.
    Returns [H, W] float32 metres (H, W = K_color's size), z along the colour camera's axis, 0 = no depth.
    """
    d = np.asarray(depth)
    if d.shape != (K_depth.height, K_depth.width):
        raise ValueError(f"depth is {d.shape[1] if d.ndim == 2 else d.shape}x{d.shape[0] if d.ndim == 2 else ''} but "
                         f"the depth intrinsics are for {K_depth.width}x{K_depth.height}")
    T = np.eye(4) if T_color_depth is None else validate_pose(T_color_depth, "T_color_depth")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(d) & (d > 0)
    v, u = np.nonzero(valid)  # [P] rows, columns
    z = d[v, u].astype(np.float64)  # [P]
    R, t = T[:3, :3], T[:3, 3]

    def to_color(uu: np.ndarray, vv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Depth pixel coordinates at depth z -> colour (x, y) sub-pixel coordinates and colour z."""
        X = (uu - K_depth.cx) / K_depth.fx * z
        Y = (vv - K_depth.cy) / K_depth.fy * z
        P = R @ np.stack([X, Y, z]) + t[:, None]  # [3, P] in the colour optical frame
        with np.errstate(divide="ignore", invalid="ignore"):
            x = K_color.fx * P[0] / P[2] + K_color.cx
            y = K_color.fy * P[1] / P[2] + K_color.cy
        return x, y, P[2]

    H, W = K_color.height, K_color.width
    uf, vf = u.astype(np.float64), v.astype(np.float64)
    x, y, zc = to_color(uf, vf)
    front = zc > 0
    if not fill:
        xi, yi = np.floor(x + 0.5), np.floor(y + 0.5)  # nearest colour pixel (centres at integers)
        ok = front & (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
        idx = (yi[ok] * W + xi[ok]).astype(np.int64)
        return _zbuffer(H, W, idx, zc[ok].astype(np.float32))
    # footprint: the colour pixels whose centres fall inside the projection of the pixel's square
    x0, y0, _ = to_color(uf - 0.5, vf - 0.5)
    x1, y1, _ = to_color(uf + 0.5, vf + 0.5)
    lo_x, hi_x = np.minimum(x0, x1), np.maximum(x0, x1)
    lo_y, hi_y = np.minimum(y0, y1), np.maximum(y0, y1)
    cx0 = np.ceil(lo_x - 1e-9)  # first pixel centre >= the left edge
    cy0 = np.ceil(lo_y - 1e-9)
    nx = np.clip(np.floor(hi_x - 1e-9) - cx0 + 1, 1, MAX_FOOTPRINT)  # at least the centre's pixel
    ny = np.clip(np.floor(hi_y - 1e-9) - cy0 + 1, 1, MAX_FOOTPRINT)
    empty = (np.floor(hi_x - 1e-9) < cx0) | (np.floor(hi_y - 1e-9) < cy0)  # no centre inside: use the nearest
    cx0 = np.where(empty, np.floor(x + 0.5), cx0)
    cy0 = np.where(empty, np.floor(y + 0.5), cy0)
    nx, ny = np.where(empty, 1, nx), np.where(empty, 1, ny)
    good = front & np.isfinite(cx0) & np.isfinite(cy0)
    cx0, cy0, nx, ny, zg = cx0[good], cy0[good], nx[good], ny[good], zc[good].astype(np.float32)
    idxs, zs = [], []
    for dy in range(int(ny.max()) if ny.size else 0):
        for dx in range(int(nx.max()) if nx.size else 0):
            m = (dx < nx) & (dy < ny)
            xi, yi = cx0[m] + dx, cy0[m] + dy
            ok = (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
            idxs.append((yi[ok] * W + xi[ok]).astype(np.int64))
            zs.append(zg[m][ok])
    idx = np.concatenate(idxs) if idxs else np.zeros(0, np.int64)
    zz = np.concatenate(zs) if zs else np.zeros(0, np.float32)
    return _zbuffer(H, W, idx, zz)
