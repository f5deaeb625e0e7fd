"""`regconsist bench fuzz --sections checkpoints`: bad checkpoints in the evaluator's watched directory.

The ROS-free evaluator core (:class:`regconsist_ros.online.evaluator.Evaluator`, what the evaluator
node polls) watches a run directory as the learner writes it. Each kind of :data:`KINDS` turns a
freshly saved good checkpoint (a tiny ViT) into a bad one at step ``2k + 1``; the evaluator polls;
then a good checkpoint comes at step ``2k + 2`` and it polls again, as it would live. Per kind:

- ``crashed``: ``poll()`` raised, or the worker process died (a hard crash: it is restarted for the
  next kind);
- ``outcome``: ``quarantined`` (a result line saying why; never retried), ``ignored`` (not a
  complete checkpoint: no weights or config file, so never listed), or ``evaluated`` (read out as
  if it were good: the bad input was taken; ``nan_scores`` says whether its scores are NaN);
- ``good_after``: the good checkpoint after it was evaluated.

The kinds run in a worker process (this module with ``--worker``), one JSON line per kind, so that
even a crash inside native code is counted instead of ending the bench.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _vit():
    from regconsist_ros.models.vit import ViTConfig

    return ViTConfig(size="tiny", img_size=(32, 48), patch=8, depth=1)


def save_good(run: Path, step: int, cfg=None) -> Path:
    from regconsist_ros.models.checkpoint import save_checkpoint
    from regconsist_ros.models.encoder import random_encoder

    cfg = cfg or _vit()
    return save_checkpoint(run / "checkpoints" / f"step_{step:08d}", random_encoder("vit", cfg), "vit", cfg, step=step)


def _weights(ck: Path) -> Path:
    return ck / "model.safetensors"


def _config(ck: Path) -> Path:
    return ck / "config.json"


def _edit_config(ck: Path, fn) -> None:
    head = json.loads(_config(ck).read_text())
    fn(head)
    _config(ck).write_text(json.dumps(head))


def _retype(ck: Path, fn) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(_weights(ck)))
    save_file({k: fn(v) for k, v in state.items()}, str(_weights(ck)))


def _other_shapes(ck: Path) -> None:
    """Weights of another ViT (patch 4: other patch-embedding and position shapes) under this config."""
    from dataclasses import replace

    other = save_good(ck.parent.parent / "other", 1, replace(_vit(), patch=4))
    shutil.copy(_weights(other), _weights(ck))
    shutil.rmtree(ck.parent.parent / "other")


def _replace_with_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _symlink_loop(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.name)


def _huge_header(ck: Path) -> None:
    """A safetensors file whose 8-byte header length claims 2^62 bytes."""
    raw = _weights(ck).read_bytes()
    _weights(ck).write_bytes(struct.pack("<Q", 2**62) + raw[8:])


KINDS = {  # name -> what turns a good checkpoint directory into a bad one
    "weights_truncated_half": lambda ck: _weights(ck).write_bytes(_weights(ck).read_bytes()[: _weights(ck).stat().st_size // 2]),
    "weights_zero_bytes": lambda ck: _weights(ck).write_bytes(b""),
    "weights_random_bytes": lambda ck: _weights(ck).write_bytes(os.urandom(_weights(ck).stat().st_size)),
    "weights_header_claims_2^62_bytes": _huge_header,
    "weights_wrong_shapes": _other_shapes,
    "weights_float16": lambda ck: _retype(ck, lambda t: t.half()),
    "weights_int8": lambda ck: _retype(ck, lambda t: t.to(__import__("torch").int8)),
    "weights_all_nan": lambda ck: _retype(ck, lambda t: t.float().fill_(math.nan)),
    "weights_missing": lambda ck: _weights(ck).unlink(),
    "weights_is_a_directory": lambda ck: _replace_with_dir(_weights(ck)),
    "weights_symlink_loop": lambda ck: _symlink_loop(_weights(ck)),
    "config_bad_json": lambda ck: _config(ck).write_text('{"format": 1, "kind": "vit", '),
    "config_random_bytes": lambda ck: _config(ck).write_bytes(os.urandom(512)),
    "config_zero_bytes": lambda ck: _config(ck).write_bytes(b""),
    "config_a_list": lambda ck: _config(ck).write_text("[1, 2, 3]"),
    "config_nesting_bomb": lambda ck: _config(ck).write_text("[" * 100_000 + "]" * 100_000),
    "config_too_large_model": lambda ck: _edit_config(ck, lambda h: h["config"].update(mlp_ratio=1e7)),
    "config_unknown_kind": lambda ck: _edit_config(ck, lambda h: h.update(kind="nosuchmodel")),
    "config_unknown_field": lambda ck: _edit_config(ck, lambda h: h["config"].update(nosuchfield=1)),
    "config_step_a_string": lambda ck: _edit_config(ck, lambda h: h.update(step="five")),
    "config_missing": lambda ck: _config(ck).unlink(),
    "config_is_a_directory": lambda ck: _replace_with_dir(_config(ck)),
}


def _worker(root: Path, start: int, limit: int) -> None:
    """Run kinds ``start..`` in this process; one JSON line per kind on stdout (see the module docstring)."""
    import logging

    import numpy as np

    from regconsist_ros.online.evaluator import Evaluator, EvaluatorConfig

    logging.basicConfig(level=logging.ERROR)
    cfg = EvaluatorConfig(watch_dir=str(root / "online"), eval_frames=8, clip_len=4, eval_width=64, eval_height=48,
                          min_object_pixels=20, readouts=("propagation",), floors=False)
    ev = Evaluator(cfg)
    run = root / "online" / "rsp"
    names = list(KINDS)[: limit or None]
    for k in range(start, len(names)):
        name = names[k]
        row = {"kind": name, "index": k, "crashed": False}
        bad = save_good(run, 2 * k + 1)
        KINDS[name](bad)
        try:
            rows = ev.poll()
            mine = [r for r in rows if r.get("step") == 2 * k + 1]
            if not mine:
                row["outcome"] = "ignored"
            elif "quarantined" in mine[0]:
                row.update(outcome="quarantined", reason=mine[0]["quarantined"][:300])
            else:
                scores = [v for v in _numbers(mine[0].get("propagation"))]
                row.update(outcome="evaluated", nan_scores=bool(scores) and any(not np.isfinite(v) for v in scores))
        except BaseException as e:  # noqa: BLE001 - a crash of the core is what this section counts
            row.update(crashed=True, outcome="crashed", error=f"{type(e).__name__}: {str(e)[:300]}")
        save_good(run, 2 * k + 2)
        try:
            rows = ev.poll()
            row["good_after"] = any(r.get("step") == 2 * k + 2 and "propagation" in r for r in rows)
        except BaseException as e:  # noqa: BLE001
            row.update(crashed=True, good_after=False, error_after=f"{type(e).__name__}: {str(e)[:300]}")
        print(json.dumps(row), flush=True)


def _numbers(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _numbers(v)
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield float(tree)


def bench_fuzz_checkpoints(limit: int = 0, progress=None, timeout: float = 300.0) -> dict:
    """Every kind of :data:`KINDS` (the first ``limit`` when > 0) against the evaluator core; the section's dict."""
    root = Path(tempfile.mkdtemp(prefix="regconsist-fuzz-checkpoints-"))
    n = min(limit, len(KINDS)) if limit > 0 else len(KINDS)
    rows: list[dict] = []
    restarts = 0
    t0 = time.monotonic()
    try:
        while len(rows) < n:
            start = len(rows)
            p = subprocess.Popen([sys.executable, "-m", __name__, "--worker", str(root), str(start), str(n)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"})
            try:
                out, err = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
            for line in out.splitlines():
                if line.startswith("{"):
                    rows.append(json.loads(line))
                    if progress is not None:
                        progress(rows[-1])
            if len(rows) < n:  # the worker died inside this kind: a hard crash
                restarts += 1
                rows.append({"kind": list(KINDS)[len(rows)], "index": len(rows), "crashed": True, "outcome": "crashed",
                             "good_after": False, "error": f"worker exited {p.returncode}: {err[-500:]}"})
                if progress is not None:
                    progress(rows[-1])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    outcomes = {o: sum(r["outcome"] == o for r in rows) for o in ("quarantined", "ignored", "evaluated", "crashed")}
    return {"inputs": len(rows), "crashes": sum(r["crashed"] for r in rows), **outcomes,
            "good_after_failures": sum(not r.get("good_after") for r in rows), "worker_restarts": restarts,
            "seconds": round(time.monotonic() - t0, 1), "kinds": rows}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        _worker(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        print(json.dumps(bench_fuzz_checkpoints()))
