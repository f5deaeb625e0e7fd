"""Launch files read config/graph.yaml; tested with stand-in `launch` / `launch_ros` modules."""
import importlib.util
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_launch(monkeypatch):
    made = []

    class Action:
        def __init__(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs
            made.append(self)

    launch = types.ModuleType("launch")
    launch.LaunchDescription = lambda actions: {"actions": actions}
    actions = types.ModuleType("launch.actions")
    actions.SetEnvironmentVariable = type("SetEnvironmentVariable", (Action,), {})
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = type("Node", (Action,), {})
    for name, mod in {"launch": launch, "launch.actions": actions, "launch_ros": launch_ros,
                      "launch_ros.actions": ros_actions}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setitem(sys.modules, "ament_index_python", None)  # not installed: source checkout path
    return made


@pytest.mark.parametrize("graph,nodes", [("sim", {"sim_camera", "registration", "learner", "evaluator"}),
                                         ("robot", {"registration", "learner", "evaluator"}),
                                         ("eval", {"evaluator"})])
def test_launch_files_build_one_node_action_per_graph_node(fake_launch, graph, nodes):
    spec = importlib.util.spec_from_file_location(f"{graph}_launch", ROOT / "launch" / f"{graph}.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    desc = mod.generate_launch_description()
    node_actions = [a for a in desc["actions"] if type(a).__name__ == "Node"]
    assert {a.kwargs["executable"] for a in node_actions} == nodes
    for a in node_actions:
        assert a.kwargs["package"] == "regconsist_ros" and isinstance(a.kwargs["parameters"][0], dict)
    # the default graph uses Fast DDS's default transports: no environment is set
    assert not [a for a in desc["actions"] if type(a).__name__ == "SetEnvironmentVariable"]
    if graph == "robot":
        reg = next(a for a in node_actions if a.kwargs["executable"] == "registration")
        assert ("camera/color/image_raw", "/camera/camera/color/image_raw") in reg.kwargs["remappings"]


def test_a_large_data_graph_sets_the_transport_for_every_node(fake_launch, tmp_path):
    from regconsist_ros.launch_description import launch_description

    g = tmp_path / "graph.yaml"
    g.write_text("transport: large_data\ngraphs:\n  eval:\n    nodes:\n      evaluator: {params: {watch_dir: x}}\n")
    desc = launch_description("eval", str(g))
    env = [a for a in desc["actions"] if type(a).__name__ == "SetEnvironmentVariable"]
    assert env and env[0].args == ("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
    node = next(a for a in desc["actions"] if type(a).__name__ == "Node")
    assert node.kwargs["parameters"] == [{"watch_dir": "x"}]
