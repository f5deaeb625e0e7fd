"""`regconsist bench correspond`: Milliseconds per view pair of exact correspondences."""
from __future__ import annotations

import time

import numpy as np

from regconsist_ros.bench import machine


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
            **machine()}
