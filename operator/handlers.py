"""kopf handlers: thin glue of parse -> decide -> build -> apply -> status. Importing this module registers them.

- ModelApp create/update/resume, and changes of its annotations (retry, rollback notes): `converge`.
- Deployment/Service/PDB events (only objects labelled managed-by=modelapp-operator): `converge` for the
  owner too, which also repairs a deleted or edited child (drift repair) and notices rollout progress.
`converge` asks `rollout.decide` which (image, model) pair to apply (the spec's, or the last good one while
the spec's is quarantined), runs the smoke test when it is due, applies the children built from that pair,
writes status, then posts Events and counts metrics for the transitions the new status records. One pass
at a time per ModelApp (`_Turns`) across kopf's threads and the child threads; everything it decides from
is in the cluster, so a restarted operator (or another replica taking over) continues a rollback where
the last one stopped.
What it reads comes from `STORE` (`cache.py`): the objects as the watch streams and our own writes'
responses delivered them, newest first; the API server is read only on a miss. A child is applied only
when it is missing or has drifted from the desired manifest, and status only when it changes, so an
unchanged world costs no API call at all (idle means idle) and events caused by our own writes end there.
No finalizers on ModelApps: owner references let the garbage collector delete the children. That is
also why there is no kopf timer for periodic resync (kopf puts a finalizer on every object with a timer
or daemon): progress is noticed from the children's own watch events.
kopf's own progress and diff-base are kept in `modelapp.io/*` annotations, not in the (structural) status;
kopf leaves annotations with its own prefix out of its diffs, so its writes never re-trigger `reconcile`.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import functools
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import kopf

from modelapp_operator import builders, cache, kube, metrics, rollout, smoke, status
from modelapp_operator.settings import OperatorConfig, from_env
from modelapp_operator.spec import InvalidSpec, ModelAppSpec, SmokeTest, check_name, parse_spec

MODELAPPS = (builders.GROUP, builders.VERSION, builders.PLURAL)
MANAGED = {builders.LABEL_MANAGED_BY: builders.MANAGER}
CHILD_KINDS = {"deployments": "Deployment", "services": "Service", "poddisruptionbudgets": "PodDisruptionBudget"}
#: What the operator knows of its ModelApps and their children (see `cache.py`).
STORE = cache.Store()
#: Child events (rollout progress, status, drift repair) run in threads of their own, not in kopf's pool:
#: in a burst of creates kopf's FIFO pool holds every ModelApp's reconcile first, and a Deployment that
#: became available would wait for all of them before its ModelApp could say Ready.
CHILD_THREADS = 16
_CHILD_POOL = ThreadPoolExecutor(max_workers=CHILD_THREADS, thread_name_prefix="modelapp-child")


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
    settings.execution.max_workers = config.workers
    settings.peering.stealth = True
    settings.peering.lifetime = config.peering_lifetime
    if not config.standalone:
        for namespace in config.namespaces or ([None] if config.all_namespaces else []):
            if kube.ensure_peering(config.peering, namespace):
                logger.info(f"Created peering object {config.peering!r} in {namespace or 'the cluster'}.")


# --- what the operator knows ---------------------------------------------------------------------


@kopf.on.event(*MODELAPPS)
async def modelapp_seen(*, type: str | None, body: kopf.Body, **_: Any) -> None:
    """Keep the newest ModelApp in `STORE` (kopf runs event handlers before the create/update handlers)."""
    if type == "DELETED":
        STORE.drop("ModelApp", body.metadata.namespace or "", body.metadata.name or "")
    else:
        STORE.put("ModelApp", body)


def _owner(body: Mapping[str, Any]) -> str | None:
    refs = body.get("metadata", {}).get("ownerReferences") or []
    return next((r["name"] for r in refs if r.get("kind") == builders.KIND and r.get("controller")), None)


def _read(kind: str, name: str, namespace: str, *, miss: bool = True) -> Mapping[str, Any] | None:
    """The object from `STORE`; on a miss from the API server when `miss` (else None), remembered."""
    known = STORE.get(kind, namespace, name)
    if known is not None or not miss:
        return known
    fresh = kube.get(kind, name, namespace)
    return STORE.put(kind, fresh) if fresh is not None else None


# --- converge -------------------------------------------------------------------------------------


class _Turns:
    """Whose turn it is to converge a ModelApp: one pass at a time per ModelApp, in any thread.

    A ModelApp event (`wait=True`) waits for the running pass. A child event does not (a thread blocked
    on a busy ModelApp helps nobody, and a burst of creates would block every child thread): it asks the
    running pass to go once more (`more`), and that pass then reads from `STORE` what the event brought.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running: set[tuple[str, str]] = set()
        self._again: set[tuple[str, str]] = set()

    def enter(self, key: tuple[str, str], *, wait: bool) -> bool:
        """True: the caller has the turn. False: a pass is running and will go once more."""
        with self._cond:
            if key in self._running and not wait:
                self._again.add(key)
                return False
            while key in self._running:
                self._cond.wait()
            self._running.add(key)
            return True

    def more(self, key: tuple[str, str]) -> bool:
        """At the end of a pass: True (the turn is kept) when one more was asked for, else the turn ends."""
        with self._cond:
            if key in self._again:
                self._again.discard(key)
                return True
            self._running.discard(key)
            self._cond.notify_all()
            return False

    def leave(self, key: tuple[str, str]) -> None:
        """The pass failed: end the turn (a pending request stays for the next pass)."""
        with self._cond:
            self._running.discard(key)
            self._cond.notify_all()


_TURNS = _Turns()


def _pod_proxy(namespace: str, pod: str) -> smoke.Transport:
    return smoke.pod_transport(namespace, pod, builders.PORT)


#: How the smoke test reaches a pod: (namespace, pod name) -> transport. The API server's pod proxy.
SMOKE_TRANSPORT: Callable[[str, str], smoke.Transport] = _pod_proxy
#: At most this many ready pods of a new revision get the golden request.
SMOKE_PODS = 3


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
        _remember("ModelApp", kube.patch_status(meta["name"], meta["namespace"], new))
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


def _remember(kind: str, obj: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return STORE.put(kind, obj) if obj is not None else None


def _ensure(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    """The child as stored: applied only when it is unknown, missing or drifted (no-op detection)."""
    meta = manifest["metadata"]
    known = STORE.get(manifest["kind"], meta["namespace"], meta["name"])
    if known is not None and not builders.drifted({k: manifest[k] for k in ("metadata", "spec")}, known):
        return known
    return STORE.put(manifest["kind"], kube.apply(manifest))


def _apply_children(app: Mapping[str, Any], spec: ModelAppSpec, config: OperatorConfig, *, everything: bool,
                    resumed: bool) -> dict[str, Mapping[str, Any]]:  # fmt: skip
    """Ensure the children of `spec` (every one, or only the Deployment); the children as stored, by kind.

    A child that must not exist (a PDB for one replica) is deleted when it is known, or on resume (the
    watch may not have listed it yet); otherwise its own watch event deletes it (`_repair_other`)."""
    meta = app["metadata"]
    ctx = builders.BuildContext(serving_image=config.serving_image, revision_history_limit=config.revision_history)
    children = builders.build_children(meta["name"], meta["namespace"], spec, ctx)
    wanted = [builders.with_owner(m, name=meta["name"], uid=meta["uid"]) for m in children.apply]
    stored = {m["kind"]: _ensure(m) for m in wanted if everything or m["kind"] == "Deployment"}
    for kind, child in children.absent if everything else []:
        if resumed or STORE.get(kind, meta["namespace"], child) is not None:
            kube.delete(kind, child, meta["namespace"])
            STORE.drop(kind, meta["namespace"], child)
    return stored


def _write_status(app: Mapping[str, Any], spec: ModelAppSpec, decision: rollout.Decision,
                  deployment: Mapping[str, Any] | None, service: Mapping[str, Any] | None) -> bool:  # fmt: skip
    """Write the status for this decision (only when it changes); True when the revision history is now
    what the decision says."""
    meta, old = app["metadata"], app.get("status") or {}
    new = status.compute_status(
        name=meta["name"], namespace=meta["namespace"], generation=meta.get("generation", 0), spec=spec,
        deployment=deployment, service=service, old=old, now=_now(), overrides=decision.conditions,
        extra={"revisions": decision.revisions, "effective": rollout.effective_status(decision)},
    )  # fmt: skip
    patch = status.status_patch(old, new)
    if not patch:
        return True
    return _remember("ModelApp", kube.patch_status(meta["name"], meta["namespace"], patch)) is not None


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


def converge(*, name: str, namespace: str, config: OperatorConfig, logger: Logger, everything: bool,
             reason: str = "") -> None:  # fmt: skip
    """One level-based pass for a ModelApp (see the module docstring), one at a time per ModelApp (`_Turns`).
    `everything`: ensure every child (spec or annotation change, resume), else only a missing or drifted
    Deployment (child events). `reason` is kopf's cause: on "create" no child can exist yet, so a miss in
    `STORE` is not read back."""
    key = (namespace, name)
    if not _TURNS.enter(key, wait=everything):
        return
    try:
        _pass(name=name, namespace=namespace, config=config, logger=logger, everything=everything, reason=reason)
        while _TURNS.more(key):
            _pass(name=name, namespace=namespace, config=config, logger=logger, everything=False, reason="")
    except BaseException:
        _TURNS.leave(key)
        raise


def _pass(*, name: str, namespace: str, config: OperatorConfig, logger: Logger, everything: bool,
          reason: str) -> None:  # fmt: skip
    app = _read("ModelApp", name, namespace)
    if app is None or app["metadata"].get("deletionTimestamp"):
        return
    spec = _parse(app, strict=everything)
    if spec is None:
        return
    observed = _read("Deployment", name, namespace, miss=reason != "create")
    decision = _decide(app, spec, observed)
    applied_spec = decision.effective.apply_to(spec)
    stored = _apply_children(app, applied_spec, config, everything=everything, resumed=reason == "resume")
    deployment = stored.get("Deployment", observed)
    service = stored.get("Service") or _read("Service", name, namespace, miss=reason != "create")
    if _write_status(app, applied_spec, decision, deployment, service):
        _announce(app, decision, logger)
        metrics.record(namespace, decision.transitions, rolled_back=decision.rolled_back)
        metrics.record_bump(namespace, decision.transitions, app=app)
    if decision.spent:
        spent = {"metadata": {"annotations": dict.fromkeys(decision.spent)}}
        _remember("ModelApp", kube.patch("ModelApp", name, namespace, spent))


@kopf.on.resume(*MODELAPPS)
@kopf.on.create(*MODELAPPS)
@kopf.on.update(*MODELAPPS, field="spec")
@kopf.on.update(*MODELAPPS, field="metadata.annotations")
def reconcile(*, name: str, namespace: str | None, body: kopf.Body, reason: str, memo: Any, logger: Logger,
              **_: Any) -> None:  # fmt: skip
    """Level-based: the same spec and history always yield the same children and the same status."""
    STORE.put("ModelApp", body)
    with metrics.timed("reconcile"):
        converge(name=name, namespace=_namespaced(namespace), config=_config(memo), logger=logger, everything=True,
                 reason=str(reason))  # fmt: skip


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
        STORE.put(kind, kube.apply(desired))


def _see(kind: str, event: str, body: kopf.Body) -> None:
    """Remember a child as the watch delivered it (forget it when deleted)."""
    if event == "DELETED":
        STORE.drop(kind, body.metadata.namespace or "", body.metadata.name or "")
    else:
        STORE.put(kind, body)


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("", "v1", "services", labels=MANAGED)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=MANAGED)
async def child_event(*, type: str | None, body: kopf.Body, namespace: str | None, resource: kopf.Resource,
                      memo: Any, logger: Logger, **_: Any) -> None:  # fmt: skip
    """Remember the child at once (in the event loop); then drift repair, rollout progress and status in a
    child thread (`CHILD_THREADS`). kopf awaits this per object, so one child's events stay in order.

    `type` is empty for the initial listing: the child is only remembered (resume covers the rest).
    """
    kind, namespace = CHILD_KINDS[resource.plural], _namespaced(namespace)
    _see(kind, type or "", body)
    owner = _owner(body)
    app = STORE.get("ModelApp", namespace, owner) if owner else None
    if owner is None or app is None or app["metadata"].get("deletionTimestamp") or not type:
        return
    work = functools.partial(_on_child, kind=kind, event=type, body=body, owner=owner, namespace=namespace,
                             config=_config(memo), logger=logger)  # fmt: skip
    # kopf.event() and kopf's loggers read context variables: carry them into the thread, as kopf does.
    await asyncio.get_running_loop().run_in_executor(_CHILD_POOL, contextvars.copy_context().run, work)


def _on_child(*, kind: str, event: str, body: kopf.Body, owner: str, namespace: str, config: OperatorConfig,
              logger: Logger) -> None:  # fmt: skip
    with metrics.timed("child_event"):
        app = STORE.get("ModelApp", namespace, owner)
        if app is None:
            return
        if kind != "Deployment":
            _repair_other(kind=kind, event=event, body=body, app=app, config=config, logger=logger)
        if kind != "PodDisruptionBudget":
            converge(name=owner, namespace=namespace, config=config, logger=logger, everything=False)
