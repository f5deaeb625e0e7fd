"""Tests for sim.scans: our PLY parser, Replica directories and textured GLB / OBJ via trimesh."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import trimesh  # a dependency of the package (setup.py), so a failed import is a failure, not a skip
from PIL import Image

from regconsist_ros.sim.scans import (
    ScanError,
    fan_triangulate,
    load_ply,
    load_replica,
    load_scene,
    load_textured,
    read_ply,
    to_z_up,
)

# --------------------------------------------------------------------------------------------
# A small PLY writer (independent of the parser under test)
# --------------------------------------------------------------------------------------------

_STRUCT = {"char": "b", "uchar": "B", "short": "h", "ushort": "H", "int": "i", "uint": "I", "float": "f", "double": "d",
           "int8": "b", "uint8": "B", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f", "float64": "d"}


def write_ply(path, fmt, elements):
    """elements: [(name, props, rows)]; a prop is (name, type) or (name, ("list", count_type, item_type));
    a row holds one value per prop (a sequence for list props)."""
    header = ["ply", f"format {fmt} 1.0", "comment written by test_scans"]
    for name, props, rows in elements:
        header.append(f"element {name} {len(rows)}")
        for pname, ptype in props:
            if isinstance(ptype, tuple):
                header.append(f"property list {ptype[1]} {ptype[2]} {pname}")
            else:
                header.append(f"property {ptype} {pname}")
    header.append("end_header")
    out = ("\n".join(header) + "\n").encode()
    endian = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(fmt)
    for _name, props, rows in elements:
        for row in rows:
            if endian is None:
                words = []
                for (pname, ptype), v in zip(props, row):
                    words += [str(len(v))] + [str(x) for x in v] if isinstance(ptype, tuple) else [str(v)]
                out += (" ".join(words) + "\n").encode()
            else:
                for (pname, ptype), v in zip(props, row):
                    if isinstance(ptype, tuple):
                        out += struct.pack(endian + _STRUCT[ptype[1]], len(v))
                        out += struct.pack(endian + _STRUCT[ptype[2]] * len(v), *v)
                    else:
                        out += struct.pack(endian + _STRUCT[ptype], v)
    path.write_bytes(out)
    return path


FORMATS = ["ascii", "binary_little_endian", "binary_big_endian"]

# Two unit squares side by side (6 vertices) as two quads + one extra triangle.
VERTS = [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (1.0, 1.0, 0.0), (0.0, 1.0, 0.0), (2.0, 0.0, 0.5), (2.0, 1.0, 0.5)]
COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 20, 30), (200, 100, 50), (1, 2, 3)]


def _scan_elements(faces, face_ids=None, vertex_ids=None, index_type=("list", "uchar", "int"), index_name="vertex_indices"):
    """A PLY with a leading unused element, extra vertex / face properties and a trailing element."""
    vprops = [("x", "float"), ("y", "float"), ("z", "float"), ("nx", "double"),
              ("red", "uchar"), ("green", "uchar"), ("blue", "uchar")]
    vrows = [list(p) + [0.25] + list(c) for p, c in zip(VERTS, COLORS)]
    if vertex_ids is not None:
        vprops.append(("objectId", "ushort"))
        vrows = [r + [i] for r, i in zip(vrows, vertex_ids)]
    fprops = [("flags", "short"), (index_name, index_type)]
    frows = [[7, f] for f in faces]
    if face_ids is not None:
        fprops.append(("object_id", "int"))
        frows = [r + [i] for r, i in zip(frows, face_ids)]
    fprops.append(("tex", ("list", "uchar", "float")))  # an unused list after the ids
    frows = [r + [[0.5, 0.25]] for r in frows]
    return [
        ("camera", [("view_px", "float"), ("view_py", "int")], [[1.5, 3]]),
        ("vertex", vprops, vrows),
        ("face", fprops, frows),
        ("edge", [("vertex1", "int"), ("vertex2", "int"), ("extra", ("list", "int", "ushort"))], [[0, 1, [4, 5]], [2, 3, []]]),
    ]


QUADS = [[0, 1, 2, 3], [1, 4, 5, 2]]
QUAD_TRIS = [[0, 1, 2], [0, 2, 3], [1, 4, 5], [1, 5, 2]]


@pytest.mark.parametrize("fmt", FORMATS)
def test_ply_quads_colours_and_face_ids(tmp_path, fmt):
    path = write_ply(tmp_path / "scan.ply", fmt, _scan_elements(QUADS, face_ids=[4, -1]))
    mesh = load_ply(path)
    np.testing.assert_array_equal(mesh.vertices, np.asarray(VERTS, np.float32))
    np.testing.assert_array_equal(mesh.triangles, QUAD_TRIS)
    np.testing.assert_array_equal(mesh.vertex_colors, np.asarray(COLORS, np.uint8))
    np.testing.assert_array_equal(mesh.tri_instance, [5, 5, 0, 0])  # id + 1; negative = none
    np.testing.assert_array_equal(mesh.tri_class, [1, 1, 0, 0])
    assert mesh.classes.names == ("void", "object")
    assert mesh.instance_class == {5: 1}
    assert mesh.textures == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_ply_mixed_polygons_use_the_slow_path(tmp_path, fmt):
    faces = [[0, 1, 2], [0, 2, 3], [1, 4, 5, 2]]  # triangle first: the constant-size guess fails
    path = write_ply(tmp_path / "mixed.ply", fmt, _scan_elements(faces, face_ids=[0, 1, 2], index_type=("list", "uint", "ushort"), index_name="vertex_index"))
    mesh = load_ply(path)
    np.testing.assert_array_equal(mesh.triangles, [[0, 1, 2], [0, 2, 3], [1, 4, 5], [1, 5, 2]])
    np.testing.assert_array_equal(mesh.tri_instance, [1, 2, 3, 3])
    # the trailing element after the variable-size faces was parsed from the right offset
    edge = read_ply(path)["edge"]
    np.testing.assert_array_equal(edge["vertex2"], [1, 3])
    np.testing.assert_array_equal(edge["extra"].counts, [2, 0])
    np.testing.assert_array_equal(edge["extra"].values, [4, 5])


@pytest.mark.parametrize("fmt", FORMATS)
def test_ply_per_vertex_ids_use_first_vertex(tmp_path, fmt):
    path = write_ply(tmp_path / "v.ply", fmt, _scan_elements(QUADS, vertex_ids=[3, 9, 9, 9, 9, 9]))
    mesh = load_ply(path)
    np.testing.assert_array_equal(mesh.tri_instance, [4, 4, 10, 10])  # faces start at vertex 0 and 1
    assert mesh.instance_class == {4: 1, 10: 1}


def test_ply_float_colours_and_no_ids(tmp_path):
    elements = [
        ("vertex", [("x", "double"), ("y", "double"), ("z", "double"), ("red", "float"), ("green", "float"), ("blue", "float")],
         [[0, 0, 0, 1.0, 0.0, 0.5], [1, 0, 0, 0.0, 1.0, 0.0], [0, 1, 0, 0.2, 0.2, 0.2]]),
        ("face", [("vertex_indices", ("list", "uchar", "uint"))], [[[0, 1, 2]]]),
    ]
    mesh = load_ply(write_ply(tmp_path / "f.ply", "binary_little_endian", elements))
    np.testing.assert_array_equal(mesh.vertex_colors, [[255, 0, 128], [0, 255, 0], [51, 51, 51]])
    np.testing.assert_array_equal(mesh.tri_instance, [0])
    np.testing.assert_array_equal(mesh.tri_class, [0])
    assert mesh.instance_class == {}


@pytest.mark.parametrize("fmt", ["ascii", "binary_big_endian"])
def test_fast_and_slow_paths_agree_with_naive_fans(tmp_path, fmt):
    rng = np.random.default_rng(0)
    V = 50
    verts = rng.normal(size=(V, 3)).round(3)
    polys = [list(rng.choice(V, size=rng.integers(3, 7), replace=False)) for _ in range(40)]
    polys.insert(5, [1, 2])  # a degenerate polygon is dropped
    elements = [("vertex", [("x", "float"), ("y", "float"), ("z", "float")], verts.tolist()),
                ("face", [("vertex_indices", ("list", "uchar", "int"))], [[p] for p in polys])]
    mesh = load_ply(write_ply(tmp_path / "r.ply", fmt, elements))
    expected = [[p[0], p[k], p[k + 1]] for p in polys for k in range(1, len(p) - 1)]
    np.testing.assert_array_equal(mesh.triangles, expected)
    np.testing.assert_allclose(mesh.vertices, verts, atol=1e-6)


def test_fan_triangulate_face_of():
    from regconsist_ros.sim.scans import PlyList

    tris, face_of = fan_triangulate(PlyList(np.array([4, 3, 5]), np.arange(12)))
    np.testing.assert_array_equal(tris, [[0, 1, 2], [0, 2, 3], [4, 5, 6], [7, 8, 9], [7, 9, 10], [7, 10, 11]])
    np.testing.assert_array_equal(face_of, [0, 0, 1, 2, 2, 2])


def _replica_dir(tmp_path):
    scene = tmp_path / "room_0"
    (scene / "habitat").mkdir(parents=True)
    write_ply(scene / "habitat" / "mesh_semantic.ply", "binary_little_endian", _scan_elements(QUADS + [[2, 5, 3]], face_ids=[0, 7, 3]))
    info = {
        "classes": [{"id": 3, "name": "chair"}, {"id": 1, "name": "wall"}, {"id": 9, "name": "lamp"}],
        "objects": [{"id": 0, "class_id": 3, "class_name": "chair"}, {"id": 7, "class_id": 1, "class_name": "wall"}],
        "id_to_label": [3, -1, -1, 9, -1, -1, -1, 1],
    }
    (scene / "habitat" / "info_semantic.json").write_text(json.dumps(info))
    return scene


def test_replica_directory_classes_and_instances(tmp_path):
    scene = _replica_dir(tmp_path)
    mesh = load_replica(scene)
    assert mesh.classes.names == ("void", "wall", "chair", "lamp")  # json id order, contiguous
    np.testing.assert_array_equal(mesh.tri_instance, [1, 1, 8, 8, 4])
    # object 0 -> chair, object 7 -> wall (objects list), object 3 -> lamp (id_to_label only)
    np.testing.assert_array_equal(mesh.tri_class, [2, 2, 1, 1, 3])
    assert mesh.instance_class == {1: 2, 8: 1, 4: 3}
    assert mesh.vertex_colors is not None
    # load_scene dispatches directories to load_replica
    np.testing.assert_array_equal(load_scene(scene).tri_class, mesh.tri_class)


def test_replica_falls_back_to_plain_mesh_and_errors_list_candidates(tmp_path):
    scene = tmp_path / "apt"
    scene.mkdir()
    with pytest.raises(ScanError, match="mesh_semantic.ply.*mesh.ply"):
        load_replica(scene)
    write_ply(scene / "mesh.ply", "ascii", _scan_elements(QUADS))
    mesh = load_replica(scene)
    np.testing.assert_array_equal(mesh.tri_instance, 0)
    np.testing.assert_array_equal(mesh.tri_class, 0)


def test_ply_errors_name_the_file(tmp_path):
    bad = tmp_path / "not_a_ply.ply"
    bad.write_text("solid cube\nfacet normal 0 0 1\n")
    with pytest.raises(ScanError, match="not_a_ply.ply.*not a PLY"):
        load_ply(bad)

    good = write_ply(tmp_path / "full.ply", "binary_little_endian", _scan_elements(QUADS, face_ids=[1, 2]))
    data = good.read_bytes()
    body = data.index(b"end_header\n") + len(b"end_header\n")
    for cut in (40, body + 20, len(data) - 3):  # inside the header, the vertices, the last element
        short = tmp_path / f"cut{cut}.ply"
        short.write_bytes(data[:cut])
        with pytest.raises(ScanError, match=f"cut{cut}.ply.*truncated"):
            load_ply(short)

    text = write_ply(tmp_path / "a.ply", "ascii", _scan_elements(QUADS)).read_text().splitlines()
    (tmp_path / "short_ascii.ply").write_text("\n".join(text[:-3]) + "\n")
    with pytest.raises(ScanError, match="short_ascii.ply.*truncated"):
        load_ply(tmp_path / "short_ascii.ply")

    noz = [("vertex", [("x", "float"), ("y", "float")], [[0, 0], [1, 0], [0, 1]]),
           ("face", [("vertex_indices", ("list", "uchar", "int"))], [[[0, 1, 2]]])]
    with pytest.raises(ScanError, match="noz.ply.*lacks z"):
        load_ply(write_ply(tmp_path / "noz.ply", "ascii", noz))

    oob = [("vertex", [("x", "float"), ("y", "float"), ("z", "float")], [[0, 0, 0], [1, 0, 0], [0, 1, 0]]),
           ("face", [("vertex_indices", ("list", "uchar", "int"))], [[[0, 1, 3]]])]
    with pytest.raises(ScanError, match="oob.ply.*out of range"):
        load_ply(write_ply(tmp_path / "oob.ply", "binary_big_endian", oob))

    with pytest.raises(ScanError, match="up_axis"):
        load_ply(good, up_axis="x")
    stl = tmp_path / "mesh.stl"
    stl.write_text("solid x\n")
    with pytest.raises(ScanError, match="mesh.stl.*unsupported"):
        load_scene(stl)


def test_object_id_overflow_is_an_error(tmp_path):
    elements = [("vertex", [("x", "float"), ("y", "float"), ("z", "float")], [[0, 0, 0], [1, 0, 0], [0, 1, 0]]),
                ("face", [("vertex_indices", ("list", "uchar", "int")), ("object_id", "int")], [[[0, 1, 2], 70000]])]
    with pytest.raises(ScanError, match="big.ply.*too large"):
        load_ply(write_ply(tmp_path / "big.ply", "ascii", elements))


def test_up_axis_y_is_a_rotation_mapping_y_to_z(tmp_path):
    np.testing.assert_allclose(to_z_up([[0.0, 1.0, 0.0]], "y"), [[0.0, 0.0, 1.0]])
    np.testing.assert_allclose(to_z_up([[0.0, 0.0, 1.0]], "y"), [[0.0, -1.0, 0.0]])
    R = to_z_up(np.eye(3), "y").T  # columns are the images of the basis vectors
    np.testing.assert_allclose(R.T @ R, np.eye(3))
    assert np.linalg.det(R) == pytest.approx(1.0)
    path = write_ply(tmp_path / "yup.ply", "ascii", _scan_elements(QUADS))
    mesh = load_ply(path, up_axis="y")
    np.testing.assert_allclose(mesh.vertices, np.asarray(VERTS) @ R.T, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Textured meshes via trimesh
# --------------------------------------------------------------------------------------------

def _textured_box(uv_seed=0, extents=(1.0, 1.0, 1.0)):
    box = trimesh.creation.box(extents=extents)
    rng = np.random.default_rng(uv_seed)
    uv = rng.uniform(0.05, 0.95, size=(len(box.vertices), 2))
    img = np.zeros((4, 8, 3), np.uint8)
    img[..., 0] = np.arange(8)[None] * 30
    img[..., 1] = np.arange(4)[:, None] * 60
    img[..., 2] = 200 + uv_seed
    box.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(img))
    return box, uv, img


def _expected_corner_uv(mesh_vertices, triangles, src_vertices, src_uv):
    """[f, 3, 2] corner uv expected for the loaded triangles: each corner's source vertex is
    found by position (box corners are distinct), its uv taken with v flipped to v down."""
    corners = mesh_vertices[triangles].reshape(-1, 3)  # [f * 3, 3]
    d = np.linalg.norm(corners[:, None, :] - src_vertices[None], axis=2)  # [f * 3, Vsrc]
    assert np.all(d.min(1) < 1e-5)
    uv = src_uv[d.argmin(1)].copy()
    uv[:, 1] = 1.0 - uv[:, 1]
    return uv.reshape(len(triangles), 3, 2)


def test_textured_glb_two_nodes(tmp_path):
    box_a, uv_a, img_a = _textured_box(0)
    box_b, uv_b, img_b = _textured_box(1, extents=(0.5, 0.5, 0.5))
    scene = trimesh.Scene()
    scene.add_geometry(box_a, node_name="a", geom_name="a")
    shift = np.eye(4)
    shift[:3, 3] = [3.0, 4.0, 0.0]
    scene.add_geometry(box_b, node_name="b", geom_name="b", transform=shift)
    path = tmp_path / "scene.glb"
    scene.export(path)

    mesh = load_textured(path, up_axis="z", class_name="furniture")
    assert mesh.classes.names == ("void", "furniture")
    assert sorted(np.unique(mesh.tri_instance).tolist()) == [1, 2]
    assert mesh.instance_class == {1: 1, 2: 1}
    np.testing.assert_array_equal(mesh.tri_class, 1)
    assert len(mesh.textures) == 2

    def centre(m, inst):
        return m.vertices[np.unique(m.triangles[m.tri_instance == inst])].mean(0)

    # instance ids follow the file's node order: find which instance is box b by its centre
    inst_b = 1 + int(np.argmin([np.linalg.norm(centre(mesh, i) - [3.0, 4.0, 0.0]) for i in (1, 2)]))
    np.testing.assert_allclose(centre(mesh, inst_b), [3.0, 4.0, 0.0], atol=1e-6)  # node transform applied
    np.testing.assert_allclose(centre(mesh, 3 - inst_b), [0.0, 0.0, 0.0], atol=1e-6)
    for inst, src, uv, img in ((3 - inst_b, box_a, uv_a, img_a), (inst_b, box_b, uv_b, img_b)):
        sel = mesh.tri_instance == inst
        assert sel.sum() == len(src.faces)
        mats = np.unique(mesh.tri_material[sel])
        assert len(mats) == 1
        np.testing.assert_array_equal(mesh.textures[mats[0]], img)
        offset = shift[:3, 3] if inst == inst_b else np.zeros(3)
        expected = _expected_corner_uv(mesh.vertices - offset, mesh.triangles[sel], src.vertices, uv)
        np.testing.assert_allclose(mesh.corner_uv[sel], expected, atol=1e-6)
        assert mesh.corner_uv[sel].min() >= 0.0 and mesh.corner_uv[sel].max() <= 1.0

    # the default up_axis="y" rotates (x, y, z) -> (x, -z, y) and load_scene dispatches .glb
    zup = load_scene(path)
    np.testing.assert_allclose(centre(zup, inst_b), [3.0, 0.0, 4.0], atol=1e-6)


def test_textured_obj_with_texture(tmp_path):
    box, uv, img = _textured_box(3)
    path = tmp_path / "box.obj"
    box.export(path)
    mesh = load_textured(path, up_axis="z")
    assert len(mesh.textures) == 1
    np.testing.assert_array_equal(mesh.textures[0], img)
    np.testing.assert_array_equal(mesh.tri_instance, 1)
    expected = _expected_corner_uv(mesh.vertices, mesh.triangles, box.vertices, uv)
    np.testing.assert_allclose(mesh.corner_uv, expected, atol=1e-5)


def _sample(texture, uv):
    """Nearest texel at uv (u right, v down, wrapped) -> [..., 3]."""
    h, w = texture.shape[:2]
    cols = np.floor(uv[..., 0] * w).astype(int) % w
    rows = np.floor(uv[..., 1] * h).astype(int) % h
    return texture[rows, cols]


def test_colour_visuals_and_plain_materials_become_palette_texels(tmp_path):
    coloured = trimesh.creation.box()
    coloured.unmerge_vertices()  # glTF stores vertex colours: give each face its own vertices
    face_rgb = np.random.default_rng(2).integers(0, 256, size=(len(coloured.faces), 3))
    coloured.visual.face_colors = np.concatenate([face_rgb, np.full((len(face_rgb), 1), 255)], axis=1)
    plain = trimesh.creation.icosahedron()
    plain.visual = trimesh.visual.TextureVisuals(material=trimesh.visual.material.PBRMaterial(baseColorFactor=[10, 20, 250, 255]))
    scene = trimesh.Scene()
    scene.add_geometry(coloured, node_name="c", geom_name="c")
    scene.add_geometry(plain, node_name="p", geom_name="p")
    path = tmp_path / "colours.glb"
    scene.export(path)

    mesh = load_textured(path)
    assert len(mesh.textures) == 1
    tex = mesh.textures[0]
    inst_box = 1 if (mesh.tri_instance == 1).sum() == len(coloured.faces) else 2  # the file's node order
    for inst, expected in ((inst_box, face_rgb), (3 - inst_box, np.array([[10, 20, 250]]))):
        sel = mesh.tri_instance == inst
        corners = _sample(tex, mesh.corner_uv[sel])  # [f, 3, 3]
        assert np.all(corners == corners[:, :1])  # one colour per face
        got = corners[:, 0]
        if inst == inst_box:  # faces may be reordered by export: compare as multisets
            np.testing.assert_array_equal(np.sort(got.view("u1,u1,u1"), axis=0), np.sort(expected.astype(np.uint8).view("u1,u1,u1"), axis=0))
        else:
            np.testing.assert_array_equal(got, np.repeat(expected, sel.sum(), axis=0))


def test_textured_errors(tmp_path):
    with pytest.raises(ScanError, match="missing.glb"):
        load_textured(tmp_path / "missing.glb")
    junk = tmp_path / "junk.glb"
    junk.write_bytes(b"this is not a glb")
    with pytest.raises(ScanError, match="junk.glb"):
        load_textured(junk)
    with pytest.raises(ScanError, match="up_axis"):
        load_textured(junk, up_axis="-z")
