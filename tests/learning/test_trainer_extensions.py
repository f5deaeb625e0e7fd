"""Trainer additions used by the readouts: no run directory, per-step callback, empty batches, local runs."""
import json

import pytest
import torch
from torch import nn

from regconsist_ros.learning.trainer import Trainer, TrainerConfig, warmup_cosine


class Quadratic(nn.Module):
    """loss = mean((w - target)^2); ``script`` maps a step to 'nan' or 'empty' to misbehave there."""

    encoder_kind = None
    encoder_config = None

    def __init__(self, script=None):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))
        self.bn = nn.BatchNorm1d(3)
        self.script = script or {}
        self.calls = 0
        self.modes = []

    @property
    def encoder(self):
        return self

    def forward(self, batch):
        what = self.script.get(self.calls)
        self.calls += 1
        self.modes.append(self.training)
        if what == "empty":
            return None, {"n": 0.0}
        loss = ((self.w - batch["t"]) ** 2).mean()
        if what == "nan":
            loss = loss * float("nan")
        return loss, {"n": 1.0}


def batches(step):
    return {"t": torch.ones(3)}


CFG = dict(steps=8, lr=0.1, warmup=2, log_every=1, device="cpu", grad_clip=0.0)


def test_without_run_dir_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    t = Trainer(Quadratic(), TrainerConfig(**CFG), None)
    out = t.fit(batches, progress=False)  # checkpoint=True is a no-op without a directory
    assert out["checkpoint"] is None and out["steps"] == 8
    assert t.save() is None and t.resume() is False
    assert list(tmp_path.iterdir()) == []
    assert [r["step"] for r in t.history] == list(range(1, 9))
    assert float(t.objective.w[0].detach()) > 0.1  # it did train


def test_callback_sees_every_step_with_the_schedule_and_skips(tmp_path):
    seen = []
    obj = Quadratic({2: "nan", 4: "empty"})
    t = Trainer(obj, TrainerConfig(**CFG), tmp_path)
    out = t.fit(batches, progress=False, checkpoint=False, callback=lambda s, row: seen.append((s, row)))
    assert [s for s, _ in seen] == list(range(1, 9))
    assert [r["lr"] for _, r in seen] == [warmup_cosine(s, 0.1, 2, 8) for s in range(8)]
    assert [r["skipped"] for _, r in seen] == [False, False, "non-finite", False, "empty", False, False, False]
    assert seen[2][1]["loss"] != seen[2][1]["loss"] and seen[4][1]["loss"] != seen[4][1]["loss"]  # nan
    assert out["skipped_batches"] == 1 and out["empty_batches"] == 1
    # the log file keeps its old rows: updated steps only
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 4, 6, 7, 8] and all("skipped" not in r for r in rows)


def test_skipped_steps_leave_the_weights_alone():
    def weights(script, until):
        t = Trainer(Quadratic(script), TrainerConfig(**{**CFG, "steps": 3}), None)
        t.fit(batches, progress=False, until=until, checkpoint=False)
        return t.objective.w.detach().clone()

    one, two = weights({}, 1), weights({}, 2)
    assert not torch.equal(one, two)
    for what in ("nan", "empty"):  # step 2 misbehaves: no update there, step 3 trains on
        assert torch.equal(weights({1: what}, 2), one), what
        three = weights({1: what}, 3)
        assert torch.isfinite(three).all() and not torch.equal(three, one)


def test_empty_batches_are_not_errors_but_non_finite_losses_are():
    t = Trainer(Quadratic({i: "empty" for i in range(15)}), TrainerConfig(**{**CFG, "steps": 20}), None)
    out = t.fit(batches, progress=False)
    assert out["empty_batches"] == 15 and out["skipped_batches"] == 0
    t = Trainer(Quadratic({i: "nan" for i in range(15)}), TrainerConfig(**{**CFG, "steps": 20}), None)
    with pytest.raises(RuntimeError, match="non-finite"):
        t.fit(batches, progress=False)


def test_training_mode_is_restored_after_a_callback_that_evaluates():
    obj = Quadratic()

    def evaluate(step, row):
        obj.eval()
        with torch.no_grad():
            obj.bn(torch.randn(4, 3))

    t = Trainer(obj, TrainerConfig(**{**CFG, "steps": 5}), None)
    t.fit(batches, progress=False, callback=evaluate)
    assert obj.modes == [True] * 5 and obj.training


def test_distributed_false_stays_local_under_a_process_group(tmp_path):
    dist = torch.distributed
    if not dist.is_available() or dist.is_initialized():
        pytest.skip("needs torch.distributed and no group yet")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        joined = Trainer(Quadratic(), TrainerConfig(**CFG), None)
        local = Trainer(Quadratic(), TrainerConfig(**CFG), None, distributed=False)
        assert joined.distributed and isinstance(joined.model, nn.parallel.DistributedDataParallel)
        assert not local.distributed and local.model is local.objective and local.world_size == 1
        local.fit(batches, progress=False)
        assert local.step == 8
    finally:
        dist.destroy_process_group()


def test_positional_api_still_writes_metrics_and_a_checkpoint(tmp_path):
    from regconsist_ros.models.deeplab import DeepLabConfig

    class Tiny(Quadratic):
        encoder_kind = "deeplabv3plus"

        def __init__(self):
            super().__init__()
            from regconsist_ros.models.deeplab import DeepLabV3Plus

            self.enc = DeepLabV3Plus(DeepLabConfig.small(width=0.25, aspp_channels=8, decoder_channels=8, num_classes=0))
            self.encoder_config = self.enc.cfg

        @property
        def encoder(self):
            return self.enc

    t = Trainer(Tiny(), TrainerConfig(**{**CFG, "steps": 2}), tmp_path, {"method": "test"})
    out = t.fit(batches, False, None, True)
    assert out["checkpoint"] and (tmp_path / "checkpoints").is_dir() and (tmp_path / "metrics.jsonl").is_file()
    again = Trainer(Tiny(), TrainerConfig(**{**CFG, "steps": 2}), tmp_path)
    assert again.resume() and again.step == 2
