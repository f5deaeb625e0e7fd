"""Procedural apartments from a seed: floor plan -> walls/floors/ceilings -> furniture -> SceneMesh.

``generate_apartment(ApartmentConfig(seed=3))`` is deterministic in the seed. The result carries
the floor plan (rooms, doors, windows) and builds an occupancy grid for camera trajectories.

Three options make evaluation worlds where colour does not give the answer (docs/world.md); all are
off by default, and with them off the apartment is bit-identical to the one built without them.
Each draws from its own random stream of the seed: ``shared_textures`` (materials from one pool
shared by all classes), ``clutter`` (extra small objects, :mod:`.clutter`) and ``motion`` (movers,
:mod:`.motion`; door swings are then kept free of furniture).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from regconsist_ros.sim.mesh import SceneMesh
from regconsist_ros.sim.world import textures as tx
from regconsist_ros.sim.world.builder import MaterialLibrary, MeshBuilder
from regconsist_ros.sim.world.classes import APARTMENT_CLASSES
from regconsist_ros.sim.world.clutter import add_clutter
from regconsist_ros.sim.world.furniture import FLOOR_ITEMS, ROOM_FURNITURE, Palette, Placement, clock, picture
from regconsist_ros.sim.world.layout import FloorPlan, Room, generate_floorplan
from regconsist_ros.sim.world.motion import Mover, plan_movers

# sub-streams of the seed for the evaluation-world options (the base apartment uses the seed itself)
_SHARED_STREAM, _CLUTTER_STREAM, _MOTION_STREAM = 1, 2, 3


@dataclass
class ApartmentConfig:
    """Procedural apartment generator settings."""

    seed: int = 0
    wall_height: float = 2.6
    door_width: float = 0.9
    min_rooms: int = 3
    furniture: float = 1.0  # fraction of each room type's furniture list to attempt (0..1)
    texture_size: int = tx.TILE
    shared_textures: bool = False  # every object's materials drawn from one pool shared by all classes
    clutter: float = 0.0  # extra small objects: ~6 per room on the floor and ~2 per surface at 1.0 (0..4)
    motion: float = 0.0  # amplitude of scripted object motion (0 = static, 1 = doors swing up to 80 deg; 0..2)

    def __post_init__(self):
        if not 2.2 <= self.wall_height <= 5.0:
            raise ValueError(f"ApartmentConfig.wall_height must be in [2.2, 5] m, got {self.wall_height}")
        if not 0.7 <= self.door_width <= 1.5:
            raise ValueError(f"ApartmentConfig.door_width must be in [0.7, 1.5] m, got {self.door_width}")
        if not 0.0 <= self.furniture <= 1.0:
            raise ValueError(f"ApartmentConfig.furniture must be in [0, 1], got {self.furniture}")
        if not 1 <= self.min_rooms <= 7:
            raise ValueError(f"ApartmentConfig.min_rooms must be in [1, 7], got {self.min_rooms}")
        if self.texture_size not in (32, 64, 128, 256, 512):
            raise ValueError(f"ApartmentConfig.texture_size must be a power of two in 32..512, got {self.texture_size}")
        if not isinstance(self.shared_textures, (bool, np.bool_)):
            raise ValueError(f"ApartmentConfig.shared_textures must be a bool, got {self.shared_textures!r}")
        if not 0.0 <= self.clutter <= 4.0:
            raise ValueError(f"ApartmentConfig.clutter must be in [0, 4], got {self.clutter}")
        if not 0.0 <= self.motion <= 2.0:
            raise ValueError(f"ApartmentConfig.motion must be in [0, 2], got {self.motion}")


@dataclass
class Apartment:
    """A generated apartment: its plan, its mesh, and where a robot may stand."""

    config: ApartmentConfig
    plan: FloorPlan
    mesh: SceneMesh
    placed: dict = field(default_factory=dict)  # room index -> list of item names placed
    movers: list[Mover] = field(default_factory=list)  # scripted motion (config.motion > 0), see .motion

    def motion_script(self):
        """The mesh split into static part and movers (:class:`~.motion.MotionScript`), or None when static."""
        from regconsist_ros.sim.world.motion import MotionScript

        return MotionScript(self.mesh, self.movers) if self.movers else None

    def occupancy(self, clearance: float = 0.3, resolution: float = 0.05):
        """Occupancy grid of the floor (obstacles dilated by ``clearance``), from a ray probe."""
        from regconsist_ros.sim.render import occupancy_from_mesh

        return occupancy_from_mesh(self.mesh, floor_z=0.0, clearance=clearance, resolution=resolution,
                                   probe_height=min(1.8, self.plan.wall_height - 0.4))


def _materials(rng: np.random.Generator, S: int) -> tuple[MaterialLibrary, dict[str, list[str]]]:
    """Register the textures one apartment uses; returns the library and furniture families."""
    lib = MaterialLibrary()
    fam: dict[str, list[str]] = {k: [] for k in ("wood", "fabric", "ceramic", "glass", "metal", "shade",
                                                   "books", "rug", "stone", "wall", "floor", "tile_floor", "tile_wall")}

    def add(family, name, tex, tile):
        lib.add(name, tex, tile)
        if family:
            fam[family].append(name)

    woods = [(150, 100, 60), (190, 150, 100), (100, 65, 40), (215, 185, 140), (120, 80, 50)]
    for k, c in enumerate(woods):
        add("wood", f"wood{k}", tx.wood(rng, tx._jitter(rng, c, 12), S, planks=int(rng.integers(2, 5))), 0.8)
    for k in range(3):
        add("floor", f"floor_wood{k}", tx.wood(rng, tx._jitter(rng, woods[k], 15), S, planks=4), 1.2)
    for k in range(6):
        add("fabric", f"fabric{k}", tx.fabric(rng, rng.integers(40, 220, 3), S, threads=int(rng.choice([16, 32]))), 0.25)
    for k in range(3):
        add("ceramic", f"ceramic{k}", tx.noise(rng, rng.integers(150, 250, 3), S, contrast=0.08, base=8), 0.2)
    add("glass", "glass0", tx.noise(rng, (60, 120, 80), S, contrast=0.2), 0.2)
    add("glass", "glass1", tx.noise(rng, (140, 90, 40), S, contrast=0.2), 0.2)
    add("metal", "metal0", tx.metal(rng, (180, 180, 185), S), 0.3)
    add("metal", "metal1", tx.metal(rng, (60, 60, 65), S), 0.3)
    for k in range(2):
        add("shade", f"shade{k}", tx.fabric(rng, rng.integers(180, 250, 3), S, threads=32), 0.2)
    for k in range(4):
        add("books", f"books{k}", tx.book_spines(rng, S, books=8), 0.3)
    for k in range(4):
        add("rug", f"rug{k}", tx.pattern(rng, rng.integers(60, 230, 3), rng.integers(60, 230, 3), S), 1.0)
    add("stone", "stone0", tx.noise(rng, (90, 90, 95), S, contrast=0.35, base=8), 0.6)
    add("stone", "stone1", tx.noise(rng, (210, 205, 195), S, contrast=0.2, base=8), 0.6)
    for k in range(4):
        if rng.random() < 0.5:
            add("wall", f"wall{k}", tx.noise(rng, rng.integers(170, 245, 3), S, contrast=0.12, base=4), 1.5)
        else:
            add("wall", f"wall{k}", tx.pattern(rng, rng.integers(180, 245, 3), rng.integers(120, 220, 3), S), 0.7)
    for k in range(2):
        add("tile_floor", f"tile_floor{k}", tx.tiles(rng, rng.integers(120, 240, 3), (90, 90, 90), S, n=2), 0.8)
        add("tile_wall", f"tile_wall{k}", tx.tiles(rng, rng.integers(170, 250, 3), (150, 150, 150), S, n=4), 0.8)
    add(None, "ceiling", tx.noise(rng, (235, 235, 230), S, contrast=0.06, base=4), 2.0)
    add(None, "sky", tx.sky(rng, S), 2.0)
    add(None, "foliage", tx.foliage(rng, S), 0.4)
    add(None, "screen", tx.screen(rng, S), 1.5)
    add(None, "steel", tx.metal(rng, (200, 200, 205), S), 0.4)
    add(None, "porcelain", tx.noise(rng, (240, 240, 245), S, contrast=0.04, base=8), 0.5)
    add(None, "appliance", tx.noise(rng, (225, 228, 230), S, contrast=0.05, base=8), 1.0)
    add(None, "mattress", tx.fabric(rng, (235, 235, 240), S, threads=32), 0.4)
    add(None, "door", tx.wood(rng, (170, 130, 90), S, planks=1), 1.0)
    add(None, "clock_rim", tx.metal(rng, (50, 50, 55), S), 0.2)
    add(None, "clock_face", tx.clock_face(rng, S), 1.0)
    return lib, fam


class _RoomSpace:
    """Footprints taken in a room (axis-aligned rectangles), to place items without overlap and
    without cutting the room's free floor apart: every placement must keep all doorways in one
    connected free region holding most of the room (for a robot of radius ``robot``)."""

    res = 0.1  # metres per cell of the connectivity check
    robot = 0.36  # robot radius for the check: the trajectories' 0.3 m clearance plus a margin for the 0.1 m grid
    min_reachable = 0.8  # fraction of the free floor that must stay reachable from the doors

    def __init__(self, room: Room, t: float):
        self.room, self.t = room, t
        self.taken: list[tuple[float, float, float, float]] = []  # furniture
        self.clear: list[tuple[float, float, float, float]] = []  # doorway zones (kept free)
        self.nx = max(1, int(round(room.w / self.res)))
        self.ny = max(1, int(round(room.d / self.res)))

    def free(self, x0, y0, x1, y1) -> bool:
        r, m = self.room, self.t / 2 + 0.01
        if x0 < r.x0 + m or x1 > r.x1 - m or y0 < r.y0 + m or y1 > r.y1 - m:
            return False
        return all(x1 <= a0 or x0 >= a1 or y1 <= b0 or y0 >= b1 for a0, b0, a1, b1 in self.taken + self.clear)

    def take(self, x0, y0, x1, y1):
        self.taken.append((x0, y0, x1, y1))

    def keep_clear(self, x0, y0, x1, y1):
        self.clear.append((x0, y0, x1, y1))

    def _mask(self, rects, grow: float) -> np.ndarray:
        """Cells [ny, nx] covered by rectangles grown by ``grow`` metres."""
        r = self.room
        xs = r.x0 + (np.arange(self.nx) + 0.5) * self.res
        ys = r.y0 + (np.arange(self.ny) + 0.5) * self.res
        m = np.zeros((self.ny, self.nx), bool)
        for a0, b0, a1, b1 in rects:
            m |= ((ys[:, None] > b0 - grow) & (ys[:, None] < b1 + grow)) & ((xs[None] > a0 - grow) & (xs[None] < a1 + grow))
        return m

    def stays_connected(self, box) -> bool:
        from scipy import ndimage

        r, g = self.room, self.t / 2 + self.robot
        walls = [(r.x0, r.y0, r.x1, r.y0), (r.x0, r.y1, r.x1, r.y1), (r.x0, r.y0, r.x0, r.y1), (r.x1, r.y0, r.x1, r.y1)]
        blocked = self._mask(self.taken + [box], self.robot) | self._mask(walls, g)
        free = ~blocked
        labels, n = ndimage.label(free)
        if n == 0:
            return False
        doors: set[int] = set()
        for zone in self.clear:  # every doorway must keep free cells, all in one region
            ids = {int(v) for v in np.unique(labels[self._mask([zone], 0.0) & free]) if v}
            if not ids:
                return False
            doors |= ids
        if len(doors) > 1:
            return False
        keep = doors.pop() if doors else int(np.argmax(np.bincount(labels.ravel())[1:]) + 1)
        return (labels == keep).sum() >= self.min_reachable * free.sum()


_INWARD = {"S": 0.0, "N": np.pi, "W": -np.pi / 2, "E": np.pi / 2}  # yaw so that local +y faces the room


def _footprint(cx, cy, w, d, yaw):
    c, s = abs(np.cos(yaw)), abs(np.sin(yaw))
    hx, hy = (w * c + d * s) / 2, (w * s + d * c) / 2
    return cx - hx, cy - hy, cx + hx, cy + hy


def _wall_point(room: Room, side: str, along: float, offset: float):
    """A point at ``along`` on a room side, ``offset`` metres into the room."""
    if side == "S":
        return along, room.y0 + offset
    if side == "N":
        return along, room.y1 - offset
    if side == "W":
        return room.x0 + offset, along
    return room.x1 - offset, along


def _place(rng, space: _RoomSpace, plan: FloorPlan, mode: str, w: float, d: float):
    """Find a placement (cx, cy, yaw) for a w x d item, or None."""
    room, t = space.room, plan.wall_thickness
    for _ in range(40):
        if mode in ("wall", "corner"):
            side = str(rng.choice(list("SNWE")))
            axis, at, lo, hi = room.side(side)
            yaw = _INWARD[side]
            if mode == "corner":
                along = lo + t / 2 + w / 2 + 0.05 if rng.random() < 0.5 else hi - t / 2 - w / 2 - 0.05
            else:
                along = float(rng.uniform(lo + t / 2 + w / 2 + 0.02, max(lo + t / 2 + w / 2 + 0.03, hi - t / 2 - w / 2 - 0.02)))
            cx, cy = _wall_point(room, side, along, t / 2 + d / 2 + 0.03)
            # tall wall items must not block windows
            blocked = any(o.kind == "window" and o.lo - 0.1 < along + w / 2 and o.hi + 0.1 > along - w / 2
                          for o in plan.openings_on(room, side))
            if blocked and mode == "wall" and d > 0.35:
                continue
        elif mode == "rug":
            cx, cy = room.x0 + room.w / 2 + rng.uniform(-0.3, 0.3), room.y0 + room.d / 2 + rng.uniform(-0.3, 0.3)
            yaw = float(rng.choice([0.0, np.pi / 2]))
            x0, y0, x1, y1 = _footprint(cx, cy, w, d, yaw)
            if space.free(x0, y0, x1, y1):
                return cx, cy, yaw  # rugs do not take space: furniture may stand on them
            continue
        else:
            cx = float(rng.uniform(room.x0 + 0.8, room.x1 - 0.8))
            cy = float(rng.uniform(room.y0 + 0.8, room.y1 - 0.8))
            yaw = float(rng.choice([0.0, np.pi / 2, np.pi, -np.pi / 2]))
        box = _footprint(cx, cy, w, d, yaw)
        if space.free(*box) and space.stays_connected(box):
            space.take(*box)
            return cx, cy, yaw
    return None


def _walls(b: MeshBuilder, plan: FloorPlan, room: Room, wall_mat: str, inst: int, space: _RoomSpace):
    """Wall slabs of one room (half the wall thickness, inside its rectangle) around its openings."""
    h, t = plan.wall_height, plan.wall_thickness / 2
    for side in "SNWE":
        axis, at, lo, hi = room.side(side)
        inward = 1.0 if side in "SW" else -1.0
        ops = sorted(plan.openings_on(room, side), key=lambda o: o.lo)
        # solid intervals between openings; each opening keeps a lintel (and a sill for windows)
        pieces, cur = [], lo
        for o in ops:
            pieces.append((cur, o.lo, 0.0, h))
            pieces.append((o.lo, o.hi, o.top, h))
            if o.sill > 0:
                pieces.append((o.lo, o.hi, 0.0, o.sill))
            cur = o.hi
        pieces.append((cur, hi, 0.0, h))
        for a, c, z0, z1 in pieces:
            if c - a < 1e-3 or z1 - z0 < 1e-3:
                continue
            mid_t = at + inward * t / 2
            if axis == "x":
                b.box((t, c - a, z1 - z0), (mid_t, (a + c) / 2, (z0 + z1) / 2), wall_mat, inst)
            else:
                b.box((c - a, t, z1 - z0), ((a + c) / 2, mid_t, (z0 + z1) / 2), wall_mat, inst)
        for o in ops:
            # keep doorways clear of furniture on this side
            depth = 1.1 if o.kind == "door" else 0.0
            if depth:
                if axis == "x":
                    x0, x1 = sorted((at, at + inward * depth))
                    space.keep_clear(x0, o.lo - 0.1, x1, o.hi + 0.1)
                else:
                    y0, y1 = sorted((at, at + inward * depth))
                    space.keep_clear(o.lo - 0.1, y0, o.hi + 0.1, y1)
            if o.kind == "window" and plan.is_outer(room, side):
                w = b.new_instance("window")
                thick = 0.02
                if axis == "x":
                    b.box((thick, o.hi - o.lo, o.top - o.sill), (at, (o.lo + o.hi) / 2, (o.sill + o.top) / 2), "sky", w, fit=True)
                else:
                    b.box((o.hi - o.lo, thick, o.top - o.sill), ((o.lo + o.hi) / 2, at, (o.sill + o.top) / 2), "sky", w, fit=True)


def _door_leaf(b: MeshBuilder, plan: FloorPlan, room: Room, o, space: _RoomSpace, swing: bool = False):
    """An open door leaf lying along the wall next to the doorway (inside ``room``).

    Returns (instance, hinge (x, y), along (ux, uy), inward (nx, ny)) or None when no leaf fits;
    ``swing`` also keeps the square the leaf sweeps when it turns 90 degrees free of furniture."""
    for side in "SNWE":
        axis, at, lo, hi = room.side(side)
        if not (o.axis == axis and abs(o.at - at) < 1e-6):
            continue
        inward = 1.0 if side in "SW" else -1.0
        width = o.hi - o.lo
        for a in (o.hi, o.lo - width):
            if a >= lo + 0.15 and a + width <= hi - 0.15:
                off = at + inward * (plan.wall_thickness / 2 + 0.03)
                i = b.new_instance("door")
                hinge_a, sgn = (a, 1.0) if a == o.hi else (a + width, -1.0)  # the edge next to the doorway
                depth = width + 0.05 if swing else 0.1
                if axis == "x":
                    b.box((0.04, width, o.top - 0.01), (off, a + width / 2, o.top / 2), "door", i)
                    x0, x1 = sorted((at, off + inward * depth))
                    space.take(x0, a, x1, a + width)
                    return i, (off, hinge_a), (0.0, sgn), (inward, 0.0)
                b.box((width, 0.04, o.top - 0.01), (a + width / 2, off, o.top / 2), "door", i)
                y0, y1 = sorted((at, off + inward * depth))
                space.take(a, y0, a + width, y1)
                return i, (hinge_a, off), (sgn, 0.0), (0.0, inward)
    return None


def _wall_decor(b: MeshBuilder, rng, plan: FloorPlan, room: Room, lib: MaterialLibrary, S: int, space: _RoomSpace):
    """Pictures (each with its own painting) and sometimes a clock, on free wall spans."""
    t = plan.wall_thickness / 2
    n_pics = int(rng.integers(1, 3)) if room.kind != "bathroom" else int(rng.integers(0, 2))
    wants = ["picture"] * n_pics + (["clock"] if rng.random() < 0.5 else [])
    for k, kind in enumerate(wants):
        for _ in range(20):
            side = str(rng.choice(list("SNWE")))
            axis, at, lo, hi = room.side(side)
            w = rng.uniform(0.4, 0.9) if kind == "picture" else 0.4
            if hi - lo < w + 0.6:
                continue
            along = float(rng.uniform(lo + t + w / 2 + 0.2, hi - t - w / 2 - 0.2))
            if any(o.lo - 0.1 < along + w / 2 and o.hi + 0.1 > along - w / 2 for o in plan.openings_on(room, side)):
                continue
            z = rng.uniform(1.4, 1.7)
            cx, cy = _wall_point(room, side, along, t + 0.016)
            yaw = _INWARD[side]
            if kind == "picture":
                name = f"painting_r{room.index}_{k}"
                lib.add(name, tx.painting(rng, S), 1.0)
                picture(b, rng, (cx, cy, z), yaw, (w, w * rng.uniform(0.6, 1.2)), name)
            else:
                clock(b, rng, (cx, cy, z + 0.3), yaw)
            break


def generate_apartment(config: ApartmentConfig | None = None, seed: int | None = None) -> Apartment:
    """Build a furnished apartment; ``seed`` overrides ``config.seed``."""
    cfg = config or ApartmentConfig()
    if seed is not None:
        cfg = ApartmentConfig(**{**cfg.__dict__, "seed": int(seed)})
    rng = np.random.default_rng(cfg.seed)
    plan = generate_floorplan(rng, min_rooms=cfg.min_rooms, door_width=cfg.door_width, wall_height=cfg.wall_height)
    lib, fam = _materials(rng, cfg.texture_size)
    pal = Palette(rng, fam)
    b = MeshBuilder(lib, APARTMENT_CLASSES)
    if cfg.shared_textures:
        b.share_materials(_shared_pool(lib), np.random.default_rng([cfg.seed % 2**32, _SHARED_STREAM]))
    spaces = {r.index: _RoomSpace(r, plan.wall_thickness) for r in plan.rooms}
    placed: dict[int, list[str]] = {}
    wet = ("kitchen", "bathroom")
    for r in plan.rooms:
        wall_mat = pal.pick("tile_wall") if r.kind in wet else pal.pick("wall")
        floor_mat = pal.pick("tile_floor") if r.kind in wet else pal.pick("floor")
        _walls(b, plan, r, wall_mat, b.new_instance("wall"), spaces[r.index])
        b.box((r.w, r.d, 0.05), (r.x0 + r.w / 2, r.y0 + r.d / 2, -0.025), floor_mat, b.new_instance("floor"))
        b.box((r.w, r.d, 0.05), (r.x0 + r.w / 2, r.y0 + r.d / 2, plan.wall_height + 0.025), "ceiling",
              b.new_instance("ceiling"))
    doors = []
    for o in plan.openings:
        if o.kind == "door":
            room = plan.rooms[o.rooms[int(rng.integers(len(o.rooms)))]]
            leaf = _door_leaf(b, plan, room, o, spaces[room.index], swing=cfg.motion > 0)
            if leaf is not None:
                doors.append(leaf)
    for r in plan.rooms:
        items = ROOM_FURNITURE[r.kind]
        n = max(1, int(round(len(items) * cfg.furniture))) if cfg.furniture > 0 else 0
        placed[r.index] = []
        for name in items[:n]:
            fn, wr, dr, mode = FLOOR_ITEMS[name]
            w, d = float(rng.uniform(*wr)), float(rng.uniform(*dr))
            pos = _place(rng, spaces[r.index], plan, mode, w, d)
            if pos is None:
                continue
            fn(b, rng, Placement(pos[0], pos[1], 0.0, pos[2]), pal, w, d)
            placed[r.index].append(name)
        _wall_decor(b, rng, plan, r, lib, cfg.texture_size, spaces[r.index])
    if cfg.clutter > 0:
        crng = np.random.default_rng([cfg.seed % 2**32, _CLUTTER_STREAM])

        def place(room: int, w: float, d: float, mode: str):
            return _place(crng, spaces[room], plan, mode, w, d)

        add_clutter(b, crng, Palette(crng, fam), [r.index for r in plan.rooms], place, cfg.clutter)
    movers = []
    if cfg.motion > 0:
        movers = plan_movers(np.random.default_rng([cfg.seed % 2**32, _MOTION_STREAM]), cfg.motion, doors, b.movable)
    return Apartment(cfg, plan, b.build(), placed, movers)


def _shared_pool(lib: MaterialLibrary) -> list[str]:
    """Every registered material but the window view, the TV screen and the clock dial (which look
    wrong on a sofa): walls, floors, woods, fabrics, ceramics, metals ... all in one pool."""
    return [m.name for m in lib.materials if m.name not in ("sky", "screen", "clock_face")]
