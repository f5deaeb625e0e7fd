"""Method-agnostic training loop: schedule, clipping, AMP, atomic checkpoints, resume, logs.

The trainer knows no method. An *objective* is an ``nn.Module`` whose ``forward(batch)`` returns
``(loss, logs)`` and which exposes the encoder that readouts use: ``objective.encoder`` (module),
``objective.encoder_kind`` (registry name) and ``objective.encoder_config`` (dataclass); an optional
``objective.after_step(step, total_steps)`` runs after every optimiser step (momentum targets), and an
optional ``objective.diagnostics(batch) -> dict`` runs on logged steps at least ``DIAGNOSTICS_EVERY`` steps
apart and on the schedule's last (no gradient, on that step's batch, after the update): its numbers join the
log row as ``diag_<name>`` (e.g. RSP's prediction loss from the posterior vs from the prior); one that fails is
logged and switched off, training goes on. Batches come from any iterator of dicts of tensors (or a function
step -> dict).

The readouts train through the same loop: segmentation fine-tuning (``readout.segmentation``) and BC policy
training (``readout.bc``). For them the trainer runs without a run directory (``run_dir=None``: nothing is
written) or with metrics only (``fit(checkpoint=False)``), outside torch.distributed (``distributed=False``),
and ``fit(callback=...)`` sees every step (BC's per-epoch rollouts). An objective may return ``(None, logs)``
for a batch with nothing to learn from (e.g. only void pixels): the step passes without an update, unlike a
non-finite loss it is not an error.
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


@dataclass
class TrainerConfig:
    """Optimisation settings shared by every objective."""

    steps: int = field(default=1000, metadata={"help": "optimisation steps"})
    lr: float = field(default=0.01, metadata={"help": "peak learning rate (per lr_batch samples when lr_batch > 0)"})
    lr_batch: int = field(default=0, metadata={"help": "linear scaling rule: lr is given for this batch size and scaled by batch / lr_batch (0 = lr as given)"})
    optimizer: Literal["sgd", "adamw"] = field(default="sgd", metadata={"help": "sgd (momentum) or adamw"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum"})
    betas: tuple[float, ...] = field(default=(0.9, 0.95), metadata={"help": "AdamW betas"})
    weight_decay: float = field(default=1e-4, metadata={"help": "weight decay"})
    warmup: int = field(default=100, metadata={"help": "linear warm-up steps, then the decay of `schedule`"})
    schedule: Literal["cosine", "poly"] = field(default="cosine", metadata={"help": "decay after the warm-up: cosine, or poly (1 - t)^0.9 as in DeepLab"})
    min_lr_ratio: float = field(default=0.0, metadata={"help": "final lr as a fraction of the peak"})
    grad_clip: float = field(default=5.0, metadata={"help": "max gradient norm (0 = off)"})
    log_every: int = field(default=10, metadata={"help": "steps between log lines"})
    ckpt_every: int = field(default=0, metadata={"help": "steps between checkpoints (0 = only at the end)"})
    keep_last: int = field(default=5, metadata={"help": "complete checkpoints kept in the run directory, the newest (plus the one an evaluator is scoring); 0 = keep all"})
    seed: int = field(default=0, metadata={"help": "seed of torch/numpy/python RNGs"})
    device: str = field(default="auto", metadata={"help": "auto (cuda when available), cpu, cuda, cuda:N"})
    amp: bool = field(default=True, metadata={"help": "bf16 autocast on CUDA (ignored on CPU)"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch default)"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the objective (pays after a break-even step count: docs/benchmarks.md)"})
    channels_last: bool = field(default=False, metadata={"help": "channels-last memory format for the objective and image batches (convolutional encoders)"})

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"TrainerConfig.steps must be >= 1, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"TrainerConfig.lr must be > 0, got {self.lr}")
        if self.lr_batch < 0:
            raise ValueError(f"TrainerConfig.lr_batch must be >= 0 (0 = lr as given), got {self.lr_batch}")
        if self.warmup < 0 or self.log_every < 1 or self.ckpt_every < 0:
            raise ValueError(f"TrainerConfig: bad warmup={self.warmup}, log_every={self.log_every} or ckpt_every={self.ckpt_every}")
        if self.keep_last < 0:
            raise ValueError(f"TrainerConfig.keep_last must be >= 0 (0 = keep every checkpoint), got {self.keep_last}")
        if self.schedule not in ("cosine", "poly"):
            raise ValueError(f"TrainerConfig.schedule must be 'cosine' or 'poly', got {self.schedule!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"TrainerConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip < 0:
            raise ValueError(f"TrainerConfig.grad_clip must be >= 0, got {self.grad_clip}")


def make_optimizer(cfg: TrainerConfig, params) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW as ``cfg`` says, with the multi-tensor (foreach) update on every device."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=True)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, foreach=True)


def scaled(cfg: TrainerConfig, batch: int) -> TrainerConfig:
    """The config the trainer runs with for batches of ``batch`` samples: ``lr`` scaled by
    ``batch / lr_batch`` when ``lr_batch`` > 0 (then ``lr_batch`` = 0: the lr as it is run)."""
    if not cfg.lr_batch:
        return cfg
    from dataclasses import replace

    return replace(cfg, lr=cfg.lr * batch / cfg.lr_batch, lr_batch=0)


def warmup_cosine(step: int, lr: float, warmup: int, steps: int, min_lr_ratio: float = 0.0) -> float:
    """Learning rate of 0-based ``step``: linear warm-up to ``lr`` over ``warmup`` steps, then cosine
    decay to ``lr * min_lr_ratio`` at ``steps`` (the one schedule used by pretraining and readouts)."""
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    lo = lr * min_lr_ratio
    return lo + (lr - lo) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


POLY_POWER = 0.9  # DeepLab's poly schedule


def warmup_poly(step: int, lr: float, warmup: int, steps: int, min_lr_ratio: float = 0.0,
                power: float = POLY_POWER) -> float:
    """Learning rate of 0-based ``step``: linear warm-up to ``lr``, then ``lr * (1 - t) ** power``
    (t = fraction of the post-warm-up steps done) down to ``lr * min_lr_ratio``."""
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, steps - warmup))
    lo = lr * min_lr_ratio
    return lo + (lr - lo) * (1.0 - t) ** power


def lr_at(step: int, cfg: TrainerConfig) -> float:
    """The trainer's schedule at ``step``."""
    decay = warmup_poly if cfg.schedule == "poly" else warmup_cosine
    return decay(step, cfg.lr, cfg.warmup, cfg.steps, cfg.min_lr_ratio)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return dev


def init_distributed_from_env() -> bool:
    """Join the process group torchrun describes (WORLD_SIZE > 1 in the environment): NCCL on CUDA,
    gloo on CPU; each rank uses cuda:LOCAL_RANK. False (and nothing done) when not under torchrun."""
    import os

    d = torch.distributed
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not d.is_available():
        return False
    if not d.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        d.init_process_group("nccl" if cuda else "gloo")
    return True


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSON-lines file (metrics.jsonl, eval_results.jsonl); [] when it does not exist. A line
    cut short by a crash is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def dist_rank() -> int:
    """This process' rank under torch.distributed (0 when not distributed): batch samplers mix it into
    their seeds so every rank trains on different data."""
    d = torch.distributed
    return d.get_rank() if d.is_available() and d.is_initialized() else 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


DIAGNOSTICS_EVERY = 10  # least steps between two diagnostics (their cost stays ~1/10 of a forward pass at log_every=1)


class Trainer:
    """Runs an objective for ``cfg.steps`` steps, checkpointing into ``run_dir/checkpoints``.

    ``run_dir=None`` keeps everything in memory: no metrics.jsonl, no checkpoints (``save()`` returns
    None, ``resume()`` False); ``history`` still has the logged rows. ``distributed=False`` trains in this
    process alone even when torch.distributed is initialised (a readout run by one rank). ``diagnostics=False``
    skips the objective's ``diagnostics`` (a speed benchmark that logs every step times the step alone)."""

    def __init__(self, objective: nn.Module, cfg: TrainerConfig, run_dir: str | Path | None, meta: dict | None = None,
                 *, distributed: bool = True, diagnostics: bool = True):
        self.cfg = cfg
        self.diagnostics = diagnostics
        self._diagnosed = -DIAGNOSTICS_EVERY  # the step of the last diagnostics
        self.run_dir = None if run_dir is None else Path(run_dir)
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if dist_rank() == 0:  # temp directories of a save that a kill interrupted (their process is gone)
                from regconsist_ros.models.checkpoint import clean_interrupted_saves

                for line in clean_interrupted_saves(self.run_dir):
                    log.info("checkpoints of %s: %s (an interrupted save)", self.run_dir, line)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = resolve_device(cfg.device)
        if self.device.type == "cpu":
            from regconsist_ros.learning.allocator import keep_freed_memory

            keep_freed_memory()  # steps reuse freed activation buffers instead of faulting in fresh pages
        self.objective = objective.to(self.device)
        self.meta = meta or {}
        # torch.distributed (torchrun): gradients are averaged over ranks by DDP; rank 0 writes checkpoints
        dist = torch.distributed
        self.distributed = distributed and dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        self.model: nn.Module = self.objective
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
                if self.device.type == "cuda" else None
            # find_unused_parameters: ablations (e.g. RSP without MAE) leave parts of the objective unused
            self.model = DistributedDataParallel(self.objective, device_ids=ids, find_unused_parameters=True)
        if cfg.channels_last:
            self.objective.to(memory_format=torch.channels_last)
        if cfg.compile:  # in place: the objective keeps its attributes, state_dict keys and checkpoints
            self.model.compile()
        self.opt = make_optimizer(cfg, [p for p in objective.parameters() if p.requires_grad])
        self.step = 0
        self.history: list[dict] = []

    # ---- checkpoints ---------------------------------------------------------------------------
    def save(self) -> Path | None:
        """Atomic checkpoint of the current step (rank 0 only under torch.distributed; None elsewhere and
        without a run directory)."""
        from regconsist_ros.models.checkpoint import save_checkpoint

        if self.rank != 0 or self.run_dir is None:
            return None
        obj = self.objective
        state = {"objective": obj.state_dict(), "optimizer": self.opt.state_dict(), "step": self.step,
                 "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(), "python_rng": random.getstate(),
                 "trainer_config": asdict(self.cfg)}
        path = self.run_dir / "checkpoints" / f"step_{self.step:08d}"
        saved = save_checkpoint(path, obj.encoder, obj.encoder_kind, obj.encoder_config, step=self.step,
                                trainer_state=state, meta={**self.meta, "trainer": asdict(self.cfg)})
        self.prune()
        return saved

    def prune(self) -> list[Path]:
        """Retention after a save: the newest ``keep_last`` checkpoints (and an evaluator's claimed one) stay."""
        from regconsist_ros.models.checkpoint import prune_checkpoints

        if self.rank != 0 or self.run_dir is None or not self.cfg.keep_last:
            return []
        try:
            return prune_checkpoints(self.run_dir, self.cfg.keep_last)
        except OSError as e:  # retention never fails a save
            log.warning("checkpoint retention in %s failed: %s", self.run_dir, e)
            return []

    def resume(self) -> bool:
        """Continue from the latest complete checkpoint in ``run_dir`` (True if one was found)."""
        from regconsist_ros.models.checkpoint import latest_checkpoint, load_trainer_state

        if self.run_dir is None:
            return False
        ckpt = latest_checkpoint(self.run_dir)
        if ckpt is None:
            return False
        state = load_trainer_state(ckpt)
        if state is None:
            log.warning("checkpoint %s has no trainer state; starting from scratch", ckpt)
            return False
        self.objective.load_state_dict(state["objective"])
        self.opt.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        log.info("resumed from %s (step %d)", ckpt, self.step)
        return True

    # ---- loop ----------------------------------------------------------------------------------
    def _to_device(self, batch: dict) -> dict:
        cl = self.cfg.channels_last

        def move(v):
            if not torch.is_tensor(v):
                return v
            v = v.to(self.device, non_blocking=True)
            return v.contiguous(memory_format=torch.channels_last) if cl and v.ndim == 4 and v.is_floating_point() else v

        return {k: move(v) for k, v in batch.items()}

    def train_step(self, batch: dict, lr: float) -> tuple[torch.Tensor | None, dict, torch.Tensor | None]:
        """One optimiser step on a device batch at learning rate ``lr`` -> (loss, logs, grad norm). No update
        (grad norm None) when the loss is None (nothing to learn from) or not finite; the caller counts those."""
        cfg = self.cfg
        for g in self.opt.param_groups:
            g["lr"] = lr
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and self.device.type == "cuda"):
            loss, logs = self.model(batch)
        if loss is None or not torch.isfinite(loss):
            return loss, logs, None
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = (nn.utils.clip_grad_norm_(self.objective.parameters(), cfg.grad_clip, foreach=True) if cfg.grad_clip
                 else torch.tensor(0.0))
        self.opt.step()
        return loss, logs, gnorm

    def fit(self, batches: Iterator[dict] | Callable[[int], dict], progress: bool = True, until: int | None = None,
            checkpoint: bool = True, callback: Callable[[int, dict], None] | None = None, desc: str = "train") -> dict:
        """Train until ``cfg.steps`` (or stop early at step ``until``, e.g. a time slice of an online
        learner; the schedule stays that of ``cfg.steps``). ``batches`` is an iterator of dicts or a
        function step -> dict. Ends with a checkpoint unless ``checkpoint=False`` (the online learner
        checkpoints on its own schedule).

        ``callback(step, row)`` runs after every step (``step`` = steps done so far), skipped ones included:
        ``row`` is the step's log row (``step``, ``loss``, ``lr``, ``grad_norm``, ``elapsed_s``, the
        objective's logs) plus ``skipped`` (False, ``"non-finite"`` or ``"empty"``). The callback may
        evaluate the objective (eval mode, no grad); training mode is restored after it."""
        from tqdm import tqdm

        cfg = self.cfg
        stop = cfg.steps if until is None else min(until, cfg.steps)
        self.objective.train()
        import os

        metrics = ((self.run_dir / "metrics.jsonl").open("a") if self.rank == 0 and self.run_dir is not None
                   else open(os.devnull, "w"))
        bar = tqdm(total=stop, initial=self.step, desc=desc, unit="step", disable=not progress)
        t0, skipped, empty = time.perf_counter(), 0, 0

        def passed(lr: float, loss: float, why: str, logs: dict) -> None:  # a step without an update
            self.opt.zero_grad(set_to_none=True)
            self.step += 1
            bar.update(1)
            if callback is not None:
                callback(self.step, {"step": self.step, "loss": loss, "lr": lr, "grad_norm": float("nan"),
                                     "elapsed_s": round(time.perf_counter() - t0, 3),
                                     **{k: float(v) for k, v in logs.items()}, "skipped": why})
                self.objective.train()

        try:
            while self.step < stop:
                batch = batches(self.step) if callable(batches) else next(batches)
                lr = lr_at(self.step, cfg)
                batch = self._to_device(batch)
                loss, logs, gnorm = self.train_step(batch, lr)
                if loss is None:  # nothing to learn from in this batch (not an error)
                    empty += 1
                    passed(lr, float("nan"), "empty", logs)
                    continue
                if not torch.isfinite(loss):
                    skipped += 1
                    log.warning("step %d: non-finite loss (%s); batch skipped (%d so far)", self.step, loss.item(), skipped)
                    if skipped > 10:
                        raise RuntimeError("more than 10 non-finite losses: stopping (check lr and inputs)")
                    passed(lr, float(loss.detach()), "non-finite", logs)
                    continue
                self.step += 1
                after = getattr(self.objective, "after_step", None)
                if after is not None:  # e.g. the EMA update of a BYOL-style target network
                    after(self.step, cfg.steps)  # the schedule's total, never the end of a slice (`until`)
                bar.update(1)
                logged = self.step % cfg.log_every == 0 or self.step == stop
                if logged or callback is not None:
                    row = {"step": self.step, "loss": float(loss.detach()), "lr": lr, "grad_norm": float(gnorm),
                           "elapsed_s": round(time.perf_counter() - t0, 3),
                           **{k: float(v) for k, v in logs.items()}}
                    diagnostics = getattr(self.objective, "diagnostics", None) if self.diagnostics else None
                    if (logged and diagnostics is not None
                            and (self.step - self._diagnosed >= DIAGNOSTICS_EVERY or self.step == cfg.steps)):
                        self._diagnosed = self.step  # kept across fit() calls: an online learner's slices
                        # its own random numbers: logging never changes what training draws (resume stays exact)
                        try:
                            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []), \
                                    torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16,
                                                                    enabled=cfg.amp and self.device.type == "cuda"):
                                row.update({f"diag_{k}": float(v) for k, v in diagnostics(batch).items()})
                        except (RuntimeError, ValueError, KeyError, TypeError) as e:  # a diagnostic never stops training
                            log.warning("step %d: %s.diagnostics failed (%s: %s); diagnostics off for this run",
                                        self.step, type(self.objective).__name__, type(e).__name__, e)
                            self.diagnostics = False
                    if logged:
                        self.history.append(row)
                        metrics.write(json.dumps(row) + "\n")
                        metrics.flush()
                        bar.set_postfix(loss=f"{row['loss']:.4g}")
                    if callback is not None:
                        callback(self.step, {**row, "skipped": False})
                        self.objective.train()
                if cfg.ckpt_every and self.step % cfg.ckpt_every == 0 and self.step < stop:
                    self.save()
        finally:
            bar.close()
            metrics.close()
        ckpt = self.save() if checkpoint else None
        return {"steps": self.step, "checkpoint": str(ckpt) if ckpt else None,
                "final_loss": self.history[-1]["loss"] if self.history else None,
                "seconds": round(time.perf_counter() - t0, 2), "skipped_batches": skipped, "empty_batches": empty}
