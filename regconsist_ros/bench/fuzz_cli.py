"""`regconsist bench fuzz --sections cli`: bad command lines through the real console script.

:data:`CASES` is the table of bad command lines (also run in-process by tests/test_cli_errors.py):
each an argv with ``{placeholders}`` for the paths :func:`build_files` makes (a file, a directory, a
tiny rendered sequence, broken YAML, graph files of the wrong shapes, a poisoned checkpoint), and a
substring the one error line must hold (None: any one error line). Every case must end in exactly
one error line on stderr (log lines and progress bars aside) and a non-zero exit, never a traceback.

The section runs each case as a process of ``regconsist`` (the console script beside the Python
running the bench) and counts: tracebacks (``Traceback (most recent call last)`` in stderr),
multi-line errors, zero exits, internal errors (the CLI's one line for an exception no command
expects: a bug, even if it is only one line), missing needles and timeouts.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

LOG_PREFIXES = ("DEBUG ", "INFO ", "WARNING ")
PROGRESS = re.compile(r"\d+%\|")  # a tqdm progress bar, not an error line
TRACEBACK = "Traceback (most recent call last)"

YAML_TEXTS = {
    "invalid_yaml": "sim:\n  width: [64, 48\n  height: 3\n",
    "unknown_key": "rsp:\n  trainer:\n    lrr: 0.1\n",
    "list_yaml": "- 1\n- 2\n",
    "graph_list": "- graphs\n- sim\n",
    "graph_graphs_string": "graphs: sim\n",
    "graph_graph_list": "graphs:\n  sim: [sim_camera, learner]\n",
    "graph_nodes_list": "graphs:\n  sim:\n    nodes: [sim_camera, learner]\n",
    "graph_node_string": "graphs:\n  sim:\n    nodes:\n      evaluator: watch runs/online\n",
    "graph_remap_list": "graphs:\n  sim:\n    nodes:\n      evaluator: {remap: [a, b]}\n",
    "graph_params_list": "graphs:\n  sim:\n    nodes:\n      evaluator: {params: [watch_dir, x]}\n",
    "graph_bad_param": "graphs:\n  eval:\n    nodes:\n      evaluator: {params: {watch_dirr: x}}\n",
    "graph_bad_value": "graphs:\n  eval:\n    nodes:\n      evaluator: {params: {eval_frames: 1}}\n",
    "graph_unknown_node": "graphs:\n  sim:\n    nodes:\n      nosuchnode: {}\n",
    "yaml_tabs": "sim:\n\twidth: 64\n",
    # a billion laughs: 9^6 shared references in a few hundred bytes, as the value of sim.width
    "yaml_anchor_bomb": "sim:\n  width: [&a [x, x, x, x, x, x, x, x, x], &b [*a, *a, *a, *a, *a, *a, *a, *a, *a], "
                        "&c [*b, *b, *b, *b, *b, *b, *b, *b, *b], &d [*c, *c, *c, *c, *c, *c, *c, *c, *c], "
                        "&e [*d, *d, *d, *d, *d, *d, *d, *d, *d], [*e, *e, *e, *e, *e, *e, *e, *e, *e]]\n",
    "yaml_python_tag": "sim: !!python/object/apply:os.system ['echo pwned']\n",
    "yaml_wrong_type": "sim:\n  width: sixty\n",
    "yaml_empty": "",
    "yaml_scalar": "42\n",
}


def build_files(d: Path) -> dict[str, Path]:
    """The paths the bad command lines point at, made under ``d``."""
    from regconsist_ros.models.checkpoint import save_checkpoint
    from regconsist_ros.models.encoder import random_encoder
    from regconsist_ros.models.vit import ViTConfig
    from regconsist_ros.sim.sequences import TumWriter
    from regconsist_ros.sim.source import SimConfig, SimSource, frames_meta

    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    f = {"file": d / "a_file.txt", "dir": d / "a_dir", "seq": d / "seq", "empty_file": d / "empty.txt",
         "binary": d / "binary.bin"}
    f["file"].write_text("not a directory\n")
    f["empty_file"].write_bytes(b"")
    f["binary"].write_bytes(bytes(range(256)) * 16)
    f["dir"].mkdir(exist_ok=True)
    src = SimSource(SimConfig(frames=3, width=32, height=24))
    with TumWriter(f["seq"], src.intrinsics, classes=src.classes, meta=frames_meta(src), overwrite=True) as w:
        for frame in src:
            w.write(frame)
    for name, text in YAML_TEXTS.items():
        (d / f"{name}.yaml").write_text(text)
        f[name] = d / f"{name}.yaml"
    cfg = ViTConfig(size="tiny", depth=1, patch=8, img_size=(24, 32))
    bomb = save_checkpoint(d / "bomb" / "checkpoints" / "step_00000001", random_encoder("vit", cfg), "vit", cfg, step=1)
    (bomb / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    f["bomb"] = bomb
    garbage = save_checkpoint(d / "garbage" / "checkpoints" / "step_00000001", random_encoder("vit", cfg), "vit", cfg,
                              step=1)
    (garbage / "model.safetensors").write_bytes(os.urandom(4096))
    f["garbage_ckpt"] = garbage
    return f


# (argv with {placeholders}, a substring the one error line must hold, or None)
CASES: list[tuple[list[str], str | None]] = [
    # issue 18's eight tracebacks and three silent wrong results
    (["sim", "render", "--out", "{file}"], "is a file"),
    (["sim", "render", "--config", "{dir}", "--out", "{dir}/new"], "is a directory"),
    (["pretrain", "rsp", "--data", "{seq}", "--out", "{file}"], "is a file"),
    (["up", "sim", "--graph-file", "{graph_list}"], "must be a mapping"),
    (["up", "sim", "--graph-file", "{graph_graphs_string}"], "must be a mapping"),
    (["up", "sim", "--graph-file", "{graph_graph_list}"], "must be a mapping"),
    (["up", "sim", "--graph-file", "{graph_nodes_list}"], "must be a mapping"),
    (["up", "sim", "--graph-file", "{graph_node_string}"], "must be a mapping"),
    (["up", "sim", "--graph-file", "{graph_remap_list}"], "must be a mapping"),
    (["up", "sim", "--graph-file", "{graph_params_list}"], "must be a mapping"),
    (["up", "sim", "--set", "learner.learner.objectives=[rsp"], "not a YAML value"),
    (["up", "robot", "--set", "learner.nonexistent=1"], "valid names: "),
    (["sim", "render", "--config", "{invalid_yaml}", "--out", "{dir}/x"], "invalid_yaml.yaml:3:9: invalid YAML"),
    # more of the same kinds
    (["up", "eval", "--graph-file", "{graph_bad_param}"], "valid names: "),
    (["up", "eval", "--graph-file", "{graph_bad_value}"], "graph 'eval', node evaluator: "),
    (["up", "sim", "--set", "learner.rsp.trainer.lrr=1"], "did you mean rsp.trainer.lr"),
    (["up", "sim", "--set", "learner.regconsist.trainer.lr=1", "--set", "learner.learner.objectives=[rsp]"],
     "not in learner.objectives"),
    (["up", "nosuchgraph"], "no graph 'nosuchgraph'"),
    (["up", "sim", "--set", "noequals"], "expected NODE.PARAM=VALUE"),
    (["up", "sim", "--set", "nosuchnode.x=1"], "expected NODE.PARAM=VALUE"),
    (["up", "sim", "--graph-file", "{dir}/missing.yaml"], "does not exist"),
    (["up", "sim", "--graph-file", "{invalid_yaml}"], "invalid YAML"),
    (["up", "sim", "--duration", "soon"], "invalid float value"),
    (["sim", "render"], "required: --out"),
    (["sim", "render", "--sim.width", "abc", "--out", "{dir}/x"], "invalid int value"),
    (["sim", "render", "--sim.width", "-5", "--out", "{dir}/x"], "got -5x"),
    (["nosuchcommand"], "invalid choice"),
    (["correspond", "{dir}/missing", "--pair", "0", "1"], "missing"),
    (["correspond", "{seq}", "--pair", "0", "99"], "out of range"),
    (["correspond", "{seq}", "--pair", "0", "1", "--intrinsics", "1,2"], "intrinsics"),
    (["pretrain", "rsp", "--data", "{dir}/missing", "--out", "{dir}/run1"], "missing"),
    (["pretrain", "rsp", "--data", "{seq}", "--out", "{dir}/run2", "--rsp.trainer.lr", "-1"], "lr"),
    (["pretrain", "rsp", "--data", "{seq}", "--out", "{dir}/run3", "--regconsist.trainer.lr", "1"], "regconsist"),
    (["pretrain", "rsp", "--data", "{seq}", "--out", "{dir}/run4", "--config", "{unknown_key}"],
     "valid names in rsp.trainer.*: "),
    (["pretrain", "rsp", "--data", "{seq}", "--out", "{dir}/run5", "--config", "{list_yaml}"], "mapping"),
    (["pretrain", "rsp", "--data", "{seq}", "--out", "{dir}/run6", "--rsp.trainer.keep_last", "-1"], "keep_last"),
    (["embed", "--ckpt", "{dir}/missing", "--data", "{seq}", "--out", "{dir}/e.npz"], "missing"),
    (["eval", "propagate", "--ckpt", "{bomb}", "--data", "{seq}"], "nested too deeply"),
    (["demo", "--config", "{dir}"], "is a directory"),
    (["finetune", "--init", "{dir}/missing", "--data", "{seq}"], "no such checkpoint"),
]

# generated families: every subcommand with an option it does not have, without its required arguments,
# and with paths of the wrong kind; YAML files that are not config mappings; values of the wrong type or range
SUBCOMMANDS = [["sim", "render"], ["correspond"], ["convert"], ["bench", "sim"], ["up", "sim"], ["demo"],
               ["pretrain", "rsp"], ["finetune"], ["embed"], ["eval", "propagate"], ["eval", "retrieve"],
               ["eval", "bc"], ["defaults"], ["experiment", "rsp"]]
COMPLETE = [["sim", "render", "--out", "{dir}/u1"], ["correspond", "{seq}", "--pair", "0", "1"],
            ["convert", "{seq}", "--out", "{dir}/u2"], ["bench", "sim"], ["up", "sim"], ["demo"],
            ["pretrain", "rsp", "--data", "{seq}", "--out", "{dir}/u3"], ["finetune", "--init", "random", "--data", "{seq}"],
            ["embed", "--ckpt", "random", "--data", "{seq}", "--out", "{dir}/u4.npz"],
            ["eval", "propagate", "--ckpt", "random", "--data", "{seq}"], ["eval", "retrieve", "--ckpt", "random", "--data", "{seq}"],
            ["eval", "bc", "--encoder", "random"], ["defaults"], ["experiment", "rsp"]]  # SUBCOMMANDS, each runnable
UNKNOWN_OPTION = [(argv + ["--nosuchoption", "1"], "--nosuchoption") for argv in COMPLETE]
MISSING_REQUIRED = [(argv, "required") for argv in (
    ["correspond"], ["convert"], ["embed"], ["finetune"], ["eval", "propagate"], ["eval", "retrieve"],
    ["eval", "bc"], ["pretrain", "rsp"], ["up"])] + [(argv, "invalid choice" if argv[1:] else "required") for argv in (
    ["pretrain", "nosuchmethod"], ["bench", "nosuchbench"], ["eval", "nosuchreadout"], ["experiment", "nosuchexp"])]
WRONG_PATHS = [
    (["convert", "{file}", "--out", "{dir}/c1"], None),
    (["convert", "{dir}", "--out", "{dir}/c2"], None),
    (["convert", "{seq}", "--out", "{file}"], "file"),
    (["correspond", "{file}", "--pair", "0", "1"], None),
    (["correspond", "{binary}", "--pair", "0", "1"], None),
    (["embed", "--ckpt", "{file}", "--data", "{seq}", "--out", "{dir}/e1.npz"], None),
    (["embed", "--ckpt", "{dir}", "--data", "{seq}", "--out", "{dir}/e2.npz"], None),
    (["embed", "--ckpt", "{garbage_ckpt}", "--data", "{seq}", "--out", "{dir}/e3.npz"], None),
    (["embed", "--ckpt", "random", "--data", "{file}", "--out", "{dir}/e4.npz"], None),
    (["eval", "propagate", "--ckpt", "{garbage_ckpt}", "--data", "{seq}"], None),
    (["eval", "propagate", "--ckpt", "random", "--data", "{dir}"], None),
    (["eval", "retrieve", "--ckpt", "{bomb}", "--data", "{seq}"], "nested too deeply"),
    (["finetune", "--init", "{file}", "--data", "{seq}"], None),
    (["finetune", "--init", "{garbage_ckpt}", "--data", "{seq}"], None),
    (["finetune", "--init", "random", "--data", "{binary}"], None),
    (["pretrain", "rsp", "--data", "{file}", "--out", "{dir}/run7"], None),
    (["pretrain", "rsp", "--data", "{dir}", "--out", "{dir}/run8"], None),
    (["defaults", "--out", "{dir}"], None),
    (["defaults", "--out", "{file}/x.yaml"], None),
    (["sim", "render", "--config", "{binary}", "--out", "{dir}/x2"], None),
    (["sim", "render", "--config", "{dir}/missing.yaml", "--out", "{dir}/x3"], None),
    (["demo", "--config", "{invalid_yaml}"], "invalid YAML"),
    (["up", "sim", "--graph-file", "{dir}"], None),
    (["up", "sim", "--graph-file", "{binary}"], None),
    (["up", "sim", "--graph-file", "{graph_unknown_node}"], None),
]
BAD_YAML = [(["sim", "render", "--config", "{" + name + "}", "--out", "{dir}/y_" + name], None) for name in (
    "yaml_tabs", "yaml_anchor_bomb", "yaml_python_tag", "yaml_wrong_type", "yaml_scalar", "list_yaml")] + [
    (["pretrain", "rsp", "--data", "{seq}", "--out", "{dir}/run9", "--config", "{yaml_python_tag}"], None),
    (["pretrain", "rsp", "--data", "{seq}", "--out", "{dir}/run13", "--config", "{yaml_anchor_bomb}"], None),
    (["up", "sim", "--graph-file", "{yaml_anchor_bomb}"], None),
    (["up", "sim", "--graph-file", "{yaml_scalar}"], None)]
BAD_VALUES = [
    (["sim", "render", "--sim.frames", "0", "--out", "{dir}/v1"], None),
    (["sim", "render", "--sim.height", "1.5", "--out", "{dir}/v2"], "invalid int value"),
    (["sim", "render", "--sim.fps", "nan", "--out", "{dir}/v3"], None),
    (["sim", "render", "--sim.fps", "-30", "--out", "{dir}/v4"], None),
    (["correspond", "{seq}", "--pair", "a", "b"], "invalid int value"),
    (["correspond", "{seq}", "--pair", "-1", "1"], None),
    (["correspond", "{seq}", "--pair", "0", "1", "--depth-scale", "-5"], "depth_scale"),
    (["convert", "{seq}", "--out", "{dir}/c3", "--stride", "0"], None),
    (["convert", "{seq}", "--out", "{dir}/c4", "--max-frames", "-1"], None),
    (["embed", "--ckpt", "random", "--data", "{seq}", "--out", "{dir}/e5.npz", "--batch", "0"], None),
    (["finetune", "--init", "random", "--data", "{seq}", "--steps", "-3"], None),
    (["finetune", "--init", "random", "--data", "{seq}", "--labels", "2", "--steps", "1"], None),
    (["eval", "propagate", "--ckpt", "random", "--data", "{seq}", "--topk", "0"], None),
    (["pretrain", "rsp", "--data", "{seq}", "--out", "{dir}/run10", "--rsp.trainer.lr", "nan", "--rsp.trainer.steps", "1"], None),
    (["pretrain", "rsp", "--data", "{seq}", "--out", "{dir}/run11", "--rsp.trainer.steps", "-1"], None),
    (["pretrain", "rsp", "--data", "{seq}", "--out", "{dir}/run12", "--rsp.encoder.size", "huge"], "invalid choice"),
    (["up", "sim", "--duration", "-1"], "--duration -1: expected seconds >= 0"),
    (["up", "sim", "--domain-id", "999"], "domain ids are 0-232"),
    (["up", "sim", "--set", "learner.learner.objectives=[nosuchmethod]"], "unknown method 'nosuchmethod'"),
    (["up", "sim", "--set", "learner.rsp.trainer.lr=-1", "--set", "learner.learner.objectives=[rsp]"],
     "--set learner.rsp.trainer.lr: "),
    (["up", "sim", "--set", "registration.work_queue=abc"], "--set registration.work_queue: "),
    (["up", "sim", "--set", "registration.work_queue=-1"], "--set registration.work_queue: "),
    (["up", "sim", "--set", "registration.qos.depth=100000"], "--set registration.qos.depth: "),
    (["up", "sim", "--set", "=1"], None),
    (["up", "sim", "--set", "learner.=1"], None),
]
ALL_CASES = CASES + UNKNOWN_OPTION + MISSING_REQUIRED + WRONG_PATHS + BAD_YAML + BAD_VALUES

def fill(argv, files: dict) -> list[str]:
    """``argv`` with its placeholders filled; an ``up`` without ``--duration`` gets ``--duration 5``, so that a
    command line wrongly accepted stops its graph by itself."""
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]
    if argv[:1] == ["up"] and "--duration" not in argv and len(argv) > 1:
        argv += ["--duration", "5"]
    return argv


def error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(LOG_PREFIXES) and not PROGRESS.search(ln)]


def judge(rc, stdout: str, stderr: str, needle: str | None) -> dict:
    """What one bad command line did; ``ok`` when it ended as it must (module docstring)."""
    lines = error_lines(stderr)
    out = {"exit": rc, "traceback": TRACEBACK in stdout + stderr, "error_lines": len(lines),
           "error": lines[0][:300] if lines else "", "error_chars": len(lines[0]) if lines else 0, "internal_error": any("internal error:" in ln for ln in lines),
           "caret_lines": any(set(ln.strip()) == {"^"} for ln in stderr.splitlines())}
    out["one_line"] = len(lines) == 1 and lines[0].startswith("regconsist") and "error" in lines[0]
    out["needle"] = needle is None or (bool(lines) and needle in lines[0])
    out["ok"] = (rc not in (0, None) and not out["traceback"] and out["one_line"] and out["needle"]
                 and not out["internal_error"] and not out["caret_lines"])
    return out


def console_script() -> list[str]:
    exe = Path(sys.executable).parent / "regconsist"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "regconsist_ros.cli"]


def run_case(argv: list[str], needle: str | None, timeout: float = 120.0, env: dict | None = None,
             cwd: Path | None = None) -> dict:
    """One command line as a process (its own process group, all of it killed after ``timeout``)."""
    import signal

    t0 = time.monotonic()
    p = subprocess.Popen(console_script() + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         cwd=cwd, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        row = judge(p.returncode, out, err, needle)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        row = {**judge(None, out, err, needle), "timed_out": True, "ok": False}
    if not row["ok"]:
        row["stderr_tail"] = err[-1500:]
    row["seconds"] = round(time.monotonic() - t0, 2)
    return row


def bench_fuzz_cli(jobs: int = 2, limit: int = 0, timeout: float = 120.0, progress=None) -> dict:
    """Every case of :data:`ALL_CASES` (the first ``limit`` when > 0) through the console script, ``jobs`` at a time."""
    import random
    import shutil
    import tempfile

    from regconsist_ros.ros.qos import discovery_env

    tmp = Path(tempfile.mkdtemp(prefix="regconsist-fuzz-cli-"))
    cases = ALL_CASES[:limit] if limit > 0 else ALL_CASES
    # a command line that starts a graph by mistake stays on this host, on a domain of its own
    env = discovery_env("localhost", dict(os.environ))
    env["ROS_DOMAIN_ID"] = str(random.Random(time.time_ns()).randint(1, 200))
    t0 = time.monotonic()
    try:
        files = build_files(tmp / "files")
        cwd = tmp / "cwd"  # relative outputs of a command that runs by mistake land here
        cwd.mkdir()

        def one(case):
            argv, needle = case
            argv = fill(argv, files)
            row = {"argv": " ".join(argv).replace(str(tmp / "files"), "$F"), **run_case(argv, needle, timeout, env, cwd)}
            if progress is not None:
                progress(row)
            return row

        with ThreadPoolExecutor(max(1, jobs)) as ex:
            rows = list(ex.map(one, cases))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summarize_cli(rows) | {"jobs": jobs, "seconds": round(time.monotonic() - t0, 1)}


def summarize_cli(rows: list[dict]) -> dict:
    return {"inputs": len(rows), "tracebacks": sum(r["traceback"] for r in rows),
            "multi_line_errors": sum(r["error_lines"] > 1 for r in rows),
            "no_error_line": sum(r["error_lines"] == 0 for r in rows),
            "zero_exits": sum(r["exit"] == 0 for r in rows), "internal_errors": sum(r["internal_error"] for r in rows),
            "missing_needles": sum(not r["needle"] for r in rows), "caret_lines": sum(r["caret_lines"] for r in rows),
            "timeouts": sum(bool(r.get("timed_out")) for r in rows),
            "longest_error_chars": max((r["error_chars"] for r in rows), default=0),
            "failures": [r["argv"] for r in rows if not r["ok"]], "cases": rows}


if __name__ == "__main__":
    print(json.dumps(bench_fuzz_cli()))
