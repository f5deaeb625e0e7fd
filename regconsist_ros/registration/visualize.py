"""Pictures of view pairs: matched pixels joined by lines, view 1 reprojected into view 2, label agreement."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from regconsist_ros.registration.geometry import Correspondences, correspond
from regconsist_ros.sim.frame import Frame


def reproject(f1: Frame, f2: Frame, back: Correspondences) -> np.ndarray:
    """View 1's colours seen from view 2 -> [H2, W2, 3] (black where view 2 has no correspondence).

    ``back`` are the correspondences from view 2 to view 1 (``correspond(f2, f1)``): every
    co-visible pixel of view 2 takes the colour of its nearest pixel in view 1 (a backward warp,
    so there are no splatting holes).
    """
    out = np.zeros_like(f2.rgb)
    src = np.round(back.uv2).astype(int)  # [N, 2] pixels in view 1
    dst = back.uv1.astype(int)  # [N, 2] pixels in view 2
    out[dst[:, 1], dst[:, 0]] = f1.rgb[src[:, 1], src[:, 0]]
    return out


def label_agreement(f1: Frame, f2: Frame, c: Correspondences, labels: str = "instance") -> float | None:
    """Fraction of correspondences whose ``labels`` ids agree in both views (None without labels)."""
    a, b = getattr(f1, labels), getattr(f2, labels)
    if a is None or b is None or len(c) == 0:
        return None
    r = np.round(c.uv2).astype(int)
    u1 = c.uv1.astype(int)
    return float((a[u1[:, 1], u1[:, 0]] == b[r[:, 1], r[:, 0]]).mean())


def correspondence_figure(items: list[tuple[Frame, Frame, Correspondences, str]], path: str | Path,
                          lines: int = 40, seed: int = 0) -> Path:
    """One row per pair: [view 1 | view 2] with ``lines`` random matches, view 1 reprojected into view 2.

    ``items`` holds (frame 1, frame 2, correspondences, title) tuples.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    n = len(items)
    fig, axes = plt.subplots(n, 2, figsize=(13, 3.4 * n), squeeze=False, gridspec_kw={"width_ratios": [2, 1]})
    for row, (f1, f2, c, title) in enumerate(items):
        H, W = f1.size
        ax = axes[row, 0]
        ax.imshow(np.concatenate([f1.rgb, f2.rgb], 1))
        if len(c):
            pick = rng.choice(len(c), size=min(lines, len(c)), replace=False)
            cols = plt.cm.hsv(np.linspace(0, 1, len(pick), endpoint=False))
            for k, col in zip(pick, cols):
                (x1, y1), (x2, y2) = c.uv1[k], c.uv2[k]
                ax.plot([x1, x2 + W], [y1, y2], "-", color=col, lw=0.8)
                ax.plot([x1, x2 + W], [y1, y2], "o", color=col, ms=2.5)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        ax = axes[row, 1]
        warped = reproject(f1, f2, correspond(f2, f1))
        hole = warped.sum(-1) == 0
        blend = np.where(hole[..., None], (f2.rgb * 0.35).astype(np.uint8), warped)
        ax.imshow(blend)
        ax.set_title("view 1 reprojected into view 2 (dark: no correspondence)", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
