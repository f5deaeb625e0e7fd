"""BC readout core: flare fusion, the BatchNorm-MLP policy and its initial scale, training."""
import numpy as np
import pytest
import torch

from regconsist_ros.readout.bc import BCConfig, BCPolicy, episode_inputs, flare, train_bc


def test_flare_fusion_shapes_and_values():
    e = torch.tensor([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0], [8.0, 80.0]])  # T=4, D=2
    x = flare(e, 3)
    assert x.shape == (4, 6)
    # t=3: [e2 - e1, e3 - e2, e3]
    assert torch.equal(x[3], torch.tensor([2.0, 20.0, 4.0, 40.0, 8.0, 80.0]))
    # t=1: [e0 - e0 (padding), e1 - e0, e1]
    assert torch.equal(x[1], torch.tensor([0.0, 0.0, 1.0, 10.0, 2.0, 20.0]))
    # t=0: no motion yet
    assert torch.equal(x[0], torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 10.0]))
    assert torch.equal(flare(e, 1), e)
    with pytest.raises(ValueError, match="T, D"):
        flare(torch.zeros(2, 3, 4))


def test_episode_inputs_append_proprioception_per_episode():
    eps = [torch.randn(5, 3), torch.randn(2, 3)]
    prop = [np.full((5, 4), 1.0), np.full((2, 4), 2.0)]
    x = episode_inputs(eps, prop, 3)
    assert x.shape == (7, 9 + 4)
    assert torch.equal(x[:5, -4:], torch.ones(5, 4)) and torch.equal(x[5:, -4:], torch.full((2, 4), 2.0))
    assert torch.equal(x[5, :3], torch.zeros(3))  # a new episode starts without history


def test_policy_layout_and_last_layer_init_scale():
    torch.manual_seed(0)
    p = BCPolicy(64, 4)
    assert isinstance(p.net[0], torch.nn.BatchNorm1d)
    widths = [m.out_features for m in p.net if isinstance(m, torch.nn.Linear)]
    assert widths == [256, 256, 256]
    torch.manual_seed(0)
    ref = torch.nn.Linear(256, 4)  # the same default init, unscaled
    w, w0 = p.head.weight.detach(), ref.weight.detach()
    assert float(w.abs().max()) <= 0.01 * float(w0.abs().max()) * 1.5
    assert float(w.std()) == pytest.approx(0.01 * float(w0.std()), rel=0.3)
    p.eval()
    assert p(torch.randn(8, 64)).abs().max() < 0.1  # near-zero actions at initialisation


def test_train_bc_fits_a_linear_expert():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 12, generator=g)
    w = torch.randn(12, 3, generator=g)
    y = torch.tanh(x @ w / 4)
    seen = []
    policy, losses = train_bc(x, y, BCConfig(epochs=30, batch=128), on_epoch=lambda e, p: seen.append(e))
    assert seen == list(range(30)) and not policy.training
    assert losses[-1] < 0.1 * losses[0]
    with torch.no_grad():
        assert torch.nn.functional.mse_loss(policy(x), y) < 0.01
    with pytest.raises(ValueError):
        train_bc(x, y[:10], BCConfig(epochs=1))
    with pytest.raises(ValueError, match="history"):
        BCConfig(history=0)
