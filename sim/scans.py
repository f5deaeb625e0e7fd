"""Load real scans into :class:`~regconsist_ros.sim.mesh.SceneMesh`, so users can render their own scans.

Supported inputs:

- PLY (``load_ply``): our own numpy parser (ascii, binary little / big endian). Vertex
  positions, optional vertex colours, optional per-vertex or per-face object ids; polygons
  are fan-triangulated (Replica meshes are quads). Object ids become instances, and with a
  Replica-style ``info_semantic.json`` also semantic classes.
- Replica scene directories (``load_replica``): ``habitat/mesh_semantic.ply`` +
  ``habitat/info_semantic.json``, else the unlabelled ``mesh.ply``.
- Textured GLB / GLTF / OBJ (``load_textured``, HM3D / MP3D style) through trimesh, which is
  imported lazily: one instance per geometry node, everything merged into one textured mesh.

Coordinates: our world is Z-up. ``up_axis="y"`` converts a Y-up scan (glTF, Habitat) with the
proper rotation (x, y, z) -> (x, -z, y); ``up_axis="z"`` keeps coordinates unchanged.

Every failure to read a file raises :class:`ScanError` (a ``ValueError``) naming the file.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from regconsist_ros.sim.mesh import SceneMesh
from regconsist_ros.sim.world.classes import ClassTable


class ScanError(ValueError):
    """A scan file that cannot be read or turned into a SceneMesh."""


# --------------------------------------------------------------------------------------------
# Coordinate conventions
# --------------------------------------------------------------------------------------------

# Y-up (glTF, Habitat) -> our Z-up world: (x, y, z) -> (x, -z, y). det = +1 (a rotation).
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
UP_AXES = ("z", "y")


def _check_up_axis(up_axis: str) -> None:
    if up_axis not in UP_AXES:
        raise ScanError(f"up_axis must be one of {UP_AXES} ('z' keeps coordinates, 'y' converts a Y-up scan), got {up_axis!r}")


def to_z_up(vertices: np.ndarray, up_axis: str) -> np.ndarray:
    """[V, 3] points of a scan with the given up axis -> [V, 3] points in our Z-up world."""
    _check_up_axis(up_axis)
    v = np.asarray(vertices, dtype=np.float64)
    return v if up_axis == "z" else v @ Y_UP_TO_Z_UP.T


# --------------------------------------------------------------------------------------------
# PLY parsing
# --------------------------------------------------------------------------------------------

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_PLY_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_STRUCT_CODES = {"i1": "b", "u1": "B", "i2": "h", "u2": "H", "i4": "i", "u4": "I", "f4": "f", "f8": "d"}
OBJECT_ID_NAMES = ("object_id", "objectId", "label", "instance", "instance_id")
FACE_INDEX_NAMES = ("vertex_indices", "vertex_index")


@dataclass(frozen=True)
class _Prop:
    """One PLY property: a scalar, or a list when ``count_type`` is set (numpy type codes)."""

    name: str
    type: str  # value type, e.g. "f4"
    count_type: str | None = None  # list length type, None for scalars

    @property
    def is_list(self) -> bool:
        return self.count_type is not None


@dataclass(frozen=True)
class _Element:
    name: str
    count: int
    props: tuple[_Prop, ...]


@dataclass
class PlyList:
    """A list property in flat form: element ``i`` holds ``values[offsets[i]:offsets[i] + counts[i]]``."""

    counts: np.ndarray  # [n] int64
    values: np.ndarray  # [sum(counts)]

    @property
    def offsets(self) -> np.ndarray:
        """[n] start of each element's values."""
        return np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64) if len(self.counts) else self.counts

    def __len__(self) -> int:
        return len(self.counts)


def read_ply(path) -> dict[str, dict[str, np.ndarray | PlyList]]:
    """Parse a PLY file -> ``{element: {property: array [n] or PlyList}}`` for every element."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ScanError(f"{path}: cannot read file ({e.strerror or e})") from None
    fmt, elements, body_start = _parse_header(raw, path)
    endian = _PLY_FORMATS[fmt]
    out: dict[str, dict] = {}
    if endian is None:
        tokens = raw[body_start:].split()
        pos = 0
        for el in elements:
            out[el.name], pos = _read_ascii_element(tokens, pos, el, path)
    else:
        pos = body_start
        for el in elements:
            out[el.name], pos = _read_binary_element(raw, pos, el, endian, path)
    return out


def _parse_header(raw: bytes, path: Path) -> tuple[str, list[_Element], int]:
    """-> (format, elements, byte offset of the body)."""
    if not raw.startswith(b"ply"):
        raise ScanError(f"{path}: not a PLY file (does not start with 'ply')")
    end = raw.find(b"end_header")
    if end < 0:
        raise ScanError(f"{path}: PLY header is truncated (no 'end_header')")
    nl = raw.find(b"\n", end)
    body_start = len(raw) if nl < 0 else nl + 1
    lines = raw[:end].decode("latin-1").splitlines()  # ASCII keywords; tolerate odd bytes in comments
    fmt = None
    elements: list[_Element] = []
    name, count, props = None, 0, []
    for lineno, line in enumerate(lines[1:], start=2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        bad = ScanError(f"{path}: bad PLY header line {lineno}: {line.strip()!r}")
        if words[0] == "format":
            if len(words) < 2 or words[1] not in _PLY_FORMATS:
                raise ScanError(f"{path}: unsupported PLY format {line.strip()!r}; expected one of {sorted(_PLY_FORMATS)}")
            fmt = words[1]
        elif words[0] == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise bad
            if name is not None:
                elements.append(_Element(name, count, tuple(props)))
            name, count, props = words[1], int(words[2]), []
        elif words[0] == "property":
            if name is None:
                raise ScanError(f"{path}: PLY property before any element (line {lineno})")
            if len(words) == 5 and words[1] == "list" and words[2] in _PLY_TYPES and words[3] in _PLY_TYPES:
                if _PLY_TYPES[words[2]][0] == "f":
                    raise ScanError(f"{path}: PLY list length type must be an integer (line {lineno})")
                props.append(_Prop(words[4], _PLY_TYPES[words[3]], _PLY_TYPES[words[2]]))
            elif len(words) == 3 and words[1] in _PLY_TYPES:
                props.append(_Prop(words[2], _PLY_TYPES[words[1]]))
            else:
                raise bad
        else:
            raise bad
    if name is not None:
        elements.append(_Element(name, count, tuple(props)))
    if fmt is None:
        raise ScanError(f"{path}: PLY header has no 'format' line")
    return fmt, elements, body_start


def _truncated(path: Path, el: _Element) -> ScanError:
    return ScanError(f"{path}: PLY data is truncated (element {el.name!r} declares {el.count} entries)")


def _columns(el: _Element, table: np.ndarray | dict, list_len: dict[str, int]) -> dict:
    """Split a record table (structured array or dict of columns) into scalars and PlyLists."""
    out = {}
    n = el.count
    for p in el.props:
        if p.is_list:
            c = list_len[p.name]
            vals = np.asarray(table[p.name]).astype(p.type).reshape(n * c)
            out[p.name] = PlyList(np.full(n, c, np.int64), vals)
        else:
            out[p.name] = np.ascontiguousarray(np.asarray(table[p.name]).astype(p.type))
    return out


# ---- binary -------------------------------------------------------------------------------


def _read_binary_element(raw: bytes, pos: int, el: _Element, endian: str, path: Path) -> tuple[dict, int]:
    """Read one element starting at byte ``pos`` -> (columns, position after it)."""
    n = el.count
    if not any(p.is_list for p in el.props):
        dt = np.dtype([(p.name, endian + p.type) for p in el.props])
        if pos + n * dt.itemsize > len(raw):
            raise _truncated(path, el)
        rec = np.frombuffer(raw, dt, count=n, offset=pos)
        return _columns(el, rec, {}), pos + n * dt.itemsize
    if n == 0:
        return _empty_columns(el), pos
    # Fast path: assume every list has the length it has in the first record, read all records
    # as one structured array, then verify the assumption on the stored counts.
    first = _binary_list_lengths(raw, pos, el, endian, path)
    dt = np.dtype(_fixed_record_fields(el, endian, first))
    if pos + n * dt.itemsize <= len(raw):
        rec = np.frombuffer(raw, dt, count=n, offset=pos)
        if all(np.all(rec[p.name + "#n"] == first[p.name]) for p in el.props if p.is_list):
            return _columns(el, rec, first), pos + n * dt.itemsize
    return _read_binary_loop(raw, pos, el, endian, path)


def _fixed_record_fields(el: _Element, endian: str, list_len: dict[str, int]) -> list:
    fields = []
    for p in el.props:
        if p.is_list:
            fields.append((p.name + "#n", endian + p.count_type))
            fields.append((p.name, endian + p.type, (list_len[p.name],)))
        else:
            fields.append((p.name, endian + p.type))
    return fields


def _binary_list_lengths(raw: bytes, pos: int, el: _Element, endian: str, path: Path) -> dict[str, int]:
    """The list lengths of the record starting at ``pos``."""
    lengths = {}
    for p in el.props:
        if p.is_list:
            size = np.dtype(p.count_type).itemsize
            if pos + size > len(raw):
                raise _truncated(path, el)
            c = int(np.frombuffer(raw, endian + p.count_type, count=1, offset=pos)[0])
            if c < 0:
                raise ScanError(f"{path}: negative list length in element {el.name!r}")
            lengths[p.name] = c
            pos += size + c * np.dtype(p.type).itemsize
        else:
            pos += np.dtype(p.type).itemsize
    return lengths


def _read_binary_loop(raw: bytes, pos: int, el: _Element, endian: str, path: Path) -> tuple[dict, int]:
    """Record-by-record reader for lists of varying length."""
    scalars = {p.name: [] for p in el.props if not p.is_list}
    counts = {p.name: [] for p in el.props if p.is_list}
    values = {p.name: [] for p in el.props if p.is_list}
    codes = {p.name: struct.Struct(endian + _STRUCT_CODES[p.count_type or p.type]) for p in el.props}
    size = len(raw)
    try:
        for _ in range(el.count):
            for p in el.props:
                s = codes[p.name]
                (v,) = s.unpack_from(raw, pos)
                pos += s.size
                if not p.is_list:
                    scalars[p.name].append(v)
                    continue
                nbytes = v * np.dtype(p.type).itemsize
                if v < 0 or pos + nbytes > size:
                    raise struct.error("list runs past the end of the data")
                counts[p.name].append(v)
                values[p.name].append(np.frombuffer(raw, endian + p.type, count=v, offset=pos))
                pos += nbytes
    except struct.error:
        raise _truncated(path, el) from None
    out = {}
    for p in el.props:
        if p.is_list:
            vals = np.concatenate(values[p.name]).astype(p.type) if values[p.name] else np.zeros(0, p.type)
            out[p.name] = PlyList(np.asarray(counts[p.name], np.int64), vals)
        else:
            out[p.name] = np.asarray(scalars[p.name], dtype=p.type)
    return out, pos


def _empty_columns(el: _Element) -> dict:
    return {
        p.name: PlyList(np.zeros(0, np.int64), np.zeros(0, p.type)) if p.is_list else np.zeros(0, p.type)
        for p in el.props
    }


# ---- ascii --------------------------------------------------------------------------------


def _to_numbers(tokens: list[bytes], path: Path, el: _Element) -> np.ndarray:
    """ASCII tokens -> float64 values (exact for integers below 2^53)."""
    try:
        return np.asarray(tokens, dtype=np.bytes_).astype(np.float64)
    except ValueError:
        raise ScanError(f"{path}: non-numeric value in PLY element {el.name!r}") from None


def _read_ascii_element(tokens: list[bytes], pos: int, el: _Element, path: Path) -> tuple[dict, int]:
    """Read one element starting at token ``pos`` -> (columns, token position after it)."""
    n = el.count
    if n == 0:
        return _empty_columns(el), pos
    # Fast path: records of constant token count (always true without lists; with lists,
    # assumed from the first record and verified).
    lengths, width = {}, 0
    for p in el.props:
        if p.is_list:
            if pos + width >= len(tokens):
                raise _truncated(path, el)
            c = int(_to_numbers([tokens[pos + width]], path, el)[0])
            if c < 0:
                raise ScanError(f"{path}: negative list length in element {el.name!r}")
            lengths[p.name] = c
            width += 1 + c
        else:
            width += 1
    if pos + n * width <= len(tokens):
        table = _to_numbers(tokens[pos : pos + n * width], path, el).reshape(n, width)
        cols, ok, j = {}, True, 0
        for p in el.props:
            if p.is_list:
                c = lengths[p.name]
                ok &= bool(np.all(table[:, j] == c))
                cols[p.name] = table[:, j + 1 : j + 1 + c]
                j += 1 + c
            else:
                cols[p.name] = table[:, j]
                j += 1
        if ok:
            return _columns(el, cols, lengths), pos + n * width
    return _read_ascii_loop(tokens, pos, el, path)


def _read_ascii_loop(tokens: list[bytes], pos: int, el: _Element, path: Path) -> tuple[dict, int]:
    """Record-by-record reader for lists of varying length."""
    scalars = {p.name: [] for p in el.props if not p.is_list}
    counts = {p.name: [] for p in el.props if p.is_list}
    values = {p.name: [] for p in el.props if p.is_list}
    try:
        for _ in range(el.count):
            for p in el.props:
                tok = tokens[pos]
                pos += 1
                if not p.is_list:
                    scalars[p.name].append(tok)
                    continue
                c = int(float(tok))
                if c < 0 or pos + c > len(tokens):
                    raise IndexError
                counts[p.name].append(c)
                values[p.name].extend(tokens[pos : pos + c])
                pos += c
    except IndexError:
        raise _truncated(path, el) from None
    except ValueError:
        raise ScanError(f"{path}: non-numeric list length in PLY element {el.name!r}") from None
    out = {}
    for p in el.props:
        if p.is_list:
            vals = _to_numbers(values[p.name], path, el).astype(p.type)
            out[p.name] = PlyList(np.asarray(counts[p.name], np.int64), vals)
        else:
            out[p.name] = _to_numbers(scalars[p.name], path, el).astype(p.type)
    return out, pos


# --------------------------------------------------------------------------------------------
# PLY -> SceneMesh
# --------------------------------------------------------------------------------------------


def fan_triangulate(faces: PlyList) -> tuple[np.ndarray, np.ndarray]:
    """Polygons -> (triangles [T, 3] int64, source face of each triangle [T] int64).

    Polygon (v0, v1, ..., vk) becomes (v0, v1, v2), (v0, v2, v3), ...; polygons with fewer
    than 3 vertices are dropped.
    """
    counts = faces.counts
    ntri = np.maximum(counts - 2, 0)  # [n]
    face_of = np.repeat(np.arange(len(counts)), ntri)  # [T]
    first_tri = np.cumsum(ntri) - ntri  # [n] index of each face's first triangle
    k = np.arange(len(face_of)) - first_tri[face_of] + 1  # [T] fan step 1..c-2
    start = faces.offsets[face_of]  # [T]
    vals = faces.values.astype(np.int64)
    tris = np.stack([vals[start], vals[start + k], vals[start + k + 1]], axis=1) if len(face_of) else np.zeros((0, 3), np.int64)
    return tris, face_of


def _find(cols: dict, names, want_list: bool):
    for name in names:
        if name in cols and isinstance(cols[name], PlyList) == want_list:
            return cols[name]
    return None


def _vertex_colors(vert: dict) -> np.ndarray | None:
    """[V, 3] uint8 from red/green/blue (integers 0-255 or floats 0-1), or None."""
    for names in (("red", "green", "blue"), ("diffuse_red", "diffuse_green", "diffuse_blue"), ("r", "g", "b")):
        if all(n in vert and not isinstance(vert[n], PlyList) for n in names):
            rgb = np.stack([vert[n] for n in names], axis=1)
            if rgb.dtype.kind == "f":
                rgb = np.round(rgb * 255.0)
            return np.clip(rgb, 0, 255).astype(np.uint8)
    return None


def load_ply(path, semantic_info: str | Path | None = None, up_axis: str = "z") -> SceneMesh:
    """Load a PLY mesh -> SceneMesh.

    Vertex colours become ``vertex_colors``; object ids (per face, or per vertex taken from each
    face's first vertex; negative ids mean "no object") become ``tri_instance = id + 1``.
    With ``semantic_info`` (a Replica-style ``info_semantic.json``) the class table is void +
    the json's classes and ``tri_class`` follows each object's class; without it the table is
    ("void", "object") and every labelled triangle is class 1.
    """
    _check_up_axis(up_axis)
    path = Path(path)
    ply = read_ply(path)
    vert, face = ply.get("vertex"), ply.get("face")
    if vert is None:
        raise ScanError(f"{path}: PLY has no 'vertex' element")
    missing = [a for a in "xyz" if a not in vert or isinstance(vert[a], PlyList)]
    if missing:
        raise ScanError(f"{path}: PLY vertex element lacks {', '.join(missing)}")
    vertices = np.stack([vert["x"], vert["y"], vert["z"]], axis=1).astype(np.float64)  # [V, 3]
    polys = _find(face or {}, FACE_INDEX_NAMES, want_list=True)
    if polys is None:
        raise ScanError(f"{path}: PLY has no faces (element 'face' with list property {' or '.join(FACE_INDEX_NAMES)}); point clouds cannot be rendered")
    triangles, face_of = fan_triangulate(polys)  # [F, 3], [F]
    if len(triangles) == 0:
        raise ScanError(f"{path}: PLY has no polygons with 3 or more vertices")
    V = len(vertices)
    if triangles.min() < 0 or triangles.max() >= V:
        bad = int(triangles.max()) if triangles.max() >= V else int(triangles.min())
        raise ScanError(f"{path}: face index {bad} out of range for {V} vertices")
    if not np.all(np.isfinite(vertices)):
        raise ScanError(f"{path}: vertex coordinates contain NaN or inf")

    object_ids = _triangle_object_ids(face, vert, triangles, face_of)  # [F] int64 or None
    tri_instance = _instances_from_ids(object_ids, len(triangles), path)  # [F] uint16
    if semantic_info is not None:
        classes, object_class = read_semantic_info(semantic_info)
    else:
        classes, object_class = ClassTable.from_names(["object"]), None
    tri_class, instance_class = _classes_of_instances(tri_instance, object_class)
    return SceneMesh(
        vertices=to_z_up(vertices, up_axis),
        triangles=triangles,
        tri_class=tri_class,
        tri_instance=tri_instance,
        classes=classes,
        vertex_colors=_vertex_colors(vert),
        instance_class=instance_class,
    )


def _triangle_object_ids(face: dict, vert: dict, triangles: np.ndarray, face_of: np.ndarray) -> np.ndarray | None:
    """[F] object id of each triangle (per-face ids preferred, else the first vertex's id), or None."""
    per_face = _find(face, OBJECT_ID_NAMES, want_list=False)
    if per_face is not None:
        return per_face.astype(np.int64)[face_of]
    per_vertex = _find(vert, OBJECT_ID_NAMES, want_list=False)
    if per_vertex is not None:
        return per_vertex.astype(np.int64)[triangles[:, 0]]
    return None


def _instances_from_ids(object_ids: np.ndarray | None, F: int, path: Path) -> np.ndarray:
    """[F] object ids -> [F] uint16 instance ids (id + 1; negative ids -> 0 = no object)."""
    if object_ids is None:
        return np.zeros(F, np.uint16)
    limit = np.iinfo(np.uint16).max - 1
    if object_ids.max() > limit:
        raise ScanError(f"{path}: object id {int(object_ids.max())} too large (instance ids are uint16, max object id {limit})")
    return np.where(object_ids >= 0, object_ids + 1, 0).astype(np.uint16)


def _classes_of_instances(tri_instance: np.ndarray, object_class: dict[int, int] | None) -> tuple[np.ndarray, dict]:
    """-> (tri_class [F] uint16, instance_class {instance id: class id}).

    ``object_class`` maps object id -> class id; None means every object is class 1.
    """
    present = np.unique(tri_instance)
    present = present[present > 0]
    if object_class is None:
        instance_class = {int(i): 1 for i in present}
    else:
        instance_class = {int(i): int(object_class.get(int(i) - 1, 0)) for i in present}
    lut = np.zeros(int(tri_instance.max(initial=0)) + 1, np.uint16)  # instance -> class
    for inst, cls in instance_class.items():
        lut[inst] = cls
    return lut[tri_instance], instance_class


def read_semantic_info(path) -> tuple[ClassTable, dict[int, int]]:
    """Replica ``info_semantic.json`` -> (ClassTable, {object id: class id in that table}).

    The table is void + the json's classes in json id order (contiguous ids; a class named
    'void' maps to 0, repeated names share one id). An object's class comes from its
    ``class_id`` (or ``class_name``), else from ``id_to_label[object id]``; unknown -> void.
    """
    path = Path(path)
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ScanError(f"{path}: cannot read semantic info ({e})") from None
    if not isinstance(info, dict):
        raise ScanError(f"{path}: semantic info must be a JSON object")
    try:
        rows = sorted(info.get("classes") or [], key=lambda r: int(r["id"]))
        names: list[str] = []
        ours: dict[int, int] = {}  # json class id -> our class id
        for r in rows:
            name = str(r.get("name") or f"class_{int(r['id'])}")
            if name == "void":
                ours[int(r["id"])] = 0
                continue
            if name not in names:
                names.append(name)
            ours[int(r["id"])] = names.index(name) + 1
        table = ClassTable.from_names(names)
        object_class: dict[int, int] = {}
        for obj in info.get("objects") or []:
            cid = obj.get("class_id")
            if cid is not None and int(cid) in ours:
                object_class[int(obj["id"])] = ours[int(cid)]
            elif obj.get("class_name") in table.names:
                object_class[int(obj["id"])] = table.id(obj["class_name"])
        for oid, cid in enumerate(info.get("id_to_label") or []):
            if oid not in object_class and cid is not None and int(cid) in ours:
                object_class[oid] = ours[int(cid)]
    except (KeyError, TypeError, ValueError) as e:
        raise ScanError(f"{path}: malformed semantic info ({type(e).__name__}: {e})") from None
    return table, object_class


def load_replica(scene_dir, up_axis: str = "z") -> SceneMesh:
    """A Replica scene directory -> SceneMesh.

    Prefers ``habitat/mesh_semantic.ply`` (vertex colours + per-face object ids) with
    ``habitat/info_semantic.json``; falls back to the unlabelled ``mesh.ply``.
    """
    scene_dir = Path(scene_dir)
    semantic_ply = scene_dir / "habitat" / "mesh_semantic.ply"
    info = scene_dir / "habitat" / "info_semantic.json"
    plain_ply = scene_dir / "mesh.ply"
    if semantic_ply.is_file():
        return load_ply(semantic_ply, semantic_info=info if info.is_file() else None, up_axis=up_axis)
    if plain_ply.is_file():
        return load_ply(plain_ply, up_axis=up_axis)
    raise ScanError(
        f"{scene_dir}: not a Replica scene; looked for {semantic_ply} (with {info.name}) and {plain_ply}"
    )


# --------------------------------------------------------------------------------------------
# Textured meshes (GLB / GLTF / OBJ) through trimesh
# --------------------------------------------------------------------------------------------


def _import_trimesh():
    try:
        import trimesh
    except ImportError as e:
        raise ImportError(
            "loading GLB/GLTF/OBJ scans needs trimesh (with pillow for textures): pip install 'trimesh[easy]' pillow"
        ) from e
    return trimesh


def _image_array(image) -> np.ndarray:
    """PIL image or array -> [h, w, 3] uint8."""
    if hasattr(image, "convert"):
        return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    a = np.asarray(image)
    if a.dtype.kind == "f":
        a = np.round(np.clip(a, 0.0, 1.0) * 255.0)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(np.clip(a[:, :, :3], 0, 255).astype(np.uint8))


def _rgb_u8(color, default=(255, 255, 255)) -> np.ndarray:
    """A colour (RGB/RGBA, uint8 or float 0-1) -> [3] uint8."""
    if color is None:
        return np.asarray(default, np.uint8)
    c = np.asarray(color).reshape(-1)[:3]
    if c.dtype.kind == "f" and c.max(initial=0) <= 1.0:
        c = np.round(c * 255.0)
    return np.clip(c, 0, 255).astype(np.uint8)


def _material_image_and_color(material) -> tuple[object | None, np.ndarray]:
    """(texture image or None, base colour [3] uint8) of a trimesh PBR or simple material.

    When a material has an image the image is used as is (glTF would multiply by
    baseColorFactor, but trimesh fills that with its grey default for plain textures).
    """
    materials = getattr(material, "materials", None)  # MultiMaterial: take the first
    if materials:
        material = materials[0]
    if hasattr(material, "baseColorFactor") or hasattr(material, "baseColorTexture"):
        return getattr(material, "baseColorTexture", None), _rgb_u8(getattr(material, "baseColorFactor", None))
    return getattr(material, "image", None), _rgb_u8(getattr(material, "diffuse", None), default=(102, 102, 102))


@dataclass
class _Part:
    """One geometry node's triangles with its appearance (an image or per-face colours)."""

    vertices: np.ndarray  # [V, 3] float64, scene coordinates
    faces: np.ndarray  # [F, 3] int64
    image_key: int | None  # index into the image list, or None when coloured
    corner_uv: np.ndarray | None  # [F, 3, 2] our convention (v down), for images
    face_colors: np.ndarray | None  # [F, 3] uint8, when not textured


def _geometry_part(geom, transform: np.ndarray, images: list, image_index: dict) -> _Part:
    verts = np.asarray(geom.vertices, np.float64) @ transform[:3, :3].T + transform[:3, 3]  # [V, 3]
    faces = np.asarray(geom.faces, np.int64)  # [F, 3]
    visual = geom.visual
    if getattr(visual, "kind", None) == "texture":
        image, color = _material_image_and_color(visual.material)
        uv = getattr(visual, "uv", None)
        if image is not None and uv is not None and len(uv) == len(verts):
            # the image object itself is kept in image_index, so its id() cannot be reused
            key = image_index.setdefault(id(image), (image, len(images)))[1]
            if key == len(images):
                images.append(_image_array(image))
            corner = np.asarray(uv, np.float64)[faces].copy()  # [F, 3, 2], v up
            corner[..., 1] = 1.0 - corner[..., 1]  # OpenGL v up -> our v down
            return _Part(verts, faces, key, corner, None)
        return _Part(verts, faces, None, None, np.repeat(color[None], len(faces), axis=0))
    face_colors = np.asarray(visual.face_colors)[:, :3]  # [F, 3]; trimesh averages vertex colours
    return _Part(verts, faces, None, None, _rgb_u8_rows(face_colors))


def _rgb_u8_rows(colors: np.ndarray) -> np.ndarray:
    c = np.asarray(colors)
    if c.dtype.kind == "f":
        c = np.round(np.clip(c, 0.0, 1.0) * 255.0)
    return np.clip(c, 0, 255).astype(np.uint8)


def palette_texture(colors: np.ndarray, max_width: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """[K, 3] uint8 distinct colours -> (texture [rows, cols, 3] uint8, uv [K, 2] of each texel centre).

    Sampling at a texel centre returns that texel's colour exactly (nearest or bilinear).
    """
    K = len(colors)
    cols = max(1, min(K, max_width))
    rows = -(-K // cols)
    tex = np.zeros((rows * cols, 3), np.uint8)
    tex[:K] = colors
    k = np.arange(K)
    uv = np.stack([(k % cols + 0.5) / cols, (k // cols + 0.5) / rows], axis=1)
    return tex.reshape(rows, cols, 3), uv


def load_textured(path, up_axis: str = "y", class_name: str = "object") -> SceneMesh:
    """A GLB / GLTF / OBJ scan (HM3D / MP3D style) -> one textured SceneMesh via trimesh.

    Each geometry node (with its world transform applied) is one instance, ids 1..N, all of
    class ``class_name`` (table ("void", class_name)). Appearance per node: an image texture
    with its uv (converted to v down); a material without image -> its base colour; colour
    visuals -> per-face colours (vertex colours averaged per face). Colours are packed into one
    palette texture sampled at texel centres.
    """
    _check_up_axis(up_axis)
    if class_name == "void":
        raise ScanError("class_name must not be 'void' (id 0 is reserved for unlabelled pixels)")
    path = Path(path)
    if not path.is_file():
        raise ScanError(f"{path}: no such file")
    trimesh = _import_trimesh()
    try:
        scene = trimesh.load(str(path), force="scene")
    except Exception as e:  # trimesh raises many types for bad files
        raise ScanError(f"{path}: trimesh could not load it ({type(e).__name__}: {e})") from None

    images: list[np.ndarray] = []
    image_index: dict[int, tuple] = {}  # id(image) -> (image, index into images)
    parts: list[_Part] = []
    for node in scene.graph.nodes_geometry:
        transform, geom_name = scene.graph[node]
        geom = scene.geometry[geom_name]
        if isinstance(geom, trimesh.Trimesh) and len(geom.faces):
            parts.append(_geometry_part(geom, np.asarray(transform, np.float64), images, image_index))
    if not parts:
        raise ScanError(f"{path}: contains no triangle meshes")
    return _merge_parts(parts, images, up_axis, class_name)


def _merge_parts(parts: list[_Part], images: list[np.ndarray], up_axis: str, class_name: str) -> SceneMesh:
    """Concatenate parts into one SceneMesh; coloured faces share one palette texture."""
    textures = list(images)
    colored = [p.face_colors for p in parts if p.face_colors is not None]
    if colored:
        palette, inverse = np.unique(np.concatenate(colored), axis=0, return_inverse=True)
        tex, texel_uv = palette_texture(palette)
        palette_id, inverse = len(textures), inverse.reshape(-1)
        textures.append(tex)
    verts, tris, mats, uvs, inst = [], [], [], [], []
    offset = cursor = 0
    for i, p in enumerate(parts, start=1):
        F = len(p.faces)
        verts.append(p.vertices)
        tris.append(p.faces + offset)
        offset += len(p.vertices)
        inst.append(np.full(F, i, np.uint16))
        if p.image_key is not None:
            mats.append(np.full(F, p.image_key, np.int32))
            uvs.append(p.corner_uv)
        else:
            mats.append(np.full(F, palette_id, np.int32))
            uvs.append(np.repeat(texel_uv[inverse[cursor : cursor + F]][:, None, :], 3, axis=1))
            cursor += F
    return SceneMesh(
        vertices=to_z_up(np.concatenate(verts), up_axis),
        triangles=np.concatenate(tris),
        tri_class=np.ones(sum(len(p.faces) for p in parts), np.uint16),
        tri_instance=np.concatenate(inst),
        classes=ClassTable.from_names([class_name]),
        textures=textures,
        tri_material=np.concatenate(mats),
        corner_uv=np.concatenate(uvs),
        instance_class={i: 1 for i in range(1, len(parts) + 1)},
    )


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------

TEXTURED_SUFFIXES = (".glb", ".gltf", ".obj")


def load_scene(path, **kw) -> SceneMesh:
    """Load any supported scan: ``.ply`` -> load_ply, ``.glb/.gltf/.obj`` -> load_textured,
    a directory -> load_replica. Keyword arguments go to that loader."""
    path = Path(path)
    if path.is_dir():
        return load_replica(path, **kw)
    if not path.exists():
        raise ScanError(f"{path}: no such file or directory")
    suffix = path.suffix.lower()
    if suffix == ".ply":
        return load_ply(path, **kw)
    if suffix in TEXTURED_SUFFIXES:
        return load_textured(path, **kw)
    raise ScanError(f"{path}: unsupported scan type {suffix!r}; expected .ply, {', '.join(TEXTURED_SUFFIXES)} or a Replica directory")
