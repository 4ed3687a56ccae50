"""`modelapp`: the operator's command line.

Subcommands register themselves from the module that implements them (`add_parser(sub)` and a
`main(args) -> int`), so this file only wires them together:
`render`/`run` (`modelapp_operator.commands`), `cluster` (`modelapp_operator.cluster.cli`),
`bump` and `rollback` (`modelapp_operator.bump`, when present).
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
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelapp", description="The ModelApp operator and its tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that part is not built yet; anything else is a real error
                continue
            raise
        module.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
