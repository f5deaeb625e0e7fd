"""What a BC suite provides: environments to roll policies out in, and demonstrations.

A suite (MetaWorld, Adroit, DMC, TriFinger, RLBench) implements :class:`Suite`. Environments
return :class:`Obs` (an RGB frame, proprioception, the ground-truth state) and a success flag per
step, so the same rollout loops (``readout.bc_run.rollout``, one episode at a time, and
``readout.vector_rollout.rollout_lockstep``, several environments of a task stepped together) serve
every suite.

Two optional class attributes tell the lockstep loop what a suite allows: ``max_envs`` (how many
environments of one task may exist at once in one process; absent = no limit; RLBench: 1) and
``process_safe`` (True when ``get_suite(name).make_env`` in a fresh worker process builds the same
environment, so environments may be stepped in worker processes; absent = False).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from regconsist_ros.readout.demos import Episode


def headless_gl() -> None:
    """MuJoCo renders off-screen through EGL unless MUJOCO_GL says otherwise; call before importing mujoco."""
    os.environ.setdefault("MUJOCO_GL", "egl")


@dataclass
class EnvSpec:
    """How a suite renders and how long episodes run (one per readout run)."""

    camera: str = ""  # "" = the suite's default camera
    render_size: int = 256  # square frames of render_size x render_size
    horizon: int = 0  # 0 = the suite's default episode length
    fast_render: bool = True  # software-GL friendly rendering (no shadows, reflections, multisampling)


@dataclass
class Obs:
    rgb: np.ndarray  # [H, W, 3] uint8
    proprio: np.ndarray  # [P] float32
    state: np.ndarray  # [S] float32 ground truth (for the no-image sanity check)


class BCEnv(Protocol):
    """One task's environment. ``step`` returns (obs, success, done)."""

    action_dim: int
    horizon: int

    def reset(self, seed: int) -> Obs: ...

    def step(self, action: np.ndarray) -> tuple[Obs, bool, bool]: ...

    def close(self) -> None: ...


class Suite(Protocol):
    name: str
    tasks: tuple[str, ...]  # the benchmark's default task list
    # optional: max_envs: int (environments of a task at once in one process), process_safe: bool (module doc)

    def make_env(self, task: str, spec: EnvSpec) -> BCEnv:
        """The task's environment (imports the simulator lazily; ImportError with install hints)."""
        ...

    def demonstrations(self, task: str, spec: EnvSpec, n: int, demo_dir: Path, progress: bool = False) -> list[Episode]:
        """``n`` demonstrations: scripted and cached under ``demo_dir`` where the suite has experts,
        read from ``demo_dir`` (the documented directory format) or Minari otherwise; raises
        ``NoDemonstrations`` when there are none."""
        ...
