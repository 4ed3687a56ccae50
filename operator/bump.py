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
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO, cast

from modelapp_operator.discovery import DiscoveryError, ModelCatalog, StoreKey, TagCatalog
from modelapp_operator.metrics import ANN_BUMPED_AT
from modelapp_operator.policies import Policy, PolicyError, parse_policy
from modelapp_operator.registry import DockerConfig, RegistryClient, RegistryError, parse_image
from modelapp_operator.spec import InvalidSpec, ModelAppSpec, parse_spec
from modelapp_serving.stores import Store, StoreError, open_store

GROUP, VERSION, PLURAL = "modelapp.io", "v1alpha1", "modelapps"
MAX_CONFLICT_RETRIES = 5
Result = Literal["planned", "patched", "unchanged", "failed", "skipped"]
RESULTS: tuple[Result, ...] = ("planned", "patched", "failed", "skipped", "unchanged")
ANN_BUMP_REASON = "modelapp.io/bump-reason"
COMPONENT = "modelapp-bump"


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
    def from_status(cls, status: Mapping[str, Any] | None) -> Quarantine:
        pairs: set[tuple[str, str]] = set()
        for entry in (status or {}).get("revisions") or []:
            if isinstance(entry, Mapping) and entry.get("outcome") == "Failed":
                model = entry.get("model") or entry.get("modelVersion") or ""
                if isinstance(model, Mapping):
                    model = model.get("version", "")
                pairs.add((str(entry.get("image", "")), str(model)))
        return cls(frozenset(pairs))

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
        if isinstance(cond, Mapping) and (cond.get("type"), cond.get("status")) == ("Progressing", "True"):
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
    if spec.model.version == "latest":
        return FieldPlan("", "version 'latest' is resolved by the operator at each reconcile", "unchanged")
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
    involved = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelApp", "name": plan.name,
                "namespace": plan.namespace, "uid": plan.uid}  # fmt: skip
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{plan.name}.", "namespace": plan.namespace},
        "involvedObject": involved, "type": "Normal", "reason": "Bumped", "message": plan.message[:1024],
        "action": "Bump", "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
        "reportingInstance": instance, "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }  # fmt: skip


# -- I/O: the Kubernetes API (what happens on 404/409 is said per call) ---------------------------------


class KubeApi:
    """The few calls bump makes: list ModelApps, read one, patch one, read a credentials secret."""

    def __init__(self, kubeconfig: str | None) -> None:
        from kubernetes import client, config

        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
            self.default_namespace = _context_namespace(kubeconfig)
        else:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
                self.default_namespace = Path(_SA_NAMESPACE).read_text().strip()
            except config.ConfigException:
                config.load_kube_config()  # type: ignore[no-untyped-call]
                self.default_namespace = _context_namespace(None)
        self._custom = client.CustomObjectsApi()
        self._core = client.CoreV1Api()

    def list_apps(self, namespace: str | None) -> list[dict[str, Any]]:
        """Every ModelApp in `namespace` (None: all namespaces), in pages of 500."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": 500, "_continue": token} if token else {"limit": 500}
            page: dict[str, Any]
            if namespace is None:
                page = cast(dict[str, Any], self._custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kwargs))
            else:
                listed = self._custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, **kwargs)
                page = cast(dict[str, Any], listed)
            items.extend(page.get("items", []))
            token = page.get("metadata", {}).get("continue") or None
            if token is None:
                return items

    def get_app(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The app now, or None when it was deleted meanwhile (404)."""
        from kubernetes.client.exceptions import ApiException

        try:
            result = cast(
                dict[str, Any], self._custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return result

    def patch_app(self, namespace: str, name: str, patch: Mapping[str, Any]) -> int:
        """Merge-patch the spec; returns the HTTP status (200, 404 gone, 409 resourceVersion moved on)."""
        from kubernetes.client.exceptions import ApiException

        try:
            self._custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, dict(patch), _content_type="application/merge-patch+json"
            )
        except ApiException as exc:
            if exc.status in {404, 409}:
                return int(exc.status)
            raise
        return 200

    def create_event(self, event: Mapping[str, Any]) -> str:
        """Create a core v1 Event; "" when done, else why not (403 without the chart's events rule)."""
        from kubernetes.client.exceptions import ApiException

        try:
            self._core.create_namespaced_event(event["metadata"]["namespace"], cast(Any, dict(event)))
        except ApiException as exc:
            return f"HTTP {exc.status} {exc.reason}"
        return ""

    def secret_env(self, namespace: str, name: str) -> dict[str, str]:
        """A credentials secret's data as environment variables (what the init container gets via envFrom)."""
        import base64

        secret = self._core.read_namespaced_secret(name, namespace)
        return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}


_SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def _context_namespace(kubeconfig: str | None) -> str:
    from kubernetes import config

    _, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    return str((active or {}).get("context", {}).get("namespace") or "default")


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
    api: KubeApi, *, namespace: str | None, dry_run: bool, registry: RegistryClient, opener: StoreOpenerFn | None = None
) -> Outcome:
    """Plan every app, then patch (unless dry-run); a 409 re-reads the app and plans it again."""
    tags = TagCatalog(registry)
    models = ModelCatalog(opener or _secret_opener(api))
    outcome = Outcome()
    for obj in sorted(api.list_apps(namespace), key=_app_key):
        outcome.rows.extend(_apply(api, obj, tags=tags, models=models, dry_run=dry_run))
    outcome.registry_requests = registry.requests_made
    outcome.storage_requests = models.request_count()
    return outcome


StoreOpenerFn = Callable[[StoreKey], Store]


def _secret_opener(api: KubeApi) -> StoreOpenerFn:
    """Open a store with the named Secret's keys; a Secret that cannot be read (403 without the chart's
    `bump.readModelCredentials`, 404) is a StoreError, so it fails the rows of the apps naming it, not the run."""
    from kubernetes.client.exceptions import ApiException

    def opener(key: StoreKey) -> Store:
        env = dict(os.environ)
        if key.secret:
            try:
                env |= api.secret_env(key.namespace, key.secret)
            except ApiException as exc:
                raise StoreError(
                    f"cannot read Secret {key.namespace}/{key.secret}: HTTP {exc.status} {exc.reason}"
                ) from None
        return open_store(key.uri, env=env)

    return opener


def _app_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata", {})
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


def _apply(api: KubeApi, obj: Mapping[str, Any], *, tags: TagCatalog, models: ModelCatalog, dry_run: bool) -> list[Row]:
    for _ in range(MAX_CONFLICT_RETRIES):
        plan = plan_app(obj, tags=tags, models=models)
        if plan.patch is None or dry_run:
            return list(plan.rows)
        now = _now()
        status = api.patch_app(plan.namespace, plan.name, annotate(plan.patch, now=now, message=plan.message))
        if status == 200:
            _record_event(api, plan, now)
            return [_with_result(row, "patched") if row.result == "planned" else row for row in plan.rows]
        fresh = api.get_app(plan.namespace, plan.name) if status == 409 else None
        if fresh is None:
            return [_with_result(row, "unchanged", "deleted during the bump") for row in plan.rows]
        obj = fresh  # someone else changed it (another bump, a user): plan again from what is there now
    return [_with_result(row, "failed", "kept conflicting with other writers") for row in plan.rows]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _record_event(api: KubeApi, plan: AppPlan, now: str) -> None:
    failure = api.create_event(build_event(plan, now=now, instance=socket.gethostname()))
    if failure:
        print(f"modelapp bump: no Event for {plan.namespace}/{plan.name}: {failure}", file=sys.stderr)


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
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        config = DockerConfig.load(args.docker_config)
        api = KubeApi(args.kubeconfig)
        namespace = None if args.all_namespaces else (args.namespace or api.default_namespace)
        registry = RegistryClient(config=config, timeout=args.registry_timeout, insecure=args.insecure_registry)
        outcome = run_bump(api, namespace=namespace, dry_run=args.dry_run, registry=registry)
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


__all__ = ["AppPlan", "FieldPlan", "Quarantine", "Row", "add_parsers", "main", "plan_app", "run_bump"]
