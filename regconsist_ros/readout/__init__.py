"""Readout: how well a learnt representation segments its environment after few-label fine-tuning."""
from regconsist_ros.readout.segmentation import (
    FinetuneConfig,
    confusion_matrix,
    evaluate,
    finetune,
    miou,
    prediction_figure,
    run_readout,
    split_views,
    to_batch,
)

__all__ = [
    "FinetuneConfig",
    "confusion_matrix",
    "evaluate",
    "finetune",
    "miou",
    "prediction_figure",
    "run_readout",
    "split_views",
    "to_batch",
]
