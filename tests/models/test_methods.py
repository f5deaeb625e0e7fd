"""The method registry: every method is one module; a new module is all a new method needs."""
import sys
import textwrap

import pytest

from regconsist_ros.models import methods as registry
from regconsist_ros.models.methods import GROUPS, Method, UnknownMethodError, get, methods

TOY = '''
"""A toy method: pull the pooled features of both frames of a pair together (for the registry test)."""
from dataclasses import dataclass, field

import torch
from torch import nn

from regconsist_ros.models.deeplab import DeepLabConfig, DeepLabV3Plus, normalize_images
from regconsist_ros.models.methods import Method


@dataclass
class ToyConfig:
    weight: float = field(default=1.0, metadata={"help": "loss weight"})


class Toy(nn.Module):
    encoder_kind = "deeplabv3plus"

    def __init__(self, cfg, encoder_cfg):
        super().__init__()
        self.cfg, self.encoder_config = cfg, encoder_cfg
        self.encoder = DeepLabV3Plus(encoder_cfg)

    def forward(self, batch):
        f = [self.encoder.forward_features(normalize_images(batch[k])).mean((2, 3)) for k in ("x_t", "x_k")]
        loss = self.cfg.weight * (f[0] - f[1]).pow(2).mean()
        return loss, {"toy": loss.detach()}


METHOD = Method(name="toymethod", config=ToyConfig, objective=Toy, batch="frame_pairs",
                encoder=DeepLabConfig(width=0.25, aspp_channels=16, decoder_channels=16, num_classes=0),
                batch_settings={"size": 4, "gap_min": 1, "gap_max": 3, "height": 32, "width": 48},
                trainer={"optimizer": "adamw", "lr": 1e-3}, summary="a toy method")
'''


@pytest.fixture
def toy_method(tmp_path, monkeypatch):
    """A new module in the objectives package (a folder added to its __path__), registry re-read."""
    from regconsist_ros.models import objectives

    (tmp_path / "toymethod.py").write_text(textwrap.dedent(TOY))
    monkeypatch.setattr(objectives, "__path__", [*objectives.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "_METHODS", {})
    yield "toymethod"
    sys.modules.pop("regconsist_ros.models.objectives.toymethod", None)
    registry._METHODS.clear()


def test_the_registry_finds_every_objective_module():
    assert {"regconsist", "rsp", "mae", "rotation", "simclr", "byol", "tcn", "shuffle", "flowe"} <= set(methods())
    for name, m in methods().items():
        assert m.name == name and m.objective.__module__.endswith(f".objectives.{name}")
    with pytest.raises(UnknownMethodError, match="unknown method 'nope'"):
        get("nope")


def test_a_method_declaration_is_checked():
    from regconsist_ros.models.deeplab import DeepLabConfig

    m = get("rotation")
    with pytest.raises(ValueError, match="lower-case identifier"):
        Method("Bad Name", m.config, m.objective, DeepLabConfig(), "frame_pairs", "x")
    from dataclasses import dataclass

    @dataclass
    class Clash:
        trainer: int = 0

    with pytest.raises(ValueError, match="clash with the groups"):
        Method("clash", Clash, m.objective, DeepLabConfig(), "frame_pairs", "x")
    with pytest.raises(TypeError, match="encoder"):
        Method("noenc", m.config, m.objective, DeepLabConfig, "frame_pairs", "x")
    assert GROUPS == ("trainer", "encoder", "batch")


def test_one_new_module_is_a_new_method_everywhere(toy_method, tmp_path, capsys):
    """The CLI, its settings tree, offline pretraining and the online learner all take the new module."""
    import json

    from regconsist_ros.cli import main
    from regconsist_ros.learning.runs import recipe
    from regconsist_ros.models.checkpoint import latest_checkpoint, read_info
    from regconsist_ros.online.learner import LearnerConfig, OnlineLearner

    assert toy_method in methods()
    run = recipe(toy_method)
    assert run.batch.size == 4 and run.trainer.optimizer == "adamw" and f"{toy_method}.weight" in run.values()
    out = tmp_path / "run"
    assert main(["pretrain", toy_method, "--data", "sim:seed=2,frames=8,width=64,height=48", "--out", str(out),
                 f"--{toy_method}.trainer.steps", "2", f"--{toy_method}.weight", "0.5", "--quiet", "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["steps"] == 2 and r["method"] == toy_method
    assert read_info(latest_checkpoint(out))["kind"] == "deeplabv3plus"
    learner = OnlineLearner(LearnerConfig(objectives=(toy_method,), out_dir=str(tmp_path / "online"), store_height=32,
                                          store_width=48, min_frames=4))
    assert learner.settings[toy_method].objective.weight == 1.0 and not learner.ready(toy_method)
