"""Signal-safe shutdown of the real nodes (issue 16, item 2) and a learner on a full disk (issue 18, item 5).

SIGINT, then SIGTERM 1 s later (what `ros2 launch` does when a node is slow to stop), while the learner is
busy in a training slice: exit 0 and a final checkpoint that loads; nothing aborts with "terminate called
without an active exception" and no callback exception is left "never retrieved".
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.reliability, pytest.mark.slow]
BAD = ("terminate called", "never retrieved", "Destroyable", "Traceback")
# a tiny RSP whose training slices take a few seconds: the signals land while the learner is busy
RSP = {"rsp.encoder.size": "tiny", "rsp.encoder.patch": 8, "rsp.encoder.depth": 2, "rsp.decoder_width": 32,
       "rsp.decoder_depth": 1, "rsp.decoder_heads": 4, "rsp.batch.size": 8, "rsp.batch.gap_min": 2,
       "rsp.batch.gap_max": 6, "rsp.trainer.threads": 1}


def _learner_params(out: Path, **kw) -> dict:
    return {"learner.objectives": "[rsp]", "learner.out_dir": str(out), "learner.store_height": 48,
            "learner.store_width": 64, "learner.min_frames": 8, "learner.slice_steps": 1, **RSP, **kw}


def _steps(out: Path) -> int:
    path = out / "rsp" / "metrics.jsonl"
    rows = [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.is_file() else []
    return rows[-1]["step"] if rows else 0


def _wait(cond, timeout, proc=None, log=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        if proc is not None:
            assert proc.poll() is None, log() if log else proc.returncode
        time.sleep(0.5)
    return False


def test_sigint_then_sigterm_while_training_still_writes_the_final_checkpoint(nodes):
    from regconsist_ros.models.checkpoint import latest_checkpoint, load_checkpoint, read_info

    out = nodes.tmp_path / "online"
    cam = nodes.start("sim_camera", {"sim.width": 64, "sim.height": 48, "sim.frames": 200, "rate": 10.0})
    learner = nodes.start("learner", _learner_params(out, train_slice=200, **{"rsp.trainer.ckpt_every": 100000}))
    assert _wait(lambda: _steps(out) >= 3, 240, learner, lambda: nodes.log("learner")), nodes.log("learner")
    before = _steps(out)
    assert latest_checkpoint(out / "rsp") is None  # the only checkpoint will be the final one
    learner.send_signal(signal.SIGINT)
    cam.send_signal(signal.SIGINT)
    time.sleep(1.0)
    assert learner.poll() is None, "the learner stopped within 1 s: the SIGTERM would not land during its shutdown"
    learner.send_signal(signal.SIGTERM)
    if cam.poll() is None:
        cam.send_signal(signal.SIGTERM)
    rc = learner.wait(180)
    log = nodes.log("learner")
    assert rc == 0, log
    assert "SIGTERM during shutdown ignored" in log, log
    ckpt = latest_checkpoint(out / "rsp")
    assert ckpt is not None and read_info(ckpt)["step"] >= before, log
    load_checkpoint(ckpt)
    assert cam.wait(60) == 0, nodes.log("sim_camera")
    for name in ("learner", "sim_camera"):
        text = (nodes.tmp_path / f"{name}.log").read_text()
        for bad in BAD:
            assert bad not in text, (name, bad, text[-3000:])


def test_a_trainer_that_does_not_stop_in_time_exits_1_without_a_half_made_checkpoint(nodes):
    from regconsist_ros.models.checkpoint import latest_checkpoint

    out = nodes.tmp_path / "online"
    nodes.start("sim_camera", {"sim.width": 64, "sim.height": 48, "sim.frames": 200, "rate": 10.0})
    learner = nodes.start("learner", _learner_params(out, train_slice=1000, shutdown_timeout=0.5,
                                                     **{"rsp.trainer.ckpt_every": 100000}))
    assert _wait(lambda: _steps(out) >= 2, 240, learner, lambda: nodes.log("learner")), nodes.log("learner")
    learner.send_signal(signal.SIGINT)
    rc = learner.wait(120)
    log = nodes.log("learner")
    assert rc == 1 and "did not end within shutdown_timeout=0.5 s: no final checkpoint" in log, log
    ckpts = out / "rsp" / "checkpoints"
    assert latest_checkpoint(out / "rsp") is None and not (ckpts.exists() and any(ckpts.iterdir()))
    assert "terminate called" not in log, log


def test_a_full_disk_fails_one_checkpoint_and_the_learner_trains_on(nodes, domain_id):
    from regconsist_ros.models.checkpoint import complete_checkpoints, latest_checkpoint, load_checkpoint

    out = nodes.tmp_path / "online"
    nodes.start("sim_camera", {"sim.width": 64, "sim.height": 48, "sim.frames": 200, "rate": 10.0})
    params = _learner_params(out, train_slice=2, **{"rsp.encoder.depth": 1, "rsp.batch.size": 4,
                                                    "rsp.trainer.ckpt_every": 4, "rsp.trainer.keep_last": 2})
    args = [sys.executable, str(Path(__file__).with_name("_enospc_learner.py")), "--ros-args"]
    for k, v in params.items():
        args += ["-p", f"{k}:={v}"]
    log_path = nodes.tmp_path / "learner.log"
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "ENOSPC_AT": "2", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    learner = subprocess.Popen(args, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)
    nodes.procs["learner"] = learner
    # the 2nd checkpoint (step 8) hits the full disk; training goes on and later checkpoints are written
    assert _wait(lambda: _steps(out) >= 20 and latest_checkpoint(out / "rsp") is not None
                 and int(latest_checkpoint(out / "rsp").name[5:]) >= 16, 300, learner,
                 lambda: nodes.log("learner")), nodes.log("learner")
    log = nodes.log("learner")
    assert "checkpoint failed" in log and "No space left on device" in log, log
    assert learner.poll() is None  # still running
    load_checkpoint(latest_checkpoint(out / "rsp"))
    assert nodes.stop(learner, 120) == 0, nodes.log("learner")
    # stopped (no save in progress): rsp.trainer.keep_last checkpoints, the final one loads, no temp directory left
    ckpts = complete_checkpoints(out / "rsp")
    assert len(ckpts) == 2, ckpts
    load_checkpoint(latest_checkpoint(out / "rsp"))
    assert not [p for p in (out / "rsp" / "checkpoints").iterdir() if p.name.startswith(".step_")]
