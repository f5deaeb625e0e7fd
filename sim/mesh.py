"""SceneMesh: the triangle soup every renderable scene is reduced to (procedural or scanned)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from regconsist_ros.sim.world.classes import ClassTable


class MeshError(ValueError):
    """A scene mesh whose arrays are inconsistent."""


@dataclass
class SceneMesh:
    """Triangles with per-triangle labels and one of three appearances.

    Appearance, in order of precedence:
    - textured: ``textures`` (list of [h, w, 3] uint8, wrapped/repeated), ``tri_material`` [F]
      (index into textures) and ``corner_uv`` [F, 3, 2] (u right, v down, in texture widths,
      i.e. uv 1.0 = one full tile; values outside [0, 1) repeat);
    - ``vertex_colors`` [V, 3] uint8, interpolated barycentrically;
    - neither: flat grey.
    Labels: ``tri_class`` [F] (ids into ``classes``) and ``tri_instance`` [F] (0 = none).
    """

    vertices: np.ndarray  # [V, 3] float32, world metres
    triangles: np.ndarray  # [F, 3] int32
    tri_class: np.ndarray  # [F] uint16
    tri_instance: np.ndarray  # [F] uint16
    classes: ClassTable
    textures: list = field(default_factory=list)  # each [h, w, 3] uint8
    tri_material: np.ndarray | None = None  # [F] int32
    corner_uv: np.ndarray | None = None  # [F, 3, 2] float32
    vertex_colors: np.ndarray | None = None  # [V, 3] uint8
    instance_class: dict = field(default_factory=dict)  # instance id -> class id

    def __post_init__(self):
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float32)
        self.triangles = np.ascontiguousarray(self.triangles, dtype=np.int32)
        V, F = len(self.vertices), len(self.triangles)
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3:
            raise MeshError(f"vertices must be [V, 3], got {self.vertices.shape}")
        if self.triangles.ndim != 2 or self.triangles.shape[1] != 3:
            raise MeshError(f"triangles must be [F, 3], got {self.triangles.shape}")
        if F == 0:
            raise MeshError("mesh has no triangles")
        if not np.all(np.isfinite(self.vertices)):
            raise MeshError("vertices contain NaN or inf")
        if self.triangles.min() < 0 or self.triangles.max() >= V:
            raise MeshError(f"triangle indices out of range [0, {V})")
        self.tri_class = _per_tri(self.tri_class, F, "tri_class", np.uint16)
        self.tri_instance = _per_tri(self.tri_instance, F, "tri_instance", np.uint16)
        if self.tri_class.max() >= len(self.classes):
            raise MeshError(f"tri_class holds id {int(self.tri_class.max())} beyond the class table ({len(self.classes)} classes)")
        if self.textures:
            if self.tri_material is None or self.corner_uv is None:
                raise MeshError("textured mesh needs tri_material and corner_uv")
            self.tri_material = _per_tri(self.tri_material, F, "tri_material", np.int32)
            self.corner_uv = np.ascontiguousarray(self.corner_uv, dtype=np.float32)
            if self.corner_uv.shape != (F, 3, 2):
                raise MeshError(f"corner_uv must be [F, 3, 2] = [{F}, 3, 2], got {self.corner_uv.shape}")
            if self.tri_material.min() < 0 or self.tri_material.max() >= len(self.textures):
                raise MeshError(f"tri_material out of range [0, {len(self.textures)})")
            for i, t in enumerate(self.textures):
                if not (isinstance(t, np.ndarray) and t.dtype == np.uint8 and t.ndim == 3 and t.shape[2] == 3 and t.size):
                    raise MeshError(f"texture {i} must be a non-empty [h, w, 3] uint8 array")
        if self.vertex_colors is not None:
            self.vertex_colors = np.ascontiguousarray(self.vertex_colors, dtype=np.uint8)
            if self.vertex_colors.shape != (V, 3):
                raise MeshError(f"vertex_colors must be [V, 3] = [{V}, 3], got {self.vertex_colors.shape}")

    @property
    def num_triangles(self) -> int:
        return len(self.triangles)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(min [3], max [3]) of the vertices."""
        return self.vertices.min(0), self.vertices.max(0)


def _per_tri(a, F, name, dtype):
    a = np.asarray(a)
    if a.shape != (F,):
        raise MeshError(f"{name} must have one entry per triangle [{F}], got {a.shape}")
    return np.ascontiguousarray(a.astype(dtype))
