"""FlowE: affine/flow composition against analytic maps, masking, EMA target, training (tiny, CPU)."""
import math

import pytest
import torch

from regconsist_ros.models.methods import get

from regconsist_ros.models.deeplab import DeepLabConfig
from regconsist_ros.models.objectives.flowe import (FlowE, FlowEConfig, affine_matrices, apply_affine, cell_centres, compose_grid,
                                     masked_cosine_loss, sample, warp_image)

H, W = 32, 40  # not square: x / y mix-ups show


def tiny_encoder() -> DeepLabConfig:
    return DeepLabConfig(width=0.25, aspp_channels=16, decoder_channels=16, num_classes=0, output_stride=8)


def tiny_flowe(**kw) -> FlowE:
    return FlowE(FlowEConfig(proj_dim=16, hidden=32, **kw), tiny_encoder())


# ---- analytic test maps -----------------------------------------------------------------------------
FREQ = torch.tensor([[0.09, 0.03], [-0.05, 0.08], [0.02, -0.1], [0.07, 0.06]], dtype=torch.float64)  # rad / px
PHASE = torch.tensor([0.3, 1.1, -0.7, 2.0], dtype=torch.float64)


def field(pts: torch.Tensor) -> torch.Tensor:
    """Smooth 4-channel map F2 evaluated at image points pts [B, h, w, 2] -> [B, 4, h, w]."""
    arg = pts.double() @ FREQ.T + PHASE  # [B, h, w, 4]
    return torch.sin(arg).permute(0, 3, 1, 2).float()


def similarity(s: float, deg: float, tx: float = 0.0, ty: float = 0.0) -> torch.Tensor:
    """[3, 3] zoom s and rotation deg about the image centre, then a shift."""
    a = math.radians(deg)
    R = torch.tensor([[s * math.cos(a), -s * math.sin(a)], [s * math.sin(a), s * math.cos(a)]], dtype=torch.float64)
    c = torch.tensor([(W - 1) / 2, (H - 1) / 2], dtype=torch.float64)
    A = torch.eye(3, dtype=torch.float64)
    A[:2, :2] = R
    A[:2, 2] = c - R @ c + torch.tensor([tx, ty], dtype=torch.float64)
    return A.float()


def flow_of(M: torch.Tensor) -> torch.Tensor:
    """Dense flow [1, 2, H, W] of the pixel map p -> M p."""
    p = cell_centres(H, W, H, W)[None]  # [1, H, W, 2]
    return (apply_affine(M[None], p) - p).permute(0, 3, 1, 2)


CASES = {
    "identity": (torch.eye(3), torch.eye(3)),
    "zoom-rotate": (similarity(1.3, 12.0), similarity(0.8, -20.0, 1.5, -1.0)),
}
FLOWS = {
    "translation": torch.tensor([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]]),
    "similarity": similarity(1.1, 8.0, -1.0, 2.0),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("flow_kind", sorted(FLOWS))
@pytest.mark.parametrize("res", [(H, W), (H // 4, W // 4)])
def test_compose_grid_recovers_view1_from_target(case, flow_kind, res):
    """View 2 is F2; view 1 is F2 seen through the flow, view1(p) = F2(M p). Sampling augmented
    view 2 (aug2(q) = F2(A2^-1 q)) at T(q1) must give augmented view 1 (aug1(q) = view1(A1^-1 q))."""
    A1, A2 = (A[None] for A in CASES[case])
    M = FLOWS[flow_kind]
    h, w = res
    c = cell_centres(h, w, H, W)[None]  # [1, h, w, 2] image pixels of the map's cells
    aug2 = field(apply_affine(torch.linalg.inv(A2), c))  # [1, 4, h, w]
    aug1 = field(apply_affine(M[None], apply_affine(torch.linalg.inv(A1), c)))
    grid, inside = compose_grid(flow_of(M), A1, A2, h, w)
    assert grid.shape == (1, h, w, 2) and inside.shape == (1, h, w)
    assert torch.isfinite(grid).all()
    assert inside.float().mean() > 0.3  # not vacuous
    got = sample(aug2, grid)
    err = (got - aug1).abs().amax(1)[inside]  # [n]
    tol = 0.01 if res == (H, W) else 0.06  # bilinear between cells 1 px / 4 px apart
    assert err.max() < tol, (case, flow_kind, res, float(err.max()))


def test_compose_grid_is_exact_under_autocast():
    """bf16 autocast must not round pixel coordinates (bf16 has 8 mantissa bits)."""
    A1, A2 = (A[None] for A in CASES["zoom-rotate"])
    flow = flow_of(FLOWS["similarity"])
    grid, inside = compose_grid(flow, A1, A2, H, W)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        grid16, inside16 = compose_grid(flow, A1, A2, H, W)
        img16 = warp_image(field(cell_centres(H, W, H, W)[None]), A1)
    assert grid16.dtype == torch.float32 and torch.allclose(grid, grid16, atol=1e-5) and torch.equal(inside, inside16)
    assert torch.allclose(img16.float(), warp_image(field(cell_centres(H, W, H, W)[None]), A1), atol=1e-2)


def test_compose_grid_inside_mask_of_a_translation():
    """Identity affines, flow (+3, -2): pixels landing outside view 2 are exactly the ones masked."""
    flow = flow_of(FLOWS["translation"])
    _, inside = compose_grid(flow, torch.eye(3)[None], torch.eye(3)[None], H, W)
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    expected = (xs + 3 <= W - 1) & (ys - 2 >= 0)
    assert torch.equal(inside[0], expected)


def test_warp_image_matches_the_analytic_map():
    A = similarity(1.4, 25.0, 2.0, -1.0)[None]
    c = cell_centres(H, W, H, W)[None]
    src = field(c)  # [1, 4, H, W]
    out = warp_image(src, A)
    p = apply_affine(torch.linalg.inv(A), c)  # source points of each output pixel
    inner = (p[..., 0] >= 0) & (p[..., 0] <= W - 1) & (p[..., 1] >= 0) & (p[..., 1] <= H - 1)
    assert inner.float().mean() > 0.3
    assert (out - field(p)).abs().amax(1)[inner].max() < 0.01
    far = (p[..., 0] < -1) | (p[..., 0] > W) | (p[..., 1] < -1) | (p[..., 1] > H)
    assert far.any() and (out.abs().amax(1)[far] == 0).all()  # zeros outside


def test_affine_matrices_ranges_and_determinism():
    g = torch.Generator().manual_seed(3)
    A = affine_matrices(256, (0.5, 2.0), 30.0, g, size=(H, W))
    assert A.shape == (256, 3, 3) and A.dtype == torch.float32
    s = torch.linalg.det(A[:, :2, :2].double()).sqrt()
    assert s.min() >= 0.5 - 1e-5 and s.max() <= 2.0 + 1e-5 and s.min() < 0.6 and s.max() > 1.7
    ang = torch.rad2deg(torch.atan2(A[:, 1, 0], A[:, 0, 0]))
    assert ang.abs().max() <= 30 + 1e-3 and ang.abs().max() > 25
    ctr = torch.tensor([[(W - 1) / 2, (H - 1) / 2]]).expand(256, 2)
    assert torch.allclose(apply_affine(A, ctr[:, None])[:, 0], ctr, atol=1e-4)  # centre is fixed
    again = affine_matrices(256, (0.5, 2.0), 30.0, torch.Generator().manual_seed(3), size=(H, W))
    assert torch.equal(A, again)
    assert torch.equal(affine_matrices(4, (1.0, 1.0), 0.0, g, size=(H, W)), torch.eye(3).expand(4, 3, 3))


# ---- masking ---------------------------------------------------------------------------------------
def test_masked_cells_contribute_nothing():
    torch.manual_seed(0)
    p = torch.randn(2, 8, 5, 6, requires_grad=True)
    z = torch.randn(2, 8, 5, 6)
    mask = torch.rand(2, 5, 6) > 0.5
    loss = masked_cosine_loss(p, z, mask)
    z2 = torch.where(mask[:, None], z, torch.randn_like(z) * 100)
    assert torch.equal(loss, masked_cosine_loss(p, z2, mask))
    z3 = torch.where(mask[:, None], z, torch.full_like(z, float("nan")))  # even NaN must not leak
    loss3 = masked_cosine_loss(p, z3, mask)
    assert torch.equal(loss, loss3)
    loss3.backward()
    assert (p.grad.abs().amax(1)[~mask] == 0).all() and (p.grad.abs().amax(1)[mask] > 0).all()
    manual = (2 - 2 * torch.nn.functional.cosine_similarity(p, z, dim=1))[mask].mean()
    assert torch.allclose(loss, manual, atol=1e-6)


def flow_batch(B=2, invalid_left=True):
    """x2 random; x1 = x2 shifted so that flow = (+2, +1) everywhere; left third of view 1 invalid."""
    g = torch.Generator().manual_seed(1)
    x2 = torch.rand(B, 3, 32, 32, generator=g)
    x1 = torch.roll(x2, shifts=(-1, -2), dims=(2, 3))  # x1(p) = x2(p + (2, 1))
    flow = torch.zeros(B, 2, 32, 32)
    flow[:, 0], flow[:, 1] = 2.0, 1.0
    valid = torch.ones(B, 1, 32, 32, dtype=torch.bool)
    valid[:, :, -1:, :] = valid[:, :, :, -2:] = False  # landing outside view 2
    if invalid_left:
        valid[:, :, :, :10] = False
    return {"x1": x1, "x2": x2, "flow": flow, "valid": valid}


def run_loss(model, batch, seed=0):
    torch.manual_seed(seed)  # dropout in ASPP
    return model(batch, generator=torch.Generator().manual_seed(seed))


def test_invalid_pixels_do_not_change_the_loss():
    torch.manual_seed(0)
    model = tiny_flowe(rotation=10.0, scale=(0.8, 1.25))
    batch = flow_batch()
    loss, logs = run_loss(model, batch)
    assert torch.isfinite(loss) and 0 < float(logs["valid_frac"]) < 1
    garbage = dict(batch, flow=batch["flow"].clone())
    garbage["flow"][:, :, :, :10] = float("nan")
    garbage["flow"][:, 0, :5, :10] = 1e6
    loss2, logs2 = run_loss(model, garbage)
    assert torch.equal(loss, loss2) and torch.equal(logs["valid_frac"], logs2["valid_frac"])
    # fewer valid pixels -> smaller valid fraction; none -> zero loss that still backpropagates
    _, logs3 = run_loss(model, flow_batch(invalid_left=False))
    assert logs3["valid_frac"] > logs["valid_frac"]
    none = dict(batch, valid=torch.zeros_like(batch["valid"]))
    loss4, logs4 = run_loss(model, none)
    assert float(loss4.detach()) == 0.0 and float(logs4["valid_frac"]) == 0.0
    loss4.backward()


def test_symmetric_batch_and_config_checks():
    torch.manual_seed(0)
    model = tiny_flowe()
    assert model.encoder_kind == "deeplabv3plus" and get("flowe").batch == "flow_pairs"
    b = flow_batch()
    b["flow21"], b["valid21"] = -b["flow"], b["valid"]  # not geometrically exact: only shapes/plumbing
    loss, logs = run_loss(model, b)
    assert torch.isfinite(loss) and set(logs) == {"flowe", "valid_frac"}
    with pytest.raises(ValueError, match="flow must be"):
        model(dict(b, flow=b["flow"][:, :, :16]))
    for bad in (dict(ema=1.5), dict(proj_dim=0), dict(scale=(2.0, 0.5)), dict(rotation=-1.0),
                dict(translation=1.0)):
        with pytest.raises(ValueError, match="FlowEConfig"):
            FlowEConfig(**bad)
    assert FlowEConfig(scale=[0.7, 1.4]).scale == (0.7, 1.4)
    assert FlowE().encoder_config == DeepLabConfig(output_stride=8, num_classes=0)


# ---- EMA target --------------------------------------------------------------------------------------
def test_target_is_an_ema_of_the_online_network():
    torch.manual_seed(0)
    model = tiny_flowe(ema=0.9)
    targets = list(model.target_parameters())
    assert targets and not any(p.requires_grad for p in targets)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert not trainable & {id(p) for p in targets}
    assert {id(p) for p in model.encoder.parameters()} <= trainable
    loss, _ = run_loss(model, flow_batch())
    loss.backward()
    assert all(p.grad is None for p in targets)
    assert model.encoder.backbone.conv1.weight.grad is not None and model.predictor[0].weight.grad is not None
    assert model.momentum(0, 10) == pytest.approx(0.9) and model.momentum(10, 10) == pytest.approx(1.0)
    assert model.momentum(5, 10) == pytest.approx(0.95)

    with torch.no_grad():  # an "optimiser step" on the online network
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    before = [p.clone() for p in targets]
    online = [p.clone() for m, _ in model.online_pairs() for p in m.parameters()]
    step, total = 3, 10
    tau = 1 - (1 - 0.9) * (math.cos(math.pi * step / total) + 1) / 2
    model.after_step(step, total)
    for pt, b, po in zip(targets, before, online):
        assert torch.allclose(pt, tau * b + (1 - tau) * po, atol=1e-6, rtol=0)
    moved = [(pt - b).abs().max() for pt, b in zip(targets, before)]
    assert max(moved) > 0
    for bo, bt in zip(model.encoder.buffers(), model.target_encoder.buffers()):
        assert torch.equal(bo, bt)  # BN statistics copied


# ---- training ----------------------------------------------------------------------------------------
def test_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    model = tiny_flowe(ema=0.99).train()
    batch = flow_batch(invalid_left=False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    steps = 12
    for step in range(steps):
        loss, _ = run_loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.after_step(step + 1, steps)
        losses.append(float(loss.detach()))
    final, _ = run_loss(model, batch)
    assert float(final.detach()) < 0.7 * losses[0], losses
