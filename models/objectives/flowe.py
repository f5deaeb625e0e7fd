"""FlowE: flow-equivariant dense self-supervision (Xiong et al., CVPR 2021), BYOL-style.

A batch holds two frames of a video (x1, x2) and the dense correspondence between them: ``flow``
moves each view-1 pixel to its position in view 2 and ``valid`` says where that is trusted (the
batch builder, :mod:`regconsist_ros.learning.flow_pairs`, removes occluded, out-of-view and
forward-backward-inconsistent pixels). Each view also gets its own random similarity transform
(scale, rotation about the image centre, optional translation). The online network (DeepLabV3+
features -> 1x1-conv projector -> 1x1-conv predictor) of augmented view 1 must match, at every
pixel, the target network's (EMA copy of encoder + projector) projection of augmented view 2
sampled where that pixel lands: the representation is *equivariant* to the flow and to the
augmentations, not invariant to them.

Coordinates and directions
--------------------------
Pixels are (x = column, y = row) with centres at integer coordinates, as everywhere in the
project. An affine ``A`` ([3, 3], homogeneous pixel coordinates) maps a pixel of the *original*
image to its pixel in the *augmented* image: ``q = A p``; :func:`warp_image` renders the augmented
image by pulling, ``aug(q) = img(A^-1 q)``. The flow ``M`` maps a view-1 pixel to a view-2 pixel,
``M(p) = p + flow(p)``. The correspondence from augmented view 1 to augmented view 2 is therefore

    T = A2 o M o A1^-1        (q1 -> A1^-1 q1 = p1 -> M(p1) = p2 -> A2 p2 = q2),

with ``o`` the usual right-to-left composition. This is the issue's ``T = A1^-1 o M o A2`` read in
the other direction (left-to-right, the order in which the maps are applied to a pixel of augmented
view 1). :func:`compose_grid` evaluates T at every output cell of augmented view 1 and returns a
``grid_sample`` grid into augmented view 2; :func:`sample` pulls the target map through it, so
``sample(z2, grid)[q1] = z2(T(q1))``.

``grid_sample`` runs with ``align_corners=True`` throughout: normalised -1 / +1 are the centres of
the first / last pixel of the map, which is the integer-pixel-centre convention. A map coarser
than the image (the stride-4 feature map) covers the same field of view: its cell (i, j) has its
centre at image pixel ((j + 0.5) * W / w - 0.5, (i + 0.5) * H / h - 0.5).

Loss
----
``2 - 2 cos(predictor(online(aug1))[q1], target(aug2)[T(q1)])`` per feature cell, averaged over
cells that are valid: the flow is valid at ``A1^-1 q1`` (all bilinear neighbours), ``A1^-1 q1`` lies
inside view 1, ``M(p1)`` inside view 2, and ``T(q1)`` inside augmented view 2. If the batch also has
``flow21`` / ``valid21`` (view 2 -> view 1) the loss is symmetrised by swapping the roles of the
views (same affines) and averaging; without them it is computed one way only (the flow is not
inverted here: an inverse needs the occlusion reasoning the batch builder already does).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from regconsist_ros.models.deeplab import DeepLabConfig, DeepLabV3Plus, normalize_images
from regconsist_ros.models.methods import DENSE_CROP, DENSE_TRAINER, Method

VALID_EPS = 1e-4  # a bilinearly sampled validity mask counts as valid when >= 1 - VALID_EPS


@dataclass
class FlowEConfig:
    """FlowE's target momentum, heads and augmentation ranges (paper-style defaults)."""

    ema: float = field(default=0.99, metadata={"help": "base target momentum; cosine-increased to 1 over training (BYOL)"})
    proj_dim: int = field(default=256, metadata={"help": "projection / prediction channels"})
    hidden: int = field(default=512, metadata={"help": "hidden channels of the 1x1-conv projector and predictor"})
    scale: tuple[float, ...] = field(default=(0.5, 2.0), metadata={"help": "per-view zoom range (lo hi), log-uniform"})
    rotation: float = field(default=30.0, metadata={"help": "per-view rotation range +- degrees about the image centre"})
    translation: float = field(default=0.0, metadata={"help": "per-view translation range +- fraction of the image size"})

    def __post_init__(self):
        name = type(self).__name__
        if isinstance(self.ema, bool) or not isinstance(self.ema, (int, float)) or not 0.0 <= self.ema <= 1.0:
            raise ValueError(f"{name}.ema must be a momentum in [0, 1], got {self.ema!r}")
        for f in ("proj_dim", "hidden"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}.{f} must be an integer >= 1, got {v!r}")
        if isinstance(self.scale, list):
            self.scale = tuple(self.scale)
        ok = isinstance(self.scale, tuple) and len(self.scale) == 2 and all(
            not isinstance(s, bool) and isinstance(s, (int, float)) and math.isfinite(s) for s in self.scale)
        if not ok or not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"{name}.scale must be (lo, hi) with 0 < lo <= hi, got {self.scale!r}")
        self.scale = (float(self.scale[0]), float(self.scale[1]))
        if isinstance(self.rotation, bool) or not isinstance(self.rotation, (int, float)) or not 0 <= self.rotation <= 180:
            raise ValueError(f"{name}.rotation must be in [0, 180] degrees, got {self.rotation!r}")
        if isinstance(self.translation, bool) or not isinstance(self.translation, (int, float)) or not 0 <= self.translation < 1:
            raise ValueError(f"{name}.translation must be a fraction in [0, 1), got {self.translation!r}")


# ---- geometry (pure functions) ----------------------------------------------------------------------
def affine_matrices(B: int, scale: tuple[float, float], rotation: float, generator: torch.Generator | None = None,
                    *, size: tuple[int, int] | None = None, translation: float = 0.0) -> torch.Tensor:
    """``B`` random similarity transforms -> [B, 3, 3] float32 (original pixel -> augmented pixel).

    Scale log-uniform in ``scale``, rotation uniform in +-``rotation`` degrees, both about the image
    centre ((W-1)/2, (H-1)/2) of ``size`` = (H, W) (about the origin when ``size`` is None), then a
    translation uniform in +-``translation`` times the image size (needs ``size``). Draws on the CPU
    from ``generator`` (torch's global generator when None), always 4 numbers per sample.
    """
    u = torch.rand(B, 4, generator=generator, dtype=torch.float64)  # [B, 4] in [0, 1)
    lo, hi = math.log(scale[0]), math.log(scale[1])
    s = torch.exp(lo + (hi - lo) * u[:, 0])  # [B]
    a = torch.deg2rad((2 * u[:, 1] - 1) * rotation)  # [B]
    c, sn = s * torch.cos(a), s * torch.sin(a)
    A = torch.zeros(B, 3, 3, dtype=torch.float64)
    A[:, 0, 0], A[:, 0, 1], A[:, 1, 0], A[:, 1, 1], A[:, 2, 2] = c, -sn, sn, c, 1.0
    if size is not None:
        H, W = size
        ctr = torch.tensor([(W - 1) / 2, (H - 1) / 2], dtype=torch.float64)
        shift = (2 * u[:, 2:] - 1) * translation * torch.tensor([W, H], dtype=torch.float64)  # [B, 2]
        A[:, :2, 2] = ctr - A[:, :2, :2] @ ctr + shift  # q = R s (p - c) + c + shift
    elif translation:
        raise ValueError("affine_matrices: a translation needs the image size")
    return A.float()


def apply_affine(A: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """A [B, 3, 3] applied to pixel points pts [B, ..., 2] -> [B, ..., 2].

    Written elementwise, not as a matmul, so that autocast (bf16) never rounds pixel coordinates."""
    B = pts.shape[0]
    a = A.to(pts.dtype).reshape((B,) + (1,) * (pts.dim() - 2) + (3, 3))  # broadcast over the point dims
    x, y = pts[..., 0], pts[..., 1]
    return torch.stack([a[..., 0, 0] * x + a[..., 0, 1] * y + a[..., 0, 2],
                        a[..., 1, 0] * x + a[..., 1, 1] * y + a[..., 1, 2]], -1)


def cell_centres(h: int, w: int, H: int, W: int, device=None) -> torch.Tensor:
    """Centres of the cells of an h x w map covering an H x W image, in image pixels -> [h, w, 2] (x, y)."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * (H / h) - 0.5
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * (W / w) - 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], -1)


def to_grid(pts: torch.Tensor, h: int, w: int, H: int, W: int) -> torch.Tensor:
    """Image pixel coordinates [..., 2] -> ``grid_sample`` coordinates (align_corners=True) of an
    h x w map covering the H x W image."""
    x = (pts[..., 0] + 0.5) * (w / W) - 0.5  # map cell coordinates
    y = (pts[..., 1] + 0.5) * (h / H) - 0.5
    return torch.stack([2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], -1)


def sample(feat: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """feat [B, C, h, w] at grid [B, H', W', 2] (normalised, align_corners=True) -> [B, C, H', W'];
    bilinear, zeros outside."""
    return F.grid_sample(feat, grid.to(feat.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)


def warp_image(img: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """Augmented image ``aug(q) = img(A^-1 q)``: img [B, C, H, W], A [B, 3, 3] (original -> augmented
    pixels) -> [B, C, H, W], bilinear, zeros where ``A^-1 q`` falls outside the image."""
    B, _, H, W = img.shape
    q = cell_centres(H, W, H, W, img.device).expand(B, H, W, 2)  # [B, H, W, 2] integer pixels
    p = apply_affine(torch.linalg.inv(A.double()).to(q), q)  # [B, H, W, 2] original pixels
    return sample(img, to_grid(p, H, W, H, W))


def compose_grid(flow: torch.Tensor, A1: torch.Tensor, A2: torch.Tensor, H: int, W: int,
                 valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each cell of augmented view 1 lands in augmented view 2: ``T = A2 o M o A1^-1``.

    flow [B, 2, Hi, Wi] (x, y) pixel displacements view 1 -> view 2 at image resolution; A1, A2
    [B, 3, 3] original -> augmented pixels; (H, W) the size of the map the grid is for (the image,
    or a coarser feature map covering it); valid [B, 1, Hi, Wi] bool (None: all valid). Returns
    ``grid`` [B, H, W, 2], ``grid_sample`` coordinates (align_corners=True) into an H x W map of
    augmented view 2, and ``inside`` [B, H, W] bool: the flow is valid at ``A1^-1 q1`` (every
    bilinear neighbour), and ``A1^-1 q1``, ``M(A1^-1 q1)`` and ``T(q1)`` lie inside their images.
    The grid is finite everywhere (-2, i.e. zeros when sampled, where T is undefined).
    """
    B, _, Hi, Wi = flow.shape
    flow = flow.float()
    ok = torch.ones(B, 1, Hi, Wi, dtype=torch.bool, device=flow.device) if valid is None else valid.bool()
    ok = ok & torch.isfinite(flow).all(1, keepdim=True)
    flow = torch.where(ok, flow, torch.zeros_like(flow))  # garbage under invalid pixels must not leak
    q1 = cell_centres(H, W, Hi, Wi, flow.device).expand(B, H, W, 2)  # [B, H, W, 2] image pixels of aug view 1
    p1 = apply_affine(torch.linalg.inv(A1.double()).to(q1), q1)  # original view-1 pixels
    g1 = to_grid(p1, Hi, Wi, Hi, Wi)  # [B, H, W, 2] into the image-resolution flow
    fl = sample(flow, g1).permute(0, 2, 3, 1)  # [B, H, W, 2]
    v = sample(ok.float(), g1)[:, 0] >= 1 - VALID_EPS  # [B, H, W]
    p2 = p1 + fl  # view-2 pixels
    q2 = apply_affine(A2.to(p2), p2)  # augmented view-2 pixels

    def within(p, lo_x, hi_x, lo_y, hi_y):
        return (p[..., 0] >= lo_x) & (p[..., 0] <= hi_x) & (p[..., 1] >= lo_y) & (p[..., 1] <= hi_y)

    grid = to_grid(q2, H, W, Hi, Wi)
    inside = (v & within(p1, 0, Wi - 1, 0, Hi - 1) & within(p2, 0, Wi - 1, 0, Hi - 1)
              & within(grid, -1, 1, -1, 1))
    grid = torch.where(torch.isfinite(grid), grid, torch.full_like(grid, -2.0))
    return grid, inside


def masked_cosine_loss(p: torch.Tensor, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``2 - 2 cos(p, z)`` over the cells where mask: p, z [B, C, h, w], mask [B, h, w] bool.
    Cells outside the mask are never read (NaN there cannot leak into the loss or its gradient);
    0 (with a graph) when no cell is valid."""
    ps = p.permute(0, 2, 3, 1)[mask].float()  # [n, C]
    zs = z.permute(0, 2, 3, 1)[mask].float()
    if ps.shape[0] == 0:
        return p.float().sum() * 0.0
    return (2 - 2 * F.cosine_similarity(ps, zs, dim=1, eps=1e-6)).mean()


# ---- model ----------------------------------------------------------------------------------------
def conv_mlp(cin: int, hidden: int, cout: int) -> nn.Sequential:
    """Per-pixel MLP: 1x1 conv -> BN -> ReLU -> 1x1 conv."""
    return nn.Sequential(nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
                         nn.Conv2d(hidden, cout, 1))


class FlowE(nn.Module):
    """Objective: ``forward({"x1", "x2", "flow", "valid"[, "flow21", "valid21"]}) -> (loss, logs)``;
    ``encoder`` is the online DeepLabV3+ that readouts use; ``target_encoder`` / ``target_projector``
    follow it by EMA in :meth:`after_step`."""

    encoder_kind = "deeplabv3plus"

    def __init__(self, cfg: FlowEConfig | None = None, encoder_cfg: DeepLabConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or FlowEConfig()
        self.encoder_config = ec = encoder_cfg or DeepLabConfig(output_stride=8, num_classes=0)
        self.encoder = DeepLabV3Plus(ec)
        D = self.encoder.feature_dim
        self.projector = conv_mlp(D, cfg.hidden, cfg.proj_dim)
        self.predictor = conv_mlp(cfg.proj_dim, cfg.hidden, cfg.proj_dim)
        self.target_encoder = copy.deepcopy(self.encoder)
        self.target_projector = copy.deepcopy(self.projector)
        for p in self.target_parameters():
            p.requires_grad_(False)

    def online_pairs(self):
        """(online, target) module pairs updated by EMA."""
        return ((self.encoder, self.target_encoder), (self.projector, self.target_projector))

    def target_parameters(self):
        for _, t in self.online_pairs():
            yield from t.parameters()

    # ---- named stages -------------------------------------------------------------------------------
    def augment(self, x1: torch.Tensor, x2: torch.Tensor, generator: torch.Generator | None = None):
        """Random affines A1, A2 [B, 3, 3] (on x1's device) and the augmented views [B, 3, H, W]."""
        B, _, H, W = x1.shape
        c = self.cfg
        A = affine_matrices(2 * B, c.scale, c.rotation, generator, size=(H, W), translation=c.translation).to(x1.device)
        A1, A2 = A[:B], A[B:]
        return A1, A2, warp_image(x1, A1), warp_image(x2, A2)

    def forward_online(self, x: torch.Tensor) -> torch.Tensor:
        """Augmented images [B, 3, H, W] in [0, 1] -> predictions [B, P, H/4, W/4]."""
        return self.predictor(self.projector(self.encoder.forward_features(normalize_images(x))))

    @torch.no_grad()
    def forward_target(self, x: torch.Tensor) -> torch.Tensor:
        """Augmented images [B, 3, H, W] in [0, 1] -> target projections [B, P, H/4, W/4] (no grad)."""
        return self.target_projector(self.target_encoder.forward_features(normalize_images(x)))

    def forward_loss(self, pred: torch.Tensor, target: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor | None,
                     A_src: torch.Tensor, A_dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss of predictions of the augmented source view against the target map of the augmented
        destination view, pulled back through the flow -> (loss, valid fraction of cells)."""
        h, w = pred.shape[-2:]
        grid, inside = compose_grid(flow, A_src, A_dst, h, w, valid)  # [B, h, w, 2], [B, h, w]
        z = sample(target.float(), grid)  # [B, P, h, w]: target(T(q1)) at every cell q1
        return masked_cosine_loss(pred, z, inside), inside.float().mean()

    def forward(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        x1, x2 = batch["x1"], batch["x2"]  # [B, 3, H, W] in [0, 1]
        if x1.shape != x2.shape or x1.ndim != 4:
            raise ValueError(f"FlowE: x1 and x2 must both be [B, 3, H, W], got {tuple(x1.shape)} and {tuple(x2.shape)}")
        flow, valid = batch["flow"], batch.get("valid")  # [B, 2, H, W], [B, 1, H, W]
        if flow.shape != (x1.shape[0], 2) + x1.shape[2:]:
            raise ValueError(f"FlowE: flow must be [B, 2, H, W] = {(x1.shape[0], 2) + tuple(x1.shape[2:])}, got {tuple(flow.shape)}")
        A1, A2, a1, a2 = self.augment(x1, x2, generator)
        symmetric = "flow21" in batch
        views = torch.cat([a1, a2]) if symmetric else a1
        pred = self.forward_online(views)  # [(2)B, P, h, w]
        target = self.forward_target(torch.cat([a2, a1]) if symmetric else a2)
        B = x1.shape[0]
        loss, frac = self.forward_loss(pred[:B], target[:B], flow, valid, A1, A2)
        if symmetric:
            loss21, frac21 = self.forward_loss(pred[B:], target[B:], batch["flow21"], batch.get("valid21"), A2, A1)
            loss, frac = (loss + loss21) / 2, (frac + frac21) / 2
        return loss, {"flowe": loss.detach(), "valid_frac": frac.detach()}

    # ---- target update ------------------------------------------------------------------------------
    def momentum(self, step: int, total_steps: int) -> float:
        """BYOL's schedule: tau = 1 - (1 - ema) * (cos(pi * step / total) + 1) / 2."""
        t = min(max(step / max(total_steps, 1), 0.0), 1.0)
        return 1.0 - (1.0 - self.cfg.ema) * (math.cos(math.pi * t) + 1.0) / 2.0

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        """target <- tau * target + (1 - tau) * online (parameters); buffers (BN statistics) are copied."""
        tau = self.momentum(step, total_steps)
        for online, target in self.online_pairs():
            for po, pt in zip(online.parameters(), target.parameters()):
                pt.mul_(tau).add_(po.detach(), alpha=1.0 - tau)
            for bo, bt in zip(online.buffers(), target.buffers()):
                bt.copy_(bo)


METHOD = Method(
    name="flowe", config=FlowEConfig, objective=FlowE, batch="flow_pairs",
    encoder=DeepLabConfig(output_stride=8, num_classes=0), trainer=DENSE_TRAINER, batch_settings=DENSE_CROP,
    summary="flow equivariance (BYOL-style dense targets warped by the flow between frames), DeepLabV3+ encoder")
