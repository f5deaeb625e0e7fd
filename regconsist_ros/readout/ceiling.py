"""The supervised ceiling of a benchmark: the encoder's own architecture trained on the labels.

Label propagation tracks object *instances*, and the linear probe reads *classes*. A network trained on
semantic labels alone has no reason to tell two chairs apart, so its features are a ceiling for the
probe but not for propagation. :class:`CeilingObjective` trains on both kinds of label:

- the semantic focal loss of the network's classifier (as the fine-tuning readout, void ignored), plus
- ``instance_weight`` x a supervised contrastive loss (``models.losses.supervised_contrastive``) on the
  dense features the readouts use (``forward_features``): ``pixels`` feature-grid cells sampled per view,
  positives are cells of the same object instance in any view of the batch (instance ids are made unique
  per apartment by the caller), so features of one object agree across views and differ between objects.

:func:`train_ceiling` runs it in the shared trainer with a :class:`~.segmentation.FinetuneConfig`
(optimizer, poly schedule, flips, photometric jitter).
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from regconsist_ros.readout.segmentation import VOID, FinetuneConfig, SegmentationFinetune, finetune_batches, trainer_config

BACKGROUND = 0  # instance id of pixels that belong to no object


def ceiling_batches(x: torch.Tensor, y: torch.Tensor, inst: torch.Tensor, cfg: FinetuneConfig) -> Iterator[dict]:
    """Endless minibatches ``{"x", "y", "inst"}`` of :func:`~.segmentation.finetune_batches` (the instance
    ids flipped with their image)."""
    return finetune_batches(x, y, cfg, inst=inst)


def sample_cells(feats: torch.Tensor, inst: torch.Tensor, per_view: int, gen: torch.Generator | None = None):
    """Up to ``per_view`` feature-grid cells of each view that lie on an object -> (embeddings [P, D],
    instance ids [P]). ``feats`` [B, D, h, w]; ``inst`` [B, H, W] is taken at the grid by nearest sampling."""
    B, D, h, w = feats.shape
    grid = F.interpolate(inst[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()  # [B, h, w]
    zs, ids = [], []
    for b in range(B):
        cells = torch.nonzero(grid[b].reshape(-1) != BACKGROUND).squeeze(1)  # [n]
        if cells.numel() == 0:
            continue
        cells = cells[torch.randperm(cells.numel(), generator=gen)[:per_view]]
        zs.append(feats[b].reshape(D, -1)[:, cells].T)  # [p, D]
        ids.append(grid[b].reshape(-1)[cells])
    if not zs:
        return feats.new_zeros(0, D), torch.zeros(0, dtype=torch.long)
    return torch.cat(zs), torch.cat(ids)


class CeilingObjective(SegmentationFinetune):
    """Trainer objective: ``forward({"x", "y", "inst"}) -> (focal + instance_weight x SupCon, logs)``; the
    network is any :func:`~.dense_probe.segmentation_network` (``forward_features`` + ``classifier``)."""

    def __init__(self, model, gamma: float = 2.0, instance_weight: float = 1.0, pixels: int = 64,
                 temperature: float = 0.1, seed: int = 0):
        super().__init__(model, gamma)
        if instance_weight < 0 or pixels < 2 or temperature <= 0:
            raise ValueError(f"CeilingObjective: need instance_weight >= 0, pixels >= 2, temperature > 0, "
                             f"got {instance_weight}, {pixels}, {temperature}")
        self.instance_weight, self.pixels, self.temperature = float(instance_weight), int(pixels), float(temperature)
        self.gen = torch.Generator().manual_seed(int(seed))

    def forward(self, batch: dict):
        from regconsist_ros.models import losses
        from regconsist_ros.models.deeplab import normalize_images

        x, y, inst = batch["x"], batch["y"], batch["inst"]
        labelled = int((y != VOID).sum())
        if not labelled:
            return None, {"labelled_px": 0.0}
        f = self.model.forward_features(normalize_images(x))  # [B, D, h, w]
        logits = F.interpolate(self.model.classifier(f), size=tuple(y.shape[-2:]), mode="bilinear", align_corners=False)
        semantic = losses.focal_loss(logits, y, gamma=self.gamma, ignore_index=VOID)
        logs = {"labelled_px": float(labelled), "semantic": float(semantic.detach())}
        if self.instance_weight == 0:
            return semantic, logs
        z, ids = sample_cells(f, inst, self.pixels, self.gen)
        instance = losses.supervised_contrastive(z, ids.to(z.device), self.temperature)
        logs["instance"] = float(instance.detach())
        return semantic + self.instance_weight * instance, logs


def train_ceiling(net, x: torch.Tensor, y: torch.Tensor, inst: torch.Tensor, cfg: FinetuneConfig, num_classes: int,
                  instance_weight: float = 1.0, progress: bool = True):
    """Train ``net`` (its classifier reset to ``num_classes``) on views ``x`` [N, 3, H, W] in [0, 1] with
    semantic labels ``y`` and instance ids ``inst`` [N, H, W] (unique across the apartments given) -> net."""
    from regconsist_ros.learning.trainer import Trainer

    if y.shape != inst.shape or y.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(f"train_ceiling: expected x [N, 3, H, W], y and inst [N, H, W], got "
                         f"{tuple(x.shape)}, {tuple(y.shape)}, {tuple(inst.shape)}")
    net.reset_classifier(num_classes)
    objective = CeilingObjective(net, cfg.gamma, instance_weight, seed=cfg.seed)
    trainer = Trainer(objective, trainer_config(cfg), None, distributed=False,
                      meta={"readout": "supervised ceiling", "instance_weight": float(instance_weight)})
    trainer.fit(ceiling_batches(x, y, inst, cfg), progress=progress, checkpoint=False, desc="ceiling")
    return net
