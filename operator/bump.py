"""`modelapp bump`: move ModelApps that follow versions to the newest allowed image tag and model version.

One run: list the ModelApps (one namespace or all), plan every app with the update policies
against catalogs that list each image repository and each model location once
(`modelapp_operator.discovery`), print the plan (app, from -> to, why), and unless `--dry-run`
patch `spec.image` and `spec.model.{version,sha256}`. This module plans and patches one app and wires the
command; the loop that patches in batches and waits for them is `modelapp_operator.breaker`, and what a run
did, with its table and JSON, is `modelapp_operator.report`.

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
  patched; 2: some rows failed; 3: the breaker tripped (a rollout this run started failed or did not
  settle in time; the apps it held back are rows with result `held`); 1: nothing could be done (no API
  server, no CRD).
- The fleet circuit breaker (`modelapp_operator.fleet`, docs/rollouts.md): an image or model digest that
  failed a rollout in another app is never proposed where that evidence counts (`--quarantine-scope`:
  the app's own namespace by default, or the cluster for attributable failures); with `--max-rollouts N`
  at most N apps are patched at once, each batch is waited for (Ready on the new pair, or rolled back,
  within `--rollout-timeout`), and a failed batch holds back every later app its evidence counts for.
- Credentials never cross tenants (docs/security.md): a model store is opened with exactly the keys of
  the Secret the ModelApp names (read from the app's own namespace), never with the bump's environment
  under it; an app naming no Secret reads its store anonymously, unless the store's URI starts with a
  prefix the platform team lists in `--trusted-store` (the bump's own identity, e.g. workload identity,
  is used only there).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelapp_operator import breaker, fleet, kube
from modelapp_operator.discovery import DiscoveryError, ModelCatalog, StoreKey, TagCatalog, check_pair
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
from modelapp_operator.report import Outcome, Result, Rollout, Row, Trip, render_json, render_table, with_result
from modelapp_operator.revisions import Revision, parse_revisions
from modelapp_operator.signatures import ANN_PAIR_FACTS
from modelapp_operator.spec import InvalidSpec, ModelAppSpec, parse_spec
from modelapp_serving.stores import Store, StoreError, open_store

MAX_CONFLICT_RETRIES = 5


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


def plan_app(obj: Mapping[str, Any], *, tags: TagCatalog, models: ModelCatalog,
             quarantined: fleet.Fleet | None = None) -> AppPlan:  # fmt: skip
    """Plan one ModelApp: pure apart from the catalogs, which list each repository/location once.

    `quarantined`: the fleet's evidence; a candidate it blocks for this app's namespace is passed over, and
    a field that stays only because of it is `held` (the row says which app's failure holds it)."""
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
    evidence = quarantined or fleet.Fleet()
    image = _plan_image(spec, image_policy, tags, quarantine, _Blocked(evidence, namespace))
    model = _plan_model(spec, model_policy, models, quarantine, _Blocked(evidence, namespace),
                        key=_store_key(spec, namespace))  # fmt: skip
    if image.new and model.new and quarantine.blocks(image.new, model.new):
        model = FieldPlan("", f"{image.new} with {model.new} is quarantined", "unchanged")
    fits = check_pair(spec, image=(image.new, image.digest), version=model.new, tags=tags, models=models,
                      key=_store_key(spec, namespace))  # fmt: skip
    image, model = _fitted(image, fits.image_held, fits.failure), _fitted(model, fits.model_held, fits.failure)
    rows = (
        Row(namespace, name, "image", spec.image, image.new, image.reason, image.result),
        Row(namespace, name, "model", spec.model.version, model.new, model.reason, model.result),
    )
    message = bump_message(rows, image_policy=spec.updates.image.policy, model_policy=spec.updates.model.policy)
    patch = build_patch(rv, image=image, model=model)
    if patch is not None and fits.facts is not None:  # what the operator checks and shows (signatures.py)
        patch["metadata"]["annotations"] = {ANN_PAIR_FACTS: fits.facts.to_annotation()}
    return AppPlan(namespace, name, rv, rows, patch, message, str(meta.get("uid", "")))


def _fitted(plan: FieldPlan, held: str, failure: str) -> FieldPlan:
    """A planned change the signatures hold back (`held`) or could not be checked for (`failed`)."""
    if plan.result != "planned" or not (held or failure):
        return plan
    return FieldPlan("", failure, "failed") if failure else FieldPlan("", held, "held")


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
        conditions = status.get("conditions") or []
        # A pair refused for its signatures was never applied: a pair that fits may replace it.
        refused = any(isinstance(c, Mapping) and c.get("reason") == "SignatureMismatch" for c in conditions)
        if applied != wanted and not failed and not refused:
            return f"status.effective is {applied[0]} with model {applied[2]}, not the spec's pair"
    return ""


def bump_message(rows: tuple[Row, ...], *, image_policy: str, model_policy: str) -> str:
    """`image a -> b (policy p); model 7 -> 8 (policy q)`: the planned changes only, "" when none."""
    policies = {"image": image_policy, "model": model_policy}
    parts = [f"{r.field} {r.old} -> {r.new} (policy {policies[r.field]})" for r in rows if r.result == "planned"]
    return "; ".join(parts)


@dataclass
class _Blocked:
    """The fleet's evidence as one app's planning meets it: remembers what it passed over, for the row."""

    known: fleet.Fleet
    namespace: str
    seen: list[fleet.Evidence] = field(default_factory=list)

    def hit(self, evidence: fleet.Evidence | None) -> bool:
        if evidence is not None:
            self.seen.append(evidence)
        return evidence is not None

    def held(self, plan: FieldPlan) -> FieldPlan:
        """A field that stays while a newer candidate was passed over for the fleet's evidence is `held`."""
        if plan.result != "unchanged" or not self.seen:
            return plan
        evidence = self.seen[-1]
        return FieldPlan("", f"quarantined: {evidence.describe()}; {plan.reason}", "held")

    def note(self, plan: FieldPlan) -> FieldPlan:
        if plan.result != "planned" or not self.seen:
            return plan
        return FieldPlan(plan.new, f"{plan.reason}; passed over {self.seen[-1].describe()}", "planned", plan.digest)


def _plan_image(spec: ModelAppSpec, policy: Policy, tags: TagCatalog, quarantine: Quarantine,
                blocked: _Blocked | None = None) -> FieldPlan:  # fmt: skip
    """Newest allowed tag; a tag whose (digest, current model) pair failed before is passed over, and so is
    one whose digest or `repository:tag` the fleet quarantines for this namespace."""
    blocked = blocked or _Blocked(fleet.Fleet(), "")
    ref = parse_image(spec.image)  # the spec's pattern already guarantees a parseable reference
    excluded: set[str] = set()
    try:
        while True:
            decision = tags.decide(ref, policy, excluded=excluded)
            found = decision.found
            if found is None:
                return blocked.held(FieldPlan("", decision.reason, "unchanged"))
            candidate = ref.format(tag=found.value, digest=found.digest)
            if blocked.hit(blocked.known.image_block(blocked.namespace, candidate)):
                if found.value in excluded:
                    return blocked.held(FieldPlan("", f"{found.value} at {found.digest[:19]} is quarantined",
                                                  "unchanged"))  # fmt: skip
                excluded.add(found.value)
                continue
            if not quarantine.blocks(candidate, spec.model.version):
                new = ref.format(tag=found.value, digest=found.digest if ref.digest else None)
                return blocked.note(FieldPlan(new, f"{decision.reason} [{found.digest[:19]}]", "planned", found.digest))
            if found.value in excluded:  # a moved tag whose new digest is quarantined: nothing else to try
                return FieldPlan("", f"{found.value} at {found.digest[:19]} is quarantined", "unchanged")
            excluded.add(found.value)
    except DiscoveryError as exc:
        return FieldPlan("", str(exc), "failed")


def _plan_model(
    spec: ModelAppSpec,
    policy: Policy,
    models: ModelCatalog,
    quarantine: Quarantine,
    blocked: _Blocked | None = None,
    *,
    key: StoreKey,
) -> FieldPlan:
    """Newest complete allowed version; versions that failed with the current image are passed over, and so
    are versions whose manifest digest (or uri@version) the fleet quarantines for this namespace."""
    blocked = blocked or _Blocked(fleet.Fleet(), "")
    current = _image_identity(spec.image)
    excluded = {version for image, version in quarantine.pairs if _image_identity(image) & current}
    while True:
        try:
            decision = models.decide(key, policy, current=spec.model.version, excluded=excluded)
        except DiscoveryError as exc:
            return FieldPlan("", str(exc), "failed")
        found = decision.found
        if found is None:
            return blocked.held(FieldPlan("", decision.reason, "unchanged"))
        if not blocked.hit(blocked.known.model_block(blocked.namespace, spec.model.uri, found.value, found.digest)):
            plan = FieldPlan(found.value, f"{decision.reason} [sha256 {found.digest[:12]}]", "planned", found.digest)
            return blocked.note(plan)
        excluded.add(found.value)


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
    annotations = {**patch["metadata"].get("annotations", {}), ANN_BUMPED_AT: now, ANN_BUMP_REASON: message}
    meta = {**patch["metadata"], "annotations": annotations}
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


def run_bump(
    *,
    namespace: str | None,
    dry_run: bool,
    registry: RegistryClient,
    opener: StoreOpenerFn | None = None,
    trusted_stores: Sequence[str] = (),
    max_rollouts: int = 0,
    rollout_timeout: float = 900.0,
    quarantine_scope: fleet.Scope = "namespace",
    quarantine_from: Sequence[str] = (),
    poll: float = breaker.POLL_SECONDS,
) -> Outcome:
    """Plan every app, then patch (unless dry-run); a 409 re-reads the app and plans it again.

    `namespace` None: every namespace. The cluster is the one `kube` is configured for. The fleet's
    evidence is read from the apps listed, and from the `quarantine_from` namespaces too (cluster scope:
    only their evidence counts beyond its namespace). `max_rollouts` > 0: patch at most that many apps,
    wait for their rollouts, and stop (hold back) where a failed one's evidence counts."""
    tags = TagCatalog(registry)
    models = ModelCatalog(opener or tenant_opener(trusted_stores=trusted_stores))
    outcome = Outcome(max_rollouts=max_rollouts)
    objs = sorted(kube.list_objects(KIND, namespace), key=breaker.app_key)
    quarantined = fleet.Fleet.of([*objs, *_evidence_apps(namespace, quarantine_from)], scope=quarantine_scope,
                                 trusted=quarantine_from)  # fmt: skip

    def apply(obj: Mapping[str, Any], *, dry_run: bool,
              started: Callable[[Mapping[str, Any]], None] | None) -> list[Row]:  # fmt: skip
        return _apply(obj, tags=tags, models=models, dry_run=dry_run, quarantined=quarantined, started=started)

    breaker.run(objs, apply, outcome, quarantined, dry_run=dry_run, max_rollouts=max_rollouts, timeout=rollout_timeout,
                poll=poll)  # fmt: skip
    outcome.registry_requests = registry.requests_made
    outcome.storage_requests = models.request_count()
    return outcome


def _evidence_apps(namespace: str | None, quarantine_from: Sequence[str]) -> list[Mapping[str, Any]]:
    """ModelApps of the evidence namespaces the run does not list anyway; one that cannot be read is a warning."""
    found: list[Mapping[str, Any]] = []
    for other in dict.fromkeys(quarantine_from):
        if namespace is None or other == namespace:
            continue
        try:
            found.extend(kube.list_objects(KIND, other))
        except Exception as exc:  # RBAC, a namespace that is gone: that evidence is missing, the run goes on
            print(f"modelapp bump: no quarantine evidence from namespace {other}: {_one_line(exc)}", file=sys.stderr)
    return found


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


def _apply(obj: Mapping[str, Any], *, tags: TagCatalog, models: ModelCatalog, dry_run: bool,
           quarantined: fleet.Fleet | None = None,
           started: Callable[[Mapping[str, Any]], None] | None = None) -> list[Row]:  # fmt: skip
    """Plan one app and patch it; `started` hears of every app patched (the object the patch returned)."""
    for _ in range(MAX_CONFLICT_RETRIES):
        plan = plan_app(obj, tags=tags, models=models, quarantined=quarantined)
        if plan.patch is None or dry_run:
            return list(plan.rows)
        at = now()
        try:
            patched = kube.patch(KIND, plan.name, plan.namespace, annotate(plan.patch, now=at, message=plan.message))
        except kube.Gone:
            return [with_result(row, "unchanged", "deleted during the bump") for row in plan.rows]
        except kube.ApiError as exc:
            if exc.status != 409:
                return [with_result(row, "failed", f"the API server refused the patch: {exc}") for row in plan.rows]
            fresh = kube.get(KIND, plan.name, plan.namespace)
            if fresh is None:
                return [with_result(row, "unchanged", "deleted during the bump") for row in plan.rows]
            obj = fresh  # someone else changed it (another bump, a user): plan again from what is there now
            continue
        _record_event(plan, at)
        if started is not None:
            started(patched)
        return [with_result(row, "patched") if row.result == "planned" else row for row in plan.rows]
    return [with_result(row, "failed", "kept conflicting with other writers") for row in plan.rows]


def _record_event(plan: AppPlan, at: str) -> None:
    """The Bumped Event; one that cannot be created (403 without the chart's events rule) is a warning."""
    try:
        kube.create("Event", plan.namespace, build_event(plan, now=at, instance=socket.gethostname()))
    except kube.ApiError as exc:
        print(f"modelapp bump: no Event for {plan.namespace}/{plan.name}: {exc}", file=sys.stderr)


# -- output and the command line --------------------------------------------------------------------------


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
    breaker = parser.add_argument_group("fleet circuit breaker (docs/rollouts.md)")
    breaker.add_argument(
        "--max-rollouts", type=int, default=_env_int("MODELAPP_BUMP_MAX_ROLLOUTS", 0), metavar="N",
        help="Patch at most N apps at once and wait for their rollouts before the next N; the first one that fails "
        "(or does not settle in --rollout-timeout) holds back the rest. 0: no cap, no waiting (default; also "
        "$MODELAPP_BUMP_MAX_ROLLOUTS).",
    )  # fmt: skip
    breaker.add_argument("--rollout-timeout", type=float, default=900.0, metavar="SECONDS",
                         help="How long one batch may take to be Ready or rolled back (default 900).")  # fmt: skip
    breaker.add_argument(
        "--quarantine-scope", choices=fleet.SCOPES, default=os.environ.get("MODELAPP_QUARANTINE_SCOPE", "namespace"),
        help="Where a digest that failed counts: its own namespace (default) or the cluster (only failures "
        "attributable to the digest; also $MODELAPP_QUARANTINE_SCOPE).",
    )  # fmt: skip
    breaker.add_argument(
        "--quarantine-from", action="append", default=_env_list("MODELAPP_QUARANTINE_FROM"), metavar="NAMESPACE",
        help="With cluster scope, only failures in these namespaces count beyond their own (repeatable; also "
        "$MODELAPP_QUARANTINE_FROM); their ModelApps are read for evidence even when the run lists one namespace.",
    )  # fmt: skip
    parser.set_defaults(func=main)


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() else default


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
        if args.max_rollouts < 0 or args.rollout_timeout <= 0:
            print("modelapp bump: --max-rollouts must be 0 or more and --rollout-timeout above 0", file=sys.stderr)
            return 1
        if args.quarantine_scope not in fleet.SCOPES:
            print(f"modelapp bump: quarantine scope {args.quarantine_scope!r} (from $MODELAPP_QUARANTINE_SCOPE): use "
                  "namespace or cluster", file=sys.stderr)  # fmt: skip
            return 1
        outcome = run_bump(namespace=namespace, dry_run=args.dry_run, registry=registry,
                           trusted_stores=args.trusted_store, max_rollouts=args.max_rollouts,
                           rollout_timeout=args.rollout_timeout, quarantine_scope=args.quarantine_scope,
                           quarantine_from=args.quarantine_from)  # fmt: skip
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


__all__ = [
    "AppPlan", "FieldPlan", "Outcome", "Quarantine", "Rollout", "Row", "Trip", "add_parsers", "main", "plan_app",
    "render_json", "render_table", "run_bump", "tenant_opener",
]  # fmt: skip
