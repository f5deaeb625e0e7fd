"""The package layout promised by the design card: ament_python metadata, entry points, ROS-free core."""
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_package_xml_is_format3_ament_python_with_ros_deps():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "regconsist_ros"
    assert root.find("export").findtext("build_type") == "ament_python"
    deps = {e.text for e in root.findall("exec_depend")}
    for d in ("rclpy", "sensor_msgs", "geometry_msgs", "nav_msgs", "std_msgs", "diagnostic_msgs"):
        assert d in deps, f"package.xml lacks <exec_depend>{d}</exec_depend>"
    assert (ROOT / "resource" / "regconsist_ros").is_file()


def test_setup_installs_launch_and_config_and_declares_scripts():
    text = (ROOT / "setup.py").read_text()
    assert 'glob("launch/*.launch.py")' in text and 'glob("config/*.yaml")' in text
    # the installed distribution exposes the regconsist CLI as a console script
    from importlib.metadata import entry_points

    eps = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert eps.get("regconsist") == "regconsist_ros.cli:main"
    from regconsist_ros.ros import NODES

    for name, _ in NODES.items():
        assert eps.get(name) == f"regconsist_ros.ros.nodes.{name}:main", f"node {name} has no console script"


def test_core_imports_without_ros():
    code = (
        "import sys, importlib\n"
        "for m in ['regconsist_ros.sim', 'regconsist_ros.sim.render', 'regconsist_ros.sim.source', 'regconsist_ros.sim.sequences', 'regconsist_ros.sim.scans', 'regconsist_ros.sim.habitat', 'regconsist_ros.sim.trajectories',\n"
        "          'regconsist_ros.sim.world.apartment', 'regconsist_ros.models', 'regconsist_ros.registration.geometry', 'regconsist_ros.registration.pairs',\n"
        "          'regconsist_ros.cli', 'regconsist_ros.demo', 'regconsist_ros.bench']:\n"
        "    importlib.import_module(m)\n"
        "bad = [m for m in sys.modules if m == 'rclpy' or m.startswith('rclpy.')]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# no rclpy (nor any ROS package) outside regconsist_ros/ros, lazy imports included: tests/test_layers.py
# (import-linter contracts in pyproject.toml)


def test_config_files_match_dataclasses():
    """config/sim.yaml is generated from the dataclasses: every key exists and every value is valid."""
    from regconsist_ros.config import build, to_dict
    from regconsist_ros.demo import DemoConfig
    from regconsist_ros.sim.source import SimConfig

    data = yaml.safe_load((ROOT / "config" / "sim.yaml").read_text())
    for section, cls in (("sim", SimConfig), ("demo", DemoConfig)):
        cfg = build(cls, data[section])
        assert to_dict(cfg) == to_dict(cls()), f"config/sim.yaml [{section}] drifted from {cls.__name__} defaults"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make demo" in readme


# --- Import names: sim/ and models/ install as regconsist_ros.sim / regconsist_ros.models (docs/packaging.md) ---
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import zipfile  # noqa: E402
from configparser import ConfigParser  # noqa: E402

import pytest  # noqa: E402

_BUILD_INPUTS = ("setup.py", "setup.cfg", "pyproject.toml", "package.xml", "README.md",
                 "resource", "launch", "config", "regconsist_ros", "sim", "models")
_NAMESPACED = ("regconsist_ros.sim.frame", "regconsist_ros.sim.world.apartment",
               "regconsist_ros.models.objectives.rsp", "regconsist_ros.models.vit")
# The venv's editable install maps regconsist_ros.sim -> <checkout>/sim with a meta-path finder that answers
# whenever the install under test lacks a module (measured: a broken colcon --symlink-install then "imports"
# regconsist_ros.sim from the checkout). Checks of another install drop that finder first.
_DROP_EDITABLE = (
    "import sys\n"
    "sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, '__module__', '').startswith('__editable__')]\n"
    "sys.path[:] = [p for p in sys.path if '__editable__' not in p]\n"
)


def _copy_build_inputs(dst: Path) -> Path:
    """What a build reads, copied out of the checkout (an in-tree build leaves build/ and *.egg-info behind,
    and a stale build/lib could hide a broken mapping)."""
    dst.mkdir(parents=True)
    for name in _BUILD_INPUTS:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        elif src.is_file():
            shutil.copy2(src, dst / name)
    return dst


def _imported_files(names, cwd: Path, pythonpath=None, source=None, drop_editable=True) -> dict:
    """{module: __file__} for `names`, imported by sys.executable in a fresh process from `cwd`, with
    PYTHONPATH=`pythonpath` or after sourcing the shell script `source` (a colcon install's local_setup.sh)."""
    code = (_DROP_EDITABLE if drop_editable else "") + (
        "import importlib, json\n"
        f"print(json.dumps({{n: importlib.import_module(n).__file__ for n in {list(names)!r}}}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    cmd = [sys.executable, "-c", code]
    if source:
        cmd = ["bash", "-c", f'. "{source}" && exec "$0" -c "$1"', sys.executable, code]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    assert out.returncode == 0, f"import failed:\n{out.stderr[-3000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def _assert_under(files: dict, prefix: Path):
    wrong = {n: f for n, f in files.items() if not Path(f).is_relative_to(prefix)}
    assert not wrong, f"imported from outside {prefix}: {wrong}"


def test_editable_install_imports_the_namespace_from_outside_the_checkout(tmp_path):
    """`pip install -e .` (the Makefile's install): from an unrelated cwd, regconsist_ros.sim/.models resolve to
    the checkout's top-level sim/ and models/, and no top-level `sim` or `models` is importable."""
    files = _imported_files(_NAMESPACED, cwd=tmp_path, drop_editable=False)
    for name, path in files.items():
        top = name.split(".")[1]  # sim | models
        assert Path(path).is_relative_to(ROOT / top), f"{name} resolved to {path}, not into {ROOT / top}"
    code = "import importlib.util as u; print([n for n in ('sim', 'models') if u.find_spec(n) is not None])"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"top-level packages importable outside the checkout: {out.stdout.strip()}"


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory):
    """(wheel, source copy it was built from): `pip wheel --no-deps --no-build-isolation` with this venv."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = _copy_build_inputs(tmp / "src")
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(tmp / "dist"), str(src)],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (whl,) = (tmp / "dist").glob("regconsist_ros-*.whl")
    return whl, src


def test_wheel_puts_sim_and_models_under_the_package_with_data_and_scripts(built_wheel):
    from regconsist_ros.ros import NODES

    whl, src = built_wheel
    with zipfile.ZipFile(whl) as z:
        names = set(z.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        entry_points, top_level = (z.read(f"{dist_info}/{f}").decode() for f in ("entry_points.txt", "top_level.txt"))
    tops = {n.split("/")[0] for n in names}
    assert "sim" not in tops and "models" not in tops, f"top-level sim/ or models/ in the wheel: {sorted(tops)}"
    assert tops == {"regconsist_ros", dist_info, dist_info.replace(".dist-info", ".data")}, sorted(tops)
    assert top_level.split() == ["regconsist_ros"]
    for f in ("sim/frame.py", "sim/world/apartment.py", "models/objectives/rsp.py", "models/vit.py"):
        assert f"regconsist_ros/{f}" in names, f"wheel lacks regconsist_ros/{f}"
    # every module of sim/ and models/ made it, under the package
    missing = [str(p.relative_to(src)) for top in ("sim", "models") for p in (src / top).rglob("*.py")
               if f"regconsist_ros/{p.relative_to(src).as_posix()}" not in names]
    assert not missing, f"not in the wheel under regconsist_ros/: {missing}"
    data = dist_info.replace(".dist-info", ".data") + "/data/share/"
    expected = ["ament_index/resource_index/packages/regconsist_ros", "regconsist_ros/package.xml"]
    expected += [f"regconsist_ros/launch/{p.name}" for p in (src / "launch").glob("*.launch.py")]
    expected += [f"regconsist_ros/config/{p.name}" for p in (src / "config").glob("*.yaml")]
    assert len(expected) > 4
    absent = [e for e in expected if data + e not in names]
    assert not absent, f"wheel lacks data files: {absent}"
    eps = ConfigParser()
    eps.read_string(entry_points)
    scripts = dict(eps["console_scripts"])
    assert scripts.get("regconsist") == "regconsist_ros.cli:main", scripts
    for node in NODES:
        assert scripts.get(node) == f"regconsist_ros.ros.nodes.{node}:main", f"wheel has no console script {node}"


def test_wheel_imports_the_namespace_from_its_own_files(built_wheel, tmp_path):
    whl, _ = built_wheel
    site = tmp_path / "site"
    with zipfile.ZipFile(whl) as z:
        z.extractall(site)
    _assert_under(_imported_files(_NAMESPACED, cwd=tmp_path, pythonpath=site), site)


# colcon: the pinned colcon-core requires setuptools<80 and brings it along into the --target folder; it is on
# PYTHONPATH for colcon and for the `setup.py` colcon runs (setuptools 59.6 on Humble, 68.1 on Jazzy: also < 80).
_COLCON = ("colcon-core", "colcon-ros", "colcon-python-setup-py", "catkin-pkg")


@pytest.fixture(scope="module")
def colcon_site(tmp_path_factory):
    """colcon as `make setup` installs it (<venv>/colcon, COLCON_PACKAGES in the Makefile); installed here into a
    temporary folder when that is missing (a venv made by hand), skipped only when the index cannot be reached."""
    made = Path(sys.prefix) / "colcon"
    if (made / "colcon_core").is_dir() and (made / "colcon_ros").is_dir():
        return made
    site = tmp_path_factory.mktemp("colcon") / "site"
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--retries", "1",
           "--timeout", "20", "--target", str(site), *_COLCON]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.skip(f"installing colcon ({' '.join(_COLCON)}) from the package index timed out (offline?)")
    if out.returncode != 0:
        pytest.skip(f"cannot install colcon ({' '.join(_COLCON)}) from the package index (offline?): "
                    f"{out.stderr.strip()[-600:]}")
    return site


def _colcon_build(colcon_site: Path, ws: Path, *args) -> Path:
    """`colcon build` of a copy of this package, run by this venv's python (so scripts get its shebang)."""
    _copy_build_inputs(ws / "src" / "regconsist_ros")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLCON")}
    env.update(PYTHONPATH=str(colcon_site), COLCON_HOME=str(ws / ".colcon"))
    code = "import sys; from colcon_core.command import main; sys.argv[0] = 'colcon'; sys.exit(main())"
    out = subprocess.run([sys.executable, "-c", code, "build", *args, "--event-handlers", "console_direct+"],
                         capture_output=True, text=True, cwd=ws, env=env, timeout=300)
    assert out.returncode == 0, f"colcon build {' '.join(args)} failed:\n{(out.stdout + out.stderr)[-3000:]}"
    return ws / "install"


@pytest.mark.slow
def test_colcon_build_installs_the_namespace_nodes_and_share(colcon_site, tmp_path):
    from regconsist_ros.ros import NODES

    install = _colcon_build(colcon_site, tmp_path / "ws")
    prefix = install / "regconsist_ros"
    (site,) = prefix.glob("lib/python3*/site-packages")
    for f in ("sim/frame.py", "sim/world/apartment.py", "models/objectives/rsp.py", "models/vit.py"):
        assert (site / "regconsist_ros" / f).is_file(), f"colcon install lacks regconsist_ros/{f}"
    assert not (site / "sim").exists() and not (site / "models").exists(), "top-level sim/ or models/ installed"
    for exe in ("regconsist", *NODES):  # where `ros2 run regconsist_ros <exe>` looks (setup.cfg install_scripts)
        path = prefix / "lib" / "regconsist_ros" / exe
        assert path.is_file() and os.access(path, os.X_OK), f"no executable {path}"
    share = prefix / "share"
    assert (share / "ament_index" / "resource_index" / "packages" / "regconsist_ros").is_file()
    assert (share / "regconsist_ros" / "package.xml").is_file()
    assert {p.name for p in (share / "regconsist_ros" / "launch").glob("*.launch.py")} == \
        {p.name for p in (ROOT / "launch").glob("*.launch.py")}
    assert {p.name for p in (share / "regconsist_ros" / "config").glob("*.yaml")} == \
        {p.name for p in (ROOT / "config").glob("*.yaml")}
    _assert_under(_imported_files(_NAMESPACED, cwd=tmp_path, source=install / "local_setup.sh"), install)


@pytest.mark.slow
def test_colcon_symlink_install_imports_the_namespace(colcon_site, tmp_path):
    """colcon --symlink-install (setuptools < 80: `setup.py develop` in a link farm of top-level packages):
    setup.py's develop command links sim/ and models/ into the package's folder of links."""
    ws = tmp_path / "ws"
    install = _colcon_build(colcon_site, ws, "--symlink-install")
    _assert_under(_imported_files(_NAMESPACED, cwd=tmp_path, source=install / "local_setup.sh"), ws)
