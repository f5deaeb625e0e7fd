"""Self-supervised objectives: each a Config dataclass + an nn.Module whose forward(batch) -> (loss, logs)."""
