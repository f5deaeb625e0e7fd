"""ResNet-18 / ResNet-50 backbones with a width multiplier and dilation (plain torch, no torchvision).

The layout follows torchvision's ``resnet18`` / ``resnet50`` (stem conv7x7/2 + BN + ReLU + maxpool,
four stages of BasicBlocks or x4-expansion Bottlenecks, stride on the first 3x3 conv), so parameter
names are the familiar ``conv1``, ``bn1``, ``layer1.0.conv1.weight`` ...

Two changes for dense prediction on small machines:

- ``width`` scales every base width (64, 128, 256, 512) by a multiplier (at least 8 channels), e.g.
  0.25 or 0.5 for CPU runs;
- ``output_stride`` 16 replaces the stride of ``layer4`` by dilation 2; 8 replaces the strides of
  ``layer3`` and ``layer4`` by dilations 2 and 4 (DeepLab's atrous backbone; the first block of a
  dilated stage keeps the previous dilation, as torchvision's ``replace_stride_with_dilation``).

``ResNet.forward`` returns ``{"low": layer1 output [B, C1, H/4, W/4], "out": layer4 output
[B, C4, H/os, W/os]}``. Spatial sizes are ceil-divided at each stride-2 step (conv padding), so
inputs whose sides are multiples of ``output_stride`` give exact ratios.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn as nn

BASE_WIDTHS = (64, 128, 256, 512)
MIN_CHANNELS = 8


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least MIN_CHANNELS."""
    return max(MIN_CHANNELS, int(round(channels * width)))


@dataclass
class ResNetConfig:
    """One ResNet backbone."""

    depth: Literal[18, 50] = field(default=18, metadata={"help": "ResNet depth: 18 (BasicBlock) or 50 (Bottleneck)"})
    width: float = field(default=1.0, metadata={"help": "channel multiplier on the base widths 64/128/256/512 (e.g. 0.25 or 0.5 on CPU)"})
    output_stride: Literal[8, 16, 32] = field(default=16, metadata={"help": "input size / output feature size: 8, 16 (dilated layer4) or 32"})
    in_channels: int = field(default=3, metadata={"help": "input image channels"})
    zero_init_residual: bool = field(default=False, metadata={"help": "zero-init the last BN gamma of each residual branch"})

    def __post_init__(self):
        if self.depth not in (18, 50):
            raise ValueError(f"ResNetConfig.depth must be 18 or 50, got {self.depth!r}")
        if isinstance(self.width, bool) or not isinstance(self.width, (int, float)) or not self.width > 0:
            raise ValueError(f"ResNetConfig.width must be a positive number, got {self.width!r}")
        if self.output_stride not in (8, 16, 32):
            raise ValueError(f"ResNetConfig.output_stride must be 8, 16 or 32, got {self.output_stride!r}")
        if isinstance(self.in_channels, bool) or not isinstance(self.in_channels, int) or self.in_channels < 1:
            raise ValueError(f"ResNetConfig.in_channels must be an integer >= 1, got {self.in_channels!r}")


def conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (stride / dilation here, "ResNet v1.5"), 1x1 expand x4 (ResNet-50)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3


class ResNet(nn.Module):
    """ResNet backbone: ``forward(x [B, Cin, H, W]) -> {"low": [B, C1, H/4, W/4], "out": [B, C4, H/os, W/os]}``."""

    def __init__(self, cfg: ResNetConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg if cfg is not None else ResNetConfig()
        block = BasicBlock if cfg.depth == 18 else Bottleneck
        blocks = (2, 2, 2, 2) if cfg.depth == 18 else (3, 4, 6, 3)
        widths = [scaled(c, cfg.width) for c in BASE_WIDTHS]
        # dilate instead of striding in the last stage(s): os32 none, os16 layer4, os8 layer3+layer4
        dilate = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}[cfg.output_stride]

        # --- stem: conv7x7/2 + BN + ReLU + maxpool/2 -> stride 4
        self.stem_channels = widths[0]
        self.conv1 = nn.Conv2d(cfg.in_channels, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        # --- stages
        self._cin = widths[0]
        self._dilation = 1
        self.layer1 = self._make_stage(block, widths[0], blocks[0], stride=1, dilate=False)
        self.layer2 = self._make_stage(block, widths[1], blocks[1], stride=2, dilate=dilate[0])
        self.layer3 = self._make_stage(block, widths[2], blocks[2], stride=2, dilate=dilate[1])
        self.layer4 = self._make_stage(block, widths[3], blocks[3], stride=2, dilate=dilate[2])
        self.low_channels = widths[0] * block.expansion
        self.out_channels = widths[3] * block.expansion
        self.output_stride = cfg.output_stride
        self.init_weights()

    def _make_stage(self, block, planes: int, n: int, stride: int, dilate: bool) -> nn.Sequential:
        previous_dilation = self._dilation
        if dilate:
            self._dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self._cin != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self._cin, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self._cin, planes, stride, previous_dilation, downsample)]
        self._cin = planes * block.expansion
        layers += [block(self._cin, planes, 1, self._dilation) for _ in range(1, n)]
        return nn.Sequential(*layers)

    def init_weights(self) -> None:
        """Kaiming-normal convs (fan_out, ReLU), BN gamma 1 / beta 0; optional zero last-BN gamma per block."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.cfg.zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # [B, C0, H/4, W/4]
        low = self.layer1(x)  # [B, C1, H/4, W/4]
        x = self.layer2(low)  # [B, C2, H/8, W/8]
        x = self.layer3(x)  # [B, C3, H/16, W/16] (H/8 at os8)
        out = self.layer4(x)  # [B, C4, H/os, W/os]
        return {"low": low, "out": out}
