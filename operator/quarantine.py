"""`modelapp quarantine`: see and clear the fleet's quarantine (the evidence `modelapp bump` holds apps back on).

- `modelapp quarantine list [-n NS | -A] [--quarantine-scope S] [--quarantine-from NS ...] [-o json]`: every
  failed component the ModelApps' `status.revisions` blame (fleet.py), with where it counts.
- `modelapp quarantine clear ID [-n NS | -A] [--dry-run]`: ID is an image digest (`sha256:...`), an image
  (`registry/repo:tag`), a model manifest digest, or `uri@version`. Every app holding evidence for it gets
  ID added to its `modelapp.io/quarantine-cleared` annotation (a JSON merge patch guarded by
  resourceVersion), so the bump no longer counts that evidence anywhere. The app's own pair-level
  quarantine stays (retry it with the `rollout.modelapp.io/retry-quarantined` annotation).

Who may clear is who may patch the app holding the evidence: its own tenant and the platform team. Exit
codes: 0 done; 1 the API server could not be read or written; 4 (clear) nothing held evidence for ID.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from modelapp_operator import fleet, kube
from modelapp_operator.names import KIND

MAX_CONFLICT_RETRIES = 5
NOTHING_MATCHED = 4


def list_evidence(namespace: str | None) -> list[Mapping[str, Any]]:
    return sorted(kube.list_objects(KIND, namespace), key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))


def rows(known: fleet.Fleet) -> list[dict[str, Any]]:
    """One row per piece of evidence: what it blames, where it came from, and where it counts."""
    out = []
    for e in sorted(known.evidence, key=lambda e: (e.namespace, e.app, e.at)):
        where = "every namespace" if known.travels(e) else f"namespace {e.namespace}"
        out.append({"component": e.component, "ref": e.ref, "ids": sorted(e.ids), "namespace": e.namespace,
                    "app": e.app, "reason": e.reason, "at": e.at, "countsFor": where,
                    "local": e.why_local, "message": e.message})  # fmt: skip
    return out


def render(found: list[dict[str, Any]], out: TextIO) -> None:
    if not found:
        print("nothing is quarantined", file=out)
        return
    for row in found:
        print(f"{row['component']} {row['ref']}  failed in {row['namespace']}/{row['app']} ({row['reason']}, "
              f"{row['at']})  counts for {row['countsFor']}", file=out)  # fmt: skip
        if row["local"]:
            print(f"    only there: {row['local']}", file=out)
        print(f"    clear with: modelapp quarantine clear {_best_id(row['ids'], row['ref'])} -n {row['namespace']}",
              file=out)  # fmt: skip


def _best_id(ids: Sequence[str], ref: str) -> str:
    """The identity to name on the command line: a digest when one is known, else the reference."""
    digest = next((i for i in ids if i.startswith("sha256:")), "")
    model = next((i.removeprefix("model:") for i in ids if len(i) == 70 and i.startswith("model:")), "")
    return digest or model or ref


def clear(identity: str, namespace: str | None, *, dry_run: bool, out: TextIO) -> int:
    """Add `identity` to the clear annotation of every app whose evidence it names."""
    wanted = fleet.parse_identity(identity)
    if not wanted:
        print("modelapp quarantine clear: name a digest, an image or uri@version", file=sys.stderr)
        return 1
    done = 0
    for obj in list_evidence(namespace):
        if not any(not e.ids.isdisjoint(wanted) for e in fleet.evidence_of(obj)):
            continue
        meta = obj["metadata"]
        where = f"{meta['namespace']}/{meta['name']}"
        if not dry_run and not _annotate(obj, identity.strip()):
            print(f"modelapp quarantine clear: {where} kept changing or is gone; run clear again", file=sys.stderr)
            continue
        done += 1
        print(f"{'would clear' if dry_run else 'cleared'} {identity} in {where}", file=out)
    if not done:
        scope = f"namespace {namespace}" if namespace else "any namespace"
        print(f"modelapp quarantine clear: no ModelApp in {scope} holds evidence against {identity} "
              "(`modelapp quarantine list` shows what does)", file=sys.stderr)  # fmt: skip
        return NOTHING_MATCHED
    return 0


def _annotate(obj: Mapping[str, Any], identity: str) -> bool:
    """Append to the annotation with a resourceVersion precondition; a 409 re-reads and tries again."""
    for _ in range(MAX_CONFLICT_RETRIES):
        meta = obj["metadata"]
        current = str((meta.get("annotations") or {}).get(fleet.ANN_QUARANTINE_CLEARED, ""))
        items = [i for i in current.replace(",", " ").split() if i]
        value = ",".join([*items, identity] if identity not in items else items)
        body = {"metadata": {"resourceVersion": meta["resourceVersion"],
                             "annotations": {fleet.ANN_QUARANTINE_CLEARED: value}}}  # fmt: skip
        try:
            kube.patch(KIND, meta["name"], meta["namespace"], body)
            return True
        except kube.ApiError as exc:
            if exc.status != 409:
                raise
            fresh = kube.get(KIND, meta["name"], meta["namespace"])
            if fresh is None:
                return False
            obj = fresh
    return False


def add_parsers(subparsers: Any) -> None:
    parser = subparsers.add_parser("quarantine", help="See and clear the fleet quarantine (failed digests).")
    verbs = parser.add_subparsers(dest="verb", required=True)
    for verb in ("list", "clear"):
        sub = verbs.add_parser(verb, help="Show the evidence." if verb == "list" else "Stop counting evidence.")
        where = sub.add_mutually_exclusive_group()
        where.add_argument("--namespace", "-n", help="Only this namespace (default: the kubeconfig context's).")
        where.add_argument("--all-namespaces", "-A", action="store_true", help="Every namespace.")
        sub.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG") or None)
        if verb == "list":
            sub.add_argument("--quarantine-scope", choices=fleet.SCOPES,
                             default=os.environ.get("MODELAPP_QUARANTINE_SCOPE", "namespace"))  # fmt: skip
            sub.add_argument("--quarantine-from", action="append", default=[], metavar="NAMESPACE")
            sub.add_argument("--output", "-o", choices=("table", "json"), default="table")
        else:
            sub.add_argument("identity", help="sha256:<image digest>, registry/repo:tag, <model sha256>, uri@version")
            sub.add_argument("--dry-run", action="store_true", help="Say which apps hold the evidence; change nothing.")
        sub.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        kube.use_kubeconfig(args.kubeconfig)
        namespace = None if args.all_namespaces else (args.namespace or kube.default_namespace())
        if args.verb == "clear":
            return clear(args.identity, namespace, dry_run=args.dry_run, out=sys.stdout)
        known = fleet.Fleet.of(list_evidence(namespace), scope=args.quarantine_scope, trusted=args.quarantine_from)
    except Exception as exc:  # the API server is unreachable, the CRD is missing, RBAC refuses
        print(f"modelapp quarantine: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}", file=sys.stderr)
        return 1
    found = rows(known)
    if args.output == "json":
        json.dump({"scope": known.scope, "evidence": found}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render(found, sys.stdout)
    return 0


__all__ = ["add_parsers", "clear", "main", "rows"]
