"""`regconsist bench fuzz --sections kills`: SIGKILL the real learner node again and again.

A ``sim_camera`` node feeds a learner node training a tiny RSP (checkpoint every ``ckpt_every``
steps, every checkpoint kept: ``keep_last=0``). Each round: the learner starts (resuming at its latest
complete checkpoint, or from scratch the first time), trains until it has written a new checkpoint,
runs on for a random 0-``jitter`` s (so that kills land anywhere, in a step or in a save), and is
killed with SIGKILL. After ``kills`` rounds it is started once more and stopped cleanly (SIGINT: a
final checkpoint). Counted:

- ``resumed_at_latest``: restarts whose log says ``resumed at step N`` with N the step of the latest
  complete checkpoint on disk before the restart (the first start: ``starting from scratch``);
- ``corrupt``: checkpoint directories ``step_*`` that :func:`~regconsist_ros.models.checkpoint.load_checkpoint`
  or :func:`~regconsist_ros.models.checkpoint.load_trainer_state` cannot read, or that lack a file;
- ``temp_dirs_left``: hidden ``.step_*.tmp-PID`` (or ``.old-``/``.del-``) directories of interrupted saves
  left after the clean stop (the trainer removes those of dead processes at start-up);
  ``kills_inside_a_save``: kills after which such a directory was there (the kill landed in a save);
- ``failed_starts``: starts that did not reach training (e.g. a crash while resuming).
"""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

RSP = {"rsp.encoder.size": "tiny", "rsp.encoder.patch": 8, "rsp.encoder.depth": 1, "rsp.decoder_width": 32,
       "rsp.decoder_depth": 1, "rsp.decoder_heads": 4, "rsp.batch.size": 4, "rsp.batch.gap_min": 2,
       "rsp.batch.gap_max": 6, "rsp.trainer.threads": 1}
START = re.compile(r"rsp: (starting from scratch|resumed at step (\d+)) on ")


def _latest_step(run: Path) -> int | None:
    from regconsist_ros.models.checkpoint import latest_checkpoint

    ck = latest_checkpoint(run)
    return int(ck.name[5:]) if ck is not None else None


def check_checkpoints(run: Path) -> dict:
    """Every ``step_*`` directory of ``run`` loaded (weights and trainer state); -> counts and the bad ones."""
    from regconsist_ros.models.checkpoint import STEP_DIR, load_checkpoint, load_trainer_state

    root = run / "checkpoints"
    dirs = sorted(p for p in root.iterdir() if STEP_DIR.match(p.name)) if root.is_dir() else []
    bad = []
    for p in dirs:
        try:
            load_checkpoint(p)
            if load_trainer_state(p) is None:
                raise ValueError("no trainer state")
        except Exception as e:  # noqa: BLE001 - any failure is a corrupt checkpoint
            bad.append(f"{p.name}: {type(e).__name__}: {str(e)[:200]}")
    temp = sorted(p.name for p in root.iterdir() if p.name.startswith(".") and p.is_dir()) if root.is_dir() else []
    return {"checkpoints": len(dirs), "corrupt": len(bad), "corrupt_dirs": bad, "hidden_dirs": temp}


def bench_fuzz_kills(kills: int = 10, ckpt_every: int = 2, jitter: float = 3.0, seed: int = 0, round_timeout: float = 180.0,
                     progress=None, keep: bool = False) -> dict:
    import shutil
    import tempfile

    from regconsist_ros.ros.qos import discovery_env
    from regconsist_ros.up import node_command

    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="regconsist-fuzz-kills-"))
    out_dir, run = tmp / "online", tmp / "online" / "rsp"
    env = discovery_env("localhost", dict(os.environ))
    env.update({"ROS_DOMAIN_ID": str(random.Random(time.time_ns()).randint(1, 200)), "PYTHONUNBUFFERED": "1",
                "OMP_NUM_THREADS": "1"})
    learner_spec = {"params": {"learner.objectives": ["rsp"], "learner.out_dir": str(out_dir), "learner.store_height": 48,
                               "learner.store_width": 64, "learner.min_frames": 8, "learner.slice_steps": 1,
                               "train_slice": 1, "tensorboard": False, "scalars": False, **RSP,
                               "rsp.trainer.ckpt_every": ckpt_every, "rsp.trainer.keep_last": 0},
                    "remap": {}, "namespace": ""}
    cam_spec = {"params": {"sim.width": 64, "sim.height": 48, "sim.frames": 200, "rate": 10.0, "loop": True,
                           "publish_labels": False}, "remap": {}, "namespace": ""}
    cam = subprocess.Popen(node_command("sim_camera", cam_spec), env=env, stdout=(tmp / "sim_camera.log").open("w"),
                           stderr=subprocess.STDOUT, start_new_session=True)
    rounds, failed_starts = [], 0
    t0 = time.monotonic()
    final: dict = {}
    try:
        for k in range(kills + 1):
            expected = _latest_step(run)
            log = tmp / f"learner_{k}.log"
            p = subprocess.Popen(node_command("learner", learner_spec), env=env, stdout=log.open("w"),
                                 stderr=subprocess.STDOUT, start_new_session=True)
            row = {"round": k, "expected_step": expected}
            end = time.monotonic() + round_timeout
            started = None
            while time.monotonic() < end and p.poll() is None:
                m = START.search(log.read_text(errors="replace"))
                if m:
                    started = None if m.group(2) is None else int(m.group(2))
                    row["resumed_step"] = started
                    break
                time.sleep(0.2)
            if "resumed_step" not in row:
                failed_starts += 1
                row.update(start_failed=True, exit=p.poll(), log_tail=log.read_text(errors="replace")[-1500:])
                if p.poll() is None:
                    p.kill()
                    p.wait()
                rounds.append(row)
                if progress is not None:
                    progress(row)
                continue
            row["resumed_at_latest"] = started == expected
            if k == kills:  # the last start: stop it cleanly, with a final checkpoint
                time.sleep(2.0)
                p.send_signal(signal.SIGINT)
                try:
                    row["exit"] = p.wait(120)
                except subprocess.TimeoutExpired:
                    p.kill()
                    row["exit"] = p.wait()
            else:
                base = expected or 0
                while time.monotonic() < end and p.poll() is None and (_latest_step(run) or 0) <= base:
                    time.sleep(0.2)
                time.sleep(rng.uniform(0.0, jitter))
                row["exit_before_kill"] = p.poll()
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
                p.wait()
                row["latest_after_kill"] = _latest_step(run)
                root = run / "checkpoints"  # a kill inside a save leaves its hidden temp directory
                row["hidden_after_kill"] = sorted(d.name for d in root.iterdir() if d.name.startswith(".") and d.is_dir())
            rounds.append(row)
            if progress is not None:
                progress(row)
        final = check_checkpoints(run)
    finally:
        for proc in (cam,):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    restarts = [r for r in rounds if r["round"] > 0]
    out = {"kills": kills, "ckpt_every": ckpt_every, "starts": len(rounds), "failed_starts": failed_starts,
           "resumed_at_latest": sum(bool(r.get("resumed_at_latest")) for r in restarts), "restarts": len(restarts),
           "first_start_from_scratch": bool(rounds) and rounds[0].get("resumed_step", -1) is None,
           "checkpoints": final.get("checkpoints", 0), "corrupt": final.get("corrupt", 0),
           "corrupt_dirs": final.get("corrupt_dirs", []),
           "temp_dirs_left": final.get("hidden_dirs", []),
           "kills_inside_a_save": sum(bool(r.get("hidden_after_kill")) for r in rounds),
           "final_exit": rounds[-1].get("exit") if rounds else None, "seconds": round(time.monotonic() - t0, 1),
           "rounds": rounds}
    if keep:
        out["dir"] = str(tmp)
    return out
