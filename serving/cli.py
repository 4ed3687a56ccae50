"""`modelapp-serving`: the command line of the serving runtime (see docs/contracts.md).

Each subcommand parses its flags here and hands typed values to a module that does the work:
`fetch` -> `modelapp_serving.fetch`, `publish` -> `modelapp_serving.publish`,
`versions` -> `modelapp_serving.versions`, `serve` -> `modelapp_serving.server`. Every flag falls
back to a `MODELAPP_*` variable so that the operator can configure pods through the environment.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value else default


def _env_flag(parser: argparse.ArgumentParser, flag: str, variable: str) -> None:
    """A flag that is required unless its environment variable is set."""
    default = _env(variable)
    parser.add_argument(flag, default=default, required=default is None, help=f"(env {variable})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelapp-serving", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    fetch = sub.add_parser("fetch", help="download and verify a model version into a folder")
    _env_flag(fetch, "--uri", "MODELAPP_MODEL_URI")
    _env_flag(fetch, "--version", "MODELAPP_MODEL_VERSION")
    _env_flag(fetch, "--dest", "MODELAPP_MODEL_DIR")
    fetch.add_argument("--sha256", default=_env("MODELAPP_MODEL_SHA256"))

    publish = sub.add_parser("publish", help="upload files as a new model version and print its digest")
    publish.add_argument("--uri", required=True)
    publish.add_argument("--version", required=True)
    publish.add_argument("--format", default="onnx", choices=["onnx", "sklearn", "custom"])
    publish.add_argument("--entrypoint", default=None, help="the main file (default: the first FILE)")
    publish.add_argument(
        "--signature",
        default=None,
        metavar="FILE",
        help="the model's inputs and outputs, JSON (derived for onnx and sklearn; declare it for custom)",
    )
    publish.add_argument(
        "--examples",
        default=None,
        metavar="FILE",
        help="acceptance examples, JSON: inputs, expected outputs, tolerance (the smoke test runs them)",
    )
    publish.add_argument("--training-run", default=None, help="provenance: the training run that made the model")
    publish.add_argument("--source-commit", default=None, help="provenance: the commit of the training code")
    publish.add_argument("--dataset-digest", default=None, help="provenance: the digest of the training data")
    publish.add_argument(
        "--meta", action="append", default=[], metavar="KEY=VALUE", help="provenance: free-form metadata (repeatable)"
    )
    publish.add_argument("files", nargs="+", metavar="FILE")

    versions = sub.add_parser("versions", help="list the complete model versions under a URI, newest first")
    versions.add_argument("--uri", required=True)
    versions.add_argument("--limit", type=int, default=None, help="at most this many (1: the newest)")

    serve = sub.add_parser("serve", help="serve a fetched model over HTTP")
    _env_flag(serve, "--model-dir", "MODELAPP_MODEL_DIR")
    _env_flag(serve, "--name", "MODELAPP_MODEL_NAME")
    serve.add_argument("--port", type=int, default=int(_env("MODELAPP_PORT", "8080") or "8080"))
    serve.add_argument("--host", default=_env("MODELAPP_HOST", "0.0.0.0"))
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=int(_env("MODELAPP_METRICS_PORT", "9090") or "9090"),
        help="the port of /metrics, never the public one; 0 for none (env MODELAPP_METRICS_PORT)",
    )
    serve.add_argument("--workers", type=int, default=int(_env("MODELAPP_WORKERS", "1") or "1"))
    serve.add_argument("--sha256", default=_env("MODELAPP_MODEL_SHA256"))
    serve.add_argument("--model-class", default=_env("MODELAPP_MODEL_CLASS"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "fetch":
        from modelapp_serving import fetch

        return fetch.main(args)
    if args.command == "publish":
        from modelapp_serving import publish

        return publish.main(args)
    if args.command == "versions":
        from modelapp_serving import versions

        return versions.main(args)
    from modelapp_serving import server

    return server.main(args)


if __name__ == "__main__":
    sys.exit(main())
