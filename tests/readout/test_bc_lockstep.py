"""Lockstep BC rollouts (readout.vector_rollout): the same per-episode results as the sequential loop.

A cheap stand-in environment checks the loop itself (slots, replacement, per-episode frame history,
records, returns); MetaWorld, where installed, checks the real environments, worker processes and
the shared renderer."""
import importlib.util
import json

import numpy as np
import pytest
import torch

from regconsist_ros.readout import bc_run
from regconsist_ros.readout.bc import BCConfig, BCPolicy
from regconsist_ros.readout.bc_run import Agent, BCReadoutConfig, Encoder, rollout
from regconsist_ros.readout.demos import Episode
from regconsist_ros.readout.suites.base import EnvSpec, Obs
from regconsist_ros.readout.vector_rollout import LocalEnvs, rollout_lockstep

STATE = Encoder("state", None, {"init": "state", "kind": "state"})


class PointEnv:
    """A point moving towards a goal in [-1, 1]^2, drawn into a small frame; success within 0.15 of the goal.

    ``log`` (shared by every instance) collects each episode's actions by seed; stepping an episode
    that has ended is an error (the lockstep loop must leave finished slots alone)."""

    action_dim = 2

    def __init__(self, log: dict | None = None, horizon: int = 5, size: int = 64):
        self.log, self.horizon, self.size = ({} if log is None else log), horizon, size
        self.ended = True

    def _obs(self) -> Obs:
        img = np.full((self.size, self.size, 3), 40, np.uint8)
        for p, colour in ((self.goal, (0, 200, 0)), (self.pos, (220, 30, 30))):
            y, x = ((p + 1) / 2 * (self.size - 8)).astype(int)
            img[y:y + 8, x:x + 8] = colour
        return Obs(img, self.pos.astype(np.float32), np.concatenate([self.pos, self.goal]).astype(np.float32))

    def reset(self, seed: int) -> Obs:
        rng = np.random.default_rng(seed)
        self.pos, self.goal = rng.uniform(-1, 1, 2), rng.uniform(-1, 1, 2)
        self.t, self.reward_sum, self.ended = 0, 0.0, False
        self.actions = self.log[seed] = []
        return self._obs()

    def step(self, action):
        assert not self.ended, "stepped after its episode ended"
        a = np.clip(np.asarray(action, np.float64).reshape(2), -1, 1)
        self.actions.append(a.copy())
        self.pos = np.clip(self.pos + 0.3 * a, -1, 1)
        self.t += 1
        d = float(np.linalg.norm(self.pos - self.goal))
        self.reward_sum -= d
        success, done = d < 0.15, self.t >= self.horizon
        self.ended = success or done
        return self._obs(), success, done

    def close(self):
        pass


class Homing(torch.nn.Module):
    """A hand-set policy on the flare of states [dpos_1, dgoal_1, dpos_2, dgoal_2, pos, goal] + proprio (pos):
    towards the goal, plus some of the last motion (so a mixed-up frame history changes the actions)."""

    def forward(self, x):  # [B, 14] -> [B, 2]
        last_motion, pos, goal = x[:, 4:6], x[:, 8:10], x[:, 10:12]
        return 2.0 * (goal - pos) + 0.5 * last_motion


def _agent(kind: str):
    if kind == "state":
        return Agent(STATE, Homing(), BCConfig(), crop=0, proprio=True)
    from regconsist_ros.models.encoder import random_encoder
    from regconsist_ros.models.vit import ViTConfig

    vit = random_encoder("vit", ViTConfig(size="tiny", depth=2, img_size=(64, 64), patch=8))
    torch.manual_seed(0)
    policy = BCPolicy(3 * 192 + 2, 2, last_scale=5.0).eval()
    return Agent(Encoder("vit", vit, {"kind": "vit"}), policy, BCConfig(), crop=64, proprio=True)


def _same(a: list[dict], b: list[dict], log_a: dict, log_b: dict) -> None:
    assert [(r["seed"], r["success"], r["steps"]) for r in a] == [(r["seed"], r["success"], r["steps"]) for r in b]
    assert [r.get("return") for r in a] == pytest.approx([r.get("return") for r in b], abs=1e-9)
    assert sorted(log_a) == sorted(log_b)
    for seed in log_a:
        np.testing.assert_allclose(np.array(log_a[seed]), np.array(log_b[seed]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["state", "vit"])
@pytest.mark.parametrize("n_envs", [2, 3, 7, 12])
def test_lockstep_gives_the_sequential_results_for_the_same_seeds(kind, n_envs):
    seeds = list(range(100, 107))
    log_seq, log_lock = {}, {}
    seq = rollout(PointEnv(log_seq), _agent(kind), seeds, record=2)
    lock = rollout_lockstep([PointEnv(log_lock) for _ in range(n_envs)], _agent(kind), seeds, record=2)
    _same(seq, lock, log_seq, log_lock)
    if kind == "state":  # episodes of different lengths: slots finish early and are refilled
        assert 0 < sum(r["success"] for r in seq) < len(seeds) and len({r["steps"] for r in seq}) > 1
    for i in range(2):
        assert len(lock[i]["frames"]) == lock[i]["steps"] + 1
        for f, g in zip(seq[i]["frames"], lock[i]["frames"]):
            np.testing.assert_array_equal(f, g)
    assert all("frames" not in r for r in lock[2:])


def test_agent_rows_do_not_depend_on_their_batch():
    """Each episode's action is what the one-episode agent gives, whatever shares its batch (bitwise for
    the policy, which runs row by row; within float rounding for the encoder)."""
    for kind, exact in (("state", True), ("vit", False)):
        envs = [PointEnv() for _ in range(5)]
        obs = [e.reset(200 + i) for i, e in enumerate(envs)]
        batch = _agent(kind).act_batch(obs, list(range(5)))
        one = np.stack([_agent(kind)(o) for o in obs])
        if exact:
            np.testing.assert_array_equal(batch, one)
        else:
            np.testing.assert_allclose(batch, one, rtol=0, atol=1e-6)


def test_each_slot_keeps_its_own_frame_history():
    agent = _agent("state")
    a, b = PointEnv(), PointEnv()
    oa, ob = a.reset(1), b.reset(2)
    agent.act_batch([oa, ob], [0, 1])
    oa2 = a.step(np.array([0.5, 0.5]))[0]
    x = agent.act_batch([oa2, ob], [0, 1])
    assert set(agent.hist) == {0, 1} and len(agent.hist[0]) == 2 and len(agent.hist[1]) == 2
    alone = _agent("state")  # slot 0's episode without a neighbour: the same action
    alone.act_batch([oa], [5])
    np.testing.assert_array_equal(alone.act_batch([oa2], [5])[0], x[0])
    agent.reset(1)  # a new episode in slot 1 starts without history
    assert set(agent.hist) == {0}


def test_plain_callables_are_called_per_observation_and_stateful_ones_refused():
    seeds = [1, 2, 3]
    still = lambda obs: np.zeros(2)  # noqa: E731
    rows = rollout_lockstep([PointEnv(), PointEnv()], still, seeds)
    assert [r["steps"] for r in rows] == [5, 5, 5] and [r["seed"] for r in rows] == seeds

    class Stateful:
        def reset(self):
            pass

        def __call__(self, obs):
            return np.zeros(2)

    with pytest.raises(TypeError, match="per slot"):
        rollout_lockstep([PointEnv()], Stateful(), seeds)


def test_lockstep_progress_bar_and_local_pool(capsys):
    pool = LocalEnvs([PointEnv(horizon=4) for _ in range(3)])
    assert pool.n == 3 and pool.horizon == 4 and pool.action_dim == 2
    rows = rollout_lockstep(pool, _agent("state"), range(5), progress=True, desc="test rollouts")
    assert len(rows) == 5 and all(1 <= r["steps"] <= 4 for r in rows)
    assert "test rollouts" in capsys.readouterr().err


def _stub_suite(log: dict):
    class Suite:
        name, tasks = "stub", ("reach",)

        def demonstrations(self, task, spec, n, root, progress=False):
            rng = np.random.default_rng(0)
            return [Episode(frames=np.zeros((30, 64, 64, 3), np.uint8), actions=rng.normal(size=(30, 2)),
                            proprio=rng.normal(size=(30, 2)).astype(np.float32), states=rng.normal(size=(30, 4)),
                            success=True, seed=i) for i in range(n)]

        def make_env(self, task, spec):
            return PointEnv(log, horizon=spec.horizon or 5)

    return Suite()


def test_run_task_rolls_out_in_lockstep_by_default_and_matches_envs_1(tmp_path, monkeypatch):
    results, logs = {}, {}
    for n in (1, 4, 25):
        logs[n] = {}
        monkeypatch.setattr(bc_run, "get_suite", lambda name, log=logs[n]: _stub_suite(log))
        cfg = BCReadoutConfig(suite="stub", demos=3, episodes=6, eval_every=2, render_size=64, crop_size=64, videos=1,
                              envs=n, horizon=5, seeds=1)
        results[n] = bc_run.run_task("reach", STATE, cfg, BCConfig(epochs=4, batch=32), tmp_path / f"e{n}",
                                     progress=False)
        assert results[n]["rollout_envs"] == min(n, 6) and results[n]["rollout_workers"] == 0  # stub: not process_safe
    assert BCReadoutConfig().envs == 25
    for n in (4, 25):
        assert results[n]["key"] == results[1]["key"]  # an execution setting: the cached result is reused
        for k in ("success", "best_success", "final_outcomes", "best_outcomes", "mean_steps_final", "train_loss"):
            assert results[n][k] == results[1][k], k
        lines = [json.loads(x) for x in (tmp_path / f"e{n}" / "stub" / "state" / "reach" / "seed0" / "progress.jsonl")
                 .read_text().splitlines()]
        ref = [json.loads(x) for x in (tmp_path / "e1" / "stub" / "state" / "reach" / "seed0" / "progress.jsonl")
               .read_text().splitlines()]
        assert [r["steps"] for r in lines] == [r["steps"] for r in ref]
        assert results[n]["videos"] == [v.replace("/e1/", f"/e{n}/") for v in results[1]["videos"]]  # the same replays
    with pytest.raises(ValueError, match="envs"):
        BCReadoutConfig(envs=0)
    with pytest.raises(ValueError, match="env_workers"):
        BCReadoutConfig(env_workers=-2)


def test_suites_that_allow_one_environment_run_sequentially():
    class OneAtATime:
        max_envs = 1

        def make_env(self, task, spec):
            return PointEnv()

    r = bc_run.Rollouts(OneAtATime(), "one", "t", EnvSpec(), [1, 2, 3], envs=25, env_workers=-1, progress=False)
    try:
        assert r.envs == 1 and r.pool is None and r.workers == 0
        assert [row["seed"] for row in r.run(lambda obs: np.zeros(2))] == [1, 2, 3]
    finally:
        r.close()
    from regconsist_ros.readout.suites import get_suite

    assert get_suite("rlbench").max_envs == 1 and get_suite("metaworld").process_safe


# ------------------------------------------------------------------------------------------ MetaWorld


TASK = "button-press-topdown"


@pytest.fixture(scope="module")
def mw():
    if importlib.util.find_spec("metaworld") is None:  # not importorskip: importing mujoco before MUJOCO_GL is set
        pytest.skip("metaworld is not installed")      # would pick a windowed GL backend
    from regconsist_ros.readout.suites import metaworld

    return metaworld


class Recorder:
    """Wraps an agent and keeps each episode's actions, in the order the episodes start (= seed order)."""

    def __init__(self, agent):
        self.agent, self.episodes, self.current = agent, [], {}

    def reset(self, slot=0):
        self.agent.reset(slot)
        self.current[slot] = []
        self.episodes.append(self.current[slot])

    def act_batch(self, obs, slots):
        out = self.agent.act_batch(obs, slots)
        for s, a in zip(slots, out):
            self.current[s].append(a.copy())
        return out

    def __call__(self, obs):
        return self.act_batch([obs], [0])[0]


def _mw_agent():
    from regconsist_ros.models.encoder import random_encoder
    from regconsist_ros.models.vit import ViTConfig

    vit = random_encoder("vit", ViTConfig(size="tiny", depth=2, img_size=(64, 64), patch=8))
    torch.manual_seed(1)
    policy = BCPolicy(3 * 192 + 4, 4, last_scale=20.0).eval()  # large enough actions to move the arm around
    return Recorder(Agent(Encoder("vit", vit, {"kind": "vit"}), policy, BCConfig(), crop=64, proprio=True))


def _check_same(seq, seq_agent, lock, lock_agent):
    assert [(r["seed"], r["success"], r["steps"]) for r in lock] == [(r["seed"], r["success"], r["steps"]) for r in seq]
    assert len(lock_agent.episodes) == len(seq_agent.episodes)
    for a, b in zip(seq_agent.episodes, lock_agent.episodes):
        np.testing.assert_allclose(np.stack(a), np.stack(b), rtol=0, atol=1e-6)
    moved = np.abs(np.stack(seq_agent.episodes[0])).mean()
    assert moved > 0.05  # the policy moves the arm (the test is not one of a frozen arm)
    for r, q in zip(seq, lock):
        if "frames" in r:
            np.testing.assert_array_equal(r["frames"][-1], q["frames"][-1])


class Expert:
    """MetaWorld's scripted policy on the ground-truth state: a stateless plain callable."""

    def __init__(self):
        from metaworld.policies import ENV_POLICY_MAP

        self.p = ENV_POLICY_MAP[f"{TASK}-v3"]()

    def __call__(self, obs):
        return self.p.get_action(obs.state)


def _sequential(mw, spec, seeds, agent, record=0):
    env = mw.MetaWorldEnv(TASK, spec)
    try:
        return rollout(env, agent, seeds, record=record)
    finally:
        env.close()


def test_metaworld_lockstep_matches_sequential(mw):
    spec = EnvSpec(render_size=64, horizon=30)
    seeds = [1000, 1001, 1002, 1003]
    seq_agent, lock_agent = _mw_agent(), _mw_agent()
    seq = _sequential(mw, spec, seeds, seq_agent, record=4)
    envs = [mw.MetaWorldEnv(TASK, spec) for _ in range(3)]  # 4 episodes on 3 slots: one slot is reused
    try:
        lock = rollout_lockstep(envs, lock_agent, seeds, record=4)
    finally:
        for env in envs:
            env.close()
    _check_same(seq, seq_agent, lock, lock_agent)

    spec = EnvSpec(render_size=32, horizon=150)  # success counting: the scripted expert ends episodes early
    seeds = [1000, 1001, 1002]
    seq = _sequential(mw, spec, seeds, Expert())
    envs = [mw.MetaWorldEnv(TASK, spec) for _ in range(2)]
    try:
        lock = rollout_lockstep(envs, Expert(), seeds)
    finally:
        for env in envs:
            env.close()
    assert [(r["success"], r["steps"]) for r in lock] == [(r["success"], r["steps"]) for r in seq]
    assert all(r["success"] for r in lock) and len({r["steps"] for r in lock}) > 1


def test_metaworld_worker_processes_give_the_same_episodes(mw):
    from regconsist_ros.readout.vector_rollout import WorkerEnvs

    spec = EnvSpec(render_size=64, horizon=20)
    seeds = [1000, 1001, 1002]
    seq_agent, lock_agent = _mw_agent(), _mw_agent()
    seq = _sequential(mw, spec, seeds, seq_agent, record=2)
    pool = WorkerEnvs("metaworld", TASK, spec, n=2, workers=2)
    try:
        assert (pool.n, pool.workers, pool.horizon, pool.action_dim) == (2, 2, 20, 4)
        lock = rollout_lockstep(pool, lock_agent, seeds, record=2)
    finally:
        pool.close()
    _check_same(seq, seq_agent, lock, lock_agent)
    with pytest.raises(RuntimeError, match="cameras"):  # a worker's error comes back with its traceback
        WorkerEnvs("metaworld", TASK, EnvSpec(camera="nope", render_size=32), n=1, workers=1)


def test_metaworld_shared_renderer_draws_each_environment_as_its_own_renderer_would(mw):
    import mujoco

    spec = EnvSpec(render_size=48)
    a, b = mw.MetaWorldEnv(TASK, spec), mw.MetaWorldEnv(TASK, spec)
    try:
        assert a._renderer is b._renderer and a._renderer.users == 2
        a.reset(1000), b.reset(1001)
        b.step(np.array([1.0, 0.0, -1.0, 1.0]))
        for env in (a, b):
            ref = mujoco.Renderer(env.u.model, 48, 48)
            try:
                ref.update_scene(env.u.data, camera=env.camera)
                for flag, value in env._flags.items():
                    ref.scene.flags[flag] = value
                np.testing.assert_array_equal(env.render(), ref.render()[::-1])
            finally:
                ref.close()
        assert not np.array_equal(a.render(), b.render())
    finally:
        a.close()
        b.close()
    assert not mw.SceneRenderer._shared  # the last user freed the context
