"""Renderer and floor probe on hand-made scenes whose images can be predicted analytically."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from regconsist_ros.sim.frame import Frame, FrameError, Intrinsics
from regconsist_ros.sim.mesh import SceneMesh
from regconsist_ros.sim.poses import PoseError, look_at
from regconsist_ros.sim.render import RenderConfig, Renderer, occupancy_from_mesh
from regconsist_ros.sim.world.builder import MaterialLibrary, MeshBuilder
from regconsist_ros.sim.world.classes import APARTMENT_CLASSES, ClassTable

CLASSES = ClassTable.from_names(["thing", "other"])  # 0 void, 1 thing, 2 other
FLAT = RenderConfig(ambient=1.0, diffuse=0.0)  # light factor exactly 1: rgb == albedo


# Every test here runs on both backends: Open3D ray casting and the OpenGL rasterizer.
_BACKEND = {"name": "raycast"}


@pytest.fixture(autouse=True, params=["raycast", "gl"])
def backend(request):
    _BACKEND["name"] = request.param
    yield request.param


def make_renderer(mesh, cfg=None):
    cfg = dataclasses.replace(cfg or RenderConfig(), backend=_BACKEND["name"])
    r = Renderer(mesh, cfg)
    assert r.backend == _BACKEND["name"]
    return r


def quad_mesh(corners, **kw) -> SceneMesh:
    """One quad (4 corners in order) as two triangles (0, 1, 2), (0, 2, 3); class 1, instance 1."""
    kw.setdefault("tri_class", [1, 1])
    kw.setdefault("tri_instance", [1, 1])
    kw.setdefault("instance_class", {1: 1})
    return SceneMesh(np.asarray(corners, np.float32), np.array([[0, 1, 2], [0, 2, 3]], np.int32), classes=CLASSES, **kw)


def wall_x(x=3.0, y0=-50.0, y1=50.0, z0=-50.0, z1=50.0, **kw) -> SceneMesh:
    """A plane x = const covering y in [y0, y1], z in [z0, z1]."""
    return quad_mesh([[x, y0, z0], [x, y1, z0], [x, y1, z1], [x, y0, z1]], **kw)


def cam_along_x(pos=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Optical camera at ``pos`` looking along world +x: image right = world -y, image down = world -z."""
    pos = np.asarray(pos, float)
    return look_at(pos, pos + [1.0, 0.0, 0.0])


def test_look_at_convention_used_below():
    T = cam_along_x()
    np.testing.assert_allclose(T[:3, 0], [0, -1, 0], atol=1e-12)  # x right
    np.testing.assert_allclose(T[:3, 1], [0, 0, -1], atol=1e-12)  # y down
    np.testing.assert_allclose(T[:3, 2], [1, 0, 0], atol=1e-12)  # z forward


# ---- depth ----------------------------------------------------------------------------------------
def test_depth_of_a_facing_wall_is_constant_z_depth_up_to_the_corners():
    K = Intrinsics(30.0, 30.0, 31.5, 23.5, 64, 48)  # wide: corner rays are ~1.3x longer than the axis
    f = make_renderer(wall_x(3.0)).render(K, cam_along_x((0.5, 0.2, 1.0)))
    assert f.depth.dtype == np.float32
    np.testing.assert_allclose(f.depth, 2.5, atol=1e-4)  # everywhere, not the ray length
    for y, x in ((0, 0), (0, 63), (47, 0), (47, 63)):
        assert abs(f.depth[y, x] - 2.5) < 1e-4


def test_depth_of_a_tilted_view_matches_the_ray_plane_intersection():
    K = Intrinsics(40.0, 38.0, 30.2, 21.7, 60, 44)
    eye = np.array([0.3, -0.4, 1.2])
    T = look_at(eye, eye + [1.0, 0.5, 0.3])
    f = make_renderer(wall_x(3.0)).render(K, T)
    ys, xs = np.mgrid[0:44, 0:60].astype(np.float64)
    d_cam = np.stack([(xs - K.cx) / K.fx, (ys - K.cy) / K.fy, np.ones_like(xs)], -1)  # z component 1
    d_world = d_cam @ T[:3, :3].T
    expect = (3.0 - eye[0]) / d_world[..., 0]  # parameter along d_cam == camera z of the hit
    assert (expect > 0).all()
    np.testing.assert_allclose(f.depth, expect, rtol=1e-4)
    # the hit points reconstructed from depth lie on the wall
    P = eye + d_world * f.depth[..., None]
    np.testing.assert_allclose(P[..., 0], 3.0, atol=1e-3)


def test_misses_give_zero_depth_zero_ids_and_black():
    K = Intrinsics(20.0, 20.0, 15.5, 11.5, 32, 24)
    f = make_renderer(wall_x(3.0)).render(K, look_at((0, 0, 0), (-1, 0, 0)))  # looking away from the wall
    assert (f.depth == 0).all() and (f.semantic == 0).all() and (f.instance == 0).all() and (f.rgb == 0).all()


# ---- pixel-centre convention -----------------------------------------------------------------------
@pytest.mark.parametrize("u_edge", [40.3, 40.8, 17.1, 17.6])
def test_vertical_edge_projects_to_the_column_predicted_by_K(u_edge):
    """Pixel x has its centre at integer x: the last column hit is floor(u_edge), not floor(u_edge - 0.5)."""
    K = Intrinsics(50.0, 50.0, 31.5, 23.5, 64, 48)
    depth = 3.0
    # camera-frame X = (u - cx) / fx * Z; image right is world -y, so the edge sits at y = -X
    y_edge = -(u_edge - K.cx) / K.fx * depth
    f = make_renderer(wall_x(depth, y0=y_edge, y1=50.0)).render(K, cam_along_x())
    hit_cols = np.flatnonzero((f.depth > 0).all(axis=0))
    miss_cols = np.flatnonzero((f.depth == 0).all(axis=0))
    assert hit_cols.max() == int(np.floor(u_edge))
    assert miss_cols.min() == int(np.floor(u_edge)) + 1
    assert len(hit_cols) + len(miss_cols) == K.width


@pytest.mark.parametrize("v_edge", [10.2, 10.7, 30.4])
def test_horizontal_edge_projects_to_the_row_predicted_by_K(v_edge):
    K = Intrinsics(50.0, 45.0, 31.5, 23.5, 64, 48)
    depth = 2.0
    z_edge = -(v_edge - K.cy) / K.fy * depth  # image down is world -z
    f = make_renderer(wall_x(depth, z0=z_edge, z1=50.0)).render(K, cam_along_x())  # wall above the edge
    hit_rows = np.flatnonzero((f.depth > 0).all(axis=1))
    assert hit_rows.min() == 0 and hit_rows.max() == int(np.floor(v_edge))
    assert (f.depth[int(np.floor(v_edge)) + 1 :] == 0).all()


# ---- textures and vertex colours ----------------------------------------------------------------
def quadrant_texture() -> np.ndarray:
    """8x8 texture: top-left red, top-right blue, bottom-left green, bottom-right white (u right, v down)."""
    t = np.zeros((8, 8, 3), np.uint8)
    t[:4, :4] = (255, 0, 0)
    t[:4, 4:] = (0, 0, 255)
    t[4:, :4] = (0, 255, 0)
    t[4:, 4:] = (255, 255, 255)
    return t


def test_texture_orientation_u_right_v_down():
    # quad on x = 2 seen from the origin; corners listed as image TL, TR, BR, BL
    TL, TR, BR, BL = [2, 1, 1], [2, -1, 1], [2, -1, -1], [2, 1, -1]
    uv = np.array([[[0, 0], [1, 0], [1, 1]], [[0, 0], [1, 1], [0, 1]]], np.float32) * 0.999
    mesh = quad_mesh([TL, TR, BR, BL], textures=[quadrant_texture()], tri_material=[0, 0], corner_uv=uv)
    K = Intrinsics(30.0, 30.0, 31.5, 31.5, 64, 64)  # quad spans columns/rows 16.5 .. 46.5
    f = make_renderer(mesh, FLAT).render(K, cam_along_x())
    assert (f.depth[17:47, 17:47] > 0).all() and (f.depth[:, :16] == 0).all()
    np.testing.assert_array_equal(f.rgb[20, 20], (255, 0, 0))  # top-left
    np.testing.assert_array_equal(f.rgb[20, 43], (0, 0, 255))  # top-right
    np.testing.assert_array_equal(f.rgb[43, 20], (0, 255, 0))  # bottom-left
    np.testing.assert_array_equal(f.rgb[43, 43], (255, 255, 255))  # bottom-right
    # the colour boundary sits in the middle of the quad (column 31.5)
    row = f.rgb[20, 17:47]
    red = (row[:, 0] == 255) & (row[:, 2] == 0)
    assert red[:15].all() and not red[15:].any()


def test_texture_repeats_beyond_one_tile():
    TL, TR, BR, BL = [2, 1, 1], [2, -1, 1], [2, -1, -1], [2, 1, -1]
    uv = np.array([[[0, 0], [2, 0], [2, 1]], [[0, 0], [2, 1], [0, 1]]], np.float32) * 0.999  # u spans 2 tiles
    mesh = quad_mesh([TL, TR, BR, BL], textures=[quadrant_texture()], tri_material=[0, 0], corner_uv=uv)
    f = make_renderer(mesh, FLAT).render(Intrinsics(30.0, 30.0, 31.5, 31.5, 64, 64), cam_along_x())
    top = f.rgb[20, 17:47]
    is_red = (top[:, 0] == 255) & (top[:, 2] == 0)
    is_blue = (top[:, 2] == 255) & (top[:, 0] == 0)
    # red, blue, red, blue bands of ~7.5 px each
    assert is_red[:6].all() and is_blue[9:13].all() and is_red[17:21].all() and is_blue[24:].all()


def test_barycentric_interpolation_of_vertex_colours():
    A, B, C = [2.0, 1.0, 1.0], [2.0, -1.0, 1.0], [2.0, 1.0, -1.0]  # image TL, TR, BL
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    mesh = SceneMesh(np.array([A, B, C], np.float32), np.array([[0, 1, 2]], np.int32), [1], [1], CLASSES,
                     vertex_colors=colors, instance_class={1: 1})
    K = Intrinsics(30.0, 30.0, 31.5, 31.5, 64, 64)
    f = make_renderer(mesh, FLAT).render(K, cam_along_x())
    ys, xs = np.nonzero(f.depth > 0)
    assert len(ys) > 300
    # hit point on x = 2: y_world = -(x - cx) / fx * 2, z_world = -(y - cy) / fy * 2
    yw, zw = -(xs - K.cx) / K.fx * 2, -(ys - K.cy) / K.fy * 2
    wB = (1 - yw) / 2  # barycentric weight of B (moves -y), C (moves -z), A the rest
    wC = (1 - zw) / 2
    wA = 1 - wB - wC
    assert (np.minimum(np.minimum(wA, wB), wC) > -0.02).all()  # hits are inside the triangle
    expect = wA[:, None] * colors[0] + wB[:, None] * colors[1] + wC[:, None] * colors[2]
    err = np.abs(f.rgb[ys, xs].astype(float) - expect)
    assert err.max() <= 1.5
    assert f.rgb[ys, xs, 1].std() > 30  # really interpolated, not one flat colour


# ---- lighting ---------------------------------------------------------------------------------------
def box_mesh() -> SceneMesh:
    lib = MaterialLibrary()
    lib.add("grey", np.full((4, 4, 3), 200, np.uint8), 1.0)
    b = MeshBuilder(lib, APARTMENT_CLASSES)
    b.box((1.0, 1.0, 1.0), (0.0, 0.0, 0.5), "grey", b.new_instance("table"))
    return b.build()


def test_faces_with_different_normals_get_different_brightness():
    mesh = box_mesh()
    cfg = RenderConfig()  # ambient 0.5, diffuse 0.5, light (0.35, 0.25, 0.9)
    K = Intrinsics(60.0, 60.0, 39.5, 29.5, 80, 60)
    eye = np.array([2.5, 2.0, 2.5])
    f = make_renderer(mesh, cfg).render(K, look_at(eye, (0.0, 0.0, 0.5)))
    L = np.array(cfg.light_dir) / np.linalg.norm(cfg.light_dir)
    expect = {n: int(200 * np.round((0.5 + 0.5 * abs(L[k])) * 256)) >> 8 for n, k in (("+x", 0), ("+y", 1), ("+z", 2))}
    assert len(set(expect.values())) == 3
    # which face each pixel sees, from the hit point (depth along the ray)
    ys, xs = np.nonzero(f.depth > 0)
    d = np.stack([(xs - K.cx) / K.fx, (ys - K.cy) / K.fy, np.ones_like(xs, float)], -1) @ f.T_world_cam[:3, :3].T
    P = eye + d * f.depth[ys, xs, None]
    seen = set()
    for name, k, plane in (("+x", 0, 0.5), ("+y", 1, 0.5), ("+z", 2, 1.0)):
        centre = np.array([0.0, 0.0, 0.5])  # box centre; faces at +-0.5 around it
        others = [a for a in range(3) if a != k]
        inner = (np.abs(P[:, others] - centre[others]) < 0.45).all(1)  # away from the face's edges
        on = (np.abs(P[:, k] - plane) < 1e-3) & inner
        assert on.sum() > 50, name
        vals = f.rgb[ys[on], xs[on], 0]
        assert np.abs(vals.astype(int) - expect[name]).max() <= 1, (name, np.unique(vals), expect[name])
        seen.add(int(np.median(vals)))
    assert len(seen) == 3


def test_render_config_validation():
    with pytest.raises(ValueError, match="nthreads"):
        RenderConfig(nthreads=-1)
    with pytest.raises(ValueError, match="ambient"):
        RenderConfig(ambient=0.0, diffuse=0.0)
    with pytest.raises(ValueError, match="light_dir"):
        RenderConfig(light_dir=(0.0, 0.0, 0.0))


# ---- labels, alignment, dtypes ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def labelled_scene() -> SceneMesh:
    lib = MaterialLibrary()
    rng = np.random.default_rng(0)
    lib.add("noise", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), 0.5)
    b = MeshBuilder(lib, APARTMENT_CLASSES)
    b.box((4.0, 4.0, 0.1), (0.0, 0.0, -0.05), "noise", b.new_instance("floor"))
    b.box((0.1, 4.0, 2.5), (2.0, 0.0, 1.25), "noise", b.new_instance("wall"))
    b.box((0.8, 0.6, 0.7), (0.8, 0.5, 0.35), "noise", b.new_instance("table"))
    b.box((0.4, 0.4, 0.4), (0.6, -0.8, 0.2), "noise", b.new_instance("chair"))
    b.sphere(0.15, (0.8, 0.5, 0.85), "noise", b.new_instance("vase"))
    b.frustum(0.05, 0.06, 0.12, (0.6, 0.3, 0.7), "noise", b.new_instance("cup"))
    return b.build()


def test_outputs_have_documented_dtypes_and_shapes(labelled_scene):
    K = Intrinsics(50.0, 50.0, 47.5, 35.5, 96, 72)
    f = make_renderer(labelled_scene).render(K, look_at((-1.5, -0.5, 1.3), (1.0, 0.2, 0.3)), stamp=1.25)
    assert isinstance(f, Frame)
    assert f.rgb.dtype == np.uint8 and f.rgb.shape == (72, 96, 3)
    assert f.depth.dtype == np.float32 and f.depth.shape == (72, 96)
    assert f.semantic.dtype == np.uint16 and f.semantic.shape == (72, 96)
    assert f.instance.dtype == np.uint16 and f.instance.shape == (72, 96)
    assert f.stamp == 1.25 and f.intrinsics == K
    assert f.T_world_cam.dtype == np.float64


def test_semantic_instance_depth_and_rgb_are_pixel_aligned(labelled_scene):
    mesh = labelled_scene
    K = Intrinsics(50.0, 50.0, 47.5, 35.5, 96, 72)
    T = look_at((-1.5, -0.5, 1.3), (1.0, 0.2, 0.3))
    f = make_renderer(mesh).render(K, T)
    present = set(np.unique(f.instance).tolist()) - {0}
    assert len(present) >= 5  # floor, wall, table, chair, vase (cup may hide) all visible
    lut = np.zeros(max(mesh.instance_class) + 1, np.uint16)
    for k, c in mesh.instance_class.items():
        lut[k] = c
    np.testing.assert_array_equal(f.semantic, lut[f.instance])
    # no unlabelled geometry here: depth is 0 exactly where the instance is 0
    np.testing.assert_array_equal(f.depth == 0, f.instance == 0)
    assert (f.depth == 0).any() and (f.depth > 0).any()
    assert (f.rgb[f.depth == 0] == 0).all() and f.rgb[f.depth > 0].max() > 0
    # each pixel's 3D point lies on the triangle labelled at that pixel: re-cast and compare
    hits = make_renderer(mesh).cast(K, T)
    prim = hits["prim"].reshape(72, 96)
    hit = f.depth > 0
    np.testing.assert_array_equal(f.instance[hit], mesh.tri_instance[prim[hit]])
    np.testing.assert_array_equal(f.semantic[hit], mesh.tri_class[prim[hit]])
    # float32 rasterization (gl) vs float32 ray casting: a few 1e-6 relative
    np.testing.assert_allclose(f.depth[hit], hits["depth"].reshape(72, 96)[hit], rtol=1e-5)


def test_labels_distinguish_instances_of_the_same_class():
    lib = MaterialLibrary()
    lib.add("grey", np.full((2, 2, 3), 128, np.uint8))
    b = MeshBuilder(lib, APARTMENT_CLASSES)
    i1, i2 = b.new_instance("chair"), b.new_instance("chair")
    b.box((0.5, 0.5, 0.5), (3.0, 0.6, 0.0), "grey", i1)
    b.box((0.5, 0.5, 0.5), (3.0, -0.6, 0.0), "grey", i2)
    f = make_renderer(b.build()).render(Intrinsics(30.0, 30.0, 31.5, 23.5, 64, 48), cam_along_x())
    chair = APARTMENT_CLASSES.id("chair")
    assert set(np.unique(f.semantic).tolist()) == {0, chair}
    assert set(np.unique(f.instance).tolist()) == {0, i1, i2}
    # +y is image-left: instance i1 on the left half, i2 on the right half
    c1 = np.nonzero(f.instance == i1)[1].mean()
    c2 = np.nonzero(f.instance == i2)[1].mean()
    assert c1 < 31.5 < c2


# ---- errors -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [
    np.diag([2.0, 2.0, 2.0, 1.0]),  # scaled
    np.diag([1.0, 1.0, -1.0, 1.0]),  # reflection
    np.full((4, 4), np.nan),
    np.eye(3),
])
def test_renderer_rejects_non_rigid_or_non_finite_poses(bad):
    r = make_renderer(wall_x(3.0))
    with pytest.raises(PoseError):
        r.render(Intrinsics(20.0, 20.0, 9.5, 7.5, 20, 16), bad)
    T = cam_along_x()
    T[0, 3] = np.inf
    with pytest.raises(PoseError, match="non-finite"):
        r.render(Intrinsics(20.0, 20.0, 9.5, 7.5, 20, 16), T)


def test_frame_rejects_images_that_do_not_match_the_intrinsics():
    f = make_renderer(wall_x(3.0)).render(Intrinsics(20.0, 20.0, 9.5, 7.5, 20, 16), cam_along_x())
    other = Intrinsics(20.0, 20.0, 9.5, 7.5, 21, 16)
    with pytest.raises(FrameError, match="rgb"):
        Frame(f.rgb, f.depth, other, f.T_world_cam)
    with pytest.raises(FrameError, match="depth"):
        Frame(f.rgb, f.depth[:, :-1].copy(), f.intrinsics, f.T_world_cam)
    with pytest.raises(FrameError, match="semantic"):
        Frame(f.rgb, f.depth, f.intrinsics, f.T_world_cam, semantic=f.semantic.astype(np.int32))
    with pytest.raises(FrameError, match="float32"):
        Frame(f.rgb, f.depth.astype(np.float64), f.intrinsics, f.T_world_cam)


def test_renderer_serves_two_cameras_in_turn():
    r = make_renderer(wall_x(3.0))
    a, b = Intrinsics(20.0, 20.0, 9.5, 7.5, 20, 16), Intrinsics(10.0, 10.0, 4.5, 3.5, 10, 8)
    fa = r.render(a, cam_along_x())
    fb = r.render(b, cam_along_x((1.0, 0, 0)))
    fa2 = r.render(a, cam_along_x())
    assert fa.depth.shape == (16, 20) and fb.depth.shape == (8, 10)
    np.testing.assert_allclose(fb.depth, 2.0, atol=1e-4)
    np.testing.assert_array_equal(fa.depth, fa2.depth)


# ---- occupancy probe ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def room_grid():
    """4 x 4 m room (walls 0.1 m thick inside [0, 4]^2, 2.5 m high) with a box, a table and a rug."""
    lib = MaterialLibrary()
    lib.add("grey", np.full((2, 2, 3), 128, np.uint8))
    b = MeshBuilder(lib, APARTMENT_CLASSES)
    b.box((4.0, 4.0, 0.05), (2.0, 2.0, -0.025), "grey", b.new_instance("floor"))
    w = b.new_instance("wall")
    for size, c in (((4.0, 0.1, 2.5), (2.0, 0.05, 1.25)), ((4.0, 0.1, 2.5), (2.0, 3.95, 1.25)),
                    ((0.1, 4.0, 2.5), (0.05, 2.0, 1.25)), ((0.1, 4.0, 2.5), (3.95, 2.0, 1.25))):
        b.box(size, c, "grey", w)
    b.box((0.6, 0.6, 0.8), (1.0, 1.0, 0.4), "grey", b.new_instance("cabinet"))  # box obstacle [0.7, 1.3]^2
    t = b.new_instance("table")  # table top [2.2, 3.4] x [2.4, 3.2] at 0.72..0.75 m on 4 thin legs
    b.box((1.2, 0.8, 0.03), (2.8, 2.8, 0.735), "grey", t)
    for lx in (2.25, 3.35):
        for ly in (2.45, 3.15):
            b.box((0.04, 0.04, 0.72), (lx, ly, 0.36), "grey", t)
    b.box((1.0, 0.8, 0.01), (1.2, 2.9, 0.005), "grey", b.new_instance("rug"))  # rug [0.7, 1.7] x [2.5, 3.3]
    mesh = b.build()
    return occupancy_from_mesh(mesh, clearance=0.2, resolution=0.05, probe_height=1.8)


def test_occupancy_open_floor_is_free(room_grid):
    g = room_grid
    assert g.clearance == 0.2 and g.resolution == 0.05
    assert g.is_free([(2.0, 1.5), (3.0, 1.0), (1.0, 2.0), (2.0, 2.0)]).all()


def test_occupancy_walls_are_blocked_and_dilated(room_grid):
    g = room_grid
    # wall slab [0, 0.1] plus 0.2 m clearance: blocked up to 0.3 m from the outer edge, free from ~0.35 m
    for x in (0.02, 0.08, 0.15, 0.27):
        assert not g.is_free([(x, 2.0), (4.0 - x, 2.0), (2.0, x), (2.0, 4.0 - x)]).any(), x
    assert g.is_free([(0.4, 2.0), (3.6, 2.0), (2.0, 0.4), (2.0, 3.6)]).all()
    # outside the room there is no floor
    assert not g.is_free([(-0.5, 2.0), (4.5, 2.0), (2.0, 5.0)]).any()


def test_occupancy_box_obstacle_is_blocked_and_dilated_by_clearance(room_grid):
    g = room_grid
    assert not g.is_free([(1.0, 1.0), (0.75, 0.75), (1.25, 1.0)]).any()
    assert not g.is_free([(1.45, 1.0), (1.0, 1.45), (0.55, 1.0)]).any()  # within 0.2 m of the box
    assert g.is_free([(1.6, 1.0), (1.0, 1.6)]).all()  # 0.3 m away


def test_occupancy_table_blocks_the_cells_under_it(room_grid):
    g = room_grid
    # the centre is 0.4 m from every leg: only the table top (0.75 m) can block it
    assert not g.is_free([(2.8, 2.8), (2.5, 2.8), (3.1, 2.8)]).any()
    assert g.is_free([(2.8, 1.9)]).all()  # 0.5 m in front of the table


def test_occupancy_thin_rug_is_drivable(room_grid):
    g = room_grid
    assert g.is_free([(1.2, 2.9), (1.0, 2.8), (1.5, 3.0)]).all()


def test_occupancy_rejects_bad_parameters():
    with pytest.raises(ValueError, match="resolution"):
        occupancy_from_mesh(box_mesh(), resolution=0.0)
    with pytest.raises(ValueError):
        occupancy_from_mesh(box_mesh(), probe_height=0.01, step_height=0.05)
