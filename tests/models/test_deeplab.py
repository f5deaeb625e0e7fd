"""DeepLabV3+ / ResNet: shapes of the named stages, gradients, config checks (tiny widths, CPU)."""
import dataclasses
import re

import pytest
import torch
import torch.nn.functional as F

from regconsist_ros.models.deeplab import DeepLabConfig, DeepLabV3Plus, normalize, normalize_images
from regconsist_ros.models.resnet import ResNet, ResNetConfig




def tiny(**kw) -> DeepLabConfig:
    values = dict(width=0.25, aspp_channels=16, decoder_channels=24, num_classes=5)
    values.update(kw)
    return DeepLabConfig(**values)


@pytest.mark.parametrize("backbone,output_stride,size", [
    ("resnet18", 16, (64, 48)),
    ("resnet18", 8, (64, 48)),
    ("resnet18", 16, (32, 96)),
    ("resnet50", 8, (64, 48)),
])
def test_output_shapes(backbone, output_stride, size):
    torch.manual_seed(0)
    m = DeepLabV3Plus(tiny(backbone=backbone, output_stride=output_stride)).eval()
    h, w = size
    x = torch.randn(2, 3, h, w)
    with torch.no_grad():
        feats = m.backbone(x)
        f = m.forward_features(x)
        logits = m(x)
    assert feats["low"].shape == (2, m.backbone.low_channels, h // 4, w // 4)
    assert feats["out"].shape == (2, m.backbone.out_channels, h // output_stride, w // output_stride)
    assert f.shape == (2, m.feature_dim, h // 4, w // 4)  # stride 4
    assert m.feature_dim == 24
    assert logits.shape == (2, 5, h, w)
    assert torch.isfinite(logits).all()


def test_resnet_channels_and_width():
    r18 = ResNet(ResNetConfig(depth=18, width=0.5))
    assert (r18.low_channels, r18.out_channels) == (32, 256)
    r50 = ResNet(ResNetConfig(depth=50, width=0.25))
    assert (r50.low_channels, r50.out_channels) == (64, 512)  # Bottleneck expansion 4
    assert ResNet(ResNetConfig(width=0.01)).low_channels == 8  # at least 8 channels
    r32 = ResNet(ResNetConfig(width=0.125, output_stride=32)).eval()
    with torch.no_grad():
        assert r32(torch.randn(1, 3, 64, 64))["out"].shape[-2:] == (2, 2)


def test_resnet_zero_init_residual():
    r = ResNet(ResNetConfig(width=0.125, zero_init_residual=True))
    assert torch.count_nonzero(r.layer1[0].bn2.weight) == 0
    assert torch.count_nonzero(r.bn1.weight) > 0


def test_dense_features_is_nearest_resize():
    torch.manual_seed(0)
    m = DeepLabV3Plus(tiny()).eval()
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        f = m.forward_features(x)
        d = m.dense_features(x)
    assert d.shape == (1, 24, 64, 48)
    assert torch.equal(d, F.interpolate(f, size=(64, 48), mode="nearest"))
    assert torch.equal(d[:, :, 5, 9], f[:, :, 1, 2])  # pixel (5, 9) lies in the 4x4 cell (1, 2)


def test_gradients_reach_the_backbone():
    torch.manual_seed(0)
    m = DeepLabV3Plus(tiny(num_classes=0)).train()
    x = torch.randn(2, 3, 32, 32)
    m.dense_features(x).square().mean().backward()
    for name in ("backbone.conv1.weight", "backbone.layer4.1.conv2.weight", "aspp.branches.4.conv.weight",
                 "decoder.fuse.1.0.weight"):
        g = dict(m.named_parameters())[name].grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name


def test_single_image_training_batch():
    """The image-pooling branch has no BN, so a training batch of one image works."""
    m = DeepLabV3Plus(tiny()).train()
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 5, 32, 32)


def test_classifier_reset_and_no_classifier():
    m = DeepLabV3Plus(tiny(num_classes=0))
    assert m.classifier is None and m.num_classes == 0
    with pytest.raises(RuntimeError, match="no classifier"):
        m(torch.randn(1, 3, 32, 32))
    m.reset_classifier(7)
    assert m.cfg.num_classes == 7
    with torch.no_grad():
        assert m.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 7, 32, 32)
    with pytest.raises(ValueError, match="num_classes"):
        m.reset_classifier(-1)


def test_small_config_runs():
    cfg = DeepLabConfig.small()
    assert (cfg.backbone, cfg.width, cfg.output_stride, cfg.aspp_channels, cfg.decoder_channels) == (
        "resnet18", 0.5, 16, 128, 128)
    assert DeepLabConfig.kind == "deeplabv3plus" and "kind" not in {f.name for f in dataclasses.fields(cfg)}
    m = DeepLabV3Plus(cfg).eval()
    with torch.no_grad():
        assert m.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 128, 8, 8)


def test_aspp_rates_doubled_at_os8():
    assert DeepLabConfig(output_stride=16).effective_rates() == (6, 12, 18)
    assert DeepLabConfig(output_stride=8).effective_rates() == (12, 24, 36)
    m = DeepLabV3Plus(tiny(output_stride=8))
    assert [b[0].dilation[0] for b in m.aspp.branches[1:4]] == [12, 24, 36]


@pytest.mark.parametrize("field,value", [
    ("backbone", "resnet34"), ("width", 0.0), ("width", -1.0), ("output_stride", 32),
    ("aspp_channels", 0), ("decoder_channels", -4), ("num_classes", -1), ("aspp_rates", ()),
    ("aspp_rates", (6, 0)),
])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=rf"DeepLabConfig\.{field} .*got {re.escape(repr(value))}"):
        DeepLabConfig(**{field: value})


@pytest.mark.parametrize("field,value", [("depth", 34), ("width", 0), ("output_stride", 4), ("in_channels", 0)])
def test_bad_resnet_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=rf"ResNetConfig\.{field}"):
        ResNetConfig(**{field: value})


def test_normalize_helpers():
    x = torch.rand(2, 3, 4, 5)
    y = normalize_images(x)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(y, (x - mean) / std)
    u8 = (torch.rand(2, 4, 5, 3) * 255).to(torch.uint8)  # [B, H, W, 3]
    assert torch.allclose(normalize(u8), normalize_images(u8.permute(0, 3, 1, 2).float() / 255))
    assert normalize(u8[0]).shape == (1, 3, 4, 5)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        normalize_images(torch.rand(2, 4, 5, 3))


@pytest.mark.parametrize("dilation,size", [(18, (6, 8)), (12, (6, 8)), (6, (6, 8)), (6, (5, 12)), (2, (6, 8)), (4, (3, 3))])
def test_atrous_conv_skipping_padding_taps_equals_the_full_convolution(dilation, size):
    """ASPP's dilated 3x3 on small maps: the same outputs and gradients as nn.Conv2d, with or without skipped taps."""
    from regconsist_ros.models.deeplab import AtrousConv2d

    torch.manual_seed(0)
    ref = torch.nn.Conv2d(16, 8, 3, padding=dilation, dilation=dilation, bias=False)
    torch.manual_seed(0)
    ours = AtrousConv2d(16, 8, 3, padding=dilation, dilation=dilation, bias=False)
    assert torch.equal(ours.weight, ref.weight)  # same init, same state_dict
    x = torch.randn(2, 16, *size)
    y_ref, y = ref(x), ours(x)
    assert y.shape == y_ref.shape == (2, 8, *size)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(y)
    y_ref.backward(g)
    y.backward(g)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-5, atol=1e-5)
