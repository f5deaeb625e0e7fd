"""Config dataclasses <-> argparse flags, YAML files and plain dicts (regconsist_ros.config)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from regconsist_ros.config import ConfigError, add_arguments, build, from_args, load_yaml, to_dict


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


def parser_for(cls=Toy, **kw) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toy", exit_on_error=False)
    add_arguments(p, cls, **kw)
    return p


def parse(argv, **kw) -> Toy:
    p = parser_for(**kw)
    return from_args(Toy, p.parse_args(argv), prefix=kw.get("prefix", ""))


# ---- add_arguments / from_args --------------------------------------------------------------------
def test_flags_use_dashes_and_help_shows_defaults():
    p = parser_for()
    opts = {s for a in p._actions for s in a.option_strings}
    assert {"--count", "--rate-hz", "--enabled", "--no-enabled", "--name", "--mode", "--sizes", "--label"} <= opts
    assert "--rate_hz" not in opts
    text = p.format_help()
    assert "how many (default: 3)" in text


def test_unspecified_flags_keep_dataclass_defaults():
    assert parse([]) == Toy()


def test_given_flags_are_applied_with_their_types():
    cfg = parse(["--count", "7", "--rate-hz", "0.5", "--no-enabled", "--name", "bob", "--mode", "slow",
                 "--sizes", "4", "5", "6", "--label", "x"])
    assert cfg == Toy(count=7, rate_hz=0.5, enabled=False, name="bob", mode="slow", sizes=(4, 5, 6), label="x")
    assert isinstance(cfg.count, int) and isinstance(cfg.rate_hz, float)
    assert isinstance(cfg.sizes, tuple) and all(isinstance(s, int) for s in cfg.sizes)
    assert parse(["--enabled"]).enabled is True


def test_bool_flag_pair_overrides_a_false_base():
    p = parser_for()
    base = Toy(enabled=False, count=9)
    assert from_args(Toy, p.parse_args([]), base=base) == base
    assert from_args(Toy, p.parse_args(["--enabled"]), base=base) == Toy(enabled=True, count=9)


def test_literal_becomes_choices():
    p = parser_for()
    (mode,) = [a for a in p._actions if "--mode" in a.option_strings]
    assert tuple(mode.choices) == ("fast", "slow")
    with pytest.raises((SystemExit, argparse.ArgumentError)):
        p.parse_args(["--mode", "medium"])


def test_int_flag_rejects_non_integer_text():
    with pytest.raises((SystemExit, argparse.ArgumentError)):
        parser_for().parse_args(["--count", "2.5"])


def test_prefix_and_skip():
    p = parser_for(prefix="toy_", skip=("name",))
    opts = {s for a in p._actions for s in a.option_strings}
    assert "--toy-count" in opts and "--toy-name" not in opts and "--count" not in opts
    cfg = from_args(Toy, p.parse_args(["--toy-count", "4"]), prefix="toy_")
    assert cfg.count == 4 and cfg.name == "toy"


def test_from_args_overrides_win_and_are_validated():
    ns = parser_for().parse_args(["--count", "7"])
    assert from_args(Toy, ns, count=1).count == 1
    with pytest.raises(ConfigError, match="count"):
        from_args(Toy, ns, count=-1)


def test_post_init_error_from_flags_is_config_error():
    with pytest.raises(ConfigError, match=r"Toy\.count must be >= 0"):
        parse(["--count", "-3"])


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
def test_load_yaml_section_and_whole_file(tmp_path):
    f = tmp_path / "cfg.yaml"
    f.write_text("toy:\n  count: 11\n  mode: slow\n  sizes: [3, 4]\nother:\n  x: 1\n")
    cfg = load_yaml(Toy, f, section="toy")
    assert cfg == Toy(count=11, mode="slow", sizes=(3, 4))
    whole = tmp_path / "whole.yaml"
    whole.write_text("name: fromfile\nenabled: false\n")
    assert load_yaml(Toy, whole) == Toy(name="fromfile", enabled=False)


def test_load_yaml_empty_file_and_empty_section_give_defaults(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    assert load_yaml(Toy, tmp_path / "empty.yaml") == Toy()
    (tmp_path / "sec.yaml").write_text("toy:\n")
    assert load_yaml(Toy, tmp_path / "sec.yaml", section="toy") == Toy()


def test_load_yaml_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(Toy, tmp_path / "nope.yaml")


def test_load_yaml_invalid_yaml(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("toy: [1, 2\n  count: : :\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_yaml(Toy, f)


def test_load_yaml_missing_section(tmp_path):
    f = tmp_path / "cfg.yaml"
    f.write_text("other:\n  count: 1\n")
    with pytest.raises(ConfigError, match="no section 'toy'"):
        load_yaml(Toy, f, section="toy")


def test_load_yaml_non_mapping(tmp_path):
    f = tmp_path / "list.yaml"
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_yaml(Toy, f)
    g = tmp_path / "sec.yaml"
    g.write_text("toy: 5\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_yaml(Toy, g, section="toy")


def test_load_yaml_unknown_key_and_bad_value_name_the_key(tmp_path):
    f = tmp_path / "cfg.yaml"
    f.write_text("toy:\n  cuont: 3\n")
    with pytest.raises(ConfigError, match="cuont"):
        load_yaml(Toy, f, section="toy")
    f.write_text("toy:\n  enabled: maybe\n")
    with pytest.raises(ConfigError, match=r"Toy\.enabled"):
        load_yaml(Toy, f, section="toy")


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
    assert load_yaml(Toy, f, section="toy") == cfg


# build() checks every value against its field type and names the key when it does not fit.
@pytest.mark.parametrize("key,value", [("rate_hz", "fast"), ("name", 5), ("count", 2.5), ("count", "3"),
                                       ("mode", "medium"), ("sizes", "12")])
def test_build_rejects_wrong_scalar_types_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"Toy\.{key}"):
        build(Toy, {key: value})
