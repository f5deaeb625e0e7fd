"""Augmentations on image batches in torch. Photometric ones leave pixels where they are;
geometric ones (horizontal flip) return the flip flags so pixel coordinates can move with them;
:class:`ViewAugment` makes the two random views of SimCLR / BYOL."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PhotometricAug:
    """Colour jitter, random grayscale and Gaussian blur, each sample with its own parameters."""

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1  # fraction of a full turn of the colour wheel (approximated by RGB rotation)
    p_jitter: float = 0.8
    p_gray: float = 0.2
    p_blur: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 1.5)

    @classmethod
    def strong(cls) -> "PhotometricAug":
        return cls()

    @classmethod
    def weak(cls) -> "PhotometricAug":
        return cls(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p_jitter=0.5, p_gray=0.0, p_blur=0.1)

    def __call__(self, x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        """x [B, 3, H, W] in [0, 1] -> augmented copy, same shape."""
        B = x.shape[0]

        def u(lo, hi, shape=(B, 1, 1, 1)):
            return lo + (hi - lo) * torch.rand(shape, generator=g, device=x.device)

        on = (torch.rand((B, 1, 1, 1), generator=g, device=x.device) < self.p_jitter).float()
        gray = x.mul(torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
        y = x * (1 + on * u(-self.brightness, self.brightness))
        mean = gray.mean((2, 3), keepdim=True)
        y = (y - mean) * (1 + on * u(-self.contrast, self.contrast)) + mean
        g2 = y.mul(torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
        y = (y - g2) * (1 + on * u(-self.saturation, self.saturation)) + g2
        if self.hue > 0:  # rotate colours about the grey axis
            ang = on.view(B) * u(-self.hue, self.hue, (B,)) * 2 * torch.pi
            k = torch.ones(3, device=x.device) / 3**0.5
            K = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], device=x.device)
            R = (torch.eye(3, device=x.device) + torch.sin(ang).view(B, 1, 1) * K
                 + (1 - torch.cos(ang)).view(B, 1, 1) * (K @ K))  # [B, 3, 3] Rodrigues
            y = torch.einsum("bij,bjhw->bihw", R, y)
        if self.p_gray > 0:
            to_gray = (torch.rand((B, 1, 1, 1), generator=g, device=x.device) < self.p_gray).float()
            gy = y.mul(torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
            y = to_gray * gy.expand_as(y) + (1 - to_gray) * y
        y = y.clamp(0, 1)
        if self.p_blur > 0:
            blur = torch.rand(B, generator=g) < self.p_blur
            for b in torch.nonzero(blur).flatten().tolist():
                s = float(u(*self.blur_sigma, (1,)))
                y[b : b + 1] = gaussian_blur(y[b : b + 1], s)
        return y


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of x [B, C, H, W] (reflect padding)."""
    r = max(1, int(round(2 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    C = x.shape[1]
    x = F.pad(x, (r, r, 0, 0), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    x = F.pad(x, (0, 0, r, r), mode="reflect")
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)


def hflip_with_points(x: torch.Tensor, pts: torch.Tensor, flip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip images x [B, C, H, W] where flip [B] is True, and move pixel coordinates pts [B, N, 2]
    (x = column, y = row) with them: x -> W - 1 - x."""
    W = x.shape[-1]
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    px = torch.where(flip.view(-1, 1), W - 1 - pts[..., 0], pts[..., 0])
    return x, torch.stack([px, pts[..., 1]], -1)


# ---- two-view augmentation (SimCLR / BYOL) -----------------------------------------------------------
def random_resized_crop(x: torch.Tensor, scale: tuple[float, float] = (0.2, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), hflip: float = 0.5,
                        g: torch.Generator | None = None) -> torch.Tensor:
    """Batched random-resized crop (+ horizontal flip) of x [B, C, H, W], back to H x W (bilinear).

    Per sample: area fraction uniform in ``scale``, aspect (w/h, relative to the image's) log-uniform
    in ``ratio``; crop sides as fractions of the image sides are sqrt(area * aspect) and
    sqrt(area / aspect), clipped to 1 (instead of torchvision's rejection sampling; clipping can only
    shrink the area); position uniform among the placements inside the image; flipped with
    probability ``hflip``. One ``grid_sample`` for the batch; the full-image crop without flip is the
    identity. Randomness: one ``torch.rand((B, 5))`` from ``g`` (on x's device)."""
    B = x.shape[0]
    u = torch.rand((B, 5), generator=g, device=x.device, dtype=torch.float32)  # area, aspect, cx, cy, flip
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    aspect = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1])
    fw = torch.sqrt(area * aspect).clamp(max=1.0)  # [B] crop width / image width
    fh = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (1.0 - fw) * (2.0 * u[:, 2] - 1.0)  # crop centre in [-1, 1] coordinates, crop inside the image
    cy = (1.0 - fh) * (2.0 * u[:, 3] - 1.0)
    sx = torch.where(u[:, 4] < hflip, -fw, fw)
    theta = torch.zeros(B, 2, 3, device=x.device, dtype=torch.float32)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, fh, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # [B, H, W, 2] output -> source
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)


@dataclass(frozen=True)
class ViewAugment:
    """SimCLR/BYOL-style views on image tensors: random-resized crop + flip, then colour jitter,
    random grayscale and Gaussian blur (:class:`PhotometricAug`). x [B, 3, H, W] in [0, 1] -> same
    shape, in [0, 1], no gradient; deterministic given the generator ``g`` (on x's device)."""

    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    photometric: PhotometricAug | None = PhotometricAug()

    def __call__(self, x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            y = random_resized_crop(x.float(), self.scale, self.ratio, self.hflip, g)
            if self.photometric is not None:
                y = self.photometric(y, g)
            return y.clamp(0.0, 1.0)
