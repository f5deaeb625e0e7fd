"""models/attention.py: the same network as nn.MultiheadAttention (parameters, init, outputs, gradients)."""
import pytest
import torch
from torch import nn

from regconsist_ros.models.attention import CrossAttention, SelfAttention


def _mha(dim, heads, seed):
    torch.manual_seed(seed)
    return nn.MultiheadAttention(dim, heads, batch_first=True)


@pytest.mark.parametrize("cls", [SelfAttention, CrossAttention])
def test_same_parameters_and_init_as_multihead_attention(cls):
    ref = _mha(64, 4, seed=3).state_dict()
    torch.manual_seed(3)
    ours = cls(64, 4).state_dict()
    assert list(ours) == list(ref)  # checkpoints of either load into the other
    for k in ref:
        assert torch.equal(ours[k], ref[k]), k  # the same RNG draws in the same order: the same seed, the same net


def test_self_attention_matches_multihead_attention_forward_and_backward():
    ref = _mha(96, 6, seed=0)
    ours = SelfAttention(96, 6)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 17, 96, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y_ref = ref(x, x, x, need_weights=False)[0]
    y = ours(x2)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    y_ref.backward(g)
    y.backward(g)
    torch.testing.assert_close(x2.grad, x.grad, rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(ref.named_parameters(), ours.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_cross_attention_matches_multihead_attention():
    ref = _mha(64, 8, seed=1)
    ours = CrossAttention(64, 8)
    ours.load_state_dict(ref.state_dict())
    q, c = torch.randn(2, 10, 64), torch.randn(2, 23, 64)  # L != M
    torch.testing.assert_close(ours(q, c), ref(q, c, c, need_weights=False)[0], rtol=1e-5, atol=1e-5)


def test_width_must_divide_into_heads():
    with pytest.raises(ValueError, match="divisible"):
        SelfAttention(30, 4)
