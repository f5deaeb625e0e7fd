"""The feature-free floors: raw pixels and colour, on any architecture's grid."""
import numpy as np
import pytest
import torch

from regconsist_ros.models.deeplab import normalize_images
from regconsist_ros.models.encoder import encode, load_encoder
from regconsist_ros.models.floors import FloorConfig, colour_histogram, floor_encoder
from regconsist_ros.models.vit import ViTConfig


def test_pixels_are_the_raw_patches_of_each_cell():
    x = normalize_images(torch.rand(2, 3, 8, 12))
    f = floor_encoder("pixels", patch=4).forward_features(x)  # [2, 48, 2, 3]
    assert f.shape == (2, 48, 2, 3)
    cell = x[1, :, 4:8, 8:12].reshape(-1)  # row 1, column 2: channel-major 4x4 patch, as unfold orders it
    assert torch.equal(f[1, :, 1, 2], cell)


def test_colour_is_the_mean_and_a_normalised_histogram():
    rgb = torch.zeros(1, 3, 4, 4)
    rgb[:, 0, :, :2] = 1.0  # left half red, right half black
    f = floor_encoder("colour", patch=4, bins=2).forward_features(normalize_images(rgb))  # [1, 3 + 8, 1, 1]
    assert f.shape == (1, 11, 1, 1)
    assert torch.allclose(f[0, :3, 0, 0], normalize_images(rgb).mean((2, 3))[0])
    hist = f[0, 3:, 0, 0] ** 2  # the square root was taken: squares are the fractions
    assert torch.allclose(hist.sum(), torch.tensor(1.0))
    assert hist[0] == pytest.approx(0.5) and hist[4] == pytest.approx(0.5)  # black (0,0,0) and red (1,0,0) bins
    h = colour_histogram(torch.rand(2, 3, 8, 8), 3, 4)
    assert h.shape == (2, 27, 2, 2) and torch.allclose(h.sum(1), torch.ones(2, 2, 2))


def test_colour_cannot_tell_a_shuffled_patch_pixels_can():
    x = normalize_images(torch.rand(1, 3, 4, 4))
    y = x.flatten(2)[..., torch.randperm(16)].reshape(1, 3, 4, 4)  # same colours, other places
    c, p = floor_encoder("colour", patch=4), floor_encoder("pixels", patch=4)
    assert torch.allclose(c.forward_features(x), c.forward_features(y), atol=1e-6)
    assert not torch.allclose(p.forward_features(x), p.forward_features(y))


@pytest.mark.parametrize("kind,config,grid", [("vit", ViTConfig(size="tiny", depth=1, img_size=(48, 64), patch=16), (3, 4)),
                                              ("deeplabv3plus", None, (12, 16))])
def test_floors_sit_on_the_grid_of_the_architecture_beside_them(kind, config, grid):
    for name in ("pixels", "colour"):
        model, info = load_encoder(name, kind=kind, config=config)
        assert info["kind"] == f"floor:{name}" and not list(model.parameters())
        out = encode(model, torch.randint(0, 256, (3, 48, 64, 3), dtype=torch.uint8), size=None)
        assert out["patches"].shape[-2:] == grid and out["patches"].shape[0] == 3
        assert out["cls"].ndim == 2 and out["cls"].shape[0] == 3  # a global vector for image-level readouts


def test_bad_floor_settings_are_named():
    with pytest.raises(ValueError, match="kind"):
        FloorConfig(kind="depth")
    with pytest.raises(ValueError, match="patch"):
        FloorConfig(patch=0)
    with pytest.raises(ValueError, match="img_size"):
        FloorConfig(patch=16, img_size=(50, 64))
    with pytest.raises(ValueError, match="unknown floor"):
        floor_encoder("edges")
    with pytest.raises(ValueError, match="divisible"):
        floor_encoder("pixels", patch=16).forward_features(torch.zeros(1, 3, 20, 32))
    with pytest.raises(FileNotFoundError, match="pixels"):
        load_encoder("/no/such/ckpt")


def test_behaviour_cloning_takes_a_floor_as_its_encoder():
    from regconsist_ros.readout.bc_run import embed_frames, resolve_encoder

    enc = resolve_encoder("pixels", ViTConfig(size="tiny", depth=1, img_size=(32, 32), patch=16))
    assert enc.label == "pixels" and not enc.is_state
    frames = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    z = embed_frames(enc, frames, crop=32)
    assert z.shape == (3, 3 * 6 * 8)  # the image average-pooled to 6x8 cells
