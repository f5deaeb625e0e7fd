"""ROS parameters from the same config dataclasses as the CLI flags and YAML (one source of truth).

``declare(node, cls, prefix)`` declares one parameter per dataclass field (``prefix.field``, the
field's default and help text as description); ``read(node, cls, prefix)`` builds the dataclass
back from the parameter values with the same checks as the CLI (:func:`regconsist_ros.config.build`).
Tuples become arrays; ``None`` defaults become empty strings.
"""
from __future__ import annotations

import dataclasses

from regconsist_ros.config import _base_type, _hints, build


def _ros_default(value):
    if isinstance(value, tuple):
        return list(value)
    if value is None:
        return ""
    return value


def _array_type(elem):
    from rclpy.parameter import Parameter

    return {float: Parameter.Type.DOUBLE_ARRAY, int: Parameter.Type.INTEGER_ARRAY, bool: Parameter.Type.BOOL_ARRAY}.get(
        elem, Parameter.Type.STRING_ARRAY)


def declare(node, cls, prefix: str = "", skip: tuple[str, ...] = (), defaults=None) -> None:
    """Declare ``prefix.<field>`` parameters on an rclpy node for every field of dataclass ``cls``.

    ``defaults`` (an instance of ``cls``) replaces the dataclass defaults, e.g. a node's CPU-sized model.
    Empty tuples are declared by type (an empty list has no ROS type) and read back as empty."""
    from rcl_interfaces.msg import ParameterDescriptor

    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        if defaults is not None:
            default = getattr(defaults, f.name)
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        name = f"{prefix}.{f.name}" if prefix else f.name
        help_ = f.metadata.get("help", "")
        tp, _, _, elem = _base_type(hints[f.name])
        if tp is tuple and len(default) == 0:
            node.declare_parameter(name, _array_type(elem), ParameterDescriptor(description=help_))
        else:
            # dynamic typing: `-p lr:=1` (an integer) is fine for a float field; read() checks every value's type
            node.declare_parameter(name, _ros_default(default), ParameterDescriptor(description=help_, dynamic_typing=True))


def read(node, cls, prefix: str = "", skip: tuple[str, ...] = (), **overrides):
    """The dataclass from the node's parameters (raises ConfigError naming a bad value)."""
    from rclpy.exceptions import ParameterUninitializedException

    hints = _hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        name = f"{prefix}.{f.name}" if prefix else f.name
        tp, optional, _, elem = _base_type(hints[f.name])
        try:
            v = node.get_parameter(name).value
        except ParameterUninitializedException:
            v = ()  # an empty tuple declared by type only
        if optional and v == "":
            v = None
        elif tp is tuple and v is not None:
            v = tuple(v)
        elif tp is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        values[f.name] = v
    values.update(overrides)
    return build(cls, values)


def yaml_params(cls, values: dict, prefix: str = "") -> dict:
    """``{prefix.field: value}`` for a launch description / params file from a config section."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {(f"{prefix}.{k}" if prefix else k): _ros_default(v) for k, v in values.items() if k in names}


def declare_groups(node, schema, base: dict | None = None) -> None:
    """Declare every group of a settings schema (``[(prefix, config class)]``; the defaults of ``base``,
    ``{prefix: instance}``, where given)."""
    for prefix, cls in schema:
        declare(node, cls, prefix, defaults=(base or {}).get(prefix))


def read_groups(node, schema) -> dict:
    """``{prefix: config instance}`` of a declared schema (ConfigError naming a bad value)."""
    from regconsist_ros.config import ConfigError

    out = {}
    for prefix, cls in schema:
        try:
            out[prefix] = read(node, cls, prefix)
        except ConfigError as e:
            raise ConfigError(f"{prefix or node.get_name()}: {e}") from None
    return out


def reject_undeclared(node, where: str, hint=None) -> None:
    """ConfigError for a parameter given to the node (command line, params file, launch) that the node
    does not have, e.g. a setting of a method the learner does not train: never silently ignored."""
    from regconsist_ros.config import unknown_setting

    given = sorted(getattr(node, "_parameter_overrides", {}))
    bad = [n for n in given if not node.has_parameter(n) and n != "use_sim_time"]
    if bad:
        known = [p for p in node._parameters]  # noqa: SLF001 (rclpy keeps declared parameters here)
        raise unknown_setting(bad[0], known, where, hint)
