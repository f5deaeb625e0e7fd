"""OpenGL rasterizer backend (moderngl, headless EGL): the same Frames as the ray caster, faster.

It runs on any EGL implementation: Mesa's llvmpipe on a CPU-only machine (no display needed; set
``LP_NUM_THREADS`` to bound its threads) or a GPU driver. The conventions are identical to
:mod:`regconsist_ros.sim.render`:
- pixel (x, y) is sampled at its centre, which lies at integer coordinates;
- depth is z-depth in metres;
- each triangle is flat-lit with the same factor the ray caster uses;
- textures use the same nearest-texel lookup from the same atlas.

The GPU writes the shaded colour, z-depth and triangle id; class and instance ids are looked up on
the CPU from the triangle id. Per-frame lighting rewrites the light buffer (``set_light``) and moving
objects rewrite the tail of the position buffer (``set_mover_corners``); both stay untouched on the
default path.
"""
from __future__ import annotations

import numpy as np

from regconsist_ros.sim.frame import Frame, Intrinsics
from regconsist_ros.sim.mesh import SceneMesh
from regconsist_ros.sim.poses import invert, validate_pose

ATLAS_WIDTH = 4096  # texels per row of the atlas texture

_VERTEX = """
#version 330
uniform mat4 world_to_clip;   // projection (from the intrinsics) x world-to-camera
uniform mat4 world_to_cam;
in vec3 pos;                  // world metres
in vec2 uv;                   // texels of the triangle's own texture
in vec3 vcol;                 // vertex colour 0..1 (untextured meshes)
in float light;               // flat light factor of the triangle
in ivec3 tex;                 // atlas offset, width, height (width 0: use vcol)
out vec2 v_uv;
out vec3 v_col;
out float v_z;
flat out float v_light;
flat out ivec3 v_tex;
void main() {
    v_uv = uv;
    v_col = vcol;
    v_light = light;
    v_tex = tex;
    v_z = (world_to_cam * vec4(pos, 1.0)).z;
    gl_Position = world_to_clip * vec4(pos, 1.0);
}
"""

_FRAGMENT = """
#version 330
uniform sampler2D atlas;
uniform int atlas_width;
in vec2 v_uv;
in vec3 v_col;
in float v_z;
flat in float v_light;
flat in ivec3 v_tex;
layout(location = 0) out vec4 out_rgb;
layout(location = 1) out float out_depth;
layout(location = 2) out uint out_prim;
void main() {
    vec3 albedo;
    if (v_tex.y > 0) {
        ivec2 t = ivec2(floor(v_uv));
        int px = ((t.x % v_tex.y) + v_tex.y) % v_tex.y;
        int py = ((t.y % v_tex.z) + v_tex.z) % v_tex.z;
        int idx = v_tex.x + py * v_tex.y + px;
        albedo = texelFetch(atlas, ivec2(idx % atlas_width, idx / atlas_width), 0).rgb;
    } else {
        albedo = v_col;
    }
    out_rgb = vec4(albedo * v_light, 1.0);
    out_depth = v_z;
    out_prim = uint(gl_PrimitiveID + 1);
}
"""


class GLUnavailable(RuntimeError):
    """No headless OpenGL context could be created."""


def _context():
    try:
        import moderngl
    except ImportError as e:
        raise GLUnavailable(f"moderngl is not installed ({e}); `pip install moderngl`, or use the ray-casting backend") from e
    try:
        return moderngl, moderngl.create_standalone_context(backend="egl", require=330)
    except Exception as e:  # noqa: BLE001 - any driver failure means: no GL here
        raise GLUnavailable(
            f"no headless OpenGL 3.3 context via EGL ({e}); on Debian/Ubuntu install "
            "`libegl1 libegl-mesa0 libgl1-mesa-dri`, or use the ray-casting backend"
        ) from e


def projection(K: Intrinsics, near: float = 0.01, far: float = 1000.0) -> np.ndarray:
    """[4, 4] optical camera -> clip space so that pixel centre (x, y) (integers) maps to GL pixel
    (x + 0.5, y + 0.5). Image rows increase with GL window y, so the framebuffer read back (bottom
    row first) is already in image order."""
    W, H = K.width, K.height
    P = np.zeros((4, 4))
    P[0, 0] = 2 * K.fx / W
    P[0, 2] = (2 * K.cx + 1) / W - 1
    P[1, 1] = 2 * K.fy / H
    P[1, 2] = (2 * K.cy + 1) / H - 1
    P[2, 2] = (far + near) / (far - near)
    P[2, 3] = -2 * far * near / (far - near)
    P[3, 2] = 1.0
    return P


class GLRenderer:
    """Rasterizes a SceneMesh: ``render(K, T_world_cam)`` -> Frame, like :class:`regconsist_ros.sim.render.Renderer`."""

    def __init__(self, mesh: SceneMesh, light: np.ndarray, uv_frame: np.ndarray | None,
                 tex_info: np.ndarray | None, atlas: np.ndarray | None):
        """``light`` [F] factors, ``uv_frame`` [F, 6] texel uv frames, ``tex_info`` [F, 3] (offset, w, h),
        ``atlas`` [N, 3] uint8: the shading data the ray caster prepared, so both backends agree."""
        self.moderngl, self.ctx = _context()
        with self.ctx:
            self._setup(mesh, light, uv_frame, tex_info, atlas)

    def _setup(self, mesh, light, uv_frame, tex_info, atlas) -> None:
        self.mesh = mesh
        F = mesh.num_triangles
        corners = mesh.vertices[mesh.triangles].reshape(-1, 3).astype(np.float32)  # [3F, 3]
        if uv_frame is not None:
            u0, e1, e2 = uv_frame[:, 0:2], uv_frame[:, 2:4], uv_frame[:, 4:6]
            uv = np.stack([u0, u0 + e1, u0 + e2], 1).reshape(-1, 2).astype(np.float32)  # [3F, 2]
            tex = np.repeat(tex_info.astype(np.int32), 3, axis=0)  # [3F, 3]
        else:
            uv = np.zeros((3 * F, 2), np.float32)
            tex = np.zeros((3 * F, 3), np.int32)
        if mesh.vertex_colors is not None and uv_frame is None:
            vcol = (mesh.vertex_colors[mesh.triangles].reshape(-1, 3) / 255.0).astype(np.float32)
        else:
            vcol = np.full((3 * F, 3), 160 / 255.0, np.float32)
        lit = np.repeat((light / 256.0).astype(np.float32), 3)  # [3F]
        self.prog = self.ctx.program(vertex_shader=_VERTEX, fragment_shader=_FRAGMENT)
        bufs = [(self.ctx.buffer(a.tobytes()), fmt, name) for a, fmt, name in (
            (corners, "3f", "pos"), (uv, "2f", "uv"), (vcol, "3f", "vcol"), (lit, "1f", "light"), (tex, "3i", "tex"))]
        self._pos_buf, self._light_buf = bufs[0][0], bufs[3][0]
        self.vao = self.ctx.vertex_array(self.prog, [(b, fmt, name) for b, fmt, name in bufs])
        if atlas is None:
            atlas = np.zeros((1, 3), np.uint8)
        rows = -(-len(atlas) // ATLAS_WIDTH)
        if rows > 16384:
            raise GLUnavailable(f"texture atlas of {len(atlas)} texels exceeds one GL texture; use the ray-casting backend")
        padded = np.zeros((rows * ATLAS_WIDTH, 4), np.uint8)
        padded[: len(atlas), :3] = atlas
        self.atlas = self.ctx.texture((ATLAS_WIDTH, rows), 4, padded.tobytes())
        self.atlas.filter = (self.moderngl.NEAREST, self.moderngl.NEAREST)
        self.prog["atlas"].value = 0
        self.prog["atlas_width"].value = ATLAS_WIDTH
        self._fbo = None
        self._fbo_size = None

    def set_light(self, light: np.ndarray) -> None:
        """Replace the per-triangle light factors: ``light`` [F] (8.8 fixed point, as at construction)."""
        light = np.asarray(light)
        if light.shape != (self.mesh.num_triangles,):
            raise ValueError(f"set_light: need one factor per triangle [{self.mesh.num_triangles}], got {light.shape}")
        with self.ctx:
            self._light_buf.write(np.repeat((light / 256.0).astype(np.float32), 3).tobytes())

    def set_mover_corners(self, corners: np.ndarray, first: int) -> None:
        """Move triangles ``first`` .. ``first + len(corners)``: ``corners`` [Fm, 3, 3] world metres."""
        corners = np.ascontiguousarray(corners, np.float32)
        if corners.ndim != 3 or corners.shape[1:] != (3, 3) or first < 0 or first + len(corners) > self.mesh.num_triangles:
            raise ValueError(f"set_mover_corners: corners {corners.shape} from triangle {first} do not fit "
                             f"{self.mesh.num_triangles} triangles")
        with self.ctx:
            self._pos_buf.write(corners.tobytes(), offset=first * 3 * 3 * 4)

    def _framebuffer(self, W: int, H: int):
        if self._fbo_size != (W, H):
            if self._fbo is not None:
                self._fbo.release()
            c = self.ctx
            self._rgb = c.renderbuffer((W, H), 4)
            self._depth = c.renderbuffer((W, H), 1, dtype="f4")
            self._prim = c.renderbuffer((W, H), 1, dtype="u4")
            self._zbuf = c.depth_renderbuffer((W, H))
            self._fbo = c.framebuffer([self._rgb, self._depth, self._prim], self._zbuf)
            self._fbo_size = (W, H)
        return self._fbo

    def render(self, K: Intrinsics, T_world_cam: np.ndarray, stamp: float = 0.0,
               frame_id: str = "camera_color_optical_frame") -> Frame:
        T = validate_pose(T_world_cam, "T_world_cam")
        with self.ctx:  # make this renderer's context current: several renderers may share a process
            rgb, depth, prim = self._draw(K, T)
        hit = prim > 0
        tri = np.where(hit, prim.astype(np.int64) - 1, 0)
        sem = np.where(hit, self.mesh.tri_class[tri], 0).astype(np.uint16)
        ins = np.where(hit, self.mesh.tri_instance[tri], 0).astype(np.uint16)
        depth[~hit] = 0.0
        rgb[~hit] = 0
        return Frame(rgb, depth, K, T, float(stamp), sem, ins, frame_id)

    def _draw(self, K: Intrinsics, T: np.ndarray):
        """Rasterize one view -> rgb [H, W, 3] uint8, depth [H, W] float32, triangle id + 1 [H, W] uint32."""
        W, H = K.width, K.height
        fbo = self._framebuffer(W, H)
        fbo.use()
        self.ctx.viewport = (0, 0, W, H)
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self.ctx.enable(self.moderngl.DEPTH_TEST)
        self.ctx.disable(self.moderngl.CULL_FACE)
        cam = invert(T)
        self.prog["world_to_cam"].write(cam.T.astype("f4").tobytes())  # GL matrices are column-major
        self.prog["world_to_clip"].write((projection(K) @ cam).T.astype("f4").tobytes())
        self.atlas.use(0)
        self.vao.render(self.moderngl.TRIANGLES)
        rgb = np.frombuffer(fbo.read(components=3, attachment=0), np.uint8).reshape(H, W, 3).copy()
        depth = np.frombuffer(fbo.read(components=1, attachment=1, dtype="f4"), np.float32).reshape(H, W).copy()
        prim = np.frombuffer(fbo.read(components=1, attachment=2, dtype="u4"), np.uint32).reshape(H, W)
        return rgb, depth, prim

    @property
    def info(self) -> str:
        """The GL renderer string (e.g. 'llvmpipe (LLVM 15.0.6, 256 bits)')."""
        with self.ctx:
            return f"{self.ctx.info['GL_RENDERER']} / {self.ctx.info['GL_VERSION']}"

    def release(self) -> None:
        """Free the GL context (also done when the renderer is garbage-collected)."""
        ctx, self.ctx = getattr(self, "ctx", None), None
        if ctx is not None:
            ctx.release()

    def __del__(self):
        try:
            self.release()
        except Exception:  # noqa: BLE001 - interpreter shutdown: the driver may already be gone
            pass
