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


# ------------------------------------------------------------------ positions off the trained grid


def test_grid_positions_interpolate_inside_the_trained_range():
    from regconsist_ros.models.vit import grid_positions

    assert np.array_equal(grid_positions(6, 6), np.arange(6.0))  # same grid: the integer positions
    for n, g in [(12, 6), (16, 8), (3, 8), (15, 8), (7, 2)]:
        pos = grid_positions(n, g)
        assert pos.shape == (n,) and pos[0] == 0.0 and pos[-1] == g - 1  # corner-aligned, inside [0, g-1]
        assert np.all(np.diff(pos) > 0)
    assert np.array_equal(grid_positions(15, 8)[::2], np.arange(8.0))  # n - 1 = 2 (g - 1): every 2nd is trained
    assert grid_positions(1, 8)[0] == 3.5 and np.array_equal(grid_positions(4, 1), np.zeros(4))
    with pytest.raises(ValueError, match="grid_positions"):
        grid_positions(0, 4)


def test_vit_on_its_own_grid_is_bit_identical_to_the_stored_positions():
    m = tiny(img=(96, 128)).eval()  # 6 x 8 grid
    assert np.array_equal(sincos_pos_embed(192, (6, 8), trained=(6, 8)), sincos_pos_embed(192, (6, 8)))
    assert torch.equal(m.pos_for((96, 128)), m.pos_embed)
    x = torch.randn(2, 3, 96, 128)
    a = m(x)["patches"]
    m.pos_embed = torch.from_numpy(sincos_pos_embed(192, (6, 8)))[None]  # today's table, rebuilt
    assert torch.equal(m(x)["patches"], a)


def test_vit_positions_on_a_larger_grid_stay_inside_the_trained_range():
    D, trained = 64, (6, 8)
    m = ViT(ViTConfig(size="tiny", img_size=(96, 128), depth=1))
    big = m.pos_for((192, 256))[0, 1:].numpy()  # [12 * 16, 192], grid 12 x 16
    assert big.shape == (12 * 16, 192)
    assert np.array_equal(big, sincos_pos_embed(192, (12, 16), cls_token=False, trained=trained))

    # each frequency's phase (recovered from its sin and cos) is bounded by the trained table's, for
    # the frequencies whose phase over the trained range stays below pi (so atan2 is monotone there)
    tab = sincos_pos_embed(D, trained, cls_token=False)  # [48, D]
    off = sincos_pos_embed(D, (12, 16), cls_token=False, trained=trained)  # [192, D]
    q = D // 4
    omega = 1.0 / 10000 ** (np.arange(q) / q)
    for half, g in ((0, trained[0]), (1, trained[1])):  # rows, then columns
        s0 = half * 2 * q
        ok = omega * (g - 1) < np.pi
        assert ok.sum() >= q // 2
        ph_tab = np.arctan2(tab[:, s0:s0 + q], tab[:, s0 + q:s0 + 2 * q])[:, ok]
        ph_off = np.arctan2(off[:, s0:s0 + q], off[:, s0 + q:s0 + 2 * q])[:, ok]
        assert np.all(ph_off.min(0) >= ph_tab.min(0) - 1e-6) and np.all(ph_off.max(0) <= ph_tab.max(0) + 1e-6)
    # the old extrapolating table reaches beyond: row 11 of a 12-row grid is position 11 > 5
    old = sincos_pos_embed(D, (12, 16), cls_token=False)
    low = q - 1  # the lowest row frequency: its phase is the position times a small omega
    assert np.arctan2(old[:, low], old[:, q + low]).max() > np.arctan2(tab[:, low], tab[:, q + low]).max() + 1e-3


def test_vit_positions_coincide_with_the_trained_table_where_grids_meet():
    trained = (6, 8)
    tab = sincos_pos_embed(64, trained, cls_token=False).reshape(6, 8, 64)
    off = sincos_pos_embed(64, (11, 15), cls_token=False, trained=trained).reshape(11, 15, 64)  # n-1 = 2 (g-1)
    assert np.array_equal(off[::2, ::2], tab)
    one_axis = sincos_pos_embed(64, (6, 15), cls_token=False, trained=trained).reshape(6, 15, 64)
    assert np.array_equal(one_axis[:, ::2], tab)  # the matching axis keeps its integer positions


def test_checkpoint_trained_on_one_grid_encodes_on_another(tmp_path):
    from regconsist_ros.models.encoder import encode

    torch.manual_seed(0)
    m = build_model("vit", {"size": "tiny", "img_size": [48, 64], "depth": 1})  # grid 3 x 4
    save_checkpoint(tmp_path / "c", m, "vit", m.cfg, step=1)
    m2, _ = load_checkpoint(tmp_path / "c")
    m.eval(), m2.eval()
    imgs = torch.randint(0, 256, (2, 96, 128, 3), dtype=torch.uint8)
    f = encode(m2, imgs, size=(96, 128))["patches"]  # grid 6 x 8
    assert f.shape == (2, 192, 6, 8) and torch.isfinite(f).all()
    assert torch.equal(f, encode(m, imgs, size=(96, 128))["patches"])
    pos = m2.pos_for((96, 128))[0, 1:].reshape(6, 8, 192)
    assert np.array_equal(pos.numpy(), sincos_pos_embed(192, (6, 8), cls_token=False, trained=(3, 4)).reshape(6, 8, 192))
    assert torch.equal(encode(m2, imgs[:, :48, :64], size=None)["patches"], encode(m, imgs[:, :48, :64], size=None)["patches"])
