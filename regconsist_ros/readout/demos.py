"""Demonstrations for the BC readout: one episode format, a directory layout, and readers.

Directory format (what ``save_episode``/``DemoDir`` write and what local demonstrations of any suite
must follow, see docs/interfaces.md "BC readout")::

    <dir>/meta.json             {"format": 1, "suite": ..., "task": ..., optional "camera", "render_size", ...}
    <dir>/episode_0000.npz      frames  [T, H, W, 3] uint8   RGB seen before each action
                                actions [T, A]       float32 the action taken at each frame
                                proprio [T, P]       float32 proprioception (P may be 0)
                                states  [T, S]       float32 ground-truth state (S may be 0)
                                success ()           bool    whether the episode reached the goal
                                seed    ()           int64   the reset seed (-1 when unknown)
    <dir>/episode_0001.npz      ...

Episodes are written atomically (temporary file, fsync, rename), so an interrupted collection
keeps every finished episode and resumes after the last one. Files that do not follow the format
raise :class:`DemoError` naming the file and the problem.

``load_minari(dataset_id)`` converts a Minari dataset whose observations contain images (a dict
observation with an ``image``/``pixels``/``rgb`` key) into the same episodes.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT = 1
EPISODE = re.compile(r"^episode_(\d{4,})\.npz$")
IMAGE_KEYS = ("image", "pixels", "rgb")


class DemoError(ValueError):
    """A demonstration file or directory does not follow the format."""


class NoDemonstrations(RuntimeError):
    """A task has no demonstrations here (none cached, none given, none downloadable)."""


@dataclass
class Episode:
    """One demonstration (or recorded rollout)."""

    frames: np.ndarray  # [T, H, W, 3] uint8
    actions: np.ndarray  # [T, A] float32
    proprio: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # [T, P]
    states: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # [T, S]
    success: bool = False
    seed: int = -1

    def __post_init__(self):
        T = len(self.actions)
        self.frames = np.asarray(self.frames)
        self.actions = np.asarray(self.actions, np.float32)
        self.proprio = np.asarray(self.proprio, np.float32).reshape(T, -1) if np.size(self.proprio) else np.zeros((T, 0), np.float32)
        self.states = np.asarray(self.states, np.float32).reshape(T, -1) if np.size(self.states) else np.zeros((T, 0), np.float32)
        self.validate()

    def __len__(self) -> int:
        return len(self.actions)

    def validate(self, where: str = "episode") -> None:
        T = len(self.actions)
        if T < 1 or self.actions.ndim != 2:
            raise DemoError(f"{where}: actions must be [T >= 1, A], got {self.actions.shape}")
        if self.frames.ndim != 4 or self.frames.shape[0] != T or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise DemoError(f"{where}: frames must be uint8 [T={T}, H, W, 3], got {self.frames.dtype} {self.frames.shape}")
        for name in ("proprio", "states"):
            a = getattr(self, name)
            if a.shape[0] != T:
                raise DemoError(f"{where}: {name} has {a.shape[0]} rows for {T} actions")
        for name in ("actions", "proprio", "states"):
            if not np.isfinite(getattr(self, name)).all():
                raise DemoError(f"{where}: {name} contains NaN or inf")


def save_episode(path: str | Path, ep: Episode) -> Path:
    """Write one episode atomically (a reader never sees a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, frames=ep.frames, actions=ep.actions, proprio=ep.proprio, states=ep.states,
                            success=np.bool_(ep.success), seed=np.int64(ep.seed))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_episode(path: str | Path) -> Episode:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("frames", "actions") if k not in z.files]
            if missing:
                raise DemoError(f"{path}: missing arrays {missing} (has {sorted(z.files)})")
            get = lambda k, d: z[k] if k in z.files else d  # noqa: E731
            ep = dict(frames=z["frames"], actions=z["actions"], proprio=get("proprio", np.zeros((0, 0))),
                      states=get("states", np.zeros((0, 0))), success=bool(get("success", False)),
                      seed=int(get("seed", -1)))
    except DemoError:
        raise
    except Exception as e:  # zip/npz corruption, pickled objects, truncated files
        raise DemoError(f"{path}: unreadable demonstration ({type(e).__name__}: {e})") from e
    try:
        return Episode(**ep)
    except DemoError as e:
        raise DemoError(f"{path}: {e}") from None


class DemoDir:
    """A directory of episodes with its ``meta.json`` (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def meta(self) -> dict:
        p = self.root / "meta.json"
        if not p.is_file():
            return {}
        try:
            meta = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DemoError(f"{p}: unreadable meta.json ({e})") from e
        if not isinstance(meta, dict) or meta.get("format", FORMAT) != FORMAT:
            raise DemoError(f"{p}: expected a JSON object with format {FORMAT}, got {meta!r:.200}")
        return meta

    def write_meta(self, meta: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / ".meta.json.tmp"
        tmp.write_text(json.dumps({"format": FORMAT, **meta}, indent=1, sort_keys=True))
        os.replace(tmp, self.root / "meta.json")

    def paths(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir() if (m := EPISODE.match(p.name))]
        return [p for _, p in sorted(found)]

    def __len__(self) -> int:
        return len(self.paths())

    def episode_path(self, i: int) -> Path:
        return self.root / f"episode_{i:04d}.npz"

    def load(self, n: int = 0, progress: bool = False) -> list[Episode]:
        """The first ``n`` episodes (0 = all); raises :class:`NoDemonstrations` when there are none."""
        paths = self.paths()
        if not paths:
            raise NoDemonstrations(f"{self.root}: no episode_*.npz files")
        if n and len(paths) < n:
            raise NoDemonstrations(f"{self.root}: {len(paths)} episodes, {n} requested")
        paths = paths[:n] if n else paths
        if progress:
            from tqdm import tqdm

            paths = tqdm(paths, desc=f"demos {self.root.name}", leave=False)
        eps = [load_episode(p) for p in paths]
        shapes = {(e.frames.shape[1:], e.actions.shape[1], e.proprio.shape[1], e.states.shape[1]) for e in eps}
        if len(shapes) > 1:
            raise DemoError(f"{self.root}: episodes disagree on (frame shape, action, proprio, state dims): {sorted(shapes)}")
        return eps


def load_minari(dataset_id: str, n: int = 0, proprio_key: str | None = None) -> list[Episode]:
    """Episodes of a local Minari dataset whose observations include images.

    Minari is optional (``pip install minari``); the dataset must already be on this machine
    (``minari download`` needs a network). Datasets with state-only observations cannot serve an
    image readout and raise :class:`NoDemonstrations` saying so."""
    try:
        import minari
    except ImportError as e:
        raise ImportError("Minari datasets need the 'minari' package (pip install minari)") from e
    try:
        ds = minari.load_dataset(dataset_id)
    except Exception as e:
        raise NoDemonstrations(f"Minari dataset {dataset_id!r} is not available locally ({e})") from e
    out = []
    for i, ep in enumerate(ds.iterate_episodes()):
        if n and i >= n:
            break
        obs = ep.observations
        if not isinstance(obs, dict) or not any(k in obs for k in IMAGE_KEYS):
            raise NoDemonstrations(f"Minari dataset {dataset_id!r}: observations have no image key {IMAGE_KEYS}; "
                                   "render the episodes into the demonstration directory format instead")
        frames = np.asarray(next(obs[k] for k in IMAGE_KEYS if k in obs))[:-1]  # T+1 observations for T actions
        prop = np.asarray(obs[proprio_key])[:-1] if proprio_key else np.zeros((len(ep.actions), 0), np.float32)
        infos = getattr(ep, "infos", None)  # success only from the dataset's own flag (a termination may be a failure)
        success = bool(np.any(infos.get("success", False))) if isinstance(infos, dict) else False
        out.append(Episode(frames=frames.astype(np.uint8), actions=np.asarray(ep.actions), proprio=prop,
                           success=success, seed=int(getattr(ep, "id", i))))
    if not out:
        raise NoDemonstrations(f"Minari dataset {dataset_id!r} has no episodes")
    return out
