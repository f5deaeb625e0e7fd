"""2D occupancy grids of the floor: where a robot camera may stand."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class OccupancyGrid:
    """Free space on the floor plane of a Z-up world.

    ``free[iy, ix]`` is True where a robot of radius ``clearance`` may stand (obstacles already
    dilated by it). Cell (ix, iy) covers x in [origin_x + ix*res, +res), y likewise.
    """

    free: np.ndarray  # [NY, NX] bool
    resolution: float  # metres per cell
    origin: tuple[float, float]  # world (x, y) of the corner of cell (0, 0)
    floor_z: float = 0.0  # world height of the floor
    clearance: float = 0.0  # robot radius already applied to ``free``

    def __post_init__(self):
        self.free = np.asarray(self.free, dtype=bool)
        if self.free.ndim != 2:
            raise ValueError(f"OccupancyGrid.free must be 2D, got {self.free.shape}")
        if not self.resolution > 0:
            raise ValueError(f"OccupancyGrid.resolution must be > 0, got {self.resolution}")

    def to_cell(self, xy) -> np.ndarray:
        """World (x, y) [..., 2] -> integer cell (ix, iy) [..., 2]."""
        xy = np.asarray(xy, dtype=np.float64)
        return np.floor((xy - np.asarray(self.origin)) / self.resolution).astype(np.int64)

    def to_world(self, cells) -> np.ndarray:
        """Cell (ix, iy) [..., 2] -> world (x, y) of the cell centre [..., 2]."""
        return (np.asarray(cells, dtype=np.float64) + 0.5) * self.resolution + np.asarray(self.origin)

    def is_free(self, xy) -> np.ndarray:
        """World (x, y) [..., 2] -> bool [...]: inside the grid and free."""
        c = self.to_cell(xy)
        ny, nx = self.free.shape
        inside = (c[..., 0] >= 0) & (c[..., 0] < nx) & (c[..., 1] >= 0) & (c[..., 1] < ny)
        out = np.zeros(c.shape[:-1], dtype=bool)
        out[inside] = self.free[c[..., 1][inside], c[..., 0][inside]]
        return out
