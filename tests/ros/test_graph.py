"""The real graph: `regconsist up sim` on CPU for a bounded time; learner kill/resume; evaluator results."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

# A tiny RSP for the learner nodes started by hand (ROS parameter names = the CLI's)
RSP_TINY = {"rsp.encoder.size": "tiny", "rsp.encoder.patch": 8, "rsp.encoder.depth": 1, "rsp.decoder_width": 32,
            "rsp.decoder_depth": 1, "rsp.decoder_heads": 4, "rsp.batch.size": 4, "rsp.batch.gap_min": 2,
            "rsp.batch.gap_max": 6, "rsp.trainer.threads": 1}

# CPU-sized settings for a ~1 minute run: tiny images, tiny models, frequent checkpoints
FAST = [
    "sim_camera.sim.width=64", "sim_camera.sim.height=48", "sim_camera.sim.frames=200", "sim_camera.sim.step=0.1",
    "sim_camera.rate=10.0",
    "learner.learner.store_height=32", "learner.learner.store_width=48", "learner.learner.min_frames=8",
    "learner.learner.min_pairs=2", "learner.learner.slice_steps=2",
    "learner.rsp.batch.size=4", "learner.rsp.trainer.ckpt_every=10", "learner.regconsist.trainer.ckpt_every=10",
    "learner.regconsist.batch.size=2", "learner.regconsist.batch.pixel_pairs=64",
    "learner.rsp.encoder.patch=8", "learner.rsp.encoder.depth=1",
    "learner.rsp.decoder_width=32", "learner.rsp.decoder_depth=1", "learner.rsp.decoder_heads=4",
    "learner.regconsist.encoder.width=0.25", "learner.regconsist.encoder.aspp_channels=32",
    "learner.regconsist.encoder.decoder_channels=32",
    "learner.rsp.batch.gap_min=2", "learner.rsp.batch.gap_max=6", "learner.rsp.trainer.threads=1",
    "learner.regconsist.trainer.threads=1",
    "evaluator.eval_width=64", "evaluator.eval_height=48", "evaluator.eval_frames=16", "evaluator.clip_len=8",
    "evaluator.min_object_pixels=20", "evaluator.seg_steps=3", "evaluator.poll_s=1.0",
]


def _up(args, tmp_path, domain_id, duration, probe=None):
    """Run `regconsist up sim`; while it runs, a probe node (if given) spins on the same domain."""
    out = tmp_path / "online"
    cmd = [sys.executable, "-m", "regconsist_ros.cli", "up", "sim", "--duration", str(duration), "--domain-id",
           str(domain_id), "--json", "--set", f"learner.learner.out_dir={out}", "--set", f"evaluator.watch_dir={out}"]
    for s in FAST + list(args):
        cmd += ["--set", s]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if probe is not None:
        probe.spin_until(lambda: proc.poll() is not None, timeout=duration + 120)
    stdout, stderr = proc.communicate(timeout=duration + 120)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr), out


def test_up_sim_runs_the_whole_graph(tmp_path, domain_id, probe):
    from diagnostic_msgs.msg import DiagnosticArray

    from regconsist_ros.ros.diagnostics import values_of

    probe.subscribe(DiagnosticArray, "/diagnostics", keep=100000)
    r, out = _up([], tmp_path, domain_id, duration=45, probe=probe)
    log = r.stdout[-6000:] + r.stderr[-2000:]
    assert r.returncode == 0, log
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["stopped_by"] == "duration" and not result["died"], result
    assert "[registration]" in r.stdout and "[learner]" in r.stdout  # logs forwarded with prefixes
    # learner: both objectives trained and checkpointed (final checkpoint at shutdown)
    for name in ("rsp", "regconsist"):
        rows = [json.loads(l) for l in (out / name / "metrics.jsonl").read_text().splitlines()]
        assert rows and all(r_["loss"] == r_["loss"] and abs(r_["loss"]) < 1e6 for r_ in rows), name  # finite
        ckpts = sorted((out / name / "checkpoints").glob("step_*"))
        assert ckpts, name
    assert list((out / "tensorboard").glob("events.out.tfevents*")), "no TensorBoard scalars"
    # what a ROS user sees on /diagnostics: frames registered, learner steps, evaluator results
    status = {}
    for arr in probe.msgs["/diagnostics"]:
        for st in arr.status:
            status[st.name] = values_of(st)
    assert int(status["registration: status"]["frames_registered"]) > 0, status.keys()
    assert int(status["learner: status"]["rsp.step"]) > 0 and int(status["learner: status"]["regconsist.step"]) > 0
    assert any(name.startswith("evaluator: ") and name != "evaluator: status" for name in status), sorted(status)
    # evaluator: at least one result line with a label-propagation score
    lines = [json.loads(l) for l in (out / "eval_results.jsonl").read_text().splitlines()]
    assert lines and any("propagation" in l and 0 <= l["propagation"]["JF_mean"] <= 1 for l in lines), lines
    assert any(l.get("segmentation", {}).get("miou") is not None for l in lines if l["objective"] == "regconsist") \
        or not any(l["objective"] == "regconsist" for l in lines)
    # the demo's report from this run: loss curves, readouts over steps
    from regconsist_ros.report import write_report

    md = write_report(tmp_path, out, result, {}).read_text()
    assert "| rsp |" in md and "| regconsist |" in md and "![readouts](readouts.png)" in md
    assert (tmp_path / "losses.png").is_file() and (tmp_path / "readouts.png").is_file()


def test_learner_killed_with_sigkill_resumes_at_its_last_checkpoint(tmp_path, domain_id, nodes):
    from regconsist_ros.models.checkpoint import latest_checkpoint, read_info

    out = tmp_path / "online"
    params = {"learner.objectives": "[rsp]", "learner.out_dir": str(out), "learner.store_height": 32,
              "learner.store_width": 48, "learner.min_frames": 8, "learner.slice_steps": 1,
              "rsp.trainer.ckpt_every": 5, **RSP_TINY}
    nodes.start("sim_camera", {"sim.width": 64, "sim.height": 48, "sim.frames": 100, "rate": 10.0})
    learner = nodes.start("learner", params)
    end = time.monotonic() + 90
    while time.monotonic() < end and (latest_checkpoint(out / "rsp") is None or read_info(latest_checkpoint(out / "rsp"))["step"] < 10):
        assert learner.poll() is None, nodes.log("learner")
        time.sleep(0.5)
    learner.send_signal(signal.SIGKILL)
    learner.wait()
    ckpt = latest_checkpoint(out / "rsp")
    assert ckpt is not None, nodes.log("learner")
    step = read_info(ckpt)["step"]
    assert step >= 10
    # no half-written checkpoint is visible as a checkpoint
    for p in (out / "rsp" / "checkpoints").iterdir():
        if p.name.startswith("step_"):
            assert (p / "model.safetensors").exists() and (p / "config.json").exists()
    again = nodes.start("learner", params, name="learner2")
    ok = False
    end = time.monotonic() + 60
    while time.monotonic() < end and not ok:
        ok = f"resumed at step {step}" in nodes.log("learner2")
        time.sleep(0.5)
    assert ok, nodes.log("learner2")
    # SIGTERM (what `kill` and process managers send): clean shutdown, final checkpoint past the resumed step
    time.sleep(3)
    again.send_signal(signal.SIGTERM)
    assert again.wait(60) == 0, nodes.log("learner2")
    assert read_info(latest_checkpoint(out / "rsp"))["step"] > step


def test_up_reports_a_node_that_dies(tmp_path, domain_id):
    """A value of one of our settings is refused before any node starts (tests/test_cli_errors.py); rclpy's own
    use_sim_time is checked by rclpy in the node, which exits 2 with a configuration error."""
    cmd = [sys.executable, "-m", "regconsist_ros.cli", "up", "eval", "--duration", "30", "--domain-id", str(domain_id),
           "--json", "--set", "evaluator.use_sim_time=5"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert r.returncode == 1, r.stdout[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["died"] == {"evaluator": 2} and "node died" in result["stopped_by"]
    assert "configuration error" in r.stdout and "use_sim_time" in r.stdout


def test_graph_definition_errors_are_clear(tmp_path):
    from regconsist_ros.config import ConfigError
    from regconsist_ros.up import load_graph, node_command

    g = load_graph("sim", overrides=["learner.learner.objectives=[rsp]"])
    assert set(g["nodes"]) == {"sim_camera", "registration", "learner", "evaluator"}
    assert g["nodes"]["learner"]["params"]["learner.objectives"] == ["rsp"]
    # the graph's settings of a method it no longer trains are left out; the trained method's stay, and a
    # setting given with --set always stays (the learner then names it)
    learner = g["nodes"]["learner"]["params"]
    assert not any(k.startswith("regconsist.") for k in learner) and learner["rsp.encoder.size"] == "tiny"
    kept = load_graph("sim", overrides=["learner.learner.objectives=[rsp]", "learner.regconsist.lambd=0.1"])
    assert kept["nodes"]["learner"]["params"]["regconsist.lambd"] == 0.1
    cmd = node_command("learner", g["nodes"]["learner"])
    assert cmd[1:3] == ["-m", "regconsist_ros.ros.nodes.learner"] and "learner.objectives:=[\"rsp\"]" in cmd
    robot = load_graph("robot")
    assert "camera/color/image_raw:=/camera/camera/color/image_raw" in node_command("registration", robot["nodes"]["registration"])
    with pytest.raises(ConfigError, match="no graph"):
        load_graph("mars")
    with pytest.raises(ConfigError, match="NODE.PARAM"):
        load_graph("sim", overrides=["nonode.x=1"])
    bad = tmp_path / "g.yaml"
    bad.write_text("graphs:\n  x:\n    nodes:\n      teleporter: {}\n")
    with pytest.raises(ConfigError, match="teleporter"):
        load_graph("x", bad)


def test_one_learner_on_two_ranks_under_torchrun(tmp_path, domain_id, nodes):
    """The online learner with DDP (gloo on CPU): both ranks train on the stream in step, rank 0 logs and
    checkpoints, SIGINT stops both cleanly with a final checkpoint."""
    from regconsist_ros.models.checkpoint import latest_checkpoint, read_info

    out = tmp_path / "online"
    nodes.start("sim_camera", {"sim.width": 64, "sim.height": 48, "sim.frames": 100, "rate": 10.0})
    args = ["learner.objectives:=[rsp]", f"learner.out_dir:={out}", "learner.store_height:=32", "learner.store_width:=48",
            "learner.min_frames:=8", "rsp.trainer.ckpt_every:=5", "learner.slice_steps:=1",
            *(f"{k}:={v}" for k, v in RSP_TINY.items())]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(29600 + domain_id), "-m", "regconsist_ros.ros.nodes.learner", "--ros-args"]
    for a in args:
        cmd += ["-p", a]
    log = tmp_path / "torchrun.log"
    proc = subprocess.Popen(cmd, env={**os.environ, "ROS_DOMAIN_ID": str(domain_id), "OMP_NUM_THREADS": "1"},
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end:
            ckpt = latest_checkpoint(out / "rsp")
            if ckpt is not None and read_info(ckpt)["step"] >= 10:
                break
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        else:
            raise AssertionError(log.read_text()[-3000:])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(90)
    text = log.read_text()
    assert "rank 1 of 2 (DDP)" in text and "final checkpoints" in text, text[-3000:]
    steps = [json.loads(l)["step"] for l in (out / "rsp" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] >= 10  # one writer (rank 0), one line per step
    assert read_info(latest_checkpoint(out / "rsp"))["step"] == steps[-1]  # the final checkpoint at shutdown


def test_two_namespaced_robots_feed_one_learner(tmp_path, nodes, probe):
    from diagnostic_msgs.msg import DiagnosticArray

    from regconsist_ros.ros.diagnostics import values_of

    probe.subscribe(DiagnosticArray, "/diagnostics", keep=100000)
    for k, ns in enumerate(("/robot1", "/robot2")):
        nodes.start("sim_camera", {"sim.width": 64, "sim.height": 48, "sim.frames": 60, "sim.seed": k, "rate": 10.0},
                    name=f"cam{k}", namespace=ns)
    nodes.start("learner", {"learner.objectives": "[rsp]", "learner.out_dir": str(tmp_path / "online"),
                            "sources": "[/robot1, /robot2]", "learner.store_height": 32, "learner.store_width": 48,
                            "learner.min_frames": 8, "learner.slice_steps": 1, **RSP_TINY})

    def learner_status():
        st = {}
        for arr in probe.msgs["/diagnostics"]:
            for s in arr.status:
                if s.name == "learner: status":
                    st = values_of(s)
        return st

    ok = probe.spin_until(lambda: learner_status().get("buffers.sources") == "2"
                          and int(learner_status().get("rsp.step", 0)) > 0, timeout=90)
    assert ok, (learner_status(), nodes.log("learner"))
    assert int(learner_status()["messages.dropped_total"]) == 0  # interleaved robots are not "stamps backwards"
