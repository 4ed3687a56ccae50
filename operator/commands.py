"""`modelapp render` and `modelapp run`.

`render -f app.yaml` prints the children the operator would apply for each ModelApp in the file, as a
YAML stream, without a cluster (for review in a pull request). Errors name the file and document and
exit with status 1 (bad file, bad YAML, not a ModelApp, invalid spec).

`run` runs the kopf operator against the current kubeconfig (or the in-cluster service account):
`--namespace NS` (repeatable) or `--all-namespaces`; a named peering (`--peering`, default
`modelapp`) so that of several replicas only one acts — each replica takes a random priority unless
`--priority` is given, because kopf pauses *all* operators of equal priority; `--standalone` turns
peering off (one replica only); `--liveness http://0.0.0.0:8080/healthz` serves kopf's liveness probe;
`--metrics-port PORT` serves Prometheus metrics (`modelapp_operator.metrics`; off by default).
`--shard NAME` makes this replica one of a fleet's shards: it handles only the ModelApps labelled
`modelapp.io/shard=NAME` (`--shard-default`: and those with no such label), and its peering defaults to
`modelapp-shard-NAME`, so each shard elects its own acting replica (docs/scaling.md). Without
`--standalone` it exits with status 2 before kopf starts when the peering CRD is missing (`kubectl apply -f crds/`).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from modelapp_operator import builders, deepjson, fairness, names
from modelapp_operator.settings import ConfigError, OperatorConfig, check_shard, from_env, shard_peering
from modelapp_operator.spec import InvalidSpec, check_name, parse_spec


class RenderError(ValueError):
    """The input cannot be rendered; the message says where and why."""


def add_parsers(sub: Any) -> None:
    """Register `render` and `run` on the `modelapp` subcommand parser."""
    render = sub.add_parser("render", help="print the child manifests of ModelApps (no cluster needed)")
    render.add_argument("-f", "--filename", required=True, help="a YAML file with one or more ModelApps ('-' = stdin)")
    render.add_argument("-n", "--namespace", default="default", help="namespace for objects without one")
    render.add_argument(
        "--serving-image", help="image of the fetch-model init container (default: $MODELAPP_SERVING_IMAGE)"
    )
    render.set_defaults(func=render_main)

    run = sub.add_parser("run", help="run the operator against the current kubeconfig")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    run.add_argument("--peering", default=None, help="name of the kopf peering object (default: modelapp)")
    run.add_argument("--standalone", action="store_true", help="no peering: only for a single replica")
    run.add_argument("--priority", type=int, default=None, help="peering priority (default: random per replica)")
    run.add_argument(
        "--liveness", default=None, help="serve kopf's liveness probe at this URL, e.g. http://0.0.0.0:8080/healthz"
    )
    run.add_argument(
        "--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port (default 0: off)"
    )
    run.add_argument("--metrics-address", default="0.0.0.0", help="address of the metrics server (default 0.0.0.0)")
    run.add_argument("--shard", default=None,
                     help="handle only ModelApps labelled modelapp.io/shard=SHARD (default: $MODELAPP_SHARD, else all)")
    run.add_argument("--shard-default", action="store_true", default=None,
                     help="with --shard: also handle ModelApps without a modelapp.io/shard label")
    run.add_argument("--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=run_main)


# --- render ---------------------------------------------------------------------------------------


def _documents(text: str, source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RenderError(f"{source}: not valid YAML{where}: {problem}") from None
    for number, doc in enumerate(docs, start=1):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise RenderError(f"{source}: document {number} is not a mapping")
        yield number, doc


def render_text(text: str, *, source: str, namespace: str, serving_image: str) -> str:
    """Pure: YAML with ModelApps in, YAML stream of their children out (other kinds are skipped)."""
    ctx = builders.BuildContext(serving_image=serving_image)
    out: list[dict[str, Any]] = []
    for number, doc in _documents(text, source):
        if doc.get("kind") != names.KIND:
            continue  # other objects (a Secret beside the ModelApp) are not ours to render
        if doc.get("apiVersion") != names.API_VERSION:
            raise RenderError(f"{source}: document {number}: apiVersion {doc.get('apiVersion')!r}, "
                              f"expected {names.API_VERSION!r}")  # fmt: skip
        meta = doc.get("metadata") or {}
        name = meta.get("name")
        if not isinstance(name, str):
            raise RenderError(f"{source}: document {number}: metadata.name is missing")
        try:
            check_name(name)
            spec = parse_spec(doc.get("spec") or {})
        except InvalidSpec as exc:
            raise RenderError(f"{source}: ModelApp {name!r}: {exc}") from None
        out += builders.build_children(name, meta.get("namespace") or namespace, spec, ctx).apply
    if not out:
        raise RenderError(f"{source}: no ModelApp found")
    return yaml.safe_dump_all(out, sort_keys=False)


def render_main(args: argparse.Namespace) -> int:
    """Read the file, print the stream; errors to stderr as one line, exit status 1."""
    try:
        text = sys.stdin.read() if args.filename == "-" else Path(args.filename).read_text()
        image = args.serving_image or from_env().serving_image
        sys.stdout.write(render_text(text, source=args.filename, namespace=args.namespace, serving_image=image))
    except OSError as exc:
        print(f"modelapp render: {args.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except (RenderError, ConfigError) as exc:
        print(f"modelapp render: {exc}", file=sys.stderr)
        return 1
    return 0


# --- run ------------------------------------------------------------------------------------------


def run_main(args: argparse.Namespace) -> int:
    """Start kopf with our handlers; returns when the operator stops (SIGINT/SIGTERM)."""
    import kopf

    from modelapp_operator import handlers  # noqa: F401 (importing registers the handlers)

    try:
        config = from_env()
        shard = check_shard(args.shard) if args.shard else config.shard
    except ConfigError as exc:
        print(f"modelapp run: {exc}", file=sys.stderr)
        return 2
    shard_default = config.shard_default if args.shard_default is None else args.shard_default
    if shard_default and shard is None:
        print("modelapp run: --shard-default needs --shard NAME (without a shard every ModelApp is handled)",
              file=sys.stderr)  # fmt: skip
        return 2
    namespaces = tuple(args.namespace) or (() if args.all_namespaces else config.namespaces)
    clusterwide = args.all_namespaces or (not namespaces and config.all_namespaces)
    if not namespaces and not clusterwide:
        print("modelapp run: give --namespace NS (repeatable) or --all-namespaces", file=sys.stderr)
        return 2
    config = dataclasses.replace(
        config, namespaces=namespaces, all_namespaces=clusterwide, standalone=args.standalone,
        peering=args.peering or (shard_peering(shard) if shard else config.peering), liveness=args.liveness,
        shard=shard, shard_default=shard_default,
        priority=args.priority if args.priority is not None else random.randint(1, 2**31 - 1),  # noqa: S311
    )  # fmt: skip
    missing = _missing_peering_crd(config)
    if missing:
        print(f"modelapp run: {missing}", file=sys.stderr)
        return 2
    try:
        deepjson.teach_kopf()
        fairness.teach_kopf()
    except RuntimeError as exc:
        print(f"modelapp run: {exc}", file=sys.stderr)
        return 2
    if args.metrics_port:
        from modelapp_operator import metrics

        metrics.serve(args.metrics_port, args.metrics_address)
    kopf.configure(verbose=args.verbose)
    kopf.run(
        clusterwide=clusterwide, namespaces=namespaces, standalone=config.standalone,
        peering_name=None if config.standalone else config.peering, priority=config.priority,
        liveness_endpoint=config.liveness, memo=kopf.Memo(config=config),
    )  # fmt: skip
    return 0


def _missing_peering_crd(config: OperatorConfig) -> str | None:
    """Why the operator cannot start, when the peering CRD it needs is not installed; else None.

    Without it kopf's startup (creating the peering object) gets a 404 and retries every 60 s with a
    traceback, acting on nothing. Only a 404 stops here: any other answer (no RBAC to read CRDs, an API
    server still starting) is left to kopf, which reports and retries those itself.
    """
    if config.standalone:
        return None
    from modelapp_operator import kube

    name = "clusterkopfpeerings.kopf.dev" if config.all_namespaces else "kopfpeerings.kopf.dev"
    try:
        found = kube.get("CustomResourceDefinition", name, None)
    except Exception:  # not ours to judge: kopf reports it and retries
        return None
    if found is not None:
        return None
    return (f"the CRD {name} (kopf's peering) is not installed: install the CRDs with `kubectl apply -f crds/` "
            "(or the Helm chart), or run a single replica with --standalone")  # fmt: skip
