"""Registration geometry of view pairs, batched in torch (CPU or CUDA).

unproject -> transform -> project between two views; occlusion by depth consistency; exact pixel
correspondences; overlap IoU. Conventions: pixel (x = column, y = row) with centres at integer
coordinates; poses are 4x4 ``T_world_cam`` in the optical frame (x right, y down, z forward);
depth is z-depth in metres, and a depth value is *invalid* when it is 0, negative, NaN, inf, below
``min_depth`` or beyond ``max_range``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from regconsist_ros.sim.frame import Frame
from regconsist_ros.sim.poses import PoseError, validate_pose


class RegistrationError(ValueError):
    """Inputs that cannot be registered (sizes, poses, depth)."""


@dataclass
class CorrespondenceConfig:
    """How correspondences between two views are decided."""

    rel_tol: float = 0.03  # occlusion test: |z_projected - depth_target| <= rel_tol * z_projected
    min_depth: float = 0.05  # metres; nearer depth is invalid
    max_range: float = 10.0  # metres; farther depth is invalid (sensor range)

    def __post_init__(self):
        if not 0 < self.rel_tol < 1:
            raise ValueError(f"CorrespondenceConfig.rel_tol must be in (0, 1), got {self.rel_tol}")
        if not 0 <= self.min_depth < self.max_range:
            raise ValueError(f"CorrespondenceConfig needs 0 <= min_depth < max_range, got {self.min_depth}, {self.max_range}")


def valid_depth(depth: torch.Tensor, cfg: CorrespondenceConfig) -> torch.Tensor:
    """depth [B, H, W] -> bool [B, H, W]: finite and within [min_depth, max_range] (NaN compares False)."""
    return (depth >= max(cfg.min_depth, 1e-9)) & (depth <= cfg.max_range)


def pixel_grid(H: int, W: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """[H, W, 2] pixel coordinates (x, y)."""
    ys, xs = torch.meshgrid(torch.arange(H, device=device, dtype=dtype), torch.arange(W, device=device, dtype=dtype), indexing="ij")
    return torch.stack([xs, ys], -1)


def unproject(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """depth [B, H, W], K [B, 3, 3] -> camera-frame points [B, H, W, 3]."""
    B, H, W = depth.shape
    uv = pixel_grid(H, W, depth.device, depth.dtype)  # [H, W, 2]
    fx, fy = K[:, 0, 0].view(B, 1, 1), K[:, 1, 1].view(B, 1, 1)
    cx, cy = K[:, 0, 2].view(B, 1, 1), K[:, 1, 2].view(B, 1, 1)
    x = (uv[..., 0] - cx) / fx * depth
    y = (uv[..., 1] - cy) / fy * depth
    return torch.stack([x, y, depth], -1)


def transform(T: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """Rigid transform T [B, 4, 4] applied to points P [B, ..., 3]."""
    B = P.shape[0]
    flat = P.reshape(B, -1, 3)
    out = flat @ T[:, :3, :3].transpose(1, 2) + T[:, None, :3, 3]
    return out.reshape(P.shape)


def project(P: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-frame points P [B, ..., 3], K [B, 3, 3] -> (uv [B, ..., 2], z [B, ...]).

    Points with z <= 0 get uv = NaN.
    """
    B = P.shape[0]
    shape = (B,) + (1,) * (P.dim() - 2)
    z = P[..., 2]
    zs = torch.where(z > 1e-9, z, torch.full_like(z, float("nan")))
    u = K[:, 0, 0].view(shape) * P[..., 0] / zs + K[:, 0, 2].view(shape)
    v = K[:, 1, 1].view(shape) * P[..., 1] / zs + K[:, 1, 2].view(shape)
    return torch.stack([u, v], -1), z


def relative_pose(T_world_src: torch.Tensor, T_world_dst: torch.Tensor) -> torch.Tensor:
    """[B, 4, 4] transform taking points from the src camera frame to the dst camera frame."""
    R, t = T_world_dst[:, :3, :3], T_world_dst[:, :3, 3:]
    inv = torch.zeros_like(T_world_dst)
    inv[:, :3, :3] = R.transpose(1, 2)
    inv[:, :3, 3:] = -R.transpose(1, 2) @ t
    inv[:, 3, 3] = 1
    return inv @ T_world_src


@dataclass
class Warp:
    """Where each pixel of the source view lands in the target view."""

    uv: torch.Tensor  # [B, H, W, 2] sub-pixel target coordinates (x, y); NaN where invalid
    valid: torch.Tensor  # [B, H, W] bool: co-visible (valid depth both ends, in view, not occluded)
    src_valid: torch.Tensor  # [B, H, W] bool: valid source depth


def warp(depth_src: torch.Tensor, depth_dst: torch.Tensor, K_src: torch.Tensor, K_dst: torch.Tensor,
         T_world_src: torch.Tensor, T_world_dst: torch.Tensor, cfg: CorrespondenceConfig | None = None) -> Warp:
    """Warp every source pixel into the target view and test co-visibility.

    depth_* [B, H, W] (the two views may differ in size), K_* [B, 3, 3], T_world_* [B, 4, 4].
    A source pixel is co-visible when its depth is valid, its projection lies inside the target
    image, the target depth at the nearest pixel is valid, and the two depths agree within
    ``rel_tol`` (otherwise the point is occluded in, or missing from, the target view).
    """
    cfg = cfg or CorrespondenceConfig()
    if depth_src.dim() != 3 or depth_dst.dim() != 3 or depth_src.shape[0] != depth_dst.shape[0]:
        raise RegistrationError(f"depth maps must be [B, H, W] with the same B, got {tuple(depth_src.shape)} and {tuple(depth_dst.shape)}")
    B, H2, W2 = depth_dst.shape
    for name, t, shape in (("K_src", K_src, (B, 3, 3)), ("K_dst", K_dst, (B, 3, 3)),
                           ("T_world_src", T_world_src, (B, 4, 4)), ("T_world_dst", T_world_dst, (B, 4, 4))):
        if tuple(t.shape) != shape:
            raise RegistrationError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    src_ok = valid_depth(depth_src, cfg)
    d_src = torch.where(src_ok, depth_src, torch.zeros_like(depth_src))
    T_rel = relative_pose(T_world_src.double(), T_world_dst.double()).to(depth_src.dtype)  # float64 composition
    P = transform(T_rel, unproject(d_src, K_src.to(depth_src.dtype)))  # [B, H, W, 3]
    uv, z = project(P, K_dst.to(depth_src.dtype))  # [B, H, W, 2], [B, H, W]
    px = torch.round(uv)
    inside = (px[..., 0] >= 0) & (px[..., 0] <= W2 - 1) & (px[..., 1] >= 0) & (px[..., 1] <= H2 - 1)  # NaN -> False
    ok = src_ok & inside & (z > 0)
    ix = torch.where(ok, px[..., 0], torch.zeros_like(z)).long()
    iy = torch.where(ok, px[..., 1], torch.zeros_like(z)).long()
    bidx = torch.arange(B, device=depth_src.device).view(B, 1, 1).expand_as(ix)
    d_dst = depth_dst[bidx, iy, ix]  # [B, H, W]
    ok = ok & valid_depth(d_dst, cfg) & ((z - d_dst).abs() <= cfg.rel_tol * z)
    uv = torch.where(ok[..., None], uv, torch.full_like(uv, float("nan")))
    return Warp(uv=uv, valid=ok, src_valid=src_ok)


def overlap_iou(w12: Warp, w21: Warp, v1: torch.Tensor | None = None, v2: torch.Tensor | None = None) -> torch.Tensor:
    """Overlap IoU of view pairs [B]: co-visible surface over the union of both views' valid pixels.

    With n = mean of the co-visible pixel counts in each direction and v1, v2 the valid pixel
    counts, IoU = n / (v1 + v2 - n); 0 when neither view has valid depth. When the warps were
    computed from a subsample of source pixels, pass the full-resolution valid counts v1, v2 [B]:
    the co-visible *fractions* of the subsample are then scaled to them.
    """
    s1 = w12.src_valid.flatten(1).sum(1).double()
    s2 = w21.src_valid.flatten(1).sum(1).double()
    f12 = w12.valid.flatten(1).sum(1).double() / s1.clamp(min=1)
    f21 = w21.valid.flatten(1).sum(1).double() / s2.clamp(min=1)
    v1 = s1 if v1 is None else v1.double()
    v2 = s2 if v2 is None else v2.double()
    n = (f12 * v1 + f21 * v2) / 2
    union = v1 + v2 - n
    return torch.where(union > 0, n / union.clamp(min=1), torch.zeros_like(n))


@dataclass
class Correspondences:
    """Exact pixel correspondences of one view pair."""

    uv1: np.ndarray  # [N, 2] float32 integer pixel coordinates (x, y) in view 1
    uv2: np.ndarray  # [N, 2] float32 sub-pixel coordinates (x, y) in view 2
    overlap_iou: float
    valid1: int  # valid depth pixels in view 1
    valid2: int

    def __len__(self) -> int:
        return len(self.uv1)


def _check_frame(f: Frame, name: str, cfg: CorrespondenceConfig) -> None:
    H, W = f.size
    if f.depth.shape != (H, W):
        raise RegistrationError(f"{name}: depth is {f.depth.shape} but the intrinsics say {H}x{W}")
    try:
        validate_pose(f.T_world_cam, f"{name}.T_world_cam")
    except PoseError as e:
        raise RegistrationError(str(e)) from None
    d = f.depth
    if not np.any((d >= max(cfg.min_depth, 1e-9)) & (d <= cfg.max_range)):
        raise RegistrationError(
            f"{name}: no valid depth pixel (all 0, NaN, inf or outside [{cfg.min_depth}, {cfg.max_range}] m)"
        )


def correspond(f1: Frame, f2: Frame, cfg: CorrespondenceConfig | None = None, device="cpu") -> Correspondences:
    """Exact pixel correspondences from view 1 to view 2 and the pair's overlap IoU."""
    cfg = cfg or CorrespondenceConfig()
    _check_frame(f1, "view 1", cfg)
    _check_frame(f2, "view 2", cfg)

    def t(f):
        return (torch.from_numpy(np.ascontiguousarray(f.depth))[None].to(device), torch.from_numpy(f.intrinsics.K.astype(np.float32))[None].to(device),
                torch.from_numpy(f.T_world_cam)[None].to(device))

    d1, K1, T1 = t(f1)
    d2, K2, T2 = t(f2)
    w12 = warp(d1, d2, K1, K2, T1, T2, cfg)
    w21 = warp(d2, d1, K2, K1, T2, T1, cfg)
    iou = float(overlap_iou(w12, w21)[0])
    m = w12.valid[0]
    ys, xs = torch.nonzero(m, as_tuple=True)
    uv1 = torch.stack([xs, ys], -1).float()
    uv2 = w12.uv[0][m]
    return Correspondences(uv1.cpu().numpy(), uv2.cpu().numpy().astype(np.float32), iou,
                           int(w12.src_valid.sum()), int(w21.src_valid.sum()))
