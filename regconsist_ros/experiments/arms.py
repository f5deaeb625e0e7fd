"""What a committed experiment compares, as data: ``config/experiments/<name>.yaml``.

    engine: propagation          # the protocol: a module of regconsist_ros.experiments (its CONFIG and run)
    help: one line for --help
    settings: {out: runs/experiment_x, ...}   # the engine's settings for this experiment (flags override)
    arms:
      random: {label: random init}                              # no method: random init, the floor
      mae: {method: mae, label: MAE}
      rsp_gaussian: {method: rsp, set: {latent: gaussian}, label: "RSP, Gaussian latent"}

An arm's ``set`` holds settings of its method, named relative to the method (``latent``,
``trainer.lr``, ``batch.regions``); the engine adds the experiment's shared budget (steps, batch,
model size) where the method has those settings. Other keys of an arm or of the file are the
engine's (e.g. table columns). The engines and the CLI read these files and name no method.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from regconsist_ros.config import ConfigError, config_dir, read_yaml


@dataclass(frozen=True)
class Arm:
    name: str
    method: str | None  # None: random init of the experiment's encoder (the floor)
    settings: dict = field(default_factory=dict)  # the method's settings, relative names
    label: str = ""
    extra: dict = field(default_factory=dict)  # engine-specific keys

    def run(self, shared: dict):
        """The arm's :class:`~regconsist_ros.learning.runs.MethodRun`: the method's recipe, the shared
        budget where the method has those settings, then the arm's own settings (every one must exist)."""
        from regconsist_ros.learning.runs import recipe

        if self.method is None:
            raise ValueError(f"arm {self.name} trains nothing (random init)")
        m = self.method
        base = recipe(m).replace({f"{m}.{k}": v for k, v in shared.items()}, only_known=True)
        return base.replace({f"{m}.{k}": v for k, v in self.settings.items()})


@dataclass(frozen=True)
class Experiment:
    name: str
    engine: str
    help: str
    settings: dict
    arms: dict  # name -> Arm
    extra: dict  # other top-level keys, for the engine
    path: Path

    def chosen(self, names) -> list:
        """The arms ``names`` picks (every arm when empty); ConfigError for names that are not arms."""
        names = list(names) or list(self.arms)
        unknown = [n for n in names if n not in self.arms]
        if unknown:
            raise ConfigError(f"--methods: {unknown} are not arms of experiment {self.name}; its arms: {list(self.arms)}")
        return [self.arms[n] for n in names]

    @property
    def floors(self) -> list[str]:
        """Arms that train nothing (random init)."""
        return [a.name for a in self.arms.values() if a.method is None]


def experiments_dir() -> Path:
    return config_dir() / "experiments"


def experiment_files() -> dict[str, Path]:
    """name -> definition file, for every ``config/experiments/*.yaml``."""
    d = experiments_dir()
    return {p.stem: p for p in sorted(d.glob("*.yaml"))} if d.is_dir() else {}


def load_experiment(path: str | Path) -> Experiment:
    """An experiment definition; ConfigError naming what is wrong (unknown method, bad keys)."""
    from regconsist_ros.models.methods import methods

    path = Path(path)
    doc = read_yaml(path, "experiment definition") or {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping, got {type(doc).__name__}")
    for key in ("engine", "arms"):
        if key not in doc:
            raise ConfigError(f"{path}: no {key!r}")
    arms = {}
    for name, spec in (doc["arms"] or {}).items():
        spec = dict(spec or {})
        method = spec.pop("method", None)
        if method is not None and method not in methods():
            raise ConfigError(f"{path}: arm {name!r}: unknown method {method!r}; known: {sorted(methods())}")
        arms[str(name)] = Arm(str(name), method, dict(spec.pop("set", None) or {}), str(spec.pop("label", name)), spec)
    extra = {k: v for k, v in doc.items() if k not in ("engine", "help", "settings", "arms")}
    return Experiment(path.stem, str(doc["engine"]), str(doc.get("help", "")), dict(doc.get("settings") or {}), arms,
                      extra, path)
