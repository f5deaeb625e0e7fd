"""Clutter: extra seeded small objects on floors and on the surfaces furniture already offers.

Used by :func:`regconsist_ros.sim.world.apartment.generate_apartment` when
``ApartmentConfig.clutter > 0``. Every object is one of the world's small-object classes (book,
cushion, bottle, vase, plant, cup, plate). Floor objects are placed like furniture (their footprint
is reserved and must keep every doorway connected to most of the room's floor), and the occupancy
grid is computed from the final mesh, so camera trajectories never run through clutter.
The clutter draws from its own random stream, so the rest of the apartment is the one built
without clutter, plus the added objects.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from regconsist_ros.sim.world.builder import MeshBuilder
from regconsist_ros.sim.world.furniture import SMALL, Palette, Placement, _box

FLOOR_PER_ROOM = 6  # floor objects per room at clutter = 1
SURFACE_EXTRA = 2  # extra small objects per furnished surface at clutter = 1
FOOTPRINT = 0.36  # metres reserved on the floor per object (largest small object plus margin)


def book_stack(b: MeshBuilder, rng, P: Placement, pal: Palette):
    """Two to four books lying on top of each other, each its own instance."""
    z = 0.0
    for _ in range(int(rng.integers(2, 5))):
        i = b.new_instance("book")
        w, d, h = rng.uniform(0.15, 0.24), rng.uniform(0.2, 0.3), rng.uniform(0.02, 0.05)
        _box(b, P.child(0, 0, z, rng.uniform(-0.3, 0.3)), (w, d, h), (0, 0, h / 2), pal.pick("books"), i)
        z += h
    return 0.3, 0.3


def floor_cushion(b: MeshBuilder, rng, P: Placement, pal: Palette):
    i = b.new_instance("cushion")
    s = rng.uniform(0.35, 0.45)
    _box(b, P.child(0, 0, 0, rng.uniform(-0.5, 0.5)), (s, s, rng.uniform(0.1, 0.15)), (0, 0, 0.06), pal.pick("fabric"), i)
    return s, s


FLOOR_KINDS = {"books": book_stack, "cushion": floor_cushion, "bottle": SMALL["bottle"], "vase": SMALL["vase"],
               "plant": SMALL["plant"]}
SURFACE_KINDS = ("cup", "plate", "bottle", "vase", "book", "plant")

# place(room_index, w, d, mode) -> (cx, cy, yaw) or None, reserving the footprint in that room
PlaceFn = Callable[[int, float, float, str], "tuple[float, float, float] | None"]


def add_clutter(b: MeshBuilder, rng: np.random.Generator, pal: Palette, rooms: list[int], place: PlaceFn,
                amount: float) -> int:
    """Scatter ``amount`` x the base counts of small objects; returns how many were placed.

    Floor objects are recorded in ``b.movable`` (kind "item") so that motion may slide them.
    """
    if amount < 0:
        raise ValueError(f"add_clutter: amount must be >= 0, got {amount}")
    placed = 0
    surfaces = list(b.surfaces)  # the furniture's surfaces, before clutter adds to them
    for P, w, d, z_top, taken in surfaces:
        for _ in range(int(rng.poisson(amount * SURFACE_EXTRA))):
            kind = SURFACE_KINDS[int(rng.integers(len(SURFACE_KINDS)))]
            for _ in range(10):
                if w <= 0.2 or d <= 0.2:
                    break
                lx, ly = rng.uniform(-w / 2 + 0.1, w / 2 - 0.1), rng.uniform(-d / 2 + 0.1, d / 2 - 0.1)
                if all((lx - x) ** 2 + (ly - y) ** 2 > (r + 0.13) ** 2 for x, y, r in taken):
                    SMALL[kind](b, rng, P.child(lx, ly, z_top), pal)
                    taken.append((lx, ly, 0.13))
                    placed += 1
                    break
    names = list(FLOOR_KINDS)
    for room in rooms:
        for _ in range(int(round(amount * FLOOR_PER_ROOM))):
            mode = "wall" if rng.random() < 0.6 else "free"
            pos = place(room, FOOTPRINT, FOOTPRINT, mode)
            if pos is None:
                continue
            first = b.next_instance_id()
            FLOOR_KINDS[names[int(rng.integers(len(names)))]](b, rng, Placement(pos[0], pos[1], 0.0, pos[2]), pal)
            b.movable.append((tuple(range(first, b.next_instance_id())), pos[0], pos[1], pos[2], "item"))
            placed += 1
    return placed
