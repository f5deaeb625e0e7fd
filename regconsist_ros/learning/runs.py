"""A method's settings tree: the objective's settings, its trainer, its encoder and its batches.

For method ``m`` (a :class:`~regconsist_ros.models.methods.Method`) the tree has four groups, with
one dotted name per setting on the command line, as a ROS parameter and as a YAML key:

| group | config | example |
|---|---|---|
| ``m`` | the method's config dataclass | ``rsp.latent`` |
| ``m.trainer`` | :class:`~regconsist_ros.learning.trainer.TrainerConfig` | ``rsp.trainer.lr`` |
| ``m.encoder`` | the encoder's config (``ViTConfig``, ``DeepLabConfig``) | ``rsp.encoder.depth`` |
| ``m.batch`` | the batch kind's config (:mod:`regconsist_ros.learning.batches`) | ``rsp.batch.gap_max`` |

Defaults are written once: the dataclass defaults, overridden by the method's recipe (``Method.trainer``,
``Method.encoder``, ``Method.batch_settings``). :func:`recipe` gives them as a :class:`MethodRun`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from regconsist_ros.config import ConfigError, build, build_groups, group_values, nest, setting_names
from regconsist_ros.learning.batches import BatchKind, batch_kind
from regconsist_ros.learning.trainer import TrainerConfig
from regconsist_ros.models.methods import Method, get, methods


@dataclass
class MethodRun:
    """Everything one method's training needs to know, as config instances."""

    method: str
    objective: Any  # the method's config
    trainer: TrainerConfig
    encoder: Any  # the encoder's config
    batch: Any  # the batch kind's config

    @property
    def spec(self) -> Method:
        return get(self.method)

    @property
    def kind(self) -> BatchKind:
        return batch_kind(self.spec.batch)

    @classmethod
    def from_groups(cls, method: str, groups: dict[str, Any]) -> "MethodRun":
        """The run from ``{group prefix: config instance}`` (the groups of :func:`schema`; others ignored)."""
        m = method
        return cls(m, groups[m], groups[f"{m}.trainer"], groups[f"{m}.encoder"], groups[f"{m}.batch"])

    def groups(self) -> dict[str, Any]:
        """``{group prefix: config instance}``."""
        m = self.method
        return {m: self.objective, f"{m}.trainer": self.trainer, f"{m}.encoder": self.encoder, f"{m}.batch": self.batch}

    def values(self) -> dict[str, Any]:
        """``{dotted name: value}`` of every setting."""
        out = {}
        for prefix, cfg in self.groups().items():
            out.update(group_values(cfg, prefix))
        return out

    def tree(self) -> dict:
        """Nested settings (YAML / run.json)."""
        return nest(self.values())

    def trainer_config(self):
        """The trainer settings as run: ``lr`` scaled by the batch size when ``trainer.lr_batch`` > 0."""
        from regconsist_ros.learning.trainer import scaled

        return scaled(self.trainer, self.batch.size)

    def build_objective(self):
        """A freshly initialised objective (seed the RNGs first for a reproducible init)."""
        return self.spec.build(self.objective, self.encoder)

    def replace(self, values: dict[str, Any], only_known: bool = False) -> "MethodRun":
        """A copy with some settings changed (``{dotted name: value}``); with ``only_known`` the names
        this method does not have are left out (e.g. shared budgets applied to several methods)."""
        if only_known:
            names = setting_names(schema(self.method))
            values = {k: v for k, v in values.items() if k in names}
        return make_run(self.method, values, base=self)


def schema(method: str) -> list[tuple[str, type]]:
    """The groups of a method's settings tree: ``[(prefix, config class)]``."""
    m = get(method)
    return [(m.name, m.config), (f"{m.name}.trainer", TrainerConfig), (f"{m.name}.encoder", type(m.encoder)),
            (f"{m.name}.batch", batch_kind(m.batch).config)]


def other_method(name: str, method: str) -> str | None:
    """Hint for a setting ``name`` of another method given to ``method`` (None when it is not one)."""
    head = name.split(".", 1)[0]
    if head != method and head in methods():
        return f"it is a setting of method {head}, not of {method}"
    return None


def recipe(method: str) -> MethodRun:
    """The method's defaults: dataclass defaults overridden by its recipe."""
    m = get(method)
    try:
        trainer = build(TrainerConfig, dict(m.trainer))
        batch = build(batch_kind(m.batch).config, dict(m.batch_settings))
    except ConfigError as e:
        raise ConfigError(f"method {method}: bad recipe: {e}") from None
    return MethodRun(m.name, m.config(), trainer, m.encoder, batch)


def make_run(method: str, values: dict[str, Any] | None = None, base: MethodRun | None = None,
             where: str | None = None) -> MethodRun:
    """A :class:`MethodRun` from ``{dotted name: value}`` over ``base`` (default: the recipe). A name
    outside the method's tree raises ConfigError naming it (and the method it belongs to)."""
    base = base or recipe(method)
    groups = build_groups(schema(method), dict(values or {}), base.groups(), where=where or f"method {method}",
                          hint=lambda n: other_method(n, method))
    return MethodRun.from_groups(method, groups)


def run_from_tree(method: str, tree: dict) -> MethodRun:
    """A run from the nested settings :meth:`MethodRun.tree` wrote (e.g. a run.json)."""
    from regconsist_ros.config import flatten

    return make_run(method, flatten(tree))


def describe(method: str) -> str:
    """One paragraph on a method for --help."""
    m = get(method)
    kind = batch_kind(m.batch)
    enc = dataclasses.asdict(m.encoder)
    return (f"{m.summary}. Batches: {m.batch} ({kind.summary}). Encoder: {m.encoder_kind} "
            f"({', '.join(f'{k}={v}' for k, v in enc.items())}).")
