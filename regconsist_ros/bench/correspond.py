"""`regconsist bench correspond`: milliseconds per view pair of exact correspondences, new vs reference."""
from __future__ import annotations

import time

import numpy as np

from regconsist_ros.bench import machine


def _identical(a, b) -> bool:
    """Bit-for-bit equality of two ``Correspondences`` (arrays by dtype, shape and bytes; scalars by type and value)."""
    return (all(x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes() for x, y in ((a.uv1, b.uv1), (a.uv2, b.uv2)))
            and type(a.overlap_iou) is type(b.overlap_iou) and np.float64(a.overlap_iou).tobytes() == np.float64(b.overlap_iou).tobytes()
            and type(a.valid1) is type(b.valid1) and a.valid1 == b.valid1 and type(a.valid2) is type(b.valid2) and a.valid2 == b.valid2)


def bench_correspond(width=640, height=480, n=20, seed=0, nthreads=1) -> dict:
    """Milliseconds per view pair for exact correspondences + overlap IoU (both directions).

    Times ``geometry.correspond`` (``ms_*``) and the implementation before the speed-up,
    ``geometry_reference.correspond_reference`` (``reference_ms_*``), alternating per pair
    (reference, new, reference, new, ...) so that both see the same machine state, and checks that
    every pair's results are bit-identical (``identical``).
    """
    import torch

    from regconsist_ros.registration.geometry import correspond
    from regconsist_ros.registration.geometry_reference import correspond_reference
    from regconsist_ros.sim.source import SimConfig, SimSource

    torch.set_num_threads(max(1, nthreads))
    gap = 3
    src = SimSource(SimConfig(seed=seed, frames=n + gap + 1, width=width, height=height))
    frames = [src[i] for i in range(n + gap + 1)]
    correspond_reference(frames[0], frames[gap])  # warm-up (the new path also caches its rays and buffers here)
    correspond(frames[0], frames[gap])
    ref_times, times, counts, ious, identical = [], [], [], [], True
    for i in range(1, n + 1):
        t = time.perf_counter()
        r = correspond_reference(frames[i], frames[i + gap])
        ref_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        c = correspond(frames[i], frames[i + gap])
        times.append(time.perf_counter() - t)
        identical = identical and _identical(c, r)
        counts.append(len(c))
        ious.append(c.overlap_iou)
    times, ref_times = np.array(times), np.array(ref_times)
    ms = lambda a: round(float(a) * 1000, 2)  # noqa: E731
    return {"bench": "correspond", "width": width, "height": height, "pairs": n, "torch_threads": torch.get_num_threads(),
            "ms_mean": ms(times.mean()), "ms_median": ms(np.median(times)),
            "reference_ms_mean": ms(ref_times.mean()), "reference_ms_median": ms(np.median(ref_times)),
            "speedup": round(float(np.median(ref_times) / np.median(times)), 1), "identical": bool(identical),
            "correspondences_mean": int(np.mean(counts)), "overlap_iou_mean": round(float(np.mean(ious)), 3),
            **machine()}
