"""Flow batches for FlowE: dense correspondences between two frames of a sequence.

Two sources of flow:

- :func:`geometric_flow` from registered RGB-D frames (depth + poses): exact up to sensor noise,
  with occlusion and forward-backward checks;
- a :class:`FlowEstimator` (any callable ``(rgb1, rgb2) -> (flow, valid)``) for frames without
  depth, e.g. :class:`FarnebackFlow` (OpenCV's dense optical flow with a forward-backward check).

Conventions (as in :mod:`regconsist_ros.registration.geometry`): pixels are (x = column, y = row)
with centres at integer coordinates; ``flow[:, y, x]`` is the (dx, dy) taking view-1 pixel (x, y)
to its sub-pixel position (x + dx, y + dy) in view 2; ``valid[y, x]`` says whether that is trusted.

:class:`FlowPairSampler` is the offline source of flow pairs of the ``flow_pairs`` batch kind
(FlowE): frames (registered RGB-D frames, or any ordered frames with an estimator) -> batches,
``sample(n, rng)``, or ``sampler(step)``, a pure function of (seed, step). :class:`FlowSourceConfig`
says where offline flow comes from (``flow.*``), :class:`FlowPairConfig` the batches (``<method>.batch.*``).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from regconsist_ros.registration.geometry import (CorrespondenceConfig, pixel_grid, project, transform, relative_pose,
                                                  valid_depth, warp)

INSIDE_EPS = 1e-6  # pixels: projections within this of the image border count as inside (round-off)


@dataclass
class FlowSourceConfig:
    """Where the flow between offline frames comes from, and which frame pairs get one."""

    source: Literal["geometric", "farneback"] = field(default="geometric", metadata={"help": "geometric: from depth + poses of a TUM RGB-D sequence; farneback: OpenCV optical flow of any ordered frames"})
    gap_min: int = field(default=1, metadata={"help": "smallest frame gap between the two frames of a pair"})
    gap_max: int = field(default=8, metadata={"help": "largest frame gap (capped at N-1)"})
    fb_tol: float = field(default=1.0, metadata={"help": "forward-backward consistency tolerance (pixels)"})

    def __post_init__(self):
        if not 1 <= self.gap_min <= self.gap_max:
            raise ValueError(f"FlowSourceConfig: need 1 <= gap_min <= gap_max, got {self.gap_min}, {self.gap_max}")
        if isinstance(self.fb_tol, bool) or not isinstance(self.fb_tol, (int, float)) or not (math.isfinite(self.fb_tol)
                                                                                              and self.fb_tol > 0):
            raise ValueError(f"FlowSourceConfig.fb_tol must be a positive number of pixels, got {self.fb_tol!r}")


@dataclass
class FlowPairConfig:
    """FlowE batches (the ``flow_pairs`` batch kind): frame pairs with the flow between them."""

    size: int = field(default=32, metadata={"help": "frame pairs per batch"})
    height: int = field(default=0, metadata={"help": "image and flow height (0: the frames' own)"})
    width: int = field(default=0, metadata={"help": "image and flow width (0: the frames' own)"})
    symmetric: bool = field(default=True, metadata={"help": "also the flow from view 2 to view 1 (FlowE symmetrises its loss)"})

    def __post_init__(self):
        from regconsist_ros.learning.frame_pairs import check_batch_size

        check_batch_size(self)


class FlowEstimator(Protocol):
    """Dense optical flow between two RGB images.

    ``__call__(rgb1 uint8 [H, W, 3], rgb2 uint8 [H, W, 3]) -> (flow float32 [2, H, W], valid bool [H, W])``
    with the conventions of this module (flow takes view-1 pixels to view 2).
    """

    def __call__(self, rgb1: np.ndarray, rgb2: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def _bilinear(img: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """img [B, C, H, W] at pixel coordinates uv [B, h, w, 2] -> [B, C, h, w] (bilinear, zeros outside)."""
    H, W = img.shape[-2:]
    g = torch.stack([2 * uv[..., 0] / max(W - 1, 1) - 1, 2 * uv[..., 1] / max(H - 1, 1) - 1], -1)
    return F.grid_sample(img, g.to(img.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)


def _inside(uv: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """uv [..., 2] within the pixel-centre box [0, W-1] x [0, H-1] (NaN -> False)."""
    e = INSIDE_EPS
    return (uv[..., 0] >= -e) & (uv[..., 0] <= W - 1 + e) & (uv[..., 1] >= -e) & (uv[..., 1] <= H - 1 + e)


def geometric_flow(f1, f2, fb_tol: float = 1.0, cfg: CorrespondenceConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flow from view 1 to view 2 from depth and poses -> (flow float32 [2, H, W], valid bool [H, W]).

    Each view-1 pixel is unprojected with its depth, moved into camera 2 (relative pose) and
    projected with K2: ``flow = uv2 - uv1`` (0 where invalid). Valid where
    :func:`~regconsist_ros.registration.geometry.warp` says co-visible (valid depth at both ends, in
    view, the projected depth agrees with view 2's depth at the nearest pixel within ``cfg.rel_tol``),
    the projection lies inside view 2's pixel-centre box (so bilinear reads have all neighbours), and
    forward-backward consistent: view 2's depth, bilinearly interpolated at uv2 (all four neighbours
    valid), unprojected and moved back into camera 1 projects within ``fb_tol`` pixels of the start.
    Computed in float64.
    """
    if not (isinstance(fb_tol, (int, float)) and math.isfinite(fb_tol) and fb_tol > 0):
        raise ValueError(f"geometric_flow: fb_tol must be a positive number of pixels, got {fb_tol!r}")
    cfg = cfg or CorrespondenceConfig()
    for name, f in (("view 1", f1), ("view 2", f2)):
        if getattr(f, "depth", None) is None:
            raise ValueError(f"geometric_flow: {name} has no depth; use a FlowEstimator for RGB-only frames")
    (H1, W1), (H2, W2) = f1.depth.shape, f2.depth.shape
    d1 = torch.from_numpy(np.asarray(f1.depth, dtype=np.float64))[None]  # [1, H1, W1]
    d2 = torch.from_numpy(np.asarray(f2.depth, dtype=np.float64))[None]
    K1 = torch.from_numpy(np.asarray(f1.intrinsics.K, dtype=np.float64))[None]  # [1, 3, 3]
    K2 = torch.from_numpy(np.asarray(f2.intrinsics.K, dtype=np.float64))[None]
    T1 = torch.from_numpy(np.asarray(f1.T_world_cam, dtype=np.float64))[None]  # [1, 4, 4]
    T2 = torch.from_numpy(np.asarray(f2.T_world_cam, dtype=np.float64))[None]

    w12 = warp(d1, d2, K1, K2, T1, T2, cfg)  # forward: uv [1, H1, W1, 2], NaN where not co-visible
    ok = w12.valid & _inside(w12.uv, H2, W2)  # [1, H1, W1]
    uv2 = torch.where(ok[..., None], w12.uv, torch.zeros_like(w12.uv))  # [1, H1, W1, 2]

    # backward with view 2's own depth at the sub-pixel landing point
    v2 = valid_depth(d2, cfg)  # [1, H2, W2]
    d2z = torch.where(v2, d2, torch.zeros_like(d2))
    z2 = _bilinear(d2z[:, None], uv2)[:, 0]  # [1, H1, W1]
    all_valid = _bilinear(v2[:, None].double(), uv2)[:, 0] >= 1 - 1e-9
    fx, fy, cx, cy = K2[0, 0, 0], K2[0, 1, 1], K2[0, 0, 2], K2[0, 1, 2]
    P2 = torch.stack([(uv2[..., 0] - cx) / fx * z2, (uv2[..., 1] - cy) / fy * z2, z2], -1)  # [1, H1, W1, 3]
    back, zb = project(transform(relative_pose(T2, T1), P2), K1)  # [1, H1, W1, 2]
    uv1 = pixel_grid(H1, W1, dtype=torch.float64)[None]  # [1, H1, W1, 2]
    err = (back - uv1).norm(dim=-1)  # NaN behind camera 1 -> comparison False
    ok = ok & all_valid & (zb > 0) & (err <= fb_tol)

    flow = torch.where(ok[..., None], uv2 - uv1, torch.zeros_like(uv2))[0].permute(2, 0, 1)  # [2, H1, W1]
    return flow.numpy().astype(np.float32), ok[0].numpy()


class FarnebackFlow:
    """OpenCV Farneback dense optical flow with a forward-backward consistency check.

    ``valid`` where the forward flow lands inside image 2 and the backward flow, bilinearly read
    there, brings the pixel back within ``fb_tol`` pixels. Needs ``cv2`` (opencv-python), imported
    when the estimator is built.
    """

    def __init__(self, fb_tol: float = 1.0, pyr_scale: float = 0.5, levels: int = 3, winsize: int = 15,
                 iterations: int = 3, poly_n: int = 5, poly_sigma: float = 1.2):
        try:
            import cv2
        except ImportError as e:
            raise ImportError("FarnebackFlow needs OpenCV: pip install opencv-python (or pass another "
                              "FlowEstimator)") from e
        if not (isinstance(fb_tol, (int, float)) and math.isfinite(fb_tol) and fb_tol > 0):
            raise ValueError(f"FarnebackFlow: fb_tol must be a positive number of pixels, got {fb_tol!r}")
        self.cv2 = cv2
        self.fb_tol = float(fb_tol)
        self.params = dict(pyr_scale=pyr_scale, levels=levels, winsize=winsize, iterations=iterations,
                           poly_n=poly_n, poly_sigma=poly_sigma, flags=0)

    def _flow(self, g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
        return self.cv2.calcOpticalFlowFarneback(g1, g2, None, **self.params)  # [H, W, 2] float32

    def __call__(self, rgb1: np.ndarray, rgb2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cv2 = self.cv2
        for name, im in (("rgb1", rgb1), ("rgb2", rgb2)):
            if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
                raise ValueError(f"FarnebackFlow: {name} must be uint8 [H, W, 3], got "
                                 f"{getattr(im, 'dtype', type(im))} {getattr(im, 'shape', '')}")
        if rgb1.shape != rgb2.shape:
            raise ValueError(f"FarnebackFlow: images differ in size: {rgb1.shape} and {rgb2.shape}")
        g1 = cv2.cvtColor(np.ascontiguousarray(rgb1), cv2.COLOR_RGB2GRAY)
        g2 = cv2.cvtColor(np.ascontiguousarray(rgb2), cv2.COLOR_RGB2GRAY)
        fw, bw = self._flow(g1, g2), self._flow(g2, g1)  # [H, W, 2] each
        H, W = g1.shape
        xs, ys = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
        mx, my = xs + fw[..., 0], ys + fw[..., 1]  # landing points in image 2
        back = cv2.remap(bw, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        err = np.hypot(fw[..., 0] + back[..., 0], fw[..., 1] + back[..., 1])
        inside = (mx >= 0) & (mx <= W - 1) & (my >= 0) & (my <= H - 1)
        valid = inside & (err <= self.fb_tol) & np.isfinite(fw).all(-1)
        flow = np.where(valid[..., None], fw, 0.0).transpose(2, 0, 1).astype(np.float32)
        return np.ascontiguousarray(flow), valid


def resize_flow(flow: np.ndarray, valid: np.ndarray, out_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Flow [2, H, W] and valid [H, W] of an H x W pair -> the same correspondence for both images
    resized to ``out_size`` = (h, w).

    Pixel centres scale as ``x' = (x + 0.5) * w / W - 0.5``, so the displacements scale by
    (w / W, h / H). Each output pixel reads flow and valid at the source pixel nearest to its exact
    source position (never interpolated, so invalid pixels do not bleed into valid ones); this is
    exact for locally constant flow and otherwise off by the flow's variation over half a source
    pixel (times the scale).
    """
    _, H, W = flow.shape
    h, w = out_size
    sx, sy = w / W, h / H
    xs = np.clip(np.rint((np.arange(w) + 0.5) / sx - 0.5), 0, W - 1).astype(np.int64)  # [w] nearest source columns
    ys = np.clip(np.rint((np.arange(h) + 0.5) / sy - 0.5), 0, H - 1).astype(np.int64)  # [h]
    v = valid[np.ix_(ys, xs)]  # [h, w]
    out = np.stack([flow[0][np.ix_(ys, xs)] * sx, flow[1][np.ix_(ys, xs)] * sy])  # [2, h, w]
    return np.where(v[None], out, 0.0).astype(np.float32), v.copy()


class FlowPairSampler:
    """FlowE batches from ordered frames: ``sampler(step) -> batch`` (or ``sample(n, rng)``).

    ``frames``: registered frames (``Frame``: colour, depth, pose) for geometric flow, or colour only
    (an array [N, H, W, 3] uint8 or an ``OrderedFrames``) with an optical-flow ``estimator``.

    Each sample is a frame pair (t, t + k), k uniform in ``[gap_min, min(gap_max, N-1)]``, t uniform in
    ``[0, N-1-k]``, in a random order (view 1 is the later frame half of the time). Frames are
    resized to ``out_size`` = (H, W) (antialiased bilinear); flows are computed at the frames' own
    resolution, by :func:`geometric_flow` from depth and poses, or by ``estimator`` when one is given
    (it is then used for every pair), and resized with :func:`resize_flow`. Flows are computed lazily
    and cached (at most ``cache_pairs`` ordered pairs, least recently used evicted); resized images
    are cached per frame.

    Batch: ``x1``, ``x2`` float32 [B, 3, H, W] in [0, 1]; ``flow`` float32 [B, 2, H, W] (view 1 ->
    view 2, output pixels); ``valid`` bool [B, 1, H, W]; with ``symmetric`` also ``flow21`` /
    ``valid21`` (view 2 -> view 1) so FlowE symmetrises its loss; ``index1`` / ``index2`` int64 [B].
    The draws come from ``numpy.random.default_rng([seed, step])`` only: equal (seed, step) give
    equal batches (distributed callers mix their rank into ``seed``).
    """

    def __init__(self, frames: Sequence, batch: int, out_size: tuple[int, int], gap_min: int = 1, gap_max: int = 8,
                 seed: int = 0, estimator: FlowEstimator | None = None, fb_tol: float = 1.0,
                 symmetric: bool = True, cache_pairs: int = 4096, cfg: CorrespondenceConfig | None = None):
        if isinstance(frames, np.ndarray) or hasattr(frames, "stamps"):  # [N, H, W, 3] or OrderedFrames: colour only
            self.frames, self.rgb = None, getattr(frames, "rgb", frames)
        else:
            self.frames = list(frames)
            self.rgb = [f.rgb for f in self.frames]
        if not 1 <= gap_min <= gap_max:
            raise ValueError(f"FlowPairSampler: need 1 <= gap_min <= gap_max, got gap_min={gap_min}, gap_max={gap_max}")
        if len(self.rgb) <= gap_min:
            raise ValueError(f"FlowPairSampler needs at least gap_min+1 = {gap_min + 1} frames, got {len(self.rgb)}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"FlowPairSampler: batch must be an integer >= 1, got {batch!r}")
        if len(out_size) != 2 or any(isinstance(s, bool) or int(s) != s or s < 2 for s in out_size):
            raise ValueError(f"FlowPairSampler: out_size must be (height, width) integers >= 2, got {out_size!r}")
        if not (isinstance(fb_tol, (int, float)) and math.isfinite(fb_tol) and fb_tol > 0):
            raise ValueError(f"FlowPairSampler: fb_tol must be a positive number of pixels, got {fb_tol!r}")
        if cache_pairs < 0:
            raise ValueError(f"FlowPairSampler: cache_pairs must be >= 0, got {cache_pairs}")
        shape = self.rgb[0].shape
        for i, rgb in enumerate(self.rgb):
            if rgb.shape != shape:
                raise ValueError(f"FlowPairSampler: frame {i} is {rgb.shape[:2]}, frame 0 is {shape[:2]}; "
                                 "all frames must have the same size")
        if estimator is None:
            missing = [i for i in range(len(self.rgb))
                       if self.frames is None or getattr(self.frames[i], "depth", None) is None]
            if missing:
                raise ValueError(
                    f"FlowPairSampler: {len(missing)} of {len(self.rgb)} frames have no depth (first: frame {missing[0]}); "
                    "geometric flow needs depth and poses, so an optical-flow estimator is needed for RGB-only "
                    "frames: pass estimator=FarnebackFlow() (OpenCV) or another FlowEstimator")
        self.batch = batch
        self.out_size = (int(out_size[0]), int(out_size[1]))
        self.gap_min, self.gap_max = gap_min, gap_max
        self.seed = seed
        self.estimator = estimator
        self.fb_tol = float(fb_tol)
        self.symmetric = symmetric
        self.cache_pairs = cache_pairs
        self.cfg = cfg or CorrespondenceConfig()
        self._flows: OrderedDict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._images: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.rgb)

    def image(self, i: int) -> torch.Tensor:
        """Frame i resized: float32 [3, H, W] in [0, 1] (cached)."""
        if i not in self._images:
            x = torch.from_numpy(np.array(self.rgb[i])).permute(2, 0, 1)[None]  # [1, 3, h, w] uint8
            if tuple(x.shape[-2:]) != self.out_size:
                x = F.interpolate(x, size=self.out_size, mode="bilinear", align_corners=False, antialias=True)
            self._images[i] = x[0].float().div_(255.0)
        return self._images[i]

    def flow(self, i: int, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Flow frame i -> frame j at out_size: (float32 [2, H, W], bool [1, H, W]) (cached)."""
        key = (i, j)
        if key in self._flows:
            self._flows.move_to_end(key)
            return self._flows[key]
        if self.estimator is not None:
            flow, valid = self.estimator(self.rgb[i], self.rgb[j])
        else:
            flow, valid = geometric_flow(self.frames[i], self.frames[j], self.fb_tol, self.cfg)
        flow, valid = np.asarray(flow, dtype=np.float32), np.asarray(valid, dtype=bool)
        H, W = self.rgb[i].shape[:2]
        if flow.shape != (2, H, W) or valid.shape != (H, W):
            raise ValueError(f"FlowPairSampler: flow estimator returned flow {flow.shape} and valid {valid.shape}, "
                             f"expected (2, {H}, {W}) and ({H}, {W})")
        flow, valid = resize_flow(flow, valid, self.out_size)
        out = (torch.from_numpy(flow), torch.from_numpy(valid)[None])
        if self.cache_pairs:
            self._flows[key] = out
            if len(self._flows) > self.cache_pairs:
                self._flows.popitem(last=False)
        return out

    def pairs(self, step: int, rng: np.random.Generator | None = None, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Frame indices (view 1 [B], view 2 [B]) of the batch at ``step`` (or drawn from ``rng``)."""
        rng = rng if rng is not None else np.random.default_rng([self.seed, step])
        N, B = len(self.rgb), n or self.batch
        gap = rng.integers(self.gap_min, min(self.gap_max, N - 1) + 1, size=B)  # [B]
        t = rng.integers(0, N - gap)  # [B] in [0, N-1-gap]
        swap = rng.random(B) < 0.5
        i, j = np.where(swap, t + gap, t), np.where(swap, t, t + gap)
        return i.astype(np.int64), j.astype(np.int64)

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        return self._batch(*self.pairs(step))

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """A batch of ``n`` pairs drawn from ``rng`` (what the ``flow_pairs`` batch builder asks for)."""
        return self._batch(*self.pairs(0, rng, n))

    def _batch(self, i: np.ndarray, j: np.ndarray) -> dict[str, torch.Tensor]:
        fw = [self.flow(a, b) for a, b in zip(i.tolist(), j.tolist())]
        batch = {
            "x1": torch.stack([self.image(a) for a in i.tolist()]),  # [B, 3, H, W]
            "x2": torch.stack([self.image(b) for b in j.tolist()]),
            "flow": torch.stack([f for f, _ in fw]),  # [B, 2, H, W]
            "valid": torch.stack([v for _, v in fw]),  # [B, 1, H, W]
            "index1": torch.from_numpy(i),
            "index2": torch.from_numpy(j),
        }
        if self.symmetric:
            bw = [self.flow(b, a) for a, b in zip(i.tolist(), j.tolist())]
            batch["flow21"] = torch.stack([f for f, _ in bw])
            batch["valid21"] = torch.stack([v for _, v in bw])
        return batch
