"""A user's own scan (PLY with vertex colours and per-face object ids) rendered end to end by the CLI."""
import json

import numpy as np

from regconsist_ros.cli import main
from regconsist_ros.sim.sequences import read_tum


def _quad(v0, v1, v2, v3):
    return [v0, v1, v2, v3]


def write_room_ply(path, W=4.0, D=3.0, H=2.5):
    """A closed room (floor, ceiling, 4 walls) and a 0.6 m cube; object ids: floor 0, walls 1, ceiling 2, cube 3."""
    quads, ids = [], []
    quads.append(_quad((0, 0, 0), (W, 0, 0), (W, D, 0), (0, D, 0))); ids.append(0)
    quads.append(_quad((0, 0, H), (0, D, H), (W, D, H), (W, 0, H))); ids.append(2)
    for a, b in (((0, 0), (W, 0)), ((W, 0), (W, D)), ((W, D), (0, D)), ((0, D), (0, 0))):
        quads.append(_quad((*a, 0), (*a, H), (*b, H), (*b, 0))); ids.append(1)
    c0, s = np.array([2.5, 1.5, 0.0]), 0.6
    for axis in range(3):
        for side in (0, 1):
            corners = []
            for du, dv in ((0, 0), (1, 0), (1, 1), (0, 1)):
                p = c0.copy()
                p[axis] += side * s
                u, v = [k for k in range(3) if k != axis]
                p[u] += du * s
                p[v] += dv * s
                corners.append(tuple(p))
            quads.append(corners); ids.append(3)
    verts = [v for q in quads for v in q]
    rng = np.random.default_rng(0)
    cols = rng.integers(0, 255, (len(verts), 3))
    lines = ["ply", "format ascii 1.0", f"element vertex {len(verts)}", "property float x", "property float y",
             "property float z", "property uchar red", "property uchar green", "property uchar blue",
             f"element face {len(quads)}", "property list uchar int vertex_indices", "property int object_id",
             "end_header"]
    lines += [f"{x} {y} {z} {r} {g} {b}" for (x, y, z), (r, g, b) in zip(verts, cols)]
    lines += [f"4 {4 * k} {4 * k + 1} {4 * k + 2} {4 * k + 3} {i}" for k, i in enumerate(ids)]
    path.write_text("\n".join(lines) + "\n")


def test_sim_render_a_ply_scan(tmp_path, capsys):
    ply = tmp_path / "room.ply"
    write_room_ply(ply)
    out = tmp_path / "seq"
    rc = main(["sim", "render", "--sim.scene", str(ply), "--sim.up_axis", "z", "--sim.frames", "8", "--sim.width", "64",
               "--sim.height", "48", "--sim.trajectory", "explore", "--sim.step", "0.15", "--sim.clearance", "0.25",
               "--out", str(out), "--quiet", "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["frames"] == 8 and result["scene"] == str(ply)
    seq = read_tum(out)
    assert len(seq) == 8 and seq.has_semantic and seq.has_instance
    seen = set()
    for f in seq:
        assert (f.depth > 0).all(), "closed room: every ray must hit"
        x, y, z = f.T_world_cam[:3, 3]
        assert 0.25 <= x <= 3.75 and 0.25 <= y <= 2.75 and abs(z - 1.0) < 1e-6
        # the camera never stands inside the cube's footprint grown by the clearance
        assert not (2.25 < x < 3.35 and 1.25 < y < 2.35)
        seen |= set(np.unique(f.instance).tolist())
    # instance = object id + 1; the floor (1) and the walls (2) are always in view
    assert {1, 2} <= seen and seen <= {0, 1, 2, 3, 4}


def test_textured_glb_renders_its_texture(tmp_path):
    """An HM3D-style textured GLB: the loaded texture shows up, upright, in the rendered image (both backends)."""
    import trimesh
    from PIL import Image

    from regconsist_ros.sim.frame import Intrinsics
    from regconsist_ros.sim.poses import look_at
    from regconsist_ros.sim.render import RenderConfig, Renderer
    from regconsist_ros.sim.scans import load_textured

    # a 2 m x 2 m wall in the glTF (Y-up) x-y plane facing +z; texture: top half red, bottom half blue
    img = np.zeros((64, 64, 3), np.uint8)
    img[:32] = (220, 30, 30)
    img[32:] = (30, 30, 220)
    v = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], float)
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)  # OpenGL convention: v up
    mesh = trimesh.Trimesh(v, [[0, 1, 2], [0, 2, 3]], process=False,
                           visual=trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(img)))
    path = tmp_path / "wall.glb"
    mesh.export(path)
    scene = load_textured(path, up_axis="y")  # Y-up -> Z-up: the wall now stands in the x-z plane at y = 0
    K = Intrinsics(40.0, 40.0, 31.5, 31.5, 64, 64)
    T = look_at((0.0, -2.0, 0.0), (0.0, 0.0, 0.0))  # in front of the wall (its +z in glTF is -y here)
    for backend in ("raycast", "gl"):
        f = Renderer(scene, RenderConfig(backend=backend, ambient=1.0, diffuse=0.0)).render(K, T)
        assert (f.depth[20:44, 20:44] > 0).all(), backend
        top, bottom = f.rgb[22:30, 24:40].mean((0, 1)), f.rgb[34:42, 24:40].mean((0, 1))
        assert top[0] > 150 and top[2] < 80, (backend, top)  # red above
        assert bottom[2] > 150 and bottom[0] < 80, (backend, bottom)  # blue below
        np.testing.assert_allclose(f.depth[32, 32], 2.0, rtol=1e-4)
