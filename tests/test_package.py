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


def test_no_rclpy_import_outside_ros_glue():
    offenders = []
    for pkg in ("sim", "models", "regconsist_ros"):
        for f in (ROOT / pkg).rglob("*.py"):
            if pkg == "regconsist_ros" and "ros" in f.relative_to(ROOT / pkg).parts[:1]:
                continue
            for line in f.read_text().splitlines():
                if line.strip().startswith(("import rclpy", "from rclpy")):
                    offenders.append(str(f.relative_to(ROOT)))
    assert not offenders, f"rclpy imported outside regconsist_ros/ros: {offenders}"


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
