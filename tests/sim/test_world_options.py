"""Evaluation-world options (docs/world.md): shared textures, per-frame lighting, clutter, motion, world="hard".

Each option is seeded and off by default; lighting changes colour only; motion moves labels and depth
of the movers only; and a nearest-class-mean-colour classifier does far worse on the hard world.
"""
import numpy as np
import pytest

from regconsist_ros.sim.render import RenderConfig, Renderer
from regconsist_ros.sim.render_gl import GLUnavailable
from regconsist_ros.sim.source import SimConfig, SimSource
from regconsist_ros.sim.world.apartment import ApartmentConfig, generate_apartment
from regconsist_ros.sim.world.lighting import Light, frame_light
from regconsist_ros.sim.world.motion import Mover

W, H = 64, 48
SMALL_OBJECTS = {"book", "cushion", "bottle", "vase", "plant", "cup", "plate"}


def _gl_or_skip():
    try:
        from regconsist_ros.sim.render_gl import _context

        _context()[1].release()
    except GLUnavailable as e:
        pytest.skip(f"no headless OpenGL here: {e}")


def _mesh_arrays(m):
    return [m.vertices, m.tri_class, m.tri_instance, m.tri_material, m.corner_uv]


def _same_mesh(a, b) -> bool:
    return all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(_mesh_arrays(a), _mesh_arrays(b)))


@pytest.fixture(scope="module")
def base():
    return {s: generate_apartment(ApartmentConfig(seed=s)) for s in (0, 1)}


@pytest.mark.parametrize("opt", [{"shared_textures": True}, {"clutter": 1.0}, {"motion": 1.0}])
def test_apartment_options_are_seeded(opt, base):
    a = generate_apartment(ApartmentConfig(seed=0, **opt))
    assert _same_mesh(a.mesh, generate_apartment(ApartmentConfig(seed=0, **opt)).mesh)
    assert not _same_mesh(a.mesh, generate_apartment(ApartmentConfig(seed=1, **opt)).mesh)
    assert not _same_mesh(a.mesh, base[0].mesh)  # the option does change the world
    if "motion" in opt:
        assert a.movers and a.movers == generate_apartment(ApartmentConfig(seed=0, **opt)).movers


def test_options_off_by_default_leave_the_default_world(base):
    off = generate_apartment(ApartmentConfig(seed=0, shared_textures=False, clutter=0.0, motion=0.0))
    assert _same_mesh(off.mesh, base[0].mesh) and off.movers == [] and off.motion_script() is None
    # clutter draws from its own stream: the base apartment is untouched, the objects come after it
    cl = generate_apartment(ApartmentConfig(seed=0, clutter=1.0)).mesh
    F0 = base[0].mesh.num_triangles
    assert cl.num_triangles > F0
    assert np.array_equal(cl.vertices[: 3 * F0], base[0].mesh.vertices) and np.array_equal(cl.tri_class[:F0], base[0].mesh.tri_class)
    new = {cl.classes.names[c] for c in np.unique(cl.tri_class[F0:])}
    assert new <= SMALL_OBJECTS and len(new) >= 3, new
    cfg = SimConfig()
    assert (cfg.world, cfg.shared_textures, cfg.lighting, cfg.clutter, cfg.motion) == ("default", False, 0.0, 0.0, 0.0)


def test_shared_textures_mix_materials_across_classes(base):
    m = generate_apartment(ApartmentConfig(seed=0, shared_textures=True)).mesh
    names = m.classes.names
    def classes_per_material(mesh):
        return np.mean([len({names[c] for c in np.unique(mesh.tri_class[mesh.tri_material == k])})
                        for k in np.unique(mesh.tri_material)])
    # the default world gives each class its own family; the shared pool spreads each material over classes
    assert classes_per_material(m) > 2 * classes_per_material(base[0].mesh)


def test_clutter_is_blocked_in_the_occupancy_grid():
    ap = generate_apartment(ApartmentConfig(seed=0, clutter=1.0, motion=1.0))
    items = [m for m in ap.movers if m.kind == "item"]
    assert items
    occ = ap.occupancy()
    assert not occ.is_free(np.array([m.pivot for m in items])).any()


def test_frame_light_is_seeded_and_validated():
    assert frame_light(3, 5, 1.0) == frame_light(3, 5, 1.0)
    assert frame_light(3, 5, 1.0) != frame_light(4, 5, 1.0) and frame_light(3, 5, 1.0) != frame_light(3, 6, 1.0)
    l0 = frame_light(3, 5, 0.0)
    assert l0.intensity == 1.0 and l0.tint == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="-1"):
        frame_light(0, 0, -1.0)
    with pytest.raises(ValueError, match="intensity"):
        Light(intensity=0.0)


@pytest.fixture(scope="module")
def default_src():
    return SimSource(SimConfig(seed=0, frames=4, width=W, height=H, backend="raycast"))


@pytest.mark.parametrize("backend", ["raycast", "gl"])
def test_lighting_changes_rgb_but_not_depth_or_labels(backend, default_src):
    if backend == "gl":
        _gl_or_skip()
    src = default_src
    r = Renderer(src.mesh, RenderConfig(backend=backend))
    K, T = src.intrinsics, src.poses[1]
    fixed = r.render(K, T)
    a, b = r.render(K, T, light=frame_light(0, 0, 1.0)), r.render(K, T, light=frame_light(0, 1, 1.0))
    assert np.abs(a.rgb.astype(int) - b.rgb).mean() > 3 and np.abs(a.rgb.astype(int) - fixed.rgb).mean() > 3
    for f in (a, b):
        assert np.array_equal(f.depth, fixed.depth) and np.array_equal(f.semantic, fixed.semantic)
        assert np.array_equal(f.instance, fixed.instance)
    assert np.array_equal(r.render(K, T).rgb, fixed.rgb)  # back to the fixed light after lit frames
    assert np.array_equal(r.render(K, T, light=frame_light(0, 1, 1.0)).rgb, b.rgb)
    if backend == "gl":  # both backends light a frame alike
        ref = Renderer(src.mesh, RenderConfig(backend="raycast")).render(K, T, light=frame_light(0, 1, 1.0))
        assert (np.abs(ref.rgb.astype(int) - b.rgb).max(-1) <= 2).mean() > 0.99


def test_sim_source_lighting_varies_per_frame_and_is_seeded():
    cfg = dict(frames=3, width=32, height=24, lighting=1.0)
    a, b = SimSource(SimConfig(seed=0, **cfg)), SimSource(SimConfig(seed=0, **cfg))
    assert all(np.array_equal(x.rgb, y.rgb) for x, y in zip(a, b))
    c = SimSource(SimConfig(seed=0, **{**cfg, "lighting": 0.0}))
    assert not np.array_equal(a[0].rgb, c[0].rgb) and np.array_equal(a[0].depth, c[0].depth)


@pytest.fixture(scope="module")
def hard():
    return SimSource(SimConfig(seed=0, frames=12, width=W, height=H, world="hard", backend="raycast"))


def _view_with_movers(src):
    """A frame index whose view shows mover pixels, and the mover instance ids."""
    ids = np.array(sorted({i for m in src.motion.movers for i in m.instances}))
    counts = [np.isin(src[i].instance, ids).sum() for i in range(len(src))]
    return int(np.argmax(counts)), ids


@pytest.mark.parametrize("backend", ["raycast", "gl"])
def test_motion_moves_the_movers_labels_and_depth_only(backend, hard):
    if backend == "gl":
        _gl_or_skip()
    src = hard
    i, ids = _view_with_movers(src)
    r = src.renderer if backend == "raycast" else Renderer(src.mesh, RenderConfig(backend="gl"), motion=src.motion)
    K, T = src.intrinsics, src.poses[i]
    frames = [r.render(K, T, stamp=t) for t in np.linspace(0.0, 6.0, 7)]  # same pose, different times
    moved = [not np.array_equal(f.instance, frames[0].instance) or not np.array_equal(f.depth, frames[0].depth)
             for f in frames[1:]]
    assert any(moved)
    for f in frames[1:]:  # pixels showing static parts at both times are unchanged
        static = ~np.isin(f.instance, ids) & ~np.isin(frames[0].instance, ids)
        assert static.mean() > 0.3
        assert np.array_equal(f.semantic[static], frames[0].semantic[static])
        np.testing.assert_allclose(f.depth[static], frames[0].depth[static], rtol=1e-6)
    again = r.render(K, T, stamp=3.0)
    assert np.array_equal(again.instance, frames[3].instance) and np.array_equal(again.rgb, frames[3].rgb)


def test_motion_script_poses_follow_the_formula(hard):
    ms = hard.motion
    m = ms.movers[0]
    t = 0.25 * m.period  # some time where the weight is neither 0 nor 1
    posed = ms.posed_mesh(t).vertices[3 * ms.num_static:].reshape(-1, 3, 3)
    assert np.array_equal(posed, ms.corners_at(t))
    assert np.allclose(ms.corners_at_weights([0.0] * len(ms.movers)), ms.mesh.vertices[3 * ms.num_static:].reshape(-1, 3, 3), atol=1e-5)
    with pytest.raises(ValueError, match="period"):
        Mover((1,), "door", (0.0, 0.0), 1.0, (0.0, 0.0), 0.0, 0.0)


def test_hard_world_is_seeded(hard):
    again = SimSource(SimConfig(seed=0, frames=3, width=W, height=H, world="hard", backend="raycast"))
    other = SimSource(SimConfig(seed=1, frames=3, width=W, height=H, world="hard", backend="raycast"))
    for k in range(3):
        assert np.array_equal(again[k].rgb, hard[k].rgb) and np.array_equal(again[k].instance, hard[k].instance)
    assert not np.array_equal(other[0].rgb, hard[0].rgb)


def test_world_preset_and_validation_name_the_bad_value():
    h = SimConfig(world="hard")
    assert (h.shared_textures, h.lighting, h.clutter, h.motion) == (True, 1.0, 1.0, 1.0)
    assert SimConfig(world="hard", lighting=0.5).lighting == 0.5  # explicit fields win
    for kw, bad in ((dict(world="easy"), "easy"), (dict(lighting=-0.1), "-0.1"), (dict(clutter=9.0), "9.0"),
                    (dict(motion=3.0), "3.0"), (dict(shared_textures="yes"), "yes")):
        with pytest.raises(ValueError, match=bad):
            SimConfig(**kw)
    with pytest.raises(ValueError, match="clutter"):
        ApartmentConfig(clutter=-1.0)


def test_scan_scenes_reject_apartment_only_options(tmp_path):
    scan = tmp_path / "scan.ply"
    scan.write_text("ply\n")
    with pytest.raises(ValueError, match="only to scene='apartment'"):
        SimConfig(scene=str(scan), clutter=1.0)


def _colour_data(world: str, seed: int, frames: int = 10):
    src = SimSource(SimConfig(seed=seed, frames=frames, width=W, height=H, world=world, step=0.3))
    rgb = np.concatenate([f.rgb.reshape(-1, 3) for f in src]).astype(np.float64)  # [P, 3]
    sem = np.concatenate([f.semantic.reshape(-1) for f in src])  # [P]
    keep = sem > 0
    return rgb[keep], sem[keep]


def _miou(pred, y) -> float:
    return float(np.mean([((pred == c) & (y == c)).sum() / ((pred == c) | (y == c)).sum() for c in np.unique(y)]))


def _colour_classifiers(world: str) -> dict:
    """Pixel accuracy and mIoU of two colour-only classifiers, fit on apartment 0 and tested on apartment 1:
    nearest class-mean RGB, and the most frequent class of each 8x8x8 colour-histogram bin."""
    xtr, ytr = _colour_data(world, 0)
    xte, yte = _colour_data(world, 1)
    cls = np.unique(ytr)
    means = np.stack([xtr[ytr == c].mean(0) for c in cls])  # [C', 3]
    mean_pred = cls[np.argmin(((xte[:, None] - means[None]) ** 2).sum(-1), 1)]
    def bins(x):
        return (x.astype(np.int64) // 32) @ np.array([64, 8, 1])  # [P] in 0..511
    hist = np.zeros((512, int(max(ytr.max(), yte.max())) + 1))
    np.add.at(hist, (bins(xtr), ytr), 1)
    hist_pred = hist.argmax(1)[bins(xte)]
    return {k: (float((p == yte).mean()), _miou(p, yte)) for k, p in (("mean", mean_pred), ("hist", hist_pred))}


def test_colour_no_longer_identifies_the_class_in_the_hard_world():
    d, h = _colour_classifiers("default"), _colour_classifiers("hard")
    for k in d:
        print(f"colour classifier {k}: default acc {d[k][0]:.3f} mIoU {d[k][1]:.3f}; hard acc {h[k][0]:.3f} mIoU {h[k][1]:.3f}")
    # mIoU, not pixel accuracy: accuracy is dominated by the wall (the majority class) in both worlds
    assert h["mean"][1] < 0.3 * d["mean"][1], (d, h)
    assert h["hist"][1] < 0.5 * d["hist"][1], (d, h)
