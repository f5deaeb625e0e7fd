"""MetaWorld for the BC readout: the five CortexBench tasks, scripted-expert demonstrations, fast rendering.

Environments are MetaWorld v3 single-task environments, the raw environment class that
``gym.make("Meta-World/MT1", env_name=...)`` wraps, driven without the wrappers (see
``MetaWorldEnv.reset``); ``reset(seed)`` draws the object and goal positions from the seed alone, so
demonstrations (seeds 0, 1, ...) and evaluation rollouts (seeds from 1000) see different,
reproducible layouts. The class is built directly (0.2 s) rather than through ``gym.make`` (1.5 s:
the MT1 benchmark first builds a throw-away environment and resets it 50 times to pre-sample layouts
that ``reset(seed)`` never uses); states, rewards and success flags are the same step for step
(checked on the five tasks).

Camera and resolution (the benchmark's demonstration files cannot be downloaded, and the camera
its configs name belongs to an older MetaWorld fork that the current release does not ship):
frames come from ``corner2`` (60 degree field of view, the arm, table and objects in view),
flipped vertically (MetaWorld's corner cameras render upside down), square ``render_size``
(benchmark: 256, then a 224 centre crop in the readout). ``fast_render`` switches off shadows,
reflections and multisampling, which cuts software-GL (llvmpipe) rendering from ~110 ms to ~20 ms
per frame on a CPU machine; the geometry and textures are unchanged. The remaining ~15 ms are the
arm's ~67k mesh triangles (llvmpipe transforms vertices on one core, so the cost hardly depends on
the frame size: 64 px costs what 256 px does).

Every environment of one task in a process renders through one shared GL context
(:class:`SceneRenderer`): a context with its buffers costs ~0.8 s and ~170 MB, which 25 lockstep
environments (``readout.vector_rollout``) would otherwise pay 25 times. Frames are the same bytes
as with one ``mujoco.Renderer`` per environment (the context holds only the model's meshes and
textures, the same for every instance of a task; the scene is rebuilt from the environment's own
model and data at each frame).

Proprioception: the first 4 observation dims (hand xyz, gripper opening), as the benchmark uses.
The ground-truth state is the full 39-dim observation.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from regconsist_ros.readout.demos import DemoDir, Episode, NoDemonstrations, save_episode
from regconsist_ros.readout.suites.base import EnvSpec, Obs, headless_gl

log = logging.getLogger(__name__)
TASKS = ("assembly", "bin-picking", "button-press-topdown", "drawer-open", "hammer")
DEFAULT_CAMERA = "corner2"
MAX_PATH = 500  # MetaWorld's own episode limit
PROPRIO_DIMS = 4
DEMO_SEED0 = 0


def env_name(task: str) -> str:
    return task if task.endswith(("-v3", "-v2")) else f"{task}-v3"


def _import():
    headless_gl()
    try:
        import gymnasium as gym
        import metaworld  # noqa: F401  (registers Meta-World/* environments)
        import mujoco
    except ImportError as e:
        raise ImportError(f"the MetaWorld suite needs metaworld (pip install metaworld; 'make setup' installs it): {e}") from e
    return gym, mujoco


class SceneRenderer:
    """One GL context for every MetaWorld environment of one task and frame size in this process.

    ``acquire(key, model, size)`` returns the shared renderer (made from the first environment's
    model) and counts the user; ``release()`` frees the context when the last one is done.
    ``render(model, data, camera_id, flags)`` does what ``mujoco.Renderer.update_scene`` + ``render``
    do, with the scene built from the given environment's own model and data. A GL context belongs to
    the thread that made it current: use the environments of one process from one thread."""

    _shared: dict[tuple, "SceneRenderer"] = {}

    def __init__(self, key: tuple, model, size: int):
        import mujoco

        self.key, self.users = key, 0
        self._renderer = mujoco.Renderer(model, size, size)
        self._option = mujoco.MjvOption()
        self._cam = mujoco.MjvCamera()
        self._cam.type = mujoco.mjtCamera.mjCAMERA_FIXED

    @classmethod
    def acquire(cls, key: tuple, model, size: int) -> "SceneRenderer":
        r = cls._shared.get(key)
        if r is None:
            r = cls._shared[key] = cls(key, model, size)
        r.users += 1
        return r

    def release(self) -> None:
        self.users -= 1
        if self.users <= 0:
            if self._shared.get(self.key) is self:
                del self._shared[self.key]
            self._renderer.close()

    def render(self, model, data, camera_id: int, flags: dict) -> np.ndarray:
        import mujoco

        self._cam.fixedcamid = camera_id
        scene = self._renderer.scene
        mujoco.mjv_updateScene(model, data, self._option, None, self._cam, mujoco.mjtCatBit.mjCAT_ALL.value, scene)
        for flag, value in flags.items():
            scene.flags[flag] = value
        return self._renderer.render()  # [H, W, 3] uint8, as MuJoCo reads it (bottom row first)


class MetaWorldEnv:
    """One MetaWorld task with our own renderer; ``step`` -> (obs, success, done)."""

    def __init__(self, task: str, spec: EnvSpec):
        _, mujoco = _import()
        self.task, self.spec = task, spec
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        if env_name(task) not in ALL_V3_ENVIRONMENTS:
            raise ValueError(f"MetaWorld has no task {task!r} ({env_name(task)}); tasks: "
                             f"{sorted(n.removesuffix('-v3') for n in ALL_V3_ENVIRONMENTS)}")
        self._renderer = None
        self.u = ALL_V3_ENVIRONMENTS[env_name(task)]()  # the class gym.make("Meta-World/MT1") wraps
        self.u._set_task_called = True  # MetaWorld refuses to step before a task is set; reset(seed) sets the layout
        self.env = self.u
        self.camera = spec.camera or DEFAULT_CAMERA
        names = [mujoco.mj_id2name(self.u.model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(self.u.model.ncam)]
        if self.camera not in names:
            self.close()
            raise ValueError(f"MetaWorld camera {self.camera!r} does not exist; cameras: {names}")
        self._camera_id = names.index(self.camera)
        if spec.fast_render:
            self.u.model.vis.quality.offsamples = 0
        self._renderer = SceneRenderer.acquire((env_name(task), spec.render_size, spec.fast_render), self.u.model,
                                               spec.render_size)
        self._flags = {mujoco.mjtRndFlag.mjRND_SHADOW: 0, mujoco.mjtRndFlag.mjRND_REFLECTION: 0} if spec.fast_render else {}
        self.action_dim = int(self.u.action_space.shape[0])
        self.horizon = min(spec.horizon or MAX_PATH, MAX_PATH)
        self._t = 0
        self._state = None

    def render(self) -> np.ndarray:
        img = self._renderer.render(self.u.model, self.u.data, self._camera_id, self._flags)
        return np.ascontiguousarray(img[::-1])  # [H, W, 3] uint8, upright

    def _obs(self, state) -> Obs:
        self._state = np.asarray(state, np.float32)
        return Obs(rgb=self.render(), proprio=self._state[:PROPRIO_DIMS].copy(), state=self._state.copy())

    def reset(self, seed: int) -> Obs:
        """A layout drawn from ``seed`` alone (the same seed, the same object/goal positions).

        MetaWorld's wrappers ignore ``reset(seed=...)`` and pick one of 50 pre-sampled layouts at
        random, so the raw environment is driven directly: its layout vector is sampled from its
        own generator, reseeded here; the goal is observable (as in the benchmark's
        goal-observable environments)."""
        u = self.u
        u._freeze_rand_vec = False
        u.seeded_rand_vec = True
        if u._partially_observable:
            u._partially_observable = False
            u.__dict__.pop("sawyer_observation_space", None)  # a cached property that depends on it
        u.seed(int(seed))
        state, _ = u.reset()
        self._t = 0
        return self._obs(state)

    def step(self, action: np.ndarray) -> tuple[Obs, bool, bool]:
        a = np.clip(np.asarray(action, np.float32).reshape(self.action_dim), -1.0, 1.0)
        state, _, terminated, truncated, info = self.u.step(a)
        self._t += 1
        success = bool(info.get("success", 0.0) > 0.5)
        return self._obs(state), success, bool(terminated or truncated or self._t >= self.horizon)

    def expert_action(self) -> np.ndarray:
        """MetaWorld's scripted policy for this task, on the current state."""
        if not hasattr(self, "_expert"):
            from metaworld.policies import ENV_POLICY_MAP

            self._expert = ENV_POLICY_MAP[env_name(self.task)]()
        return np.asarray(self._expert.get_action(self._state), np.float32)

    def close(self) -> None:
        r = getattr(self, "_renderer", None)
        if r is not None:
            r.release()
            self._renderer = None
        self.u.close()


class MetaWorldSuite:
    name = "metaworld"
    tasks = TASKS
    process_safe = True  # environments can be made in worker processes (readout.vector_rollout.WorkerEnvs)

    def make_env(self, task: str, spec: EnvSpec) -> MetaWorldEnv:
        return MetaWorldEnv(task, spec)

    def cache_dir(self, task: str, spec: EnvSpec, demo_dir: Path) -> DemoDir:
        """Demonstrations depend on the camera and frame size, not on the evaluation horizon."""
        tag = f"{spec.camera or DEFAULT_CAMERA}_{spec.render_size}{'' if spec.fast_render else '_full'}"
        return DemoDir(Path(demo_dir) / self.name / task / tag)

    def demonstrations(self, task: str, spec: EnvSpec, n: int, demo_dir: Path, progress: bool = False) -> list[Episode]:
        """``n`` scripted-expert demonstrations, collected once and cached with their frames.

        Expert episodes that do not reach the goal within the horizon are discarded (counted in
        meta.json) and the next seed is used; a resumed collection continues after the last seed."""
        cache = self.cache_dir(task, spec, demo_dir)
        have = cache.paths()
        if len(have) < n:
            self._collect(task, spec, cache, n, progress)
        return cache.load(n, progress=progress)

    def _collect(self, task: str, spec: EnvSpec, cache: DemoDir, n: int, progress: bool) -> None:
        from tqdm import tqdm

        meta = cache.meta or {"suite": self.name, "task": task, "env": env_name(task), "camera": spec.camera or DEFAULT_CAMERA,
                              "render_size": spec.render_size, "fast_render": spec.fast_render,
                              "expert": "metaworld.policies scripted policy", "failed_seeds": []}
        done = cache.paths()
        seed = max([DEMO_SEED0 - 1] + [int(np.load(p)["seed"]) for p in done] + meta["failed_seeds"]) + 1
        horizon = MAX_PATH  # experts get MetaWorld's full episode, whatever the evaluation horizon
        env = MetaWorldEnv(task, EnvSpec(spec.camera, spec.render_size, MAX_PATH, spec.fast_render))
        bar = tqdm(total=n, initial=len(done), desc=f"expert demos {task}", disable=not progress, leave=False)
        try:
            i = len(done)
            while i < n:
                if len(meta["failed_seeds"]) > max(10, n):
                    raise NoDemonstrations(f"MetaWorld {task}: the scripted expert failed on {len(meta['failed_seeds'])} seeds")
                obs = env.reset(seed)
                frames, actions, prop, states = [], [], [], []
                success = False
                for _ in range(horizon):
                    a = env.expert_action()
                    frames.append(obs.rgb), actions.append(a), prop.append(obs.proprio), states.append(obs.state)
                    obs, success, done_ = env.step(a)
                    if success or done_:
                        break
                if success:
                    save_episode(cache.episode_path(i), Episode(np.stack(frames), np.stack(actions), np.stack(prop),
                                                                np.stack(states), True, seed))
                    i += 1
                    bar.update(1)
                else:
                    log.warning("MetaWorld %s: the scripted expert missed the goal on seed %d; skipped", task, seed)
                    meta["failed_seeds"].append(seed)
                cache.write_meta(meta)
                seed += 1
        finally:
            bar.close()
            env.close()
