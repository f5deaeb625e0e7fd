"""Two-process torch.distributed (gloo, CPU) training of the learner's objective step: DDP averages
gradients so both ranks hold identical weights after steps on different data; rank 0 checkpoints."""
import os

import torch
import torch.multiprocessing as mp


def _worker(rank: int, world: int, init_file: str, run_dir: str, out: str) -> None:
    import torch.distributed as dist

    from regconsist_ros.models.objectives.rsp import RSP, RSPConfig
    from regconsist_ros.models.vit import ViTConfig
    from regconsist_ros.learning.trainer import Trainer, TrainerConfig, dist_rank

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # same initial weights on every rank (DDP also broadcasts rank 0's)
        obj = RSP(RSPConfig(decoder_width=32, decoder_depth=1, decoder_heads=4),
                  ViTConfig(size="tiny", img_size=(16, 24), patch=8, depth=1))
        t = Trainer(obj, TrainerConfig(steps=3, lr=1e-3, optimizer="adamw", warmup=1, log_every=1), run_dir)
        assert t.distributed and t.world_size == world and t.rank == dist_rank() == rank

        def batch(step):
            g = torch.Generator().manual_seed(1000 * step + rank)  # different data on every rank
            return {"x_t": torch.rand(2, 3, 16, 24, generator=g), "x_k": torch.rand(2, 3, 16, 24, generator=g)}

        res = t.fit(batch, progress=False)
        flat = torch.cat([p.detach().flatten() for p in obj.parameters()])
        torch.save({"params": flat, "checkpoint": res["checkpoint"], "losses": [r["loss"] for r in t.history]},
                   os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_ddp_step(tmp_path):
    run_dir, out = tmp_path / "run", tmp_path / "out"
    out.mkdir()
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(run_dir), str(out)), nprocs=2, join=True)
    r0, r1 = (torch.load(out / f"rank{r}.pt") for r in (0, 1))
    assert r0["losses"] != r1["losses"]  # the ranks saw different batches ...
    assert torch.equal(r0["params"], r1["params"])  # ... yet hold the same weights: gradients were averaged
    assert r0["checkpoint"] is not None and r1["checkpoint"] is None  # rank 0 writes the checkpoint
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_00000003"]
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 3  # rank 0 logs, once per step


def test_pretrain_under_torchrun_with_two_cpu_processes(tmp_path):
    """The documented multi-GPU command, on CPU: torchrun + gloo, one checkpoint from rank 0."""
    import subprocess
    import sys

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(29500 + os.getpid() % 1000),
           "-m", "regconsist_ros.cli", "pretrain", "mae", "--data", "sim:seed=1,frames=12,width=48,height=32",
           "--out", str(run), "--mae.trainer.steps", "2", "--mae.trainer.warmup", "1", "--mae.trainer.log_every", "1",
           "--mae.batch.size", "4", "--mae.batch.gap_min", "2", "--mae.batch.gap_max", "4",
           "--mae.encoder.size", "tiny", "--mae.encoder.depth", "1", "--mae.encoder.img_size", "32", "48",
           "--mae.encoder.patch", "8", "--mae.trainer.threads", "1",
           "--mae.decoder_width", "32", "--mae.decoder_depth", "1", "--mae.decoder_heads", "4", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000002"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
