"""Bad command lines: every error is one clear line and a non-zero exit, never a traceback (issue 18)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from regconsist_ros.cli import main

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.reliability
LOG_PREFIXES = ("DEBUG ", "INFO ", "WARNING ")
PROGRESS = re.compile(r"\d+%\|")  # a tqdm progress bar, not an error line


def error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(LOG_PREFIXES) and not PROGRESS.search(ln)]


def run_cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:  # argparse
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Paths the bad command lines point at: a file, a directory, a tiny sequence, broken YAML / graphs /
    checkpoints."""
    from regconsist_ros.models.checkpoint import save_checkpoint
    from regconsist_ros.models.encoder import random_encoder
    from regconsist_ros.models.vit import ViTConfig

    d = tmp_path_factory.mktemp("bad")
    f = {"file": d / "a_file.txt", "dir": d / "a_dir", "seq": d / "seq"}
    f["file"].write_text("not a directory\n")
    f["dir"].mkdir()
    rc, _, err = run_cli(["sim", "render", "--sim.frames", 3, "--sim.width", 32, "--sim.height", 24, "--out", f["seq"],
                          "--quiet"])
    assert rc == 0, err
    texts = {
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
    }
    for name, text in texts.items():
        (d / f"{name}.yaml").write_text(text)
        f[name] = d / f"{name}.yaml"
    cfg = ViTConfig(size="tiny", depth=1, patch=8, img_size=(24, 32))
    bomb = save_checkpoint(d / "bomb" / "checkpoints" / "step_00000001", random_encoder("vit", cfg), "vit", cfg, step=1)
    (bomb / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    f["bomb"] = bomb
    return f


# (argv with {placeholders}, a substring the one error line must hold)
CASES = [
    # the eight tracebacks and three silent wrong results
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


def _fill(argv, files):
    return [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]


@pytest.mark.parametrize("argv,needle", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_a_bad_command_line_is_one_error_line_and_a_nonzero_exit(files, argv, needle):
    rc, out, err = run_cli(_fill(argv, files))
    assert rc not in (0, None), (rc, out, err)
    assert "Traceback" not in out + err, err
    lines = error_lines(err)
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    assert lines[0].startswith("regconsist") and "error" in lines[0], lines[0]
    assert not any(set(ln.strip()) == {"^"} for ln in err.splitlines()), err  # no YAML caret lines
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize("argv,needle", [
    (["sim", "render", "--out", "{file}"], "is a file"),
    (["sim", "render", "--config", "{invalid_yaml}", "--out", "{dir}/y"], ":3:9: invalid YAML"),
    (["up", "robot", "--set", "learner.nonexistent=1"], "valid names: "),
])
def test_the_console_script_too(files, argv, needle):
    """A few as real processes: the whole stderr is the one line (no log lines, no usage)."""
    env = {**os.environ, "ROS_DOMAIN_ID": "199"}
    r = subprocess.run([sys.executable, "-m", "regconsist_ros.cli", *_fill(argv, files)], capture_output=True,
                       text=True, timeout=300, env=env, cwd=ROOT)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr
    assert "[up] starting" not in r.stdout  # rejected before any node process starts


def test_correspond_out_reports_the_path_it_wrote(files, tmp_path):
    import numpy as np

    for out, wrote in ((tmp_path / "pairs", tmp_path / "pairs.npz"), (files["dir"], files["dir"] / "pair_0_2.npz"),
                       (tmp_path / "x.npz", tmp_path / "x.npz")):
        rc, stdout, err = run_cli(["correspond", files["seq"], "--pair", 0, 2, "--json", "--out", out])
        assert rc == 0, err
        res = json.loads(stdout.strip().splitlines()[-1])
        assert res["out"] == str(wrote) and Path(res["out"]).is_file(), res
        assert np.load(res["out"])["uv1"].shape == (res["pairs"], 2)


def test_an_internal_error_is_one_line_too(monkeypatch):
    """A bug (an exception no command expects) still ends in one line and exit 1; -v shows the traceback."""
    from regconsist_ros.cli import build_parser

    def boom(a):
        raise KeyError("surprise")

    parser = build_parser()
    a = parser.parse_args(["defaults"])
    monkeypatch.setattr(a, "fn", boom, raising=False)
    monkeypatch.setattr(type(parser), "parse_known_args", lambda self, argv=None: (a, []))
    rc, _, err = run_cli(["defaults"])
    lines = error_lines(err)
    assert rc == 1 and len(lines) == 1 and "internal error: KeyError" in lines[0] and "-v" in lines[0], err
