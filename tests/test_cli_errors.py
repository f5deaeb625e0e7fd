"""Bad command lines: every error is one clear line and a non-zero exit, never a traceback (issue 18)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from regconsist_ros.bench.fuzz_cli import ALL_CASES, build_files, error_lines, fill, judge
from regconsist_ros.cli import main

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.reliability


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
    """Paths the bad command lines point at (regconsist_ros/bench/fuzz_cli.py: build_files)."""
    return build_files(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("argv,needle", [pytest.param(argv, needle, id=" ".join(argv)[:70]) for argv, needle in ALL_CASES])
def test_a_bad_command_line_is_one_error_line_and_a_nonzero_exit(files, argv, needle):
    rc, out, err = run_cli(fill(argv, files))
    assert rc not in (0, None), (rc, out, err)
    assert "Traceback" not in out + err, err
    lines = error_lines(err)
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    assert lines[0].startswith("regconsist") and "error" in lines[0], lines[0]
    assert not any(set(ln.strip()) == {"^"} for ln in err.splitlines()), err  # no YAML caret lines
    assert needle is None or needle in lines[0], lines[0]
    assert not judge(rc, out, err, needle)["internal_error"], lines[0]  # an exception no command expects


@pytest.mark.parametrize("argv,needle", [
    (["sim", "render", "--out", "{file}"], "is a file"),
    (["sim", "render", "--config", "{invalid_yaml}", "--out", "{dir}/y"], ":3:9: invalid YAML"),
    (["up", "robot", "--set", "learner.nonexistent=1"], "valid names: "),
])
def test_the_console_script_too(files, argv, needle):
    """A few as real processes: the whole stderr is the one line (no log lines, no usage)."""
    env = {**os.environ, "ROS_DOMAIN_ID": "199"}
    r = subprocess.run([sys.executable, "-m", "regconsist_ros.cli", *fill(argv, files)], capture_output=True,
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
