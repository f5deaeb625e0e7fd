"""`regconsist bench sim`: Frames/s of the embedded-world renderer."""
from __future__ import annotations

import time

import numpy as np

from regconsist_ros.bench import machine


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
           "setup_s": round(setup, 2), **machine()}
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
