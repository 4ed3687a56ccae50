"""`modelapp bump`: move ModelApps that follow versions to the newest allowed image tag and model version.

One run: list the ModelApps (one namespace or all), plan every app with the update policies
against catalogs that list each image repository and each model location once
(`modelapp_operator.discovery`), print the plan (app, from -> to, why), and unless `--dry-run`
patch `spec.image` and `spec.model.{version,sha256}`.

Contracts:
- A new model version always gets `spec.model.sha256` = the digest of the manifest bump read, so
  the pods fetch exactly what was checked here (a pin naming the previous version would
  contradict the new version, and dropping the pin would lose the guarantee).
- An image written as `name:tag@sha256:...` follows digests: the new value carries the new tag's
  digest, and a tag that moved to another digest is a change. `name:tag` stays tag-only.
- Pairs quarantined in `status.revisions` (`outcome: Failed`) are never proposed again; the
  next best candidate is taken, or nothing moves.
- Patches are JSON merge patches carrying `metadata.resourceVersion`: the API server refuses a
  stale one with 409, and bump re-reads that app and plans again (listings stay cached), so
  two bumps at once, or a bump racing a user edit, never overwrite each other.
- An app whose rollout has not settled (`unsettled`) is skipped, never planned: a new pair is not
  stacked on top of an unfinished one; the next run picks it up.
- A patch also sets the annotations `modelapp.io/bumped-at` and `modelapp.io/bump-reason` (the same
  patch as the spec change), and a core v1 Event `Bumped` records the change on the ModelApp. An Event
  that cannot be created (RBAC) is a warning on stderr, not a failed row: the spec change is done.
- A registry or store failure fails that app's row only. Exit code 0: every app planned and
  patched; 2: some rows failed; 1: nothing could be done (no API server, no CRD).
- Credentials never cross tenants (docs/security.md): a model store is opened with exactly the keys of
  the Secret the ModelApp names (read from the app's own namespace), never with the bump's environment
  under it; an app naming no Secret reads its store anonymously, unless the store's URI starts with a
  prefix the platform team lists in `--trusted-store` (the bump's own identity, e.g. workload identity,
  is used only there).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from modelapp_operator import kube
from modelapp_operator.discovery import DiscoveryError, ModelCatalog, StoreKey, TagCatalog
from modelapp_operator.names import (
    ANN_BUMP_REASON,
    ANN_BUMPED_AT,
    API_VERSION,
    BUMP_COMPONENT,
    KIND,
    PROGRESSING,
    now,
)
from modelapp_operator.policies import Policy, PolicyError, parse_policy
from modelapp_operator.registry import DockerConfig, RegistryClient, RegistryError, parse_image, parse_trusted_realms
from modelapp_operator.revisions import Revision, parse_revisions
from modelapp_operator.spec import InvalidSpec, ModelAppSpec, parse_spec
from modelapp_serving.stores import Store, StoreError, open_store

MAX_CONFLICT_RETRIES = 5
Result = Literal["planned", "patched", "unchanged", "failed", "skipped"]
RESULTS: tuple[Result, ...] = ("planned", "patched", "failed", "skipped", "unchanged")


@dataclass(frozen=True)
class Row:
    """One line of the plan: an app's field, from -> to, why, and what happened."""

    namespace: str
    name: str
    field: str
    old: str
    new: str
    reason: str
    result: Result


@dataclass(frozen=True)
class AppPlan:
    namespace: str
    name: str
    resource_version: str
    rows: tuple[Row, ...]
    patch: dict[str, Any] | None = None
    message: str = ""  # why the patch changes the spec: the Event's message and the bump-reason annotation
    uid: str = ""

    @property
    def failed(self) -> bool:
        return any(row.result == "failed" for row in self.rows)


@dataclass(frozen=True)
class Quarantine:
    """Failed (image, model version) pairs from `status.revisions`; an image matches by text or digest."""

    pairs: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def from_revisions(cls, revisions: Sequence[Revision]) -> Quarantine:
        return cls(frozenset((entry.image, entry.model) for entry in revisions if entry.quarantined))

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None) -> Quarantine:
        """The quarantined pairs of a ModelApp's status (read with the one parser, `parse_revisions`)."""
        return cls.from_revisions(parse_revisions(status))

    def blocks(self, image: str, model: str) -> bool:
        wanted = _image_identity(image)
        return any(version == model and _image_identity(failed) & wanted for failed, version in self.pairs)


def _image_identity(image: str) -> set[str]:
    """`name:tag` and the digest, so a quarantined `repo@sha256:x` also blocks `repo:1.5@sha256:x`."""
    try:
        ref = parse_image(image)
    except ValueError:
        return {image}
    found = {f"{ref.key}:{ref.tag}"} if ref.tag else set()
    return found | ({ref.digest} if ref.digest else set())


@dataclass(frozen=True)
class FieldPlan:
    """The plan for one field; `new` is empty when it stays, `digest` is the new value's digest."""

    new: str
    reason: str
    result: Result
    digest: str = ""


def plan_app(obj: Mapping[str, Any], *, tags: TagCatalog, models: ModelCatalog) -> AppPlan:
    """Plan one ModelApp: pure apart from the catalogs, which list each repository/location once."""
    meta = obj.get("metadata", {})
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    rv = str(meta.get("resourceVersion", ""))
    busy = unsettled(obj)
    if busy:
        reason = f"rollout in progress ({busy}); the next run picks it up"
        return AppPlan(namespace, name, rv, tuple(Row(namespace, name, f, "", "", reason, "skipped") for f in FIELDS))
    try:
        spec = parse_spec(obj.get("spec") or {})
        image_policy = parse_policy(spec.updates.image.policy, tag_filter=spec.updates.image.tag_filter)
        model_policy = parse_policy(spec.updates.model.policy)
    except (InvalidSpec, PolicyError) as exc:
        return AppPlan(namespace, name, rv, (Row(namespace, name, "spec", "", "", f"invalid: {exc}", "failed"),))
    quarantine = Quarantine.from_status(obj.get("status"))
    image = _plan_image(spec, image_policy, tags, quarantine)
    model = _plan_model(spec, model_policy, models, quarantine, key=_store_key(spec, namespace))
    if image.new and model.new and quarantine.blocks(image.new, model.new):
        model = FieldPlan("", f"{image.new} with {model.new} is quarantined", "unchanged")
    rows = (
        Row(namespace, name, "image", spec.image, image.new, image.reason, image.result),
        Row(namespace, name, "model", spec.model.version, model.new, model.reason, model.result),
    )
    message = bump_message(rows, image_policy=spec.updates.image.policy, model_policy=spec.updates.model.policy)
    patch = build_patch(rv, image=image, model=model)
    return AppPlan(namespace, name, rv, rows, patch, message, str(meta.get("uid", "")))


FIELDS = ("image", "model")


def unsettled(obj: Mapping[str, Any]) -> str:
    """Why the app's current rollout has not settled, or "" when bump may change its spec.

    Unsettled: the operator has not observed the newest generation, a Progressing condition is True
    (rolling out or rolling back), or `status.effective` is not the spec's pair although that pair is not
    quarantined (the operator has not caught up). An app without `status.observedGeneration` was never
    reconciled and counts as settled, so bump works without a running operator.
    """
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    observed, generation = status.get("observedGeneration"), meta.get("generation")
    if isinstance(observed, int) and isinstance(generation, int) and observed < generation:
        return f"observedGeneration {observed} < generation {generation}"
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and (cond.get("type"), cond.get("status")) == (PROGRESSING, "True"):
            return f"Progressing=True, {cond.get('reason') or 'no reason'}"
    effective, spec = status.get("effective"), obj.get("spec") or {}
    if isinstance(effective, Mapping) and isinstance(spec, Mapping):
        model = spec.get("model") or {}
        wanted = (str(spec.get("image", "")), str(model.get("uri", "")), str(model.get("version", "")))
        applied = (str(effective.get("image", "")), str(effective.get("uri", "")), str(effective.get("model", "")))
        failed = Quarantine.from_status(status).blocks(wanted[0], wanted[2])
        if applied != wanted and not failed:
            return f"status.effective is {applied[0]} with model {applied[2]}, not the spec's pair"
    return ""


def bump_message(rows: tuple[Row, ...], *, image_policy: str, model_policy: str) -> str:
    """`image a -> b (policy p); model 7 -> 8 (policy q)`: the planned changes only, "" when none."""
    policies = {"image": image_policy, "model": model_policy}
    parts = [f"{r.field} {r.old} -> {r.new} (policy {policies[r.field]})" for r in rows if r.result == "planned"]
    return "; ".join(parts)


def _plan_image(spec: ModelAppSpec, policy: Policy, tags: TagCatalog, quarantine: Quarantine) -> FieldPlan:
    """Newest allowed tag; a tag whose (digest, current model) pair failed before is passed over."""
    ref = parse_image(spec.image)  # the spec's pattern already guarantees a parseable reference
    excluded: set[str] = set()
    try:
        while True:
            decision = tags.decide(ref, policy, excluded=excluded)
            found = decision.found
            if found is None:
                return FieldPlan("", decision.reason, "unchanged")
            if not quarantine.blocks(ref.format(tag=found.value, digest=found.digest), spec.model.version):
                new = ref.format(tag=found.value, digest=found.digest if ref.digest else None)
                return FieldPlan(new, f"{decision.reason} [{found.digest[:19]}]", "planned", found.digest)
            if found.value in excluded:  # a moved tag whose new digest is quarantined: nothing else to try
                return FieldPlan("", f"{found.value} at {found.digest[:19]} is quarantined", "unchanged")
            excluded.add(found.value)
    except DiscoveryError as exc:
        return FieldPlan("", str(exc), "failed")


def _plan_model(
    spec: ModelAppSpec, policy: Policy, models: ModelCatalog, quarantine: Quarantine, *, key: StoreKey
) -> FieldPlan:
    """Newest complete allowed version; versions that failed with the current image are passed over."""
    current = _image_identity(spec.image)
    excluded = {version for image, version in quarantine.pairs if _image_identity(image) & current}
    try:
        decision = models.decide(key, policy, current=spec.model.version, excluded=excluded)
    except DiscoveryError as exc:
        return FieldPlan("", str(exc), "failed")
    if decision.found is None:
        return FieldPlan("", decision.reason, "unchanged")
    found = decision.found
    return FieldPlan(found.value, f"{decision.reason} [sha256 {found.digest[:12]}]", "planned", found.digest)


def _store_key(spec: ModelAppSpec, namespace: str) -> StoreKey:
    secret = spec.model.credentials_secret or ""
    return StoreKey(spec.model.uri, namespace if secret else "", secret)


def build_patch(rv: str, *, image: FieldPlan, model: FieldPlan) -> dict[str, Any] | None:
    """A JSON merge patch guarded by resourceVersion, or None when nothing changes."""
    spec: dict[str, Any] = {}
    if image.new:
        spec["image"] = image.new
    if model.new:
        spec["model"] = {"version": model.new, "sha256": model.digest}
    return {"metadata": {"resourceVersion": rv}, "spec": spec} if spec else None


def annotate(patch: Mapping[str, Any], *, now: str, message: str) -> dict[str, Any]:
    """The patch with the bump's annotations: they change in the same write as the spec, or not at all."""
    meta = {**patch["metadata"], "annotations": {ANN_BUMPED_AT: now, ANN_BUMP_REASON: message}}
    return {**patch, "metadata": meta}


def build_event(plan: AppPlan, *, now: str, instance: str) -> dict[str, Any]:
    """A core v1 Event `Bumped` on the ModelApp (kubectl describe shows it with the operator's own)."""
    involved = {"apiVersion": API_VERSION, "kind": KIND, "name": plan.name,
                "namespace": plan.namespace, "uid": plan.uid}  # fmt: skip
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{plan.name}.", "namespace": plan.namespace},
        "involvedObject": involved, "type": "Normal", "reason": "Bumped", "message": plan.message[:1024],
        "action": "Bump", "source": {"component": BUMP_COMPONENT}, "reportingComponent": BUMP_COMPONENT,
        "reportingInstance": instance, "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }  # fmt: skip


# -- one run ----------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    rows: list[Row] = field(default_factory=list)
    registry_requests: int = 0
    storage_requests: int = 0

    @property
    def exit_code(self) -> int:
        return 2 if any(row.result == "failed" for row in self.rows) else 0

    def counts(self) -> dict[str, int]:
        """Rows per result (one row per app and field)."""
        return {result: sum(1 for row in self.rows if row.result == result) for result in RESULTS}


def run_bump(
    *, namespace: str | None, dry_run: bool, registry: RegistryClient, opener: StoreOpenerFn | None = None,
    trusted_stores: Sequence[str] = (),
) -> Outcome:
    """Plan every app, then patch (unless dry-run); a 409 re-reads the app and plans it again.

    `namespace` None: every namespace. The cluster is the one `kube` is configured for."""
    tags = TagCatalog(registry)
    models = ModelCatalog(opener or tenant_opener(trusted_stores=trusted_stores))
    outcome = Outcome()
    for obj in sorted(kube.list_objects(KIND, namespace), key=_app_key):
        outcome.rows.extend(_apply(obj, tags=tags, models=models, dry_run=dry_run))
    outcome.registry_requests = registry.requests_made
    outcome.storage_requests = models.request_count()
    return outcome


StoreOpenerFn = Callable[[StoreKey], Store]


def tenant_opener(*, trusted_stores: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> StoreOpenerFn:
    """Open a store as its tenant may: with exactly the named Secret's keys, or anonymously.

    A Secret that cannot be read (403 without the chart's `bump.readModelCredentials`, 404) or whose
    values are not text is a StoreError, so it fails the rows of the apps naming it, not the run. The
    bump's own environment (`environ`, default the process's) is used only for a URI under one of
    `trusted_stores` and no Secret named: a tenant cannot borrow the bump's identity for a store of its
    choosing, nor give a Secret that sets only an endpoint and receive the bump's key or identity with it
    (`ambient=False`: no workload identity, IRSA or instance metadata either). A `file://` location (the
    bump pod's own files) is read only when trusted.
    """

    def opener(key: StoreKey) -> Store:
        trusted = any(key.uri == prefix or key.uri.startswith(prefix.rstrip("/") + "/") for prefix in trusted_stores)
        if key.uri.startswith("file://") and not trusted:
            raise StoreError(f"{key.uri}: a file:// model is baked into its image; the bump does not read its own "
                             "files for a tenant (list the folder in --trusted-store to allow it)")  # fmt: skip
        if key.secret:
            return open_store(key.uri, env=_secret_env(key.namespace, key.secret), ambient=False)
        if trusted:
            return open_store(key.uri, env=dict(os.environ if environ is None else environ), ambient=True)
        return open_store(key.uri, env={}, ambient=False)

    return opener


def _secret_env(namespace: str, name: str) -> dict[str, str]:
    """A credentials Secret's data as the environment the init container gets from it (envFrom)."""
    where = f"Secret {namespace}/{name}"
    try:
        data = kube.secret_data(name, namespace)
    except kube.ApiError as exc:
        raise StoreError(f"cannot read {where}: {exc}") from None
    if data is None:
        raise StoreError(f"{where} does not exist; create it in the ModelApp's namespace or fix credentialsSecret")
    env: dict[str, str] = {}
    for key, value in data.items():
        try:
            env[key] = value.decode()
        except UnicodeDecodeError:
            raise StoreError(f"{where}: the value of {key!r} is not UTF-8 text; store credentials are text") from None
    return env


def _app_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata", {})
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


def _apply(obj: Mapping[str, Any], *, tags: TagCatalog, models: ModelCatalog, dry_run: bool) -> list[Row]:
    for _ in range(MAX_CONFLICT_RETRIES):
        plan = plan_app(obj, tags=tags, models=models)
        if plan.patch is None or dry_run:
            return list(plan.rows)
        at = now()
        try:
            kube.patch(KIND, plan.name, plan.namespace, annotate(plan.patch, now=at, message=plan.message))
        except kube.Gone:
            return [_with_result(row, "unchanged", "deleted during the bump") for row in plan.rows]
        except kube.ApiError as exc:
            if exc.status != 409:
                return [_with_result(row, "failed", f"the API server refused the patch: {exc}") for row in plan.rows]
            fresh = kube.get(KIND, plan.name, plan.namespace)
            if fresh is None:
                return [_with_result(row, "unchanged", "deleted during the bump") for row in plan.rows]
            obj = fresh  # someone else changed it (another bump, a user): plan again from what is there now
            continue
        _record_event(plan, at)
        return [_with_result(row, "patched") if row.result == "planned" else row for row in plan.rows]
    return [_with_result(row, "failed", "kept conflicting with other writers") for row in plan.rows]


def _record_event(plan: AppPlan, at: str) -> None:
    """The Bumped Event; one that cannot be created (403 without the chart's events rule) is a warning."""
    try:
        kube.create("Event", plan.namespace, build_event(plan, now=at, instance=socket.gethostname()))
    except kube.ApiError as exc:
        print(f"modelapp bump: no Event for {plan.namespace}/{plan.name}: {exc}", file=sys.stderr)


def _with_result(row: Row, result: Result, reason: str | None = None) -> Row:
    return Row(row.namespace, row.name, row.field, row.old, row.new, reason or row.reason, result)


# -- output and the command line --------------------------------------------------------------------------


def render_table(outcome: Outcome, out: TextIO) -> None:
    headers = ("APP", "FIELD", "FROM", "TO", "RESULT", "WHY")
    lines = [(f"{r.namespace}/{r.name}", r.field, r.old, r.new or "-", r.result, r.reason) for r in outcome.rows]
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(headers[:-1])]
    for line in [headers, *lines]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)), line[-1], file=out)
    counts = outcome.counts()
    changed = counts["planned"] + counts["patched"]
    print(
        f"\n{changed} change(s), {counts['failed']} failure(s); "
        f"{outcome.registry_requests} registry and {outcome.storage_requests} storage request(s)",
        file=out,
    )
    print(", ".join(f"{result} {counts[result]}" for result in RESULTS[:4]), file=out)


def render_json(outcome: Outcome, out: TextIO) -> None:
    body = {
        "rows": [asdict(row) for row in outcome.rows],
        "requests": {"registry": outcome.registry_requests, "storage": outcome.storage_requests},
        "counts": outcome.counts(),
        "exitCode": outcome.exit_code,
    }
    json.dump(body, out, indent=2)
    out.write("\n")


def add_parsers(subparsers: Any) -> None:
    parser = subparsers.add_parser("bump", help="Move ModelApps to the newest image tag and model version allowed.")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", help="Only this namespace (default: the kubeconfig context's).")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="Every namespace.")
    parser.add_argument("--dry-run", action="store_true", help="Print the plan; patch nothing.")
    parser.add_argument("--output", "-o", choices=("table", "json"), default="table")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG") or None)
    parser.add_argument("--docker-config", type=Path, help="Registry credentials (default: ~/.docker/config.json).")
    parser.add_argument("--registry-timeout", type=float, default=10.0, help="Seconds per registry request.")
    parser.add_argument(
        "--insecure-registry", action="append", default=[], help="Registry host reached over plain HTTP (repeatable)."
    )
    parser.add_argument(
        "--trusted-realm", action="append", default=_env_list("MODELAPP_BUMP_TRUSTED_REALMS"), metavar="REGISTRY=HOST",
        help="A token-service host that REGISTRY may send the bump's login to, besides its own host and Docker "
        "Hub's (repeatable; also $MODELAPP_BUMP_TRUSTED_REALMS), e.g. registry.gitlab.com=gitlab.com "
        "(docs/registry-trust.md).",
    )  # fmt: skip
    parser.add_argument(
        "--trusted-store", action="append", default=_env_list("MODELAPP_BUMP_TRUSTED_STORES"), metavar="URI_PREFIX",
        help="A store (URI prefix, e.g. azureblob://models) that apps naming no credentialsSecret may read with "
        "the bump's own credentials or identity (repeatable; also $MODELAPP_BUMP_TRUSTED_STORES, comma-separated). "
        "Elsewhere such apps read their store anonymously.",
    )  # fmt: skip
    parser.set_defaults(func=main)


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def main(args: argparse.Namespace) -> int:
    try:
        config = DockerConfig.load(args.docker_config)
        try:
            realms = parse_trusted_realms(args.trusted_realm)
        except ValueError as exc:
            print(f"modelapp bump: --trusted-realm: {exc}", file=sys.stderr)
            return 1
        kube.use_kubeconfig(args.kubeconfig)
        namespace = None if args.all_namespaces else (args.namespace or kube.default_namespace())
        registry = RegistryClient(config=config, timeout=args.registry_timeout, insecure=args.insecure_registry,
                                  trusted_realms=realms)  # fmt: skip
        outcome = run_bump(namespace=namespace, dry_run=args.dry_run, registry=registry,
                           trusted_stores=args.trusted_store)  # fmt: skip
    except (RegistryError, OSError) as exc:
        print(f"modelapp bump: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the API server is unreachable, the CRD is missing, RBAC refuses the list
        print(f"modelapp bump: cannot list ModelApps: {_one_line(exc)}", file=sys.stderr)
        return 1
    (render_json if args.output == "json" else render_table)(outcome, sys.stdout)
    return outcome.exit_code


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


__all__ = ["AppPlan", "FieldPlan", "Quarantine", "Row", "add_parsers", "main", "plan_app", "run_bump", "tenant_opener"]
