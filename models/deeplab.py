"""DeepLabV3+ (Chen et al., ECCV 2018) on a ResNet backbone: the dense encoder of RegConsist.

Named stages (all take *normalized* images, see :func:`normalize_images`):

- ``forward_features(x [B, 3, H, W]) -> [B, D, H/4, W/4]``: the decoder output, the feature before
  the classifier (D = ``decoder_channels``);
- ``dense_features(x) -> [B, D, H, W]``: ``forward_features`` resized to the input resolution with
  NEAREST interpolation (what the RegConsist paper feeds to the pixel-pair loss);
- ``forward(x) -> [B, num_classes, H, W]``: 1x1 classifier on ``forward_features``, bilinearly
  upsampled (``align_corners=False``) to the input size.

Architecture: backbone -> ASPP (1x1 conv, three 3x3 atrous convs at ``aspp_rates``, image pooling,
concat -> 1x1 projection + BN + ReLU + dropout 0.1) -> decoder (low-level layer1 features reduced
to 48 channels by 1x1 conv-BN-ReLU, ASPP output upsampled bilinearly to their size, concat, two 3x3
conv-BN-ReLU -> D channels) -> classifier (1x1 conv D -> num_classes).

The image-pooling branch is 1x1 conv + ReLU *without* BN: BatchNorm over a 1x1 map is undefined
for a training batch of one image, and online learning sometimes has one.

Spatial sizes: ``forward_features`` is ``ceil(H/4) x ceil(W/4)`` (exactly H/4 x W/4 when 4 divides
the sides); inputs with sides divisible by ``output_stride`` avoid uneven padding in the backbone.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from regconsist_ros.models.resnet import ResNet, ResNetConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LOW_LEVEL_CHANNELS = 48  # decoder: 1x1 reduction of the layer1 features (paper value)
ASPP_DROPOUT = 0.1
BACKBONES = {"resnet18": 18, "resnet50": 50}


def normalize_images(x: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std normalization of float images ``[B, 3, H, W]`` in [0, 1]."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"normalize_images expects [B, 3, H, W], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"normalize_images expects float images in [0, 1], got dtype {x.dtype}")
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def normalize(rgb: torch.Tensor) -> torch.Tensor:
    """Model input from camera images: uint8 ``[B, H, W, 3]`` / ``[H, W, 3]`` (0..255) or float
    ``[B, 3, H, W]`` (0..1) -> normalized float32 ``[B, 3, H, W]``."""
    if rgb.dtype == torch.uint8:
        if rgb.ndim == 3:
            rgb = rgb[None]
        if rgb.ndim != 4 or rgb.shape[-1] != 3:
            raise ValueError(f"normalize: uint8 images must be [B, H, W, 3] or [H, W, 3], got {tuple(rgb.shape)}")
        rgb = rgb.permute(0, 3, 1, 2).float().div_(255.0)  # [B, 3, H, W]
    return normalize_images(rgb)


@dataclass
class DeepLabConfig:
    """DeepLabV3+ dense encoder (+ optional segmentation classifier)."""

    kind: ClassVar[str] = "deeplabv3plus"

    backbone: Literal["resnet18", "resnet50"] = field(default="resnet18", metadata={"help": "ResNet backbone"})
    width: float = field(default=1.0, metadata={"help": "backbone channel multiplier (e.g. 0.5 on CPU)"})
    output_stride: Literal[8, 16] = field(default=16, metadata={"help": "backbone output stride: 16 or 8"})
    aspp_channels: int = field(default=256, metadata={"help": "channels of each ASPP branch and of its projection"})
    aspp_rates: tuple[int, ...] = field(default=(6, 12, 18), metadata={"help": "ASPP atrous rates at output stride 16 (doubled at 8)"})
    decoder_channels: int = field(default=256, metadata={"help": "decoder output channels = feature dimension D"})
    num_classes: int = field(default=32, metadata={"help": "segmentation classes of the 1x1 classifier (0: no classifier)"})

    def __post_init__(self):
        name = type(self).__name__
        if self.backbone not in BACKBONES:
            raise ValueError(f"{name}.backbone must be one of {sorted(BACKBONES)}, got {self.backbone!r}")
        if isinstance(self.width, bool) or not isinstance(self.width, (int, float)) or not self.width > 0:
            raise ValueError(f"{name}.width must be a positive number, got {self.width!r}")
        if self.output_stride not in (8, 16):
            raise ValueError(f"{name}.output_stride must be 8 or 16, got {self.output_stride!r}")
        for f in ("aspp_channels", "decoder_channels"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}.{f} must be an integer >= 1, got {v!r}")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise ValueError(f"{name}.num_classes must be an integer >= 0, got {self.num_classes!r}")
        if isinstance(self.aspp_rates, list):
            self.aspp_rates = tuple(self.aspp_rates)
        if (not isinstance(self.aspp_rates, tuple) or not self.aspp_rates
                or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in self.aspp_rates)):
            raise ValueError(f"{name}.aspp_rates must be a non-empty tuple of integers >= 1, got {self.aspp_rates!r}")

    @classmethod
    def small(cls, **overrides) -> "DeepLabConfig":
        """A CPU-sized configuration: resnet18 at width 0.5, os16, 128-channel ASPP and decoder."""
        values = dict(backbone="resnet18", width=0.5, output_stride=16, aspp_channels=128, decoder_channels=128)
        values.update(overrides)
        return cls(**values)

    def backbone_config(self) -> ResNetConfig:
        return ResNetConfig(depth=BACKBONES[self.backbone], width=self.width, output_stride=self.output_stride)

    def effective_rates(self) -> tuple[int, ...]:
        """ASPP rates at this output stride (``aspp_rates`` are given for 16 and doubled at 8)."""
        return tuple(r * 16 // self.output_stride for r in self.aspp_rates)


class AtrousConv2d(nn.Conv2d):
    """A dilated convolution (stride 1, 'same' padding) that skips the taps lying wholly in the zero padding.

    With dilation d >= the map's height, the kernel rows at offsets +-d read only padding for every output
    pixel (y + d >= h and y - d < 0), so the convolution equals that of the kernel's centre row without
    padding in y; the same holds for columns. Outputs and gradients are those of ``nn.Conv2d`` (the skipped
    products are exact zeros; the off-centre weights get zero gradient either way), with fewer multiply-adds:
    ASPP's rates 12 and 18 on a 6x8 map (128x96 input at output stride 16) become 1x1 convolutions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (dy, dx) = self.kernel_size, self.dilation
        rows_out, cols_out = dy >= x.shape[-2] and kh > 1, dx >= x.shape[-1] and kw > 1
        if self.stride != (1, 1) or not (rows_out or cols_out):
            return super().forward(x)
        w = self.weight[:, :, kh // 2:kh // 2 + 1] if rows_out else self.weight
        w = w[..., kw // 2:kw // 2 + 1] if cols_out else w
        pad = (0 if rows_out else self.padding[0], 0 if cols_out else self.padding[1])
        return F.conv2d(x, w, self.bias, 1, pad, self.dilation, self.groups)


def conv_bn_relu(cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    conv = AtrousConv2d if dilation > 1 else nn.Conv2d
    return nn.Sequential(conv(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ASPPPooling(nn.Module):
    """Image-level branch: global average pool -> 1x1 conv + ReLU -> broadcast back (no BN, see module doc)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = self.relu(self.conv(F.adaptive_avg_pool2d(x, 1)))  # [B, C, 1, 1]
        return y.expand(-1, -1, h, w)  # [B, C, h, w] (bilinear upsampling of a 1x1 map is a broadcast)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: [1x1, 3x3 @ r for r in rates, image pool] -> concat -> 1x1 projection."""

    def __init__(self, cin: int, cout: int, rates: tuple[int, ...]):
        super().__init__()
        self.branches = nn.ModuleList([conv_bn_relu(cin, cout, 1)]
                                      + [conv_bn_relu(cin, cout, 3, dilation=r) for r in rates]
                                      + [ASPPPooling(cin, cout)])
        self.project = nn.Sequential(conv_bn_relu(cout * len(self.branches), cout, 1), nn.Dropout(ASPP_DROPOUT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([b(x) for b in self.branches], dim=1)  # [B, (len(rates) + 2) * C, h, w]
        return self.project(y)  # [B, C, h, w]


class Decoder(nn.Module):
    """DeepLabV3+ decoder: low-level 1x1 -> 48, upsample ASPP output, concat, two 3x3 conv-BN-ReLU -> D."""

    def __init__(self, low_channels: int, aspp_channels: int, out_channels: int):
        super().__init__()
        self.reduce = conv_bn_relu(low_channels, LOW_LEVEL_CHANNELS, 1)
        self.fuse = nn.Sequential(conv_bn_relu(LOW_LEVEL_CHANNELS + aspp_channels, out_channels, 3),
                                  conv_bn_relu(out_channels, out_channels, 3))

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        low = self.reduce(low)  # [B, 48, H/4, W/4]
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)  # [B, A, H/4, W/4]
        return self.fuse(torch.cat([low, high], dim=1))  # [B, D, H/4, W/4]


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ with named stages ``forward_features`` / ``dense_features`` / ``forward``."""

    kind = DeepLabConfig.kind

    def __init__(self, cfg: DeepLabConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg if cfg is not None else DeepLabConfig()
        self.backbone = ResNet(cfg.backbone_config())
        self.aspp = ASPP(self.backbone.out_channels, cfg.aspp_channels, cfg.effective_rates())
        self.decoder = Decoder(self.backbone.low_channels, cfg.aspp_channels, cfg.decoder_channels)
        self.classifier: nn.Conv2d | None = None
        self._init_head(self.aspp)
        self._init_head(self.decoder)
        self.reset_classifier(cfg.num_classes)

    @staticmethod
    def _init_head(module: nn.Module) -> None:
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def feature_dim(self) -> int:
        """D: channels of ``forward_features`` / ``dense_features``."""
        return self.cfg.decoder_channels

    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a fresh 1x1 conv D -> num_classes (0: none); updates ``cfg``."""
        self.cfg = dataclasses.replace(self.cfg, num_classes=num_classes)  # validates num_classes
        if num_classes == 0:
            self.classifier = None
            return
        ref = next(self.decoder.parameters())
        self.classifier = nn.Conv2d(self.feature_dim, num_classes, 1).to(device=ref.device, dtype=ref.dtype)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized images [B, 3, H, W] -> decoder features [B, D, H/4, W/4]."""
        if x.ndim != 4:
            raise ValueError(f"DeepLabV3Plus expects images [B, C, H, W], got {tuple(x.shape)}")
        feats = self.backbone(x)  # low [B, C1, H/4, W/4], out [B, C4, H/os, W/os]
        high = self.aspp(feats["out"])  # [B, A, H/os, W/os]
        return self.decoder(feats["low"], high)  # [B, D, H/4, W/4]

    def dense_features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel features [B, D, H, W]: forward_features resized with NEAREST interpolation."""
        f = self.forward_features(x)  # [B, D, H/4, W/4]
        return F.interpolate(f, size=x.shape[-2:], mode="nearest")  # [B, D, H, W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized images [B, 3, H, W] -> class logits [B, num_classes, H, W]."""
        if self.classifier is None:
            raise RuntimeError("DeepLabV3Plus has no classifier (num_classes=0): use forward_features / "
                               "dense_features, or reset_classifier(n)")
        f = self.forward_features(x)  # [B, D, H/4, W/4]
        logits = self.classifier(f)  # [B, K, H/4, W/4]
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)  # [B, K, H, W]
