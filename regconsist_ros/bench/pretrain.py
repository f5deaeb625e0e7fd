"""`regconsist bench pretrain METHOD`: training throughput of any registered method, and old code against new.

The figure is the project's own training step (:meth:`Trainer.fit` on one real batch of the method's kind,
built once from a small rendered sequence): forward, backward, gradient clipping and the optimiser, not data
loading. ``against=REV`` measures the same settings at another git revision side by side: each round runs
the old and then the new code in fresh processes on the same batch (same seed: the first losses agree where
the math is unchanged); settings the old revision does not have yet are left out on its side (listed) and the speed-up is the ratio of their median step times, round by round.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from regconsist_ros.bench import machine


def render_sequence(dest: Path, frames: int, size: tuple[int, int], seed: int) -> Path:
    """A short explore sequence of the embedded world (``size`` = width, height) as a TUM folder."""
    from regconsist_ros.sim.sequences import TumWriter
    from regconsist_ros.sim.source import SimConfig, SimSource, frames_meta

    seq = Path(dest) / "seq"
    src = SimSource(SimConfig(seed=seed, frames=frames, width=size[0], height=size[1], step=0.05))
    with TumWriter(seq, src.intrinsics, classes=src.classes, meta=frames_meta(src)) as w:
        for f in src:
            w.write(f)
    return seq


def sgemm_peak_gflops(repeats: int = 10) -> float:
    """The best float32 matrix-product rate of this machine (GFLOP/s, torch's threads) over transformer-sized
    shapes: the arithmetic ceiling a training step of matrix products cannot beat."""
    import time

    import torch

    best = 0.0
    for m, k, n in ((1568, 512, 2048), (1568, 2048, 512), (3136, 384, 1536), (2048, 2048, 2048)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        for _ in range(2):
            a @ b
        t = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * m * k * n * repeats / (time.perf_counter() - t) / 1e9)
    return best


def _summary(r: dict) -> dict:
    step = statistics.median(r["step_s"])
    return {"step_s_median": round(step, 4), "steps_per_s": round(1 / step, 3), "images_per_s": round(r["images"] / step, 1),
            "first_step_s": round(r["warmup_s"][0], 3) if r["warmup_s"] else None}


def bench_pretrain(method: str, values: dict | None = None, steps: int = 10, warmup: int = 2, device: str = "auto",
                   nthreads: int = 0, frames: int = 40, render: tuple[int, int] = (160, 120), seed: int = 0,
                   against: str | None = None, rounds: int = 3, flops: bool = False) -> dict:
    """Steps/s and images/s (and peak memory on CUDA) of ``method`` with ``values`` ({dotted name: value} over
    its recipe, as ``regconsist pretrain METHOD`` takes them). On CUDA the trainer's bf16 autocast applies
    (``trainer.amp``). With ``against``, also the same at that git revision, alternating, ``rounds`` times. With ``flops``,
    the GFLOP of one step, this machine's float32 matrix-product peak and the step time at that peak
    (``floor_s``)."""
    from regconsist_ros.bench.pretrain_worker import measure

    values = dict(values or {})
    with tempfile.TemporaryDirectory() as tmp:
        seq = render_sequence(Path(tmp), frames, tuple(render), seed)
        spec = {"method": method, "values": values, "seq": str(seq), "steps": steps, "warmup": warmup,
                "seed": seed, "device": device, "nthreads": nthreads}
        if against is None:
            r = measure({**spec, "flops": flops})
            out = {"bench": "pretrain", **{k: r[k] for k in ("method", "batch", "encoder", "device", "threads",
                                                              "params_m", "trainer")},
                   "steps": steps, **_summary(r), "losses": [round(x, 6) for x in r["losses"]]}
            for k in ("peak_rss_gib", "peak_mem_gib", "gpu", "gflop_per_step"):
                if k in r:
                    out[k] = r[k]
            if flops and r["device"] == "cpu":  # how close the step is to the machine's arithmetic ceiling
                peak = sgemm_peak_gflops()
                out["sgemm_peak_gflops"] = round(peak, 1)
                out["floor_s"] = round(r["gflop_per_step"] / peak, 5)
                out["fraction_of_peak"] = round(out["floor_s"] / out["step_s_median"], 3)
            return {**out, **machine()}
        return _against(spec, against, rounds, Path(tmp))


def _run_worker(spec: dict) -> dict:
    worker = Path(__file__).with_name("pretrain_worker.py")
    p = subprocess.run([sys.executable, str(worker), json.dumps(spec)], capture_output=True, text=True)
    if p.returncode:
        tail = "\n".join(p.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"bench worker ({spec.get('tree') or 'this checkout'}) failed: {tail}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _against(spec: dict, rev: str, rounds: int, tmp: Path) -> dict:
    from tqdm import tqdm

    from regconsist_ros.bench.revisions import export_revision

    tree, commit = export_revision(rev, tmp / "old")
    runs = {"old": [], "new": []}
    with tqdm(total=2 * rounds, desc="bench rounds (old, new)", unit="run") as bar:
        for _ in range(rounds):
            for side in ("old", "new"):  # alternating, each in a fresh process
                runs[side].append(_run_worker({**spec, "tree": str(tree) if side == "old" else None}))
                bar.update(1)
    per_round = [statistics.median(o["step_s"]) / statistics.median(n["step_s"]) for o, n in zip(runs["old"], runs["new"])]
    side = {k: {**_summary({**v[0], "step_s": [t for r in v for t in r["step_s"]]}), "params_m": v[0]["params_m"],
                "first_loss": round(v[0]["losses"][0], 6)} for k, v in runs.items()}
    lo, ln = side["old"]["first_loss"], side["new"]["first_loss"]
    new = runs["new"][0]
    return {"bench": "pretrain", "method": spec["method"], "against": rev, "against_commit": commit,
            "settings": spec["values"], "settings_the_old_code_lacks": runs["old"][0]["ignored_settings"], "batch": new["batch"], "device": new["device"], "threads": new["threads"],
            "rounds": rounds, "steps_per_round": spec["steps"], "old": side["old"], "new": side["new"],
            "speedup_per_round": [round(x, 3) for x in per_round], "speedup": round(statistics.median(per_round), 3),
            "first_loss_rel_diff": round(abs(lo - ln) / max(abs(lo), 1e-12), 8), **machine()}
