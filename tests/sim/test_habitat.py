"""Tests for sim.habitat: pose conversion and HabitatSource against a fake habitat_sim module.

habitat-sim is not installable here; the fake module implements only the documented API that
sim.habitat uses, with quaternions stored as (x, y, z, w) coefficient arrays.
"""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from regconsist_ros.sim.frame import Frame
from regconsist_ros.sim.habitat import HabitatSource, HabitatUnavailable, habitat_to_optical, optical_to_habitat
from regconsist_ros.sim.poses import camera_from_yaw_pitch, look_at, quat_to_rot

# --------------------------------------------------------------------------------------------
# Pose conversion
# --------------------------------------------------------------------------------------------


def _random_pose(rng) -> np.ndarray:
    q = rng.normal(size=4)
    T = np.eye(4)
    T[:3, :3] = quat_to_rot(q)
    T[:3, 3] = rng.uniform(-5, 5, size=3)
    return T


def test_round_trip_random_poses():
    rng = np.random.default_rng(0)
    for _ in range(200):
        T = _random_pose(rng)
        p, q = optical_to_habitat(T)
        np.testing.assert_allclose(habitat_to_optical(p, q), T, atol=1e-12)
        q_in = rng.normal(size=4)
        q_in /= np.linalg.norm(q_in)
        p2, q2 = optical_to_habitat(habitat_to_optical(p, q_in))
        np.testing.assert_allclose(p2, p, atol=1e-12)
        np.testing.assert_allclose(abs(q2 @ q_in), 1.0, atol=1e-12)  # same rotation (q ~ -q)


def test_identity_habitat_camera_looks_along_our_plus_y():
    T = habitat_to_optical([1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(T[:3, 3], [1.0, -3.0, 2.0])  # (x, y, z)_hab -> (x, -z, y)
    np.testing.assert_allclose(T[:3, 2], [0.0, 1.0, 0.0], atol=1e-12)  # optical z: forward
    np.testing.assert_allclose(T[:3, 1], [0.0, 0.0, -1.0], atol=1e-12)  # optical y: down
    np.testing.assert_allclose(T[:3, 0], [1.0, 0.0, 0.0], atol=1e-12)  # optical x: right
    # ... which is exactly our look-at camera from (1, -3, 2) towards +y
    np.testing.assert_allclose(T, look_at([1.0, -3.0, 2.0], [1.0, 0.0, 2.0]), atol=1e-12)


def test_habitat_yaw_left_looks_along_our_minus_x():
    s = np.sin(np.pi / 4)
    T = habitat_to_optical([0.0, 0.0, 0.0], [0.0, s, 0.0, s])  # +90 deg about habitat +Y (up)
    np.testing.assert_allclose(T[:3, 2], [-1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(T[:3, 1], [0.0, 0.0, -1.0], atol=1e-12)


# --------------------------------------------------------------------------------------------
# Missing habitat_sim
# --------------------------------------------------------------------------------------------


def test_missing_habitat_sim_raises_with_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "habitat_sim", None)  # makes `import habitat_sim` fail
    with pytest.raises(HabitatUnavailable) as err:
        HabitatSource("scene.glb")
    msg = str(err.value)
    assert "habitat-sim is not installed" in msg
    assert "conda install habitat-sim -c conda-forge -c aihabitat" in msg
    assert "embedded world" in msg
    assert isinstance(err.value, ImportError)


# --------------------------------------------------------------------------------------------
# A fake habitat_sim
# --------------------------------------------------------------------------------------------

W, H = 8, 6
CATEGORIES = {0: (2, "chair"), 1: (5, "table"), 3: (2, "chair")}  # object id -> (class index, name)


def _make_fake_habitat():
    hs = types.ModuleType("habitat_sim")
    agent_mod = types.ModuleType("habitat_sim.agent")
    utils = types.ModuleType("habitat_sim.utils")
    common = types.ModuleType("habitat_sim.utils.common")
    hs.agent, hs.utils, utils.common = agent_mod, utils, common
    hs.log = {"configs": [], "states": []}

    class SensorType:
        COLOR, DEPTH, SEMANTIC = "COLOR", "DEPTH", "SEMANTIC"

    class CameraSensorSpec:
        def __init__(self):
            self.uuid, self.sensor_type, self.resolution, self.position, self.hfov = "", None, [128, 128], [0, 1.5, 0], 90.0

    class AgentConfiguration:
        def __init__(self):
            self.sensor_specifications = []

    class SimulatorConfiguration:
        def __init__(self):
            self.scene_id = ""

    class Configuration:
        def __init__(self, sim_cfg, agents):
            self.sim_cfg, self.agents = sim_cfg, agents

    class SixDOF:
        def __init__(self, position, rotation):
            self.position, self.rotation = position, rotation

    class AgentState:
        def __init__(self):
            self.position = np.zeros(3)
            self.rotation = np.array([0.0, 0.0, 0.0, 1.0])
            self.sensor_states = {}

    class Agent:
        def __init__(self, cfg):
            self.cfg, self.state = cfg, AgentState()

        def set_state(self, state):
            hs.log["states"].append(state)
            self.state = AgentState()
            self.state.position = np.asarray(state.position, np.float64).copy()
            self.state.rotation = np.asarray(state.rotation, np.float64).copy()
            for spec in self.cfg.sensor_specifications:  # sensors at their offset from the agent
                R = quat_to_rot(self.state.rotation)
                pos = self.state.position + R @ np.asarray(spec.position, np.float64)
                self.state.sensor_states[spec.uuid] = SixDOF(pos, self.state.rotation.copy())

        def get_state(self):
            return self.state

    class Category:
        def __init__(self, index, name):
            self._index, self._name = index, name

        def index(self):
            return self._index

        def name(self):
            return self._name

    class SemanticObject:
        def __init__(self, oid, category):
            self.id, self.category = f"_{oid}", category

    class Simulator:
        def __init__(self, config):
            hs.log["configs"].append(config)
            self.config = config
            self.closed = False
            objs = {oid: SemanticObject(oid, Category(*c)) for oid, c in CATEGORIES.items()}
            self.semantic_scene = types.SimpleNamespace(objects=[objs.get(i) for i in range(4)])

        def initialize_agent(self, agent_id):
            self.agent = Agent(self.config.agents[agent_id])
            return self.agent

        def get_sensor_observations(self):
            out = {}
            for spec in self.config.agents[0].sensor_specifications:
                h, w = spec.resolution
                if spec.sensor_type == SensorType.COLOR:
                    rgba = np.zeros((h, w, 4), np.uint8)
                    rgba[..., 0] = np.arange(w)[None] * 10
                    rgba[..., 1] = np.arange(h)[:, None] * 20
                    rgba[..., 3] = 255
                    out[spec.uuid] = rgba
                elif spec.sensor_type == SensorType.DEPTH:
                    d = np.full((h, w), 2.5, np.float32)
                    d[0, 0], d[0, 1] = np.inf, np.nan
                    out[spec.uuid] = d
                else:
                    sem = np.zeros((h, w), np.uint32)
                    sem[:, 2], sem[:, 3], sem[:, 4], sem[:, 5] = 1, 2, 3, 900  # 2: no category, 900: unknown
                    out[spec.uuid] = sem
            return out

        def close(self):
            self.closed = True

    def quat_from_coeffs(c):
        return np.asarray(c, np.float64).copy()

    def quat_to_coeffs(q):
        return np.asarray(q, np.float64).copy()

    for name, obj in dict(SensorType=SensorType, CameraSensorSpec=CameraSensorSpec, SimulatorConfiguration=SimulatorConfiguration,
                          Configuration=Configuration, AgentState=AgentState, Simulator=Simulator).items():
        setattr(hs, name, obj)
    agent_mod.AgentConfiguration = AgentConfiguration
    common.quat_from_coeffs, common.quat_to_coeffs = quat_from_coeffs, quat_to_coeffs
    return {"habitat_sim": hs, "habitat_sim.agent": agent_mod, "habitat_sim.utils": utils, "habitat_sim.utils.common": common}


@pytest.fixture
def fake_habitat(monkeypatch):
    mods = _make_fake_habitat()
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return mods["habitat_sim"]


def test_source_configures_one_camera_per_modality(fake_habitat):
    src = HabitatSource("/data/scene.glb", width=W, height=H, hfov_deg=70.0)
    (config,) = fake_habitat.log["configs"]
    assert config.sim_cfg.scene_id == "/data/scene.glb"
    specs = config.agents[0].sensor_specifications
    assert sorted(s.sensor_type for s in specs) == ["COLOR", "DEPTH", "SEMANTIC"]
    for s in specs:
        assert list(s.resolution) == [H, W]
        assert list(s.position) == [0.0, 0.0, 0.0]
        assert s.hfov == 70.0
    assert src.intrinsics.width == W and src.intrinsics.height == H
    assert src.intrinsics.fx == pytest.approx(0.5 * W / np.tan(np.radians(35.0)))


def test_render_frame_pose_and_labels(fake_habitat):
    T = camera_from_yaw_pitch([1.0, 2.0, 1.4], yaw=0.7, pitch=-0.2)
    with HabitatSource("scene.glb", width=W, height=H) as src:
        frame = src.render(T, stamp=3.25)
        sim = src._sim
    assert sim.closed

    # the agent was placed at the habitat pose implied by T, checked geometrically
    state = fake_habitat.log["states"][-1]
    np.testing.assert_allclose(state.position, [1.0, 1.4, -2.0], atol=1e-6)  # ours (x, y, z) -> hab (x, z, -y)
    R_hab = quat_to_rot(state.rotation)
    to_hab = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], float)  # our Z-up -> habitat Y-up
    np.testing.assert_allclose(R_hab @ [0, 0, -1], to_hab @ T[:3, 2], atol=1e-9)  # camera forward
    np.testing.assert_allclose(R_hab @ [0, 1, 0], to_hab @ -T[:3, 1], atol=1e-9)  # camera up

    assert isinstance(frame, Frame)
    assert frame.rgb.shape == (H, W, 3) and frame.rgb.dtype == np.uint8
    np.testing.assert_array_equal(frame.rgb[:, :, 0], np.tile(np.arange(W) * 10, (H, 1)))
    assert frame.depth.shape == (H, W) and frame.depth.dtype == np.float32
    assert frame.depth[0, 0] == 0 and frame.depth[0, 1] == 0 and frame.depth[1, 1] == 2.5
    np.testing.assert_allclose(frame.T_world_cam, T, atol=1e-6)
    assert frame.stamp == 3.25
    assert frame.semantic.dtype == np.uint16 and frame.instance.dtype == np.uint16
    np.testing.assert_array_equal(frame.semantic[0], [2, 2, 5, 0, 2, 0, 2, 2])  # object 0,0,1,2,3,900,0,0
    np.testing.assert_array_equal(frame.instance[0], [1, 1, 2, 3, 4, 901, 1, 1])
    assert src.classes.names[2] == "chair" and src.classes.names[5] == "table"


def test_render_without_semantics(fake_habitat):
    src = HabitatSource("scene.glb", width=W, height=H, semantic=False)
    specs = fake_habitat.log["configs"][0].agents[0].sensor_specifications
    assert [s.sensor_type for s in specs] == ["COLOR", "DEPTH"]
    frame = src.render(np.eye(4))
    assert frame.semantic is None and frame.instance is None
    src.close()
    src.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        src.render(np.eye(4))


def test_trajectory_source_renders_the_planned_poses(fake_habitat):
    """The camera source's Habitat mode: our planner's poses, habitat-sim's pixels."""
    import types as _types

    from regconsist_ros.sim.habitat import HabitatTrajectorySource

    poses = np.stack([camera_from_yaw_pitch([1.0, 2.0, 1.4], yaw=0.1 * k) for k in range(3)])
    planner = _types.SimpleNamespace(poses=poses, cfg=_types.SimpleNamespace(fps=10.0))
    src = HabitatTrajectorySource("scene.glb", planner, width=W, height=H)
    assert len(src) == 3
    f = src[2]
    assert f.stamp == pytest.approx(0.2) and f.rgb.shape == (H, W, 3)
    np.testing.assert_allclose(f.T_world_cam, poses[2], atol=1e-6)
    with pytest.raises(IndexError):
        src[3]
