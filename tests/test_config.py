"""Config dataclasses <-> argparse flags, YAML files and plain dicts (regconsist_ros.config)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from regconsist_ros.config import (ConfigError, add_schema_arguments, build, build_groups, flatten, given_values, nest,
                                   to_dict, yaml_values)


@dataclass
class Toy:
    """Every field kind the config layer supports."""

    count: int = field(default=3, metadata={"help": "how many"})
    rate_hz: float = 2.5
    enabled: bool = True
    name: str = "toy"
    mode: Literal["fast", "slow"] = "fast"
    sizes: tuple[int, ...] = (1, 2)
    label: Optional[str] = None

    def __post_init__(self):
        if self.count < 0:
            raise ValueError(f"Toy.count must be >= 0, got {self.count}")


SCHEMA = [("toy", Toy)]


def parser_for(schema=SCHEMA, base=None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toy", exit_on_error=False, allow_abbrev=False)
    add_schema_arguments(p, schema, base)
    return p


def parse(argv, schema=SCHEMA, base=None) -> Toy:
    ns = parser_for(schema, base).parse_args(argv)
    prefix = schema[0][0]
    return build_groups(schema, given_values(ns, schema), base)[prefix]


# ---- flags of a settings tree ---------------------------------------------------------------------
def test_flags_are_the_dotted_names_and_help_shows_defaults():
    p = parser_for()
    opts = {s for a in p._actions for s in a.option_strings}
    assert {"--toy.count", "--toy.rate_hz", "--toy.enabled", "--toy.name", "--toy.mode", "--toy.sizes", "--toy.label"} <= opts
    assert "--count" not in opts and "--toy.rate-hz" not in opts
    assert "how many (default: 3)" in p.format_help()
    base = {"toy": Toy(count=9)}
    assert "how many (default: 9)" in parser_for(base=base).format_help()  # a recipe's default, shown


def test_unspecified_flags_keep_dataclass_defaults():
    assert parse([]) == Toy()


def test_given_flags_are_applied_with_their_types():
    cfg = parse(["--toy.count", "7", "--toy.rate_hz", "0.5", "--toy.enabled", "false", "--toy.name", "bob",
                 "--toy.mode", "slow", "--toy.sizes", "4", "5", "6", "--toy.label", "x"])
    assert cfg == Toy(count=7, rate_hz=0.5, enabled=False, name="bob", mode="slow", sizes=(4, 5, 6), label="x")
    assert isinstance(cfg.count, int) and isinstance(cfg.rate_hz, float)
    assert isinstance(cfg.sizes, tuple) and all(isinstance(s, int) for s in cfg.sizes)
    assert parse(["--toy.enabled"]).enabled is True


def test_bool_flag_overrides_a_false_base():
    base = {"toy": Toy(enabled=False, count=9)}
    assert parse([], base=base) == base["toy"]
    assert parse(["--toy.enabled"], base=base) == Toy(enabled=True, count=9)
    with pytest.raises((SystemExit, argparse.ArgumentError)):
        parser_for().parse_args(["--toy.enabled", "maybe"])


def test_literal_becomes_choices():
    p = parser_for()
    (mode,) = [a for a in p._actions if "--toy.mode" in a.option_strings]
    assert tuple(mode.choices) == ("fast", "slow")
    with pytest.raises((SystemExit, argparse.ArgumentError)):
        p.parse_args(["--toy.mode", "medium"])


def test_int_flag_rejects_non_integer_text():
    with pytest.raises((SystemExit, argparse.ArgumentError)):
        parser_for().parse_args(["--toy.count", "2.5"])


def test_root_group_and_several_groups():
    schema = [("", Toy), ("other", Toy)]
    opts = {s for a in parser_for(schema)._actions for s in a.option_strings}
    assert "--count" in opts and "--other.count" in opts
    ns = parser_for(schema).parse_args(["--count", "4", "--other.name", "x"])
    g = build_groups(schema, given_values(ns, schema))
    assert g[""].count == 4 and g["other"] == Toy(name="x")


def test_build_groups_names_unknown_settings_with_a_hint_or_close_matches():
    with pytest.raises(ConfigError, match=r"toy\.cuont: not a setting of toy.*did you mean toy\.count"):
        build_groups(SCHEMA, {"toy.cuont": 3}, where="toy")
    with pytest.raises(ConfigError, match="a setting of method other"):
        build_groups(SCHEMA, {"other.x": 3}, where="toy", hint=lambda n: "a setting of method other")


def test_post_init_error_from_flags_is_config_error():
    with pytest.raises(ConfigError, match=r"Toy\.count must be >= 0"):
        parse(["--toy.count", "-3"])


# ---- build --------------------------------------------------------------------------------------
def test_build_converts_compatible_values():
    cfg = build(Toy, {"rate_hz": 3, "count": 4.0, "sizes": [7, 8.0], "label": None})
    assert cfg.rate_hz == 3.0 and isinstance(cfg.rate_hz, float)
    assert cfg.count == 4 and isinstance(cfg.count, int)
    assert cfg.sizes == (7, 8) and all(isinstance(x, int) for x in cfg.sizes)
    assert cfg.label is None
    # tuple elements are checked like scalars: a string is not silently parsed
    with pytest.raises(ConfigError, match=r"Toy\.sizes"):
        build(Toy, {"sizes": [7, "8"]})


def test_build_rejects_unknown_keys_naming_them():
    with pytest.raises(ConfigError, match="colour") as e:
        build(Toy, {"count": 1, "colour": "red"})
    assert "unknown" in str(e.value)
    assert "count" in str(e.value)  # the known options are listed


@pytest.mark.parametrize("key,value", [("enabled", "yes"), ("enabled", 1), ("sizes", ["a"])])
def test_build_rejects_wrong_types_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"Toy\.{key}"):
        build(Toy, {key: value})


def test_build_turns_post_init_value_error_into_config_error():
    with pytest.raises(ConfigError, match=r"count must be >= 0"):
        build(Toy, {"count": -1})
    assert issubclass(ConfigError, ValueError)


def test_build_rejects_none_for_non_optional_fields_or_keeps_optional():
    assert build(Toy, {"label": None}).label is None
    assert build(Toy, {"label": "a"}).label == "a"


# ---- YAML ---------------------------------------------------------------------------------------
def test_yaml_values_nested_groups_and_dotted_keys(tmp_path):
    f = tmp_path / "cfg.yaml"
    f.write_text("toy:\n  count: 11\n  mode: slow\n  sizes: [3, 4]\ntoy.name: dotted\n")
    values = yaml_values(f)
    assert values == {"toy.count": 11, "toy.mode": "slow", "toy.sizes": [3, 4], "toy.name": "dotted"}
    assert build_groups(SCHEMA, values)["toy"] == Toy(count=11, mode="slow", sizes=(3, 4), name="dotted")
    assert nest({"toy.count": 11, "toy.sizes": (3, 4)}) == {"toy": {"count": 11, "sizes": [3, 4]}}
    assert flatten(nest(values)) == values


def test_yaml_empty_file_gives_defaults(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    assert build_groups(SCHEMA, yaml_values(tmp_path / "empty.yaml"))["toy"] == Toy()


def test_yaml_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        yaml_values(tmp_path / "nope.yaml")


def test_yaml_invalid_yaml(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("toy: [1, 2\n  count: : :\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        yaml_values(f)


def test_yaml_non_mapping(tmp_path):
    f = tmp_path / "list.yaml"
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        yaml_values(f)


def test_yaml_unknown_key_and_bad_value_name_the_key(tmp_path):
    f = tmp_path / "cfg.yaml"
    f.write_text("toy:\n  cuont: 3\n")
    with pytest.raises(ConfigError, match="cuont"):
        build_groups(SCHEMA, yaml_values(f))
    f.write_text("toy:\n  enabled: maybe\n")
    with pytest.raises(ConfigError, match=r"Toy\.enabled"):
        build_groups(SCHEMA, yaml_values(f))


# ---- to_dict ------------------------------------------------------------------------------------
def test_to_dict_lists_tuples_and_round_trips_through_build(tmp_path):
    cfg = Toy(count=5, sizes=(9, 8), label="l")
    d = to_dict(cfg)
    assert d["sizes"] == [9, 8] and isinstance(d["sizes"], list)
    assert d["count"] == 5 and d["label"] == "l" and d["mode"] == "fast"
    assert build(Toy, d) == cfg
    import yaml

    f = tmp_path / "rt.yaml"
    f.write_text(yaml.safe_dump({"toy": d}))
    assert build_groups(SCHEMA, yaml_values(f))["toy"] == cfg


# build() checks every value against its field type and names the key when it does not fit.
@pytest.mark.parametrize("key,value", [("rate_hz", "fast"), ("name", 5), ("count", 2.5), ("count", "3"),
                                       ("mode", "medium"), ("sizes", "12")])
def test_build_rejects_wrong_scalar_types_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"Toy\.{key}"):
        build(Toy, {key: value})
