"""kopf handlers: thin glue of parse -> build -> apply -> status. Importing this module registers them.

- ModelApp create/update/resume: parse the spec once (an invalid spec becomes
  Ready=False/InvalidSpec and `kopf.PermanentError`, so kopf does not retry until the spec changes),
  build the children, server-side apply them with owner references, write status.
- Deployment/Service/PDB events (only objects labelled managed-by=modelapp-operator): the owner's
  status follows its Deployment and Service; a deleted or edited child is re-applied (drift repair).
- Three in-memory indices (ModelApps, Deployments, Services by owner) let child events compute status
  without extra GETs.
No finalizers on ModelApps: owner references let the garbage collector delete the children. That is
also why there is no kopf timer for periodic resync (kopf puts a finalizer on every object with a timer
or daemon): drift repair is event-driven, from the children's own watch events.
kopf's own progress and diff-base are kept in `modelapp.io/*` annotations, not in the (structural) status.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from modelapp_operator import builders, kube, status
from modelapp_operator.settings import OperatorConfig, from_env
from modelapp_operator.spec import InvalidSpec, ModelAppSpec, check_name, parse_spec

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


@kopf.index("apps", "v1", "deployments", labels=MANAGED)
def deployment_index(
    *, namespace: str | None, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], Mapping[str, Any]] | None:
    """(namespace, owner name) -> the owned Deployment."""
    owner = _owner(body)
    return {(_namespaced(namespace), owner): dict(body)} if owner else None


@kopf.index("", "v1", "services", labels=MANAGED)
def service_index(
    *, namespace: str | None, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], Mapping[str, Any]] | None:
    """(namespace, owner name) -> the owned Service."""
    owner = _owner(body)
    return {(_namespaced(namespace), owner): dict(body)} if owner else None


def _one(index: kopf.Index[Any, Any], key: tuple[str, str]) -> Mapping[str, Any] | None:
    return next(iter(index.get(key, [])), None)


# --- reconcile ------------------------------------------------------------------------------------


def _parse(name: str, namespace: str, spec: Mapping[str, Any], generation: int, old: Mapping[str, Any]) -> ModelAppSpec:
    """The spec, or a written InvalidSpec status and PermanentError (no retry until the spec changes)."""
    try:
        check_name(name)
        return parse_spec(spec)
    except InvalidSpec as exc:
        kube.patch_status(
            name, namespace, status.invalid_status(generation=generation, message=str(exc), old=old, now=_now())
        )
        raise kopf.PermanentError(f"invalid spec: {exc}") from None


def _apply_all(name: str, namespace: str, uid: str, spec: ModelAppSpec, config: OperatorConfig) -> dict[str, Any]:
    """Apply every child with its owner reference; delete the ones that must not exist. Kind -> stored object."""
    ctx = builders.BuildContext(serving_image=config.serving_image, revision_history_limit=config.revision_history)
    children = builders.build_children(name, namespace, spec, ctx)
    applied = {m["kind"]: kube.apply(builders.with_owner(m, name=name, uid=uid)) for m in children.apply}
    for kind, child in children.absent:
        kube.delete(kind, child, namespace)
    return applied


def _write_status(*, name: str, namespace: str, body: Mapping[str, Any], spec: ModelAppSpec,
                  deployment: Mapping[str, Any] | None, service: Mapping[str, Any] | None) -> None:  # fmt: skip
    old = body.get("status") or {}
    new = status.compute_status(
        name=name, namespace=namespace, generation=body["metadata"].get("generation", 0), spec=spec,
        deployment=deployment, service=service, old=old, now=_now(),
    )  # fmt: skip
    patch = status.status_patch(old, new)
    if patch:
        kube.patch_status(name, namespace, patch)


@kopf.on.resume(*MODELAPPS)
@kopf.on.create(*MODELAPPS)
@kopf.on.update(*MODELAPPS, field="spec")
def reconcile(
    *, name: str, namespace: str | None, uid: str, spec: kopf.Spec, body: kopf.Body, memo: Any, **_: Any
) -> None:
    """Level-based: the same spec always yields the same children and the same status."""
    namespace = _namespaced(namespace)
    generation = body["metadata"].get("generation", 0)
    parsed = _parse(name, namespace, spec, generation, body.get("status") or {})
    applied = _apply_all(name, namespace, uid, parsed, _config(memo))
    _write_status(
        name=name, namespace=namespace, body=body, spec=parsed,
        deployment=applied.get("Deployment"), service=applied.get("Service"),
    )  # fmt: skip


# --- children -------------------------------------------------------------------------------------


def _repair(*, kind: str, event: str, body: Mapping[str, Any], app: Mapping[str, Any], config: OperatorConfig,
            logger: Logger) -> None:  # fmt: skip
    """Re-apply a deleted or edited child; an unwanted PDB is deleted. Invalid specs are left alone."""
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


def _refresh_status(*, kind: str, event: str, body: Mapping[str, Any], app: Mapping[str, Any],
                    indices: Mapping[str, Any]) -> None:  # fmt: skip
    """The owner's status from this Deployment/Service event plus the other one from its index."""
    try:
        parsed = parse_spec(app.get("spec") or {})
    except InvalidSpec:
        return
    meta = app["metadata"]
    key = (meta["namespace"], meta["name"])
    gone = event == "DELETED"
    deployment = (None if gone else body) if kind == "Deployment" else _one(indices["deployment_index"], key)
    service = (None if gone else body) if kind == "Service" else _one(indices["service_index"], key)
    _write_status(
        name=meta["name"], namespace=meta["namespace"], body=app, spec=parsed, deployment=deployment, service=service
    )


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("", "v1", "services", labels=MANAGED)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=MANAGED)
def child_event(*, type: str, body: kopf.Body, namespace: str | None, resource: kopf.Resource, memo: Any,
                logger: Logger, **kwargs: Any) -> None:  # fmt: skip
    """Drift repair for any child; status refresh when the Deployment or the Service changed.

    kopf passes the indices by their function names in `kwargs`; `type` is empty for the initial
    listing (resume covers that).
    """
    owner, namespace = _owner(body), _namespaced(namespace)
    app = _one(kwargs["modelapp_index"], (namespace, owner)) if owner else None
    if owner is None or app is None or app["metadata"].get("deletionTimestamp") or not type:
        return
    kind = CHILD_KINDS[resource.plural]
    _repair(kind=kind, event=type, body=body, app=app, config=_config(memo), logger=logger)
    if kind != "PodDisruptionBudget":
        _refresh_status(kind=kind, event=type, body=body, app=app, indices=kwargs)
