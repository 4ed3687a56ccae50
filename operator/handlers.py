"""kopf handlers: thin glue of parse -> decide -> build -> apply -> status. Importing this module registers them.

- ModelApp create/update/resume, and changes of its annotations (retry, rollback notes): `converge`.
- Deployment/Service/PDB events (only objects labelled managed-by=modelapp-operator): `converge` for the
  owner too, which also repairs a deleted or edited child (drift repair) and notices rollout progress.
`converge` reads the ModelApp and its Deployment fresh from the API server, asks `rollout.decide` which
(image, model) pair to apply (the spec's, or the last good one while the spec's is quarantined), runs the
smoke test when it is due, applies the children built from that pair, writes status, then posts Events
and counts metrics for the transitions the new status records. One lock per ModelApp serialises it
across kopf's worker threads; everything it decides from is in the cluster, so a restarted operator (or
another replica taking over) continues a rollback where the last one stopped.
No finalizers on ModelApps: owner references let the garbage collector delete the children. That is
also why there is no kopf timer for periodic resync (kopf puts a finalizer on every object with a timer
or daemon): progress is noticed from the children's own watch events.
kopf's own progress and diff-base are kept in `modelapp.io/*` annotations, not in the (structural) status.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf

from modelapp_operator import builders, kube, metrics, rollout, smoke, status
from modelapp_operator.settings import OperatorConfig, from_env
from modelapp_operator.spec import InvalidSpec, ModelAppSpec, SmokeTest, check_name, parse_spec

MODELAPPS = (builders.GROUP, builders.VERSION, builders.PLURAL)
MANAGED = {builders.LABEL_MANAGED_BY: builders.MANAGER}
CHILD_KINDS = {"deployments": "Deployment", "services": "Service", "poddisruptionbudgets": "PodDisruptionBudget"}


Logger = logging.Logger | logging.LoggerAdapter[Any]


def _namespaced(namespace: str | None) -> str:
    """ModelApps and their children are namespaced; kopf types the namespace as optional."""
    if namespace is None:
        raise kopf.PermanentError("a cluster-scoped object where a namespaced one was expected")
    return namespace


def _config(memo: Any) -> OperatorConfig:
    config = getattr(memo, "config", None)
    return config if isinstance(config, OperatorConfig) else from_env()


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@kopf.on.startup()
def configure(*, settings: kopf.OperatorSettings, memo: Any, logger: Logger, **_: Any) -> None:
    """Tune kopf once: explicit watch timeouts, annotation storage, posting level, peering object."""
    config = _config(memo)
    settings.watching.server_timeout = config.server_timeout
    settings.watching.client_timeout = config.client_timeout
    settings.watching.connect_timeout = config.connect_timeout
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="modelapp.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="modelapp.io")
    settings.persistence.finalizer = "modelapp.io/kopf-finalizer"
    settings.posting.level = logging.getLevelName(config.posting_level)
    settings.execution.max_workers = 16
    settings.peering.stealth = True
    settings.peering.lifetime = config.peering_lifetime
    if not config.standalone:
        for namespace in config.namespaces or ([None] if config.all_namespaces else []):
            if kube.ensure_peering(config.peering, namespace):
                logger.info(f"Created peering object {config.peering!r} in {namespace or 'the cluster'}.")


# --- indices --------------------------------------------------------------------------------------


@kopf.index(*MODELAPPS)
def modelapp_index(
    *, name: str, namespace: str | None, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], Mapping[str, Any]]:
    """(namespace, name) -> the ModelApp as last seen (spec, uid, generation, status)."""
    return {(_namespaced(namespace), name): dict(body)}


def _owner(body: Mapping[str, Any]) -> str | None:
    refs = body.get("metadata", {}).get("ownerReferences") or []
    return next((r["name"] for r in refs if r.get("kind") == builders.KIND and r.get("controller")), None)


def _one(index: kopf.Index[Any, Any], key: tuple[str, str]) -> Mapping[str, Any] | None:
    return next(iter(index.get(key, [])), None)


# --- converge -------------------------------------------------------------------------------------

_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _pod_proxy(namespace: str, pod: str) -> smoke.Transport:
    return smoke.pod_transport(namespace, pod, builders.PORT)


#: How the smoke test reaches a pod: (namespace, pod name) -> transport. The API server's pod proxy.
SMOKE_TRANSPORT: Callable[[str, str], smoke.Transport] = _pod_proxy
#: At most this many ready pods of a new revision get the golden request.
SMOKE_PODS = 3


def _lock(namespace: str, name: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault((namespace, name), threading.Lock())


def _parse(app: Mapping[str, Any], *, strict: bool) -> ModelAppSpec | None:
    """The spec; or None (child events leave invalid specs alone); or, when `strict`, a written
    InvalidSpec status and PermanentError (kopf does not retry until the spec changes)."""
    meta = app["metadata"]
    try:
        check_name(meta["name"])
        return parse_spec(app.get("spec") or {})
    except InvalidSpec as exc:
        if not strict:
            return None
        new = status.invalid_status(generation=meta.get("generation", 0), message=str(exc),
                                    old=app.get("status") or {}, now=_now())  # fmt: skip
        kube.patch_status(meta["name"], meta["namespace"], new)
        raise kopf.PermanentError(f"invalid spec: {exc}") from None


def _is_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return not pod["metadata"].get("deletionTimestamp") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
    )


def _ready_pods(name: str, namespace: str, pair: rollout.Pair) -> list[str]:
    """Ready pods whose template annotations name `pair` (pods carry their template's annotations)."""
    pods = kube.list_objects("Pod", namespace, selector=builders.selector(name))
    return [p["metadata"]["name"] for p in pods
            if rollout.Pair.from_template({"spec": {"template": p}}) == pair and _is_ready(p)]  # fmt: skip


def _smoke(name: str, namespace: str, test: SmokeTest, pair: rollout.Pair) -> rollout.SmokeVerdict | None:
    """The golden request to up to SMOKE_PODS ready pods of `pair`; None when none is ready (yet)."""
    pods = _ready_pods(name, namespace, pair)[:SMOKE_PODS]
    for pod in pods:
        verdict = smoke.run(test, name, SMOKE_TRANSPORT(namespace, pod))
        if not verdict.passed:
            return rollout.SmokeVerdict(False, f"pod {pod}: {verdict.message}")
    return rollout.SmokeVerdict(True, f"{len(pods)} pod(s) answered as expected") if pods else None


def _decide(app: Mapping[str, Any], spec: ModelAppSpec, deployment: Mapping[str, Any] | None) -> rollout.Decision:
    meta = app["metadata"]
    inputs: dict[str, Any] = {
        "spec": spec, "revisions": (app.get("status") or {}).get("revisions") or [], "deployment": deployment,
        "annotations": meta.get("annotations") or {}, "now": _now(),
    }  # fmt: skip
    decision = rollout.decide(**inputs)
    if decision.smoke_due and spec.rollout.smoke_test is not None:
        verdict = _smoke(meta["name"], meta["namespace"], spec.rollout.smoke_test, decision.effective)
        decision = rollout.decide(**inputs, smoke=verdict) if verdict else decision
    return decision


def _apply_children(app: Mapping[str, Any], spec: ModelAppSpec, config: OperatorConfig, *, everything: bool,
                    deployment: Mapping[str, Any] | None) -> tuple[Mapping[str, Any] | None, list[str]]:  # fmt: skip
    """Apply the children of `spec` (every one, or only a missing or drifted Deployment); the Deployment
    as stored, and the kinds written."""
    meta = app["metadata"]
    ctx = builders.BuildContext(serving_image=config.serving_image, revision_history_limit=config.revision_history)
    children = builders.build_children(meta["name"], meta["namespace"], spec, ctx)
    wanted = {m["kind"]: builders.with_owner(m, name=meta["name"], uid=meta["uid"]) for m in children.apply}
    if not everything:
        desired = wanted["Deployment"]
        if deployment is not None and not builders.drifted({k: desired[k] for k in ("metadata", "spec")}, deployment):
            return deployment, []
        wanted = {"Deployment": desired}
    applied = {kind: kube.apply(manifest) for kind, manifest in wanted.items()}
    for kind, child in children.absent if everything else []:
        kube.delete(kind, child, meta["namespace"])
    return applied["Deployment"], list(applied)


def _write_status(app: Mapping[str, Any], spec: ModelAppSpec, decision: rollout.Decision,
                  deployment: Mapping[str, Any] | None, service: Mapping[str, Any] | None) -> bool:  # fmt: skip
    """Write the status for this decision; True when the revision history is now what the decision says."""
    meta, old = app["metadata"], app.get("status") or {}
    new = status.compute_status(
        name=meta["name"], namespace=meta["namespace"], generation=meta.get("generation", 0), spec=spec,
        deployment=deployment, service=service, old=old, now=_now(), overrides=decision.conditions,
        extra={"revisions": decision.revisions, "effective": rollout.effective_status(decision)},
    )  # fmt: skip
    patch = status.status_patch(old, new)
    return kube.patch_status(meta["name"], meta["namespace"], patch) if patch else True


def _announce(raw: Mapping[str, Any], decision: rollout.Decision, logger: Logger) -> None:
    """Events for what the new status records (posted once: transitions come from the persisted history)."""
    app = kopf.Body(cast(kopf.RawBody, dict(raw)))
    for t in decision.transitions:
        what = t.pair.describe()
        if t.after == rollout.PROGRESSING_ and t.reason != "RollingBack":
            kopf.event(app, type="Normal", reason="RolloutStarted", message=f"rolling out {what}")
        elif t.after == rollout.AVAILABLE and t.before == rollout.PROGRESSING_:
            kopf.event(app, type="Normal", reason="RolloutSucceeded", message=f"{what} is available")
        elif t.after == rollout.FAILED:
            kopf.event(app, type="Warning", reason="RolloutFailed", message=f"{what}: {t.reason}: {t.message}"[:1024])
        elif t.after == rollout.ROLLEDBACK:
            kopf.event(app, type="Normal", reason="ManualRollback", message=f"left {what}: {t.message}"[:1024])
    if decision.rolled_back:
        message = next((c.message for c in decision.conditions if c.type == status.ROLLED_BACK), "")
        logger.warning(f"Rolled back: {message}")
        kopf.event(app, type="Warning", reason="RolledBack", message=message[:1024])


def converge(*, name: str, namespace: str, config: OperatorConfig, logger: Logger, everything: bool) -> None:
    """One level-based pass for a ModelApp (see the module docstring). `everything`: apply every child
    (spec or annotation change, resume), else only a missing or drifted Deployment (child events)."""
    with _lock(namespace, name):
        app = kube.get("ModelApp", name, namespace)
        if app is None or app["metadata"].get("deletionTimestamp"):
            return
        spec = _parse(app, strict=everything)
        if spec is None:
            return
        observed = kube.get("Deployment", name, namespace)
        decision = _decide(app, spec, observed)
        applied_spec = decision.effective.apply_to(spec)
        deployment, _ = _apply_children(app, applied_spec, config, everything=everything, deployment=observed)
        if _write_status(app, applied_spec, decision, deployment, kube.get("Service", name, namespace)):
            _announce(app, decision, logger)
            metrics.record(namespace, decision.transitions, rolled_back=decision.rolled_back)
        if decision.spent:
            kube.patch("ModelApp", name, namespace, {"metadata": {"annotations": dict.fromkeys(decision.spent)}})


@kopf.on.resume(*MODELAPPS)
@kopf.on.create(*MODELAPPS)
@kopf.on.update(*MODELAPPS, field="spec")
@kopf.on.update(*MODELAPPS, field="metadata.annotations")
def reconcile(*, name: str, namespace: str | None, memo: Any, logger: Logger, **_: Any) -> None:
    """Level-based: the same spec and history always yield the same children and the same status."""
    with metrics.timed("reconcile"):
        converge(name=name, namespace=_namespaced(namespace), config=_config(memo), logger=logger, everything=True)


# --- children -------------------------------------------------------------------------------------


def _repair_other(*, kind: str, event: str, body: Mapping[str, Any], app: Mapping[str, Any], config: OperatorConfig,
                  logger: Logger) -> None:  # fmt: skip
    """Re-apply a deleted or edited Service/PDB; an unwanted PDB is deleted. Invalid specs are left alone.

    The pair does not matter to these children, so the spec is built as written."""
    meta = app["metadata"]
    try:
        parsed = parse_spec(app.get("spec") or {})
    except InvalidSpec:
        return
    ctx = builders.BuildContext(serving_image=config.serving_image, revision_history_limit=config.revision_history)
    wanted = {m["kind"]: m for m in builders.build_children(meta["name"], meta["namespace"], parsed, ctx).apply}
    if kind not in wanted:
        if event != "DELETED":
            kube.delete(kind, body["metadata"]["name"], meta["namespace"])
        return
    desired = builders.with_owner(wanted[kind], name=meta["name"], uid=meta["uid"])
    if event == "DELETED" and kube.get("ModelApp", meta["name"], meta["namespace"]) is None:
        return  # the owner is being deleted: the garbage collector is at work
    if event == "DELETED" or builders.drifted({k: desired[k] for k in ("metadata", "spec")}, body):
        logger.info(f"Repairing {kind} {meta['namespace']}/{meta['name']} ({event.lower()}).")
        kube.apply(desired)


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("", "v1", "services", labels=MANAGED)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=MANAGED)
def child_event(*, type: str, body: kopf.Body, namespace: str | None, resource: kopf.Resource, memo: Any,
                logger: Logger, **kwargs: Any) -> None:  # fmt: skip
    """Drift repair for any child; rollout progress and status when the Deployment or the Service changed.

    kopf passes the index by its function name in `kwargs`; `type` is empty for the initial listing
    (resume covers that).
    """
    owner, namespace = _owner(body), _namespaced(namespace)
    app = _one(kwargs["modelapp_index"], (namespace, owner)) if owner else None
    if owner is None or app is None or app["metadata"].get("deletionTimestamp") or not type:
        return
    kind = CHILD_KINDS[resource.plural]
    with metrics.timed("child_event"):
        config = _config(memo)
        if kind != "Deployment":
            _repair_other(kind=kind, event=type, body=body, app=app, config=config, logger=logger)
        if kind != "PodDisruptionBudget":
            converge(name=owner, namespace=namespace, config=config, logger=logger, everything=False)
