"""`regconsist up` checks --set names against ros.node_settings: the same names the real nodes declare."""
import pytest

from regconsist_ros.config import setting_names
from regconsist_ros.models.methods import methods
from regconsist_ros.ros.node_settings import ALWAYS, check_params, node_schema


@pytest.fixture(scope="module")
def declared(tmp_path_factory):
    """{node: declared parameter names} of real nodes (learner: declare_settings, as the node does, training
    every method)."""
    import rclpy
    from rclpy.parameter import Parameter

    from regconsist_ros.ros import params
    from regconsist_ros.ros.nodes import evaluator, learner, registration, sim_camera
    from regconsist_ros.ros.qos import QosConfig

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=178)
    out = {}
    try:
        watch = tmp_path_factory.mktemp("watch")
        for name, cls, overrides in (("sim_camera", sim_camera.make_node_class(),
                                      {"sim.frames": 3, "sim.width": 32, "sim.height": 24}),
                                     ("registration", registration.make_node_class(), {}),
                                     ("evaluator", evaluator.make_node_class(), {"watch_dir": str(watch)})):
            node = cls(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
            out[name] = set(node._parameters)
            if hasattr(node, "shutdown"):
                node.shutdown()
            node.destroy_node()
        node = rclpy.create_node("settings_test", context=ctx,
                                 parameter_overrides=[Parameter("learner.objectives", value=sorted(methods()))])
        params.declare(node, learner.LearnerNodeConfig)
        params.declare(node, QosConfig, "qos")
        learner.declare_settings(node, params)
        out["learner"] = set(node._parameters)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
    return out


@pytest.mark.parametrize("node", ["sim_camera", "registration", "evaluator", "learner"])
def test_node_schema_names_are_the_declared_parameters(declared, node):
    schema = node_schema(node, {"learner.objectives": sorted(methods())})
    assert set(setting_names(schema)) | set(ALWAYS) == declared[node] | set(ALWAYS)


def test_check_params_names_the_set_item_and_the_valid_names():
    from regconsist_ros.config import ConfigError
    from regconsist_ros.up import load_graph

    g = load_graph("robot", overrides=["learner.nonexistent=1"])
    with pytest.raises(ConfigError, match=r"^--set learner\.nonexistent: .*valid names: .*shutdown_timeout.*rsp\.\*"):
        check_params(g, {"learner": {"nonexistent"}})
    for name in ("sim", "robot", "eval", "demo"):  # the shipped graphs pass
        check_params(load_graph(name))
