"""Checkpoint retention (`trainer.keep_last` + the evaluator's claim), clean-up of interrupted saves, a full disk,
and configs that ask for impossible models (issue 18, items 5 and 6)."""
import errno
import json
import os
import subprocess

import pytest
import torch
from torch import nn

from regconsist_ros.learning.trainer import Trainer, TrainerConfig
from regconsist_ros.models import checkpoint as ck
from regconsist_ros.models.checkpoint import (CheckpointError, claim_for_evaluation, claimed_steps,
                                              clean_interrupted_saves, complete_checkpoints, latest_checkpoint,
                                              load_checkpoint, prune_checkpoints, release_claim, save_checkpoint)
from regconsist_ros.models.encoder import random_encoder
from regconsist_ros.models.vit import ViTConfig

pytestmark = pytest.mark.reliability
VIT = ViTConfig(size="tiny", depth=1, patch=8, img_size=(16, 16))


def _save(run, step):
    return save_checkpoint(run / "checkpoints" / f"step_{step:08d}", random_encoder("vit", VIT), "vit", VIT, step=step)


class TinyViT(nn.Module):
    """An objective whose encoder is a registered ViT: loss = mean(encoder output^2)."""

    encoder_kind = "vit"
    encoder_config = VIT

    def __init__(self):
        super().__init__()
        self.encoder = random_encoder("vit", VIT)

    def forward(self, batch):
        out = self.encoder(batch["x"])
        t = out if torch.is_tensor(out) else next(v for v in out.values() if torch.is_tensor(v))
        return (t.float() ** 2).mean(), {}


def _batches(step):
    return {"x": torch.rand(2, 3, 16, 16)}


def test_prune_keeps_the_newest_and_the_claimed_checkpoint(tmp_path):
    run = tmp_path / "rsp"
    for s in (10, 20, 30, 40, 50):
        _save(run, s)
    claim = claim_for_evaluation(run / "checkpoints" / "step_00000020")
    assert claim is not None and claimed_steps(run) == {20}
    removed = prune_checkpoints(run, keep_last=2)
    assert sorted(int(p.name[5:]) for p in removed) == [10, 30]
    assert [s for s, _ in complete_checkpoints(run)] == [20, 40, 50]
    assert not [p for p in (run / "checkpoints").iterdir() if ".del-" in p.name]  # nothing half-deleted left
    release_claim(run / "checkpoints" / "step_00000020")
    assert claimed_steps(run) == set()
    prune_checkpoints(run, keep_last=2)
    assert [s for s, _ in complete_checkpoints(run)] == [40, 50]
    assert prune_checkpoints(run, keep_last=0) == []  # 0 = keep all


def test_trainer_keeps_last_n_while_it_trains_and_resumes_from_the_newest(tmp_path):
    cfg = TrainerConfig(steps=12, lr=0.01, warmup=0, log_every=1, ckpt_every=2, keep_last=2, device="cpu")
    t = Trainer(TinyViT(), cfg, tmp_path)
    t.fit(_batches, progress=False)
    assert [s for s, _ in complete_checkpoints(tmp_path)] == [10, 12]
    again = Trainer(TinyViT(), cfg, tmp_path)
    assert again.resume() and again.step == 12
    with pytest.raises(ValueError, match="keep_last"):
        TrainerConfig(keep_last=-1)


def test_interrupted_saves_of_dead_processes_are_cleaned_at_start_up(tmp_path):
    run = tmp_path / "run"
    good = _save(run, 5)
    root = run / "checkpoints"
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that is gone
    alive = subprocess.Popen(["sleep", "60"])
    try:
        (root / f".step_00000010.tmp-{dead.pid}").mkdir()
        (root / f".step_00000010.tmp-{dead.pid}" / "model.safetensors").write_bytes(b"x" * 100)
        (root / f".step_00000011.tmp-{alive.pid}").mkdir()  # a save in progress elsewhere: left alone
        (root / f".step_00000003.del-{dead.pid}").mkdir()
        (root / f".step_00000012.tmp-{os.getpid()}").mkdir()  # this pid at start-up: a previous process's
        # a kill between the two renames of an overwrite: step 5's previous version is aside, step 5 missing
        os.replace(good, root / f".step_00000005.old-{dead.pid}")
        Trainer(TinyViT(), TrainerConfig(steps=1, device="cpu"), run)  # start-up runs the clean-up
        names = sorted(p.name for p in root.iterdir())
        assert names == [f".step_00000011.tmp-{alive.pid}", "step_00000005"], names
        load_checkpoint(root / "step_00000005")
        assert clean_interrupted_saves(run) == []
    finally:
        alive.kill()
        alive.wait()


def test_a_full_disk_fails_one_save_and_the_last_good_checkpoint_stays(tmp_path, monkeypatch):
    """ENOSPC in the middle of writing the weights: the save raises OSError, no temp directory is left, the
    previous checkpoint still loads, and the next save (space again) works."""
    cfg = TrainerConfig(steps=6, lr=0.01, warmup=0, log_every=1, keep_last=3, device="cpu")
    t = Trainer(TinyViT(), cfg, tmp_path)
    t.fit(_batches, progress=False, until=2, checkpoint=False)
    first = t.save()
    real = ck.save_file

    def full_disk(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"\0" * 4096)  # part of the file made it
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(ck, "save_file", full_disk)
    t.fit(_batches, progress=False, until=4, checkpoint=False)
    with pytest.raises(OSError) as e:
        t.save()
    assert e.value.errno == errno.ENOSPC
    assert latest_checkpoint(tmp_path) == first and not [p for p in (tmp_path / "checkpoints").iterdir()
                                                         if p.name.startswith(".")]
    load_checkpoint(first)
    monkeypatch.setattr(ck, "save_file", real)
    t.fit(_batches, progress=False, until=6, checkpoint=False)
    assert t.save().name == "step_00000006" and [s for s, _ in complete_checkpoints(tmp_path)] == [2, 6]


def test_a_nesting_bomb_config_is_a_checkpoint_error(tmp_path):
    p = _save(tmp_path, 1)
    (p / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match="nested too deeply"):
        load_checkpoint(p)


def test_a_config_asking_for_a_huge_model_fails_at_once_without_allocating(tmp_path):
    import time

    p = _save(tmp_path, 1)
    head = json.loads((p / "config.json").read_text())
    head["config"]["mlp_ratio"] = 1e7  # MLP 192 -> 1.9e9 -> 192: ~7e11 parameters, terabytes in float32
    (p / "config.json").write_text(json.dumps(head))
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="asks for .* parameters that its weights do not have"):
        load_checkpoint(p)
    assert time.perf_counter() - t0 < 10.0
