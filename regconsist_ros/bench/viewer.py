"""`regconsist bench viewer`: does the live viewer slow the learner down?

The same graph (``graph``, default ``demo``: the CPU sizes of `make demo`) is run by ``regconsist up``
``2 x rounds`` times, alternately without and with ``--view VIEW --save run.rrd`` (the order flips
every round, so a drift of the machine's load hits both arms alike). In each run, once every method
of the learner has logged its first step, ``warmup`` seconds pass, then the learner's steps are
counted over ``seconds`` seconds from its ``<method>/metrics.jsonl`` (one row per step: the bench
sets ``trainer.log_every=1``), and the CPU time of each node process over the same window is read
from /proc. Two ratios, with / without, round by round (the issue's target: ``ok`` when ``ratio`` is
above 0.95; ``ratio_spread``, max - min over the rounds, says how far one round can be trusted):

- ``ratio`` (the headline): learner steps/s in training time, from each step's duration (the rows'
  ``elapsed_s``): the time the without-run's steps of every method take at each run's mean step time.
  Hundreds of steps per run, so it resolves a few percent;
- ``wall_ratio``: steps counted per wall-clock second, all methods together. The learner trains its
  methods in slices (``learner.slice_steps``), so a window of ``seconds`` holds a whole number of
  slices of the slow method more or less: noisier by a slice's share of the window. The evaluator is left
out unless ``evaluator`` (its readouts at each checkpoint load the CPU in bursts, which only adds noise
to a comparison of the learner's speed).

No browser is connected during the runs: the gRPC server keeps what it is sent (up to
``viewer.memory_limit``) and the web page is only served; a browser on the same machine would add
its own rendering load, which is not the graph's.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from regconsist_ros.bench import machine

TARGET = 0.05  # learner steps/s with the viewer at most 5% below those without


def _graph_file(graph: str, path: Path, evaluator: bool) -> Path:
    """config/graph.yaml with graph ``graph`` only (its evaluator left out unless ``evaluator``)."""
    import yaml

    from regconsist_ros.up import DEFAULT_GRAPH

    doc = yaml.safe_load(DEFAULT_GRAPH.read_text())
    g = doc["graphs"][graph]
    if not evaluator:
        g["nodes"].pop("evaluator", None)
    path.write_text(yaml.safe_dump({"transport": doc.get("transport", "default"), "viewer": doc.get("viewer", {}),
                                    "graphs": {graph: g}}, sort_keys=False))
    return path


def _steps(out_dir: Path) -> dict[str, int]:
    """``{method: last step in <out_dir>/<method>/metrics.jsonl}``."""
    steps = {}
    for p in sorted(out_dir.glob("*/metrics.jsonl")):
        lines = p.read_text(errors="replace").splitlines()
        for line in reversed(lines):
            try:
                steps[p.parent.name] = int(json.loads(line)["step"])
                break
            except (ValueError, KeyError):  # a line being written
                continue
    return steps


def _step_seconds(out_dir: Path, method: str, first: int, last: int) -> list[float]:
    """Training seconds of each step in (first, last] of ``method``: the differences of ``elapsed_s``
    (seconds since the start of the training slice) between consecutive rows of one slice."""
    from regconsist_ros.learning.trainer import read_jsonl

    out, prev = [], None
    for row in read_jsonl(out_dir / method / "metrics.jsonl"):
        step, el = row.get("step"), row.get("elapsed_s")
        if step is None or el is None:
            continue
        same_slice = prev is not None and step == prev[0] + 1 and el >= prev[1]
        if first < step <= last:
            out.append(el - prev[1] if same_slice else el)
        prev = (step, el)
    return out


def _node_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each node process that ``regconsist up`` (pid) started, by node name."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) != pid:  # ppid
                continue
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        mod = next((c.decode() for c in cmd if c.startswith(b"regconsist_ros.ros.nodes.")), None)
        if mod:
            out[mod.rsplit(".", 1)[1]] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(arm: str, graph: str, graph_file: Path, run_dir: Path, methods: list[str], seconds: float, warmup: float,
         view: str, save: bool, startup_timeout: float) -> dict:
    out_dir, log = run_dir / "online", run_dir / "up.log"
    run_dir.mkdir(parents=True)
    cmd = [sys.executable, "-m", "regconsist_ros.cli", "up", graph, "--graph-file", str(graph_file), "--grace", "60",
           "--domain-id", str(random.Random(time.time_ns()).randrange(1, 200)), "--json",
           "--set", f"learner.learner.out_dir={out_dir}"]
    cmd += [x for m in methods for x in ("--set", f"learner.{m}.trainer.log_every=1")]
    if arm == "with":
        cmd += ["--view", view, "--set", f"viewer.grpc_port={_free_port()}", "--set", f"viewer.web_port={_free_port()}"]
        cmd += ["--save", str(run_dir / "run.rrd")] if save else []
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        end = time.monotonic() + startup_timeout
        while set(_steps(out_dir)) < set(methods):
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"{arm}: the learner did not train every method {methods} within "
                                   f"{startup_timeout:.0f} s (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        time.sleep(warmup)
        s1, c1, t1 = _steps(out_dir), _node_cpu(proc.pid), time.monotonic()
        while time.monotonic() - t1 < seconds:
            if proc.poll() is not None:
                raise RuntimeError(f"{arm}: regconsist up exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        s2, c2, t2 = _steps(out_dir), _node_cpu(proc.pid), time.monotonic()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    dt = t2 - t1
    rates = {m: (s2[m] - s1[m]) / dt for m in methods}
    step_s = {m: _step_seconds(out_dir, m, s1[m], s2[m]) for m in methods}
    res = {"arm": arm, "seconds": round(dt, 1), "steps": {m: s2[m] - s1[m] for m in methods},
           "steps_per_s": {m: round(r, 3) for m, r in rates.items()},
           "total_steps_per_s": round(sum(rates.values()), 3),
           "step_ms": {m: round(1000 * sum(v) / len(v), 1) if v else None for m, v in step_s.items()},
           "cpu_cores": {n: round((c2[n] - c1.get(n, 0.0)) / dt, 3) for n in sorted(c2)}, "up_exit": proc.returncode}
    text = log.read_text(errors="replace")
    if arm == "with":
        lines = [ln for ln in text.splitlines() if ln.startswith("[viewer]") and "final status:" in ln]
        status = json.loads(lines[-1].split("final status:", 1)[1]) if lines else {}
        res["viewer"] = {k: status.get(k) for k in ("logged", "errors_total", "dropped", "skipped")}
        rrd = run_dir / "run.rrd"
        res["rrd_mb"] = round(rrd.stat().st_size / 2**20, 2) if rrd.exists() else None
    return res


def _train_ratio(without: dict, with_: dict, methods: list[str]) -> float:
    """Learner steps/s with the viewer / without, in training time: the time the without-run's steps
    (of every method) take at each run's mean step time."""
    n = without["steps"]
    t_without = sum(n[m] * without["step_ms"][m] for m in methods if n[m] and with_["step_ms"][m])
    t_with = sum(n[m] * with_["step_ms"][m] for m in methods if n[m] and with_["step_ms"][m])
    return t_without / t_with if t_with else float("nan")


def bench_viewer(graph: str = "demo", rounds: int = 2, seconds: float = 40.0, warmup: float = 10.0, view: str = "web",
                 save: bool = True, evaluator: bool = False, startup_timeout: float = 180.0, keep: bool = False) -> dict:
    from regconsist_ros.up import load_graph

    if rounds < 1 or seconds <= 0 or warmup < 0:
        raise ValueError(f"bench viewer needs rounds >= 1, seconds > 0, warmup >= 0; got {rounds}, {seconds}, {warmup}")
    tmp = Path(tempfile.mkdtemp(prefix="regconsist_bench_viewer_"))
    try:
        gf = _graph_file(graph, tmp / "graph.yaml", evaluator)
        g = load_graph(graph, gf)
        methods = list(g["nodes"]["learner"]["params"].get("learner.objectives") or [])
        if not methods:
            raise ValueError(f"graph {graph!r}: its learner names no learner.objectives")
        runs = []
        from tqdm import tqdm

        bar = tqdm(total=2 * rounds, desc="bench viewer", unit="run", file=sys.stderr, dynamic_ncols=True)
        for r in range(rounds):
            for arm in (("without", "with") if r % 2 == 0 else ("with", "without")):
                bar.set_postfix_str(f"round {r + 1}/{rounds}, {arm} the viewer")
                runs.append({"round": r, **_run(arm, graph, gf, tmp / f"round{r}_{arm}", methods, seconds, warmup,
                                                view, save, startup_timeout)})
                bar.update(1)
        bar.close()
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    by = {(x["round"], x["arm"]): x for x in runs}
    wall = [by[(r, "with")]["total_steps_per_s"] / max(1e-9, by[(r, "without")]["total_steps_per_s"]) for r in range(rounds)]
    train = [_train_ratio(by[(r, "without")], by[(r, "with")], methods) for r in range(rounds)]
    mean = {arm: round(sum(x["total_steps_per_s"] for x in runs if x["arm"] == arm) / rounds, 3) for arm in ("without", "with")}
    ratio = sum(train) / rounds
    out = {"bench": "viewer", "graph": graph, "methods": methods, "rounds": rounds, "seconds": seconds, "warmup_s": warmup,
           "view": view, "save": save, "evaluator": evaluator,
           "ratio": round(ratio, 4), "ratio_per_round": [round(x, 4) for x in train],
           "difference_pct": round(100 * (1 - ratio), 2), "target_pct": 100 * TARGET, "ok": ratio > 1 - TARGET,
           "ratio_spread": round(max(train) - min(train), 4),
           "wall_steps_per_s": mean, "wall_ratio_per_round": [round(x, 4) for x in wall],
           "wall_ratio": round(sum(wall) / rounds, 4), "runs": runs, **machine()}
    if keep:
        out["dir"] = str(tmp)
    return out
