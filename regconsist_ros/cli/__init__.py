"""`regconsist`: one command, many subcommands. Thin: parse settings into config dataclasses, call the core.

Every setting has one dotted name: ``--group.field`` on the command line is the ROS parameter
``group.field`` and the YAML key ``group: {field: ...}``. Every measuring subcommand accepts
``--json`` and then prints one JSON object as its last line.
"""
from __future__ import annotations

import argparse
import logging
import sys

from regconsist_ros.cli.common import emit
from regconsist_ros.config import ConfigError

log = logging.getLogger("regconsist")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``regconsist CMD: error: ... (see 'regconsist CMD --help')``, exit 2
    (argparse's own prints the whole usage first). Subparsers are of this class too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from regconsist_ros.cli import convert, defaults, learn, readouts, runs, world

    p = Parser(prog="regconsist", description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="cmd", required=True)
    world.add_parsers(sub)
    convert.add_parsers(sub)
    runs.add_parsers(sub)
    learn.add_parsers(sub)
    readouts.add_parsers(sub)
    defaults.add_parsers(sub)
    for parser in _all_parsers(p):
        parser.allow_abbrev = False  # `--rsp.trainer.l` must not silently mean `--rsp.trainer.lr`
    return p


def _all_parsers(p: argparse.ArgumentParser):
    yield p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for q in action.choices.values():
                yield from _all_parsers(q)


def _unrecognised(a: argparse.Namespace, extras: list[str]) -> str:
    """One line for options the subcommand does not take (naming the method a setting belongs to)."""
    from regconsist_ros.models.methods import methods

    flags = [x for x in extras if x.startswith("--")]
    if not flags:
        return f"unrecognised arguments: {' '.join(extras)}"
    name = flags[0][2:].split("=", 1)[0]
    head = name.split(".", 1)[0]
    cmd = " ".join(x for x in (a.cmd, getattr(a, "method", None)) if x)
    method = getattr(a, "method", None)
    if method and head != method and head in methods():
        return f"--{name} is a setting of method {head}, not of {method} (see 'regconsist {cmd} --help')"
    return f"--{name} is not an option of 'regconsist {cmd}' (see 'regconsist {cmd} --help')"


def _one_line(e: BaseException) -> str:
    """An exception's message on one line (YAML and other multi-line messages joined)."""
    return " ".join(line.strip() for line in str(e).splitlines() if line.strip() and set(line.strip()) != {"^"})


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a, extras = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if extras:
        print(f"regconsist {a.cmd}: error: {_unrecognised(a, extras)}", file=sys.stderr)
        return 2
    try:
        result = a.fn(a)
    except (ConfigError, ValueError, FileNotFoundError, ImportError) as e:
        # bad input: one clear line, no traceback (use -v for one)
        if a.verbose:
            log.exception("failed")
        print(f"regconsist {a.cmd}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # a path that is a file where a directory belongs, a full disk, no permission ...
        if a.verbose:
            log.exception("failed")
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(f"regconsist {a.cmd}: error: {e.strerror or _one_line(e)}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"regconsist {a.cmd}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a bug: still one line (and the traceback with -v)
        if a.verbose:
            log.exception("failed")
        print(f"regconsist {a.cmd}: error: internal error: {type(e).__name__}: {_one_line(e)} "
              f"(run 'regconsist -v {a.cmd} ...' for the traceback)", file=sys.stderr)
        return 1
    code = result.pop("_exit", 0) if isinstance(result, dict) else 0
    emit(result, getattr(a, "json", False))
    return code


if __name__ == "__main__":
    sys.exit(main())
