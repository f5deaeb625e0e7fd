"""Readouts: few-label segmentation fine-tuning, and label propagation over frozen patch features."""
from regconsist_ros.readout.propagation import PropagationConfig, clips_from_frames, run_propagation
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
    "PropagationConfig",
    "clips_from_frames",
    "run_propagation",
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
