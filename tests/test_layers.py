"""Layers, enforced: the import-linter contracts in pyproject.toml ([tool.importlinter]) hold.

The contracts: one layers contract over every module directly under ``regconsist_ros`` (edges: cli >
demo | bench | launch_description > report | up > ros; then online > experiments > readout >
learning > models > registration > sim > config), and a forbidden contract: nothing outside
``regconsist_ros.ros`` imports rclpy or a ROS package (``launch_description`` may import launch,
launch_ros and ament_index_python). Function-local (lazy) imports count.

``sim/`` and ``models/`` install as ``regconsist_ros.sim`` / ``regconsist_ros.models`` through
setuptools ``package_dir``, which import-linter's graph builder (grimp) does not follow: it walks the
``regconsist_ros/`` folder only. So the check lays the three source folders out as one package tree
in a temporary directory and runs ``lint-imports`` there (line numbers are those of the sources).

Run ``python tests/test_layers.py`` for import-linter's report.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "regconsist_ros"
MAPPED = {"sim": ROOT / "sim", "models": ROOT / "models"}  # setup.py package_dir


def package_tree(dest: Path) -> Path:
    """``dest/regconsist_ros`` with sim/ and models/ inside it, as installed (Python files only)."""
    keep = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / PACKAGE, dest / PACKAGE, ignore=keep)
    for name, src in MAPPED.items():
        assert not (dest / PACKAGE / name).exists(), f"{PACKAGE}/{name} exists beside the mapped {src}"
        shutil.copytree(src, dest / PACKAGE / name, ignore=keep)
    return dest


def lint(tree: Path, *args: str) -> subprocess.CompletedProcess:
    """``lint-imports`` (the venv's) on the contracts of pyproject.toml, importing the package from ``tree``."""
    script = Path(sys.executable).parent / "lint-imports"
    cmd = [str(script)] if script.exists() else [
        sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]
    path = os.pathsep.join([str(tree)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    return subprocess.run(cmd + ["--no-cache", "--no-logo", *args, str(ROOT / "pyproject.toml")], cwd=tree,
                          env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True, timeout=300)


def _contracts() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in cfg["contracts"]}


def test_import_linter_contracts_hold(tmp_path):
    out = lint(package_tree(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout, out.stdout


def test_a_layer_violation_or_a_ros_import_breaks_the_contracts(tmp_path):
    """The check sees the mapped folders and lazy imports: a sim module importing the online core and rclpy
    inside a function breaks both contracts, each violation reported with its line."""
    tree = package_tree(tmp_path)
    frame = tree / PACKAGE / "sim" / "frame.py"
    n = len(frame.read_text().splitlines())
    with frame.open("a") as f:
        f.write("\n\ndef _lazy():\n    import rclpy\n    from regconsist_ros.online import registrar\n")
    out = lint(tree)
    assert out.returncode != 0, out.stdout
    assert "0 kept, 2 broken" in out.stdout, out.stdout
    assert f"regconsist_ros.sim.frame -> rclpy (l.{n + 4})" in out.stdout, out.stdout
    assert f"regconsist_ros.sim.frame -> regconsist_ros.online.registrar (l.{n + 5})" in out.stdout, out.stdout


def test_every_module_is_placed_and_checked_for_ros_imports(tmp_path):
    """Every module directly under the package (mapped folders included) is a layer (the layers contract
    is also ``exhaustive``), and all but ``ros`` are sources of the forbidden contract."""
    tree = package_tree(tmp_path) / PACKAGE
    children = {p.stem for p in tree.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in tree.iterdir() if (p / "__init__.py").is_file()}
    contracts = _contracts()
    layers = contracts["layers"]
    assert layers["exhaustive"] and layers["containers"] == [PACKAGE]
    placed = {m.strip() for layer in layers["layers"] for m in layer.replace(":", "|").split("|")}
    assert placed == children, (sorted(children - placed), sorted(placed - children))
    sources = set(contracts["ros-only-in-ros"]["source_modules"])
    assert sources == {f"{PACKAGE}.{c}" for c in children - {"ros"}}, sorted(sources ^ {f"{PACKAGE}.{c}" for c in children})
    assert "rclpy" in contracts["ros-only-in-ros"]["forbidden_modules"]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        res = lint(package_tree(Path(d)), *sys.argv[1:])
        print(res.stdout + res.stderr, end="")
        raise SystemExit(res.returncode)
