"""Semantic class tables: names, ids and display colours."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassTable:
    """Ordered class list; id 0 is always ``void`` (unlabelled, ignored by metrics)."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]

    def __post_init__(self):
        if len(self.names) != len(self.colors):
            raise ValueError(f"ClassTable: {len(self.names)} names but {len(self.colors)} colours")
        if not self.names or self.names[0] != "void":
            raise ValueError("ClassTable: id 0 must be 'void'")
        if len(set(self.names)) != len(self.names):
            raise ValueError("ClassTable: duplicate class names")

    def __len__(self) -> int:
        return len(self.names)

    def id(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown class {name!r}; known: {', '.join(self.names)}") from None

    def palette(self) -> np.ndarray:
        """[C, 3] uint8 colours, for colouring label maps: ``palette()[labels]``."""
        return np.asarray(self.colors, dtype=np.uint8)

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """[H, W] ids -> [H, W, 3] uint8; ids beyond the table render black."""
        pal = np.zeros((max(int(labels.max(initial=0)) + 1, len(self)), 3), np.uint8)
        pal[: len(self)] = self.palette()
        return pal[labels]

    def to_json(self) -> str:
        return json.dumps(
            {"classes": [{"id": i, "name": n, "color": list(c)} for i, (n, c) in enumerate(zip(self.names, self.colors))]},
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> "ClassTable":
        d = json.loads(text)
        rows = sorted(d["classes"], key=lambda r: r["id"])
        if [r["id"] for r in rows] != list(range(len(rows))):
            raise ValueError("class table ids must be 0..C-1 without gaps")
        return cls(tuple(r["name"] for r in rows), tuple(tuple(r["color"]) for r in rows))

    @classmethod
    def from_names(cls, names, seed: int = 0) -> "ClassTable":
        """Table with 'void' prepended (if absent) and distinct generated colours."""
        names = list(names)
        if not names or names[0] != "void":
            names = ["void"] + [n for n in names if n != "void"]
        return cls(tuple(names), tuple(_distinct_colors(len(names), seed)))


def _distinct_colors(n: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """Well-separated colours from golden-ratio hue steps; id 0 black."""
    cols = [(0, 0, 0)]
    h = (seed * 0.37) % 1.0
    for i in range(1, n):
        h = (h + 0.618033988749895) % 1.0
        s = 0.55 + 0.35 * ((i * 7) % 3) / 2
        v = 0.95 - 0.25 * ((i * 5) % 2)
        cols.append(tuple(int(round(255 * c)) for c in _hsv_to_rgb(h, s, v)))
    return cols


def _hsv_to_rgb(h, s, v):
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


# The embedded world's classes (NYU-40 / Replica-like names), including small objects.
APARTMENT_CLASSES = ClassTable(
    names=(
        "void", "wall", "floor", "ceiling", "door", "window", "sofa", "chair", "table", "bed",
        "cabinet", "shelf", "counter", "sink", "toilet", "bathtub", "refrigerator", "tv",
        "pillow", "cushion", "book", "plate", "cup", "bottle", "lamp", "plant", "picture",
        "rug", "vase", "clock", "blanket", "desk",
    ),
    colors=(
        (0, 0, 0), (174, 199, 232), (152, 223, 138), (200, 200, 200), (214, 39, 40), (197, 176, 213),
        (140, 86, 75), (188, 189, 34), (255, 152, 150), (255, 187, 120), (31, 119, 180),
        (148, 103, 189), (23, 190, 207), (112, 128, 144), (44, 160, 44), (227, 119, 194),
        (82, 84, 163), (96, 207, 209), (247, 182, 210), (219, 219, 141), (255, 127, 14),
        (158, 218, 229), (57, 59, 121), (178, 127, 135), (255, 224, 0), (0, 128, 0), (120, 60, 160),
        (160, 100, 40), (255, 99, 71), (70, 130, 180), (205, 133, 63), (210, 105, 30),
    ),
)
