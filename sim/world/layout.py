"""Floor plans: rooms from a seeded binary space partition, doorways and windows (pure 2D)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ROOM_TYPES = ("living", "bedroom", "kitchen", "bathroom", "office", "dining")


@dataclass
class Room:
    """Axis-aligned room [x0, x1] x [y0, y1] (metres) with a type."""

    x0: float
    y0: float
    x1: float
    y1: float
    kind: str = "living"
    index: int = 0

    @property
    def w(self) -> float:
        return self.x1 - self.x0

    @property
    def d(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return self.w * self.d

    def side(self, name: str) -> tuple[str, float, float, float]:
        """Side "W" / "E" / "S" / "N" -> (axis of the line, line coordinate, start, end)."""
        return {
            "W": ("x", self.x0, self.y0, self.y1),
            "E": ("x", self.x1, self.y0, self.y1),
            "S": ("y", self.y0, self.x0, self.x1),
            "N": ("y", self.y1, self.x0, self.x1),
        }[name]


@dataclass
class Opening:
    """A gap in a wall line: ``axis`` "x" means the wall lies on x = ``at`` and the gap spans y."""

    axis: str
    at: float
    lo: float
    hi: float
    kind: str  # "door" or "window"
    rooms: tuple[int, ...] = ()
    sill: float = 0.0  # bottom of the opening above the floor
    top: float = 2.1  # top of the opening above the floor


@dataclass
class FloorPlan:
    width: float
    depth: float
    rooms: list[Room]
    openings: list[Opening] = field(default_factory=list)
    wall_height: float = 2.6
    wall_thickness: float = 0.12

    def openings_on(self, room: Room, side: str) -> list[Opening]:
        """Openings lying on one side of a room, within its extent."""
        axis, at, lo, hi = room.side(side)
        return [o for o in self.openings if o.axis == axis and abs(o.at - at) < 1e-6 and o.lo >= lo - 1e-6 and o.hi <= hi + 1e-6]

    def is_outer(self, room: Room, side: str) -> bool:
        axis, at, _, _ = room.side(side)
        limit = self.width if axis == "x" else self.depth
        return abs(at) < 1e-6 or abs(at - limit) < 1e-6


def _split(rng, rect, min_size, depth, out):
    x0, y0, x1, y1 = rect
    w, d = x1 - x0, y1 - y0
    can_x, can_y = w >= 2 * min_size, d >= 2 * min_size
    stop = depth >= 3 or (not can_x and not can_y) or (depth >= 1 and rng.random() < 0.25 and w * d < 30)
    if stop:
        out.append(rect)
        return
    along_x = can_x and (not can_y or w / d > rng.uniform(0.7, 1.4))
    if along_x:
        s = round(float(rng.uniform(x0 + min_size, x1 - min_size)) * 10) / 10
        _split(rng, (x0, y0, s, y1), min_size, depth + 1, out)
        _split(rng, (s, y0, x1, y1), min_size, depth + 1, out)
    else:
        s = round(float(rng.uniform(y0 + min_size, y1 - min_size)) * 10) / 10
        _split(rng, (x0, y0, x1, s), min_size, depth + 1, out)
        _split(rng, (x0, s, x1, y1), min_size, depth + 1, out)


def _shared_edge(a: Room, b: Room):
    """Shared wall of two rooms as (axis, at, lo, hi) or None."""
    for axis, a_hi, b_lo, (alo, ahi), (blo, bhi) in (
        ("x", a.x1, b.x0, (a.y0, a.y1), (b.y0, b.y1)),
        ("x", b.x1, a.x0, (b.y0, b.y1), (a.y0, a.y1)),
        ("y", a.y1, b.y0, (a.x0, a.x1), (b.x0, b.x1)),
        ("y", b.y1, a.y0, (b.x0, b.x1), (a.x0, a.x1)),
    ):
        if abs(a_hi - b_lo) < 1e-6:
            lo, hi = max(alo, blo), min(ahi, bhi)
            if hi - lo > 1e-6:
                return axis, a_hi, lo, hi
    return None


def generate_floorplan(rng: np.random.Generator, min_rooms: int = 3, door_width: float = 0.9,
                       wall_height: float = 2.6) -> FloorPlan:
    """A seeded apartment plan: 3-7 rooms, every room reachable through doorways, windows outside."""
    for _ in range(50):
        W = round(float(rng.uniform(8.0, 12.0)), 1)
        D = round(float(rng.uniform(6.0, 9.0)), 1)
        rects: list = []
        _split(rng, (0.0, 0.0, W, D), 2.6, 0, rects)
        if len(rects) >= min_rooms:
            break
    rooms = [Room(*r, index=i) for i, r in enumerate(rects)]
    # room types: largest is the living room, then a kitchen, a bathroom (smallest), bedrooms...
    order = sorted(range(len(rooms)), key=lambda i: -rooms[i].area)
    rooms[order[0]].kind = "living"
    rest = order[1:]
    if rest:
        rooms[rest[-1]].kind = "bathroom"
        rest = rest[:-1]
    extra = ["kitchen", "bedroom", "office", "dining", "bedroom"]
    for k, i in enumerate(rest):
        rooms[i].kind = extra[k] if k < len(extra) else str(rng.choice(["bedroom", "office"]))
    plan = FloorPlan(W, D, rooms, wall_height=wall_height)

    # doors: a random spanning tree over rooms that share >= 1.4 m of wall, plus one extra loop
    edges = []
    for i in range(len(rooms)):
        for j in range(i + 1, len(rooms)):
            e = _shared_edge(rooms[i], rooms[j])
            if e and e[3] - e[2] >= door_width + 0.5:
                edges.append((i, j, e))
    rng.shuffle(edges)
    parent = list(range(len(rooms)))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    chosen, spare = [], []
    for i, j, e in edges:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[ri] = rj
            chosen.append((i, j, e))
        else:
            spare.append((i, j, e))
    chosen += spare[:1]
    for i, j, (axis, at, lo, hi) in chosen:
        c = float(rng.uniform(lo + 0.25 + door_width / 2, hi - 0.25 - door_width / 2))
        plan.openings.append(Opening(axis, at, c - door_width / 2, c + door_width / 2, "door", (i, j)))

    # windows on outer walls (not in bathrooms' every wall): 1-2 per room where an outer wall exists
    for r in rooms:
        sides = [s for s in "WESN" if plan.is_outer(r, s)]
        rng.shuffle(sides)
        for s in sides[: 1 if r.kind == "bathroom" else 2]:
            axis, at, lo, hi = r.side(s)
            if hi - lo < 1.6:
                continue
            width = float(rng.uniform(0.8, min(2.0, hi - lo - 0.8)))
            c = float(rng.uniform(lo + 0.4 + width / 2, hi - 0.4 - width / 2))
            plan.openings.append(Opening(axis, at, c - width / 2, c + width / 2, "window", (r.index,),
                                         sill=0.9 if r.kind != "bathroom" else 1.3, top=2.05))
    return plan
