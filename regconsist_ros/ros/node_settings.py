"""The parameters each node takes, without starting ROS: so that `regconsist up` rejects an unknown
``--set NODE.PARAM`` (or a graph file's unknown parameter) before any process starts, listing the valid
names, and a value its settings class refuses (a type, a range: the checks the node would make at
start-up) with that class's message. The groups are the ones the node files declare (tests/ros/test_node_settings.py compares them
with the parameters of real nodes).
"""
from __future__ import annotations

from regconsist_ros.config import ConfigError, build_groups, setting_names, unknown_setting

ALWAYS = ("use_sim_time", "start_type_description_service")  # rclpy declares these on every node


def node_schema(node: str, params: dict) -> list[tuple[str, type]]:
    """``[(prefix, config class)]`` of node ``node`` run with parameter values ``params``."""
    if node == "learner":
        from regconsist_ros.ros.nodes.learner import settings_schema

        return settings_schema(params)
    if node == "evaluator":
        from regconsist_ros.ros.nodes.evaluator import EvaluatorConfig

        return [("", EvaluatorConfig)]
    if node == "registration":
        from regconsist_ros.ros.nodes.registration import PARAMS

        return [(prefix, cls) for cls, prefix in PARAMS]
    if node == "sim_camera":
        from regconsist_ros.ros.nodes.sim_camera import CameraSourceConfig, QosConfig, SimConfig

        return [("", CameraSourceConfig), ("sim", SimConfig), ("qos", QosConfig)]
    if node == "viewer":
        from regconsist_ros.ros.nodes.viewer import PARAMS as VIEWER

        return [(prefix, cls) for cls, prefix in VIEWER]
    raise ConfigError(f"unknown node {node!r}")


def check_params(graph: dict, given: dict[str, set[str]] | None = None) -> None:
    """ConfigError for the first parameter of ``graph`` (``up.load_graph``) that its node does not take;
    ``given`` = ``{node: names from --set}`` (named as such in the message, the others as the file's)."""
    from regconsist_ros.models.methods import methods

    given = given or {}
    for node, spec in graph["nodes"].items():
        params = spec["params"]
        try:
            names = set(setting_names(node_schema(node, params))) | set(ALWAYS)
        except (ConfigError, KeyError, ValueError) as e:  # e.g. an unknown method in learner.objectives
            raise ConfigError(f"{node}: {e}") from None
        objectives = params.get("learner.objectives") if node == "learner" else None

        def hint(name: str):
            head = name.split(".", 1)[0]
            if objectives is not None and head in methods() and head not in objectives:
                return f"method {head} is not in learner.objectives {list(objectives)}"
            return None

        for name in params:
            if name in names:
                continue
            err = unknown_setting(name, names - set(ALWAYS), f"the {node} node", hint if node == "learner" else None)
            where = f"--set {node}.{name}" if name in given.get(node, ()) else f"{graph['file']}: graph {graph['name']!r}, node {node}"
            raise ConfigError(f"{where}: {err}")
        _check_values(node, params, graph, given)


def _node_base(node: str, params: dict) -> dict:
    """``{prefix: instance}``: the defaults a node starts from where they are not the dataclasses' (the
    learner's online recipe of each method)."""
    if node != "learner":
        return {}
    from regconsist_ros.online.learner import LearnerConfig, online_recipe

    cfg = build_groups([("learner", LearnerConfig)], {k: v for k, v in params.items() if k.startswith("learner.")})["learner"]
    out = {}
    for m in cfg.objectives:
        out.update(online_recipe(m, cfg).groups())
    return out


def _check_values(node: str, params: dict, graph: dict, given: dict) -> None:
    """Build the node's settings from ``params`` as the node will: a value it refuses is a ConfigError
    naming where it was given (the ``--set``, tried one at a time over the file's values, or the graph file)."""
    def refused(values: dict) -> ConfigError | None:
        try:
            build_groups(node_schema(node, values), values, _node_base(node, values), where=f"the {node} node")
        except (ConfigError, KeyError, ValueError) as e:
            return e if isinstance(e, ConfigError) else ConfigError(str(e))
        return None

    values = {k: v for k, v in params.items() if k not in ALWAYS}
    err = refused(values)
    if err is None:
        return
    mine = set(given.get(node, ())) & set(values)
    for name in sorted(mine):
        if refused({k: v for k, v in values.items() if k not in mine or k == name}) is not None:
            raise ConfigError(f"--set {node}.{name}: {err}")
    raise ConfigError(f"{graph['file']}: graph {graph['name']!r}, node {node}: {err}")
