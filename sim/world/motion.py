"""Scripted object motion for evaluation worlds: doors swing, chairs and small objects slide and turn.

Registration assumes a static scene: two views of a moving object do not correspond through the
camera poses. Motion is therefore for *evaluation* worlds (how well does a method cope when the
future of a frame is uncertain), not for the registration-based pretraining data.

Each :class:`Mover` is a rigid motion of some instances about a vertical axis, as a function of
frame time ``t`` (seconds, the frame stamp): with ``w(t) = (1 - cos(2 pi t / period + phase)) / 2``
in [0, 1], a point p moves to ``R_z(w * yaw) (p - pivot) + pivot + w * shift``. At w = 0 the object
is where the apartment generator built it. Everything is seeded: the same seed gives the same
movers and, at the same stamp, the same poses.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from regconsist_ros.sim.mesh import SceneMesh

DOOR_SWING = np.deg2rad(80.0)  # peak door swing at motion = 1, from lying along the wall towards the room
MAX_CHAIRS = 4
MAX_ITEMS = 6


@dataclass(frozen=True)
class Mover:
    """One rigid motion of ``instances`` (see the module docstring for the formula)."""

    instances: tuple[int, ...]
    kind: str  # "door", "chair" or "item"
    pivot: tuple[float, float]  # world (x, y) of the vertical rotation axis
    yaw: float  # peak rotation (rad, signed)
    shift: tuple[float, float]  # peak translation (m, world x and y)
    period: float  # seconds
    phase: float  # radians

    def __post_init__(self):
        if not self.instances:
            raise ValueError("Mover.instances must not be empty")
        if not self.period > 0:
            raise ValueError(f"Mover.period must be > 0 s, got {self.period}")

    def weight(self, t: float) -> float:
        """Progress of the excursion in [0, 1] at time ``t``."""
        return 0.5 - 0.5 * float(np.cos(2 * np.pi * t / self.period + self.phase))


def _apply(corners: np.ndarray, m: Mover, w: float) -> np.ndarray:
    """corners [..., 3] in the rest pose -> [..., 3] at excursion ``w``."""
    a = w * m.yaw
    c, s = np.cos(a), np.sin(a)
    px, py = m.pivot
    x, y = corners[..., 0] - px, corners[..., 1] - py
    out = np.empty_like(corners, dtype=np.float64)
    out[..., 0] = c * x - s * y + px + w * m.shift[0]
    out[..., 1] = s * x + c * y + py + w * m.shift[1]
    out[..., 2] = corners[..., 2]
    return out


def plan_movers(rng: np.random.Generator, amplitude: float, doors: list[tuple], movable: list[tuple]) -> list[Mover]:
    """Movers for every door and a few chairs and floor objects, scaled by ``amplitude``.

    ``doors``: (instance, hinge (x, y), along (ux, uy) from the hinge to the leaf's free edge,
    inward (nx, ny) into the room); ``movable``: (instances, x, y, yaw, kind) with kind "chair"
    (front at local +y; it slides backwards, away from its table) or "item".
    """
    if amplitude < 0:
        raise ValueError(f"plan_movers: amplitude must be >= 0, got {amplitude}")
    out: list[Mover] = []
    for inst, hinge, along, inward in doors:
        sign = 1.0 if (-along[1] * inward[0] + along[0] * inward[1]) > 0 else -1.0  # turns along towards inward
        yaw = sign * min(amplitude * DOOR_SWING, np.deg2rad(85.0))
        out.append(Mover((int(inst),), "door", (float(hinge[0]), float(hinge[1])), float(yaw), (0.0, 0.0),
                         float(rng.uniform(5.0, 10.0)), float(rng.uniform(0, 2 * np.pi))))
    for kind, cap in (("chair", MAX_CHAIRS), ("item", MAX_ITEMS)):
        cands = [m for m in movable if m[4] == kind and m[0]]
        pick = rng.permutation(len(cands))[:cap]
        for k in sorted(int(p) for p in pick):
            insts, x, y, yaw0, _ = cands[k]
            if kind == "chair":  # backwards = local -y = (sin yaw, -cos yaw)
                dist = amplitude * rng.uniform(0.15, 0.3)
                shift = (dist * np.sin(yaw0), -dist * np.cos(yaw0))
                yaw, period = amplitude * rng.uniform(-0.4, 0.4), rng.uniform(3.0, 8.0)
            else:
                ang, dist = rng.uniform(0, 2 * np.pi), amplitude * rng.uniform(0.1, 0.25)
                shift = (dist * np.cos(ang), dist * np.sin(ang))
                yaw, period = amplitude * rng.uniform(-1.0, 1.0), rng.uniform(2.0, 6.0)
            out.append(Mover(tuple(int(i) for i in insts), kind, (float(x), float(y)), float(yaw),
                             (float(shift[0]), float(shift[1])), float(period), float(rng.uniform(0, 2 * np.pi))))
    return out


class MotionScript:
    """A mesh split into a static part and movers, posed at any frame time.

    ``mesh`` is the input mesh with its triangles reordered (static ones first, then each mover's)
    and its vertices unshared ([3F, 3]): render it, and label images index its triangles.
    ``corners_at(t)`` [Fm, 3, 3] are the movers' triangles at time ``t``.
    """

    def __init__(self, mesh: SceneMesh, movers: list[Mover]):
        F = mesh.num_triangles
        tri_mover = np.full(F, -1, np.int64)  # [F] mover index or -1
        for k, m in enumerate(movers):
            sel = np.isin(mesh.tri_instance, np.asarray(m.instances))
            if not sel.any():
                raise ValueError(f"MotionScript: mover {k} ({m.kind}) has no triangles for instances {m.instances}")
            tri_mover[sel] = k
        order = np.argsort(tri_mover >= 0, kind="stable")  # static first, original order kept
        self.movers = list(movers)
        self.num_static = int((tri_mover < 0).sum())
        self.tri_mover = tri_mover[order][self.num_static:]  # [Fm]
        corners = mesh.vertices[mesh.triangles[order]]  # [F, 3, 3]
        vc = None if mesh.vertex_colors is None else mesh.vertex_colors[mesh.triangles[order]].reshape(-1, 3)
        self.mesh = SceneMesh(
            vertices=corners.reshape(-1, 3), triangles=np.arange(3 * F, dtype=np.int32).reshape(F, 3),
            tri_class=mesh.tri_class[order], tri_instance=mesh.tri_instance[order], classes=mesh.classes,
            textures=mesh.textures, tri_material=None if mesh.tri_material is None else mesh.tri_material[order],
            corner_uv=None if mesh.corner_uv is None else mesh.corner_uv[order], vertex_colors=vc,
            instance_class=dict(mesh.instance_class))
        self._rest = corners[self.num_static:].astype(np.float64)  # [Fm, 3, 3]

    @property
    def num_moving(self) -> int:
        return len(self._rest)

    def corners_at_weights(self, weights) -> np.ndarray:
        """Mover triangles with mover k at excursion ``weights[k]`` -> [Fm, 3, 3] float32."""
        out = self._rest.copy()
        for k, m in enumerate(self.movers):
            sel = self.tri_mover == k
            out[sel] = _apply(self._rest[sel], m, float(weights[k]))
        return out.astype(np.float32)

    def corners_at(self, t: float) -> np.ndarray:
        """Mover triangles at frame time ``t`` (seconds) -> [Fm, 3, 3] float32."""
        return self.corners_at_weights([m.weight(t) for m in self.movers])

    def posed_mesh(self, t: float) -> SceneMesh:
        """The whole scene with the movers at time ``t`` (same triangle order as ``mesh``)."""
        v = self.mesh.vertices.copy()
        v[3 * self.num_static:] = self.corners_at(t).reshape(-1, 3)
        m = self.mesh
        return SceneMesh(v, m.triangles, m.tri_class, m.tri_instance, m.classes, m.textures, m.tri_material,
                         m.corner_uv, m.vertex_colors, dict(m.instance_class))

    def swept_mesh(self, samples: int = 9) -> SceneMesh:
        """Static part plus every mover at ``samples`` excursions in [0, 1] (untextured): what the
        occupancy grid is built from, so that trajectories keep clear of all the movers' poses."""
        if samples < 2:
            raise ValueError(f"swept_mesh: samples must be >= 2, got {samples}")
        m, Fs = self.mesh, self.num_static
        parts = [m.vertices[: 3 * Fs]] + [self.corners_at_weights([w] * len(self.movers)).reshape(-1, 3)
                                           for w in np.linspace(0.0, 1.0, samples)]
        v = np.concatenate(parts)
        F = len(v) // 3
        cls = np.concatenate([m.tri_class[:Fs]] + [m.tri_class[Fs:]] * samples)
        ins = np.concatenate([m.tri_instance[:Fs]] + [m.tri_instance[Fs:]] * samples)
        return SceneMesh(v, np.arange(3 * F, dtype=np.int32).reshape(F, 3), cls, ins, m.classes)
