"""BC readout suites other than MetaWorld: RLBench (keyframes, missing simulator) and the local-demo suites."""
import importlib.util

import numpy as np
import pytest

from regconsist_ros.readout.demos import DemoDir, Episode, NoDemonstrations, save_episode
from regconsist_ros.readout.suites import EnvSpec, get_suite
from regconsist_ros.readout.suites.rlbench import keyframe_episode, keyframes, task_key

HAS_RLBENCH = importlib.util.find_spec("rlbench") is not None


# ------------------------------------------------------------------------------------- RLBench


@pytest.mark.skipif(HAS_RLBENCH, reason="RLBench is importable here; the missing-simulator message is not reachable")
def test_rlbench_without_simulator_says_what_to_install():
    with pytest.raises(ImportError) as e:
        get_suite("rlbench").make_env("push_button", EnvSpec())
    msg = str(e.value)
    for word in ("RLBench", "CoppeliaSim", "PyRep", "COPPELIASIM_ROOT", "not verified"):
        assert word in msg


def test_rlbench_task_names():
    suite = get_suite("rlbench")
    assert suite.name == "rlbench" and len(suite.tasks) == 6
    assert task_key("PushButton") == "push_button" and task_key("stack_wine") == "stack_wine"
    with pytest.raises(ValueError, match="push_button"):
        suite.make_env("open_drawer", EnvSpec())
    with pytest.raises(ValueError, match="unknown RLBench task"):
        suite.demonstrations("open_drawer", EnvSpec(), 1, "/nonexistent")


def _trajectory():
    """16 frames: at rest at t=0, moving 1-9 (gripper closes at t=5), at rest 10-12, moving 13-15."""
    T, J = 16, 7
    vel = np.full((T, J), 0.5)
    vel[0] = 0.0
    vel[10:13] = 0.01
    vel[10, 3] = -0.05
    gripper = np.ones(T)
    gripper[5:] = 0.0
    return gripper, vel


def test_keyframes_gripper_changes_stops_after_motion_and_the_last_frame():
    gripper, vel = _trajectory()
    assert keyframes(gripper, vel) == [5, 10, 15]
    # a rest at the start (before any motion) is no keyframe, nor is a rest that continues
    vel2 = vel.copy()
    vel2[:3] = 0.0
    assert keyframes(gripper, vel2) == [5, 10, 15]
    # a stricter tolerance: 0.05 is not "at rest" any more at t=10
    assert keyframes(gripper, vel, stopped_tol=0.02) == [5, 11, 15]
    # the last frame is not repeated when it is a stop itself
    vel3 = vel.copy()
    vel3[15] = 0.0
    assert keyframes(gripper, vel3) == [5, 10, 15]
    assert keyframes(np.ones(1), np.zeros((1, 7))) == [0]
    with pytest.raises(ValueError):
        keyframes(np.ones(3), np.zeros((4, 7)))


def test_keyframe_episode_rows_are_segment_starts_with_next_keyframe_poses():
    gripper, vel = _trajectory()
    T = len(gripper)
    frames = np.arange(T, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)
    pose = np.zeros((T, 7))
    pose[:, 0] = np.arange(T)
    pose[:, 6] = 1.0
    ep = keyframe_episode(frames, pose, gripper, vel, states=np.arange(T, dtype=np.float32)[:, None], seed=7)
    assert len(ep) == 3 and ep.seed == 7 and ep.success
    assert [int(f[0, 0, 0]) for f in ep.frames] == [0, 5, 10]  # segment starts
    assert ep.states[:, 0].tolist() == [0, 5, 10]
    assert ep.actions[:, 0].tolist() == [5, 10, 15]  # poses at the next keyframes
    assert ep.actions[:, 7].tolist() == [0.0, 0.0, 0.0]  # gripper closed from t=5
    assert ep.proprio[:, 7].tolist() == [1.0, 0.0, 0.0]
    assert ep.actions.shape == (3, 8) and ep.proprio.shape == (3, 8)
    np.testing.assert_allclose(ep.actions[:, 3:7], np.tile([0, 0, 0, 1.0], (3, 1)))
    pose[10, 3:] = [0.0, 0.0, 0.0, -2.0]  # non-unit, negative w: the same rotation as (0, 0, 0, 1)
    ep = keyframe_episode(frames, pose, gripper, vel)
    np.testing.assert_allclose(ep.actions[1, 3:7], [0, 0, 0, 1.0])
    np.testing.assert_allclose(ep.proprio[2, 3:7], [0, 0, 0, 1.0])


def test_rlbench_cache_loads_without_the_simulator(tmp_path):
    suite = get_suite("rlbench")
    cache = suite.cache_dir("PushButton", EnvSpec(), tmp_path)
    assert cache.root == tmp_path / "rlbench" / "push_button" / "front_224"
    ep = Episode(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8)), np.zeros((2, 8)))
    save_episode(cache.episode_path(0), ep)
    (got,) = suite.demonstrations("push_button", EnvSpec(), 1, tmp_path)
    assert got.frames.shape == (2, 8, 8, 3)


def _fake_rlbench(monkeypatch, size_seen, fail_seeds=()):
    """A stand-in for the rlbench package with the documented API (the simulator cannot be installed here)."""
    import sys
    import types

    from regconsist_ros.readout.suites import rlbench as rl

    class InvalidActionError(Exception):
        pass

    class CameraConfig:
        def __init__(self):
            self.rgb = self.depth = self.mask = True
            self.image_size = (128, 128)

        def set_all(self, value):
            self.rgb = self.depth = self.mask = value

    class ObservationConfig:
        def __init__(self):
            for c in rl.CAMERAS:
                setattr(self, f"{c}_camera", CameraConfig())

        def set_all(self, value):
            for c in rl.CAMERAS:
                getattr(self, f"{c}_camera").set_all(value)
            for f in ("gripper_pose", "gripper_open", "joint_positions", "joint_velocities", "task_low_dim_state"):
                setattr(self, f, value)

    def observation(cfg, t, gripper, vel):
        cam = cfg.front_camera
        assert cam.rgb and not cam.depth and not cfg.wrist_camera.rgb and cfg.joint_velocities
        size_seen.append(cam.image_size)
        o = types.SimpleNamespace(front_rgb=np.full((*cam.image_size, 3), t, np.uint8),
                                  gripper_pose=np.array([t, 0, 0, 0, 0, 0, -1.0]), gripper_open=gripper,
                                  joint_positions=np.zeros(7), joint_velocities=vel, task_low_dim_state=np.array([t + 0.5]))
        return o

    class TaskEnv:
        def __init__(self, cfg, cls):
            self.cfg, self.cls = cfg, cls

        def reset(self):
            self.layout = np.random.rand()
            return ["desc"], observation(self.cfg, 0, 1.0, np.zeros(7))

        def step(self, a):
            assert a.shape == (8,) and np.isclose(np.linalg.norm(a[3:7]), 1.0) and a[7] in (0.0, 1.0)
            if a[0] > 5:
                raise InvalidActionError("unreachable")
            return observation(self.cfg, 1, a[7], np.zeros(7)), float(a[0] > 1), False

        def get_demos(self, n, live_demos):
            assert n == 1 and live_demos
            seed = int(np.random.get_state()[1][0])
            if seed in [np.random.RandomState(s).get_state()[1][0] for s in fail_seeds]:
                raise RuntimeError("could not plan")
            gripper, vel = _trajectory()
            return [[observation(self.cfg, t, gripper[t], vel[t]) for t in range(len(gripper))]]

    class Environment:
        def __init__(self, action_mode, obs_config, headless):
            assert headless and action_mode.arm is not None
            self.cfg = obs_config

        def launch(self):
            pass

        def get_task(self, cls):
            return TaskEnv(self.cfg, cls)

        def shutdown(self):
            pass

    class MoveArmThenGripper:
        def __init__(self, arm_action_mode, gripper_action_mode):
            self.arm, self.gripper = arm_action_mode, gripper_action_mode

    mods = {
        "rlbench": {},
        "rlbench.action_modes": {},
        "rlbench.action_modes.action_mode": {"MoveArmThenGripper": MoveArmThenGripper},
        "rlbench.action_modes.arm_action_modes": {"EndEffectorPoseViaPlanning": object},
        "rlbench.action_modes.gripper_action_modes": {"Discrete": object},
        "rlbench.environment": {"Environment": Environment},
        "rlbench.observation_config": {"ObservationConfig": ObservationConfig},
        "rlbench.tasks": {c: type(c, (), {}) for c in rl.TASK_CLASSES.values()},
        "rlbench.backend": {},
        "rlbench.backend.exceptions": {"InvalidActionError": InvalidActionError},
    }
    for name, attrs in mods.items():
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, m)
    monkeypatch.setattr(sys.modules["rlbench"], "tasks", sys.modules["rlbench.tasks"], raising=False)


def test_rlbench_env_against_a_stand_in(monkeypatch):
    sizes = []
    _fake_rlbench(monkeypatch, sizes)
    env = get_suite("rlbench").make_env("stack_wine", EnvSpec(horizon=3))
    assert env.horizon == 3 and env.action_dim == 8
    obs = env.reset(5)
    layout = env.task.layout
    assert sizes[-1] == (224, 224) and obs.rgb.shape == (224, 224, 3)
    np.testing.assert_allclose(obs.proprio, [0, 0, 0, 0, 0, 0, 1, 1])  # w >= 0
    assert obs.state.tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 0.5]  # + task_low_dim_state
    env.reset(5)
    assert env.task.layout == layout  # reset(seed) seeds numpy's global generator
    _, success, done = env.step(np.array([0, 0, 0, 0, 0, 0, 2.0, 0.3]))  # unnormalised quaternion is fixed
    assert not success and not done
    last, success, done = env.step(np.array([9.0, 0, 0, 0, 0, 0, 1, 1]))
    assert (success, done, env.invalid_actions) == (False, True, 1) and last.rgb.shape == (224, 224, 3)
    env.reset(6)
    _, success, done = env.step(np.array([2.0, 0, 0, 0, 0, 0, 1, 1]))
    assert success and done
    env.close()
    env = get_suite("rlbench").make_env("push_button", EnvSpec(render_size=64))
    env.reset(0)
    assert sizes[-1] == (64, 64) and env.horizon == 200


def test_rlbench_demonstrations_against_a_stand_in(monkeypatch, tmp_path):
    sizes = []
    _fake_rlbench(monkeypatch, sizes, fail_seeds=(1,))
    suite = get_suite("rlbench")
    eps = suite.demonstrations("StackWine", EnvSpec(render_size=32), 2, tmp_path)
    cache = suite.cache_dir("stack_wine", EnvSpec(render_size=32), tmp_path)
    assert cache.root.name == "front_32" and len(cache) == 2 and cache.meta["failed_seeds"] == [1]
    assert [e.seed for e in eps] == [0, 2]
    for e in eps:
        assert e.frames.shape == (3, 32, 32, 3) and [int(f[0, 0, 0]) for f in e.frames] == [0, 5, 10]
        assert e.actions[:, 0].tolist() == [5, 10, 15] and e.states.shape == (3, 9)
    more = suite.demonstrations("stack_wine", EnvSpec(render_size=32), 3, tmp_path)  # resumes after seed 2
    assert [e.seed for e in more] == [0, 2, 3]


# ------------------------------------------------------------------------------- local suites


@pytest.mark.parametrize("suite_name, task", [("adroit", "pen"), ("adroit", "relocate"), ("dmc", "walker-walk"),
                                              ("trifinger", "move-cube")])
def test_local_suites_without_demonstrations(tmp_path, suite_name, task):
    (tmp_path / suite_name / task).mkdir(parents=True)  # an empty directory counts as none
    with pytest.raises(NoDemonstrations) as e:
        get_suite(suite_name).demonstrations(task, EnvSpec(), 2, tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"no demonstrations for {suite_name}/{task}: put episodes in the documented directory format "
                          f"under {tmp_path / suite_name / task} (see docs/interfaces.md, \"BC readout\")")
    if suite_name == "adroit" and importlib.util.find_spec("minari") is None:
        assert "pip install minari" in msg and "D4RL/" in msg


def test_local_demonstrations_load_back(tmp_path):
    rng = np.random.default_rng(0)
    eps = [Episode(frames=rng.integers(0, 256, (T, 8, 8, 3), dtype=np.uint8), actions=rng.normal(size=(T, 24)),
                   proprio=rng.normal(size=(T, 24)), states=rng.normal(size=(T, 45)), success=bool(i), seed=i)
           for i, T in enumerate((3, 5))]
    for i, ep in enumerate(eps):
        save_episode(tmp_path / "adroit" / "pen" / f"episode_{i:04d}.npz", ep)
    got = get_suite("adroit").demonstrations("pen", EnvSpec(), 2, tmp_path)
    assert len(got) == 2
    for a, b in zip(eps, got):
        for name in ("frames", "actions", "proprio", "states"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert (a.success, a.seed) == (b.success, b.seed)
    with pytest.raises(NoDemonstrations, match="2 episodes, 3 requested"):
        get_suite("adroit").demonstrations("pen", EnvSpec(), 3, tmp_path)


def test_local_suites_task_lists_and_bad_names():
    assert get_suite("adroit").tasks == ("pen", "relocate")
    assert get_suite("dmc").tasks == ("finger-spin", "reacher-hard", "cheetah-run", "walker-stand", "walker-walk")
    assert get_suite("trifinger").tasks == ("reach-cube", "move-cube")
    with pytest.raises(ValueError, match="reach-cube, move-cube"):
        get_suite("trifinger").make_env("push-cube", EnvSpec())
    if importlib.util.find_spec("trifinger_simulation") is None:
        with pytest.raises(ImportError, match="pip install trifinger-simulation"):
            get_suite("trifinger").make_env("move-cube", EnvSpec())
    with pytest.raises(ValueError, match="walker-walk"):
        get_suite("dmc").make_env("walker", EnvSpec())
    with pytest.raises(ValueError, match="pen"):
        get_suite("adroit").make_env("door", EnvSpec())


# --------------------------------------------- optional simulators (skipped where not installed)


def _smoke(env, size):
    obs = env.reset(3)
    assert obs.rgb.shape == (size, size, 3) and obs.rgb.dtype == np.uint8 and obs.rgb.std() > 0
    obs2, success, done = env.step(np.zeros(env.action_dim, np.float32))
    assert obs2.rgb.shape == (size, size, 3) and isinstance(success, bool) and isinstance(done, bool)
    return obs, obs2


def test_dmc_env_smoke():
    pytest.importorskip("dm_control")
    env = get_suite("dmc").make_env("walker-walk", EnvSpec(render_size=64, horizon=2))
    try:
        assert env.action_dim == 6 and env.horizon == 2
        obs, obs2 = _smoke(env, 64)
        assert obs.proprio.shape == (0,) and obs.state.shape == (24,)
        again = env.reset(3)
        np.testing.assert_array_equal(again.state, obs.state)  # the seed sets the initial state
        assert not np.array_equal(env.reset(4).state, obs.state)
        _, success, done = env.step(np.zeros(6))
        assert not success and not done
        _, success, done = env.step(np.zeros(6))
        assert not success and done and isinstance(env.reward_sum, float)
    finally:
        env.close()


@pytest.mark.parametrize("task, act, prop, state", [("pen", 24, 24, 45), ("relocate", 30, 30, 39)])
def test_adroit_env_smoke(task, act, prop, state):
    pytest.importorskip("gymnasium_robotics")
    env = get_suite("adroit").make_env(task, EnvSpec(render_size=64))
    try:
        assert env.action_dim == act and env.horizon == {"pen": 100, "relocate": 200}[task]
        obs = env.reset(3)
        assert obs.proprio.shape == (prop,) and obs.state.shape == (state,)
        np.testing.assert_allclose(obs.proprio, env.env.unwrapped.data.qpos[:prop], atol=1e-4)  # hand joints
        _smoke(env, 64)
    finally:
        env.close()


def test_trifinger_success_rules_cameras_and_layouts():
    """Pure parts of the TriFinger environment (no simulator needed)."""
    from regconsist_ros.readout.suites.local import (MOVE_TOL, REACH_TOL, TRIFINGER_CUBE_WIDTH, move_success,
                                                     reach_success, trifinger_camera_index, trifinger_layout)

    cube = np.array([0.05, -0.02, 0.0325])
    on_faces = cube + np.array([[0.045, 0, 0], [-0.045, 0, 0], [0, 0.045, 0]])
    assert reach_success(on_faces, cube) and REACH_TOL == 0.06
    assert not reach_success(on_faces, cube, tol=0.04)
    one_far = on_faces.copy()
    one_far[2] = cube + [0, 0.2, 0]  # the mean counts: one finger away fails
    assert not reach_success(one_far, cube)
    goal = np.array([0.0, 0.1, 0.0325])
    assert move_success(goal + [0.01, -0.01, 0.005], goal) and MOVE_TOL == 0.02
    assert not move_success(goal + [0.015, 0.015, 0], goal)  # xy distance 0.021
    assert not move_success(goal + [0, 0, 0.03], goal)  # lifted: height counts too
    assert [trifinger_camera_index(c) for c in ("", "camera60", "camera180", "camera300", "2")] == [0, 0, 1, 2, 2]
    with pytest.raises(ValueError, match="camera180"):
        trifinger_camera_index("front")
    with pytest.raises(ValueError, match="reach-cube"):
        trifinger_layout("push-cube", 0)
    for task in ("reach-cube", "move-cube"):
        a, b = trifinger_layout(task, 7), trifinger_layout(task, 8)
        for x, y in zip(a, trifinger_layout(task, 7)):
            np.testing.assert_array_equal(x, y)
        assert not np.array_equal(a[0], b[0])
    for seed in range(20):
        cube, quat, goal = trifinger_layout("move-cube", seed)
        assert np.linalg.norm(cube[:2]) <= 0.12 and np.linalg.norm(goal[:2]) <= 0.12
        assert cube[2] == goal[2] == TRIFINGER_CUBE_WIDTH / 2 and np.isclose(np.linalg.norm(quat), 1)
        assert np.linalg.norm(goal[:2] - cube[:2]) >= 0.06
    assert trifinger_layout("reach-cube", 0)[2] is None


def test_trifinger_cube_width_matches_the_simulator():
    pytest.importorskip("trifinger_simulation")
    from trifinger_simulation.tasks import move_cube

    from regconsist_ros.readout.suites.local import TRIFINGER_CUBE_WIDTH
    assert TRIFINGER_CUBE_WIDTH == move_cube._CUBE_WIDTH


def test_trifinger_reach_env():
    pytest.importorskip("trifinger_simulation")
    from regconsist_ros.readout.suites.local import trifinger_layout

    env = get_suite("trifinger").make_env("reach-cube", EnvSpec(render_size=32))
    try:
        assert env.action_dim == 9 and env.horizon == 100
        obs, _ = _smoke(env, 32)
        assert obs.proprio.dtype == np.float32 and obs.proprio.shape == (9,)
        assert obs.state.dtype == np.float32 and obs.state.shape == (21,)  # joints, velocities, cube
        np.testing.assert_allclose(obs.proprio, [0.0, 0.9, -1.7] * 3, atol=1e-5)  # the platform's default pose
        np.testing.assert_allclose(obs.state[18:], trifinger_layout("reach-cube", 3)[0], atol=1e-5)
        again, other = env.reset(3), env.reset(4)
        np.testing.assert_array_equal(again.state, obs.state)
        np.testing.assert_array_equal(again.rgb, obs.rgb)
        assert not np.array_equal(other.state[18:], obs.state[18:]) and not np.array_equal(other.rgb, obs.rgb)
        # targets outside the joint limits are clipped: the joints stay (nearly) within them
        moved, success, done = env.step(np.full(9, 5.0))
        assert not success and not done
        assert np.all(moved.proprio <= np.array([1.0, 1.57, 0.0] * 3) + 0.05)
        # a scripted reach (inverse kinematics to points beside the cube's faces) meets the success rule
        obs = env.reset(0)
        cube = obs.state[18:].astype(np.float64)
        tips = env.fingertips(obs.proprio)
        out = tips[:, :2] / np.linalg.norm(tips[:, :2], axis=1, keepdims=True)
        kin = env.platform.simfinger.kinematics
        q0 = obs.proprio.astype(np.float64)
        above, _ = kin.inverse_kinematics([np.r_[cube[:2] + d * 0.07, cube[2] + 0.03] for d in out], q0)
        beside, _ = kin.inverse_kinematics([np.r_[cube[:2] + d * 0.045, cube[2]] for d in out], above)
        results = [env.step(above)[1] for _ in range(10)] + [env.step(beside)[1] for _ in range(3)]
        assert not any(results[:10]) and results[-1]
    finally:
        env.close()
    env.close()  # closing twice is harmless


def test_trifinger_move_env_and_pybullet_clients():
    pytest.importorskip("trifinger_simulation")
    import gc

    import pybullet

    suite = get_suite("trifinger")
    env = suite.make_env("move-cube", EnvSpec(render_size=32, horizon=3, camera="camera180"))
    try:
        assert env.horizon == 3 and env.camera == 1
        obs = env.reset(5)
        assert obs.state.shape == (24,)  # joints, velocities, cube, goal
        np.testing.assert_array_equal(obs.state[21:], env.goal.astype(np.float32))
        results = [env.step(obs.proprio) for _ in range(3)]  # hold the joints: the cube stays where it is
        assert [(s, d) for _, s, d in results] == [(False, False), (False, False), (False, True)]
        np.testing.assert_allclose(results[-1][0].state[18:20], obs.state[18:20], atol=0.005)
        stale = env.platform  # a platform still referenced after close ...
        cid = stale.simfinger._pybullet_client_id
    finally:
        env.close()
    assert not pybullet.isConnected(cid)
    env2 = suite.make_env("move-cube", EnvSpec(render_size=32))
    try:
        env2.reset(5)
        cid2 = env2.platform.simfinger._pybullet_client_id
        del stale  # ... and freed while a new client (pybullet may reuse the id) is in use
        gc.collect()
        assert pybullet.isConnected(cid2)
        assert env2.step(np.zeros(9))[0].rgb.shape == (32, 32, 3)
    finally:
        env2.close()


@pytest.mark.parametrize("suite_name,task,module", [("adroit", "pen", "gymnasium_robotics"), ("dmc", "walker-walk", "dm_control"),
                                                    ("trifinger", "reach-cube", "trifinger_simulation")])
def test_local_demonstrations_run_the_same_readout(tmp_path, suite_name, task, module):
    """Optional back-ends (not installed by make): local demonstrations -> the full BC readout run."""
    pytest.importorskip(module)
    from regconsist_ros.models.vit import ViTConfig
    from regconsist_ros.readout.bc import BCConfig
    from regconsist_ros.readout.bc_run import BCReadoutConfig, resolve_encoder, run_task

    suite = get_suite(suite_name)
    env = suite.make_env(task, EnvSpec(render_size=48, horizon=20))
    d = DemoDir(tmp_path / "demos" / suite_name / task)
    rng = np.random.default_rng(0)
    try:
        for i in range(2):
            o = env.reset(i)
            rows = []
            for _ in range(6):
                a = rng.uniform(-1, 1, env.action_dim).astype(np.float32)
                rows.append((o.rgb, a, o.proprio, o.state))
                o, _, _ = env.step(a)
            save_episode(d.episode_path(i), Episode(*[np.stack(c) for c in zip(*rows)], success=False, seed=i))
    finally:
        env.close()
    cfg = BCReadoutConfig(suite=suite_name, demos=2, episodes=1, eval_every=1, horizon=5, render_size=48, crop_size=32,
                          videos=0, demo_dir=str(tmp_path / "demos"), seeds=1)
    enc = resolve_encoder("random", ViTConfig(size="tiny", depth=1, img_size=(32, 32)))
    r = run_task(task, enc, cfg, BCConfig(epochs=2), tmp_path / "out", progress=False)
    assert r["status"] == "ok" and r["demo_steps"] == 12 and len(r["evaluations"]) == 2
    assert (suite_name == "dmc") == ("mean_return_final" in r)
