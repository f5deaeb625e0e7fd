"""regconsist_ros: ament_python package and a plain pip-installable Python distribution.

Console scripts: one ``regconsist`` CLI, plus one executable per ROS node listed in
``regconsist_ros.ros.NODES`` (name -> module under ``regconsist_ros.ros.nodes``), so that
``ros2 run regconsist_ros <node>`` and launch files find them.
"""
from glob import glob
import re
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.develop import develop as _develop

PACKAGE = "regconsist_ros"
HERE = Path(__file__).parent


def ros_nodes() -> list[str]:
    """Node executables declared in regconsist_ros/ros/__init__.py (read as text: no import)."""
    text = (HERE / PACKAGE / "ros" / "__init__.py").read_text()
    m = re.search(r"NODES\s*=\s*\{(.*?)\}", text, re.S)
    return re.findall(r'"(\w+)"\s*:', m.group(1)) if m else []


class develop(_develop):
    """`setup.py develop` as `colcon build --symlink-install` runs it (setuptools < 80): colcon links only
    top-level packages into its build folder, so the package_dir folders sim/ and models/ would be
    missing from the link farm. Replace the link of the package by a folder of links: every entry of
    regconsist_ros/ plus sim -> ../sim and models -> ../models (edits still show without a rebuild;
    a new top-level module of regconsist_ros/ needs one)."""

    def run(self):
        super().run()
        src = Path(__file__).resolve().parent  # colcon runs a link to this file from its build folder
        link = Path.cwd() / PACKAGE
        if self.uninstall or Path.cwd().resolve() == src or not link.is_symlink():
            return
        link.unlink()
        link.mkdir()
        for entry in (src / PACKAGE).iterdir():
            (link / entry.name).symlink_to(entry)
        for sub in ("sim", "models"):
            (link / sub).symlink_to(src / sub)


setup(
    name=PACKAGE,
    version="0.1.0",
    description="Online in-environment visual representation learning for robots (ROS 2)",
    # sim/ and models/ stay top-level folders (the design card's layout) but install as
    # regconsist_ros.sim and regconsist_ros.models, so they never collide with another `sim` or `models`
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"])
    + [f"{PACKAGE}.{p}" for p in find_packages(include=["sim", "sim.*", "models", "models.*"])],
    package_dir={f"{PACKAGE}.sim": "sim", f"{PACKAGE}.models": "models"},
    package_data={f"{PACKAGE}.ros": ["*.xml"]},  # the Fast DDS profile of localhost mode (ros/qos.py)
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/config/experiments", glob("config/experiments/*.yaml")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "numpy",
        "pyyaml",
        "pillow",
        "tqdm",
        "matplotlib",
        "scipy",
        "scikit-image",
        "safetensors",
        "open3d",
        "moderngl",
        "trimesh",
        "rerun-sdk>=0.41,<0.42",  # the live viewer (viewer node, `regconsist up --view/--save`); its .rrd reader API is 0.41's
    ],
    extras_require={
        # torch is installed by the Makefile with a pinned, overridable spec (TORCH_SPEC)
        "torch": ["torch"],
        "io": ["rosbags", "imageio", "av", "tensorboard", "opencv-python"],  # opencv: FlowE optical flow without depth
        # the BC readout's MetaWorld suite (brings mujoco and gymnasium)
        # versions verified together (metaworld pins mujoco 3.3.0; newer dm-control needs mujoco 4)
        "readout": ["metaworld==3.1.1"],
        # the other CortexBench suites' simulators (rollouts from local demonstrations)
        "suites": ["dm-control==1.0.28", "gymnasium-robotics==1.4.2", "trifinger-simulation==2.0.0"],
        "test": ["pytest", "pytest-xdist", "import-linter>=2.16"],  # import-linter: the layer contracts (pyproject.toml)
    },
    entry_points={
        "console_scripts": [f"regconsist = {PACKAGE}.cli:main"]
        + [f"{n} = {PACKAGE}.ros.nodes.{n}:main" for n in ros_nodes()],
    },
    zip_safe=False,
    cmdclass={"develop": develop},
)
