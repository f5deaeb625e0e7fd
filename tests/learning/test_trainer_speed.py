"""Trainer speed features leave the numbers alone: foreach optimisers, channels-last, torch.compile, prefetching."""
import threading

import numpy as np
import pytest
import torch
from torch import nn

from regconsist_ros.learning.pretrain import Prefetcher
from regconsist_ros.learning.trainer import Trainer, TrainerConfig, make_optimizer


class ConvNet(nn.Module):
    """A tiny conv + BN objective: loss = mean((net(x) - y)^2)."""

    encoder_kind = None
    encoder_config = None

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 2, 1))

    @property
    def encoder(self):
        return self

    def forward(self, batch):
        return ((self.net(batch["x"]) - batch["y"]) ** 2).mean(), {}


def _batches(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"x": torch.rand(4, 3, 12, 16, generator=g), "y": torch.rand(4, 2, 12, 16, generator=g)} for _ in range(n)]


def _train(cfg_extra: dict, steps=4):
    torch.manual_seed(0)
    obj = ConvNet()
    # SGD: Adam's first steps are ~lr * sign(g), which turns last-bit differences of tiny gradients into lr-sized ones
    cfg = TrainerConfig(steps=steps, lr=0.05, warmup=1, optimizer="sgd", log_every=1, **cfg_extra)
    t = Trainer(obj, cfg, None, distributed=False)
    data = _batches(steps)
    t.fit(lambda s: data[s], progress=False, checkpoint=False)
    return [r["loss"] for r in t.history], {k: v.detach().contiguous() for k, v in obj.state_dict().items()}, t


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_foreach_optimisers_take_the_same_steps_as_the_per_parameter_loop(kind):
    torch.manual_seed(0)
    a = ConvNet()
    b = ConvNet()
    b.load_state_dict(a.state_dict())
    cfg = TrainerConfig(optimizer=kind, lr=0.1)
    oa = make_optimizer(cfg, list(a.parameters()))
    assert oa.defaults["foreach"] is True
    ob = (torch.optim.SGD(b.parameters(), lr=0.1, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=False)
          if kind == "sgd" else
          torch.optim.AdamW(b.parameters(), lr=0.1, betas=cfg.betas, weight_decay=cfg.weight_decay, foreach=False))
    for batch in _batches(3):
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            m(batch)[0].backward()
            o.step()
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7, msg=k)


def test_channels_last_trains_the_same_network():
    ref, ref_state, _ = _train({})
    cl, cl_state, t = _train({"channels_last": True})
    assert t.objective.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert t._to_device(_batches(1)[0])["x"].is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(cl, ref, rtol=1e-5)
    for k in ref_state:
        torch.testing.assert_close(cl_state[k], ref_state[k], rtol=1e-4, atol=1e-6, msg=k)


def test_compile_trains_the_same_network():
    pytest.importorskip("torch._inductor")
    ref, ref_state, _ = _train({}, steps=3)
    comp, comp_state, t = _train({"compile": True}, steps=3)
    assert t.objective._compiled_call_impl is not None  # nn.Module.compile: in place, same state_dict keys
    assert list(comp_state) == list(ref_state)
    np.testing.assert_allclose(comp, ref, rtol=1e-4)


def test_prefetcher_gives_the_samplers_batches_and_builds_the_next_in_the_background():
    threads = []

    def sampler(step):
        threads.append(threading.current_thread().name)
        if step == 3:
            raise ValueError("no batch at step 3")
        return {"step": step, "x": np.random.default_rng(step).random(3)}

    p = Prefetcher(sampler)
    try:
        for step in (0, 1, 2):
            b = p(step)
            assert b["step"] == step and np.array_equal(b["x"], np.random.default_rng(step).random(3))
        assert any(name.startswith("batches") for name in threads)  # steps 1, 2 came from the background thread
        with pytest.raises(ValueError, match="step 3"):  # an error surfaces at the step it belongs to
            p(3)
        assert p(7)["step"] == 7  # out of order (resume): built on the spot
    finally:
        p.close()


def test_cpu_trainer_keeps_freed_memory_in_the_heap():
    import sys

    from regconsist_ros.learning import allocator

    Trainer(ConvNet(), TrainerConfig(steps=1, device="cpu"), None, distributed=False)
    if sys.platform.startswith("linux"):
        import ctypes.util

        if "libc" in (ctypes.util.find_library("c") or "libc.so.6"):
            assert allocator._done is True
    assert allocator.keep_freed_memory() is allocator._done  # idempotent
