"""`regconsist pretrain <method>`: any registered method on offline data, through the one trainer.

The method's batch kind says what the data must be and loads it into a frame store; the kind's
builder makes every batch from the store, as a pure function of (seed, step, rank), so a resumed
run sees the same batches as an uninterrupted one.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

from regconsist_ros.config import build_groups, group_values, nest
from regconsist_ros.learning.batches import out_size
from regconsist_ros.learning.runs import MethodRun
from regconsist_ros.learning.stores import specs_list
from regconsist_ros.learning.trainer import Trainer, dist_rank, seed_everything

log = logging.getLogger(__name__)


def prep_schema(run: MethodRun) -> list[tuple[str, type]]:
    """The offline data-preparation groups of the run's batch kind (``load.*``, ``view_pairs.*``, ...)."""
    return list(run.kind.prep)


def make_prep(run: MethodRun, values: dict | None = None, where: str = "pretrain") -> dict:
    """``{group: config}`` of the data preparation from ``{dotted name: value}`` (defaults otherwise)."""
    return build_groups(prep_schema(run), dict(values or {}), where=where)


class BatchSampler:
    """``sampler(step) -> batch``: the run's batch kind over a store, seeded by (seed, step, rank)."""

    def __init__(self, run: MethodRun, store, objective, seed: int | None = None):
        self.run, self.store, self.objective = run, store, objective
        self.seed = run.trainer.seed if seed is None else seed
        self.size = out_size(run.batch, run.encoder, store)

    def __call__(self, step: int) -> dict:
        rank = dist_rank()  # every rank of a distributed run draws its own batches
        rng = np.random.default_rng([self.seed, step] + ([rank] if rank else []))
        return self.run.kind.build(self.store, self.run.batch, rng, self.size, self.objective)


class Prefetcher:
    """``prefetcher(step) -> batch``: ``sampler(step)``, with ``sampler(step + 1)`` built in a background
    thread while the caller trains on ``step``. Batches are pure functions of the step (seeded generators, no
    global RNG), so they are the ones the sampler gives without prefetching; an error of the builder surfaces
    at the step it belongs to."""

    def __init__(self, sampler):
        from concurrent.futures import ThreadPoolExecutor

        self.sampler = sampler
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batches")
        self._next: tuple[int, object] | None = None

    def __call__(self, step: int) -> dict:
        pending, self._next = self._next, None
        batch = pending[1].result() if pending is not None and pending[0] == step else self.sampler(step)
        self._next = (step + 1, self._pool.submit(self.sampler, step + 1))
        return batch

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def pretrain(run: MethodRun, data, out, prep: dict | None = None, resume: bool = True, progress: bool = True,
             store=None) -> dict:
    """Pretrain ``run`` on ``data`` (source specs) or on a ready ``store``; checkpoints go to ``out/checkpoints``.

    ``prep``: the data-preparation configs (:func:`make_prep`; defaults when None). Returns the
    trainer's result plus what the store holds (frames, dropped frames, view pairs, ...)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prep = prep if prep is not None else make_prep(run)
    if store is None:
        store = run.kind.load(data, prep, run.batch, out, progress)
    seed_everything(run.trainer.seed)
    objective = run.build_objective()
    sampler = BatchSampler(run, store, objective)
    specs = specs_list(data)
    prep_values = {}
    for name, cfg in prep.items():
        prep_values.update(group_values(cfg, name))
    held = store.summary()
    trainer = run.trainer_config()
    record = {"method": run.method, "data": specs, "batch_kind": run.spec.batch, **held, "settings": run.tree(),
              "data_settings": nest(prep_values), "trainer": asdict(trainer)}
    (out / "run.json").write_text(json.dumps(record, indent=1, default=list))
    t = Trainer(objective, trainer, out, meta={"method": run.method, "data": specs, "settings": run.tree()})
    if resume:
        t.resume()
    batches = Prefetcher(sampler)
    try:
        result = t.fit(batches, progress=progress)
    finally:
        batches.close()
    if isinstance(held.get("frames"), list):
        held["frames"] = sum(held["frames"])  # run.json keeps the count per source
    return {**result, "method": run.method, **held, "run_dir": str(out)}
