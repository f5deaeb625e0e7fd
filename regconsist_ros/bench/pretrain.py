"""`regconsist bench pretrain`: Training throughput of any registered method."""
from __future__ import annotations

import time

from regconsist_ros.bench import machine


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
           "params_m": round(sum(p.numel() for p in obj.parameters()) / 1e6, 2), **machine()}
    if dev.type == "cuda":
        out["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        out["gpu"] = torch.cuda.get_device_name(dev)
    return out
