"""One module per committed results table (see docs/results/).

Each module declares ``CONFIG`` (its settings dataclass), ``HELP`` (one line) and ``run(cfg) -> dict``;
:func:`experiments` lists them for ``regconsist experiment NAME``.
"""
from __future__ import annotations

import importlib
import pkgutil


def experiments() -> dict:
    """name -> module, for every module of this package that declares ``CONFIG``."""
    out = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "CONFIG"):
            out[info.name] = mod
    return out
