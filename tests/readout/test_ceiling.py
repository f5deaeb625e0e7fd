"""The supervised ceiling (readout/ceiling.py): semantic + instance labels."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from regconsist_ros.readout.ceiling import CeilingObjective, ceiling_batches, sample_cells, train_ceiling
from regconsist_ros.readout.segmentation import FinetuneConfig


class TinyDense(nn.Module):
    """The segmentation-network contract: forward_features (stride 2), classifier, reset_classifier."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, stride=2), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1))
        self.width, self.classifier = width, nn.Conv2d(width, 2, 1)

    def reset_classifier(self, n):
        self.classifier = nn.Conv2d(self.width, n, 1)

    def forward_features(self, x):
        return self.body(x)  # [B, D, H/2, W/2]

    def forward(self, x):
        return F.interpolate(self.classifier(self.forward_features(x)), size=x.shape[-2:], mode="bilinear")


def two_chairs(n: int = 8, size: int = 16, seed: int = 0):
    """Two objects of ONE class (semantic 2) with different instance ids (1, 2) and colours, on a floor (1)."""
    rng = np.random.default_rng(seed)
    x = torch.full((n, 3, size, size), 0.5) + 0.02 * torch.from_numpy(rng.normal(size=(n, 3, size, size))).float()
    y = torch.ones(n, size, size, dtype=torch.long)
    inst = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        for k, colour in ((1, (0.9, 0.3, 0.3)), (2, (0.3, 0.3, 0.9))):
            r, c = rng.integers(0, size - 6, size=2)
            x[i, :, r:r + 6, c:c + 6] = torch.tensor(colour)[:, None, None]
            y[i, r:r + 6, c:c + 6] = 2
            inst[i, r:r + 6, c:c + 6] = k
    return x.clamp(0, 1), y, inst


def test_sample_cells_takes_object_cells_only_at_the_feature_grid():
    feats = torch.arange(2 * 1 * 2 * 2, dtype=torch.float).reshape(2, 1, 2, 2)  # cell value = its index
    inst = torch.zeros(2, 4, 4, dtype=torch.long)
    inst[0, 0:2, 0:2] = 5  # cell (0, 0) of view 0
    inst[1, 2:4, 0:4] = 9  # cells (1, 0), (1, 1) of view 1
    z, ids = sample_cells(feats, inst, per_view=8, gen=torch.Generator().manual_seed(0))
    assert sorted(zip(z[:, 0].tolist(), ids.tolist())) == [(0.0, 5), (6.0, 9), (7.0, 9)]
    z, ids = sample_cells(feats, inst, per_view=1, gen=torch.Generator().manual_seed(0))
    assert z.shape == (2, 1) and sorted(set(ids.tolist())) == [5, 9]
    z, ids = sample_cells(feats, torch.zeros(2, 4, 4, dtype=torch.long), per_view=4)
    assert z.shape == (0, 1) and ids.numel() == 0


def test_batches_flip_image_and_both_labels_together():
    x, y, inst = two_chairs(4)
    b = next(ceiling_batches(x, y, inst, FinetuneConfig(batch=16, hflip=True)))
    for xb, yb, ib in zip(b["x"], b["y"], b["inst"]):
        i = next(j for j in range(4) if torch.equal(xb, x[j]) or torch.equal(xb, x[j].flip(-1)))
        flipped = not torch.equal(xb, x[i])
        assert torch.equal(yb, y[i].flip(-1) if flipped else y[i]) and torch.equal(ib, inst[i].flip(-1) if flipped else inst[i])


def _separation(net, x, inst):
    """Mean cosine similarity between the features of instance 1 and instance 2 (lower = better told apart)."""
    from regconsist_ros.models.deeplab import normalize_images

    with torch.no_grad():
        f = F.normalize(net.forward_features(normalize_images(x)), dim=1)  # [B, D, h, w]
    grid = F.interpolate(inst[:, None].float(), size=f.shape[-2:], mode="nearest")[:, 0].long()
    a = f.permute(0, 2, 3, 1)[grid == 1].mean(0)
    b = f.permute(0, 2, 3, 1)[grid == 2].mean(0)
    return float(F.cosine_similarity(a, b, dim=0))


def test_the_instance_loss_tells_apart_objects_that_share_a_class():
    x, y, inst = two_chairs(8)
    cfg = FinetuneConfig(steps=60, batch=4, lr=3e-3, optimizer="adamw", warmup=0, hflip=False)
    sims = {}
    for w in (0.0, 1.0):
        torch.manual_seed(0)
        net = train_ceiling(TinyDense(), x, y, inst, cfg, num_classes=3, instance_weight=w, progress=False)
        sims[w] = _separation(net, x, inst)
    assert sims[1.0] < sims[0.0] - 0.2, sims


def test_objective_logs_both_losses_and_checks_its_settings():
    x, y, inst = two_chairs(2)
    net = TinyDense()
    net.reset_classifier(3)
    loss, logs = CeilingObjective(net, instance_weight=0.5)({"x": x, "y": y, "inst": inst})
    assert loss.requires_grad and set(logs) >= {"semantic", "instance"}
    assert float(loss.detach()) == pytest.approx(logs["semantic"] + 0.5 * logs["instance"], rel=1e-5)
    assert CeilingObjective(net, instance_weight=0)({"x": x, "y": torch.zeros_like(y), "inst": inst})[0] is None  # all void
    with pytest.raises(ValueError, match="instance_weight"):
        CeilingObjective(net, instance_weight=-1)
    with pytest.raises(ValueError, match="expected x"):
        train_ceiling(net, x, y, inst[:1], FinetuneConfig(steps=1), 3)
