"""The one encoder interface: ViT and DeepLabV3+ checkpoints or random inits, same calls."""
import numpy as np
import pytest
import torch

from regconsist_ros.models.checkpoint import CheckpointError, save_checkpoint
from regconsist_ros.models.deeplab import DeepLabConfig, normalize_images
from regconsist_ros.models.encoder import encode, features, input_size, load_encoder, random_encoder
from regconsist_ros.models.vit import ViTConfig

VIT = {"size": "tiny", "img_size": [32, 48], "depth": 1, "patch": 8}


def test_vit_and_deeplab_give_cls_and_patch_maps():
    imgs = torch.randint(0, 256, (3, 40, 60, 3), dtype=torch.uint8)
    vit = random_encoder("vit", VIT)
    out = encode(vit, imgs, batch=2)  # resized to the ViT's training size 32x48
    assert out["cls"].shape == (3, 192) and out["patches"].shape == (3, 192, 4, 6)
    assert input_size(vit) == (32, 48)
    big = encode(vit, imgs, size=(64, 96))
    assert big["patches"].shape == (3, 192, 8, 12)
    dl = random_encoder("deeplabv3plus", DeepLabConfig.small(num_classes=0))
    assert input_size(dl) is None
    out = encode(dl, imgs[:, :32, :48])
    assert out["patches"].shape == (3, 128, 8, 12)
    assert torch.allclose(out["cls"], out["patches"].mean((2, 3)), atol=1e-5)


def test_encode_matches_the_model_in_eval_mode_and_restores_training_mode():
    vit = random_encoder("vit", VIT)
    vit.train()
    x = torch.rand(2, 3, 32, 48)
    out = encode(vit, x)
    assert vit.training
    vit.eval()
    ref = features(vit, normalize_images(x))
    assert torch.allclose(out["cls"], ref["cls"], atol=1e-6)
    # uint8 HWC and float CHW of the same image give the same features
    u8 = (x * 255).round().to(torch.uint8)
    a = encode(vit, u8.permute(0, 2, 3, 1))["cls"]
    b = encode(vit, u8.float() / 255)["cls"]
    assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="size"):
        encode(vit, x, size="native")


def test_load_encoder_from_checkpoint_run_dir_or_random(tmp_path):
    torch.manual_seed(0)
    vit = random_encoder("vit", VIT, seed=3)
    ckpt = save_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000005", vit, "vit", ViTConfig(**{**VIT, "img_size": (32, 48)}), step=5)
    x = torch.rand(1, 3, 32, 48)
    digests = set()
    for spec in (ckpt, tmp_path / "run"):
        m, info = load_encoder(spec)
        assert info["step"] == 5 and info["kind"] == "vit"
        assert torch.equal(encode(m, x)["cls"], encode(vit, x)["cls"])
        digests.add(info["weights"])
    assert len(digests) == 1  # the same file, however it is named
    other = random_encoder("vit", VIT, seed=4)  # retrained weights written to the same path: a new digest
    save_checkpoint(ckpt, other, "vit", ViTConfig(**{**VIT, "img_size": (32, 48)}), step=5)
    assert load_encoder(ckpt)[1]["weights"] not in digests
    r1, info = load_encoder("random", "vit", VIT, seed=3)
    assert info["init"] == "random" and torch.equal(encode(r1, x)["cls"], encode(vit, x)["cls"])  # same seed, same init
    dl, info = load_encoder("random", "deeplabv3plus", DeepLabConfig.small(num_classes=0))
    assert info["kind"] == "deeplabv3plus"
    with pytest.raises(FileNotFoundError, match="nope"):
        load_encoder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="empty"):
        load_encoder(tmp_path / "empty")


def test_label_propagation_takes_a_regconsist_style_encoder():
    """Readouts take any encoder: a DeepLabV3+ (what RegConsist trains) through the same readout."""
    from regconsist_ros.readout.propagation import PropagationConfig, run_propagation
    from regconsist_ros.sim.source import SimConfig, SimSource

    frames = list(SimSource(SimConfig(seed=0, frames=6, width=64, height=48)))
    clip = {"name": "c", "rgb": np.stack([f.rgb for f in frames]), "instance": np.stack([f.instance for f in frames])}
    dl = random_encoder("deeplabv3plus", DeepLabConfig.small(num_classes=0))
    r = run_propagation(dl, [clip], PropagationConfig(min_object_pixels=20), progress=False)
    assert 0 <= r["J_mean"] <= 1 and r["clips"][0]["frames"] == 6
