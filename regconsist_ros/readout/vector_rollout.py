"""Lockstep BC rollouts: several evaluation episodes stepped together, one batched agent call per step.

``rollout_lockstep(envs, agent, seeds)`` runs one episode per seed, like ``bc_run.rollout``, on N
instances of the task's environment ("slots"). The first N seeds start in slots 0..N-1; when an
episode ends (success, done, or the horizon) its slot starts the next waiting seed, so the batch
stays full until the last N episodes, and a slot whose queue is empty stops being stepped. At every
step the observations of all running episodes go to the agent in one call (``act_batch``: one
batched encoder forward and, in ``bc_run.Agent``, the policy on each row), then each running
environment steps with its action.

An episode's outcome depends on its seed alone: the environment is reset from the seed and the
agent's frame history is per slot, cleared when a slot starts an episode. So the per-episode
results are the sequential loop's (``bc_run.rollout``) for any N, as long as the agent's output for
one observation does not depend on which other observations share its batch (see
``bc_run.Agent.act_batch``; tests/readout/test_bc_lockstep.py checks it).

Environments live in this process (:class:`LocalEnvs`: a list of environments) or in worker
processes (:class:`WorkerEnvs`: each worker builds and steps a share of the slots, all workers
step at the same time). Software GL (llvmpipe) rasterises a MetaWorld frame on one core, so on a
CPU machine worker processes render in parallel what one process renders in turn; the encoder
forward stays in the calling process. Workers need a suite whose environments can be rebuilt by
name in a fresh process (``process_safe``, see ``suites.base``).

An agent without ``act_batch`` (a plain callable ``Obs -> action``) is called once per
observation; it must not keep per-episode state, so one with a ``reset`` method is refused.
"""
from __future__ import annotations

import logging
import traceback
from typing import Callable, Sequence

import numpy as np

from regconsist_ros.readout.suites.base import BCEnv, EnvSpec, Obs

log = logging.getLogger(__name__)

StepResult = tuple[Obs, bool, bool, "float | None"]  # obs, success, done, the episode's return so far (or None)


class LocalEnvs:
    """N environments in this process, addressed by slot."""

    def __init__(self, envs: Sequence[BCEnv]):
        if not envs:
            raise ValueError("LocalEnvs needs at least one environment")
        self.envs = list(envs)
        self.n = len(self.envs)
        self.horizon = int(self.envs[0].horizon)
        self.action_dim = int(self.envs[0].action_dim)

    def reset(self, slots: Sequence[int], seeds: Sequence[int]) -> list[Obs]:
        return [self.envs[s].reset(int(seed)) for s, seed in zip(slots, seeds)]

    def step(self, slots: Sequence[int], actions: Sequence[np.ndarray]) -> list[StepResult]:
        out = []
        for s, a in zip(slots, actions):
            obs, success, done = self.envs[s].step(a)
            out.append((obs, success, done, _return_of(self.envs[s])))
        return out

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _return_of(env) -> float | None:
    ret = getattr(env, "reward_sum", None)  # suites scored by return (DMC)
    return None if ret is None else float(ret)


def _worker(conn, suite_name: str, task: str, spec: EnvSpec, n: int) -> None:
    """A worker process: builds ``n`` environments, then answers ("reset" | "step" | "close", args)."""
    envs = []
    try:
        from regconsist_ros.readout.suites import get_suite

        suite = get_suite(suite_name)
        envs = [suite.make_env(task, spec) for _ in range(n)]
        conn.send(("ready", (int(envs[0].horizon), int(envs[0].action_dim))))
        while True:
            cmd, arg = conn.recv()
            if cmd == "close":
                break
            if cmd == "reset":
                out = [envs[i].reset(int(seed)) for i, seed in arg]
            elif cmd == "step":
                out = []
                for i, a in arg:
                    obs, success, done = envs[i].step(a)
                    out.append((obs, success, done, _return_of(envs[i])))
            else:
                raise ValueError(f"unknown command {cmd!r}")
            conn.send(("ok", out))
    except (EOFError, KeyboardInterrupt):  # the parent went away
        pass
    except BaseException:
        try:
            conn.send(("error", traceback.format_exc()))
        except (OSError, EOFError):
            pass
    finally:
        for env in envs:
            try:
                env.close()
            except Exception:  # noqa: BLE001  (a worker's teardown must not mask the error sent above)
                pass
        conn.close()


class WorkerEnvs:
    """N environments of ``suite_name``/``task`` spread over ``workers`` processes (slot s lives in
    worker s % workers). Each call sends every worker its share first, then collects the answers,
    so the workers step (and render) in parallel."""

    def __init__(self, suite_name: str, task: str, spec: EnvSpec, n: int, workers: int):
        import multiprocessing as mp

        if n < 1 or workers < 1:
            raise ValueError(f"WorkerEnvs needs n >= 1 and workers >= 1, got {n}, {workers}")
        self.n, self.workers = n, min(workers, n)
        ctx = mp.get_context("spawn")  # fork would copy GL and torch thread state
        self._conns, self._procs = [], []
        try:
            for w in range(self.workers):
                here, there = ctx.Pipe()
                count = len(range(w, n, self.workers))
                p = ctx.Process(target=_worker, args=(there, suite_name, task, spec, count), daemon=True,
                                name=f"bc-envs-{w}")
                p.start()
                there.close()
                self._conns.append(here)
                self._procs.append(p)
            infos = [self._recv(w) for w in range(self.workers)]
        except BaseException:
            self.close()
            raise
        self.horizon, self.action_dim = infos[0]

    def _recv(self, w: int):
        try:
            kind, payload = self._conns[w].recv()
        except EOFError:
            self._procs[w].join(timeout=5)
            raise RuntimeError(f"BC environment worker {w} exited (exit code {self._procs[w].exitcode})") from None
        if kind == "error":
            raise RuntimeError(f"BC environment worker {w} failed:\n{payload}")
        return payload

    def _call(self, cmd: str, slots: Sequence[int], args: Sequence) -> list:
        per: dict[int, list] = {}
        for k, (s, a) in enumerate(zip(slots, args)):
            per.setdefault(s % self.workers, []).append((k, s // self.workers, a))
        for w, items in per.items():
            self._conns[w].send((cmd, [(i, a) for _, i, a in items]))
        out: list = [None] * len(slots)
        for w, items in per.items():
            for (k, _, _), r in zip(items, self._recv(w)):
                out[k] = r
        return out

    def reset(self, slots: Sequence[int], seeds: Sequence[int]) -> list[Obs]:
        return self._call("reset", slots, [int(s) for s in seeds])

    def step(self, slots: Sequence[int], actions: Sequence[np.ndarray]) -> list[StepResult]:
        return self._call("step", slots, [np.asarray(a) for a in actions])

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(("close", None))
            except (OSError, EOFError, BrokenPipeError):
                pass
        for p in self._procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []


def batched(act) -> tuple[Callable[[list[Obs], list[int]], np.ndarray], Callable[[int], None]]:
    """(act_batch(obs, slots) -> [B, A], start(slot)) of an agent; a plain callable is called per observation."""
    if hasattr(act, "act_batch"):
        return act.act_batch, getattr(act, "reset", lambda slot: None)
    if hasattr(act, "reset"):
        raise TypeError(f"{type(act).__name__} keeps per-episode state (it has reset()) but no act_batch(obs, slots): "
                        "lockstep rollouts need the state kept per slot")
    return (lambda obs, slots: np.stack([np.asarray(act(o)) for o in obs])), (lambda slot: None)


def rollout_lockstep(envs, act, seeds, record: int = 0, progress: bool = False, desc: str = "rollouts") -> list[dict]:
    """One episode per seed on the slots of ``envs`` (:class:`LocalEnvs`, :class:`WorkerEnvs` or a list
    of environments), stepped together (module docstring).

    Returns, in seed order, per episode {"seed", "success", "steps"} (+ "return" for suites scored by
    return, + "frames" for the first ``record`` seeds): the rows of ``bc_run.rollout``."""
    from tqdm import tqdm

    pool = envs if hasattr(envs, "step") and hasattr(envs, "n") else LocalEnvs(list(envs))
    act_batch, start_slot = batched(act)
    seeds = [int(s) for s in seeds]
    horizon = pool.horizon
    rows: list[dict | None] = [None] * len(seeds)
    running: dict[int, dict] = {}  # slot -> the episode in it
    queue = iter(range(len(seeds)))
    bar = tqdm(total=len(seeds) * horizon, desc=desc, unit="step", disable=not progress, leave=False)

    def start(slots) -> None:
        pairs = [(s, i) for s, i in zip(slots, queue)]
        if not pairs:
            return
        for (s, i), obs in zip(pairs, pool.reset([s for s, _ in pairs], [seeds[i] for _, i in pairs])):
            start_slot(s)
            running[s] = {"i": i, "obs": obs, "steps": 0, "success": False, "ret": None,
                          "frames": [obs.rgb] if i < record else None}

    try:
        start(range(min(pool.n, len(seeds))))
        while running:
            slots = sorted(running)
            actions = act_batch([running[s]["obs"] for s in slots], slots)  # [B, A]
            ended = []
            for s, (obs, success, done, ret) in zip(slots, pool.step(slots, list(actions))):
                ep = running[s]
                ep["obs"], ep["success"], ep["ret"] = obs, bool(success), ret
                ep["steps"] += 1
                if ep["frames"] is not None:
                    ep["frames"].append(obs.rgb)
                if success or done or ep["steps"] >= horizon:
                    row = {"seed": seeds[ep["i"]], "success": ep["success"], "steps": ep["steps"]}
                    if ret is not None:
                        row["return"] = ret
                    if ep["frames"] is not None:
                        row["frames"] = ep["frames"]
                    rows[ep["i"]] = row
                    ended.append(s)
                    bar.update(horizon - ep["steps"])  # the steps it will not need
            bar.update(len(slots))
            for s in ended:
                del running[s]
            if ended:
                done_rows = [r for r in rows if r is not None]
                bar.set_postfix_str(f"{len(done_rows)}/{len(seeds)} done, {sum(r['success'] for r in done_rows)} success")
            start(ended)
    finally:
        bar.close()
    return rows  # type: ignore[return-value]
