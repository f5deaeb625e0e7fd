"""The procedural apartment: determinism, classes, floor plans, textures and occupancy."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from regconsist_ros.sim.frame import Intrinsics
from regconsist_ros.sim.poses import camera_from_yaw_pitch, look_at
from regconsist_ros.sim.render import Renderer
from regconsist_ros.sim.world import textures as tx
from regconsist_ros.sim.world.apartment import ApartmentConfig, generate_apartment
from regconsist_ros.sim.world.classes import APARTMENT_CLASSES, ClassTable

SEEDS = (0, 1, 2)
SMALL = ("cushion", "book", "plate", "cup", "lamp", "plant", "picture", "rug")


@pytest.fixture(scope="module")
def apartments():
    """One apartment per seed, generated once for the module."""
    return {s: generate_apartment(seed=s) for s in SEEDS}


@pytest.fixture(scope="module")
def occupancies(apartments):
    return {s: ap.occupancy(clearance=0.3, resolution=0.05) for s, ap in apartments.items()}


# ---- determinism ---------------------------------------------------------------------------------
def test_same_seed_gives_identical_mesh(apartments):
    a, b = apartments[1].mesh, generate_apartment(seed=1).mesh
    for name in ("vertices", "triangles", "tri_class", "tri_instance", "tri_material", "corner_uv"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert len(a.textures) == len(b.textures)
    for ta, tb in zip(a.textures, b.textures):
        np.testing.assert_array_equal(ta, tb)
    assert a.instance_class == b.instance_class
    assert apartments[1].placed == generate_apartment(ApartmentConfig(seed=1)).placed


def test_seed_argument_overrides_config_seed(apartments):
    ap = generate_apartment(ApartmentConfig(seed=7), seed=1)
    assert ap.config.seed == 1
    np.testing.assert_array_equal(ap.mesh.vertices, apartments[1].mesh.vertices)


def test_different_seeds_give_different_apartments(apartments):
    m0, m1 = apartments[0].mesh, apartments[1].mesh
    assert m0.vertices.shape != m1.vertices.shape or not np.array_equal(m0.vertices, m1.vertices)
    p0, p1 = apartments[0].plan, apartments[1].plan
    assert (p0.width, p0.depth, len(p0.rooms)) != (p1.width, p1.depth, len(p1.rooms)) or \
        [(r.x0, r.y0) for r in p0.rooms] != [(r.x0, r.y0) for r in p1.rooms]
    assert not np.array_equal(m0.textures[0], m1.textures[0])


# ---- classes ------------------------------------------------------------------------------------
def test_class_table_has_many_distinct_classes_including_small_objects():
    names = APARTMENT_CLASSES.names
    assert names[0] == "void"
    assert len(names) - 1 >= 20
    assert len(set(names)) == len(names)
    colors = APARTMENT_CLASSES.colors
    assert len(set(map(tuple, colors))) == len(colors)
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in colors)
    for s in SMALL:
        assert s in names, s
    assert APARTMENT_CLASSES.id("cup") == names.index("cup")
    with pytest.raises(KeyError, match="unknown class"):
        APARTMENT_CLASSES.id("spaceship")


def test_class_table_json_round_trip_and_colorize():
    t = ClassTable.from_json(APARTMENT_CLASSES.to_json())
    assert t == APARTMENT_CLASSES
    lab = np.array([[0, 1], [APARTMENT_CLASSES.id("cup"), 999]], np.uint16)
    img = APARTMENT_CLASSES.colorize(lab)
    assert img.shape == (2, 2, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[1, 0], APARTMENT_CLASSES.colors[APARTMENT_CLASSES.id("cup")])
    np.testing.assert_array_equal(img[1, 1], (0, 0, 0))  # beyond the table: black
    with pytest.raises(ValueError, match="void"):
        ClassTable(("wall",), ((1, 2, 3),))


def test_meshes_cover_many_classes_including_small_objects(apartments):
    present = set()
    for ap in apartments.values():
        present |= set(np.unique(ap.mesh.tri_class).tolist())
    names = {APARTMENT_CLASSES.names[c] for c in present}
    assert 0 not in present  # every triangle is labelled
    assert len(names) >= 20, sorted(names)
    missing = [s for s in SMALL if s not in names]
    assert not missing, missing
    for s in ("wall", "floor", "ceiling", "door", "window"):
        assert s in names


def test_every_instance_has_exactly_one_class(apartments):
    for ap in apartments.values():
        m = ap.mesh
        inst, first = np.unique(m.tri_instance, return_index=True)
        assert 0 not in inst
        cls_of = dict(zip(inst.tolist(), m.tri_class[first].tolist()))
        # each instance's triangles all carry one class, the one recorded in instance_class
        pairs = np.unique(np.stack([m.tri_instance, m.tri_class], 1), axis=0)
        assert len(pairs) == len(inst)
        for i, c in cls_of.items():
            assert m.instance_class[i] == c
        # many distinct objects (every book, cushion and plate is its own instance)
        assert len(inst) >= 50


# ---- floor plan -----------------------------------------------------------------------------------
def test_plan_rooms_tile_the_apartment_without_overlap(apartments):
    for ap in apartments.values():
        p = ap.plan
        assert len(p.rooms) >= 3
        assert [r.index for r in p.rooms] == list(range(len(p.rooms)))
        for r in p.rooms:
            assert 0 <= r.x0 < r.x1 <= p.width + 1e-9 and 0 <= r.y0 < r.y1 <= p.depth + 1e-9
        assert sum(r.area for r in p.rooms) == pytest.approx(p.width * p.depth)
        for i, a in enumerate(p.rooms):
            for b in p.rooms[i + 1 :]:
                ox = min(a.x1, b.x1) - max(a.x0, b.x0)
                oy = min(a.y1, b.y1) - max(a.y0, b.y0)
                assert ox <= 1e-9 or oy <= 1e-9, (a, b)
        kinds = [r.kind for r in p.rooms]
        assert kinds.count("living") == 1 and "bathroom" in kinds


def test_doors_connect_all_rooms(apartments):
    for ap in apartments.values():
        p = ap.plan
        parent = list(range(len(p.rooms)))

        def find(a):
            while parent[a] != a:
                a = parent[a]
            return a

        doors = [o for o in p.openings if o.kind == "door"]
        for o in doors:
            assert len(o.rooms) == 2
            i, j = o.rooms
            # the door lies on a wall both rooms share, within both rooms' extent
            assert p.openings_on(p.rooms[i], _side_of(p.rooms[i], o))
            assert p.openings_on(p.rooms[j], _side_of(p.rooms[j], o))
            assert o.hi - o.lo == pytest.approx(ap.config.door_width)
            parent[find(i)] = find(j)
        assert len({find(k) for k in range(len(p.rooms))}) == 1


def _side_of(room, o):
    for s in "WESN":
        axis, at, lo, hi = room.side(s)
        if axis == o.axis and abs(at - o.at) < 1e-6 and lo - 1e-6 <= o.lo and o.hi <= hi + 1e-6:
            return s
    raise AssertionError(f"opening {o} is not on a side of room {room}")


def test_windows_only_on_outer_walls(apartments):
    n = 0
    for ap in apartments.values():
        p = ap.plan
        for o in p.openings:
            if o.kind != "window":
                continue
            n += 1
            room = p.rooms[o.rooms[0]]
            assert p.is_outer(room, _side_of(room, o)), o
            limit = p.width if o.axis == "x" else p.depth
            assert o.at == pytest.approx(0.0) or o.at == pytest.approx(limit)
            assert 0 < o.sill < o.top <= p.wall_height
    assert n >= 3


# ---- textures -----------------------------------------------------------------------------------
def _families(rng, S=128):
    return {
        "wood": tx.wood(rng, (150, 100, 60), S),
        "fabric": tx.fabric(rng, (120, 120, 160), S, threads=16),
        "tiles": tx.tiles(rng, (220, 220, 225), (120, 120, 120), S),
        "stripes": tx.pattern(rng, size=S, kind="stripes"),
        "checker": tx.pattern(rng, size=S, kind="checker"),
        "dots": tx.pattern(rng, size=S, kind="dots"),
        "diamonds": tx.pattern(rng, size=S, kind="diamonds"),
        "noise": tx.noise(rng, (200, 200, 195), S),
        "foliage": tx.foliage(rng, S),
        "books": tx.book_spines(rng, S),
        "metal": tx.metal(rng, (190, 190, 195), S),
        "clock": tx.clock_face(rng, S),
    }


def test_texture_families_are_not_flat():
    fam = _families(np.random.default_rng(0))
    for name, t in fam.items():
        assert t.dtype == np.uint8 and t.shape == (128, 128, 3), name
        std = t.reshape(-1, 3).astype(float).std(0)
        assert (std > 3).all(), (name, std)
        if name != "clock":  # a dial is a 4-colour graphic by design
            assert len(np.unique(t.reshape(-1, 3), axis=0)) > 20, name


def test_no_apartment_texture_is_flat(apartments):
    for ap in apartments.values():
        for k, t in enumerate(ap.mesh.textures):
            std = t.reshape(-1, 3).astype(float).std(0)
            assert std.max() > 1.0, (k, std)


def _seam_stats(t: np.ndarray, axis: int):
    """(wrap difference, median and max neighbour difference) across lines of ``axis`` (mean |diff| per line)."""
    a = t.astype(float)
    d = np.abs(np.diff(a, axis=axis)).mean(axis=tuple(k for k in range(3) if k != axis))
    last, first = np.take(a, -1, axis=axis), np.take(a, 0, axis=axis)
    return float(np.abs(last - first).mean()), float(np.median(d)), float(d.max())


@pytest.mark.parametrize("name", ["noise", "foliage", "dots", "diamonds"])
def test_smooth_textures_tile_seamlessly(name):
    t = _families(np.random.default_rng(1))[name]
    for axis in (0, 1):
        wrap, med, _ = _seam_stats(t, axis)
        assert wrap <= 2 * med + 1.0, (name, axis, wrap, med)


@pytest.mark.parametrize("name", ["wood", "fabric", "tiles", "stripes", "checker", "books", "metal", "clock"])
def test_structured_textures_wrap_no_worse_than_their_own_edges(name):
    t = _families(np.random.default_rng(2))[name]
    for axis in (0, 1):
        wrap, _, mx = _seam_stats(t, axis)
        assert wrap <= mx + 1.0, (name, axis, wrap, mx)


def test_seam_check_detects_a_non_periodic_image():
    """The seam statistic is meaningful: a plain gradient or white noise fails it."""
    grad = np.repeat(np.linspace(0, 255, 128)[None, :, None], 128, 0).repeat(3, 2).astype(np.uint8)
    wrap, med, mx = _seam_stats(grad, 1)
    assert wrap > 2 * med + 1 and wrap > mx + 1
    rough = np.random.default_rng(0).integers(0, 256, (128, 128, 3)).astype(np.uint8)
    smooth = tx.noise(np.random.default_rng(0), (200, 200, 195), 128)
    shifted = np.concatenate([smooth[:, 40:], rough[:, :40] // 8 + 100], 1)  # seam at the wrap
    wrap, med, _ = _seam_stats(shifted, 1)
    assert wrap > 2 * med + 1


def test_rendered_views_are_richly_textured(apartments, occupancies):
    """Felzenszwalb finds many regions in a 160x120 view, clearly more than with flat-coloured materials."""
    from skimage.segmentation import felzenszwalb

    K = Intrinsics.from_fov(160, 120, 90.0)
    for s in (0, 2):
        ap, occ = apartments[s], occupancies[s]
        lab, _ = ndimage.label(occ.free)
        big = np.bincount(lab.ravel())[1:].argmax() + 1
        cells = np.argwhere(lab == big)[:, ::-1]
        xy = occ.to_world(cells[len(cells) // 2])
        r = Renderer(ap.mesh)
        # the same geometry with every texture replaced by its mean colour
        flat = dataclasses.replace(ap.mesh, textures=[
            np.broadcast_to(t.reshape(-1, 3).mean(0).astype(np.uint8), (2, 2, 3)).copy() for t in ap.mesh.textures])
        r_flat = Renderer(flat)
        counts = []
        for yaw in (0.3, 2.0, 3.7, 5.2):
            T = camera_from_yaw_pitch([xy[0], xy[1], 1.2], yaw, -0.2)
            f = r.render(K, T)
            assert (f.depth > 0).all()  # closed apartment: every ray hits something
            n = int(felzenszwalb(f.rgb, scale=100).max()) + 1
            n_flat = int(felzenszwalb(r_flat.render(K, T).rgb, scale=100).max()) + 1
            assert n >= 15, (s, yaw, n)
            assert len(np.unique(f.instance)) >= 3
            counts.append((n, n_flat))
        n, n_flat = np.sum(counts, 0)
        # the regions come from texture, not just geometry (summed over views: one view may be mostly plain)
        assert n > 1.3 * n_flat, (s, counts)


def test_window_shows_sky_above_greenery(apartments):
    """Windows show the outdoor texture upright: the top of the pane is sky (blue), the bottom trees."""
    ap = apartments[0]
    win = APARTMENT_CLASSES.id("window")
    K = Intrinsics.from_fov(96, 72, 70.0)
    r = Renderer(ap.mesh)
    checked = 0
    for o in ap.plan.openings:
        if o.kind != "window":
            continue
        c, zc = (o.lo + o.hi) / 2, (o.sill + o.top) / 2
        inward = 1.5 if o.at < 1e-6 else -1.5
        tgt = np.array([o.at, c, zc]) if o.axis == "x" else np.array([c, o.at, zc])
        eye = tgt + (np.array([inward, 0, 0]) if o.axis == "x" else np.array([0, inward, 0]))
        f = r.render(K, look_at(eye, tgt))
        m = f.semantic == win
        rows = np.flatnonzero(m.any(1))
        if len(rows) <= 8:
            continue  # furniture hides this window from the test camera
        q = len(rows) // 4
        top = f.rgb[rows[0] : rows[0] + q][m[rows[0] : rows[0] + q]].astype(float).mean(0)
        bottom = f.rgb[rows[-1] - q + 1 : rows[-1] + 1][m[rows[-1] - q + 1 : rows[-1] + 1]].astype(float).mean(0)
        blueness = lambda c: c[2] - c[1]  # noqa: E731  sky: b > g; trees: g > b
        assert blueness(top) > blueness(bottom), (o, top, bottom)
        checked += 1
    assert checked >= 2


# ---- occupancy ----------------------------------------------------------------------------------
def test_walls_are_blocked(apartments, occupancies):
    for s, ap in apartments.items():
        p, occ = ap.plan, occupancies[s]
        pts = []
        for r in p.rooms:
            for side in "SNWE":
                axis, at, lo, hi = r.side(side)
                ops = p.openings_on(r, side)
                for a in np.linspace(lo + 0.1, hi - 0.1, 15):
                    if any(o.kind == "door" and o.lo - 0.05 <= a <= o.hi + 0.05 for o in ops):
                        continue
                    pts.append((at, a) if axis == "x" else (a, at))
        pts = np.array(pts)
        assert len(pts) > 100
        assert not occ.is_free(pts).any()
        # everything within the clearance of a wall line is blocked too
        assert not occ.is_free(pts + [0.2, 0.0]).all() and not occ.is_free(pts - [0.0, 0.2]).all()
        # outside the apartment: no floor
        assert not occ.is_free([(-0.5, p.depth / 2), (p.width + 0.5, p.depth / 2), (p.width / 2, p.depth + 0.5)]).any()


def test_occupancy_grid_covers_the_apartment(apartments, occupancies):
    for s, ap in apartments.items():
        occ = occupancies[s]
        assert occ.resolution == 0.05 and occ.clearance == 0.3
        ny, nx = occ.free.shape
        assert nx * occ.resolution >= ap.plan.width and ny * occ.resolution >= ap.plan.depth
        assert 0.1 < occ.free.mean() < 0.8


def test_doorways_are_free_and_every_room_is_reachable(apartments, occupancies):
    for s, ap in apartments.items():
        p, occ = ap.plan, occupancies[s]
        lab, n = ndimage.label(occ.free)  # 4-connected
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        big = sizes.argmax()
        # a robot of radius 0.3 m fits through every doorway, and its free space goes on into both rooms
        for o in p.openings:
            if o.kind != "door":
                continue
            mid = (o.at, (o.lo + o.hi) / 2) if o.axis == "x" else ((o.lo + o.hi) / 2, o.at)
            cell = occ.to_cell(mid)
            assert occ.free[cell[1], cell[0]], (s, o)
            comp = lab == lab[cell[1], cell[0]]
            for k in o.rooms:
                r = p.rooms[k]
                c0, c1 = occ.to_cell((r.x0 + 0.3, r.y0 + 0.3)), occ.to_cell((r.x1 - 0.3, r.y1 - 0.3))
                assert comp[c0[1] : c1[1], c0[0] : c1[0]].sum() >= 40, (s, o, r.kind)  # >= 0.1 m^2 past the wall
        # every room's interior has a sizeable part in that component
        for r in p.rooms:
            c0, c1 = occ.to_cell((r.x0, r.y0)), occ.to_cell((r.x1, r.y1))
            inside = lab[c0[1] : c1[1], c0[0] : c1[0]] == big
            assert inside.sum() * occ.resolution**2 >= 0.25, (s, r.kind, inside.sum())


def test_occupancy_respects_clearance(apartments):
    ap = apartments[2]
    narrow = ap.occupancy(clearance=0.1)
    wide = ap.occupancy(clearance=0.5)
    assert narrow.free.shape == wide.free.shape
    assert (wide.free <= narrow.free).all()  # more clearance never frees a cell
    assert narrow.free.sum() > 1.3 * wide.free.sum()


# ---- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize("field,value", [
    ("wall_height", 1.5), ("wall_height", 9.0), ("door_width", 0.3), ("door_width", 2.0),
    ("furniture", -0.1), ("furniture", 1.5), ("min_rooms", 0), ("min_rooms", 9),
    ("texture_size", 100), ("texture_size", 1024),
])
def test_apartment_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"ApartmentConfig\.{field}"):
        ApartmentConfig(**{field: value})


def test_apartment_config_options_take_effect():
    ap = generate_apartment(ApartmentConfig(seed=3, wall_height=3.0, door_width=1.0, furniture=0.0, texture_size=32))
    lo, hi = ap.mesh.bounds()
    assert hi[2] == pytest.approx(3.05, abs=1e-4)  # ceiling slab on top of 3 m walls
    assert ap.plan.wall_height == 3.0
    assert all(o.hi - o.lo == pytest.approx(1.0) for o in ap.plan.openings if o.kind == "door")
    assert all(t.shape[:2] == (32, 32) for t in ap.mesh.textures)
    assert all(v == [] for v in ap.placed.values())
    names = {APARTMENT_CLASSES.names[c] for c in np.unique(ap.mesh.tri_class)}
    assert not names & {"sofa", "bed", "table", "cup", "book"}
