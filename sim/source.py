"""SimSource: a scene (procedural apartment or a user's scan) + renderer + camera trajectory -> Frames.

This is the one place that turns a ``SimConfig`` into a stream of frames; the CLI (`regconsist sim
render`), the demo, benchmarks and the ROS camera source all use it.

``world="hard"`` (or the four fields ``shared_textures``, ``lighting``, ``clutter``, ``motion``) makes
an evaluation world where a pixel's colour no longer tells its class and the scene changes between
views; see docs/world.md. Registration assumes a static scene, so ``motion`` is for evaluation only.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

from regconsist_ros.sim.frame import Frame, Intrinsics
from regconsist_ros.sim.mesh import SceneMesh
from regconsist_ros.sim.occupancy import OccupancyGrid
from regconsist_ros.sim.render import RenderConfig, Renderer, occupancy_from_mesh
from regconsist_ros.sim.world.lighting import frame_light
from regconsist_ros.sim.world.motion import MotionScript

WORLDS = ("default", "hard")
# what world="hard" sets, for each of these fields left at its default
HARD_WORLD = {"shared_textures": True, "lighting": 1.0, "clutter": 1.0, "motion": 1.0}


@dataclass
class SimConfig:
    """What to render: scene, camera, trajectory, frame count."""

    scene: str = field(default="apartment", metadata={"help": "'apartment' (procedural, seeded) or a scan: .ply, .glb, .gltf, .obj or a Replica directory"})
    seed: int = field(default=0, metadata={"help": "seed of the apartment and of the trajectory"})
    frames: int = field(default=100, metadata={"help": "number of frames"})
    trajectory: Literal["explore", "grid", "spline"] = field(default="explore", metadata={"help": "camera path"})
    width: int = field(default=320, metadata={"help": "image width (pixels)"})
    height: int = field(default=240, metadata={"help": "image height (pixels)"})
    hfov: float = field(default=90.0, metadata={"help": "horizontal field of view (degrees)"})
    camera_height: float = field(default=1.0, metadata={"help": "camera height above the floor (m)"})
    step: float = field(default=0.1, metadata={"help": "explore/spline: metres per frame; grid: lattice spacing"})
    fps: float = field(default=10.0, metadata={"help": "frame rate used for the stamps"})
    clearance: float = field(default=0.3, metadata={"help": "robot radius kept free of obstacles (m)"})
    floor_z: float = field(default=0.0, metadata={"help": "floor height of a scan (m, after up-axis conversion)"})
    up_axis: str = field(default="", metadata={"help": "scan up axis 'y' or 'z' (default: z for PLY, y for glTF/OBJ)"})
    backend: Literal["auto", "raycast", "gl"] = field(default="auto", metadata={"help": "renderer: gl (OpenGL via headless EGL), raycast (Open3D), auto = gl when available"})
    nthreads: int = field(default=1, metadata={"help": "renderer CPU threads (0 = all cores)"})
    world: Literal["default", "hard"] = field(default="default", metadata={"help": "'hard' = evaluation world: sets shared_textures, lighting 1, clutter 1 and motion 1 where those are left at their defaults"})
    shared_textures: bool = field(default=False, metadata={"help": "apartment: all classes draw their materials from one shared pool (colour does not identify the class)"})
    lighting: float = field(default=0.0, metadata={"help": "amplitude of per-frame seeded light direction, intensity and tint (0 = fixed light; 0..3)"})
    clutter: float = field(default=0.0, metadata={"help": "apartment: extra seeded small objects on floors and surfaces (0 = none, 1 = ~6 per room; 0..4)"})
    motion: float = field(default=0.0, metadata={"help": "apartment: amplitude of scripted object motion: doors swing, chairs and objects slide (0 = static; 0..2; evaluation only)"})

    def __post_init__(self):
        if self.frames < 1:
            raise ValueError(f"SimConfig.frames must be >= 1, got {self.frames}")
        if not (8 <= self.width <= 4096 and 8 <= self.height <= 4096):
            raise ValueError(f"SimConfig image size must be within 8..4096, got {self.width}x{self.height}")
        if not 10 <= self.hfov <= 170:
            raise ValueError(f"SimConfig.hfov must be in [10, 170] degrees, got {self.hfov}")
        if self.step <= 0 or self.fps <= 0:
            raise ValueError(f"SimConfig.step and fps must be > 0, got step={self.step}, fps={self.fps}")
        if not 0.1 <= self.camera_height <= 3.0:
            raise ValueError(f"SimConfig.camera_height must be in [0.1, 3] m, got {self.camera_height}")
        if self.up_axis not in ("", "y", "z"):
            raise ValueError(f"SimConfig.up_axis must be 'y', 'z' or empty, got {self.up_axis!r}")
        if self.scene != "apartment" and not Path(self.scene).exists():
            raise ValueError(f"SimConfig.scene: {self.scene!r} is neither 'apartment' nor an existing scan file/directory")
        if self.world not in WORLDS:
            raise ValueError(f"SimConfig.world must be one of {WORLDS}, got {self.world!r}")
        if self.world == "hard":
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            for name, value in HARD_WORLD.items():
                if getattr(self, name) == defaults[name]:
                    setattr(self, name, value)
        if not isinstance(self.shared_textures, bool):
            raise ValueError(f"SimConfig.shared_textures must be a bool, got {self.shared_textures!r}")
        if not 0.0 <= self.lighting <= 3.0:
            raise ValueError(f"SimConfig.lighting must be in [0, 3], got {self.lighting}")
        if not 0.0 <= self.clutter <= 4.0:
            raise ValueError(f"SimConfig.clutter must be in [0, 4], got {self.clutter}")
        if not 0.0 <= self.motion <= 2.0:
            raise ValueError(f"SimConfig.motion must be in [0, 2], got {self.motion}")
        if self.scene != "apartment" and (self.shared_textures or self.clutter or self.motion):
            raise ValueError(f"SimConfig: shared_textures={self.shared_textures}, clutter={self.clutter} and "
                             f"motion={self.motion} apply only to scene='apartment', not to the scan {self.scene!r}")

    @property
    def intrinsics(self) -> Intrinsics:
        return Intrinsics.from_fov(self.width, self.height, self.hfov)


def load_scene_mesh(cfg: SimConfig) -> tuple[SceneMesh, dict]:
    """The scene's mesh and a description (procedural apartments also report their floor plan)."""
    mesh, info, _ = load_scene_with_motion(cfg)
    return mesh, info


def load_scene_with_motion(cfg: SimConfig) -> tuple[SceneMesh, dict, MotionScript | None]:
    """Like :func:`load_scene_mesh`, plus the motion script when ``cfg.motion > 0`` (then the mesh is
    the script's, movers last, in their rest pose)."""
    if cfg.scene == "apartment":
        from regconsist_ros.sim.world.apartment import ApartmentConfig, generate_apartment

        ap = generate_apartment(ApartmentConfig(seed=cfg.seed, shared_textures=cfg.shared_textures,
                                                clutter=cfg.clutter, motion=cfg.motion))
        info = {"scene": "apartment", "seed": cfg.seed,
                "rooms": [{"kind": r.kind, "x0": r.x0, "y0": r.y0, "x1": r.x1, "y1": r.y1} for r in ap.plan.rooms]}
        motion = ap.motion_script()
        if motion is not None:
            info["movers"] = [{"kind": m.kind, "instances": list(m.instances)} for m in motion.movers]
            return motion.mesh, info, motion
        return ap.mesh, info, None
    from regconsist_ros.sim.scans import load_scene

    kw = {"up_axis": cfg.up_axis} if cfg.up_axis else {}
    return load_scene(cfg.scene, **kw), {"scene": str(cfg.scene)}, None


class SimSource:
    """Renders the frames of ``cfg``: ``len(src)``, ``src[i]``, iteration, ``src.poses``."""

    def __init__(self, cfg: SimConfig):
        from regconsist_ros.sim.trajectories import make_trajectory

        self.cfg = cfg
        self.mesh, self.info, self.motion = load_scene_with_motion(cfg)
        self.renderer = Renderer(self.mesh, RenderConfig(backend=cfg.backend, nthreads=cfg.nthreads), motion=self.motion)
        # with motion, trajectories keep clear of every pose a mover takes
        free_mesh = self.mesh if self.motion is None else self.motion.swept_mesh()
        self.occupancy: OccupancyGrid = occupancy_from_mesh(
            free_mesh, floor_z=cfg.floor_z, clearance=cfg.clearance, probe_height=min(1.8, cfg.camera_height + 0.6))
        kw = {"spacing": cfg.step} if cfg.trajectory == "grid" else {"step": cfg.step}
        self.trajectory = make_trajectory(cfg.trajectory, self.occupancy, cfg.frames, seed=cfg.seed,
                                          height=cfg.camera_height, **kw)
        self.poses = self.trajectory.poses  # [N, 4, 4]
        self.intrinsics = cfg.intrinsics

    @property
    def classes(self):
        return self.mesh.classes

    def __len__(self) -> int:
        return len(self.poses)

    def __getitem__(self, i: int) -> Frame:
        if not -len(self) <= i < len(self):
            raise IndexError(f"frame {i} out of range for {len(self)} frames")
        i %= len(self)
        light = frame_light(self.cfg.seed, i, self.cfg.lighting, self.renderer.config.light_dir) if self.cfg.lighting > 0 else None
        f = self.renderer.render(self.intrinsics, self.poses[i], stamp=i / self.cfg.fps, light=light)
        f.meta["index"] = i
        return f

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self)):
            yield self[i]


def frames_meta(src: SimSource) -> dict:
    """Metadata written next to a rendered sequence."""
    return {"source": "regconsist sim render", "config": dataclasses.asdict(src.cfg), **src.info,
            "trajectory": src.trajectory.name, "frames": len(src)}
