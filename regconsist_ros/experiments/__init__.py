"""Committed experiments (see docs/results/): protocols here, definitions in config/experiments/.

An *engine* module (``propagation``, ``segmentation``, ``objectives``) declares ``CONFIG`` (its
settings dataclass) and ``run(cfg, experiment) -> dict``; a definition file
``config/experiments/<name>.yaml`` (:mod:`.arms`) names its engine, its settings and its arms (the
methods and settings it compares). ``regconsist experiment <name>`` runs one definition.
"""
from __future__ import annotations

import importlib


def engine(name: str):
    """The engine module ``name`` of this package."""
    return importlib.import_module(f"{__name__}.{name}")


def experiments() -> dict:
    """name -> (definition, engine module), for every ``config/experiments/*.yaml``."""
    from regconsist_ros.experiments.arms import experiment_files, load_experiment

    out = {}
    for name, path in experiment_files().items():
        exp = load_experiment(path)
        out[name] = (exp, engine(exp.engine))
    return out
