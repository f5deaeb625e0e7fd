"""`regconsist bench bc`: MetaWorld rendering and BC rollout speed."""
from __future__ import annotations

import time

from regconsist_ros.bench import machine


def bench_bc(task="hammer", size=128, crop=112, n=50, seed=0) -> dict:
    """ms per MetaWorld frame (fast vs full rendering) and per rollout step of a random ViT-tiny BC agent."""
    import torch

    from regconsist_ros.models.vit import ViTConfig
    from regconsist_ros.readout.bc import BCConfig, BCPolicy
    from regconsist_ros.readout.bc_run import Agent, resolve_encoder
    from regconsist_ros.readout.suites.base import EnvSpec
    from regconsist_ros.readout.suites.metaworld import MetaWorldEnv

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
    enc = resolve_encoder("random", ViTConfig(size="tiny", depth=6, img_size=(crop, crop)))
    policy = BCPolicy(3 * 192 + 4, 4).eval()
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
    finally:
        env.close()
    return out
