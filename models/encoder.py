"""One encoder interface for every objective (RSP, MAE, RegConsist, random init) so readouts take any.

``encode(model, imgs)`` takes float RGB images ``[B, 3, H, W]`` in [0, 1] (or uint8 ``[B, H, W, 3]``),
applies the ImageNet normalisation every encoder in this project is trained with, and returns::

    {"cls": [B, D]            global embedding ([CLS] of a ViT, mean-pooled dense features otherwise),
     "patches": [B, D, h, w]  a feature map (ViT: the patch grid; DeepLabV3+: the stride-4 decoder output)}

``input_size(model)`` is the (H, W) a model was trained at (ViT) or None (fully convolutional); readouts
resize frames to it by default. ``load_encoder(spec)`` builds an encoder from a checkpoint directory, a run
directory (its latest checkpoint), ``"random"`` (the architecture, randomly initialised) or one of the
feature-free floors ``"pixels"`` / ``"colour"`` (:mod:`regconsist_ros.models.floors`) on the grid of the
architecture they stand beside.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from regconsist_ros.models.deeplab import normalize, normalize_images


def input_size(model: nn.Module) -> tuple[int, int] | None:
    """(H, W) the model requires, or None when any size divisible by its stride works."""
    cfg = getattr(model, "cfg", None)
    size = getattr(cfg, "img_size", None)
    return (int(size[0]), int(size[1])) if size is not None else None


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter, else of its first buffer (parameter-free floors), else the CPU."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def prepare(imgs: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """uint8 [B, H, W, 3] or float [B, 3, H, W] in [0, 1] -> normalised float [B, 3, H', W'] (bilinear
    resize to ``size`` when given and different)."""
    x = normalize(imgs) if imgs.dtype == torch.uint8 else normalize_images(imgs)
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x


def features(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Normalised images [B, 3, H, W] -> {"cls": [B, D], "patches": [B, D, h, w]} for any encoder."""
    if hasattr(model, "forward_encoder"):  # ViT
        tokens, _, _ = model.forward_encoder(x)  # [B, 1 + L, D]
        gh, gw = x.shape[-2] // model.cfg.patch, x.shape[-1] // model.cfg.patch
        patches = tokens[:, 1:].transpose(1, 2).reshape(x.shape[0], -1, gh, gw)  # [B, D, gh, gw]
        return {"cls": tokens[:, 0], "patches": patches}
    if hasattr(model, "forward_features"):  # DeepLabV3+, the floors
        f = model.forward_features(x)  # [B, D, H/4, W/4] (floors: [B, D, H/p, W/p])
        g = model.forward_global(x) if hasattr(model, "forward_global") else f.mean((2, 3))  # [B, D']
        return {"cls": g, "patches": f}
    raise TypeError(f"{type(model).__name__} is not an encoder (needs forward_encoder or forward_features)")


@torch.no_grad()
def encode(model: nn.Module, imgs: torch.Tensor, batch: int = 32, size="model") -> dict[str, torch.Tensor]:
    """Frozen-encoder features of raw images (see the module doc), in eval mode, in chunks of ``batch``.

    ``size``: "model" resizes to the size the encoder was trained at (``input_size``), a (H, W)
    tuple to that size (a ViT runs at any multiple of its patch, its sin-cos positions interpolated
    inside the trained grid, never extrapolated: ``models.vit.grid_positions``), None keeps the input size."""
    was_training = model.training
    model.eval()
    dev = model_device(model)
    if isinstance(size, str):
        if size != "model":
            raise ValueError(f"encode: size must be 'model', None or (H, W), got {size!r}")
        size = input_size(model)
    outs = []
    try:
        for i in range(0, imgs.shape[0], batch):
            x = prepare(imgs[i:i + batch].to(dev), size)
            outs.append({k: v.float().cpu() for k, v in features(model, x).items()})
    finally:
        model.train(was_training)
    return {k: torch.cat([o[k] for o in outs]) for k in ("cls", "patches")}


def random_encoder(kind: str = "vit", config=None, seed: int = 0) -> nn.Module:
    """A randomly initialised encoder of a registered kind (seeded)."""
    from regconsist_ros.models.registry import build_model

    torch.manual_seed(seed)
    model = build_model(kind, config)
    model.eval()
    return model


def floor_beside(name: str, kind: str = "vit", config=None) -> nn.Module:
    """The feature-free floor ``name`` ("pixels" / "colour") on the grid of the architecture ``kind`` /
    ``config`` it stands beside: a ViT's patch and input size, or DeepLabV3+'s stride 4 at any size."""
    from regconsist_ros.models.floors import floor_encoder
    from regconsist_ros.models.registry import make_config

    cfg = make_config(kind, config)
    patch = int(getattr(cfg, "patch", 0) or 4)  # a ViT's patch; DeepLabV3+'s features are at stride 4
    return floor_encoder(name, patch=patch, img_size=getattr(cfg, "img_size", None))


def load_encoder(spec: str | Path, kind: str = "vit", config=None, seed: int = 0) -> tuple[nn.Module, dict]:
    """``spec`` = checkpoint dir | run dir (latest checkpoint) | "random" | "pixels" | "colour"
    -> (encoder in eval mode, info).

    For "random", ``kind``/``config`` choose the architecture (a dict, dataclass or None = defaults); for
    the floors they choose the grid (:func:`floor_beside`).
    """
    from regconsist_ros.models.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
    from regconsist_ros.models.floors import FLOORS

    if str(spec) == "random":
        return random_encoder(kind, config, seed), {"init": "random", "kind": kind, "step": 0}
    if str(spec) in FLOORS:
        return floor_beside(str(spec), kind, config), {"init": str(spec), "kind": f"floor:{spec}", "step": 0}
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"{spec}: no such checkpoint or run directory (or use 'random', 'pixels' or 'colour')")
    ckpt = path if (path / "model.safetensors").exists() else latest_checkpoint(path)
    if ckpt is None:
        raise CheckpointError(f"{spec}: neither a checkpoint (model.safetensors) nor a run with checkpoints/step_*")
    model, info = load_checkpoint(ckpt)
    return model, {"init": str(ckpt), "kind": info["kind"], "step": info["step"], "weights": weights_digest(ckpt)}


def weights_digest(ckpt: str | Path) -> str:
    """The first 16 hex digits of the SHA-1 of a checkpoint's ``model.safetensors``: what tells two
    trainings written to the same path apart (cached readouts keyed by the path alone would be reused for
    retrained weights)."""
    import hashlib

    h = hashlib.sha1()
    with open(Path(ckpt) / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]
