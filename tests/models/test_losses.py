"""Barlow Twins pair loss and focal loss against hand computations."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from regconsist_ros.models.losses import barlow_twins, focal_loss




def barlow_numpy(z1, z2, lambd, eps):
    n = z1.shape[0]
    z1n = (z1 - z1.mean(0)) / np.sqrt(z1.var(0) + eps)  # numpy var: biased (ddof=0)
    z2n = (z2 - z2.mean(0)) / np.sqrt(z2.var(0) + eps)
    c = z1n.T @ z2n / n
    d = c.shape[0]
    on = sum((1 - c[i, i]) ** 2 for i in range(d))
    off = sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j)
    return on + lambd * off, on, off, np.mean(np.diag(c))


def test_barlow_twins_matches_numpy():
    rng = np.random.default_rng(0)
    z1 = rng.normal(size=(37, 6)) * rng.uniform(0.5, 3, size=6) + rng.normal(size=6)
    z2 = 0.7 * z1 + 0.5 * rng.normal(size=(37, 6))
    loss, logs = barlow_twins(torch.tensor(z1), torch.tensor(z2), lambd=0.03, eps=1e-5)
    ref, on, off, cmean = barlow_numpy(z1, z2, 0.03, 1e-5)
    assert loss.dtype == torch.float32 and loss.ndim == 0
    assert float(loss) == pytest.approx(ref, rel=1e-5)
    assert float(logs["on_diag"]) == pytest.approx(on, rel=1e-5)
    assert float(logs["off_diag"]) == pytest.approx(off, rel=1e-5)
    assert float(logs["c_diag_mean"]) == pytest.approx(cmean, rel=1e-5)
    assert not logs["on_diag"].requires_grad


def test_barlow_twins_perfect_pairs_near_zero():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(64, 8, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(a - a.mean(0))  # zero-mean, orthonormal (decorrelated) columns
    z = q * math.sqrt(64)  # unit variance per dimension
    loss, logs = barlow_twins(z, z.clone())
    assert float(loss) < 1e-6
    assert float(logs["c_diag_mean"]) == pytest.approx(1.0, abs=1e-4)
    assert float(logs["off_diag"]) < 1e-8


def test_barlow_twins_affine_invariant_per_dimension():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(50, 5, generator=g), torch.randn(50, 5, generator=g)
    z2 = z2 + z1
    scale = torch.tensor([0.5, 2.0, 10.0, 3.0, 1.0])
    shift = torch.tensor([1.0, -3.0, 7.0, 0.0, 100.0])
    base, _ = barlow_twins(z1, z2)
    moved, _ = barlow_twins(z1 * scale + shift, z2 * scale.flip(0) - shift)
    assert float(moved) == pytest.approx(float(base), rel=1e-4)


def test_barlow_twins_gradient_and_errors():
    z1 = torch.randn(16, 4, requires_grad=True)
    z2 = torch.randn(16, 4, requires_grad=True)
    loss, _ = barlow_twins(z1, z2)
    loss.backward()
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()
    with pytest.raises(ValueError, match="N >= 2"):
        barlow_twins(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="same shape"):
        barlow_twins(torch.randn(8, 4), torch.randn(8, 3))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        barlow_twins(torch.randn(8, 4, 2), torch.randn(8, 4, 2))


def test_focal_gamma0_is_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 6, 7, generator=g)
    target = torch.randint(0, 5, (2, 6, 7), generator=g)
    got = focal_loss(logits, target, gamma=0.0, ignore_index=0)
    ref = F.cross_entropy(logits, target, ignore_index=0)
    assert torch.allclose(got, ref, atol=1e-6)
    got = focal_loss(logits, target, gamma=0.0, ignore_index=None)
    assert torch.allclose(got, F.cross_entropy(logits, target), atol=1e-6)


def test_focal_hand_computation():
    logits = torch.tensor([[[[2.0, 0.0]], [[1.0, 0.5]], [[0.0, -1.0]]]])  # [1, 3, 1, 2]
    target = torch.tensor([[[1, 2]]])  # [1, 1, 2]
    gamma = 2.0
    expected = []
    for px, cls in ((0, 1), (1, 2)):
        z = [float(logits[0, c, 0, px]) for c in range(3)]
        p = math.exp(z[cls]) / sum(math.exp(v) for v in z)
        expected.append(-((1 - p) ** gamma) * math.log(p))
    got = focal_loss(logits, target, gamma=gamma, ignore_index=0)
    assert float(got) == pytest.approx(sum(expected) / 2, rel=1e-6)
    # per-class alpha multiplies each pixel by the weight of its target class; still a plain mean
    got_a = focal_loss(logits, target, gamma=gamma, ignore_index=0, alpha=[1.0, 0.25, 4.0])
    assert float(got_a) == pytest.approx((0.25 * expected[0] + 4.0 * expected[1]) / 2, rel=1e-6)


def test_focal_ignored_pixels_do_not_contribute():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(1, 4, 3, 3, generator=g, requires_grad=True)
    target = torch.randint(1, 4, (1, 3, 3), generator=g)
    target[0, 0, :] = 0  # ignored row
    base = focal_loss(logits, target)
    changed = logits.detach().clone()
    changed[0, :, 0, :] = torch.randn(4, 3) * 10  # anything at ignored pixels
    assert torch.allclose(focal_loss(changed, target), base)
    assert torch.allclose(base, focal_loss(logits[:, :, 1:], target[:, 1:]))  # mean over the 6 valid pixels
    base.backward()
    assert torch.count_nonzero(logits.grad[0, :, 0, :]) == 0
    # ignore_index outside the class range (e.g. 255) also works
    t255 = torch.where(target == 0, torch.full_like(target, 255), target)
    assert torch.allclose(focal_loss(logits, t255, ignore_index=255), base)


def test_focal_all_ignored_is_zero_with_finite_grad():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = focal_loss(logits, torch.zeros(2, 4, 4, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all() and torch.count_nonzero(logits.grad) == 0


def test_focal_errors():
    logits = torch.randn(1, 3, 2, 2)
    with pytest.raises(ValueError, match="out of range"):
        focal_loss(logits, torch.full((1, 2, 2), 3))
    with pytest.raises(ValueError, match="shape"):
        focal_loss(logits, torch.ones(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="gamma"):
        focal_loss(logits, torch.ones(1, 2, 2, dtype=torch.long), gamma=-1)
    with pytest.raises(ValueError, match="alpha"):
        focal_loss(logits, torch.ones(1, 2, 2, dtype=torch.long), alpha=[1.0, 2.0])


def test_supervised_contrastive_by_hand():
    import math

    from regconsist_ros.models.losses import supervised_contrastive

    # three unit vectors: a and b share a label, c is alone (an anchor without positives does not count)
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([7, 7, 3])
    t = 0.5
    # anchor a: others b (cos 0) and c (cos -1); its positive is b
    la = -(0 / t - math.log(math.exp(0 / t) + math.exp(-1 / t)))
    # anchor b: others a (cos 0) and c (cos 0); its positive is a
    lb = -(0 / t - math.log(2 * math.exp(0 / t)))
    got = supervised_contrastive(z * 3.0, labels, temperature=t)  # scale-free: normalised inside
    assert math.isclose(float(got), (la + lb) / 2, rel_tol=1e-6)
    # no positives at all: 0, still differentiable
    zz = torch.randn(4, 3, requires_grad=True)
    zero = supervised_contrastive(zz, torch.arange(4))
    zero.backward()
    assert float(zero.detach()) == 0.0 and zz.grad is not None
    # agreeing positives and opposed negatives cost less than the reverse
    good = supervised_contrastive(torch.tensor([[1.0, 0], [1.0, 0.1], [-1.0, 0], [-1.0, -0.1]]), torch.tensor([0, 0, 1, 1]))
    bad = supervised_contrastive(torch.tensor([[1.0, 0], [-1.0, 0.1], [1.0, 0.1], [-1.0, -0.1]]), torch.tensor([0, 0, 1, 1]))
    assert float(good) < float(bad)
    with pytest.raises(ValueError, match="expected z"):
        supervised_contrastive(torch.randn(3, 2), torch.arange(4))
