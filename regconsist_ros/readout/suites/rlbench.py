"""RLBench for the BC readout: RSP's six tasks, keyframe demonstrations, front-camera RGB.

NOT VERIFIED HERE: RLBench needs CoppeliaSim (through PyRep), which cannot be installed on this
project's machines. This module is written against RLBench's documented API
(``Environment``/``MoveArmThenGripper``/``EndEffectorPoseViaPlanning``/``Discrete``/
``ObservationConfig``, ``task.get_demos``/``task.reset``/``task.step``) and imports ``rlbench``
only inside methods, so the rest of the readout works without it. The class, argument and
attribute names used were checked by reading RLBench's source (its January 2025 master), never by
running it. Only :func:`keyframes`, the
demonstration conversion and the cache logic are tested (on synthetic arrays). Making an
environment without RLBench raises an ``ImportError`` with the installation steps.

Environment: ``Environment(action_mode=MoveArmThenGripper(EndEffectorPoseViaPlanning(), Discrete()),
obs_config=..., headless=True)``; of the cameras only the front camera's RGB is rendered (the
low-dimensional gripper pose, gripper state, joint positions/velocities and task state are on),
at ``render_size`` square (224, RSP's setting, when ``render_size`` is the generic default 256).
Another RLBench camera (``left_shoulder``, ``right_shoulder``, ``overhead``, ``wrist``) can be
chosen with ``EnvSpec.camera``. ``reset(seed)`` seeds ``numpy.random`` and ``random`` (RLBench
draws its layouts from ``np.random``) and then calls ``task.reset()`` (variation 0).

Actions (8 dims): the gripper's target pose ``[x, y, z, qx, qy, qz, qw]`` reached by motion
planning, then the gripper command (> 0.5 = open). ``step`` normalises the quaternion (RLBench
rejects non-unit quaternions). A pose the planner cannot reach raises an RLBench/PyRep error
(``InvalidActionError``, ``ConfigurationPathError``, ``IKError``): the episode then ends as a
failure (done=True, success=False) and ``env.invalid_actions`` counts it.

Success: RLBench's ``task.step`` returns ``(obs, reward, terminate)``; without shaped rewards
(``Environment``'s default, kept here) the reward is 1.0 once all of the task's success conditions
hold and 0.0 otherwise, and ``terminate`` is set when a condition asks to end the episode (for
RLBench's conditions this coincides with the condition being met). A step counts as a success
when ``reward > 0`` or ``terminate``.

Horizon: 200 steps by default (``EnvSpec.horizon`` overrides). Each step is one planned move to a
keyframe pose, so successful episodes are short (keyframe agents are usually evaluated with far
fewer steps, e.g. 25 in PerAct's evaluation); 200 only bounds failing ones.

Observations: ``rgb`` = ``obs.front_rgb`` (uint8 [H, W, 3]); ``proprio`` = gripper pose + gripper
open (8 dims, quaternion sign fixed to ``qw >= 0``: q and -q are the same rotation, and one sign
keeps the regression targets continuous); ``state`` = proprio + ``task_low_dim_state`` when the
task provides one, otherwise proprio + joint positions.

Demonstrations (keyframe behaviour cloning): RLBench's live demonstrations (``get_demos(1,
live_demos=True)``, one at a time, ``np.random`` seeded with the episode index) are dense
trajectories. :func:`keyframes` picks the frames where the gripper opens or closes, or where the
arm comes to rest after moving, plus the last frame (the keyframe heuristic of PerAct/C2F-ARM
style work; see :func:`keyframes` for how ours differs in detail). A demonstration becomes one
:class:`Episode` with one row per keyframe interval: row j holds the observation (frame,
proprio, state) at the START of segment j (frame 0, then each keyframe but the last) and, as the
action, the gripper pose + open state (8 dims) AT the segment's end keyframe. A policy thus maps
the current frame to the next keyframe pose, which ``step`` hands to the motion planner.

Cache: converted episodes are saved one by one (atomically) in the documented directory format
(``readout.demos``) under ``<demo_dir>/rlbench/<task>/<camera>_<size>``, e.g. ``front_224``; an
interrupted collection resumes after the last saved episode, and a complete cache loads without
RLBench.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np

from regconsist_ros.readout.demos import DemoDir, Episode, NoDemonstrations, save_episode
from regconsist_ros.readout.suites.base import EnvSpec, Obs

log = logging.getLogger(__name__)

TASK_CLASSES = {
    "push_button": "PushButton",
    "take_lid_off_saucepan": "TakeLidOffSaucepan",
    "phone_on_base": "PhoneOnBase",
    "take_umbrella_out_of_umbrella_stand": "TakeUmbrellaOutOfUmbrellaStand",
    "stack_wine": "StackWine",
    "put_rubbish_in_bin": "PutRubbishInBin",
}
TASKS = tuple(TASK_CLASSES)
CAMERAS = ("front", "left_shoulder", "right_shoulder", "overhead", "wrist")
DEFAULT_CAMERA = "front"
DEFAULT_SIZE = 224  # RSP's RLBench frames
GENERIC_SIZE = EnvSpec().render_size  # EnvSpec's default; replaced by DEFAULT_SIZE for this suite
DEFAULT_HORIZON = 200
ACTION_DIM = 8  # xyz + quaternion (x, y, z, w) + gripper open
STOPPED_TOL = 0.1  # rad/s: all joint velocities below this = the arm is at rest
MAX_FAILED_DEMOS = 10  # demonstration attempts that may fail (planner errors) before giving up

INSTALL_HINT = (
    "the RLBench suite needs RLBench and CoppeliaSim (through PyRep), which are not installed: "
    "install CoppeliaSim 4.1 (Edu or Player, Ubuntu build), set COPPELIASIM_ROOT to its directory "
    "(and LD_LIBRARY_PATH=$COPPELIASIM_ROOT, QT_QPA_PLATFORM_PLUGIN_PATH=$COPPELIASIM_ROOT), then "
    "'pip install git+https://github.com/stepjam/PyRep' and 'pip install git+https://github.com/stepjam/RLBench'. "
    "Note: this back-end is written against RLBench's documented API and is not verified on this machine"
)


def task_key(task: str) -> str:
    """The snake_case name of one of the six tasks (CamelCase class names are accepted too)."""
    if task in TASK_CLASSES:
        return task
    for key, cls in TASK_CLASSES.items():
        if task == cls:
            return key
    raise ValueError(f"unknown RLBench task {task!r}; tasks: {', '.join(TASKS)} (or their class names "
                     f"{', '.join(TASK_CLASSES.values())})")


def frame_size(spec: EnvSpec) -> int:
    return DEFAULT_SIZE if spec.render_size == GENERIC_SIZE else int(spec.render_size)


def camera_name(spec: EnvSpec) -> str:
    cam = spec.camera or DEFAULT_CAMERA
    if cam not in CAMERAS:
        raise ValueError(f"unknown RLBench camera {cam!r}; cameras: {', '.join(CAMERAS)}")
    return cam


def keyframes(gripper_open: np.ndarray, joint_velocities: np.ndarray, stopped_tol: float = STOPPED_TOL) -> list[int]:
    """Keyframe indices of a dense trajectory of T frames (increasing, the last is always T - 1).

    Frame i (i >= 1) is a keyframe when the gripper state (open > 0.5) differs from frame i - 1,
    or when the arm is at rest at i (every |joint velocity| < ``stopped_tol``) and has moved (some
    |joint velocity| >= tol) since the previous keyframe (or the start). A rest before any motion
    is no keyframe, and a rest lasting several frames gives one keyframe, at its first frame.
    The last frame is always a keyframe.

    This is the usual keyframe heuristic (gripper changes and arm stops); PerAct/C2F-ARM style
    implementations instead suppress stops for a few frames after each stop and require the
    gripper state to be unchanged around a stop; requiring motion since the last keyframe serves
    the same purpose here.
    """
    g = np.asarray(gripper_open, np.float64).reshape(-1) > 0.5
    v = np.abs(np.asarray(joint_velocities, np.float64))
    T = len(g)
    if T == 0:
        raise ValueError("keyframes: empty trajectory")
    v = v.reshape(T, -1)
    if v.shape[0] != T:
        raise ValueError(f"keyframes: {T} gripper states but {v.shape[0]} joint-velocity rows")
    stopped = (v < stopped_tol).all(axis=1)
    out: list[int] = []
    moved = not stopped[0]
    for i in range(1, T):
        if g[i] != g[i - 1]:
            out.append(i)
            moved = not stopped[i]
        elif stopped[i] and moved:
            out.append(i)
            moved = False
        elif not stopped[i]:
            moved = True
    if not out or out[-1] != T - 1:
        out.append(T - 1)
    return out


def _canonical_quat(q: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) with w >= 0 (the same rotation as -q)."""
    q = np.asarray(q, np.float64)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    q = q / np.where(n > 0, n, 1.0)
    return np.where(q[..., 3:4] < 0, -q, q)


def pose_action(gripper_pose: np.ndarray, gripper_open) -> np.ndarray:
    """[x, y, z, qx, qy, qz, qw, open] with a canonical quaternion (float32)."""
    p = np.asarray(gripper_pose, np.float64).reshape(7)
    return np.concatenate([p[:3], _canonical_quat(p[3:]), [float(gripper_open)]]).astype(np.float32)


def keyframe_episode(frames: np.ndarray, gripper_pose: np.ndarray, gripper_open: np.ndarray,
                     joint_velocities: np.ndarray, states: np.ndarray | None = None, seed: int = -1,
                     stopped_tol: float = STOPPED_TOL) -> Episode:
    """One dense demonstration (T frames) -> the keyframe Episode described in the module docstring."""
    frames = np.asarray(frames)
    gp = np.asarray(gripper_pose, np.float64).reshape(len(frames), 7)
    go = np.asarray(gripper_open, np.float64).reshape(len(frames))
    kf = keyframes(go, joint_velocities, stopped_tol)
    starts = [0] + kf[:-1]
    actions = np.stack([pose_action(gp[k], go[k]) for k in kf])
    proprio = np.stack([pose_action(gp[s], go[s]) for s in starts])
    st = np.asarray(states, np.float32)[starts] if states is not None and np.size(states) else np.zeros((len(kf), 0), np.float32)
    return Episode(frames=frames[starts], actions=actions, proprio=proprio, states=st, success=True, seed=seed)


def _import():
    try:
        import rlbench  # noqa: F401
        from rlbench.action_modes.action_mode import MoveArmThenGripper
        from rlbench.action_modes.arm_action_modes import EndEffectorPoseViaPlanning
        from rlbench.action_modes.gripper_action_modes import Discrete
        from rlbench.environment import Environment
        from rlbench.observation_config import ObservationConfig
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from e
    return Environment, MoveArmThenGripper, EndEffectorPoseViaPlanning, Discrete, ObservationConfig


def _planning_errors() -> tuple[type[BaseException], ...]:
    """The exceptions RLBench/PyRep raise for unreachable or invalid poses (those that exist)."""
    errs: list[type[BaseException]] = []
    try:
        from rlbench.backend.exceptions import InvalidActionError

        errs.append(InvalidActionError)
    except ImportError:
        pass
    try:
        from pyrep.errors import ConfigurationPathError, IKError

        errs += [ConfigurationPathError, IKError]
    except ImportError:
        pass
    return tuple(errs)


class RLBenchEnv:
    """One RLBench task (see the module docstring); ``step`` -> (obs, success, done)."""

    action_dim = ACTION_DIM

    def __init__(self, task: str, spec: EnvSpec):
        self.task_name = task_key(task)
        self.camera = camera_name(spec)
        self.size = frame_size(spec)
        self.horizon = int(spec.horizon or DEFAULT_HORIZON)
        Environment, MoveArmThenGripper, EndEffectorPoseViaPlanning, Discrete, ObservationConfig = _import()
        import rlbench.tasks

        obs_config = ObservationConfig()
        obs_config.set_all(False)  # every camera and every low-dim field off, then what we use on
        cam = getattr(obs_config, f"{self.camera}_camera")
        cam.rgb = True
        cam.image_size = (self.size, self.size)
        for f in ("gripper_pose", "gripper_open", "joint_positions", "joint_velocities", "task_low_dim_state"):
            setattr(obs_config, f, True)
        self.env = Environment(
            action_mode=MoveArmThenGripper(arm_action_mode=EndEffectorPoseViaPlanning(), gripper_action_mode=Discrete()),
            obs_config=obs_config, headless=True)
        self.env.launch()
        try:
            self.task = self.env.get_task(getattr(rlbench.tasks, TASK_CLASSES[self.task_name]))
        except Exception:
            self.env.shutdown()
            raise
        self._errors = _planning_errors()
        self.invalid_actions = 0
        self._t = 0
        self._last: Obs | None = None

    def _obs(self, o) -> Obs:
        rgb = np.ascontiguousarray(getattr(o, f"{self.camera}_rgb"), dtype=np.uint8)
        prop = pose_action(o.gripper_pose, o.gripper_open)
        extra = getattr(o, "task_low_dim_state", None)
        if extra is None or not np.size(extra):
            extra = o.joint_positions
        state = np.concatenate([prop, np.asarray(extra, np.float32).reshape(-1)]).astype(np.float32)
        self._last = Obs(rgb=rgb, proprio=prop, state=state)
        return self._last

    def reset(self, seed: int) -> Obs:
        np.random.seed(int(seed) % 2**32)
        random.seed(int(seed))
        _, o = self.task.reset()
        self._t = 0
        return self._obs(o)

    def step(self, action: np.ndarray) -> tuple[Obs, bool, bool]:
        a = np.asarray(action, np.float64).reshape(ACTION_DIM).copy()
        q = a[3:7]
        a[3:7] = q / np.linalg.norm(q) if np.linalg.norm(q) > 1e-8 else (0.0, 0.0, 0.0, 1.0)
        a[7] = 1.0 if a[7] > 0.5 else 0.0
        self._t += 1
        try:
            o, reward, terminate = self.task.step(a)
        except self._errors as e:
            self.invalid_actions += 1
            log.debug("RLBench %s: invalid action at step %d (%s); the episode ends as a failure", self.task_name, self._t, e)
            return self._last, False, True
        success = bool(reward > 0 or terminate)
        return self._obs(o), success, bool(success or self._t >= self.horizon)

    def demo(self, seed: int):
        """One live demonstration (a list of RLBench observations), ``np.random`` seeded first."""
        np.random.seed(int(seed) % 2**32)
        random.seed(int(seed))
        (d,) = self.task.get_demos(1, live_demos=True)
        return [d[i] for i in range(len(d))]

    def close(self) -> None:
        env = getattr(self, "env", None)
        if env is not None:
            env.shutdown()
            self.env = None


class RLBenchSuite:
    name = "rlbench"
    tasks = TASKS
    max_envs = 1  # PyRep runs one CoppeliaSim per process: evaluation episodes run one after another

    def make_env(self, task: str, spec: EnvSpec) -> RLBenchEnv:
        return RLBenchEnv(task, spec)

    def cache_dir(self, task: str, spec: EnvSpec, demo_dir: Path) -> DemoDir:
        return DemoDir(Path(demo_dir) / self.name / task_key(task) / f"{camera_name(spec)}_{frame_size(spec)}")

    def demonstrations(self, task: str, spec: EnvSpec, n: int, demo_dir: Path, progress: bool = False) -> list[Episode]:
        """``n`` keyframe demonstrations (module docstring), collected once with RLBench and cached."""
        cache = self.cache_dir(task, spec, demo_dir)
        if len(cache.paths()) < n:
            self._collect(task_key(task), spec, cache, n, progress)
        return cache.load(n, progress=progress)

    def _collect(self, task: str, spec: EnvSpec, cache: DemoDir, n: int, progress: bool) -> None:
        from tqdm import tqdm

        meta = cache.meta or {"suite": self.name, "task": task, "task_class": TASK_CLASSES[task],
                              "camera": camera_name(spec), "render_size": frame_size(spec),
                              "expert": "RLBench live demonstrations (task.get_demos(1, live_demos=True))",
                              "conversion": f"keyframes (gripper change or arm at rest, tol {STOPPED_TOL}); "
                                            "row = frame at segment start, action = pose + open at its end keyframe",
                              "failed_seeds": []}
        done = cache.paths()
        seed = max([-1] + [int(np.load(p)["seed"]) for p in done] + meta["failed_seeds"]) + 1
        env = RLBenchEnv(task, EnvSpec(spec.camera, spec.render_size, spec.horizon, spec.fast_render))
        bar = tqdm(total=n, initial=len(done), desc=f"RLBench demos {task}", disable=not progress, leave=False)
        try:
            i = len(done)
            while i < n:
                if len(meta["failed_seeds"]) > MAX_FAILED_DEMOS:
                    raise NoDemonstrations(f"RLBench {task}: demonstration collection failed on seeds {meta['failed_seeds']}")
                try:
                    demo = env.demo(seed)
                except Exception as e:  # RLBench gives up on a variation whose demo it cannot plan
                    log.warning("RLBench %s: no demonstration for seed %d (%s: %s); skipped", task, seed, type(e).__name__, e)
                    meta["failed_seeds"].append(seed)
                else:
                    states = np.stack([env._obs(o).state for o in demo])
                    ep = keyframe_episode(
                        frames=np.stack([np.asarray(getattr(o, f"{env.camera}_rgb"), np.uint8) for o in demo]),
                        gripper_pose=np.stack([o.gripper_pose for o in demo]),
                        gripper_open=np.array([o.gripper_open for o in demo]),
                        joint_velocities=np.stack([o.joint_velocities for o in demo]),
                        states=states, seed=seed)
                    save_episode(cache.episode_path(i), ep)
                    i += 1
                    bar.update(1)
                cache.write_meta(meta)
                seed += 1
        finally:
            bar.close()
            env.close()
