"""`modelapp`: the operator's command line.

Subcommands register themselves from the module that implements them (`add_parsers(sub)` sets
`func` on its parsers; a module whose optional dependency is missing leaves a parser that says
which), so this file only wires them together: `render`/`run`
(`modelapp_operator.commands`), `bump` (`modelapp_operator.bump`) and `rollback`
(`modelapp_operator.rollback`). `cluster` is only a signpost: the local development cluster is
the separate `modelapp-devcluster` distribution (`modelapp-cluster ...`), never shipped in the
operator's wheel or image.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that contribute subcommands; each has add_parsers(subparsers) and sets `func` on its parsers.
_COMMAND_MODULES = {
    "modelapp_operator.commands": ("render", "run"),
    "modelapp_operator.bump": ("bump",),
    "modelapp_operator.rollback": ("rollback",),
    "modelapp_operator.quarantine": ("quarantine",),
}
"""Module -> the subcommands it provides, for the message when its dependencies are missing."""

CLUSTER_MOVED = ("moved: use `modelapp-cluster {args}` (pip install modelapp-devcluster, or hack/setup.sh); "
                 "`modelapp cluster` is only an alias for it")


def cluster_alias(rest: Sequence[str]) -> int:
    """Say where `modelapp cluster` went and, when the dev cluster package is installed, run it.

    The package is found by name at call time (importlib), never imported at module level: the
    operator must not depend on it, and import-linter's "neither product imports
    modelapp_devcluster" contract only sees static imports.
    """
    rest = list(rest)
    print(CLUSTER_MOVED.format(args=" ".join(rest) or "..."), file=sys.stderr)
    try:
        devcluster = importlib.import_module("modelapp_devcluster.cli")
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("modelapp_devcluster"):
            raise  # installed but broken (a dependency missing): show it
        return 1
    result: int = devcluster.main(rest)
    return result


def _add_cluster_alias(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("cluster", add_help=False,
                            help="moved: the local cluster is `modelapp-cluster` (package modelapp-devcluster)")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    parser.set_defaults(func=lambda args: cluster_alias(args.rest))


def _add_unavailable(sub: argparse._SubParsersAction[argparse.ArgumentParser], module: str, missing: str) -> None:
    message = f"needs the Python package {missing!r}, which is not installed (pip install 'modelapp[operator]')"

    def unavailable(_: argparse.Namespace) -> int:
        print(f"modelapp: this command {message}", file=sys.stderr)
        return 1

    for command in _COMMAND_MODULES[module]:
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
            if missing.split(".")[0] in {"modelapp_operator", "modelapp_serving"}:
                raise  # our own code is broken: say so, loudly
            # An optional dependency of that part is not installed (the serving image, which also
            # has `modelapp`, has no kopf or kubernetes): leave a parser that says so.
            _add_unavailable(sub, name, missing)
            continue
        module.add_parsers(sub)
    _add_cluster_alias(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["cluster"]:  # before argparse, which would take `cluster --help` for its own option
        return cluster_alias(argv[1:])
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
