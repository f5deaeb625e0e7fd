"""The registry of pretraining methods.

A method is one module of :mod:`regconsist_ros.models.objectives` that ends with

    METHOD = Method(name="rsp", config=RSPConfig, objective=RSP, batch="frame_pairs",
                    encoder=ViTConfig(), trainer={...}, batch_settings={...}, summary="...")

declaring its settings (a config dataclass), its objective (an ``nn.Module`` built as
``objective(config, encoder_config)`` whose ``forward(batch) -> (loss, logs)``), the kind of batch it
eats (a key of :data:`regconsist_ros.learning.batches.BATCHES`) and its default recipe: the encoder
config and the values of the trainer's and of the batch kind's settings that differ from their
dataclass defaults. :func:`methods` finds every such module; the CLI, the online learner, the
experiments and the benchmarks read it and name no method. Adding a method is one new module (and
its tests).

The recipe refers to the trainer's and the batch kind's settings by field name only (plain dicts):
this layer knows networks and objectives, not the training loop (``regconsist_ros.learning``).
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

# Group names every method's settings tree has besides the objective's own fields: a method config
# must not use them as field names.
GROUPS = ("trainer", "encoder", "batch")


# Recipe pieces shared by the DeepLabV3+ baselines (rotation, SimCLR, BYOL, TCN, shuffling, FlowE):
# AdamW 1e-3 with light weight decay, and 96x128 crops of the frames.
DENSE_TRAINER = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4}
DENSE_CROP = {"height": 96, "width": 128}
# ... and by the ViT masked / future-frame predictors (the MAE and RSP papers): AdamW (0.9, 0.95),
# weight decay 0.05, lr 1.5e-4 x batch / 256 (the linear scaling rule: ``lr_batch``).
VIT_TRAINER = {"optimizer": "adamw", "betas": (0.9, 0.95), "weight_decay": 0.05, "lr": 1.5e-4, "lr_batch": 256}


class UnknownMethodError(ValueError):
    """A method name that no module of ``regconsist_ros.models.objectives`` declares."""


@dataclass(frozen=True)
class Method:
    """What the rest of the system needs to know about a pretraining method."""

    name: str
    config: type  # the objective's settings: a dataclass validated in __post_init__
    objective: type  # nn.Module subclass, objective(config, encoder_config)
    encoder: Any  # default encoder config (a dataclass instance of a registered model kind)
    batch: str  # kind of batch the objective eats
    summary: str  # one line for --help and the docs
    trainer: Mapping[str, Any] = field(default_factory=dict)  # recipe: TrainerConfig values
    batch_settings: Mapping[str, Any] = field(default_factory=dict)  # recipe: the batch kind's config values
    # optional: method-specific pictures of a trained objective, figures(objective, batch, out_dir) -> [paths]
    figures: Callable | None = None

    def __post_init__(self):
        if not self.name.isidentifier() or self.name != self.name.lower():
            raise ValueError(f"Method name must be a lower-case identifier, got {self.name!r}")
        if not dataclasses.is_dataclass(self.config):
            raise TypeError(f"Method {self.name}: config must be a dataclass, got {self.config!r}")
        clash = sorted({f.name for f in dataclasses.fields(self.config)} & set(GROUPS))
        if clash:
            raise ValueError(f"Method {self.name}: {self.config.__name__} fields {clash} clash with the groups {GROUPS}")
        if not (dataclasses.is_dataclass(self.encoder) and not isinstance(self.encoder, type)):
            raise TypeError(f"Method {self.name}: encoder must be a config dataclass instance, got {self.encoder!r}")

    @property
    def encoder_kind(self) -> str:
        """Registry name of the encoder (``vit``, ``deeplabv3plus``)."""
        return type(self.encoder).kind

    def build(self, config=None, encoder=None):
        """The objective with ``config`` (None: defaults) around an encoder of ``encoder`` (None: the recipe's)."""
        if config is not None and not isinstance(config, self.config):
            raise TypeError(f"method {self.name!r} takes a {self.config.__name__}, got a {type(config).__name__}")
        return self.objective(config if config is not None else self.config(),
                              encoder if encoder is not None else self.encoder)


_METHODS: dict[str, Method] = {}


def methods() -> dict[str, Method]:
    """Every method, by name (importing each module of ``regconsist_ros.models.objectives`` once)."""
    if not _METHODS:
        from regconsist_ros.models import objectives

        found = {}
        for info in sorted(pkgutil.iter_modules(objectives.__path__), key=lambda m: m.name):
            mod = importlib.import_module(f"{objectives.__name__}.{info.name}")
            m = getattr(mod, "METHOD", None)
            if m is None:
                continue
            if not isinstance(m, Method):
                raise TypeError(f"{mod.__name__}.METHOD must be a Method, got {type(m).__name__}")
            if m.name in found:
                raise ValueError(f"method {m.name!r} is declared twice ({found[m.name][1]} and {mod.__name__})")
            found[m.name] = (m, mod.__name__)
        _METHODS.update({n: m for n, (m, _) in found.items()})
    return _METHODS


def get(name: str) -> Method:
    """The method called ``name``; UnknownMethodError listing the known ones otherwise."""
    table = methods()
    try:
        return table[name]
    except (KeyError, TypeError):
        raise UnknownMethodError(f"unknown method {name!r}; known: {sorted(table)}") from None
