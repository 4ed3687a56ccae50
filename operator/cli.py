"""`modelapp`: the operator's command line.

Subcommands register themselves from the module that implements them (`add_parser(sub)` and a
`main(args) -> int`), so this file only wires them together:
`render`/`run` (`modelapp_operator.commands`), `cluster` (`modelapp_operator.cluster.cli`),
`bump` (`modelapp_operator.bump`) and `rollback` (`modelapp_operator.rollback`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that contribute subcommands; each has add_parsers(subparsers) and sets `func` on its parsers.
_COMMAND_MODULES = (
    "modelapp_operator.commands",
    "modelapp_operator.cluster.cli",
    "modelapp_operator.bump",
    "modelapp_operator.rollback",
)


# Which subcommand each module provides, for the message when its dependencies are missing.
_COMMAND_NAMES = {
    "modelapp_operator.commands": ("render", "run"),
    "modelapp_operator.cluster.cli": ("cluster",),
    "modelapp_operator.bump": ("bump",),
    "modelapp_operator.rollback": ("rollback",),
}


def _add_unavailable(sub: argparse._SubParsersAction[argparse.ArgumentParser], module: str, missing: str) -> None:
    message = f"needs the Python package {missing!r}, which is not installed (pip install 'modelapp[dev]')"

    def unavailable(_: argparse.Namespace) -> int:
        print(f"modelapp: this command {message}", file=sys.stderr)
        return 1

    for command in _COMMAND_NAMES.get(module, ()):
        parser = sub.add_parser(command, help=f"(unavailable: {message})", add_help=False)
        parser.add_argument("rest", nargs=argparse.REMAINDER)
        parser.set_defaults(func=unavailable)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelapp", description="The ModelApp operator and its tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if missing == name:  # that part is not in this build
                continue
            if missing.split(".")[0] in {"modelapp_operator", "modelapp_serving"}:
                raise  # our own code is broken: say so, loudly
            # An optional dependency of that part is not installed (e.g. the operator image has no
            # `cryptography`, which only `modelapp cluster` needs): leave a parser that says so.
            _add_unavailable(sub, name, missing)
            continue
        module.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
