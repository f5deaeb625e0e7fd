"""`regconsist bench registration`: does the registration node keep up with a 640x480 RGB-D camera?

The live graph, as `regconsist up sim` runs it with a recording as the camera:

1. frames of the embedded world (:class:`regconsist_ros.sim.source.SimSource`) are rendered at
   ``width`` x ``height`` along an explore path walked at ``speed`` m/s, and written as a rosbag2
   (colour rgb8, aligned depth 16UC1, camera_info, pose) played forwards then backwards, so that
   the looped replay never jumps;
2. node processes, each with its parameters from ``config/graph.yaml`` (graph ``graph``):
   ``registration``; the learner-like load beside it (``load``); then ``sim_camera`` with
   ``source=rosbag`` replaying the bag at ``rate`` Hz, looped, for ``seconds``;
3. the camera stops, the registration node gets ``drain`` seconds to finish what it holds, then
   stops and logs its final status (the values it publishes on /diagnostics), which is the result.

The load (``load``):

- ``learner`` (default): the project's learner node with the graph's learner parameters (the CPU
  sizes of RSP + RegConsist), fed by the same topics as in the graph. This is the load of the
  issue's measurement: torch training with the learner's threads (torch default: every core), plus
  its ingest of every colour frame, keyframe and view pair;
- ``torch``: a process running a small conv-net training loop with the torch default threads,
  busy from the first frame on (no waiting for buffers);
- ``none``: nothing beside the node.

Nothing here imports rclpy: every ROS participant is a node process, and the numbers are the
node's own counters. Speed figures go to docs/benchmarks.md, never into timed tests.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from regconsist_ros.bench import machine

LOADS = ("learner", "torch", "none")
TARGET_BUSY = 0.01  # busy drops at most 1% of the frames


def _render_bag(path: Path, frames: int, width: int, height: int, rate: float, speed: float, seed: int) -> int:
    """Render ``frames`` frames and write them forwards then backwards as a rosbag2; messages per topic."""
    from regconsist_ros.online.bag import write_bag
    from regconsist_ros.sim.source import SimConfig, SimSource

    src = SimSource(SimConfig(seed=seed, frames=frames, width=width, height=height, step=speed / rate, fps=rate,
                              nthreads=1))
    forward = [src[i] for i in range(len(src))]
    order = forward + forward[-2:0:-1]  # 0 .. N-1 .. 1: looping it is a continuous back-and-forth walk
    write_bag(path, [dataclasses.replace(f, stamp=k / rate) for k, f in enumerate(order)])
    return len(order)


def _start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _wait_log(proc: subprocess.Popen, log: Path, pattern: str, count: int, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    rx = re.compile(pattern)
    while time.monotonic() < end:
        if len(rx.findall(log.read_text(errors="replace"))) >= count:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}) before it was ready:\n{_tail(log)}")
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready within {timeout:.0f} s:\n{_tail(log)}")


def _tail(log: Path, n: int = 3000) -> str:
    return log.read_text(errors="replace")[-n:] if log.exists() else ""


def _stop(proc: subprocess.Popen, timeout: float) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
    return proc.returncode


def _final_status(log: Path) -> dict:
    from regconsist_ros.ros.nodes.registration import FINAL_STATUS

    lines = [ln for ln in log.read_text(errors="replace").splitlines() if FINAL_STATUS in ln]
    if not lines:
        raise RuntimeError(f"the registration node logged no final status:\n{_tail(log)}")
    return json.loads(lines[-1].split(FINAL_STATUS, 1)[1])


def _learner_steps(out_dir: Path) -> dict:
    """Last checkpointed step per method (the learner checkpoints at shutdown)."""
    steps = {}
    for d in sorted(out_dir.glob("*/checkpoints")):
        done = [int(p.name.split("_", 1)[1]) for p in d.glob("step_*") if p.name.split("_", 1)[1].isdigit()]
        steps[d.parent.name] = max(done, default=0)
    return steps


def bench_registration(rate: float = 30.0, seconds: float = 30.0, width: int = 640, height: int = 480,
                       load: str = "learner", frames: int = 150, speed: float = 0.5, seed: int = 0, graph: str = "sim",
                       drain: float = 5.0, startup_timeout: float = 180.0, keep: bool = False,
                       params: dict | None = None, transport: str | None = None) -> dict:
    """Run the stream through the registration node beside ``load`` (module docstring); the node's figures as a dict.

    ``frames`` rendered frames make a bag of 2 x frames - 2 (forwards, backwards), replayed in a loop;
    ``speed`` m/s sets the path step (``speed / rate`` m per frame). ``keep`` keeps the temporary
    directory (bag and node logs) and reports its path. ``params`` override the registration node's
    parameters of the graph (``{"work_queue": 8, "keyframes.candidates": 4}``); ``transport`` the
    graph's Fast DDS transport (``default`` or ``large_data``: every process gets the same).
    """
    from regconsist_ros.ros.qos import transport_env
    from regconsist_ros.up import load_graph, node_command

    if load not in LOADS:
        raise ValueError(f"bench_registration: load must be one of {LOADS}, got {load!r}")
    if not (rate > 0 and seconds > 0 and frames >= 2 and speed > 0 and drain >= 0):
        raise ValueError(f"bench_registration needs rate, seconds, speed > 0, frames >= 2, drain >= 0; got "
                         f"{rate}, {seconds}, {speed}, {frames}, {drain}")
    g = load_graph(graph)
    tmp = Path(tempfile.mkdtemp(prefix="regconsist-bench-registration-"))
    procs: dict[str, subprocess.Popen] = {}
    try:
        t0 = time.monotonic()
        bag_frames = _render_bag(tmp / "bag", frames, width, height, rate, speed, seed)
        setup_s = time.monotonic() - t0
        transport = transport or g["transport"]
        env = transport_env(transport)
        env.update({"ROS_DOMAIN_ID": os.environ.get("ROS_DOMAIN_ID") or str(random.randint(1, 200)),
                    "PYTHONUNBUFFERED": "1"})
        logs = {n: tmp / f"{n}.log" for n in ("registration", "load", "sim_camera")}

        reg = {**g["nodes"]["registration"], "params": {**g["nodes"]["registration"]["params"], **(params or {})}}
        procs["registration"] = _start(node_command("registration", reg), env, logs["registration"])
        if load == "learner":
            spec = g["nodes"]["learner"]
            spec = {**spec, "params": {**spec["params"], "learner.out_dir": str(tmp / "learner"), "tensorboard": False}}
            objectives = list(spec["params"].get("learner.objectives") or ())
            procs["load"] = _start(node_command("learner", spec), env, logs["load"])
        elif load == "torch":
            procs["load"] = _start([sys.executable, "-m", __name__, "--torch-load"], env, logs["load"])
        _wait_log(procs["registration"], logs["registration"], r"waiting for colour", 1, startup_timeout,
                  "the registration node")
        if load == "learner":  # each method built (its model is the slow part of the start)
            _wait_log(procs["load"], logs["load"], r": (starting from scratch|resumed at step \d+) on ",
                      max(1, len(objectives)), startup_timeout, "the learner")
        elif load == "torch":
            _wait_log(procs["load"], logs["load"], r"torch load: training", 1, startup_timeout, "the torch load")
        cam = {"params": {"source": "rosbag", "path": str(tmp / "bag"), "rate": float(rate), "loop": True,
                          "publish_labels": False}, "remap": {}, "namespace": ""}
        procs["sim_camera"] = _start(node_command("sim_camera", cam), env, logs["sim_camera"])
        _wait_log(procs["sim_camera"], logs["sim_camera"], r"publishing \d+ frames at", 1, startup_timeout,
                  "the camera source")
        t_stream = time.monotonic()
        while time.monotonic() - t_stream < seconds:
            died = [n for n, p in procs.items() if p.poll() is not None]
            if died:
                raise RuntimeError(f"{died[0]} died during the stream:\n{_tail(logs[died[0]])}")
            time.sleep(0.2)
        streamed_s = time.monotonic() - t_stream
        _stop(procs["sim_camera"], 20.0)
        time.sleep(drain)
        reg_exit = _stop(procs["registration"], 60.0)
        status = _final_status(logs["registration"])  # logged before the node is torn down
        load_info: dict = {"load": load}
        if "load" in procs:
            _stop(procs["load"], 60.0)
            if load == "learner":
                load_info["learner_steps"] = _learner_steps(tmp / "learner")
            else:
                steps = re.findall(r"torch load: (\d+) steps", _tail(logs["load"], 100_000))
                load_info["torch_load_steps"] = int(steps[-1]) if steps else None
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)

    msgs = status.get("messages", {})
    frames_in = int(msgs.get("color", 0))
    if not frames_in:
        raise RuntimeError(f"the registration node received no colour frame in {streamed_s:.0f} s (transport "
                           f"{transport!r}); its status: {json.dumps(status)}")
    dropped = {k: int(v) for k, v in status.get("dropped", {}).items()}
    busy = dropped.get("busy", 0)
    out = {"bench": "registration", "rate_hz": rate, "seconds": round(streamed_s, 1), "width": width, "height": height,
           "speed_m_s": speed, "bag_frames": bag_frames, "transport": transport, **load_info,
           "frames": frames_in, "stream_hz": round(frames_in / max(streamed_s, 1e-9), 2), "messages": msgs,
           "frames_received": status.get("frames_received"), "frames_processed": status.get("frames_registered"),
           "dropped": dropped, "busy": busy, "busy_fraction": round(busy / max(1, frames_in), 4),
           "target_busy_fraction": TARGET_BUSY, "ok": busy <= TARGET_BUSY * frames_in,
           "keyframes": status.get("keyframes"), "view_pairs": status.get("view_pairs"),
           "frame_ms": status.get("frame_ms"),
           **{k: status[k] for k in ("keyframes_unpaired", "pair_ms", "work_queue", "pair_queue") if k in status},
           "builder": {k.split(".", 1)[1]: v for k, v in status.items() if k.startswith("builder.")},
           "registration_params": reg["params"], "registration_exit": reg_exit, "setup_s": round(setup_s, 1),
           **machine()}
    if keep:
        out["dir"] = str(tmp)
    return out


def _torch_load() -> None:
    """A learner-like CPU load: a small conv net trained on random 96x128 batches with the torch default threads."""
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(32, 64, 3, 2, 1),
                              torch.nn.ReLU(), torch.nn.Conv2d(64, 128, 3, 2, 1), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(128, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x, y = torch.randn(16, 3, 96, 128), torch.randint(0, 10, (16,))
    print(f"torch load: training with {torch.get_num_threads()} threads", flush=True)
    steps = 0
    try:
        while True:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
            steps += 1
    except KeyboardInterrupt:
        print(f"torch load: {steps} steps", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--torch-load"]:
        _torch_load()
    else:
        print(json.dumps(bench_registration()))
