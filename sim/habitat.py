"""Habitat-sim adapter: render a Habitat scene into our :class:`~regconsist_ros.sim.frame.Frame` records.

habitat-sim is optional (conda only) and imported lazily inside functions; without it
:class:`HabitatSource` raises :class:`HabitatUnavailable` and the embedded world remains the
default simulator.

Conventions bridged here:

- Habitat's world is Y-up; ours is Z-up: ``p_ours = (x, -z, y)`` for ``p_hab = (x, y, z)``
  (the rotation ``HAB_TO_OURS``).
- A Habitat camera looks down its -Z with +Y up (OpenGL); our cameras are optical (x right,
  y down, z forward): ``R_optical = R_habitat_camera @ diag(1, -1, -1)``.
- Quaternions are (qx, qy, qz, qw) as in :mod:`regconsist_ros.sim.poses`; habitat-sim's numpy-quaternion
  objects are converted with ``habitat_sim.utils.common.quat_from_coeffs / quat_to_coeffs``,
  which use the same (x, y, z, w) order.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from regconsist_ros.sim.frame import Frame, Intrinsics
from regconsist_ros.sim.poses import rot_to_quat, quat_to_rot, validate_pose
from regconsist_ros.sim.world.classes import ClassTable

HAB_TO_OURS = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # Y-up -> Z-up
GL_TO_OPTICAL = np.diag([1.0, -1.0, -1.0])  # camera axes: (right, up, back) -> (right, down, forward)

UUIDS = {"color": "color", "depth": "depth", "semantic": "semantic"}
INSTALL_HINT = (
    "habitat-sim is not installed. Install it with conda: "
    "`conda install habitat-sim -c conda-forge -c aihabitat` (it is not on PyPI). "
    "Without it, use the embedded world, which is the default simulator."
)


class HabitatUnavailable(ImportError):
    """habitat-sim cannot be imported."""


def _import_habitat():
    """-> the ``habitat_sim`` module, or raise HabitatUnavailable with install instructions."""
    try:
        import habitat_sim
        import habitat_sim.utils.common  # noqa: F401  (quat_from_coeffs / quat_to_coeffs)
    except ImportError as e:
        raise HabitatUnavailable(f"{INSTALL_HINT} (import error: {e})") from e
    return habitat_sim


# --------------------------------------------------------------------------------------------
# Pose conversion (pure; no habitat import)
# --------------------------------------------------------------------------------------------


def habitat_to_optical(position, quat_xyzw) -> np.ndarray:
    """Habitat camera pose (world position [3], rotation (qx, qy, qz, qw), Y-up world, camera
    looking down -Z) -> T_world_cam [4, 4] in our Z-up world with optical camera axes."""
    R_hab = quat_to_rot(quat_xyzw)  # habitat camera -> habitat world
    T = np.eye(4)
    T[:3, :3] = HAB_TO_OURS @ R_hab @ GL_TO_OPTICAL
    T[:3, 3] = HAB_TO_OURS @ np.asarray(position, dtype=np.float64).reshape(3)
    return T


def optical_to_habitat(T_world_cam) -> tuple[np.ndarray, np.ndarray]:
    """T_world_cam [4, 4] (our Z-up world, optical axes) -> (Habitat position [3],
    Habitat rotation (qx, qy, qz, qw) with qw >= 0). Inverse of :func:`habitat_to_optical`."""
    T = validate_pose(T_world_cam, "T_world_cam")
    R_hab = HAB_TO_OURS.T @ T[:3, :3] @ GL_TO_OPTICAL
    return HAB_TO_OURS.T @ T[:3, 3], rot_to_quat(R_hab)


# --------------------------------------------------------------------------------------------
# Simulator wrapper
# --------------------------------------------------------------------------------------------


class HabitatSource:
    """Renders Frames from a Habitat scene at requested camera poses.

    One agent carries a colour, a depth and (optionally) a semantic camera, all at the agent's
    origin, so placing the agent at the requested camera pose places the sensors there.
    """

    def __init__(
        self,
        scene_path,
        width: int = 640,
        height: int = 480,
        hfov_deg: float = 90.0,
        semantic: bool = True,
        scene_dataset_config: str | Path | None = None,
    ):
        hs = _import_habitat()
        self._hs = hs
        self.scene_path = str(scene_path)
        self.semantic = bool(semantic)
        self.intrinsics = Intrinsics.from_fov(width, height, hfov_deg)
        self._sim = None
        self._sim = hs.Simulator(self._configuration(hs, scene_dataset_config, hfov_deg))
        self._agent = self._sim.initialize_agent(0)
        self.classes: ClassTable | None = None
        self._class_lut = np.zeros(1, np.uint16)  # semantic object id -> class index
        if self.semantic:
            self.classes, self._class_lut = semantic_lookup(self._sim.semantic_scene)

    def _configuration(self, hs, scene_dataset_config, hfov_deg: float):
        """habitat_sim.Configuration with one camera per modality on agent 0."""
        modalities = [("color", hs.SensorType.COLOR), ("depth", hs.SensorType.DEPTH)]
        if self.semantic:
            modalities.append(("semantic", hs.SensorType.SEMANTIC))
        specs = []
        for name, sensor_type in modalities:
            spec = hs.CameraSensorSpec()
            spec.uuid = UUIDS[name]
            spec.sensor_type = sensor_type
            spec.resolution = [self.intrinsics.height, self.intrinsics.width]
            spec.position = [0.0, 0.0, 0.0]
            spec.hfov = float(hfov_deg)
            specs.append(spec)
        agent_cfg = hs.agent.AgentConfiguration()
        agent_cfg.sensor_specifications = specs
        sim_cfg = hs.SimulatorConfiguration()
        sim_cfg.scene_id = self.scene_path
        if scene_dataset_config is not None:
            sim_cfg.scene_dataset_config_file = str(scene_dataset_config)
        return hs.Configuration(sim_cfg, [agent_cfg])

    def render(self, T_world_cam, stamp: float = 0.0) -> Frame:
        """Render the scene from the optical camera pose ``T_world_cam`` (our Z-up world)."""
        if self._sim is None:
            raise RuntimeError("HabitatSource is closed")
        from habitat_sim.utils.common import quat_from_coeffs, quat_to_coeffs

        position, quat = optical_to_habitat(T_world_cam)
        state = self._hs.AgentState()
        state.position = position.astype(np.float32)
        state.rotation = quat_from_coeffs(quat)
        self._agent.set_state(state)
        obs = self._sim.get_sensor_observations()

        sensor = self._agent.get_state().sensor_states[UUIDS["color"]]
        T_actual = habitat_to_optical(np.asarray(sensor.position, np.float64), quat_to_coeffs(sensor.rotation))
        rgb = np.ascontiguousarray(np.asarray(obs[UUIDS["color"]])[..., :3], dtype=np.uint8)  # [H, W, 3]
        depth = np.asarray(obs[UUIDS["depth"]], dtype=np.float32)  # [H, W] metres, z-depth
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(0)).astype(np.float32)
        semantic = instance = None
        if self.semantic:
            semantic, instance = self.labels(np.asarray(obs[UUIDS["semantic"]]))
        return Frame(
            rgb=rgb,
            depth=depth,
            intrinsics=self.intrinsics,
            T_world_cam=T_actual,
            stamp=float(stamp),
            semantic=semantic,
            instance=instance,
            meta={"source": "habitat", "scene": self.scene_path},
        )

    def labels(self, object_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Habitat semantic object ids [H, W] -> (class index [H, W] uint16, instance = id + 1
        [H, W] uint16). Ids without a known object get class 0; ids too large for uint16 -> 0."""
        ids = np.asarray(object_ids).astype(np.int64)
        known = (ids >= 0) & (ids < len(self._class_lut))
        semantic = np.where(known, self._class_lut[np.clip(ids, 0, len(self._class_lut) - 1)], 0).astype(np.uint16)
        instance = np.where((ids >= 0) & (ids < np.iinfo(np.uint16).max), ids + 1, 0).astype(np.uint16)
        return semantic, instance

    def close(self) -> None:
        """Release the simulator (idempotent)."""
        if self._sim is not None:
            self._sim.close()
            self._sim = None

    def __enter__(self) -> "HabitatSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _object_id(obj, index: int) -> int:
    """The id a semantic observation uses for a semantic-scene object."""
    sid = getattr(obj, "semantic_id", None)
    if isinstance(sid, (int, np.integer)):
        return int(sid)
    m = re.search(r"(\d+)$", str(getattr(obj, "id", "")))
    return int(m.group(1)) if m else index


def semantic_lookup(semantic_scene) -> tuple[ClassTable | None, np.ndarray]:
    """Habitat semantic scene -> (ClassTable by category index or None, lut [max id + 1] uint16
    mapping object id -> category index; negative / missing categories -> 0)."""
    objects = list(getattr(semantic_scene, "objects", None) or [])
    pairs, names = [], {}
    for i, obj in enumerate(objects):
        category = getattr(obj, "category", None) if obj is not None else None
        if category is None:
            continue
        cls = int(category.index())
        cls = cls if 0 <= cls < np.iinfo(np.uint16).max else 0
        pairs.append((_object_id(obj, i), cls))
        if cls > 0:
            names.setdefault(cls, str(category.name()))
    if not pairs:
        return None, np.zeros(1, np.uint16)
    lut = np.zeros(max(oid for oid, _ in pairs) + 1, np.uint16)
    for oid, cls in pairs:
        if oid >= 0:
            lut[oid] = cls
    return _category_table(names), lut


def _category_table(names: dict[int, str]) -> ClassTable | None:
    """{category index: name} -> ClassTable with those ids (gaps named class_<i>, repeats suffixed)."""
    if not names:
        return None
    table, seen = ["void"], {"void"}
    for i in range(1, max(names) + 1):
        name = names.get(i, f"class_{i}")
        base, k = name, 1
        while name in seen:
            k += 1
            name = f"{base}_{k}"
        seen.add(name)
        table.append(name)
    return ClassTable.from_names(table)


class HabitatTrajectorySource:
    """A camera path through a Habitat scene: poses planned on the scene's mesh by our trajectory
    generator (``planner``: a :class:`regconsist_ros.sim.source.SimSource` over the same scene file, or anything
    with ``poses [N, 4, 4]`` and ``cfg.fps``), frames rendered by habitat-sim. Indexable like the
    other frame sources (``len``, ``[i]``), so the camera source node can publish it."""

    def __init__(self, scene_path, planner, width: int = 640, height: int = 480, hfov_deg: float = 90.0,
                 semantic: bool = True):
        self.habitat = HabitatSource(scene_path, width=width, height=height, hfov_deg=hfov_deg, semantic=semantic)
        self.poses = np.asarray(planner.poses)
        self.fps = float(planner.cfg.fps)
        self.intrinsics = self.habitat.intrinsics
        self.classes = self.habitat.classes

    def __len__(self) -> int:
        return len(self.poses)

    def __getitem__(self, i: int) -> Frame:
        if not -len(self) <= i < len(self):
            raise IndexError(f"frame {i} out of range for {len(self)} frames")
        i %= len(self)
        return self.habitat.render(self.poses[i], stamp=i / self.fps)
