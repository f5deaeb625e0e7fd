"""Atomic, self-describing model checkpoints.

A checkpoint is a directory::

    <ckpt_dir>/model.safetensors   model.state_dict() (safetensors; metadata: kind, step)
    <ckpt_dir>/config.json         {"format": 1, "kind", "config" (tuples as lists), "step", "meta"}
    <ckpt_dir>/trainer.pt          optional torch.save of the trainer state (optimizer, scheduler, RNG)

Training runs keep them as ``<run_dir>/checkpoints/step_%08d`` (:func:`checkpoint_dir`,
:func:`latest_checkpoint`).

Saving is atomic: everything is written into a hidden sibling ``.<name>.tmp-<pid>``, files and
directory are fsynced, and the directory is renamed onto ``<name>`` with ``os.replace`` (an
existing ``<name>`` is first renamed aside to ``.<name>.old-<pid>`` and deleted afterwards). A crash
therefore never leaves a half-written ``<name>``: at worst a hidden temp directory, which
:func:`latest_checkpoint` ignores and the next save with the same name and pid replaces. (A crash
exactly between the two renames of an overwrite leaves the previous version under ``.old-<pid>``.)
:func:`clean_interrupted_saves` (run by the trainer at start-up) removes the hidden directories whose
process is gone and puts such an ``.old-<pid>`` back when its checkpoint is missing.

Retention (:func:`prune_checkpoints`, after every save of the trainer: ``trainer.keep_last``): the
newest ``keep_last`` complete checkpoints of a run stay, and so does the one an evaluator is scoring
(its claim file ``checkpoints/.evaluating``, :func:`claim_for_evaluation`); older ones are renamed
to a hidden ``.<name>.del-<pid>`` (never seen as a checkpoint again) and deleted.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from regconsist_ros.models.registry import MODELS, UnknownModelError, build_model, config_to_dict, lookup, make_config

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TRAINER_FILE = "trainer.pt"
FORMAT_VERSION = 1
STEP_DIR = re.compile(r"^step_(\d{8,})$")
HIDDEN_DIR = re.compile(r"^\.(.+)\.(tmp|old|del)-(\d+)$")  # interrupted saves / deletions: .<name>.<what>-<pid>
CLAIM_FILE = ".evaluating"  # in <run_dir>/checkpoints: {"step", "pid", "time"} of the checkpoint being scored
_MAX_LISTED = 10
log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or read back."""


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """``<run_dir>/checkpoints/step_%08d``."""
    return Path(run_dir) / "checkpoints" / f"step_{int(step):08d}"


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _listed(names) -> str:
    names = sorted(names)
    more = f" ... (+{len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else ""
    return ", ".join(names[:_MAX_LISTED]) + more


def save_checkpoint(ckpt_dir: str | Path, model: nn.Module, kind: str, config, step: int = 0,
                    trainer_state: dict | None = None, meta: dict | None = None) -> Path:
    """Atomically write ``model``'s weights, its ``kind``/``config`` (dataclass or dict), ``step``, JSON
    ``meta`` and optionally ``trainer_state`` to ``ckpt_dir``; returns the checkpoint path."""
    final = Path(ckpt_dir)
    try:
        lookup(kind)
        cfg = make_config(kind, config)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"cannot save checkpoint {final}: {e}") from None
    model_cfg = getattr(model, "cfg", None)
    if type(model_cfg) is type(cfg) and model_cfg != cfg:
        raise CheckpointError(f"cannot save checkpoint {final}: config {cfg} differs from the model's own cfg {model_cfg}")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"cannot save checkpoint {final}: step must be an integer >= 0, got {step!r}")
    header = {"format": FORMAT_VERSION, "kind": kind, "config": config_to_dict(cfg), "step": step,
              "meta": dict(meta or {})}
    try:
        header_text = json.dumps(header, indent=2, sort_keys=False)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"cannot save checkpoint {final}: meta is not JSON-serializable: {e}") from None
    if final.exists() and not final.is_dir():
        raise CheckpointError(f"cannot save checkpoint: {final} exists and is not a directory")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir()
        save_file(tensors, str(tmp / MODEL_FILE), metadata={"kind": kind, "step": str(step)})
        (tmp / CONFIG_FILE).write_text(header_text + "\n")
        if trainer_state is not None:
            torch.save(trainer_state, tmp / TRAINER_FILE)
        for p in tmp.iterdir():
            _fsync_file(p)
        _fsync_dir(tmp)
        if final.exists():
            aside = final.parent / f".{final.name}.old-{os.getpid()}"
            if aside.exists():
                shutil.rmtree(aside)
            os.replace(final, aside)
            try:
                os.replace(tmp, final)
            except BaseException:
                os.replace(aside, final)  # roll back: the previous checkpoint stays where it was
                raise
            _fsync_dir(final.parent)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, final)
            _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_info(ckpt_dir: str | Path) -> dict[str, Any]:
    """Parse ``config.json``: ``{"kind", "config" (dataclass), "step", "meta", "path"}`` (no weights)."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {ckpt_dir}")
    path = ckpt_dir / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {ckpt_dir} has no {CONFIG_FILE}")
    try:
        header = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON: {e}") from None
    except RecursionError:
        raise CheckpointError(f"{path}: JSON nested too deeply to be a checkpoint config") from None
    if not isinstance(header, dict) or not isinstance(header.get("kind"), str) or not isinstance(header.get("config"), dict):
        raise CheckpointError(f"{path}: expected an object with a string 'kind' and a 'config' object")
    kind = header["kind"]
    if kind not in MODELS:
        raise CheckpointError(f"{path}: unknown model kind {kind!r}; known kinds: {sorted(MODELS)}")
    try:
        cfg = make_config(kind, header["config"])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad config for {kind!r}: {e}") from None
    step = header.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int):
        raise CheckpointError(f"{path}: 'step' must be an integer, got {step!r}")
    meta = header.get("meta") or {}
    return {"kind": kind, "config": cfg, "step": step, "meta": meta, "path": ckpt_dir}


def load_checkpoint(ckpt_dir: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from ``config.json`` via the registry and load its weights strictly (names,
    shapes, floating-point types, finite values: anything else is a CheckpointError).

    Returns ``(model, info)``: the model on ``map_location`` in eval mode, and ``info`` =
    ``{"kind", "config" (the config dataclass), "step", "meta", "path"}``.
    """
    info = read_info(ckpt_dir)
    path = Path(ckpt_dir) / MODEL_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {ckpt_dir} has no {MODEL_FILE}")
    try:
        state = load_file(str(path), device="cpu")
    except Exception as e:  # safetensors raises its own SafetensorError, or OSError / ValueError
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file: {e}") from None
    _check_shapes_before_building(path, info, state)
    try:
        model = build_model(info["kind"], info["config"])
    except UnknownModelError as e:
        raise CheckpointError(str(e)) from None
    except (MemoryError, RuntimeError, ValueError, TypeError) as e:  # e.g. torch's "cannot allocate memory"
        raise CheckpointError(f"{path}: cannot build the {info['kind']!r} model of {CONFIG_FILE}: "
                              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    expected = model.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {_listed(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_listed(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches (file vs config): {_listed(shapes)}")
        raise CheckpointError(f"{path}: weights do not match the {info['kind']!r} config in {CONFIG_FILE}: "
                              + "; ".join(parts))
    _check_values(path, expected, state)
    model.load_state_dict(state, strict=True)
    model.to(map_location)
    model.eval()
    return model, info


def _check_values(path: Path, expected: dict, state: dict) -> None:
    """Weights that load without error but mean nothing: integer tensors for floating parameters (a
    quantised or mislabelled file; half precision is fine) or NaN / inf (a run that diverged)."""
    ints = [f"{k} ({state[k].dtype})" for k, v in expected.items()
            if v.is_floating_point() and not (state[k].is_floating_point() or state[k].is_complex())]
    if ints:
        raise CheckpointError(f"{path}: integer weights for floating-point parameters: {_listed(ints)}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{path}: weights with NaN or inf (a diverged run?): {_listed(bad)}")


def _check_shapes_before_building(path: Path, info: dict, state: dict) -> None:
    """The config's parameter shapes against the file's, from a model built on the ``meta`` device (no
    memory): a config asking for a model far larger than its weights (or than this machine) fails here,
    at once, instead of allocating. A model that cannot be built on ``meta`` is checked after building."""
    try:
        with torch.device("meta"):
            meta_model = build_model(info["kind"], info["config"])
        expected = {k: tuple(v.shape) for k, v in meta_model.state_dict().items()}
    except Exception:  # e.g. an init that reads values (.item()) of meta tensors
        return
    wrong = [f"{k} {tuple(state[k].shape)} vs {shape}" for k, shape in expected.items()
             if k in state and tuple(state[k].shape) != shape]
    missing = set(expected) - set(state)
    if wrong or missing:
        n = sum(int(torch.Size(s).numel()) for s in expected.values())
        raise CheckpointError(f"{path}: the {info['kind']!r} config in {CONFIG_FILE} asks for {n:,} parameters that "
                              f"its weights do not have (" + "; ".join(
                                  ([f"shape mismatches (file vs config): {_listed(wrong)}"] if wrong else [])
                                  + ([f"missing keys: {_listed(missing)}"] if missing else [])) + ")")


def load_trainer_state(ckpt_dir: str | Path, map_location: str | torch.device = "cpu",
                       weights_only: bool = True) -> dict | None:
    """The ``trainer_state`` saved with the checkpoint, or None if it has none.

    ``weights_only=True`` (torch's safe loader) accepts tensors, dicts, lists, tuples, numbers,
    strings and plain numeric numpy arrays: optimizer / scheduler state dicts, ``torch.get_rng_state()``,
    ``np.random.get_state()``, ``random.getstate()``, ``Generator.bit_generator.state``. Pass False
    for other pickled objects from a trusted file.
    """
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {ckpt_dir}")
    path = ckpt_dir / TRAINER_FILE
    if not path.is_file():
        return None
    try:
        if not weights_only:
            return torch.load(path, map_location=map_location, weights_only=False)
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read trainer state: {e}") from None


def _numpy_safe_globals() -> list:
    """Globals that unpickle plain numeric numpy arrays (e.g. ``np.random.get_state()``) and nothing else."""
    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    dtypes = [type(np.dtype(t)) for t in ("b", "B", "h", "H", "i", "I", "l", "L", "q", "Q", "e", "f", "d", "?")]
    return [_reconstruct, np.ndarray, np.dtype, *dict.fromkeys(dtypes)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The complete ``<run_dir>/checkpoints/step_%08d`` with the highest step (None if there is none).

    Complete = a directory holding both ``model.safetensors`` and ``config.json``; hidden temp /
    aside directories of interrupted saves never match the name pattern.
    """
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return None
    best: tuple[int, Path] | None = None
    for p in root.iterdir():
        m = STEP_DIR.match(p.name)
        if not m or not p.is_dir() or not (p / MODEL_FILE).is_file() or not (p / CONFIG_FILE).is_file():
            continue
        step = int(m.group(1))
        if best is None or step > best[0]:
            best = (step, p)
    return None if best is None else best[1]


# ---- retention and clean-up -----------------------------------------------------------------------------
def complete_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``[(step, dir)]`` of the complete ``<run_dir>/checkpoints/step_*`` (weights and config), ascending."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = STEP_DIR.match(p.name)
        if m and p.is_dir() and (p / MODEL_FILE).is_file() and (p / CONFIG_FILE).is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one of another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_interrupted_saves(run_dir: str | Path, own_pid_is_stale: bool = True) -> list[str]:
    """Remove ``<run_dir>/checkpoints/.<name>.tmp-<pid>`` / ``.del-<pid>`` left by a process that is gone
    (a kill mid-save or mid-deletion); an ``.old-<pid>`` whose ``<name>`` is missing is renamed back (the
    crash fell between the two renames of an overwrite), otherwise removed. A directory of a process that
    is alive is left alone; this process's own pid counts as gone when ``own_pid_is_stale`` (at start-up a
    previous process with the same pid left it). -> what was done, one line per directory."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = []
    for p in sorted(root.iterdir()):
        m = HIDDEN_DIR.match(p.name)
        if not m or not p.is_dir():
            continue
        name, what, pid = m.group(1), m.group(2), int(m.group(3))
        if pid_alive(pid) and not (own_pid_is_stale and pid == os.getpid()):
            continue
        final = root / name
        if what == "old" and not final.exists() and (p / MODEL_FILE).is_file() and (p / CONFIG_FILE).is_file():
            os.replace(p, final)
            done.append(f"restored {final.name} from {p.name}")
            continue
        shutil.rmtree(p, ignore_errors=True)
        done.append(f"removed {p.name}")
    return done


def claim_for_evaluation(ckpt_dir: str | Path) -> Path | None:
    """Mark ``ckpt_dir`` (``.../checkpoints/step_N``) as being scored, so that the learner's retention keeps
    it (one claim per run: a newer claim replaces the last). -> the claim file, or None if it could not be
    written (a read-only run directory: retention then keeps only ``keep_last``)."""
    ckpt_dir = Path(ckpt_dir)
    m = STEP_DIR.match(ckpt_dir.name)
    if not m:
        return None
    path = ckpt_dir.parent / CLAIM_FILE
    tmp = ckpt_dir.parent / f"{CLAIM_FILE}.tmp-{os.getpid()}"
    try:
        tmp.write_text(json.dumps({"step": int(m.group(1)), "pid": os.getpid(), "time": round(time.time(), 3)}))
        os.replace(tmp, path)
    except OSError as e:
        log.debug("cannot claim %s for evaluation: %s", ckpt_dir, e)
        return None
    return path


def release_claim(ckpt_dir: str | Path) -> None:
    """Drop the claim of ``ckpt_dir`` (only if the claim file still names it)."""
    ckpt_dir = Path(ckpt_dir)
    path = ckpt_dir.parent / CLAIM_FILE
    m = STEP_DIR.match(ckpt_dir.name)
    try:
        if m and json.loads(path.read_text()).get("step") == int(m.group(1)):
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def claimed_steps(run_dir: str | Path) -> set[int]:
    """Steps an evaluator has claimed in ``<run_dir>/checkpoints`` (empty without a readable claim)."""
    try:
        step = json.loads((Path(run_dir) / "checkpoints" / CLAIM_FILE).read_text()).get("step")
    except (OSError, ValueError, AttributeError):
        return set()
    return {step} if isinstance(step, int) and not isinstance(step, bool) else set()


def prune_checkpoints(run_dir: str | Path, keep_last: int, protect=()) -> list[Path]:
    """Delete all but the newest ``keep_last`` complete checkpoints of ``run_dir`` (0 = keep all), sparing
    the steps in ``protect`` and the one an evaluator has claimed. Each is first renamed to a hidden
    ``.<name>.del-<pid>`` (so a reader never sees it half deleted). -> the checkpoints removed."""
    if keep_last <= 0:
        return []
    ckpts = complete_checkpoints(run_dir)
    spare = set(protect) | claimed_steps(run_dir)
    removed = []
    for step, p in ckpts[:-keep_last]:
        if step in spare:
            continue
        gone = p.parent / f".{p.name}.del-{os.getpid()}"
        try:
            os.replace(p, gone)
        except OSError as e:
            log.warning("cannot remove old checkpoint %s: %s", p, e)
            continue
        shutil.rmtree(gone, ignore_errors=True)
        removed.append(p)
    return removed
