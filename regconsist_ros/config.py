"""Config dataclasses as the single source of truth for CLI flags, YAML files and ROS parameters.

A component declares one dataclass (defaults, types, ``field(metadata={"help": ...})``, checks in
``__post_init__``). A command or node names its groups in a *schema*, ``[(prefix, dataclass)]``,
and every setting gets one dotted name, ``prefix.field``: the flag ``--prefix.field``, the ROS
parameter ``prefix.field`` (:mod:`regconsist_ros.ros.params`) and the YAML key ``prefix: {field:}``.
This module turns schemas into argparse flags and back, reads YAML settings, and builds the
dataclasses with every value checked (:func:`build`, :func:`build_groups`).
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml


class ConfigError(ValueError):
    """A configuration value or file that cannot be used."""


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base_type(tp):
    """(python type, is_optional, literal choices or None, tuple element type or None)."""
    optional = False
    origin = get_origin(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in get_args(tp) if a is not type(None)]
        optional = len(args) != len(get_args(tp))
        tp = args[0] if len(args) == 1 else str
        origin = get_origin(tp)
    if origin is typing.Literal:
        choices = get_args(tp)
        return type(choices[0]), optional, choices, None
    if origin is tuple:
        args = [a for a in get_args(tp) if a is not Ellipsis]
        return tuple, optional, None, args[0] if args else str
    return tp, optional, None, None


def build(cls, values: dict):
    """``cls(**values)`` with unknown keys rejected and type errors turned into ConfigError."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown option(s) {unknown}; known: {sorted(names)}")
    hints = _hints(cls)
    clean = {}
    for k, v in values.items():
        tp, optional, choices, elem = _base_type(hints[k])
        if v is None and optional:
            clean[k] = None
            continue
        try:
            v = _coerce(v, tp, elem)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{cls.__name__}.{k}: {e}") from None
        if choices is not None and v not in choices:
            raise ConfigError(f"{cls.__name__}.{k}: {v!r} is not one of {list(choices)}")
        clean[k] = v
    try:
        return cls(**clean)
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None


def _coerce(v, tp, elem):
    """Check (and losslessly convert) one value against a field type; raise TypeError naming both."""
    if tp is tuple:
        if not isinstance(v, (list, tuple)):
            raise TypeError(f"expected a list, got {v!r}")
        return tuple(_coerce(x, elem, None) for x in v) if elem in (int, float, str, bool) else tuple(v)
    if tp is bool:
        if not isinstance(v, bool):
            raise TypeError(f"expected true/false, got {v!r}")
        return v
    if tp is int:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
            raise TypeError(f"expected an integer, got {v!r}")
        return int(v)
    if tp is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"expected a number, got {v!r}")
        return float(v)
    if tp is str:
        if isinstance(v, Path):
            return str(v)
        if not isinstance(v, str):
            raise TypeError(f"expected a string, got {v!r}")
        return v
    return v


def to_dict(cfg) -> dict:
    """Plain dict (tuples as lists) for YAML/JSON."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


# ---- settings trees: groups of config dataclasses under dotted names -------------------------------------
# A *schema* lists the groups of one command or node: ``[(prefix, config class), ...]``; the setting
# ``field`` of the group ``prefix`` is called ``prefix.field`` everywhere: ``--prefix.field`` on the
# command line, the ROS parameter ``prefix.field``, and the YAML key ``prefix: {field: ...}`` (or
# ``prefix.field:``). The empty prefix is the command's (node's) own group: plain ``field``.

def dotted(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def setting_names(schema) -> dict[str, tuple[str, str]]:
    """Every setting of a schema: dotted name -> (group prefix, field name)."""
    out = {}
    for prefix, cls in schema:
        for f in dataclasses.fields(cls):
            if f.init:
                out[dotted(prefix, f.name)] = (prefix, f.name)
    return out


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings (YAML) -> ``{dotted name: value}``; keys that already hold dots stay as they are."""
    if not isinstance(tree, dict):
        raise ConfigError(f"{prefix or 'settings'}: expected a mapping, got {type(tree).__name__}")
    out = {}
    for k, v in tree.items():
        name = dotted(prefix, str(k))
        if isinstance(v, dict):
            out.update(flatten(v, name))
        else:
            out[name] = v
    return out


def nest(values: dict[str, Any]) -> dict:
    """``{dotted name: value}`` -> nested mappings (for YAML and run.json)."""
    out: dict = {}
    for name, v in values.items():
        d = out
        *parents, leaf = name.split(".")
        for p in parents:
            d = d.setdefault(p, {})
        d[leaf] = list(v) if isinstance(v, tuple) else v
    return out


def group_values(cfg, prefix: str = "") -> dict[str, Any]:
    """``{dotted name: value}`` of one config instance (tuples kept)."""
    return {dotted(prefix, f.name): getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.init}


def unknown_setting(name: str, known, where: str, hint=None) -> ConfigError:
    """The error for a setting that ``where`` does not take, with a hint (``hint(name)``, e.g. "a
    setting of method X") or the closest known names."""
    import difflib

    why = hint(name) if hint is not None else None
    if why is None:
        close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
        why = f"did you mean {', '.join(close)}?" if close else None
    scope, names = valid_names(name, known)
    listed = f"valid names{' in ' + scope if scope else ''}: {', '.join(names)}"
    return ConfigError(f"{name}: not a setting of {where} ({why}; {listed})" if why else
                       f"{name}: not a setting of {where}; {listed}")


_MAX_NAMES = 40


def valid_names(name: str, known) -> tuple[str, list[str]]:
    """(scope, names) for an error about the unknown setting ``name``: the settings of the deepest group
    of ``known`` (dotted names) that ``name`` falls in (scope ``group.*``, names relative to it), sub-groups
    as ``sub.*``; at the top level (scope "") every root setting and group."""
    known = sorted(known)
    parts = name.split(".")
    prefix = ""
    for i in range(len(parts) - 1, 0, -1):
        p = ".".join(parts[:i])
        if any(k.startswith(p + ".") for k in known):
            prefix = p
            break
    under = [k[len(prefix) + 1:] if prefix else k for k in known if not prefix or k.startswith(prefix + ".")]
    names = sorted({u.split(".", 1)[0] + (".*" if "." in u else "") for u in under},
                   key=lambda n: (n.endswith(".*"), n))
    if len(names) > _MAX_NAMES:
        names = names[:_MAX_NAMES] + [f"... (+{len(names) - _MAX_NAMES} more)"]
    return (f"{prefix}.*" if prefix else ""), names


def build_groups(schema, values: dict[str, Any], base: dict[str, Any] | None = None, where: str = "this command",
                 hint=None) -> dict[str, Any]:
    """One config instance per group of ``schema`` from ``{dotted name: value}`` over ``base``
    (``{prefix: instance}``; missing groups start from their dataclass defaults). A name the schema
    does not have raises ConfigError naming it (and ``hint(name)`` when given)."""
    names = setting_names(schema)
    per: dict[str, dict] = {p: {} for p, _ in schema}
    for name, v in values.items():
        if name not in names:
            raise unknown_setting(name, names, where, hint)
        prefix, f = names[name]
        per[prefix][f] = tuple(v) if isinstance(v, list) else v
    out = {}
    for prefix, cls in schema:
        start = dataclasses.asdict(base[prefix]) if base and prefix in base else {}
        start = {k: v for k, v in start.items() if k in {f.name for f in dataclasses.fields(cls) if f.init}}
        try:
            out[prefix] = build(cls, {**start, **per[prefix]})
        except ConfigError as e:
            raise ConfigError(f"{prefix or where}: {e}") from None
    return out


_METAVAR = {int: "N", float: "X", str: "S"}


def parse_bool(text: str) -> bool:
    t = str(text).strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_schema_arguments(parser: argparse.ArgumentParser, schema, base: dict[str, Any] | None = None,
                         titles: dict[str, str] | None = None) -> None:
    """One flag ``--prefix.field`` per setting (dest = the dotted name, default None: not given), in one
    argument group per config group; the help shows the default of ``base`` (or of the dataclass)."""
    for prefix, cls in schema:
        hints = _hints(cls)
        inst = base.get(prefix) if base else None
        title = (titles or {}).get(prefix) or (f"{prefix}.* ({cls.__name__})" if prefix else cls.__name__)
        group = parser.add_argument_group(title, (cls.__doc__ or "").strip().split("\n\n")[0] or None)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            tp, optional, choices, elem = _base_type(hints[f.name])
            default = getattr(inst, f.name) if inst is not None else (
                f.default if f.default is not dataclasses.MISSING else
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            shown = list(default) if isinstance(default, tuple) else default
            help_ = f"{f.metadata.get('help', '')} (default: {shown})".strip()
            name = dotted(prefix, f.name)
            if tp is bool:
                group.add_argument(f"--{name}", nargs="?", const=True, type=parse_bool, default=None, dest=name,
                                   metavar="true|false", help=help_)
            elif tp is tuple:
                group.add_argument(f"--{name}", nargs="+", type=elem if elem in (int, float, str) else str, default=None,
                                   dest=name, metavar=_METAVAR.get(elem, "V"), help=help_)
            else:
                group.add_argument(f"--{name}", type=tp if tp in (int, float, str) else str, choices=choices,
                                   default=None, dest=name, help=help_,
                                   metavar=None if choices else _METAVAR.get(tp, "V"))


def given_values(ns: argparse.Namespace, schema) -> dict[str, Any]:
    """``{dotted name: value}`` of the schema's flags given on the command line."""
    out = {}
    for name in setting_names(schema):
        v = getattr(ns, name, None)
        if v is not None:
            out[name] = tuple(v) if isinstance(v, list) else v
    return out


def yaml_error(e: yaml.YAMLError, where: str) -> str:
    """One line for a YAML error: ``where:LINE:COL: invalid YAML: problem (context)`` (no caret lines)."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    pos = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context = getattr(e, "context", None)
    return f"{where}{pos}: invalid YAML: {problem}" + (f" ({context})" if context else "")


def yaml_value(text: str, where: str) -> Any:
    """One YAML value from the command line (``--set key=VALUE``); ConfigError in one line if it is not one."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(yaml_error(e, where).replace(": invalid YAML:", ": not a YAML value:", 1)) from None


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """A YAML file's content (None for an empty file); ConfigError (one line) for a missing, unreadable
    or invalid file."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory, not a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not a text (UTF-8) file") from None
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(yaml_error(e, str(path))) from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None


def yaml_values(path: str | Path) -> dict[str, Any]:
    """``{dotted name: value}`` of a YAML settings file (nested groups or dotted keys)."""
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return flatten(data)


def config_dir() -> Path:
    """The project's ``config/`` folder: the checkout's (source, editable install), else the one a wheel
    or colcon build installs as ``share/regconsist_ros/config``."""
    import sys

    here = Path(__file__).resolve().parents[1] / "config"
    if here.is_dir():
        return here
    return Path(sys.prefix) / "share" / "regconsist_ros" / "config"
