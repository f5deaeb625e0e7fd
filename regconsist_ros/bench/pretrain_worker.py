"""Timed training steps of one method, for ``regconsist bench pretrain`` (also run as a script, by path).

``measure(spec)`` builds the method's run from ``{dotted name: value}`` over its recipe, one real batch of its
kind from a rendered sequence, and times ``warmup + steps`` optimiser steps of the project's
:class:`~regconsist_ros.learning.trainer.Trainer` on it (in memory: no run directory, no checkpoint).

As a script, ``python pretrain_worker.py SPEC_JSON`` imports ``regconsist_ros`` from ``spec["tree"]`` (a
package tree exported from another git revision, see :mod:`regconsist_ros.bench.revisions`) and prints the
result as one JSON line. It uses only interfaces older revisions have too (``recipe``, ``schema``,
``MethodRun.from_groups``, ``build_groups``, ``BatchSampler``, ``Trainer.fit``), so the same measurement runs
on the old and the new code.
"""
from __future__ import annotations

import json
import sys
import time


def measure(spec: dict) -> dict:
    """spec: method, values ({dotted name: value}), seq (a TUM sequence directory), steps, warmup, seed,
    device, nthreads -> step times (s), losses and the model's size."""
    import torch

    from regconsist_ros.config import build_groups
    from regconsist_ros.learning.pretrain import BatchSampler, make_prep
    from regconsist_ros.learning.runs import MethodRun, recipe, schema
    from regconsist_ros.learning.trainer import Trainer, resolve_device, seed_everything

    if spec.get("nthreads"):
        torch.set_num_threads(int(spec["nthreads"]))
    m = spec["method"]
    values = dict(spec.get("values", {}))
    ignored = []
    if spec.get("tree"):  # an older revision runs without the settings it does not have yet (e.g. a new speed knob)
        from regconsist_ros.config import setting_names

        known = setting_names(schema(m))
        ignored = sorted(k for k in values if k not in known)
        values = {k: v for k, v in values.items() if k in known}
    groups = build_groups(schema(m), values, recipe(m).groups(), where=f"bench pretrain {m}")
    run = MethodRun.from_groups(m, groups)
    steps, warmup, seed = int(spec["steps"]), int(spec["warmup"]), int(spec.get("seed", 0))
    import tempfile
    from dataclasses import replace
    from pathlib import Path

    dev = resolve_device(spec.get("device", "auto"))
    with tempfile.TemporaryDirectory() as tmp:
        store = run.kind.load(str(spec["seq"]), make_prep(run), run.batch, Path(tmp), False)
        seed_everything(seed)
        obj = run.build_objective()
        batch = BatchSampler(run, store, obj, seed)(0)
    cfg = replace(run.trainer_config(), steps=warmup + steps, device=str(dev), log_every=1, ckpt_every=0,
                  warmup=max(1, warmup + steps))
    t0 = time.perf_counter()
    import inspect

    # log_every=1: time the step alone, without an objective's diagnostics (revisions before them have no switch)
    quiet = {"diagnostics": False} if "diagnostics" in inspect.signature(Trainer).parameters else {}
    trainer = Trainer(obj, cfg, None, distributed=False, **quiet)
    build_s = time.perf_counter() - t0
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    marks, losses = [time.perf_counter()], []

    def tick(step: int, row: dict) -> None:
        sync()
        marks.append(time.perf_counter())
        losses.append(row["loss"])
        if step == warmup and dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

    trainer.fit(lambda step: batch, progress=False, checkpoint=False, callback=tick)
    times = [b - a for a, b in zip(marks, marks[1:])]
    gflop = count_gflop(trainer, batch) if spec.get("flops") else None
    images = sum(int(v.shape[0]) * (int(v.shape[1]) if v.ndim == 5 else 1) for v in batch.values()
                 if torch.is_tensor(v) and v.ndim in (4, 5) and v.shape[-3] == 3)
    out = {"method": m, "batch": {k: list(v.shape) for k, v in batch.items() if torch.is_tensor(v)}, "images": images,
           "encoder": {"kind": run.spec.encoder_kind, **vars(run.encoder)}, "device": str(dev),
           "threads": torch.get_num_threads(), "build_s": build_s, "warmup_s": times[:warmup], "step_s": times[warmup:],
           "losses": losses, "ignored_settings": ignored, "params_m": round(sum(p.numel() for p in obj.parameters()) / 1e6, 2),
           "trainer": {k: getattr(cfg, k) for k in ("optimizer", "amp", "compile", "channels_last") if hasattr(cfg, k)}}
    import resource

    out["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)  # KiB on Linux
    if gflop is not None:
        out["gflop_per_step"] = round(gflop, 1)
    if dev.type == "cuda":
        out["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        out["gpu"] = torch.cuda.get_device_name(dev)
    return out


def count_gflop(trainer, batch: dict) -> float:
    """GFLOP of one forward + backward of the trainer's objective on ``batch`` (matrix products and
    convolutions, as ``torch.utils.flop_counter`` counts them; elementwise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        loss, _ = trainer.model(trainer._to_device(batch))
        loss.backward()
    trainer.opt.zero_grad(set_to_none=True)
    return fc.get_total_flops() / 1e9


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    sys.path[:1] = [spec["tree"]] if spec.get("tree") else []  # never this folder (its modules are bench names)
    print(json.dumps(measure(spec), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
