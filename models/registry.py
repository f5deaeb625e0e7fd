"""Model kinds by name: ``kind -> (config dataclass, model class)``, so checkpoints and CLIs can rebuild
a network from ``{"kind": ..., "config": {...}}``.

Later model families add themselves with ``register("vit", ViTConfig, ViT)``.
"""
from __future__ import annotations

import dataclasses

import torch.nn as nn

from regconsist_ros.models.deeplab import DeepLabConfig, DeepLabV3Plus
from regconsist_ros.models.vit import ViT, ViTConfig
from regconsist_ros.config import build as build_config

MODELS: dict[str, tuple[type, type[nn.Module]]] = {
    "deeplabv3plus": (DeepLabConfig, DeepLabV3Plus),
    "vit": (ViTConfig, ViT),
}


class UnknownModelError(ValueError):
    """A model kind that is not in :data:`MODELS`."""


def register(kind: str, config_cls: type, model_cls: type[nn.Module], overwrite: bool = False) -> None:
    """Add a model kind; ``model_cls(config)`` must build the network from a ``config_cls`` instance."""
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"register: kind must be a non-empty string, got {kind!r}")
    if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)):
        raise TypeError(f"register({kind!r}): config_cls must be a dataclass, got {config_cls!r}")
    if not (isinstance(model_cls, type) and issubclass(model_cls, nn.Module)):
        raise TypeError(f"register({kind!r}): model_cls must be an nn.Module subclass, got {model_cls!r}")
    if kind in MODELS and MODELS[kind] != (config_cls, model_cls) and not overwrite:
        raise ValueError(f"register: kind {kind!r} is already registered as {MODELS[kind]} (pass overwrite=True)")
    MODELS[kind] = (config_cls, model_cls)


def lookup(kind: str) -> tuple[type, type[nn.Module]]:
    """``(config_cls, model_cls)`` of a kind; UnknownModelError listing the known kinds otherwise."""
    try:
        return MODELS[kind]
    except (KeyError, TypeError):
        raise UnknownModelError(f"unknown model kind {kind!r}; known kinds: {sorted(MODELS)}") from None


def make_config(kind: str, config=None):
    """The kind's config dataclass from a dict (lists become tuples; unknown keys and bad values raise
    ``ConfigError``, a ValueError), an instance (returned as is), or None (defaults)."""
    config_cls, _ = lookup(kind)
    if config is None:
        return config_cls()
    if isinstance(config, config_cls):
        return config
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        raise TypeError(f"model kind {kind!r} takes a {config_cls.__name__}, got a {type(config).__name__}")
    if not isinstance(config, dict):
        raise TypeError(f"model kind {kind!r}: config must be a dict or a {config_cls.__name__}, got {type(config).__name__}")
    return build_config(config_cls, config)


def config_to_dict(config) -> dict:
    """JSON-ready dict of a config dataclass (tuples -> lists, recursively)."""
    def plain(v):
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(dataclasses.asdict(config))


def build_model(kind: str, config=None) -> nn.Module:
    """A freshly initialised model of ``kind`` from a config dict or dataclass (None: defaults)."""
    _, model_cls = lookup(kind)
    return model_cls(make_config(kind, config))
