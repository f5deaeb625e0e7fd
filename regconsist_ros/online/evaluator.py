"""The evaluator without ROS: watch a learner's checkpoints, run readouts on each new one, log JSON lines.

A checkpoint is *complete* when ``latest_checkpoint``-style checks pass (``step_*`` directory with
weights and config; the learner writes into a hidden temp directory and renames it atomically), so
a half-written checkpoint is never read. When checkpoints arrive faster than readouts finish, the
intermediate ones are skipped (counted) and the newest of each objective is evaluated. The one being
scored is claimed (``checkpoints/.evaluating``) so that the learner's retention (``trainer.keep_last``)
keeps it until its result is written.

A checkpoint that cannot be read, built or read out, for any exception (a corrupt file, JSON nested
thousands deep, a config asking for a model too large to allocate, a readout that fails on it), is
*quarantined*: one result line ``{"objective", "step", "checkpoint", "quarantined": reason, "error":
reason}`` is written, counted in ``failed``, and the evaluator goes on with the next checkpoint (a
restarted evaluator reads the line back and never retries it). A checkpoint deleted by the learner's
retention before it was read is passed over without a line.

Readouts:
* ``propagation``: label propagation of first-frame instance masks on held-out simulated clips
  (J, F, J&F) for any encoder;
* ``segmentation``: the frozen dense linear probe (``readout.dense_probe``, mIoU) for every encoder,
  and few-label fine-tuning (mIoU) for dense encoders (DeepLabV3+ from RegConsist); fine-tuning is
  skipped, with a reason, for encoders without a segmentation head;
* ``floors`` (on by default): the same readouts of the floors that learn nothing: ``pixels`` and
  ``colour`` (``models.floors``) on the architecture's grid and ``random`` (the architecture randomly
  initialised), once per architecture, after its first checkpoint's result, as one result line
  ``{"objective": "floors", "kind", "floors": {name: readouts}}`` (a restarted evaluator reads them back);
* ``bc``: the behaviour-cloning readout (``readout.bc_run``) on ``bc_tasks`` of a suite (MetaWorld by
  default), with the settings of ``bc_config`` (a YAML file with ``bc`` = BCReadoutConfig and
  ``policy`` = BCConfig sections, the groups of ``regconsist eval bc``) or, without one, a quick CPU setting (10 demonstrations,
  5 rollouts of 150 steps, 20 epochs, one training seed, 128 px frames, 112 px crops). Demonstrations are cached
  once under ``<watch_dir>/bc_demos``; per-checkpoint results under ``<watch_dir>/bc_eval``.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)
READOUTS = ("propagation", "segmentation", "bc")
STEP_DIR = re.compile(r"^step_(\d{8,})$")


@dataclass
class EvaluatorConfig:
    """What the evaluator watches, which readouts it runs, on what data."""

    watch_dir: str = field(default="runs/online", metadata={"help": "the learner's out_dir (one sub-directory per objective)"})
    results: str = field(default="", metadata={"help": "JSON-lines results file (default: <watch_dir>/eval_results.jsonl)"})
    readouts: tuple[str, ...] = field(default=("propagation", "segmentation"), metadata={"help": f"readouts to run, from {READOUTS}"})
    poll_s: float = field(default=2.0, metadata={"help": "seconds between looks at the checkpoint directories"})
    eval_seed: int = field(default=100, metadata={"help": "apartment seed of the held-out evaluation sequence"})
    eval_frames: int = field(default=40, metadata={"help": "frames of the held-out sequence"})
    eval_width: int = field(default=128, metadata={"help": "evaluation image width"})
    eval_height: int = field(default=96, metadata={"help": "evaluation image height"})
    clip_len: int = field(default=20, metadata={"help": "frames per label-propagation clip"})
    min_object_pixels: int = field(default=50, metadata={"help": "smallest first-frame object propagated (pixels)"})
    seg_steps: int = field(default=50, metadata={"help": "fine-tuning steps of the segmentation readout"})
    seg_labels: float = field(default=0.2, metadata={"help": "fraction of labelled views used for fine-tuning and for the linear probe"})
    probe_steps: int = field(default=100, metadata={"help": "AdamW steps of the frozen linear probe"})
    bc_tasks: tuple[str, ...] = field(default=("button-press-topdown",), metadata={"help": "tasks of the BC readout"})
    bc_config: str = field(default="", metadata={"help": "YAML with the bc and policy sections of `regconsist eval bc` ('' = quick CPU setting)"})
    floors: bool = field(default=True, metadata={"help": "also read out pixels, colour and random init of each architecture (once, cached) beside the checkpoints"})
    scalars: bool = field(default=True, metadata={"help": "evaluator node: publish every number of each result (and of the status) as std_msgs/Float64 on evaluator/scalars/<objective>/<readout>/<name> for plotting tools"})

    def __post_init__(self):
        bad = [r for r in self.readouts if r not in READOUTS]
        if bad or not self.readouts:
            raise ValueError(f"EvaluatorConfig.readouts must be names from {READOUTS}, got {self.readouts}")
        if not self.poll_s > 0 or self.clip_len < 2 or self.eval_frames < self.clip_len or self.seg_steps < 1:
            raise ValueError(f"EvaluatorConfig: poll_s > 0, 2 <= clip_len <= eval_frames and seg_steps >= 1 needed, got "
                             f"{self.poll_s}, {self.clip_len}, {self.eval_frames}, {self.seg_steps}")
        if self.probe_steps < 1:
            raise ValueError(f"EvaluatorConfig.probe_steps must be >= 1, got {self.probe_steps}")
        if not 0 < self.seg_labels < 1:
            raise ValueError(f"EvaluatorConfig.seg_labels must be in (0, 1), got {self.seg_labels}")

    def bc_settings(self):
        """(BCReadoutConfig, BCConfig) of the ``bc`` readout."""
        from regconsist_ros.config import build_groups, yaml_values
        from regconsist_ros.readout.bc import BCConfig
        from regconsist_ros.readout.bc_run import BCReadoutConfig

        if not self.bc_config:
            return (BCReadoutConfig(demos=10, episodes=5, eval_every=10, horizon=150, render_size=128, crop_size=112,
                                    videos=1, seeds=1, demo_dir=str(Path(self.watch_dir) / "bc_demos")), BCConfig(epochs=20))
        g = build_groups([("bc", BCReadoutConfig), ("policy", BCConfig)], yaml_values(self.bc_config),
                         where=f"bc_config {self.bc_config}")
        return g["bc"], g["policy"]

    @property
    def results_path(self) -> Path:
        return Path(self.results) if self.results else Path(self.watch_dir) / "eval_results.jsonl"


def complete_checkpoints(watch_dir: str | Path) -> dict[str, list[tuple[int, Path]]]:
    """objective -> [(step, checkpoint dir)] of complete checkpoints, ascending."""
    out: dict[str, list[tuple[int, Path]]] = {}
    root = Path(watch_dir)
    if not root.is_dir():
        return out
    for run in sorted(p for p in root.iterdir() if (p / "checkpoints").is_dir()):
        found = []
        for p in (run / "checkpoints").iterdir():
            m = STEP_DIR.match(p.name)
            if m and p.is_dir() and (p / "model.safetensors").is_file() and (p / "config.json").is_file():
                found.append((int(m.group(1)), p))
        if found:
            out[run.name] = sorted(found)
    return out


class Evaluator:
    """Prepares the evaluation data once; ``poll()`` evaluates what is new and returns the results."""

    def __init__(self, cfg: EvaluatorConfig, progress: bool = False, should_stop=None):
        """``should_stop()`` (e.g. a node's shutdown event) is asked between readouts: a stop request
        then waits for at most the readout in progress, not for every pending checkpoint and floor."""
        self.cfg = cfg
        self.progress = progress
        self.should_stop = should_stop or (lambda: False)
        self.done: set[tuple[str, int]] = set()
        self.skipped = 0
        self.failed = 0
        self._data = None
        self._floors: dict[str, dict] = {}  # architecture key -> floor readouts
        self._last_model = None
        from regconsist_ros.learning.trainer import read_jsonl

        for r in read_jsonl(cfg.results_path):  # a restarted evaluator does not redo finished work
            if r.get("objective") == "floors" and isinstance(r.get("floors"), dict) and "key" in r:
                self._floors[r["key"]] = r["floors"]
            elif "objective" in r and "step" in r:
                self.done.add((r["objective"], int(r["step"])))

    def data(self):
        if self._data is None:
            import numpy as np

            from regconsist_ros.sim.source import SimConfig, SimSource

            src = SimSource(SimConfig(seed=self.cfg.eval_seed, frames=self.cfg.eval_frames, width=self.cfg.eval_width,
                                      height=self.cfg.eval_height, step=0.05))
            frames = list(src)
            self._data = {"frames": frames, "classes": src.classes,
                          "rgb": np.stack([f.rgb for f in frames]), "instance": np.stack([f.instance for f in frames]),
                          "semantic": np.stack([f.semantic for f in frames]).astype(np.int64)}
        return self._data

    def pending(self) -> list[tuple[str, int, Path]]:
        """The newest not-yet-evaluated checkpoint of each objective (older new ones are skipped)."""
        todo = []
        for objective, ckpts in complete_checkpoints(self.cfg.watch_dir).items():
            new = [(s, p) for s, p in ckpts if (objective, s) not in self.done]
            if not new:
                continue
            self.skipped += len(new) - 1
            for s, _ in new[:-1]:
                self.done.add((objective, s))
            todo.append((objective, *new[-1]))
        return todo

    def evaluate(self, objective: str, step: int, ckpt: Path) -> dict | None:
        """The result row of one checkpoint: its readouts, or a quarantine line (any exception while
        reading, building or reading it out); None when the checkpoint is gone (pruned) before it was read."""
        from regconsist_ros.models.checkpoint import claim_for_evaluation, release_claim

        t0 = time.time()
        row = {"objective": objective, "step": step, "checkpoint": str(ckpt), "time": round(t0, 3)}
        claim_for_evaluation(ckpt)
        try:
            return self._evaluate(row, objective, step, ckpt, t0)
        except Exception as e:  # noqa: BLE001 - any failure of one checkpoint must not stop the others
            if not ckpt.is_dir():  # removed by the learner's retention: a newer one will be scored
                log.info("checkpoint %s was removed before it was read: passed over", ckpt)
                return None
            return self._quarantine(row, e)
        finally:
            release_claim(ckpt)

    def _quarantine(self, row: dict, e: BaseException) -> dict:
        self.failed += 1
        self._last_model = None
        text = str(e).splitlines()[0] if str(e) else ""
        reason = f"{type(e).__name__}: {text}"[:500]
        log.warning("checkpoint %s quarantined: %s", row["checkpoint"], reason)
        return {**{k: row[k] for k in ("objective", "step", "checkpoint", "time")}, "quarantined": reason,
                "error": f"quarantined: {reason}"}

    def _evaluate(self, row: dict, objective: str, step: int, ckpt: Path, t0: float) -> dict:
        from regconsist_ros.models.checkpoint import load_checkpoint

        model, info = load_checkpoint(ckpt)
        row["kind"] = info["kind"]
        self._last_model = (model, info["kind"])
        row.update(self.dense_readouts(model, info["kind"]))
        if "bc" in self.cfg.readouts:
            row["bc"] = self.bc_readout(objective, step, model, info)
        row["seconds"] = round(time.time() - t0, 2)
        return row

    def _size(self, model, kind: str):
        if kind == "vit" or str(kind).startswith("floor"):  # at the evaluation size, rounded down to the grid
            p = model.cfg.patch
            return (max(p, self.cfg.eval_height // p * p), max(p, self.cfg.eval_width // p * p))
        return "model"

    def dense_readouts(self, model, kind: str, finetune: bool = True) -> dict:
        """Propagation, the linear probe and (dense encoders, ``finetune``) few-label fine-tuning of one encoder."""
        import copy

        from regconsist_ros.readout.dense_probe import ProbeConfig, run_linear_probe
        from regconsist_ros.readout.propagation import PropagationConfig, clips_from_frames, run_propagation
        from regconsist_ros.readout.segmentation import FinetuneConfig, run_readout

        d = self.data()
        out: dict = {}
        size = self._size(model, kind)
        if "propagation" in self.cfg.readouts:
            clips = clips_from_frames(d["rgb"], d["instance"], self.cfg.clip_len, f"apartment{self.cfg.eval_seed}")
            r = run_propagation(model, clips, PropagationConfig(min_object_pixels=self.cfg.min_object_pixels),
                                progress=self.progress, size=size)
            out["propagation"] = {k: r[k] for k in ("JF_objects", "J_objects", "F_objects", "J_mean", "F_mean", "JF_mean")}
        if "segmentation" in self.cfg.readouts:
            r = run_linear_probe(model, d["rgb"], d["semantic"], len(d["classes"]),
                                 ProbeConfig(labels=self.cfg.seg_labels, steps=self.cfg.probe_steps),
                                 size=None if size == "model" else size)
            seg = {"probe_miou": r["miou"]}
            if finetune and hasattr(model, "reset_classifier"):
                r = run_readout(copy.deepcopy(model), d["frames"], d["classes"],
                                FinetuneConfig(labels=self.cfg.seg_labels, steps=self.cfg.seg_steps, warmup=5),
                                progress=self.progress)
                seg.update({"miou": r["miou"], "pixel_acc": r["pixel_acc"]})
            elif finetune:
                seg["finetune"] = f"skipped: a {kind} encoder has no dense segmentation head (see probe_miou)"
            out["segmentation"] = seg
        return out

    @staticmethod
    def floor_key(model, kind: str) -> str:
        """What identifies an architecture (its kind and config) for the floor cache."""
        from regconsist_ros.models.registry import config_to_dict

        cfg = getattr(model, "cfg", None)
        return json.dumps([kind, config_to_dict(cfg) if cfg is not None else None], sort_keys=True, default=str)

    def floors(self, model, kind: str) -> dict:
        """{"pixels" | "colour" | "random": readouts} of the floors beside ``model``'s architecture (cached)."""
        from regconsist_ros.models.encoder import load_encoder

        cfg = getattr(model, "cfg", None)
        key = self.floor_key(model, kind)
        if key not in self._floors:
            rows = {}
            for name in ("pixels", "colour", "random"):
                if self.should_stop():  # shutting down: this row goes without (the rest), nothing is cached
                    return {**rows, "interrupted": "the evaluator was stopped before every floor was read out"}
                floor, info = load_encoder(name, kind=kind, config=cfg, seed=0)
                rows[name] = self.dense_readouts(floor, kind if name == "random" else info["kind"], finetune=False)
            self._floors[key] = rows
        return self._floors[key]

    def bc_readout(self, objective: str, step: int, model, info: dict) -> dict:
        """BC success on ``bc_tasks``; a missing simulator or demonstrations is reported, not raised."""
        from regconsist_ros.readout.bc_run import Encoder, run_readout

        try:
            readout_cfg, policy_cfg = self.cfg.bc_settings()
            enc = Encoder(f"{objective}_step{step:08d}", model, {"init": f"{objective} step {step}", "kind": info["kind"]})
            summary, results = run_readout(list(self.cfg.bc_tasks), [enc], readout_cfg, policy_cfg,
                                           Path(self.cfg.watch_dir) / "bc_eval", progress=self.progress)
        except (ImportError, ValueError, OSError) as e:
            log.warning("bc readout of %s step %d failed: %s", objective, step, e)
            return {"error": f"{type(e).__name__}: {e}"}
        out = {r["task"]: ({"success": r["success"], "best_success": r["best_success"]} if r.get("status") == "ok"
                           else {"status": r.get("status"), "reason": r.get("reason", "")}) for r in results}
        agg = summary["encoders"].get(enc.label)
        if agg:
            out["iqm_success"] = agg["iqm_success"]
        return out

    def append(self, row: dict) -> None:
        """One JSON line, flushed and fsynced (a crash loses at most the line being written)."""
        path = self.cfg.results_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done.add((row["objective"], int(row["step"])))

    def poll(self, on_row=None) -> list[dict]:
        """Evaluate what is new; -> the result rows. ``on_row(row)`` is called as each row is written
        (a node publishes it at once, not after every pending checkpoint and floor is done)."""
        rows = []
        emit = on_row or (lambda row: None)
        for objective, step, ckpt in self.pending():
            if self.should_stop():
                break
            self._last_model = None
            row = self.evaluate(objective, step, ckpt)
            if row is None:  # pruned before it was read
                self.done.add((objective, step))
                continue
            self.append(row)
            rows.append(row)
            emit(row)
            want = self.cfg.floors and ("propagation" in self.cfg.readouts or "segmentation" in self.cfg.readouts)
            if want and self._last_model is not None and not self.should_stop():
                model, kind = self._last_model
                key = self.floor_key(model, kind)
                if key not in self._floors:  # the first checkpoint of this architecture: its floors, once
                    t0 = time.time()
                    try:
                        floors = self.floors(model, kind)
                    except Exception as e:  # noqa: BLE001 - floors beside a checkpoint never stop the evaluator
                        log.warning("floors of %s failed: %s: %s", kind, type(e).__name__, e)
                        self._floors[key] = {"error": f"{type(e).__name__}: {e}"}  # not retried by this process
                        continue
                    if "interrupted" not in floors:
                        line = {"objective": "floors", "step": 0, "kind": kind, "key": key, "floors": floors,
                                "time": round(t0, 3), "seconds": round(time.time() - t0, 2)}
                        self.append(line)
                        rows.append(line)
                        emit(line)
        self._last_model = None
        return rows
