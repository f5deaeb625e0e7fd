"""Learning: the method-agnostic trainer, augmentation and offline datasets."""
