import math

import pytest
import torch

from regconsist_ros.readout.feature_rank import effective_rank


def maps(rows: torch.Tensor, B=4, h=3, w=5) -> torch.Tensor:
    """[B*h*w, D] feature rows -> [B, D, h, w] maps."""
    return rows.reshape(B, h, w, -1).permute(0, 3, 1, 2)


def test_isotropic_features_use_every_direction():
    g = torch.Generator().manual_seed(0)
    r = effective_rank(maps(torch.randn(4 * 3 * 5 * 40, 8, generator=g), B=160))
    assert 7.5 < r["effective_rank"] <= 8.0 and r["dims"] == 8 and r["samples"] == 2400


def test_features_on_two_directions_have_rank_near_two():
    g = torch.Generator().manual_seed(1)
    basis = torch.linalg.qr(torch.randn(16, 2, generator=g))[0].T  # [2, 16], orthonormal rows
    coeff = torch.randn(60 * 40, 2, generator=g)
    r = effective_rank(maps(coeff @ basis + 3.0, B=160))  # the offset is removed by centring
    assert 1.9 < r["effective_rank"] < 2.05 and 0.4 < r["top1_share"] < 0.6


def test_hand_computed_unequal_variances():
    # two orthogonal directions with variances 3 : 1 -> p = (0.75, 0.25)
    rows = torch.tensor([[math.sqrt(3), 0.0], [-math.sqrt(3), 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64).repeat(15, 1)
    r = effective_rank(maps(rows, B=4, h=3, w=5))
    expect = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert r["effective_rank"] == pytest.approx(expect, rel=1e-9) and r["top1_share"] == pytest.approx(0.75)


def test_constant_features_have_rank_zero_and_bad_input_is_refused():
    assert effective_rank(torch.full((2, 6, 3, 3), 5.0))["effective_rank"] == 0.0
    with pytest.raises(ValueError, match="NaN"):
        effective_rank(torch.full((2, 6, 3, 3), float("nan")))
    with pytest.raises(ValueError, match=r"\[B, D, h, w\]"):
        effective_rank(torch.zeros(6, 3, 3))
