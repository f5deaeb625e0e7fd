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
    from sim.source import SimConfig, SimSource

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
    from sim.source import SimConfig, SimSource

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
