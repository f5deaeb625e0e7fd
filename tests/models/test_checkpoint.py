"""Checkpoints: bit-exact round trip, registry, atomic writes, clear errors."""
import json
import os
import random

import numpy as np

import pytest
import torch

from regconsist_ros.models import checkpoint as ckpt
from regconsist_ros.models.checkpoint import (CheckpointError, checkpoint_dir, latest_checkpoint, load_checkpoint,
                               load_trainer_state, save_checkpoint)
from regconsist_ros.models.deeplab import DeepLabConfig, DeepLabV3Plus
from regconsist_ros.models.registry import MODELS, UnknownModelError, build_model, register



TINY = dict(width=0.125, aspp_channels=8, aspp_rates=(2, 4), decoder_channels=8, num_classes=3)


def tiny_model(seed=0, **kw):
    torch.manual_seed(seed)
    return DeepLabV3Plus(DeepLabConfig(**{**TINY, **kw}))


def trained(model):
    """Move BN running stats and weights away from their initial values."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(torch.randn(2, 3, 32, 32)).square().mean()
    loss.backward()
    opt.step()
    return model, opt


def test_round_trip_bit_exact(tmp_path):
    model, opt = trained(tiny_model())
    trainer = {"optimizer": opt.state_dict(), "rng": torch.get_rng_state(), "epoch": 3,
               "numpy_rng": np.random.get_state(), "python_rng": random.getstate()}
    path = save_checkpoint(tmp_path / "ck", model, "deeplabv3plus", model.cfg, step=12,
                           trainer_state=trainer, meta={"note": "x", "lr": 0.1})
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors", "trainer.pt"]
    header = json.loads((path / "config.json").read_text())
    assert header["kind"] == "deeplabv3plus" and header["step"] == 12
    assert header["config"]["aspp_rates"] == [2, 4]  # tuples stored as lists

    loaded, info = load_checkpoint(path)
    assert info["kind"] == "deeplabv3plus" and info["step"] == 12 and info["meta"] == {"note": "x", "lr": 0.1}
    assert info["config"] == model.cfg and isinstance(info["config"].aspp_rates, tuple)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert not loaded.training
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))

    state = load_trainer_state(path)
    assert state["epoch"] == 3 and torch.equal(state["rng"], trainer["rng"])
    assert state["python_rng"] == trainer["python_rng"]
    assert state["numpy_rng"][0] == "MT19937" and np.array_equal(state["numpy_rng"][1], trainer["numpy_rng"][1])
    np.random.set_state(state["numpy_rng"])
    opt2 = torch.optim.SGD(loaded.parameters(), lr=0.1)
    opt2.load_state_dict(state["optimizer"])


def test_no_trainer_state(tmp_path):
    path = save_checkpoint(tmp_path / "ck", tiny_model(), "deeplabv3plus", TINY)  # config as a dict
    assert load_trainer_state(path) is None


def test_build_model_from_dict():
    m = build_model("deeplabv3plus", {**TINY, "aspp_rates": [3, 5]})  # lists become tuples
    assert isinstance(m, DeepLabV3Plus) and m.cfg.aspp_rates == (3, 5) and m.feature_dim == 8
    assert isinstance(build_model("deeplabv3plus", DeepLabConfig(**TINY)), DeepLabV3Plus)
    with pytest.raises(ValueError, match="unknown option"):
        build_model("deeplabv3plus", {"widht": 0.5})
    with pytest.raises(ValueError, match="width"):
        build_model("deeplabv3plus", {"width": -1})


def test_unknown_kind_lists_kinds(tmp_path):
    with pytest.raises(UnknownModelError, match=r"'vitt'.*deeplabv3plus"):
        build_model("vitt", {})
    path = save_checkpoint(tmp_path / "ck", tiny_model(), "deeplabv3plus", TINY)
    header = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**header, "kind": "vitt"}))
    with pytest.raises(CheckpointError, match=r"unknown model kind 'vitt'.*deeplabv3plus"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="unknown model kind"):
        save_checkpoint(tmp_path / "other", tiny_model(), "vitt", TINY)


def test_register_new_kind():
    register("deeplabv3plus", DeepLabConfig, DeepLabV3Plus)  # same pair again: fine
    with pytest.raises(ValueError, match="already registered"):
        register("deeplabv3plus", DeepLabConfig, torch.nn.Identity)
    with pytest.raises(TypeError, match="dataclass"):
        register("x", dict, DeepLabV3Plus)
    register("deeplab_alias", DeepLabConfig, DeepLabV3Plus)
    try:
        assert isinstance(build_model("deeplab_alias", TINY), DeepLabV3Plus)
    finally:
        MODELS.pop("deeplab_alias")


def test_crash_during_rename_keeps_previous_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "run"
    old = tiny_model(seed=0)
    path = save_checkpoint(checkpoint_dir(run, 5), old, "deeplabv3plus", old.cfg, step=5)
    real_replace = os.replace

    def crash(src, dst):
        if ".tmp-" in os.fspath(src):
            raise OSError("simulated crash")
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", crash)
    new = tiny_model(seed=1)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, new, "deeplabv3plus", new.cfg, step=5)
    monkeypatch.undo()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no leftovers, old one back
    loaded, info = load_checkpoint(path)
    assert all(torch.equal(v, old.state_dict()[k]) for k, v in loaded.state_dict().items())
    assert latest_checkpoint(run) == path


def test_overwrite_replaces_whole_directory(tmp_path):
    m = tiny_model()
    path = save_checkpoint(tmp_path / "ck", m, "deeplabv3plus", m.cfg, step=1, trainer_state={"a": 1})
    m2 = tiny_model(seed=3)
    save_checkpoint(path, m2, "deeplabv3plus", m2.cfg, step=2)
    assert load_trainer_state(path) is None  # no stale trainer.pt from the old version
    loaded, info = load_checkpoint(path)
    assert info["step"] == 2 and torch.equal(loaded.state_dict()["backbone.conv1.weight"], m2.backbone.conv1.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_latest_ignores_temp_and_incomplete(tmp_path):
    run = tmp_path / "run"
    assert latest_checkpoint(run) is None
    m = tiny_model()
    for step in (3, 120, 40):
        save_checkpoint(checkpoint_dir(run, step), m, "deeplabv3plus", m.cfg, step=step)
    root = run / "checkpoints"
    assert latest_checkpoint(run) == root / "step_00000120"
    # a crashed save: half-written hidden temp dir of a later step, and an incomplete step dir
    tmp = root / f".step_00000500.tmp-{os.getpid()}"
    tmp.mkdir()
    (tmp / "model.safetensors").write_bytes(b"\x00" * 10)
    (root / "step_00000400").mkdir()
    (root / "step_00000400" / "config.json").write_text("{}")
    assert latest_checkpoint(run) == root / "step_00000120"
    # the next save of that step cleans the stale temp dir up
    save_checkpoint(checkpoint_dir(run, 500), m, "deeplabv3plus", m.cfg, step=500)
    assert not tmp.exists() and latest_checkpoint(run) == root / "step_00000500"


def test_corrupt_safetensors_names_file(tmp_path):
    path = save_checkpoint(tmp_path / "ck", tiny_model(), "deeplabv3plus", TINY)
    f = path / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*corrupt or truncated"):
        load_checkpoint(path)
    f.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_checkpoint(path)


def test_bad_config_json_and_missing_dir(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope")
    path = save_checkpoint(tmp_path / "ck", tiny_model(), "deeplabv3plus", TINY)
    (path / "config.json").write_text('{"kind": "deeplabv3plus", "config": {')
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        load_checkpoint(path)
    (path / "config.json").write_text('[1, 2]')
    with pytest.raises(CheckpointError, match="expected an object"):
        load_checkpoint(path)
    (path / "config.json").write_text(json.dumps({"kind": "deeplabv3plus", "config": {"width": "wide"}}))
    with pytest.raises(CheckpointError, match="bad config"):
        load_checkpoint(path)


def test_weights_not_matching_config_name_keys(tmp_path):
    m = tiny_model()
    path = save_checkpoint(tmp_path / "ck", m, "deeplabv3plus", m.cfg)
    header = json.loads((path / "config.json").read_text())
    header["config"]["num_classes"] = 0  # config without classifier, weights with one
    (path / "config.json").write_text(json.dumps(header))
    with pytest.raises(CheckpointError, match=r"unexpected keys: classifier\.bias, classifier\.weight"):
        load_checkpoint(path)
    header["config"]["num_classes"] = 4
    (path / "config.json").write_text(json.dumps(header))
    with pytest.raises(CheckpointError, match=r"shape mismatches.*classifier\.weight \(3, 8, 1, 1\) vs \(4, 8, 1, 1\)"):
        load_checkpoint(path)


def test_weights_that_load_but_mean_nothing_are_checkpoint_errors(tmp_path):
    """NaN weights (a diverged run) and integer weights (a quantised file) under a float model; half precision loads."""
    from safetensors.torch import load_file, save_file

    m = tiny_model()
    path = save_checkpoint(tmp_path / "ck", m, "deeplabv3plus", m.cfg)
    state = load_file(str(path / "model.safetensors"))
    name = sorted(k for k, v in state.items() if v.is_floating_point())[0]
    save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, str(path / "model.safetensors"))
    half, _ = load_checkpoint(path)
    assert half.state_dict()[name].dtype == torch.float32
    torch.testing.assert_close(half.state_dict()[name], state[name], atol=1e-2, rtol=1e-2)
    save_file({**state, name: torch.full_like(state[name], float("nan"))}, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=rf"NaN or inf.*{name}"):
        load_checkpoint(path)
    save_file({**state, name: state[name].to(torch.int8)}, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=rf"integer weights.*{name} \(torch.int8\)"):
        load_checkpoint(path)


def test_save_rejects_config_that_differs_from_model(tmp_path):
    m = tiny_model()
    m.reset_classifier(6)
    with pytest.raises(CheckpointError, match="differs"):
        save_checkpoint(tmp_path / "ck", m, "deeplabv3plus", TINY)  # stale config (num_classes=3)
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(tmp_path / "ck", m, "deeplabv3plus", m.cfg, meta={"x": object()})
    assert not (tmp_path / "ck").exists()


class Opaque:
    pass


def test_trainer_state_with_arbitrary_objects_needs_opt_in(tmp_path):
    path = save_checkpoint(tmp_path / "ck", tiny_model(), "deeplabv3plus", TINY, trainer_state={"obj": Opaque()})
    with pytest.raises(CheckpointError, match=r"trainer\.pt"):
        load_trainer_state(path)
    assert isinstance(load_trainer_state(path, weights_only=False)["obj"], Opaque)
