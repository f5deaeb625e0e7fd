"""`regconsist bench ...`: speed figures as JSON (recorded in docs/benchmarks.md, never asserted in tests)."""
from __future__ import annotations

import os
import platform
import time

import numpy as np


def _machine() -> dict:
    import torch

    return {"cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "machine": platform.machine()}


def bench_sim(width=640, height=480, n=30, seed=0, nthreads=1, backend="auto") -> dict:
    """Frames/s of the embedded-world renderer (RGB + depth + semantic + instance) along an explore path."""
    from regconsist_ros.sim.source import SimConfig, SimSource

    t0 = time.perf_counter()
    src = SimSource(SimConfig(seed=seed, frames=n + 2, width=width, height=height, nthreads=nthreads, backend=backend))
    setup = time.perf_counter() - t0
    src[0], src[1]  # warm-up (ray direction cache, shader compilation, allocator)
    times = []
    for i in range(2, n + 2):
        t = time.perf_counter()
        src[i]
        times.append(time.perf_counter() - t)
    times = np.array(times)
    out = {"bench": "sim", "backend": src.renderer.backend, "width": width, "height": height, "frames": n,
           "nthreads": nthreads, "fps": round(1.0 / times.mean(), 2), "ms_mean": round(times.mean() * 1000, 2),
           "ms_median": round(float(np.median(times)) * 1000, 2), "triangles": src.mesh.num_triangles,
           "setup_s": round(setup, 2), **_machine()}
    if src.renderer.backend == "raycast":
        cast = []
        for i in range(2, n + 2):
            t = time.perf_counter()
            src.renderer.cast(src.intrinsics, src.poses[i])
            cast.append(time.perf_counter() - t)
        out["cast_ms_median"] = round(float(np.median(cast)) * 1000, 2)
    else:
        out["gl_renderer"] = src.renderer._gl.info
    return out


def bench_correspond(width=640, height=480, n=20, seed=0, nthreads=1) -> dict:
    """Milliseconds per view pair for exact correspondences + overlap IoU (both directions)."""
    import torch

    from regconsist_ros.registration.geometry import correspond
    from regconsist_ros.sim.source import SimConfig, SimSource

    torch.set_num_threads(max(1, nthreads))
    gap = 3
    src = SimSource(SimConfig(seed=seed, frames=n + gap + 1, width=width, height=height))
    frames = [src[i] for i in range(n + gap + 1)]
    correspond(frames[0], frames[gap])  # warm-up
    times, counts, ious = [], [], []
    for i in range(1, n + 1):
        t = time.perf_counter()
        c = correspond(frames[i], frames[i + gap])
        times.append(time.perf_counter() - t)
        counts.append(len(c))
        ious.append(c.overlap_iou)
    times = np.array(times)
    return {"bench": "correspond", "width": width, "height": height, "pairs": n, "torch_threads": torch.get_num_threads(),
            "ms_mean": round(times.mean() * 1000, 2), "ms_median": round(float(np.median(times)) * 1000, 2),
            "correspondences_mean": int(np.mean(counts)), "overlap_iou_mean": round(float(np.mean(ious)), 3),
            **_machine()}


def bench_regions(width=640, height=480, n=5, seed=0) -> dict:
    """Milliseconds per view pair for region overlap: Cantor-coded pairs vs the dense all-pairs reference.

    Synthetic but realistically sized: both views are Voronoi partitions with ~300 regions, view 2
    sees the scene shifted by (width/5, height/8) pixels with jittered region seeds, so ~200k
    correspondences at 640x480 fall into a few thousand distinct region pairs. Also times balanced,
    region-matched sampling of 4096 pixel pairs.
    """
    from scipy.spatial import cKDTree

    from regconsist_ros.registration.regions import match_regions, region_overlap, region_overlap_bruteforce
    from regconsist_ros.registration.sampling import SamplingConfig, sample_pixel_pairs

    rng = np.random.default_rng(seed)
    n_regions = max(2, round(300 * width * height / (640 * 480)))
    dx, dy = width // 5, height // 8
    seeds1 = rng.random((n_regions, 2)) * [width, height]  # [R, 2] (x, y)
    seeds2 = seeds1 - [dx, dy] + rng.normal(0, 3.0, seeds1.shape)  # same scene, shifted, jittered
    ys, xs = np.mgrid[0:height, 0:width]
    grid = np.stack([xs.ravel(), ys.ravel()], -1)  # [H*W, 2]
    labels1 = cKDTree(seeds1).query(grid)[1].reshape(height, width).astype(np.int32)  # [H, W]
    labels2 = cKDTree(seeds2).query(grid)[1].reshape(height, width).astype(np.int32)
    cy, cx = np.mgrid[dy:height, dx:width]
    uv1 = np.stack([cx.ravel(), cy.ravel()], -1)  # [N, 2] co-visible view-1 pixels
    uv2 = uv1 - [dx, dy]  # [N, 2]
    r1 = labels1[uv1[:, 1], uv1[:, 0]]
    r2 = labels2[uv2[:, 1], uv2[:, 0]]

    def timed(fn):
        fn()  # warm-up
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            out = fn()
            ts.append(time.perf_counter() - t)
        return out, float(np.median(ts)) * 1000

    ov, cantor_ms = timed(lambda: region_overlap(r1, r2, n_regions, n_regions))
    _, brute_ms = timed(lambda: region_overlap_bruteforce(r1, r2, n_regions, n_regions))
    m = match_regions(ov, 0.3)
    _, sample_ms = timed(lambda: sample_pixel_pairs(uv1, uv2, labels1, labels2, m, 4096, SamplingConfig(), rng))
    return {"bench": "regions", "width": width, "height": height, "repeats": n, "n_regions": int(n_regions),
            "n_corr": int(len(r1)), "n_pairs": int(len(ov)), "n_matched": int(len(m.src)),
            "cantor_ms": round(cantor_ms, 2), "bruteforce_ms": round(brute_ms, 2),
            "speedup": round(brute_ms / cantor_ms, 1), "sample_4096_ms": round(sample_ms, 2), **_machine()}


def bench_pretrain(run, steps: int = 10, warmup: int = 2, device: str = "auto", amp: bool = True, nthreads: int = 0,
                   frames: int = 40, seed: int = 0) -> dict:
    """Training throughput of any method (a :class:`~regconsist_ros.learning.runs.MethodRun`): steps/s and
    images/s of the objective's optimiser step on one real batch of its kind, built once by the batch
    builder from a small rendered sequence (so the figure is the model step, not data loading). On
    CUDA the step runs under bf16 autocast when ``amp`` (the trainer's setting)."""
    import tempfile
    from pathlib import Path

    import torch

    from regconsist_ros.learning.pretrain import BatchSampler, make_prep
    from regconsist_ros.learning.trainer import resolve_device, seed_everything
    from regconsist_ros.sim.sequences import TumWriter
    from regconsist_ros.sim.source import SimConfig, SimSource, frames_meta

    if nthreads:
        torch.set_num_threads(nthreads)
    dev = resolve_device(device)
    with tempfile.TemporaryDirectory() as tmp:
        seq = Path(tmp) / "seq"
        src = SimSource(SimConfig(seed=seed, frames=frames, width=160, height=120, step=0.05))
        with TumWriter(seq, src.intrinsics, classes=src.classes, meta=frames_meta(src)) as w:
            for f in src:
                w.write(f)
        store = run.kind.load(str(seq), make_prep(run), run.batch, Path(tmp), False)
        seed_everything(seed)
        obj = run.build_objective().to(dev).train()
        batch = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in BatchSampler(run, store, obj, seed)(0).items()}
    cfg = run.trainer_config()
    params = [p for p in obj.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    use_amp = amp and dev.type == "cuda"

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            loss, _ = obj(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    dt = time.perf_counter() - t0
    images = sum(int(v.shape[0]) * (int(v.shape[1]) if v.ndim == 5 else 1) for k, v in batch.items()
                 if torch.is_tensor(v) and v.ndim in (4, 5) and v.shape[-3] == 3)
    shapes = {k: list(v.shape) for k, v in batch.items() if torch.is_tensor(v)}
    out = {"bench": "pretrain", "method": run.method, "batch_kind": run.spec.batch, "batch": shapes,
           "encoder": {"kind": run.spec.encoder_kind, **{k: v for k, v in vars(run.encoder).items()}},
           "device": str(dev), "bf16_autocast": use_amp, "steps": steps, "steps_per_s": round(steps / dt, 3),
           "images_per_s": round(steps * images / dt, 1),
           "params_m": round(sum(p.numel() for p in obj.parameters()) / 1e6, 2), **_machine()}
    if dev.type == "cuda":
        out["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        out["gpu"] = torch.cuda.get_device_name(dev)
    return out


def bench_bc(task="hammer", size=128, crop=112, n=50, seed=0) -> dict:
    """ms per MetaWorld frame (fast vs full rendering) and per rollout step of a random ViT-tiny BC agent."""
    import torch

    from regconsist_ros.models.vit import ViTConfig
    from regconsist_ros.readout.bc import BCConfig, BCPolicy
    from regconsist_ros.readout.bc_run import Agent, resolve_encoder
    from regconsist_ros.readout.suites.base import EnvSpec
    from regconsist_ros.readout.suites.metaworld import MetaWorldEnv

    out = {"bench": "bc", "suite": "metaworld", "task": task, "size": size, "crop": crop, "n": n, **_machine()}
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
