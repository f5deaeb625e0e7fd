"""`regconsist bench ...`: speed figures as JSON (recorded in docs/benchmarks.md, never asserted in tests).

One module per benchmark: ``sim`` (renderer), ``correspond`` (exact correspondences), ``regions``
(region overlap), ``pretrain`` (a method's training step, also against another git revision: ``revisions``,
``pretrain_worker``), ``bc`` (MetaWorld rendering and rollouts), ``registration`` (a 30 Hz stream through the
registration node beside the learner), ``odometry`` (RGB-D odometry against ground truth: trajectory errors and
correspondence accuracy, docs/odometry.md).
"""
from __future__ import annotations

import os
import platform


def machine() -> dict:
    """What the figures were measured on (CPU count, Python, torch, architecture)."""
    import torch

    return {"cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "machine": platform.machine()}
