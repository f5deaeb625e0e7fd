"""A view pair's correspondences drawn on its two images side by side (numpy only; a picture for a live view).

:func:`draw_correspondences` puts view 1 (src) left and view 2 (dst) right, and draws ``lines`` of
the correspondences, each as a one-pixel line from ``uv1`` in view 1 to ``uv2`` in view 2 with a
filled square dot (``radius``) at both ends, all in the line's own colour (:func:`palette`).
Which correspondences are drawn is deterministic (:func:`pick`: evenly spaced in the given order),
so a subscriber that holds the pair and both images can redraw the same picture bit for bit.
Lines are drawn first and dots over them, in pick order, so an endpoint carries its line's colour
unless a later dot covers it. Pixels away from every line and dot are the images' own.
"""
from __future__ import annotations

import colorsys

import numpy as np


def palette(n: int) -> np.ndarray:
    """[n, 3] uint8 colours of evenly spaced hues at full saturation and value (n >= 0)."""
    if n < 0:
        raise ValueError(f"palette needs n >= 0, got {n}")
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(i / max(n, 1), 1.0, 1.0)] for i in range(n)],
                    np.uint8).reshape(n, 3)


def pick(n: int, k: int) -> np.ndarray:
    """Indices [min(n, k)] int64 of ``k`` correspondences out of ``n``, evenly spaced, first and last included."""
    if n < 0 or k < 0:
        raise ValueError(f"pick needs n >= 0 and k >= 0, got {n}, {k}")
    if k >= n:
        return np.arange(n, dtype=np.int64)
    if k == 1:
        return np.zeros(1, np.int64)
    return np.round(np.linspace(0, n - 1, k)).astype(np.int64)  # distinct: the spacing (n-1)/(k-1) >= 1


def default_radius(width: int) -> int:
    """Dot radius for an image ``width`` pixels wide: 1 up to 240 px, then one more per 160 px."""
    return max(1, int(width) // 160)


def _line(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, colour: np.ndarray) -> None:
    """A one-pixel line from (x0, y0) to (x1, y1) (pixel centres at integers), clipped to ``img``."""
    n = int(np.ceil(max(abs(x1 - x0), abs(y1 - y0)))) + 1
    xs = np.rint(np.linspace(x0, x1, n)).astype(np.int64)
    ys = np.rint(np.linspace(y0, y1, n)).astype(np.int64)
    ok = (xs >= 0) & (xs < img.shape[1]) & (ys >= 0) & (ys < img.shape[0])
    img[ys[ok], xs[ok]] = colour


def _dot(img: np.ndarray, x: float, y: float, r: int, colour: np.ndarray) -> None:
    """A filled (2r+1) x (2r+1) square centred on the pixel nearest (x, y), clipped to ``img``."""
    cx, cy = int(np.rint(x)), int(np.rint(y))
    img[max(0, cy - r):max(0, cy + r + 1), max(0, cx - r):max(0, cx + r + 1)] = colour


def draw_correspondences(rgb1: np.ndarray, rgb2: np.ndarray, uv1: np.ndarray, uv2: np.ndarray, lines: int = 50,
                         radius: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(picture [max(H1, H2), W1 + W2, 3] uint8, drawn [k] indices into uv1/uv2)``.

    ``rgb1`` [H1, W1, 3] and ``rgb2`` [H2, W2, 3] uint8 are the two views; ``uv1``, ``uv2`` [M, 2]
    pixel (x, y) coordinates in them (a view pair's correspondences). The ``lines`` drawn are
    :func:`pick` (M, lines); correspondence ``drawn[j]`` has colour ``palette(len(drawn))[j]``, its
    view-2 end at (x + W1, y) in the picture. ``radius`` None = :func:`default_radius` of W1; 0 = no dots.
    """
    for name, a in (("rgb1", rgb1), ("rgb2", rgb2)):
        if not (isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3):
            raise ValueError(f"draw_correspondences: {name} must be uint8 [H, W, 3], got "
                             f"{getattr(a, 'dtype', type(a))} {getattr(a, 'shape', '')}")
    uv1, uv2 = np.asarray(uv1, np.float64).reshape(-1, 2), np.asarray(uv2, np.float64).reshape(-1, 2)
    if len(uv1) != len(uv2):
        raise ValueError(f"draw_correspondences: uv1 and uv2 differ in length ({len(uv1)} vs {len(uv2)})")
    if lines < 0:
        raise ValueError(f"draw_correspondences: lines must be >= 0, got {lines}")
    (H1, W1), (H2, W2) = rgb1.shape[:2], rgb2.shape[:2]
    img = np.zeros((max(H1, H2), W1 + W2, 3), np.uint8)  # [H, W1 + W2, 3]
    img[:H1, :W1], img[:H2, W1:] = rgb1, rgb2
    drawn = pick(len(uv1), lines)
    cols = palette(len(drawn))  # [k, 3]
    ends = np.concatenate([uv1[drawn], uv2[drawn] + [W1, 0.0]], 1)  # [k, 4] x1 y1 x2 y2 in the picture
    ok = np.isfinite(ends).all(1)
    for (x1, y1, x2, y2), c, good in zip(ends, cols, ok):
        if good:
            _line(img, x1, y1, x2, y2, c)
    r = default_radius(W1) if radius is None else int(radius)
    if r > 0:
        for (x1, y1, x2, y2), c, good in zip(ends, cols, ok):
            if good:
                _dot(img, x1, y1, r, c)
                _dot(img, x2, y2, r, c)
    return img, drawn
