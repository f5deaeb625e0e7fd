"""`regconsist bench bc`: MetaWorld rendering, BC rollout speed, and sequential vs lockstep episodes per minute."""
from __future__ import annotations

import time

from regconsist_ros.bench import machine


def _ms(fn, n: int) -> float:
    """Milliseconds per call of ``fn`` (after one warm-up call), the best of 3 rounds of ``n`` calls."""
    fn()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return round(1000 * best, 2)


def bench_bc(task="hammer", size=128, crop=112, n=50, seed=0, episodes=25, horizon=50, envs=0, env_workers=2,
             vit_size="tiny", vit_depth=6, sequential=True) -> dict:
    """ms per MetaWorld frame (fast vs full rendering) and per rollout step of a random-init ViT BC agent
    (``vit_size``/``vit_depth`` on the ``crop`` px centre crop of ``size`` px frames; default ViT-tiny with
    6 blocks at 112 px), a profile of one step (render, physics, encoder at batch 1 and batched, policy),
    then ``episodes`` evaluation episodes of ``horizon`` steps (seeds ``seed``, ``seed+1``, ...) run
    three ways with the same agent: one after another (``bc_run.rollout``), in lockstep on ``envs``
    environments in this process (0 = ``episodes``) and in lockstep on ``env_workers`` worker processes
    (0 = skip). Reports episodes per minute of each (environment set-up excluded, reported apart),
    their ratios to the sequential loop, and whether all three gave the same per-episode outcomes.
    ``sequential=False`` skips the sequential loop (no ratios then)."""
    import numpy as np
    import torch

    from regconsist_ros.models.vit import ViTConfig
    from regconsist_ros.readout.bc import BCConfig, BCPolicy
    from regconsist_ros.readout.bc_run import Agent, embed_frames, resolve_encoder, rollout
    from regconsist_ros.readout.suites.base import EnvSpec
    from regconsist_ros.readout.suites.metaworld import MetaWorldEnv
    from regconsist_ros.readout.vector_rollout import LocalEnvs, WorkerEnvs, rollout_lockstep

    out = {"bench": "bc", "suite": "metaworld", "task": task, "size": size, "crop": crop, "n": n, **machine()}
    for fast in (True, False):
        env = MetaWorldEnv(task, EnvSpec(render_size=size, fast_render=fast))
        try:
            env.reset(seed)
            env.render()
            t0 = time.perf_counter()
            for _ in range(n):
                env.render()
            out[f"render_ms_{'fast' if fast else 'full'}"] = round(1000 * (time.perf_counter() - t0) / n, 2)
        finally:
            env.close()
    enc = resolve_encoder("random", ViTConfig(size=vit_size, depth=vit_depth, img_size=(crop, crop)))
    width = enc.model.cfg.width
    policy = BCPolicy(3 * width + 4, 4).eval()
    env = MetaWorldEnv(task, EnvSpec(render_size=size))
    try:
        agent = Agent(enc, policy, BCConfig(), crop, proprio=True)
        obs = env.reset(seed)
        agent.reset()
        with torch.no_grad():
            t0 = time.perf_counter()
            for _ in range(n):
                obs, _, _ = env.step(agent(obs))
        out["rollout_step_ms"] = round(1000 * (time.perf_counter() - t0) / n, 2)
        # where a step's time goes
        n_env = min(envs or episodes, episodes)
        frames = np.stack([obs.rgb] * n_env)
        zero = np.zeros(env.action_dim, np.float32)
        x = torch.zeros(1, 3 * width + 4)
        env.reset(seed)  # MetaWorld allows 500 steps an episode
        with torch.no_grad():
            out["profile_ms"] = {
                "render": _ms(env.render, n),
                "physics": _ms(lambda: env.u.step(zero), min(n, 100)),
                "encoder_batch1": _ms(lambda: embed_frames(enc, frames[:1], crop, batch=1), max(2, n // 5)),
                f"encoder_per_frame_batch{n_env}": round(_ms(lambda: embed_frames(enc, frames, crop, batch=n_env),
                                                              1) / n_env, 2),
                "policy_row": _ms(lambda: policy(x), n),
            }
    finally:
        env.close()

    spec = EnvSpec(render_size=size, horizon=horizon)
    seeds = [seed + i for i in range(episodes)]
    out.update({"episodes": episodes, "horizon": horizon, "envs": n_env, "env_workers": env_workers,
                "encoder": f"vit-{vit_size} depth {enc.model.cfg.blocks} at {crop} px"})
    runs: dict[str, list[dict]] = {}

    def timed(name: str, make_pool, run) -> None:
        t0 = time.perf_counter()
        pool = make_pool()
        t1 = time.perf_counter()
        try:
            runs[name] = run(pool)
        finally:
            pool.close()
        t2 = time.perf_counter()
        out[f"setup_s_{name}"] = round(t1 - t0, 1)
        out[f"episodes_per_min_{name}"] = round(60 * episodes / (t2 - t1), 2)

    a = Agent(enc, policy, BCConfig(), crop, proprio=True)
    if sequential:
        timed("sequential", lambda: MetaWorldEnv(task, spec), lambda e: rollout(e, a, seeds))
    timed("lockstep", lambda: LocalEnvs([MetaWorldEnv(task, spec) for _ in range(n_env)]),
          lambda p: rollout_lockstep(p, a, seeds))
    if env_workers:
        timed("lockstep_workers", lambda: WorkerEnvs("metaworld", task, spec, n_env, env_workers),
              lambda p: rollout_lockstep(p, a, seeds))
    if sequential:
        for name in ("lockstep", "lockstep_workers"):
            if name in runs:
                out[f"speedup_{name}"] = round(out[f"episodes_per_min_{name}"] / out["episodes_per_min_sequential"], 2)
    outcomes = [[(r["seed"], r["success"], r["steps"]) for r in rows] for rows in runs.values()]
    out["same_outcomes"] = all(o == outcomes[0] for o in outcomes)
    return out
