"""BC readout suites by name; each module imports its simulator only when an environment is made."""
from __future__ import annotations

import importlib

from regconsist_ros.readout.suites.base import BCEnv, EnvSpec, Obs, Suite

SUITES = {
    "metaworld": "regconsist_ros.readout.suites.metaworld:MetaWorldSuite",
    "adroit": "regconsist_ros.readout.suites.local:AdroitSuite",
    "dmc": "regconsist_ros.readout.suites.local:DMCSuite",
    "trifinger": "regconsist_ros.readout.suites.local:TriFingerSuite",
    "rlbench": "regconsist_ros.readout.suites.rlbench:RLBenchSuite",
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise ValueError(f"unknown BC suite {name!r}; suites: {sorted(SUITES)}")
    module, cls = SUITES[name].split(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["SUITES", "get_suite", "BCEnv", "EnvSpec", "Obs", "Suite"]
