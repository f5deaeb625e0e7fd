"""The evaluator quarantines a checkpoint it cannot read, build or read out, records it once, and goes on
(issue 18, item 6); it claims the checkpoint it scores so that retention keeps it (item 5)."""
import json

import pytest

from regconsist_ros.models import checkpoint as ck
from regconsist_ros.models.checkpoint import claimed_steps, prune_checkpoints, save_checkpoint
from regconsist_ros.models.encoder import random_encoder
from regconsist_ros.models.vit import ViTConfig
from regconsist_ros.online.evaluator import Evaluator, EvaluatorConfig

pytestmark = pytest.mark.reliability
VIT = ViTConfig(size="tiny", img_size=(32, 48), patch=8, depth=1)


def _cfg(tmp_path):
    return EvaluatorConfig(watch_dir=str(tmp_path / "online"), eval_frames=8, clip_len=4, eval_width=64, eval_height=48,
                           min_object_pixels=20, readouts=("propagation",), floors=False)


def _save(tmp_path, objective, step):
    return save_checkpoint(tmp_path / "online" / objective / "checkpoints" / f"step_{step:08d}",
                           random_encoder("vit", VIT), "vit", VIT, step=step)


def _results(tmp_path):
    return [json.loads(l) for l in (tmp_path / "online" / "eval_results.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("poison", ["nesting_bomb", "huge_model", "memory_error", "recursion_in_readout"])
def test_a_poisoned_checkpoint_is_quarantined_once_and_the_next_one_is_evaluated(tmp_path, monkeypatch, poison):
    bad = _save(tmp_path, "rsp", 5)
    head = json.loads((bad / "config.json").read_text())
    if poison == "nesting_bomb":  # RecursionError in json.loads
        (bad / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    elif poison == "huge_model":  # an MLP of 192 -> 1.9e9: terabytes; refused from shapes alone, nothing allocated
        head["config"]["mlp_ratio"] = 1e7
        (bad / "config.json").write_text(json.dumps(head))
    elif poison == "memory_error":  # any exception of the model build
        real = ck.build_model

        def build(kind, cfg):
            if torch_device_is_meta():
                return real(kind, cfg)
            raise MemoryError("cannot allocate 3 TB")

        monkeypatch.setattr(ck, "build_model", build)
    ev = Evaluator(_cfg(tmp_path))
    if poison == "recursion_in_readout":  # a readout that blows up on this checkpoint only
        real_readouts = ev.dense_readouts

        def readouts(model, kind, finetune=True):
            if ev._step == 5:
                raise RecursionError("maximum recursion depth exceeded")
            return real_readouts(model, kind, finetune)

        real_eval = ev._evaluate

        def _evaluate(row, objective, step, ckpt, t0):
            ev._step = step
            return real_eval(row, objective, step, ckpt, t0)

        monkeypatch.setattr(ev, "dense_readouts", readouts)
        monkeypatch.setattr(ev, "_evaluate", _evaluate)
    rows = ev.poll()
    assert len(rows) == 1 and rows[0]["step"] == 5 and rows[0]["quarantined"] and ev.failed == 1, rows
    expected = {"nesting_bomb": "nested too deeply", "huge_model": "asks for", "memory_error": "MemoryError",
                "recursion_in_readout": "RecursionError"}[poison]
    assert expected in rows[0]["quarantined"], rows[0]
    assert ev.poll() == []  # recorded once: not retried
    monkeypatch.undo()
    _save(tmp_path, "rsp", 10)  # the learner goes on: the next checkpoint is evaluated
    rows = ev.poll()
    assert [r["step"] for r in rows] == [10] and "propagation" in rows[0] and "quarantined" not in rows[0]
    # a restarted evaluator reads the quarantine line back and does not retry step 5
    again = Evaluator(_cfg(tmp_path))
    assert ("rsp", 5) in again.done and again.pending() == []
    lines = _results(tmp_path)
    assert [(l["step"], "quarantined" in l) for l in lines] == [(5, True), (10, False)]


def torch_device_is_meta() -> bool:
    import torch

    return torch.empty(0).device.type == "meta"


def test_the_checkpoint_being_scored_is_claimed_and_kept_by_retention(tmp_path, monkeypatch):
    for s in (1, 2, 3):
        _save(tmp_path, "rsp", s)
    run = tmp_path / "online" / "rsp"
    ev = Evaluator(_cfg(tmp_path))
    seen = {}
    real = ev.dense_readouts

    def readouts(model, kind, finetune=True):
        seen["claimed"] = claimed_steps(run)
        for s in (4, 5, 6):  # the learner saves three more and prunes to keep_last=2 meanwhile
            _save(tmp_path, "rsp", s)
        seen["removed"] = sorted(int(p.name[5:]) for p in prune_checkpoints(run, keep_last=2))
        return real(model, kind, finetune)

    monkeypatch.setattr(ev, "dense_readouts", readouts)
    rows = ev.poll()
    assert [r["step"] for r in rows] == [3] and "propagation" in rows[0]
    assert seen == {"claimed": {3}, "removed": [1, 2, 4]}  # step 3 (being scored) was spared
    assert claimed_steps(run) == set()  # released once its result was written


def test_a_checkpoint_pruned_before_it_is_read_is_passed_over(tmp_path, monkeypatch):
    p = _save(tmp_path, "rsp", 7)
    ev = Evaluator(_cfg(tmp_path))
    todo = ev.pending()
    import shutil

    shutil.rmtree(p)  # removed by the learner's retention between listing and loading
    monkeypatch.setattr(ev, "pending", lambda: todo)
    assert ev.poll() == [] and ev.failed == 0
    assert not (tmp_path / "online" / "eval_results.jsonl").exists()
