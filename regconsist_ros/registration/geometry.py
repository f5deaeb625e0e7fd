"""Registration geometry of view pairs, batched in torch (CPU or CUDA).

unproject -> transform -> project between two views; occlusion by depth consistency; exact pixel
correspondences; overlap IoU. Conventions: pixel (x = column, y = row) with centres at integer
coordinates; poses are 4x4 ``T_world_cam`` in the optical frame (x right, y down, z forward);
depth is z-depth in metres, and a depth value is *invalid* when it is 0, negative, NaN, inf, below
``min_depth`` or beyond ``max_range``.

``correspond`` (one pair) runs an exact numpy fast path on the CPU that returns the same bits as
``warp`` + ``overlap_iou`` (section "exact CPU fast path" below).
"""
from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass

import numpy as np
import torch

from regconsist_ros.sim.frame import Frame
from regconsist_ros.sim.poses import ROT_TOL, PoseError, validate_pose


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
    """Exact pixel correspondences from view 1 to view 2 and the pair's overlap IoU.

    The result is, bit for bit, that of ``warp`` both ways plus ``overlap_iou`` (the code before the
    speed-up is kept as ``geometry_reference.correspond_reference``). On the CPU it runs the numpy
    path below, which does the same float32 roundings in fewer, cache-friendlier passes; elsewhere
    (CUDA, images of about 4 megapixels or more, a BLAS that rounds differently) it runs ``warp`` itself.
    """
    cfg = cfg or CorrespondenceConfig()
    if not _fast_path_applies(f1, f2, device):
        return _correspond_torch(f1, f2, cfg, device)
    ws = _WORKSPACE
    a = _fast_frame(f1, "view 1", cfg, ws, 0)
    b = _fast_frame(f2, "view 2", cfg, ws, 1)
    T12, T21 = _relative_pose_f32(a, b), _relative_pose_f32(b, a)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        n21 = int(np.count_nonzero(_fast_warp(b, a, T21, cfg, ws)[0]))  # view 2 -> view 1: only the count is needed
        ok, u, v = _fast_warp(a, b, T12, cfg, ws)
    idx = np.flatnonzero(ok)  # row-major, as torch.nonzero
    buf = ws.warp(a.height, a.width)
    uv = buf["uv"]  # [H, W, 2]: one 8-byte gather for (u, v) beats two strided ones
    np.copyto(uv[..., 0], u)
    np.copyto(uv[..., 1], v)
    uv2 = np.take(uv.view(np.int64).ravel(), idx, mode="clip").view(np.float32).reshape(-1, 2)  # [N, 2] (u, v)
    uv1 = np.take(_pixel_coords(a.height, a.width), idx, mode="clip").view(np.float32).reshape(-1, 2)  # [N, 2] (x, y)
    return Correspondences(uv1, uv2, _pair_iou(len(idx), a.n_valid, n21, b.n_valid), a.n_valid, b.n_valid)


# ---------------------------------------------------------------------------------------------
# exact CPU fast path of correspond()
#
# It evaluates, pixel by pixel, the float32 expressions that warp() evaluates, in the same order, with
# numpy ufuncs (one IEEE rounding per operation, never a fused multiply-add):
#   x = ((u - cx) / fx) * d                the rays (u - cx) / fx are cached per camera
#   X = ((x r00 + y r01) + d r02) + t0     how the BLAS computes [N, 3] @ R^T + t (checked at run time)
#   u2 = ((fx2 X) / Z) + cx2
#   co-visible <=> |Z - d2[round(v2), round(u2)]| <= rel_tol * Z, d2 valid, (round(u2), round(v2)) inside
# Only the bookkeeping differs: the target depth is copied once into a NaN-bordered array with NaN at
# invalid pixels, so "inside and valid" is one lookup whose NaN fails the depth test; the pixel
# index comes from float32's own rounding (x + 1.5 * 2**23) and the float's bits, so NaN and
# out-of-range coordinates land on the NaN border with no extra pass; the view 2 -> view 1 warp only
# counts; every full-resolution buffer is reused (per thread and image size).
# ---------------------------------------------------------------------------------------------

_ROUND = np.float32(1.5 * 2**23)  # fl(x + _ROUND) = _ROUND + rint(x) (ties to even, _ROUND is even) for |x| < 2**22
_ROUND_BITS = 0x4B400000  # bits of _ROUND as int32; an integer-valued float k in [2**23, 2**24) has bits _ROUND_BITS + k - _ROUND
_MAX_PADDED = 2**22  # (H + 2) * (W + 2) of a view must stay below this for the exact index arithmetic


def _fast_path_applies(f1: Frame, f2: Frame, device) -> bool:
    if torch.device(device).type != "cpu":
        return False
    for f in (f1, f2):
        H, W = f.size
        if not (isinstance(f.depth, np.ndarray) and f.depth.dtype == np.float32 and f.depth.shape == (H, W)
                and isinstance(f.T_world_cam, np.ndarray) and f.T_world_cam.dtype == np.float64):
            return False  # the torch path reports the problem (or computes in the depth's dtype, as before)
        if (H + 2) * (W + 2) >= _MAX_PADDED or not _blas_transform_is_plain(H * W, torch.get_num_threads()):
            return False
    return True


@functools.lru_cache(maxsize=64)
def _blas_transform_is_plain(rows: int, threads: int) -> bool:
    """Does ``transform`` ([1, rows, 3] @ R^T in float32, through the BLAS) round like ((p0 r0 + p1 r1) + p2 r2),
    every product and sum rounded to float32 (no FMA, this order)? Checked once per size and thread
    count on random data, where an FMA or another order changes ~30% of the results. The MKL of the
    project's machine does; where a BLAS does not, correspond() keeps the torch path (same results as before)."""
    g = torch.Generator().manual_seed(0)
    P = torch.randn(1, rows, 3, generator=g)
    T = torch.randn(1, 4, 4, generator=g)
    got = (P @ T[:, :3, :3].transpose(1, 2))[0].numpy()  # as transform() calls it
    p, R = P[0].numpy(), T[0, :3, :3].numpy()
    want = np.stack([(p[:, 0] * R[i, 0] + p[:, 1] * R[i, 1]) + p[:, 2] * R[i, 2] for i in range(3)], -1)
    return bool(np.array_equal(got, want))


@functools.lru_cache(maxsize=16)
def _pixel_rays(fx: float, fy: float, cx: float, cy: float, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Cached rays of a camera whose float32 K entries are fx, fy, cx, cy: rx [W] = (x - cx) / fx and
    ry [H, 1] = (y - cy) / fy in float32 (read-only), the very values ``unproject`` computes at every
    pixel before multiplying by the depth."""
    f32 = np.float32
    rx = (np.arange(width, dtype=f32) - f32(cx)) / f32(fx)
    ry = ((np.arange(height, dtype=f32) - f32(cy)) / f32(fy))[:, None]
    rx.flags.writeable = False
    ry.flags.writeable = False
    return rx, ry


@functools.lru_cache(maxsize=8)
def _pixel_coords(H: int, W: int) -> np.ndarray:
    """[H * W] int64 whose bytes are the float32 pairs (x, y) of every pixel in row-major order (read-only),
    so that one 8-byte gather yields uv1."""
    ys, xs = np.divmod(np.arange(H * W), W)
    out = np.stack([xs, ys], -1).astype(np.float32).view(np.int64).ravel()
    out.flags.writeable = False
    return out


class _Workspace(threading.local):
    """Scratch arrays of the fast path, per thread and image size, so that a call allocates (and
    page-faults) nothing of full resolution but its results. The last few sizes are kept."""

    def __init__(self):
        self.frames: dict = {}
        self.warps: dict = {}

    @staticmethod
    def _get(cache: dict, key, make):
        if key not in cache:
            if len(cache) >= 6:
                cache.clear()
            cache[key] = make()
        return cache[key]

    def frame(self, slot: int, H: int, W: int):
        """(depth [H + 2, W + 2] float32 whose border stays NaN, valid [H, W] bool, scratch [H, W] bool)."""
        return self._get(self.frames, (slot, H, W), lambda: (np.full((H + 2, W + 2), np.nan, np.float32),
                                                             np.empty((H, W), bool), np.empty((H, W), bool)))

    def warp(self, H: int, W: int) -> dict:
        """Five float32 [H, W] buffers (x, y, X, Y, Z), a [H, W, 2] float32 one (uv) and two bool ones."""
        def make():
            return {**{k: np.empty((H, W), np.float32) for k in ("x", "y", "X", "Y", "Z")},
                    "uv": np.empty((H, W, 2), np.float32), "ok": np.empty((H, W), bool), "zpos": np.empty((H, W), bool)}
        return self._get(self.warps, (H, W), make)


_WORKSPACE = _Workspace()


@dataclass
class _FastView:
    depth: np.ndarray  # [H, W] float32 C-contiguous, as given (invalid pixels are masked by ``valid``)
    padded: np.ndarray  # [H + 2, W + 2] float32: depth where valid, NaN at invalid pixels and on the border
    valid: np.ndarray | None  # [H, W] bool valid depth; None when every pixel is valid
    n_valid: int
    K: np.ndarray  # [3, 3] float32
    T: np.ndarray  # [4, 4] float64 T_world_cam
    rays: tuple  # _pixel_rays(): rx [W], ry [H, 1] float32
    height: int
    width: int


def _surely_rigid(T: np.ndarray) -> bool:
    """A quick accept for validate_pose(): True only for a [4, 4] pose with finite entries, last row exactly
    [0, 0, 0, 1] and |R^T R - I|, |det R - 1| below half of ROT_TOL (validate_pose accepts those, its
    float rounding differing by ~1e-16); for anything else the caller runs validate_pose itself."""
    if T.shape != (4, 4):
        return False
    r = T.tolist()
    if r[3] != [0.0, 0.0, 0.0, 1.0] or not all(math.isfinite(v) for row in r[:3] for v in row):
        return False
    (a, b, c, _), (d, e, f, _), (g, h, i, _) = r[:3]
    cols = ((a, d, g), (b, e, h), (c, f, i))
    ortho = max(abs(sum(p * q for p, q in zip(cols[m], cols[n])) - (m == n)) for m in range(3) for n in range(3))
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    return ortho <= ROT_TOL / 2 and abs(det - 1.0) <= ROT_TOL / 2


def _fast_frame(f: Frame, name: str, cfg: CorrespondenceConfig, ws: _Workspace, slot: int) -> _FastView:
    """The checks of ``_check_frame`` (same errors, same order) and the frame's arrays for ``_fast_warp``."""
    H, W = f.size
    if f.depth.shape != (H, W):
        raise RegistrationError(f"{name}: depth is {f.depth.shape} but the intrinsics say {H}x{W}")
    if not _surely_rigid(f.T_world_cam):
        try:
            validate_pose(f.T_world_cam, f"{name}.T_world_cam")
        except PoseError as e:
            raise RegistrationError(str(e)) from None
    padded, valid, scratch = ws.frame(slot, H, W)
    d = f.depth
    # float32 comparisons with float32 thresholds, as valid_depth() (torch) and _check_frame() (numpy) make them
    np.greater_equal(d, np.float32(max(cfg.min_depth, 1e-9)), out=valid)
    np.less_equal(d, np.float32(cfg.max_range), out=scratch)
    np.logical_and(valid, scratch, out=valid)
    n = int(np.count_nonzero(valid))
    if n == 0:
        raise RegistrationError(
            f"{name}: no valid depth pixel (all 0, NaN, inf or outside [{cfg.min_depth}, {cfg.max_range}] m)"
        )
    inner = padded[1:-1, 1:-1]
    np.copyto(inner, d)
    if n < H * W:
        np.logical_not(valid, out=scratch)
        np.copyto(inner, np.float32(np.nan), where=scratch)
    K = f.intrinsics.K.astype(np.float32)
    rays = _pixel_rays(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), W, H)
    return _FastView(np.ascontiguousarray(d), padded, valid if n < H * W else None, n, K, f.T_world_cam, rays, H, W)


def _relative_pose_np(T_world_src: np.ndarray, T_world_dst: np.ndarray) -> np.ndarray:
    """relative_pose() of one float64 pair in numpy, in the same operations: the small-matrix products
    are summed over k from 0.0 in order, as torch's bmm kernel for matrices this small does."""
    Rt = T_world_dst[:3, :3].T
    inv = np.zeros((4, 4))
    inv[:3, :3] = Rt
    nRt, t = -Rt, T_world_dst[:3, 3]
    inv[:3, 3] = ((0.0 + nRt[:, 0] * t[0]) + nRt[:, 1] * t[1]) + nRt[:, 2] * t[2]  # -R^T @ t
    inv[3, 3] = 1.0
    out = 0.0 + inv[:, 0:1] * T_world_src[0:1, :]  # inv @ T_world_src
    for k in range(1, 4):
        out = out + inv[:, k : k + 1] * T_world_src[k : k + 1, :]
    return out


@functools.lru_cache(maxsize=1)
def _relative_pose_np_is_exact() -> bool:
    """Does _relative_pose_np give relative_pose()'s float64 bits? Checked once on random rigid poses
    (where torch's kernel differs, e.g. with fused multiply-adds, the torch function is used instead)."""
    rng = np.random.default_rng(0)
    for k in range(64):
        T = []
        for _ in range(2):
            q = rng.normal(size=4)
            w, x, y, z = q / np.linalg.norm(q)
            P = np.eye(4)
            P[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                         [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                         [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
            P[:3, 3] = rng.normal(size=3) * 3 if k % 5 else 0.0
            T.append(P)
        want = relative_pose(torch.from_numpy(T[0])[None], torch.from_numpy(T[1])[None])[0].numpy()
        if want.tobytes() != _relative_pose_np(T[0], T[1]).tobytes():
            return False
    return True


def _relative_pose_f32(src: _FastView, dst: _FastView) -> np.ndarray:
    """[4, 4] float32 src -> dst camera transform: relative_pose() in float64, then rounded, as in warp()."""
    if _relative_pose_np_is_exact():
        return _relative_pose_np(src.T, dst.T).astype(np.float32)
    T = relative_pose(torch.from_numpy(src.T)[None].double(), torch.from_numpy(dst.T)[None].double())
    return T.to(torch.float32)[0].numpy()


def _target_index(u: np.ndarray, v: np.ndarray, W2: int, tmp: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Flat index into a NaN-bordered [H2 + 2, W2 + 2] target array of the pixel (round(u), round(v)) -> out
    viewed as int32 (out and tmp are float32 buffers like u; both are overwritten). A pixel outside the
    target image and NaN coordinates index the border or lie out of range, and take(mode="clip") maps
    those to a NaN corner.

    a = fl(u + _ROUND) is _ROUND + round(u) exactly for |u| < 2**22 (ties to even like torch.round,
    since _ROUND is even). Clamping a's bits into [bits(_ROUND - 1), bits(_ROUND + W2)] clamps round(u)
    into [-1, W2] (positive floats order like their bits); a larger |u|, +-inf and NaN (either sign)
    land on column -1 or W2, i.e. on the border. b = fl(round(v) * Wp + a) is then exact, integer
    valued and in [2**23, 2**24) while round(v) is in [-1, H2] (the caller keeps (H2 + 2) * Wp < 2**22),
    so bits(b) - bits(_ROUND) + Wp + 1 is the index. A v further out gives, by monotonic rounding, a
    float below row 0 or past the last row, so an index < 0 or >= (H2 + 2) * Wp (a negative float's
    bits are negative, and after the int32 wrap-around of the subtraction still far out of range);
    NaN bits are far out of range too.
    """
    Wp = W2 + 2
    np.add(u, _ROUND, out=tmp)
    a = tmp.view(np.int32)
    np.clip(a, np.int32(_ROUND_BITS - 1), np.int32(_ROUND_BITS + W2), out=a)  # round(u) into [-1, W2], on the bits
    np.rint(v, out=out)
    np.multiply(out, np.float32(Wp), out=out)
    np.add(out, tmp, out=out)
    idx = out.view(np.int32)
    return np.subtract(idx, np.int32(_ROUND_BITS - Wp - 1), out=idx)


def _affine(x, y, d, row, out: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """out = ((x row[0] + y row[1]) + d row[2]) + row[3] in float32, rounded after every operation."""
    np.multiply(x, row[0], out=out)
    np.multiply(y, row[1], out=scratch)
    np.add(out, scratch, out=out)
    np.multiply(d, row[2], out=scratch)
    np.add(out, scratch, out=out)
    return np.add(out, row[3], out=out)


def _fast_warp(src: _FastView, dst: _FastView, T: np.ndarray, cfg: CorrespondenceConfig, ws: _Workspace):
    """warp(src -> dst) of one pair, T = _relative_pose_f32(src, dst) -> (co-visible [H, W] bool, u, v [H, W]
    float32 target coordinates, meaningful where co-visible). All three are workspace buffers, valid
    until the next call for this image size in this thread."""
    b = ws.warp(src.height, src.width)
    x, y, X, Y, Z = b["x"], b["y"], b["X"], b["Y"], b["Z"]
    d = src.depth
    rx, ry = src.rays
    np.multiply(rx, d, out=x)  # unproject: x = ((u - cx) / fx) * d
    np.multiply(ry, d, out=y)
    _affine(x, y, d, T[0], X, Y)  # transform; a later component's buffer is the scratch
    _affine(x, y, d, T[1], Y, Z)
    _affine(x, y, d, T[2], Z, x)  # (x is last needed here, as the first operand)
    K = dst.K
    u, v = X, Y  # project: u = ((fx X) / Z) + cx, in place
    np.multiply(K[0, 0], X, out=u)
    np.divide(u, Z, out=u)
    np.add(u, K[0, 2], out=u)
    np.multiply(K[1, 1], Y, out=v)
    np.divide(v, Z, out=v)
    np.add(v, K[1, 2], out=v)
    zpos = None
    if max(cfg.min_depth, 1e-9) < 1e-6:  # otherwise z <= 1e-9 (NaN uv in warp()) fails the depth test on its own
        zpos = np.greater(Z, np.float32(1e-9), out=b["zpos"])
    idx = _target_index(u, v, dst.width, x, y)  # int32 view of y
    d2 = np.take(dst.padded.ravel(), idx, mode="clip", out=x)  # [H, W] target depth; NaN: invalid or outside
    np.subtract(d2, Z, out=d2)  # co-visible: |z - d2| <= rel_tol * z (NaN fails)
    np.abs(d2, out=d2)
    np.multiply(Z, np.float32(cfg.rel_tol), out=Z)
    ok = np.less_equal(d2, Z, out=b["ok"])
    if zpos is not None:
        np.logical_and(ok, zpos, out=ok)
    if src.valid is not None:
        np.logical_and(ok, src.valid, out=ok)
    return ok, u, v


def _pair_iou(n12: int, v1: int, n21: int, v2: int) -> float:
    """overlap_iou() of one pair from its counts, in the same float64 operations."""
    s1, s2 = float(v1), float(v2)
    f12 = float(n12) / max(s1, 1.0)
    f21 = float(n21) / max(s2, 1.0)
    n = (f12 * s1 + f21 * s2) / 2
    union = s1 + s2 - n
    return n / max(union, 1.0) if union > 0 else 0.0


def _correspond_torch(f1: Frame, f2: Frame, cfg: CorrespondenceConfig, device) -> Correspondences:
    """The general path of ``correspond``: ``warp`` both ways on any device (CPU or CUDA)."""
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
