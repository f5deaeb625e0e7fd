"""Adroit, DMC and TriFinger for the BC readout: demonstrations from local directories.

CortexBench's demonstrations for these suites cannot be downloaded here and we have no scripted
experts for them, so each suite reads its demonstrations from
``<demo_dir>/<suite>/<task>/`` in the documented directory format (``readout.demos``; see
docs/interfaces.md, "BC readout"). Where a Minari dataset is known for a task (Adroit pen and
relocate) and the ``minari`` package is installed, a dataset already on this machine is tried
next; otherwise :class:`NoDemonstrations` says where to put episodes.

Environments (each simulator is imported only when an environment is made):

* Adroit (``pip install gymnasium-robotics``): ``AdroitHandPen-v1`` / ``AdroitHandRelocate-v1``
  rendered by gymnasium's MuJoCo renderer from ``vil_camera`` (the camera CortexBench's Adroit
  frames come from; ``EnvSpec.camera`` overrides). Success = ``info["success"]`` at any step (the
  rollout ends there), which is more lenient than the mj_envs evaluation that counts an episode
  when the goal holds for many steps (more than 20 for pen, 25 for relocate). Proprioception: the
  first obs dims, which are the hand joint positions (24 for pen, 30 for relocate, including
  the arm's 6 base joints): an approximation of CortexBench's proprioception. State: the full
  observation. Horizon: pen 100, relocate 200. Verified with gymnasium-robotics 1.4.2
  (gymnasium 1.4.0, mujoco 3.3.0): reset, step and render.
* DMC (``pip install dm-control``): ``dm_control.suite.load(domain, task, task_kwargs={"random":
  seed})``, rebuilt at every ``reset(seed)`` so the seed sets the initial state; frames from
  ``physics.render(size, size, camera_id=0)`` (``EnvSpec.camera`` may name another camera or
  index); no proprioception (CortexBench's DMC policies use none); state = the flattened
  observation dict; no action repeat; horizon 1000 (the suite's episodes also end at their own
  time limit). DMC HAS NO SUCCESS SIGNAL: these tasks are scored by episode return, which ``env``
  exposes as ``reward_sum``; the BC readout's success rate is therefore always 0 for DMC and
  says nothing about the policy. Verified with dm-control 1.0.28 (mujoco 3.3.0, MUJOCO_GL=egl):
  reset, step and render.
* TriFinger (``pip install trifinger-simulation``): ``reach-cube`` and ``move-cube``. From
  CortexBench: the two task names and their ideas (bring the fingertips to the cube; push the cube
  to a goal position on the arena floor), the TriFingerPro platform of the ``trifinger_simulation``
  package and camera60 (index 0, the default ``camera_id`` of CortexBench's reach environment) as
  the default view. NOT CortexBench's environments (read in its source, not run: a modified platform
  with a fixed cube for reach, fingertip-displacement actions through an impedance controller, 4 ms
  simulation steps, their own camera placement, fixed goal lists and a scaled-success score), so
  numbers are not comparable with published TriFinger results. Our choices: ``reset(seed)`` builds a
  new ``TriFingerPlatform`` (``visualization=False``, ``enable_cameras=False``, default joint
  positions, 1 ms simulation steps) with the cube at a seeded uniform position in the floor disc of
  radius 0.12 m (seeded yaw); move-cube also draws a goal from that disc at least 0.06 m (xy) from
  the cube, shown as a visual-only green 6.5 x 6.5 x 1 cm slab (a finger can hide it). Action: 9
  joint position targets (``Action(position=...)``, the simulator's PD gains), clipped to the
  platform's joint limits and held for 100 simulation steps (0.1 s) per ``step``, applied through
  ``platform.simfinger`` (which skips the platform's camera bookkeeping and per-millisecond action
  log). Frames: pybullet's software renderer (``ER_TINY_RENDERER``; ``fast_render`` has nothing to
  switch off) from the package's simple camera model, rendered directly at ``render_size`` (same
  field of view), from camera60 by default (``EnvSpec.camera``: camera60, camera180, camera300 or
  0-2). Proprioception: the 9 joint positions (no velocities). State: joint positions and
  velocities, cube position (+ goal for move-cube). Success at any step: reach-cube when the mean
  distance of the three fingertips (the platform's forward kinematics) to the cube centre is below
  0.06 m (fingertips resting on the cube's side faces measured ~0.049 m); move-cube when the cube
  centre is within 0.02 m (3-D) of the goal. The cube is free to move in both tasks. Horizon: reach
  100 steps (10 s), move 200 (20 s). A step costs ~60 ms at 64 px and ~110 ms at 256 px on a busy
  2-core CPU. Verified with trifinger-simulation 2.0.0, pybullet 3.2.7 (pin 4.1.0, gym 0.26.2, numpy
  2.4.6): reset, step, render, a scripted inverse-kinematics reach that succeeds, repeated
  make/close; not checked against CortexBench's demonstrations or environments.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from regconsist_ros.readout.demos import DemoDir, Episode, NoDemonstrations, load_minari
from regconsist_ros.readout.suites.base import EnvSpec, Obs, headless_gl

log = logging.getLogger(__name__)


def _minari_available() -> bool:
    try:
        import minari  # noqa: F401
    except ImportError:
        return False
    return True


class LocalDemoSuite:
    """Demonstrations from ``<demo_dir>/<name>/<task>/`` (or a local Minari dataset)."""

    name = ""
    tasks: tuple[str, ...] = ()
    minari_ids: dict[str, str] = {}

    def task_dir(self, task: str, demo_dir: Path) -> Path:
        return Path(demo_dir) / self.name / task

    def demonstrations(self, task: str, spec: EnvSpec, n: int, demo_dir: Path, progress: bool = False) -> list[Episode]:
        path = self.task_dir(task, demo_dir)
        local = DemoDir(path)
        if local.paths():
            eps = local.load(n, progress=progress)
            size = eps[0].frames.shape[1:3]
            if size != (spec.render_size, spec.render_size):
                log.warning("%s/%s: demonstration frames are %dx%d, the environment renders %dx%d",
                            self.name, task, size[1], size[0], spec.render_size, spec.render_size)
            return eps
        msg = (f"no demonstrations for {self.name}/{task}: put episodes in the documented directory format "
               f"under {path} (see docs/interfaces.md, \"BC readout\")")
        dataset = self.minari_ids.get(task)
        if dataset is None:
            raise NoDemonstrations(msg)
        if not _minari_available():
            raise NoDemonstrations(f"{msg}; or install minari (pip install minari) and download the Minari "
                                   f"dataset {dataset!r} (its observations must include images)")
        try:
            return load_minari(dataset, n)
        except NoDemonstrations as e:
            raise NoDemonstrations(f"{msg}; Minari: {e}") from e

    def make_env(self, task: str, spec: EnvSpec):
        raise NotImplementedError


# ---------------------------------------------------------------------------------------- Adroit


ADROIT_ENVS = {"pen": "AdroitHandPen-v1", "relocate": "AdroitHandRelocate-v1"}
ADROIT_HORIZON = {"pen": 100, "relocate": 200}
ADROIT_PROPRIO = {"pen": 24, "relocate": 30}  # the hand (and arm base) joint positions at the front of the obs
ADROIT_CAMERA = "vil_camera"


class AdroitEnv:
    """An Adroit hand task (module docstring); ``step`` -> (obs, success, done)."""

    def __init__(self, task: str, spec: EnvSpec):
        if task not in ADROIT_ENVS:
            raise ValueError(f"unknown Adroit task {task!r}; tasks: {', '.join(ADROIT_ENVS)}")
        headless_gl()
        try:
            import gymnasium as gym
            import gymnasium_robotics
            import mujoco
        except ImportError as e:
            raise ImportError(f"the Adroit suite needs gymnasium-robotics (pip install gymnasium-robotics): {e}") from e
        gym.register_envs(gymnasium_robotics)
        self.task = task
        self.horizon = int(spec.horizon or ADROIT_HORIZON[task])
        flags = mujoco.mjtRndFlag
        visual = {flags.mjRND_SHADOW: False, flags.mjRND_REFLECTION: False} if spec.fast_render else None
        self.env = gym.make(ADROIT_ENVS[task], render_mode="rgb_array", width=spec.render_size, height=spec.render_size,
                            camera_name=spec.camera or ADROIT_CAMERA, visual_options=visual,
                            max_episode_steps=self.horizon)
        if spec.fast_render:
            self.env.unwrapped.model.vis.quality.offsamples = 0  # before the first render creates the context
        self.action_dim = int(self.env.action_space.shape[0])
        self._low, self._high = self.env.action_space.low, self.env.action_space.high
        self._proprio = ADROIT_PROPRIO[task]
        self._t = 0

    def _obs(self, state) -> Obs:
        s = np.asarray(state, np.float32)
        return Obs(rgb=np.ascontiguousarray(self.env.render()), proprio=s[:self._proprio].copy(), state=s)

    def reset(self, seed: int) -> Obs:
        state, _ = self.env.reset(seed=int(seed))
        self._t = 0
        return self._obs(state)

    def step(self, action: np.ndarray) -> tuple[Obs, bool, bool]:
        a = np.clip(np.asarray(action, np.float32).reshape(self.action_dim), self._low, self._high)
        state, _, terminated, truncated, info = self.env.step(a)
        self._t += 1
        success = bool(info.get("success", False))
        return self._obs(state), success, bool(terminated or truncated or self._t >= self.horizon)

    def close(self) -> None:
        self.env.close()


class AdroitSuite(LocalDemoSuite):
    name = "adroit"
    tasks = ("pen", "relocate")
    minari_ids = {"pen": "D4RL/pen/expert-v2", "relocate": "D4RL/relocate/expert-v2"}

    def make_env(self, task: str, spec: EnvSpec) -> AdroitEnv:
        return AdroitEnv(task, spec)


# ------------------------------------------------------------------------------------------- DMC


DMC_HORIZON = 1000


def dmc_domain_task(task: str) -> tuple[str, str]:
    """'walker-walk' -> ('walker', 'walk'); domains use underscores, so the first '-' splits."""
    domain, sep, name = task.partition("-")
    if not sep or not domain or not name:
        raise ValueError(f"DMC tasks are named '<domain>-<task>' (e.g. walker-walk), got {task!r}")
    return domain, name


class DMCEnv:
    """A DeepMind Control Suite task (module docstring); ``step`` -> (obs, success=False, done).

    ``reward_sum`` is the current episode's return: DMC is scored by return, not success."""

    def __init__(self, task: str, spec: EnvSpec):
        self.domain, self.name = dmc_domain_task(task)
        headless_gl()
        try:
            from dm_control import suite
        except ImportError as e:
            raise ImportError(f"the DMC suite needs dm_control (pip install dm-control): {e}") from e
        self._suite = suite
        self.spec = spec
        cam = spec.camera or 0
        self.camera = int(cam) if isinstance(cam, str) and cam.isdigit() else cam
        self.horizon = int(spec.horizon or DMC_HORIZON)
        self.env = None
        self._load(0)
        shape = self.env.action_spec().shape
        self.action_dim = int(np.prod(shape))
        self.reward_sum = 0.0
        self._t = 0

    def _load(self, seed: int) -> None:
        self._free()
        try:
            self.env = self._suite.load(self.domain, self.name, task_kwargs={"random": int(seed)})
        except ValueError as e:
            raise ValueError(f"DMC has no task {self.domain}-{self.name}: {e}") from e
        if self.spec.fast_render:
            self.env.physics.model.vis.quality.offsamples = 0  # before the first render creates the context
        a = self.env.action_spec()
        self._low, self._high = a.minimum, a.maximum

    def _obs(self, ts) -> Obs:
        rgb = self.env.physics.render(self.spec.render_size, self.spec.render_size, camera_id=self.camera)
        state = np.concatenate([np.asarray(v, np.float32).reshape(-1) for v in ts.observation.values()])
        return Obs(rgb=np.ascontiguousarray(rgb, dtype=np.uint8), proprio=np.zeros(0, np.float32), state=state)

    def reset(self, seed: int) -> Obs:
        self._load(seed)
        self._t = 0
        self.reward_sum = 0.0
        return self._obs(self.env.reset())

    def step(self, action: np.ndarray) -> tuple[Obs, bool, bool]:
        a = np.clip(np.asarray(action, np.float64).reshape(self.action_dim), self._low, self._high)
        ts = self.env.step(a)
        self._t += 1
        self.reward_sum += float(ts.reward or 0.0)
        return self._obs(ts), False, bool(ts.last() or self._t >= self.horizon)

    def _free(self) -> None:
        if self.env is not None:
            self.env.physics.free()  # releases the rendering context now, not at interpreter exit
            self.env.close()
            self.env = None

    def close(self) -> None:
        self._free()


class DMCSuite(LocalDemoSuite):
    """Note: DMC is scored by return; the readout's success rate is 0 here (see the module docstring)."""

    name = "dmc"
    tasks = ("finger-spin", "reacher-hard", "cheetah-run", "walker-stand", "walker-walk")

    def make_env(self, task: str, spec: EnvSpec) -> DMCEnv:
        return DMCEnv(task, spec)


# ------------------------------------------------------------------------------------- TriFinger


TRIFINGER_HORIZON = {"reach-cube": 100, "move-cube": 200}
TRIFINGER_CAMERAS = ("camera60", "camera180", "camera300")  # the order of trifinger_simulation.camera.TriFingerCameras
TRIFINGER_SIM_STEPS = 100  # 1 ms simulation steps per environment step: 0.1 s of simulated time
TRIFINGER_CUBE_WIDTH = 0.065  # the simulator's cube (trifinger_simulation.tasks.move_cube._CUBE_WIDTH)
TRIFINGER_SPAWN_RADIUS = 0.12  # cube and goal centres are drawn uniformly from the floor disc of this radius [m]
TRIFINGER_GOAL_MIN_DIST = 0.06  # move-cube goals are at least this far (xy) from the cube's start [m]
REACH_TOL = 0.06  # reach-cube: mean fingertip distance to the cube centre [m]
MOVE_TOL = 0.02  # move-cube: distance of the cube centre to the goal [m]


def reach_success(tips, cube, tol: float = REACH_TOL) -> bool:
    """reach-cube: the mean distance of the three fingertips [3, 3] to the cube centre [3] is below ``tol``."""
    tips = np.asarray(tips, np.float64).reshape(3, 3)
    return bool(np.linalg.norm(tips - np.asarray(cube, np.float64).reshape(1, 3), axis=1).mean() < tol)


def move_success(cube, goal, tol: float = MOVE_TOL) -> bool:
    """move-cube: the cube centre is within ``tol`` of the goal (3-D distance, so both xy and height)."""
    return bool(np.linalg.norm(np.asarray(cube, np.float64) - np.asarray(goal, np.float64)) < tol)


def trifinger_camera_index(camera: str) -> int:
    """'' -> 0 (camera60); a camera name or its index (0-2) -> the index."""
    cam = str(camera or TRIFINGER_CAMERAS[0])
    if cam in TRIFINGER_CAMERAS:
        return TRIFINGER_CAMERAS.index(cam)
    if cam.isdigit() and int(cam) < len(TRIFINGER_CAMERAS):
        return int(cam)
    raise ValueError(f"unknown TriFinger camera {camera!r}; cameras: {', '.join(TRIFINGER_CAMERAS)} (or 0-2)")


def trifinger_layout(task: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The episode's cube position, cube orientation (x, y, z, w; a random yaw) and goal (move-cube; else None),
    drawn from ``seed`` alone: both on the floor, uniform in the disc of radius TRIFINGER_SPAWN_RADIUS."""
    if task not in TRIFINGER_HORIZON:
        raise ValueError(f"unknown TriFinger task {task!r}; tasks: {', '.join(TRIFINGER_HORIZON)}")
    rng = np.random.default_rng(int(seed))
    z = TRIFINGER_CUBE_WIDTH / 2

    def floor_point() -> np.ndarray:
        r, theta = TRIFINGER_SPAWN_RADIUS * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
        return np.array([r * np.cos(theta), r * np.sin(theta), z])

    cube = floor_point()
    yaw = rng.uniform(0, 2 * np.pi)
    quat = np.array([0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)])
    goal = None
    if task == "move-cube":
        goal = floor_point()
        while np.linalg.norm(goal[:2] - cube[:2]) < TRIFINGER_GOAL_MIN_DIST:
            goal = floor_point()
    return cube, quat, goal


class TriFingerEnv:
    """A TriFinger task (module docstring); ``step`` -> (obs, success, done).

    ``reset(seed)`` builds a new simulated platform (a pybullet client of its own), so an episode
    depends on its seed only; ``close`` disconnects it."""

    def __init__(self, task: str, spec: EnvSpec):
        if task not in TRIFINGER_HORIZON:
            raise ValueError(f"unknown TriFinger task {task!r}; tasks: {', '.join(TRIFINGER_HORIZON)}")
        try:
            import pybullet
            import trifinger_simulation
            from trifinger_simulation import camera, visual_objects
            from trifinger_simulation.tasks import move_cube
        except ImportError as e:
            raise ImportError(f"the TriFinger suite needs the TriFinger simulator "
                              f"(pip install trifinger-simulation): {e}") from e
        self._pb, self._ts, self._camera_mod, self._visual, self._move_cube = (
            pybullet, trifinger_simulation, camera, visual_objects, move_cube)
        self.task = task
        self.camera = trifinger_camera_index(spec.camera)
        self.size = int(spec.render_size)
        self.horizon = int(spec.horizon or TRIFINGER_HORIZON[task])
        self.action_dim = 9
        limits = trifinger_simulation.TriFingerPlatform.spaces.robot_position
        self._low = np.asarray(limits.low, np.float64)
        self._high = np.asarray(limits.high, np.float64)
        self._q0 = np.asarray(limits.default, np.float64)
        self.platform = None
        self._marker = None
        self._cam = None
        self.goal: np.ndarray | None = None
        self._t = 0

    def reset(self, seed: int) -> Obs:
        self._free()
        cube, quat, self.goal = trifinger_layout(self.task, seed)
        self.platform = self._ts.TriFingerPlatform(
            visualization=False, enable_cameras=False, initial_robot_position=self._q0,
            initial_object_pose=self._move_cube.Pose(position=cube, orientation=quat))
        cid = self.platform.simfinger._pybullet_client_id
        if self.goal is not None:  # a 1 cm high green slab on the floor, visual only (no collision)
            w, h = TRIFINGER_CUBE_WIDTH, 0.01  # thinner slabs are lost to the renderer's depth precision
            self._marker = self._visual.CuboidMarker(size=(w, w, h), position=(self.goal[0], self.goal[1], h / 2),
                                                     orientation=(0, 0, 0, 1), color=(0, 0.8, 0, 1),
                                                     pybullet_client_id=cid)
        cams = self._camera_mod.TriFingerCameras(image_size=(self.size, self.size), pybullet_client_id=cid)
        self._cam = cams.cameras[self.camera]
        self._t = 0
        robot = self.platform.simfinger.reset_finger_positions_and_velocities(self._q0)
        return self._obs(robot)[0]

    def fingertips(self, joint_positions) -> np.ndarray:
        """[3, 3] fingertip positions (the platform's forward kinematics)."""
        return np.asarray(self.platform.forward_kinematics(np.asarray(joint_positions, np.float64)), np.float64)

    def cube_position(self) -> np.ndarray:
        return np.asarray(self.platform.cube.get_state()[0], np.float64)

    def _obs(self, robot) -> tuple[Obs, bool]:
        q = np.asarray(robot.position, np.float64)
        cube = self.cube_position()
        if self.goal is None:
            success = reach_success(self.fingertips(q), cube)
            extra = [cube]
        else:
            success = move_success(cube, self.goal)
            extra = [cube, self.goal]
        rgb = np.asarray(self._cam.get_image(renderer=self._pb.ER_TINY_RENDERER), np.uint8)
        rgb = np.ascontiguousarray(rgb.reshape(self.size, self.size, -1)[..., :3])
        state = np.concatenate([q, np.asarray(robot.velocity, np.float64), *extra]).astype(np.float32)
        return Obs(rgb=rgb, proprio=q.astype(np.float32), state=state), success

    def step(self, action: np.ndarray) -> tuple[Obs, bool, bool]:
        if self.platform is None:
            raise RuntimeError("TriFingerEnv.step before reset")
        a = np.clip(np.asarray(action, np.float64).reshape(self.action_dim), self._low, self._high)
        finger = self.platform.simfinger
        act = finger.Action(position=a)
        for _ in range(TRIFINGER_SIM_STEPS):
            t = finger.append_desired_action(act)
        self._t += 1
        obs, success = self._obs(finger.get_observation(t + 1))  # t + 1: the state after the last simulation step
        return obs, success, self._t >= self.horizon

    def _free(self) -> None:
        if self.platform is None:
            return
        finger = self.platform.simfinger
        cid = finger._pybullet_client_id
        if self._pb.isConnected(physicsClientId=cid):
            self._pb.disconnect(physicsClientId=cid)
        # pybullet reuses client ids, and these objects act on their client when freed (SimFinger disconnects
        # it, the cube and markers remove their bodies): point them at no client before they go
        for obj in (finger, getattr(self.platform, "cube", None), getattr(finger, "_table_id", None), self._marker):
            if obj is not None and hasattr(obj, "_pybullet_client_id"):
                obj._pybullet_client_id = -1
        self.platform = self._marker = self._cam = None

    def close(self) -> None:
        self._free()


class TriFingerSuite(LocalDemoSuite):
    name = "trifinger"
    tasks = ("reach-cube", "move-cube")

    def make_env(self, task: str, spec: EnvSpec) -> TriFingerEnv:
        return TriFingerEnv(task, spec)
