"""Config dataclasses as the single source of truth for CLI flags, YAML files and ROS parameters.

A component declares one dataclass (defaults, types, ``field(metadata={"help": ...})``, checks in
``__post_init__``). This module turns it into argparse flags and back, and loads/saves YAML
sections; ``regconsist_ros.ros.params`` maps the same fields onto ROS parameters.
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


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, cls, prefix: str = "", skip: tuple[str, ...] = ()) -> None:
    """Add one flag per field of dataclass ``cls`` (defaults left as None so explicit flags can be told apart)."""
    hints = _hints(cls)
    group = parser.add_argument_group(cls.__name__)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        tp, optional, choices, elem = _base_type(hints[f.name])
        help_ = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        help_ = f"{help_} (default: {default})".strip()
        name = flag(prefix + f.name)
        if tp is bool:
            group.add_argument(name, action=argparse.BooleanOptionalAction, default=None, help=help_, dest=prefix + f.name)
        elif tp is tuple:
            group.add_argument(name, nargs="+", type=elem, default=None, help=help_, dest=prefix + f.name)
        else:
            group.add_argument(name, type=tp if tp in (int, float, str) else str, choices=choices, default=None,
                               help=help_, dest=prefix + f.name)


def from_args(cls, ns: argparse.Namespace, prefix: str = "", base: Any = None, **overrides):
    """Build ``cls`` from parsed flags; unspecified flags keep ``base``'s (or the default) values."""
    values = dataclasses.asdict(base) if base is not None else {}
    for f in dataclasses.fields(cls):
        v = getattr(ns, prefix + f.name, None)
        if v is not None:
            values[f.name] = tuple(v) if isinstance(v, list) else v
    values.update(overrides)
    return build(cls, values)


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


def load_yaml(cls, path: str | Path, section: str | None = None):
    """Read ``cls`` from a YAML file (optionally one top-level section of it)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if section is not None:
        if not isinstance(data, dict) or section not in data:
            raise ConfigError(f"{path}: no section {section!r}")
        data = data[section] or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options, got {type(data).__name__}")
    return build(cls, data)


def to_dict(cfg) -> dict:
    """Plain dict (tuples as lists) for YAML/JSON."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
