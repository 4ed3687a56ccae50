"""`modelapp rollback NAME [--namespace NS] [--to REVISION] [--reason TEXT]`: return to an earlier pair.

The spec stays the source of truth: rollback patches `spec.image` and `spec.model.{uri,version,sha256}`
to the chosen entry of `status.revisions` (default: the newest pair before the spec's own that was fully
available and never failed), and leaves a note in the annotation `rollout.modelapp.io/rollback`
(`{from, to, reason, at}`) from which the operator records the pair it left as `RolledBack` (then removes
the note). Returning to a quarantined (`Failed`) revision on purpose also sets
`rollout.modelapp.io/retry-quarantined`, so the operator tries it once more instead of refusing it.

The patch is a JSON merge patch carrying `metadata.resourceVersion`: if anything changed the ModelApp
since it was read (a bump, the user), the API server answers 409 and rollback plans again from what is
there now. Exit codes: 0 done; 1 the ModelApp, the revision or a good pair to return to does not exist,
or the API server refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelapp_operator import kube
from modelapp_operator.names import ANN_RETRY, ANN_ROLLBACK, KIND, now
from modelapp_operator.revisions import Pair, Revision, last_good, parse_revisions
from modelapp_operator.spec import InvalidSpec, parse_spec

MAX_CONFLICT_RETRIES = 3


class RollbackError(ValueError):
    """Nothing to roll back to, as asked; the message says why."""


@dataclass(frozen=True)
class RollbackPlan:
    """Where the spec goes, from where, and the merge patch that does it."""

    revision: int
    target: Pair
    current: Pair
    patch: dict[str, Any]


def _known(revisions: Sequence[Revision]) -> str:
    return ", ".join(f"{e.revision} ({e.pair.describe()}, {e.outcome})" for e in revisions)


def plan_rollback(app: Mapping[str, Any], *, to: int | None, reason: str, now: str) -> RollbackPlan:
    """Pure: the ModelApp as read in, the plan out; RollbackError when there is nothing to return to."""
    meta = app.get("metadata") or {}
    where = f"{meta.get('namespace')}/{meta.get('name')}"
    try:
        current = Pair.from_spec(parse_spec(app.get("spec") or {}))
    except InvalidSpec as exc:
        raise RollbackError(f"ModelApp {where} has an invalid spec: {exc}") from None
    revisions = parse_revisions(app.get("status"))
    if not revisions:
        raise RollbackError(f"ModelApp {where} has no recorded revisions yet")
    if to is None:
        target = last_good(revisions, besides=current)
        if target is None:
            raise RollbackError(f"ModelApp {where} has no earlier good revision; known: {_known(revisions)}")
        entry = next(e for e in reversed(revisions) if e.pair == target)
    else:
        found = [e for e in revisions if e.revision == to]
        if not found:
            raise RollbackError(f"ModelApp {where} has no revision {to}; known: {_known(revisions)}")
        entry, target = found[0], found[0].pair
    if target == current:
        raise RollbackError(f"ModelApp {where}: revision {entry.revision} is what the spec already names")
    note = {"from": current.handle, "to": target.handle, "reason": reason, "at": now}
    annotations = {ANN_ROLLBACK: json.dumps(note, separators=(",", ":"))}
    if entry.quarantined:
        annotations[ANN_RETRY] = target.handle  # returning to a quarantined pair is a deliberate retry
    patch = {
        "metadata": {"resourceVersion": meta.get("resourceVersion"), "annotations": annotations},
        "spec": {"image": target.image,
                 "model": {"uri": target.uri, "version": target.version, "sha256": target.sha256 or None}},
    }  # fmt: skip
    return RollbackPlan(entry.revision, target, current, patch)


# -- I/O and the command line -------------------------------------------------------------------------


def rollback(name: str, namespace: str, *, to: int | None, reason: str) -> RollbackPlan:
    """Read, plan, patch; a 409 (someone changed the app meanwhile) reads and plans again."""
    for _ in range(MAX_CONFLICT_RETRIES):
        app = kube.get(KIND, name, namespace)
        if app is None:
            raise RollbackError(f"ModelApp {namespace}/{name} not found")
        plan = plan_rollback(app, to=to, reason=reason, now=now())
        try:
            kube.patch(KIND, name, namespace, plan.patch)
        except kube.ApiError as exc:
            if exc.status == 409:
                continue
            raise
        return plan
    raise RollbackError(f"ModelApp {namespace}/{name} kept changing while rolling back; try again")


def add_parsers(subparsers: Any) -> None:
    parser = subparsers.add_parser("rollback", help="Return a ModelApp to an earlier (image, model) pair.")
    parser.add_argument("name", help="the ModelApp")
    parser.add_argument("--namespace", "-n", help="its namespace (default: the kubeconfig context's)")
    parser.add_argument(
        "--to", type=int, default=None, metavar="REVISION",
        help="a revision number from status.revisions (default: the last good one before the spec's)",
    )  # fmt: skip
    parser.add_argument("--reason", default="modelapp rollback", help="why (recorded in status.revisions)")
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    kube.use_kubeconfig(args.kubeconfig)
    namespace = args.namespace or kube.default_namespace()
    try:
        plan = rollback(args.name, namespace, to=args.to, reason=args.reason)
    except RollbackError as exc:
        print(f"modelapp rollback: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # no API server, no CRD, RBAC refuses
        print(f"modelapp rollback: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}", file=sys.stderr)
        return 1
    print(f"{namespace}/{args.name}: rolled back to revision {plan.revision}, {plan.target.describe()} "
          f"(was {plan.current.describe()})")  # fmt: skip
    return 0


__all__ = ["RollbackError", "RollbackPlan", "add_parsers", "main", "plan_rollback", "rollback"]
