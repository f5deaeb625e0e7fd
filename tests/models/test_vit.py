"""ViT encoder: patchify/unpatchify, masking, shapes for every size, checkpoint round trip."""
import numpy as np
import pytest
import torch

from regconsist_ros.models.checkpoint import load_checkpoint, save_checkpoint
from regconsist_ros.models.registry import build_model
from regconsist_ros.models.vit import ViT, ViTConfig, sincos_pos_embed


def tiny(size="tiny", img=(48, 64), depth=1):
    return ViT(ViTConfig(size=size, img_size=img, depth=depth))


def test_patchify_unpatchify_are_inverse_and_row_major():
    m = tiny()
    x = torch.randn(2, 3, 48, 64)
    p = m.patchify(x)
    assert p.shape == (2, 3 * 4, 16 * 16 * 3)
    assert torch.equal(m.unpatchify(p, (48, 64)), x)
    # patch 1 is the second patch of the first row: pixels [0:16, 16:32]
    assert torch.equal(p[0, 1].reshape(16, 16, 3), x[0, :, 0:16, 16:32].permute(1, 2, 0))


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.75, 0.9])
def test_masking_keeps_exactly_the_configured_fraction(ratio):
    x = torch.randn(3, 12, 8)
    kept, mask, ids_restore = ViT.random_masking(x, ratio, torch.Generator().manual_seed(0))
    keep = round(12 * (1 - ratio))
    assert kept.shape == (3, keep, 8)
    assert torch.equal(mask.sum(1), torch.full((3,), float(12 - keep)))
    for b in range(3):  # the kept tokens are exactly the unmasked ones, and ids_restore undoes the shuffle
        rows = {tuple(r.tolist()) for r in kept[b]}
        assert rows == {tuple(x[b, i].tolist()) for i in torch.nonzero(mask[b] == 0).flatten()}
    with pytest.raises(ValueError, match="mask_ratio"):
        ViT.random_masking(x, 1.0)


@pytest.mark.parametrize("size,width", [("tiny", 192), ("small", 384), ("base", 768)])
def test_shapes_for_every_size(size, width):
    m = tiny(size)
    out = m(torch.randn(2, 3, 48, 64))
    assert out["cls"].shape == (2, width) and out["patches"].shape == (2, 12, width)
    tokens, mask, ids = m.forward_encoder(torch.randn(2, 3, 48, 64), mask_ratio=0.75)
    assert tokens.shape == (2, 1 + 3, width) and mask.shape == (2, 12) and ids.shape == (2, 12)
    assert m.cfg.blocks == 1 and ViTConfig(size=size).blocks == 12


def test_sincos_positions_are_fixed_distinct_and_cls_is_zero():
    e = sincos_pos_embed(64, (3, 4))
    assert e.shape == (13, 64) and np.all(e[0] == 0)
    d = ((e[1:, None] - e[None, 1:]) ** 2).sum(-1)
    assert (d + np.eye(12) > 1e-6).all()  # every patch position is distinct
    m = tiny()
    assert not any("pos_embed" in n for n, _ in m.named_parameters())  # fixed, not learned


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="divisible"):
        ViTConfig(img_size=(100, 64))
    with pytest.raises(ValueError, match="size"):
        ViTConfig(size="huge")
    with pytest.raises(ValueError, match="multiple of the patch"):
        tiny()(torch.randn(1, 3, 50, 64))


def test_registry_and_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    m = build_model("vit", {"size": "tiny", "img_size": [32, 32], "depth": 2})
    assert isinstance(m, ViT) and m.cfg.img_size == (32, 32)
    save_checkpoint(tmp_path / "c", m, "vit", m.cfg, step=5)
    m2, info = load_checkpoint(tmp_path / "c")
    assert info["kind"] == "vit" and info["step"] == 5
    for (k1, v1), (k2, v2) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)  # bit-exact
    m.eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(m(x)["cls"], m2(x)["cls"])
