"""Launch files read config/graph.yaml and find the node executables on the pip path and in an install space.

Most checks use stand-in `launch` / `launch_ros` modules (the ROS 2 launch libraries are not installable
from the registries); `test_real_launch_*` runs the real ones when they are importable (a system ROS 2,
or REGCONSIST_LAUNCH_PYTHONPATH pointing at their sources) and is skipped, saying so, otherwise.
"""
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODES4 = {"sim_camera", "registration", "learner", "evaluator"}


@pytest.fixture
def fake_launch(monkeypatch):
    made = []

    class Action:
        def __init__(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs
            made.append(self)

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    launch = types.ModuleType("launch")
    launch.LaunchDescription = lambda actions: {"actions": actions}
    actions = types.ModuleType("launch.actions")
    for n in ("SetEnvironmentVariable", "ExecuteProcess", "DeclareLaunchArgument", "OpaqueFunction"):
        setattr(actions, n, type(n, (Action,), {}))
    subs = types.ModuleType("launch.substitutions")
    subs.LaunchConfiguration = LaunchConfiguration
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = type("Node", (Action,), {})
    for name, mod in {"launch": launch, "launch.actions": actions, "launch.substitutions": subs,
                      "launch_ros": launch_ros, "launch_ros.actions": ros_actions}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)  # the pip path unless a test makes a prefix
    return made


def _run_launch_file(graph, context):
    """generate_launch_description() of launch/<graph>.launch.py, its OpaqueFunction performed with ``context``."""
    spec = importlib.util.spec_from_file_location(f"{graph}_launch", ROOT / "launch" / f"{graph}.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    desc = mod.generate_launch_description()
    declared = {a.args[0]: a.kwargs["default_value"] for a in desc["actions"] if type(a).__name__ == "DeclareLaunchArgument"}
    (opaque,) = [a for a in desc["actions"] if type(a).__name__ == "OpaqueFunction"]
    return declared, opaque.kwargs["function"]({**declared, **context})


@pytest.mark.parametrize("graph,nodes", [("sim", NODES4), ("robot", NODES4 - {"sim_camera"}), ("eval", {"evaluator"})])
def test_pip_path_runs_the_node_modules_with_this_python(fake_launch, graph, nodes, monkeypatch):
    from regconsist_ros.ros.qos import LOCALHOST_PROFILE

    for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", "ROS_DISTRO", "FASTDDS_DEFAULT_PROFILES_FILE",
              "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS"):
        monkeypatch.delenv(k, raising=False)
    declared, actions = _run_launch_file(graph, {})
    assert set(declared) == {"graph_file", "sigterm_timeout"}
    procs = [a for a in actions if type(a).__name__ == "ExecuteProcess"]
    assert not [a for a in actions if type(a).__name__ == "Node"]  # no ament index: no launch_ros Node
    assert {a.kwargs["name"] for a in procs} == nodes
    for a in procs:
        cmd = a.kwargs["cmd"]
        assert cmd[:3] == [sys.executable, "-m", f"regconsist_ros.ros.nodes.{a.kwargs['name']}"] and "--ros-args" in cmd
        assert float(a.kwargs["sigterm_timeout"]) >= 30  # launch's default 5 s would cut the final checkpoint
    if graph == "robot":
        reg = next(a for a in procs if a.kwargs["name"] == "registration").kwargs["cmd"]
        assert "camera/color/image_raw:=/camera/camera/color/image_raw" in reg
    # default transport: only the discovery range, with the profile that binds 127.0.0.1 (as `regconsist up`)
    env = dict(a.args for a in actions if type(a).__name__ == "SetEnvironmentVariable")
    assert env == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "FASTDDS_DEFAULT_PROFILES_FILE": str(LOCALHOST_PROFILE)}
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")  # the user's choice: nothing set
    assert not [a for a in _run_launch_file(graph, {})[1] if type(a).__name__ == "SetEnvironmentVariable"]


def test_graph_file_and_sigterm_timeout_are_launch_arguments(fake_launch, tmp_path, monkeypatch):
    for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", "ROS_DISTRO", "FASTDDS_BUILTIN_TRANSPORTS"):
        monkeypatch.delenv(k, raising=False)
    g = tmp_path / "graph.yaml"
    g.write_text("transport: large_data\ngraphs:\n  eval:\n    nodes:\n      evaluator: {params: {watch_dir: /x/y}}\n")
    _, actions = _run_launch_file("eval", {"graph_file": str(g), "sigterm_timeout": "33"})
    env = [a for a in actions if type(a).__name__ == "SetEnvironmentVariable"]
    assert env and env[0].args == ("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
    # LARGE_DATA's TCP and shared-memory transports stay: the discovery range only, no profile
    assert dict(a.args for a in env[1:]) == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    (proc,) = [a for a in actions if type(a).__name__ == "ExecuteProcess"]
    assert "watch_dir:=/x/y" in proc.kwargs["cmd"] and proc.kwargs["sigterm_timeout"] == "33.0"
    with pytest.raises(ValueError, match="sigterm_timeout"):
        _run_launch_file("eval", {"graph_file": str(g), "sigterm_timeout": "soon"})


def _fake_install(prefix: Path, nodes, executables=True):
    (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "regconsist_ros").write_text("")
    (prefix / "lib" / "regconsist_ros").mkdir(parents=True)
    (prefix / "share" / "regconsist_ros").mkdir(parents=True)
    for n in nodes if executables else ():
        exe = prefix / "lib" / "regconsist_ros" / n
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)


def test_install_space_uses_launch_ros_nodes_from_the_ament_index(fake_launch, tmp_path, monkeypatch):
    pytest.importorskip("ament_index_python")
    from regconsist_ros.launch_description import installed_prefix

    prefix = tmp_path / "install"
    _fake_install(prefix, NODES4)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    assert installed_prefix(NODES4) == str(prefix)
    _, actions = _run_launch_file("sim", {})
    nodes = [a for a in actions if type(a).__name__ == "Node"]
    assert {a.kwargs["executable"] for a in nodes} == NODES4
    for a in nodes:
        assert a.kwargs["package"] == "regconsist_ros" and isinstance(a.kwargs["parameters"][0], dict)
        assert float(a.kwargs["sigterm_timeout"]) >= 30
    # the package in the index without its executables (a wheel installed into a prefix): the pip path
    other = tmp_path / "wheel_prefix"
    _fake_install(other, NODES4, executables=False)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(other))
    assert installed_prefix(NODES4) is None


# ---- the real ROS 2 launch libraries ------------------------------------------------------------------------
_RUN_LAUNCH = """\
import sys
import launch
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

path, *args = sys.argv[1:]  # as `ros2 launch PKG FILE name:=value ...` passes them
ls = launch.LaunchService(argv=args)
ls.include_launch_description(IncludeLaunchDescription(
    PythonLaunchDescriptionSource(path), launch_arguments=[tuple(a.split(":=", 1)) for a in args]))
sys.exit(ls.run())
"""


def _default_sigint():
    """SIGINT as a terminal delivers it (a background job of a non-interactive shell inherits it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _launch_env():
    """Environment in which the real `launch` imports (None if it does not)."""
    env = {k: v for k, v in os.environ.items() if k != "AMENT_PREFIX_PATH"}  # the pip path
    extra = os.environ.get("REGCONSIST_LAUNCH_PYTHONPATH")
    if extra:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (extra, env.get("PYTHONPATH")) if p)
    probe = subprocess.run([sys.executable, "-c", "import launch; launch.LaunchService"], env=env,
                           capture_output=True, text=True, timeout=120)
    return env if probe.returncode == 0 else None


@pytest.mark.slow
def test_real_launch_starts_the_sim_graph_from_the_checkout_and_stops_it_on_sigint(tmp_path, domain_id):
    env = _launch_env()
    if env is None:
        pytest.skip("the ROS 2 `launch` library is not importable (not installable from PyPI: the package called "
                    "`launch` there is an unrelated project); set REGCONSIST_LAUNCH_PYTHONPATH to its sources "
                    "or run on a system ROS 2 install")
    out = tmp_path / "online"
    graph = tmp_path / "graph.yaml"
    graph.write_text(f"""graphs:
  sim:
    nodes:
      sim_camera: {{params: {{rate: 10.0, sim.width: 64, sim.height: 48, sim.frames: 100, sim.step: 0.1}}}}
      registration: {{params: {{keyframes.min_translation: 0.15}}}}
      learner:
        params:
          learner.objectives: [rsp]
          learner.out_dir: {out}
          learner.store_height: 32
          learner.store_width: 48
          learner.min_frames: 8
          learner.slice_steps: 1
          rsp: {{encoder: {{size: tiny, patch: 8, depth: 1}}, decoder_width: 32, decoder_depth: 1, decoder_heads: 4,
                batch: {{size: 4, gap_min: 2, gap_max: 6}}, trainer: {{threads: 1, ckpt_every: 1000}}}}
      evaluator: {{params: {{watch_dir: {out}, eval_width: 64, eval_height: 48, eval_frames: 16, clip_len: 8,
                            seg_steps: 3, readouts: [propagation], floors: false}}}}
""")
    (tmp_path / "run_launch.py").write_text(_RUN_LAUNCH)
    env.update(ROS_DOMAIN_ID=str(domain_id), PYTHONUNBUFFERED="1", ROS_LOG_DIR=str(tmp_path / "roslog"))
    log = tmp_path / "launch.log"
    proc = subprocess.Popen([sys.executable, str(tmp_path / "run_launch.py"), str(ROOT / "launch" / "sim.launch.py"),
                             f"graph_file:={graph}"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            cwd=tmp_path, start_new_session=True, preexec_fn=_default_sigint)
    try:
        end = time.monotonic() + 240
        ready = ("[sim_camera]: publishing", "[learner]: rsp: starting from scratch", "[evaluator]: watching",
                 "[registration]:")
        while time.monotonic() < end and not all(r in log.read_text() for r in ready):
            assert proc.poll() is None, log.read_text()[-4000:]
            time.sleep(1.0)
        text = log.read_text()
        assert all(r in text for r in ready), text[-4000:]
        # train a few steps, so that the shutdown writes a final checkpoint
        from regconsist_ros.models.checkpoint import latest_checkpoint, load_checkpoint

        metrics = out / "rsp" / "metrics.jsonl"
        end = time.monotonic() + 180
        while time.monotonic() < end and not (metrics.is_file() and metrics.read_text().strip()):
            assert proc.poll() is None, log.read_text()[-4000:]
            time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals launch and every node (launch does not resend)
        rc = proc.wait(240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text()
    assert rc == 0, text[-4000:]
    assert "escalating to 'SIGTERM'" not in text and "escalating to 'SIGKILL'" not in text, text[-4000:]
    for n in NODES4:
        assert re.search(rf"\[{n}-\d+\]: process has finished cleanly", text), (n, text[-4000:])
    for bad in ("terminate called", "never retrieved", "Destroyable", "Traceback"):
        assert bad not in text, (bad, text[-4000:])
    ckpt = latest_checkpoint(out / "rsp")
    assert ckpt is not None, text[-4000:]
    load_checkpoint(ckpt)
