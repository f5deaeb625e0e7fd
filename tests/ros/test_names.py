"""One name per setting: every config field has the same dotted name in the CLI help, the ROS
parameters and the YAML files, and a setting of another method is rejected in one clear line."""
import re

import pytest
import yaml

from regconsist_ros.cli import build_parser, main
from regconsist_ros.cli.defaults import component_groups, render
from regconsist_ros.config import config_dir, flatten, setting_names
from regconsist_ros.learning.runs import recipe, schema
from regconsist_ros.models.methods import methods

METHODS = sorted(methods())
# where each component group appears: CLI subcommands, ROS nodes, YAML files (besides config/defaults.yaml)
CLI = {"sim": [("sim", "render")], "demo": [("demo",)], "correspondence": [("correspond",)],
       "bc": [("eval", "bc")], "policy": [("eval", "bc")]}
ROS = {"sim": ["sim_camera"], "qos": ["sim_camera", "registration", "learner"], "correspondence": ["registration"],
       "keyframes": ["registration"], "view_pairs": ["registration"], "regions": ["learner"], "learner": ["learner"],
       "odometry": ["registration"]}
YAML = {"sim": ["sim.yaml"], "demo": ["sim.yaml"]}


def cli_flags(*path) -> set[str]:
    """The ``--name`` options shown by ``regconsist <path> --help``."""
    parser = build_parser()
    for word in path:
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = sub.choices[word]
    return set(re.findall(r"--([A-Za-z_][\w.]*)", parser.format_help()))


@pytest.fixture(scope="module")
def ros_names():
    """Declared parameter names of the sim_camera and registration nodes and of a learner training every method."""
    import rclpy
    from rclpy.parameter import Parameter

    from regconsist_ros.ros import params
    from regconsist_ros.ros.nodes import learner, registration, sim_camera
    from regconsist_ros.ros.qos import QosConfig

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=177)
    out = {}
    try:
        for name, cls, overrides in (("sim_camera", sim_camera.make_node_class(), {"sim.frames": 3, "sim.width": 32,
                                                                                    "sim.height": 24}),
                                     ("registration", registration.make_node_class(), {})):
            node = cls(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
            out[name] = set(node._parameters)
            node.shutdown() if hasattr(node, "shutdown") else None
            node.destroy_node()
        node = rclpy.create_node("names_test", context=ctx,
                                 parameter_overrides=[Parameter("learner.objectives", value=METHODS)])
        params.declare(node, learner.LearnerNodeConfig)  # as LearnerNode.__init__ does
        params.declare(node, QosConfig, "qos")
        learner.declare_settings(node, params)  # what the learner node declares (without building the models)
        out["learner"] = set(node._parameters)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
    return out


def test_config_defaults_yaml_is_generated_from_the_dataclasses_and_the_registry():
    assert (config_dir() / "defaults.yaml").read_text() == render(), \
        "config/defaults.yaml is stale: run `regconsist defaults --out config/defaults.yaml`"


def test_every_component_setting_has_one_name_in_cli_ros_and_yaml(ros_names):
    defaults = set(flatten(yaml.safe_load((config_dir() / "defaults.yaml").read_text())))
    checked = 0
    for group, cls in component_groups():
        names = set(setting_names([(group, cls)]))
        assert names <= defaults, (group, names - defaults)
        for path in CLI.get(group, []):
            assert names <= cli_flags(*path), (group, path, names - cli_flags(*path))
        for node in ROS.get(group, []):
            assert names <= ros_names[node], (group, node, names - ros_names[node])
        for f in YAML.get(group, []):
            keys = set(flatten(yaml.safe_load((config_dir() / f).read_text())))
            assert names <= keys, (group, f, names - keys)
        checked += len(names)
    assert checked > 80  # every field of the 12 component groups


@pytest.mark.parametrize("method", METHODS)
def test_every_method_setting_has_one_name_in_cli_ros_and_yaml(method, ros_names):
    names = set(setting_names(schema(method)))
    assert names == set(recipe(method).values())
    assert names <= set(flatten(yaml.safe_load((config_dir() / "defaults.yaml").read_text())))
    assert names <= cli_flags("pretrain", method) and names <= cli_flags("bench", "pretrain", method)
    assert names <= ros_names["learner"]
    # the data-preparation groups of its batch kind: the names of those components
    prep = set(setting_names(list(recipe(method).kind.prep)))
    assert prep <= cli_flags("pretrain", method)
    # and no other method's settings
    others = {n for m in METHODS if m != method for n in setting_names(schema(m))}
    assert not (others & cli_flags("pretrain", method))


def test_a_setting_of_another_method_is_one_clear_line(capsys, tmp_path):
    for method, other in zip(METHODS, METHODS[1:] + METHODS[:1]):
        name = next(iter(setting_names(schema(other))))
        assert main(["pretrain", method, "--data", str(tmp_path), "--out", str(tmp_path / "o"), f"--{name}", "1"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"--{name} is a setting of method {other}, not of {method}" in err, err


def test_the_learner_rejects_a_parameter_of_a_method_it_does_not_train():
    import rclpy
    from rclpy.parameter import Parameter

    from regconsist_ros.config import ConfigError
    from regconsist_ros.ros import params
    from regconsist_ros.ros.nodes import learner

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=178)
    try:
        node = rclpy.create_node("names_test", context=ctx, parameter_overrides=[
            Parameter("learner.objectives", value=["rsp"]), Parameter("regconsist.lambd", value=0.1)])
        with pytest.raises(ConfigError, match=r"regconsist\.lambd.*method regconsist is not in learner\.objectives"):
            learner.declare_settings(node, params)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
