"""Per-frame lighting for evaluation worlds: the light's direction, intensity and colour change between views.

``frame_light(seed, index, amplitude)`` is deterministic in (seed, frame index): rendering a frame
twice gives the same image, and two frames at the same pose differ only in colour. Both renderers
apply a :class:`Light` the same way: the flat per-triangle factor becomes
``intensity * (ambient + diffuse * |n . direction|)`` and the shaded colour is multiplied by ``tint``.
Depth and labels never depend on the light.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_DIRECTION = (0.35, 0.25, 0.9)  # the fixed light of RenderConfig (towards the light, world frame)


@dataclass(frozen=True)
class Light:
    """A directional light with a global intensity and an RGB colour tint."""

    direction: tuple[float, float, float] = DEFAULT_DIRECTION
    intensity: float = 1.0
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self):
        d = np.asarray(self.direction, np.float64)
        if d.shape != (3,) or not np.isfinite(d).all() or np.linalg.norm(d) == 0:
            raise ValueError(f"Light.direction must be a finite non-zero 3-vector, got {self.direction}")
        if not (np.isfinite(self.intensity) and 0 < self.intensity <= 4):
            raise ValueError(f"Light.intensity must be in (0, 4], got {self.intensity}")
        t = np.asarray(self.tint, np.float64)
        if t.shape != (3,) or not ((t >= 0) & (t <= 4)).all():
            raise ValueError(f"Light.tint must be 3 factors in [0, 4], got {self.tint}")


def frame_light(seed: int, index: int, amplitude: float, base=DEFAULT_DIRECTION) -> Light:
    """The light of frame ``index`` in the world of ``seed``; ``amplitude`` 0 gives the fixed light,
    1 turns the direction by tens of degrees, scales the intensity by ~x0.6..x1.6 and tints each
    colour channel by up to +-15%."""
    if amplitude < 0:
        raise ValueError(f"frame_light: amplitude must be >= 0, got {amplitude}")
    if index < 0:
        raise ValueError(f"frame_light: index must be >= 0, got {index}")
    rng = np.random.default_rng([int(seed) % 2**32, int(index), 0x4C49])
    b = np.asarray(base, np.float64) / np.linalg.norm(base)
    d = b + amplitude * 0.7 * rng.normal(size=3)
    if np.linalg.norm(d) < 1e-3:
        d = b
    intensity = float(np.clip(np.exp(amplitude * 0.3 * rng.normal()), 0.5, 1.6))
    tint = np.clip(1.0 + amplitude * 0.15 * rng.uniform(-1.0, 1.0, 3), 0.25, 2.0)
    return Light(tuple(float(x) for x in d / np.linalg.norm(d)), intensity, tuple(float(x) for x in tint))


def apply_tint(rgb: np.ndarray, tint) -> np.ndarray:
    """rgb [..., 3] uint8 x tint [3] (8.8 fixed point, saturating) -> [..., 3] uint8."""
    t = np.round(np.asarray(tint, np.float64) * 256).astype(np.uint32)
    return np.minimum((rgb.astype(np.uint32) * t) >> 8, 255).astype(np.uint8)
