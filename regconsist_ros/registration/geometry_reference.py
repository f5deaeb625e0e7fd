"""``correspond_reference``: the implementation before the speed-up, kept as the exactness reference
and the benchmark's baseline.

This is a frozen copy of ``geometry.correspond`` (and of the torch helpers it ran through) as it was
before the fast path in ``geometry.py``: unproject every pixel, ``[N, 3] @ R^T + t`` in float32,
project, round, gather the target depth, depth-consistency test, both directions, overlap IoU.
Do not optimise or "fix" it: ``tests/registration/test_correspond_exact.py`` asserts that
``geometry.correspond`` returns bit-identical ``Correspondences`` to it, and
``regconsist bench correspond`` times the two side by side. Only the data types
(``CorrespondenceConfig``, ``Correspondences``, ``RegistrationError``) are shared with ``geometry``.
"""
from __future__ import annotations

import numpy as np
import torch

from regconsist_ros.registration.geometry import CorrespondenceConfig, Correspondences, RegistrationError
from regconsist_ros.sim.frame import Frame
from regconsist_ros.sim.poses import PoseError, validate_pose


def _valid_depth(depth: torch.Tensor, cfg: CorrespondenceConfig) -> torch.Tensor:
    return (depth >= max(cfg.min_depth, 1e-9)) & (depth <= cfg.max_range)


def _pixel_grid(H: int, W: int, device=None, dtype=torch.float32) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(H, device=device, dtype=dtype), torch.arange(W, device=device, dtype=dtype), indexing="ij")
    return torch.stack([xs, ys], -1)


def _unproject(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    B, H, W = depth.shape
    uv = _pixel_grid(H, W, depth.device, depth.dtype)  # [H, W, 2]
    fx, fy = K[:, 0, 0].view(B, 1, 1), K[:, 1, 1].view(B, 1, 1)
    cx, cy = K[:, 0, 2].view(B, 1, 1), K[:, 1, 2].view(B, 1, 1)
    x = (uv[..., 0] - cx) / fx * depth
    y = (uv[..., 1] - cy) / fy * depth
    return torch.stack([x, y, depth], -1)


def _transform(T: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    B = P.shape[0]
    flat = P.reshape(B, -1, 3)
    out = flat @ T[:, :3, :3].transpose(1, 2) + T[:, None, :3, 3]
    return out.reshape(P.shape)


def _project(P: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    B = P.shape[0]
    shape = (B,) + (1,) * (P.dim() - 2)
    z = P[..., 2]
    zs = torch.where(z > 1e-9, z, torch.full_like(z, float("nan")))
    u = K[:, 0, 0].view(shape) * P[..., 0] / zs + K[:, 0, 2].view(shape)
    v = K[:, 1, 1].view(shape) * P[..., 1] / zs + K[:, 1, 2].view(shape)
    return torch.stack([u, v], -1), z


def _relative_pose(T_world_src: torch.Tensor, T_world_dst: torch.Tensor) -> torch.Tensor:
    R, t = T_world_dst[:, :3, :3], T_world_dst[:, :3, 3:]
    inv = torch.zeros_like(T_world_dst)
    inv[:, :3, :3] = R.transpose(1, 2)
    inv[:, :3, 3:] = -R.transpose(1, 2) @ t
    inv[:, 3, 3] = 1
    return inv @ T_world_src


def _warp(depth_src, depth_dst, K_src, K_dst, T_world_src, T_world_dst, cfg):
    """-> (uv [B, H, W, 2], valid [B, H, W], src_valid [B, H, W]), as ``geometry.warp`` was."""
    B, H2, W2 = depth_dst.shape
    src_ok = _valid_depth(depth_src, cfg)
    d_src = torch.where(src_ok, depth_src, torch.zeros_like(depth_src))
    T_rel = _relative_pose(T_world_src.double(), T_world_dst.double()).to(depth_src.dtype)  # float64 composition
    P = _transform(T_rel, _unproject(d_src, K_src.to(depth_src.dtype)))  # [B, H, W, 3]
    uv, z = _project(P, K_dst.to(depth_src.dtype))  # [B, H, W, 2], [B, H, W]
    px = torch.round(uv)
    inside = (px[..., 0] >= 0) & (px[..., 0] <= W2 - 1) & (px[..., 1] >= 0) & (px[..., 1] <= H2 - 1)  # NaN -> False
    ok = src_ok & inside & (z > 0)
    ix = torch.where(ok, px[..., 0], torch.zeros_like(z)).long()
    iy = torch.where(ok, px[..., 1], torch.zeros_like(z)).long()
    bidx = torch.arange(B, device=depth_src.device).view(B, 1, 1).expand_as(ix)
    d_dst = depth_dst[bidx, iy, ix]  # [B, H, W]
    ok = ok & _valid_depth(d_dst, cfg) & ((z - d_dst).abs() <= cfg.rel_tol * z)
    uv = torch.where(ok[..., None], uv, torch.full_like(uv, float("nan")))
    return uv, ok, src_ok


def _overlap_iou(valid12, src_valid1, valid21, src_valid2) -> torch.Tensor:
    s1 = src_valid1.flatten(1).sum(1).double()
    s2 = src_valid2.flatten(1).sum(1).double()
    f12 = valid12.flatten(1).sum(1).double() / s1.clamp(min=1)
    f21 = valid21.flatten(1).sum(1).double() / s2.clamp(min=1)
    v1, v2 = s1, s2
    n = (f12 * v1 + f21 * v2) / 2
    union = v1 + v2 - n
    return torch.where(union > 0, n / union.clamp(min=1), torch.zeros_like(n))


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


def correspond_reference(f1: Frame, f2: Frame, cfg: CorrespondenceConfig | None = None, device="cpu") -> Correspondences:
    """Exact pixel correspondences from view 1 to view 2 and the pair's overlap IoU (pre-speed-up code)."""
    cfg = cfg or CorrespondenceConfig()
    _check_frame(f1, "view 1", cfg)
    _check_frame(f2, "view 2", cfg)

    def t(f):
        return (torch.from_numpy(np.ascontiguousarray(f.depth))[None].to(device), torch.from_numpy(f.intrinsics.K.astype(np.float32))[None].to(device),
                torch.from_numpy(f.T_world_cam)[None].to(device))

    d1, K1, T1 = t(f1)
    d2, K2, T2 = t(f2)
    uv12, ok12, src1 = _warp(d1, d2, K1, K2, T1, T2, cfg)
    _, ok21, src2 = _warp(d2, d1, K2, K1, T2, T1, cfg)
    iou = float(_overlap_iou(ok12, src1, ok21, src2)[0])
    m = ok12[0]
    ys, xs = torch.nonzero(m, as_tuple=True)
    uv1 = torch.stack([xs, ys], -1).float()
    uv2 = uv12[0][m]
    return Correspondences(uv1.cpu().numpy(), uv2.cpu().numpy().astype(np.float32), iou,
                           int(src1.sum()), int(src2.sum()))
