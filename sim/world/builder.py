"""MeshBuilder: assembles labelled, textured primitives into one SceneMesh.

Primitives (box, cylinder/frustum, sphere) are built in a local frame and placed with a rotation
and translation. Faces are wound counter-clockwise seen from outside, so triangle normals point
outwards (the occupancy probe relies on that). Texture coordinates are metric: uv = local surface
coordinates / the material's tile size, so a 1 m plank texture is 1 m wide on every object.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from regconsist_ros.sim.mesh import SceneMesh
from regconsist_ros.sim.world.classes import ClassTable


@dataclass
class Material:
    """A texture tile with its physical size (metres per tile)."""

    name: str
    texture: np.ndarray  # [S, S, 3] uint8
    tile_m: float = 1.0


class MaterialLibrary:
    """Name -> index registry of materials (textures) used by one scene."""

    def __init__(self):
        self.materials: list[Material] = []
        self._index: dict[str, int] = {}

    def add(self, name: str, texture: np.ndarray, tile_m: float = 1.0) -> int:
        if name in self._index:
            return self._index[name]
        self._index[name] = len(self.materials)
        self.materials.append(Material(name, texture, tile_m))
        return self._index[name]

    def __getitem__(self, name: str) -> int:
        return self._index[name]

    def __contains__(self, name: str) -> bool:
        return name in self._index


def rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


class MeshBuilder:
    """Accumulates triangles with their labels, material and per-corner uv."""

    def __init__(self, materials: MaterialLibrary, classes: ClassTable):
        self.materials = materials
        self.classes = classes
        self._verts: list[np.ndarray] = []  # each [3k, 3]: triangle corners, unshared
        self._uv: list[np.ndarray] = []  # each [k, 3, 2]
        self._mat: list[np.ndarray] = []
        self._cls: list[np.ndarray] = []
        self._inst: list[np.ndarray] = []
        self.instance_class: dict[int, int] = {}
        self._next_instance = 1
        self._pool: tuple[list[str], np.random.Generator] | None = None  # shared texture pool, when on
        self._shared: dict[tuple[int, str], str] = {}  # (instance, asked material) -> pool material
        # what the evaluation-world options build on (recorded always; recording draws no random numbers):
        self.movable: list[tuple[tuple[int, ...], float, float, float, str]] = []  # (instances, x, y, yaw, kind)
        self.surfaces: list[tuple] = []  # (Placement, w, d, z_top, taken) of surfaces holding small objects

    def share_materials(self, pool: list[str], rng: np.random.Generator) -> None:
        """From now on every (instance, material) pair draws its material from ``pool`` (seeded by
        ``rng``), so a material no longer tells which class an object belongs to."""
        missing = [m for m in pool if m not in self.materials]
        if not pool or missing:
            raise ValueError(f"share_materials: pool must be non-empty registered materials, unknown: {missing}")
        self._pool = (list(pool), rng)

    def material_for(self, material: str, instance: int) -> str:
        """The material actually used for ``material`` on ``instance`` (itself unless sharing is on)."""
        if self._pool is None or material.startswith("painting_"):  # paintings are unique per picture anyway
            return material
        key = (instance, material)
        if key not in self._shared:
            pool, rng = self._pool
            self._shared[key] = pool[int(rng.integers(len(pool)))]
        return self._shared[key]

    def next_instance_id(self) -> int:
        """The id the next ``new_instance`` call will return."""
        return self._next_instance

    def new_instance(self, class_name: str) -> int:
        """Reserve a fresh instance id of the given class."""
        iid = self._next_instance
        if iid > np.iinfo(np.uint16).max:
            raise OverflowError("more than 65535 instances in one scene")
        self._next_instance += 1
        self.instance_class[iid] = self.classes.id(class_name)
        return iid

    def add_triangles(self, corners: np.ndarray, uv: np.ndarray, material: str, instance: int) -> None:
        """corners [k, 3, 3] world metres (CCW from outside), uv [k, 3, 2] in metres (scaled here)."""
        mid = self.materials[self.material_for(material, instance)]
        tile = self.materials.materials[mid].tile_m
        k = len(corners)
        self._verts.append(np.asarray(corners, np.float32).reshape(-1, 3))
        self._uv.append(np.asarray(uv, np.float32) / tile)
        self._mat.append(np.full(k, mid, np.int32))
        self._cls.append(np.full(k, self.instance_class[instance], np.uint16))
        self._inst.append(np.full(k, instance, np.uint16))

    # ---- primitives -------------------------------------------------------------------------
    def box(self, size, center, material: str, instance: int, R: np.ndarray | None = None,
            uv_offset=(0.0, 0.0), skip_faces: tuple[str, ...] = (), fit: bool = False) -> None:
        """Axis-aligned box of ``size`` (sx, sy, sz) in its local frame, rotated by R, centred at ``center``.

        Faces are named +x, -x, +y, -y, +z, -z and can be skipped (e.g. the hidden bottom).
        ``fit=True`` maps exactly one texture tile onto every face, top of the texture at the top
        (pictures, window views, screens); otherwise uv is metric (world-scaled, repeating).
        """
        sx, sy, sz = (float(s) / 2 for s in size)
        R = np.eye(3) if R is None else R
        tris, uvs = [], []
        # (name, normal axis, sign, u axis, v axis): v runs downwards on vertical faces
        faces = [("+x", 0, 1, 1, 2), ("-x", 0, -1, 1, 2), ("+y", 1, 1, 0, 2), ("-y", 1, -1, 0, 2),
                 ("+z", 2, 1, 0, 1), ("-z", 2, -1, 0, 1)]
        half = np.array([sx, sy, sz])
        for name, n, sgn, ua, va in faces:
            if name in skip_faces:
                continue
            quad = []
            for du, dv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = np.zeros(3)
                p[n] = sgn * half[n]
                p[ua] = du * half[ua]
                p[va] = dv * half[va]
                quad.append(p)
            quad = np.array(quad)  # [4, 3] local
            # orient counter-clockwise seen from outside (normal = +sgn along axis n)
            nrm = np.cross(quad[1] - quad[0], quad[2] - quad[0])
            if nrm[n] * sgn < 0:
                quad = quad[::-1]
            uv = np.stack([quad[:, ua], -quad[:, va] if va == 2 else quad[:, va]], -1)  # [4, 2] metres
            if fit:  # [-half, half] -> [0, tile] along both face axes
                tile = self.materials.materials[self.materials[self.material_for(material, instance)]].tile_m
                uv = (uv / (2 * np.array([half[ua], half[va]])) + 0.5) * tile
            else:
                uv = uv + np.asarray(uv_offset)
            world = quad @ R.T + np.asarray(center)
            tris += [world[[0, 1, 2]], world[[0, 2, 3]]]
            uvs += [uv[[0, 1, 2]], uv[[0, 2, 3]]]
        self.add_triangles(np.array(tris), np.array(uvs), material, instance)

    def frustum(self, r_bottom: float, r_top: float, height: float, base_center, material: str,
                instance: int, segments: int = 16, R: np.ndarray | None = None, caps: bool = True,
                cap_material: str | None = None) -> None:
        """Cylinder / truncated cone along local +z from ``base_center`` (z = 0 .. height)."""
        R = np.eye(3) if R is None else R
        a = np.linspace(0, 2 * np.pi, segments + 1)
        ca, sa = np.cos(a), np.sin(a)
        b = np.stack([r_bottom * ca, r_bottom * sa, np.zeros_like(a)], -1)
        t = np.stack([r_top * ca, r_top * sa, np.full_like(a, height)], -1)
        circ = a * max(r_bottom, r_top)  # arc length for u
        tris, uvs = [], []
        for i in range(segments):
            q = np.array([b[i], b[i + 1], t[i + 1], t[i]])
            quv = np.array([[circ[i], 0], [circ[i + 1], 0], [circ[i + 1], -height], [circ[i], -height]])
            tris += [q[[0, 1, 2]], q[[0, 2, 3]]]
            uvs += [quv[[0, 1, 2]], quv[[0, 2, 3]]]
        base = np.asarray(base_center, dtype=np.float64)
        self.add_triangles(np.array(tris) @ R.T + base, np.array(uvs), material, instance)
        if caps:
            cap_mat = cap_material or material
            tile = self.materials.materials[self.materials[self.material_for(cap_mat, instance)]].tile_m
            ctris, cuvs = [], []
            for ring, z, up, rr in ((t, height, True, r_top), (b, 0.0, False, r_bottom)):
                c = np.array([0.0, 0.0, z])
                for i in range(segments):
                    tri = np.array([c, ring[i], ring[i + 1]]) if up else np.array([c, ring[i + 1], ring[i]])
                    ctris.append(tri)
                    # one tile spans the cap's diameter (a clock dial fills its disc)
                    cuvs.append((np.stack([tri[:, 0], -tri[:, 1]], -1) / max(2 * rr, 1e-6) + 0.5) * tile)
            self.add_triangles(np.array(ctris) @ R.T + base, np.array(cuvs), cap_mat, instance)

    def sphere(self, radius, center, material: str, instance: int, rings: int = 8, segments: int = 12,
               scale=(1.0, 1.0, 1.0)) -> None:
        """UV sphere (optionally an ellipsoid via ``scale``)."""
        th = np.linspace(0, np.pi, rings + 1)  # from +z down
        ph = np.linspace(0, 2 * np.pi, segments + 1)
        P = np.stack([np.sin(th)[:, None] * np.cos(ph)[None], np.sin(th)[:, None] * np.sin(ph)[None],
                      np.cos(th)[:, None] * np.ones_like(ph)[None]], -1) * radius * np.asarray(scale)
        U = np.stack([ph[None].repeat(rings + 1, 0) * radius, th[:, None].repeat(segments + 1, 1) * radius], -1)
        tris, uvs = [], []
        for i in range(rings):
            for j in range(segments):
                q = [P[i, j], P[i + 1, j], P[i + 1, j + 1], P[i, j + 1]]
                qu = [U[i, j], U[i + 1, j], U[i + 1, j + 1], U[i, j + 1]]
                if i > 0:
                    tris.append([q[0], q[1], q[2]]); uvs.append([qu[0], qu[1], qu[2]])
                if i < rings - 1:
                    tris.append([q[0], q[2], q[3]]); uvs.append([qu[0], qu[2], qu[3]])
        self.add_triangles(np.array(tris) + np.asarray(center), np.array(uvs), material, instance)

    # ---- result ---------------------------------------------------------------------------
    def build(self) -> SceneMesh:
        verts = np.concatenate(self._verts)  # [3F, 3]
        F = len(verts) // 3
        return SceneMesh(
            vertices=verts,
            triangles=np.arange(3 * F, dtype=np.int32).reshape(F, 3),
            tri_class=np.concatenate(self._cls),
            tri_instance=np.concatenate(self._inst),
            classes=self.classes,
            textures=[m.texture for m in self.materials.materials],
            tri_material=np.concatenate(self._mat),
            corner_uv=np.concatenate(self._uv),
            instance_class=dict(self.instance_class),
        )
