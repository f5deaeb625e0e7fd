"""Pieces every subcommand uses: output flags, settings from flags and YAML, encoders from --ckpt."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from regconsist_ros.config import ConfigError, add_schema_arguments, build_groups, given_values, yaml_values


def emit(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, sort_keys=True))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")


def output_flags(p: argparse.ArgumentParser, quiet: bool = True) -> None:
    """``--json`` (and ``--quiet``)."""
    if quiet:
        p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def config_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None,
                   help="YAML file of settings (nested groups or dotted keys, the names of the flags); flags override it")


def settings(a: argparse.Namespace, schema, base: dict | None = None, where: str = "this command", hint=None,
             own_sections: bool = False) -> dict:
    """``{group: config}`` of ``schema`` from ``--config`` (when the command has it) and the flags given.

    Every setting in the YAML file must belong to ``schema``, unless ``own_sections``: then only the
    file's sections named like the schema's groups are read (a file shared by several commands, such
    as config/sim.yaml with its ``sim`` and ``demo`` sections)."""
    values = yaml_values(a.config) if getattr(a, "config", None) else {}
    if own_sections:
        roots = {p.split(".")[0] for p, _ in schema if p}
        values = {k: v for k, v in values.items() if k.split(".")[0] in roots}
    values.update(given_values(a, schema))
    return build_groups(schema, values, base, where=where, hint=hint)


def size_arg(a) -> tuple[int, int] | str | None:
    """``--size``: None (the encoder's training size) -> "model"; 0 0 -> None (the frames' own size)."""
    if a.size is None:
        return "model"
    if a.size == [0, 0]:
        return None
    return tuple(a.size)


def encoder_flags(q: argparse.ArgumentParser, kind_cls) -> None:
    """--ckpt (or 'random' / 'pixels' / 'colour', built from --encoder.*), --size, --seed, output flags."""
    q.add_argument("--ckpt", required=True, help="checkpoint directory, run directory (latest checkpoint), 'random', or a "
                   "floor that learns nothing: 'pixels' or 'colour' (on the grid of --encoder.*)")
    q.add_argument("--size", nargs=2, type=int, default=None, metavar=("H", "W"),
                   help="input size for the encoder (default: its training size; 0 0 = the frames' own size)")
    q.add_argument("--seed", type=int, default=0, help="seed of a random encoder")
    output_flags(q)
    add_schema_arguments(q, [("encoder", kind_cls)])


def encoder_from(a: argparse.Namespace, kind: str, kind_cls, spec: str | None = None, flag: str = "--ckpt",
                 seed: int | None = None):
    """CKPT|RUN|random (``--ckpt`` by default): a checkpoint of any kind, or a random encoder of ``kind``
    built from --encoder.* -> (model, description)."""
    from regconsist_ros.models.checkpoint import CheckpointError
    from regconsist_ros.models.encoder import load_encoder

    spec = a.ckpt if spec is None else spec
    cfg = settings(a, [("encoder", kind_cls)])["encoder"]
    try:
        return load_encoder(spec, kind=kind, config=cfg, seed=a.seed if seed is None else seed)
    except (FileNotFoundError, CheckpointError) as e:
        raise ConfigError(f"{flag} {spec}: {e}") from None
