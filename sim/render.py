"""CPU ray-casting renderer over any SceneMesh (Open3D RaycastingScene), and a floor probe.

For a pinhole camera and a pose it returns a pixel-aligned :class:`~regconsist_ros.sim.frame.Frame`:
RGB uint8 (texture or vertex colour x simple lighting), z-depth float32 metres (0 = no hit),
semantic class and instance ids (uint16, 0 = void). Rays go through pixel centres at integer
coordinates (x = column, y = row); a ray's camera-frame direction is ((x-cx)/fx, (y-cy)/fy, 1), so
Open3D's hit distance along it *is* the z-depth.

Evaluation worlds add two per-frame inputs, both optional and both off on the default path: a
:class:`~regconsist_ros.sim.world.lighting.Light` per frame (the per-triangle light factor is
recomputed and the colour tinted), and a :class:`~regconsist_ros.sim.world.motion.MotionScript`
whose movers are posed at the frame's stamp (ray casting keeps a second scene of the movers,
rebuilt per frame, and takes the nearer hit; GL rewrites the movers' part of its vertex buffer).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from regconsist_ros.sim.frame import Frame, Intrinsics
from regconsist_ros.sim.mesh import SceneMesh
from regconsist_ros.sim.occupancy import OccupancyGrid
from regconsist_ros.sim.poses import validate_pose
from regconsist_ros.sim.world.lighting import Light, apply_tint
from regconsist_ros.sim.world.motion import MotionScript

log = logging.getLogger(__name__)

def _o3d():
    try:
        import open3d as o3d
    except ImportError as e:  # pragma: no cover - open3d is a hard dependency
        raise ImportError(
            f"open3d is required for rendering ({e}); `pip install open3d` and, on Debian/Ubuntu, "
            "`apt-get install libusb-1.0-0 libgomp1`"
        ) from e
    return o3d


BACKENDS = ("auto", "raycast", "gl")


@dataclass
class RenderConfig:
    """Renderer settings."""

    backend: str = "auto"  # "raycast" (Open3D), "gl" (moderngl/EGL rasterizer), "auto": gl when available
    nthreads: int = 1  # CPU threads (0 = all cores): ray casting, or llvmpipe's LP_NUM_THREADS for gl
    ambient: float = 0.5  # light that reaches every surface
    diffuse: float = 0.5  # strength of the directional light
    light_dir: tuple[float, float, float] = (0.35, 0.25, 0.9)  # towards the light, world frame

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"RenderConfig.backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.nthreads < 0:
            raise ValueError(f"RenderConfig.nthreads must be >= 0, got {self.nthreads}")
        if self.ambient < 0 or self.diffuse < 0 or self.ambient + self.diffuse <= 0:
            raise ValueError(f"RenderConfig: ambient ({self.ambient}) and diffuse ({self.diffuse}) must be >= 0, not both 0")
        if len(self.light_dir) != 3 or not np.isfinite(self.light_dir).all() or np.linalg.norm(self.light_dir) == 0:
            raise ValueError(f"RenderConfig.light_dir must be a non-zero 3-vector, got {self.light_dir}")


def _scene(o3d, mesh: SceneMesh, num_triangles: int | None = None):
    """Ray-casting scene of the mesh's first ``num_triangles`` triangles (all by default)."""
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(mesh.vertices.astype(np.float32)),
        o3d.core.Tensor(mesh.triangles[:num_triangles].astype(np.uint32)),
    )
    return scene


def _normals(corners: np.ndarray) -> np.ndarray:
    """Unit triangle normals: corners [F, 3, 3] float32 -> [F, 3] float32."""
    n = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return n


def light_factors(normals: np.ndarray, light_dir, ambient: float, diffuse: float) -> np.ndarray:
    """Flat, two-sided light factor per triangle in 8.8 fixed point: normals [F, 3] -> [F] uint16."""
    L = np.asarray(light_dir, np.float64)
    L = L / np.linalg.norm(L)
    light = ambient + diffuse * np.abs(normals @ L)
    return np.clip(np.round(light * 256), 0, 65535).astype(np.uint16)


class Renderer:
    """Renders RGB, depth, semantic and instance images of a SceneMesh from any pinhole camera.

    Two backends give the same Frames: Open3D ray casting (always available) and an OpenGL
    rasterizer (:mod:`regconsist_ros.sim.render_gl`, headless EGL; several times faster on a CPU via llvmpipe).
    ``backend`` says which one runs.
    """

    def __init__(self, mesh: SceneMesh, config: RenderConfig | None = None, motion: MotionScript | None = None):
        """``motion``: movers to pose at each frame's stamp; its ``motion.mesh`` must be ``mesh``."""
        if motion is not None and motion.mesh is not mesh:
            raise ValueError("Renderer: motion.mesh must be the mesh rendered (MotionScript reorders the "
                             "triangles: pass Renderer(motion.mesh, config, motion))")
        self.o3d = _o3d()
        self.mesh = mesh
        self.config = config or RenderConfig()
        self.motion = motion
        self._num_static = mesh.num_triangles if motion is None else motion.num_static
        self.scene = _scene(self.o3d, mesh, self._num_static)
        self._dirs: dict[Intrinsics, np.ndarray] = {}
        # per-triangle light factor (flat shading, two-sided), 8.8 fixed point
        self._normals = _normals(mesh.vertices[mesh.triangles])  # [F, 3]
        self._light = light_factors(self._normals, self.config.light_dir, self.config.ambient, self.config.diffuse)  # [F]
        self._gl_light = self._light  # the factors the GL light buffer holds
        if mesh.textures:
            sizes = np.array([t.shape[:2] for t in mesh.textures])  # [M, 2] (h, w)
            self._tex_h, self._tex_w = sizes[:, 0].astype(np.int64), sizes[:, 1].astype(np.int64)
            self._tex_off = np.concatenate([[0], np.cumsum(sizes[:, 0] * sizes[:, 1])[:-1]]).astype(np.int64)
            self._atlas = np.concatenate([t.reshape(-1, 3) for t in mesh.textures])  # [sum h*w, 3]
            self._tex_h, self._tex_w, self._tex_off = (a.astype(np.int32) for a in (self._tex_h, self._tex_w, self._tex_off))
            # per-triangle affine uv frame in texels of its own texture: uv0, uv1 - uv0, uv2 - uv0
            texel = np.stack([self._tex_w, self._tex_h], -1)[mesh.tri_material].astype(np.float32)  # [F, 2]
            cuv = mesh.corner_uv * texel[:, None, :]
            self._uv_frame = np.concatenate([cuv[:, 0], cuv[:, 1] - cuv[:, 0], cuv[:, 2] - cuv[:, 0]], 1)  # [F, 6]
            same = len(set(map(tuple, sizes))) == 1
            self._tile = (int(sizes[0][0]), int(sizes[0][1])) if same else None  # one tile size: scalar indexing
        self.backend = "raycast"
        self._gl = None
        if self.config.backend in ("gl", "auto"):
            self._gl = self._make_gl(required=self.config.backend == "gl")
            if self._gl is not None:
                self.backend = "gl"

    def _make_gl(self, required: bool):
        """The GL rasterizer over the same shading data, or None (auto) when no GL context exists."""
        import os

        from regconsist_ros.sim.render_gl import GLRenderer, GLUnavailable

        if self.config.nthreads > 0:
            os.environ.setdefault("LP_NUM_THREADS", str(self.config.nthreads))
        m = self.mesh
        textured = bool(m.textures)
        tex_info = np.stack([self._tex_off, self._tex_w, self._tex_h], -1)[m.tri_material] if textured else None
        try:
            return GLRenderer(m, self._light, self._uv_frame if textured else None, tex_info,
                              self._atlas if textured else None)
        except GLUnavailable as e:
            if required:
                raise
            log.info("OpenGL backend unavailable (%s); using Open3D ray casting", e)
            return None

    # ---- rays ----------------------------------------------------------------------------------
    def _pixel_coords(self, K: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
        """Normalised image coordinates of pixel centres: xn [W], yn [H] (float32)."""
        c = self._dirs.get(K)
        if c is None:
            c = ((np.arange(K.width, dtype=np.float32) - K.cx) / K.fx, (np.arange(K.height, dtype=np.float32) - K.cy) / K.fy)
            self._dirs = {K: c}  # keep one camera cached
        return c

    def cast(self, K: Intrinsics, T_world_cam: np.ndarray, movers: np.ndarray | None = None) -> dict:
        """Raw hits: ``depth`` [H*W] (inf = miss), ``prim`` [H*W] triangle ids, ``uv`` [H*W, 2] barycentrics.

        ``movers`` [Fm, 3, 3]: the posed triangles of ``self.motion`` (ids after the static ones)."""
        T = validate_pose(T_world_cam, "T_world_cam")
        xn, yn = self._pixel_coords(K)
        R = T[:3, :3].astype(np.float32)
        rays = np.empty((K.height, K.width, 6), np.float32)
        rays[..., :3] = T[:3, 3]
        # world direction of pixel (x, y) = R @ (xn[x], yn[y], 1): an outer sum of a column and a row term
        np.add((xn[:, None] * R[:, 0])[None, :, :], (yn[:, None] * R[:, 1] + R[:, 2])[:, None, :], out=rays[..., 3:])
        rays_t = self.o3d.core.Tensor.from_numpy(rays.reshape(-1, 6))
        ans = self.scene.cast_rays(rays_t, nthreads=self.config.nthreads)
        hits = {"depth": ans["t_hit"].numpy(), "prim": ans["primitive_ids"].numpy(), "uv": ans["primitive_uvs"].numpy()}
        if movers is not None and len(movers):
            ms = self.o3d.t.geometry.RaycastingScene()
            ms.add_triangles(self.o3d.core.Tensor(np.ascontiguousarray(movers.reshape(-1, 3), np.float32)),
                             self.o3d.core.Tensor(np.arange(3 * len(movers), dtype=np.uint32).reshape(-1, 3)))
            am = ms.cast_rays(rays_t, nthreads=self.config.nthreads)
            tm = am["t_hit"].numpy()
            near = tm < hits["depth"]  # [H*W]: a mover is in front
            hits = {k: v.copy() for k, v in hits.items()}
            hits["depth"][near] = tm[near]
            hits["prim"][near] = am["primitive_ids"].numpy()[near] + np.uint32(self._num_static)
            hits["uv"][near] = am["primitive_uvs"].numpy()[near]
        return hits

    # ---- shading -------------------------------------------------------------------------------
    def _colors(self, prim: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """Albedo of hit points: prim [M], bary [M, 2] -> [M, 3] uint8."""
        m = self.mesh
        b1, b2 = bary[:, 0:1], bary[:, 1:2]
        if m.textures:
            f = self._uv_frame[prim]  # [M, 6]: uv0, uv1 - uv0, uv2 - uv0 (texels)
            uv = f[:, 0:2] + f[:, 2:4] * b1 + f[:, 4:6] * b2  # [M, 2] texels
            mat = m.tri_material[prim]
            texel = np.floor(uv).astype(np.int32)
            if self._tile is not None:  # all textures one size: offsets are mat * h * w
                h, w = self._tile
                return self._atlas[(mat * h + texel[:, 1] % h) * w + texel[:, 0] % w]
            w, h = self._tex_w[mat], self._tex_h[mat]
            return self._atlas[self._tex_off[mat] + (texel[:, 1] % h) * w + texel[:, 0] % w]
        if m.vertex_colors is not None:
            c = m.vertex_colors[m.triangles[prim]].astype(np.float32)  # [M, 3, 3]
            out = c[:, 0] + (c[:, 1] - c[:, 0]) * b1 + (c[:, 2] - c[:, 0]) * b2
            return np.clip(out + 0.5, 0, 255).astype(np.uint8)
        return np.full((len(prim), 3), 160, np.uint8)

    def _frame_state(self, stamp: float, light: Light | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-triangle light factors [F] uint16 and posed mover triangles [Fm, 3, 3] (or None) of one frame."""
        if light is None and self.motion is None:
            return self._light, None
        c = self.config
        movers = None
        normals = self._normals
        if self.motion is not None:
            movers = self.motion.corners_at(stamp)
            normals = normals.copy()
            normals[self._num_static:] = _normals(movers)
        if light is None:
            factors = self._light.copy()
            factors[self._num_static:] = light_factors(normals[self._num_static:], c.light_dir, c.ambient, c.diffuse)
        else:
            factors = light_factors(normals, light.direction, c.ambient * light.intensity, c.diffuse * light.intensity)
        return factors, movers

    def render(self, K: Intrinsics, T_world_cam: np.ndarray, stamp: float = 0.0,
               frame_id: str = "camera_color_optical_frame", light: Light | None = None) -> Frame:
        """Render one frame (all images [H, W]); ``light`` replaces the fixed light for this frame, and
        movers (if any) are posed at ``stamp`` seconds."""
        factors, movers = self._frame_state(stamp, light)
        if self._gl is not None:
            if factors is not self._gl_light:
                self._gl.set_light(factors)
                self._gl_light = factors
            if movers is not None:
                self._gl.set_mover_corners(movers, self._num_static)
            f = self._gl.render(K, T_world_cam, stamp, frame_id)
        else:
            f = self._raycast(K, T_world_cam, stamp, frame_id, factors, movers)
        if light is not None:
            f.rgb = apply_tint(f.rgb, light.tint)
        return f

    def _raycast(self, K, T_world_cam, stamp, frame_id, factors, movers) -> Frame:
        hits = self.cast(K, T_world_cam, movers)
        t = hits["depth"]
        miss = ~np.isfinite(t)
        prim = hits["prim"].astype(np.int32)
        any_miss = bool(miss.any())
        if any_miss:
            prim[miss] = 0  # shade misses like triangle 0, then blank them
        albedo = self._colors(prim, hits["uv"])
        rgb = np.minimum((albedo.astype(np.uint32) * factors[prim, None]) >> 8, 255).astype(np.uint8)
        depth = t.astype(np.float32, copy=True)
        sem = self.mesh.tri_class[prim]
        ins = self.mesh.tri_instance[prim]
        if any_miss:
            rgb[miss] = 0
            depth[miss] = 0.0
            sem[miss] = 0
            ins[miss] = 0
        H, W = K.height, K.width
        return Frame(rgb.reshape(H, W, 3), depth.reshape(H, W), K, np.asarray(T_world_cam, np.float64), float(stamp),
                     sem.reshape(H, W), ins.reshape(H, W), frame_id)


def _surface_samples(v: np.ndarray, spacing: float) -> np.ndarray:
    """Points covering triangles v [T, 3, 3] on a barycentric lattice finer than ``spacing`` -> [P, 3]."""
    e1, e2 = v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]
    n = np.ceil(np.maximum(np.linalg.norm(e1, axis=1), np.linalg.norm(e2, axis=1)) / spacing).astype(np.int64)
    n = np.maximum(n, 1)
    out = []
    for k in np.unique(n):
        sel = n == k
        i, j = np.meshgrid(np.arange(k + 1), np.arange(k + 1), indexing="ij")
        keep = (i + j) <= k
        a, b = i[keep] / k, j[keep] / k  # [P_k]
        pts = v[sel, 0, None] + a[None, :, None] * e1[sel, None] + b[None, :, None] * e2[sel, None]  # [T_k, P_k, 3]
        out.append(pts.reshape(-1, 3))
    return np.concatenate(out) if out else np.zeros((0, 3))


def occupancy_from_mesh(mesh: SceneMesh, floor_z: float = 0.0, clearance: float = 0.3, resolution: float = 0.05,
                        probe_height: float = 1.8, step_height: float = 0.05, floor_tol: float = 0.08) -> OccupancyGrid:
    """Where a robot of radius ``clearance`` and height ``probe_height`` may stand on the floor ``floor_z``.

    A cell is free when (1) a ray cast down from ``probe_height`` meets a surface within
    ``floor_tol`` of the floor (there is floor there, nothing in between) and (2) no triangle surface
    passes through the cell between ``step_height`` (rugs and thresholds are drivable) and
    ``probe_height``. Obstacles are then dilated by ``clearance``. Surfaces are sampled directly,
    so thin legs and wall slabs count and no closed-mesh assumption is needed: it works for
    procedural worlds and scans alike.
    """
    from scipy import ndimage

    if resolution <= 0 or clearance < 0 or probe_height <= step_height:
        raise ValueError(f"occupancy: bad resolution={resolution}, clearance={clearance} or probe_height={probe_height}")
    o3d = _o3d()
    lo, hi = mesh.bounds()
    origin = (float(lo[0]) - resolution, float(lo[1]) - resolution)
    nx = int(np.ceil((hi[0] - origin[0]) / resolution)) + 1
    ny = int(np.ceil((hi[1] - origin[1]) / resolution)) + 1
    # (1) floor present under each cell centre
    xs = origin[0] + (np.arange(nx) + 0.5) * resolution
    ys = origin[1] + (np.arange(ny) + 0.5) * resolution
    gx, gy = np.meshgrid(xs, ys)  # [ny, nx]
    z0 = floor_z + probe_height
    rays = np.stack([gx, gy, np.full_like(gx, z0), np.zeros_like(gx), np.zeros_like(gx), -np.ones_like(gx)], -1)
    t = _scene(o3d, mesh).cast_rays(o3d.core.Tensor(rays.reshape(-1, 6).astype(np.float32)))["t_hit"].numpy()
    t = t.reshape(ny, nx)
    floor = np.isfinite(t) & (np.abs(z0 - t - floor_z) <= floor_tol)
    # (2) obstacles: surface samples inside the robot's height band
    v = mesh.vertices[mesh.triangles].astype(np.float64)  # [F, 3, 3]
    zmin, zmax = v[:, :, 2].min(1), v[:, :, 2].max(1)
    band = (zmax > floor_z + step_height) & (zmin < z0)
    pts = _surface_samples(v[band], resolution / 2)
    pts = pts[(pts[:, 2] > floor_z + step_height) & (pts[:, 2] < z0)]
    cells = np.floor((pts[:, :2] - np.asarray(origin)) / resolution).astype(np.int64)
    inside = (cells[:, 0] >= 0) & (cells[:, 0] < nx) & (cells[:, 1] >= 0) & (cells[:, 1] < ny)
    blocked = np.zeros((ny, nx), bool)
    blocked[cells[inside, 1], cells[inside, 0]] = True
    free = floor & ~blocked
    r = int(np.ceil(clearance / resolution))
    if r > 0:
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        disk = (xx**2 + yy**2) <= (clearance / resolution) ** 2 + 1e-9
        free = ~ndimage.binary_dilation(~free, structure=disk)
    return OccupancyGrid(free, resolution, origin, floor_z, clearance)
