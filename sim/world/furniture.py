"""Furniture and small objects assembled from primitives, in an item's local frame.

Local frame of an item: x along its width, y along its depth with the FRONT at +y (the side that
faces into the room), z up from the floor (or from the surface it stands on). ``Placement`` maps
local coordinates to the world. Each builder creates its own instances (one per object), so
instance masks separate the sofa from its cushions and every book from its neighbours.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from regconsist_ros.sim.world.builder import MeshBuilder, rot_x, rot_z


@dataclass
class Placement:
    """Local -> world: p_world = R @ p_local + t, R a rotation about z by ``yaw``."""

    x: float
    y: float
    z: float
    yaw: float

    @property
    def R(self) -> np.ndarray:
        return rot_z(self.yaw)

    def at(self, local) -> np.ndarray:
        return self.R @ np.asarray(local, dtype=np.float64) + np.array([self.x, self.y, self.z])

    def child(self, lx: float, ly: float, lz: float, dyaw: float = 0.0) -> "Placement":
        p = self.at((lx, ly, lz))
        return Placement(float(p[0]), float(p[1]), float(p[2]), self.yaw + dyaw)


class Palette:
    """The materials an apartment's furniture draws from (names registered in the library)."""

    def __init__(self, rng: np.random.Generator, names_by_family: dict[str, list[str]]):
        self.rng = rng
        self.fam = names_by_family

    def pick(self, family: str) -> str:
        names = self.fam[family]
        return names[int(self.rng.integers(len(names)))]


def _box(b: MeshBuilder, P: Placement, size, local_center, mat: str, inst: int, skip=(), fit=False) -> None:
    off = tuple(b_ * 0.37 for b_ in local_center[:2])
    b.box(size, P.at(local_center), mat, inst, R=P.R, uv_offset=off, skip_faces=skip, fit=fit)


# ---- small objects (stand on a surface at Placement.z) ---------------------------------------
def cup(b, rng, P, pal):
    i = b.new_instance("cup")
    r = rng.uniform(0.035, 0.05)
    b.frustum(r * 0.85, r, rng.uniform(0.08, 0.12), P.at((0, 0, 0)), pal.pick("ceramic"), i, segments=12)
    return 2 * r, 2 * r


def plate(b, rng, P, pal):
    i = b.new_instance("plate")
    r = rng.uniform(0.1, 0.14)
    b.frustum(r * 0.7, r, 0.025, P.at((0, 0, 0)), pal.pick("ceramic"), i, segments=16)
    return 2 * r, 2 * r


def bottle(b, rng, P, pal):
    i = b.new_instance("bottle")
    r, h = rng.uniform(0.03, 0.045), rng.uniform(0.2, 0.3)
    mat = pal.pick("glass")
    b.frustum(r, r, h * 0.7, P.at((0, 0, 0)), mat, i, segments=10)
    b.frustum(r, r * 0.35, h * 0.3, P.at((0, 0, h * 0.7)), mat, i, segments=10)
    return 2 * r, 2 * r


def vase(b, rng, P, pal):
    i = b.new_instance("vase")
    r, h = rng.uniform(0.05, 0.09), rng.uniform(0.15, 0.35)
    mat = pal.pick("ceramic")
    b.frustum(r * 0.7, r, h * 0.6, P.at((0, 0, 0)), mat, i, segments=12)
    b.frustum(r, r * 0.5, h * 0.4, P.at((0, 0, h * 0.6)), mat, i, segments=12)
    return 2 * r, 2 * r


def book_lying(b, rng, P, pal):
    i = b.new_instance("book")
    w, d, h = rng.uniform(0.15, 0.24), rng.uniform(0.2, 0.3), rng.uniform(0.02, 0.05)
    _box(b, P.child(0, 0, 0, rng.uniform(-0.4, 0.4)), (w, d, h), (0, 0, h / 2), pal.pick("books"), i)
    return max(w, d), max(w, d)


def table_lamp(b, rng, P, pal):
    i = b.new_instance("lamp")
    h = rng.uniform(0.3, 0.45)
    b.frustum(0.07, 0.07, 0.03, P.at((0, 0, 0)), pal.pick("metal"), i, segments=12)
    b.frustum(0.012, 0.012, h * 0.6, P.at((0, 0, 0.03)), pal.pick("metal"), i, segments=6, caps=False)
    b.frustum(0.12, 0.07, h * 0.4, P.at((0, 0, h * 0.55)), pal.pick("shade"), i, segments=14)
    return 0.24, 0.24


def small_plant(b, rng, P, pal):
    i = b.new_instance("plant")
    r = rng.uniform(0.06, 0.09)
    b.frustum(r * 0.8, r, 0.12, P.at((0, 0, 0)), pal.pick("ceramic"), i, segments=10)
    b.sphere(r * 1.6, P.at((0, 0, 0.12 + r * 1.2)), "foliage", i, scale=(1, 1, 1.2))
    return 3.2 * r, 3.2 * r


SMALL = {"cup": cup, "plate": plate, "bottle": bottle, "vase": vase, "book": book_lying,
         "lamp": table_lamp, "plant": small_plant}


def scatter(b, rng, P: Placement, w: float, d: float, z_top: float, pal, kinds: list[str]) -> None:
    """Place small objects of ``kinds`` on a surface (local rect w x d centred at P, height z_top)."""
    taken: list[tuple[float, float, float]] = []
    for kind in kinds:
        for _ in range(15):
            lx, ly = rng.uniform(-w / 2 + 0.1, w / 2 - 0.1), rng.uniform(-d / 2 + 0.1, d / 2 - 0.1)
            if all((lx - x) ** 2 + (ly - y) ** 2 > (r + 0.13) ** 2 for x, y, r in taken):
                SMALL[kind](b, rng, P.child(lx, ly, z_top), pal)
                taken.append((lx, ly, 0.13))
                break
    b.surfaces.append((P, w, d, z_top, taken))  # clutter may add more objects here


# ---- furniture (stand on the floor) ------------------------------------------------------------
def legs(b, P, w, d, h, mat, inst, t=0.05, inset=0.04):
    for sx in (-1, 1):
        for sy in (-1, 1):
            _box(b, P, (t, t, h), (sx * (w / 2 - inset - t / 2), sy * (d / 2 - inset - t / 2), h / 2), mat, inst)


def sofa(b, rng, P, pal, w, d):
    i = b.new_instance("sofa")
    mat = pal.pick("fabric")
    _box(b, P, (w, d, 0.42), (0, 0, 0.21), mat, i)
    _box(b, P, (w, 0.2, 0.45), (0, -d / 2 + 0.1, 0.42 + 0.225), mat, i)
    for sx in (-1, 1):
        _box(b, P, (0.18, d, 0.22), (sx * (w / 2 - 0.09), 0, 0.42 + 0.11), mat, i)
    n = int(rng.integers(2, 4))
    cmat = pal.pick("fabric")
    for k in range(n):
        c = b.new_instance("cushion")
        x = -w / 2 + 0.25 + (k + 0.5) * (w - 0.5) / n
        _box(b, P.child(x, -d / 2 + 0.3, 0.42, rng.uniform(-0.2, 0.2)), (0.38, 0.14, 0.36), (0, 0, 0.18), cmat, c)


def armchair(b, rng, P, pal, w, d):
    i = b.new_instance("chair")
    mat = pal.pick("fabric")
    _box(b, P, (w, d, 0.42), (0, 0, 0.21), mat, i)
    _box(b, P, (w, 0.18, 0.45), (0, -d / 2 + 0.09, 0.645), mat, i)
    for sx in (-1, 1):
        _box(b, P, (0.14, d, 0.2), (sx * (w / 2 - 0.07), 0, 0.52), mat, i)
    b.movable.append(((i,), P.x, P.y, P.yaw, "chair"))


def table(b, rng, P, pal, w, d, h=0.75, small=("plate", "cup", "vase"), cls="table"):
    i = b.new_instance(cls)
    mat = pal.pick("wood")
    _box(b, P, (w, d, 0.04), (0, 0, h - 0.02), mat, i)
    legs(b, P, w, d, h - 0.04, mat, i)
    scatter(b, rng, P, w, d, h, pal, list(small))


def chair(b, rng, P, pal, w=0.45, d=0.45):
    i = b.new_instance("chair")
    mat = pal.pick("wood")
    _box(b, P, (w, d, 0.04), (0, 0, 0.45), mat, i)
    legs(b, P, w, d, 0.43, mat, i, t=0.035, inset=0.02)
    _box(b, P, (w, 0.04, 0.45), (0, -d / 2 + 0.02, 0.47 + 0.225), mat, i)
    b.movable.append(((i,), P.x, P.y, P.yaw, "chair"))


def shelf(b, rng, P, pal, w, d, h=1.9):
    i = b.new_instance("shelf")
    mat = pal.pick("wood")
    for sx in (-1, 1):
        _box(b, P, (0.03, d, h), (sx * (w / 2 - 0.015), 0, h / 2), mat, i)
    _box(b, P, (w, 0.02, h), (0, -d / 2 + 0.01, h / 2), mat, i)
    levels = np.linspace(0.05, h - 0.02, 5)
    for z in levels:
        _box(b, P, (w - 0.06, d - 0.02, 0.025), (0, 0.01, z), mat, i)
    for z0, z1 in zip(levels[:-1], levels[1:]):
        x = -w / 2 + 0.05
        while x < w / 2 - 0.1:
            bw = rng.uniform(0.025, 0.06)
            if rng.random() < 0.8:
                bh = min(rng.uniform(0.18, 0.3), z1 - z0 - 0.05)
                bi = b.new_instance("book")
                _box(b, P, (bw, d * 0.75, bh), (x + bw / 2, 0.0, z0 + 0.0125 + bh / 2), pal.pick("books"), bi)
            x += bw + 0.004
        if rng.random() < 0.3:
            SMALL["vase"](b, rng, P.child(w / 2 - 0.12, 0, z0 + 0.0125), pal)


def cabinet(b, rng, P, pal, w, d, h=0.8, small=("vase", "book"), cls="cabinet", top_mat=None):
    i = b.new_instance(cls)
    mat = pal.pick("wood")
    _box(b, P, (w, d, h), (0, 0, h / 2), mat, i)
    # door seams / handles as slightly protruding strips for texture at object scale
    n = max(1, int(round(w / 0.5)))
    for k in range(n):
        x = -w / 2 + (k + 0.5) * w / n
        _box(b, P, (0.12, 0.02, 0.025), (x, d / 2 + 0.01, h * 0.8), pal.pick("metal"), i)
    if top_mat is not None:
        _box(b, P, (w + 0.02, d + 0.02, 0.03), (0, 0, h + 0.015), top_mat, i)
        h += 0.03
    scatter(b, rng, P, w, d, h, pal, list(small))
    return h


def tv_unit(b, rng, P, pal, w, d):
    h = cabinet(b, rng, P, pal, w, d, h=0.5, small=())
    t = b.new_instance("tv")
    tw = min(w - 0.2, rng.uniform(0.9, 1.4))
    _box(b, P, (tw, 0.05, tw * 0.58), (0, -0.05, h + 0.06 + tw * 0.29), "screen", t, fit=True)
    _box(b, P, (0.25, 0.15, 0.06), (0, -0.05, h + 0.03), pal.pick("metal"), t)


def floor_lamp(b, rng, P, pal, w=0.4, d=0.4):
    i = b.new_instance("lamp")
    h = rng.uniform(1.4, 1.7)
    b.frustum(0.15, 0.15, 0.03, P.at((0, 0, 0)), pal.pick("metal"), i, segments=14)
    b.frustum(0.015, 0.015, h - 0.3, P.at((0, 0, 0.03)), pal.pick("metal"), i, segments=6, caps=False)
    b.frustum(0.2, 0.13, 0.3, P.at((0, 0, h - 0.3)), pal.pick("shade"), i, segments=16)


def plant(b, rng, P, pal, w=0.5, d=0.5):
    i = b.new_instance("plant")
    r = rng.uniform(0.14, 0.2)
    ph = rng.uniform(0.3, 0.45)
    b.frustum(r * 0.75, r, ph, P.at((0, 0, 0)), pal.pick("ceramic"), i, segments=14)
    half = min(w, d) / 2  # foliage stays inside the reserved footprint
    for k in range(int(rng.integers(2, 4))):
        off = rng.uniform(-0.3, 0.3, 2) * r
        rad = min(rng.uniform(0.22, 0.32), half - float(np.abs(off).max()) - 0.02)
        b.sphere(rad, P.at((off[0], off[1], ph + 0.25 + 0.2 * k)), "foliage", i,
                 scale=(1, 1, rng.uniform(1.0, 1.5)))


def rug(b, rng, P, pal, w, d):
    i = b.new_instance("rug")
    _box(b, P, (w, d, 0.012), (0, 0, 0.006), pal.pick("rug"), i, skip=("-z",))


def bed(b, rng, P, pal, w, d):
    i = b.new_instance("bed")
    wood = pal.pick("wood")
    _box(b, P, (w, d, 0.3), (0, 0, 0.15), wood, i)
    _box(b, P, (w, 0.08, 1.0), (0, -d / 2 + 0.04, 0.5), wood, i)
    _box(b, P, (w - 0.06, d - 0.12, 0.2), (0, 0.03, 0.4), "mattress", i)
    bl = b.new_instance("blanket")
    _box(b, P, (w + 0.04, d * 0.65, 0.04), (0, d / 2 - d * 0.325 + 0.01, 0.51), pal.pick("fabric"), bl)
    pmat = pal.pick("fabric")
    n = 2 if w > 1.2 else 1
    for k in range(n):
        p = b.new_instance("pillow")
        x = -w / 2 + (k + 0.5) * w / n
        _box(b, P.child(x, -d / 2 + 0.3, 0.5, rng.uniform(-0.1, 0.1)), (min(0.6, w / n - 0.1), 0.35, 0.12), (0, 0, 0.06), pmat, p)


def wardrobe(b, rng, P, pal, w, d):
    cabinet(b, rng, P, pal, w, d, h=2.0, small=())


def desk(b, rng, P, pal, w, d):
    """Desk against a wall with its chair in front; the footprint ``d`` includes the chair."""
    td = d - 0.55
    table(b, rng, P.child(0, -d / 2 + td / 2, 0), pal, w, td, h=0.74, small=("lamp", "book", "cup"), cls="desk")
    chair(b, rng, P.child(0, d / 2 - 0.25, 0, np.pi), pal)


def dining_set(b, rng, P, pal, w, d):
    """Dining table with 1-2 chairs on each long side; the footprint ``d`` includes the chairs."""
    td = d - 1.0
    table(b, rng, P, pal, w, td, small=("plate", "plate", "cup", "cup", "vase", "bottle"))
    n = 2 if w > 1.3 else 1
    for side in (-1, 1):
        for k in range(n):
            x = -w / 2 + (k + 0.5) * w / n
            chair(b, rng, P.child(x, side * (d / 2 - 0.25), 0, 0.0 if side < 0 else np.pi), pal)


def counter(b, rng, P, pal, w, d):
    h = cabinet(b, rng, P, pal, w, d, h=0.88, small=("bottle", "cup", "plate"), cls="counter",
                top_mat=pal.pick("stone"))
    s = b.new_instance("sink")
    _box(b, P, (0.5, 0.4, 0.04), (w / 2 - 0.4, 0.02, h + 0.02), "steel", s)
    b.frustum(0.015, 0.015, 0.25, P.at((w / 2 - 0.4, -d / 2 + 0.08, h)), "steel", s, segments=8)


def fridge(b, rng, P, pal, w, d):
    i = b.new_instance("refrigerator")
    _box(b, P, (w, d, 1.8), (0, 0, 0.9), "appliance", i)
    _box(b, P, (0.03, 0.04, 0.5), (w / 2 - 0.08, d / 2 + 0.02, 1.2), "steel", i)
    _box(b, P, (0.03, 0.04, 0.4), (w / 2 - 0.08, d / 2 + 0.02, 0.5), "steel", i)


def toilet(b, rng, P, pal, w=0.45, d=0.7):
    i = b.new_instance("toilet")
    b.frustum(0.15, 0.2, 0.4, P.at((0, 0.08, 0)), "porcelain", i, segments=16)
    _box(b, P, (0.42, 0.2, 0.4), (0, -d / 2 + 0.1, 0.6), "porcelain", i)
    b.frustum(0.21, 0.21, 0.03, P.at((0, 0.08, 0.4)), "porcelain", i, segments=16)


def bath_sink(b, rng, P, pal, w, d):
    cabinet(b, rng, P, pal, w, d, h=0.8, small=("bottle",))
    s = b.new_instance("sink")
    b.frustum(0.18, 0.22, 0.12, P.at((0, 0, 0.8)), "porcelain", s, segments=16)


def bathtub(b, rng, P, pal, w, d):
    i = b.new_instance("bathtub")
    _box(b, P, (w, d, 0.55), (0, 0, 0.275), "porcelain", i)


FLOOR_ITEMS = {
    "sofa": (sofa, (1.8, 2.4), (0.85, 0.95), "wall"),
    "armchair": (armchair, (0.75, 0.9), (0.75, 0.85), "free"),
    "coffee_table": (lambda b, r, P, pal, w, d: table(b, r, P, pal, w, d, h=0.42, small=("book", "cup", "vase")),
                     (0.9, 1.2), (0.5, 0.7), "free"),
    "dining_table": (dining_set, (1.2, 1.6), (1.8, 1.9), "free"),
    "tv_unit": (tv_unit, (1.4, 1.8), (0.4, 0.45), "wall"),
    "shelf": (shelf, (0.8, 1.2), (0.3, 0.35), "wall"),
    "floor_lamp": (floor_lamp, (0.4, 0.4), (0.4, 0.4), "corner"),
    "plant": (plant, (0.5, 0.6), (0.5, 0.6), "corner"),
    "rug": (rug, (1.6, 2.4), (1.2, 1.7), "rug"),
    "bed": (bed, (1.4, 1.8), (2.0, 2.1), "wall"),
    "nightstand": (lambda b, r, P, pal, w, d: cabinet(b, r, P, pal, w, d, h=0.55, small=("lamp", "book")),
                   (0.45, 0.5), (0.4, 0.45), "wall"),
    "wardrobe": (wardrobe, (1.0, 1.6), (0.6, 0.6), "wall"),
    "sideboard": (lambda b, r, P, pal, w, d: cabinet(b, r, P, pal, w, d, h=0.8, small=("vase", "book", "plant")),
                  (1.0, 1.6), (0.45, 0.5), "wall"),
    "desk": (desk, (1.1, 1.4), (1.15, 1.25), "wall"),
    "counter": (counter, (1.8, 2.6), (0.6, 0.6), "wall"),
    "fridge": (fridge, (0.65, 0.7), (0.65, 0.7), "wall"),
    "toilet": (toilet, (0.45, 0.45), (0.7, 0.7), "wall"),
    "bath_sink": (bath_sink, (0.6, 0.8), (0.45, 0.5), "wall"),
    "bathtub": (bathtub, (1.5, 1.7), (0.7, 0.75), "wall"),
    "small_rug": (rug, (0.6, 0.9), (0.5, 0.6), "rug"),
}

ROOM_FURNITURE = {
    "living": ["rug", "sofa", "coffee_table", "tv_unit", "shelf", "armchair", "floor_lamp", "plant", "sideboard"],
    "bedroom": ["rug", "bed", "nightstand", "nightstand", "wardrobe", "plant", "shelf"],
    "kitchen": ["counter", "fridge", "dining_table", "plant", "sideboard"],
    "bathroom": ["small_rug", "bathtub", "toilet", "bath_sink", "plant"],
    "office": ["rug", "desk", "shelf", "shelf", "armchair", "floor_lamp", "plant"],
    "dining": ["rug", "dining_table", "sideboard", "shelf", "plant", "floor_lamp"],
}


def picture(b, rng, center, yaw, size, mat: str) -> None:
    """A framed picture hanging on a wall; ``yaw`` makes local +y point into the room."""
    i = b.new_instance("picture")
    P = Placement(*center, yaw)
    w, h = size
    _box(b, P, (w, 0.03, h), (0, 0, 0), mat, i, fit=True)


def clock(b, rng, center, yaw) -> None:
    """A wall clock: a thin disc whose face looks into the room."""
    i = b.new_instance("clock")
    r = rng.uniform(0.12, 0.18)
    R = rot_z(yaw) @ rot_x(-np.pi / 2)  # local z (disc axis) -> room-facing +y
    b.frustum(r, r, 0.04, np.asarray(center), "clock_rim", i, segments=20, R=R, caps=True, cap_material="clock_face")
