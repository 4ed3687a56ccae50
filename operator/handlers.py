"""kopf handlers: registration and nothing else. Importing this module registers them.

- startup: tune kopf once, create the peering object, create the `Engine` (engine.py) and keep it in memo.
- ModelApp events keep the engine's store current; create/update/resume and annotation changes (retry,
  rollback notes) run `Engine.converge` with every child.
- Every Deployment/Service/PDB/HPA/Ingress event notes which names are held (no API call); those of objects
  labelled managed-by=modelapp-operator are remembered at once, then handed to `Engine.on_child` in a child
  thread: drift repair, rollout progress, status (`child_event`: one handler per event, not two: kopf's cost
  per handler call, its kwargs, context and log line, is paid per watch event).

Shards (`modelapp run --shard NAME`, docs/scaling.md): the ModelApp handlers carry a `when` filter
(`in_shard`), so kopf is blind to another shard's ModelApps (no handler, no diff-base or progress write);
the event handler forgets a ModelApp that leaves the shard (its label changed), and the new shard sees the
label change as an update of `metadata.labels` (or as a create, when no replica ever handled it) and
converges it. The engine checks the shard again at the start of every pass (`Engine.owns`), so a pass
that was already queued in the old shard writes nothing.

No finalizers on ModelApps: owner references let the garbage collector delete the children. That is also
why there is no kopf timer for periodic resync (kopf puts a finalizer on every object with a timer or
daemon): progress is noticed from the children's own watch events. kopf's own progress and diff-base are
kept apart: its diff-base in memory (`diffbase.py`: no PATCH after each handling), its progress (written
only when a handler fails or waits) in `modelapp.io/*` annotations, which are left out of the diffs, so
its writes never re-trigger `reconcile`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import re
from collections.abc import Mapping
from typing import Any

import kopf

from modelapp_operator import kube, metrics
from modelapp_operator.diffbase import MemoryDiffBaseStorage, QuietProgressStorage
from modelapp_operator.engine import Engine
from modelapp_operator.names import GROUP, KIND, LABEL_MANAGED_BY, LABEL_SHARD, MANAGER, PLURAL, VERSION
from modelapp_operator.settings import OperatorConfig, from_env
from modelapp_operator.smokepool import Logger

MODELAPPS = (GROUP, VERSION, PLURAL)
#: With a worker limit: how long kopf keeps a quiet object's worker, and with it its slot.
OBJECT_IDLE_SECONDS = 1.0
CHILD_KINDS = {"deployments": "Deployment", "services": "Service", "poddisruptionbudgets": "PodDisruptionBudget",
               "horizontalpodautoscalers": "HorizontalPodAutoscaler", "ingresses": "Ingress"}


class QuietEventHandlers(logging.Filter):
    """Drops kopf's "Handler 'child_event' succeeded." (and `modelapp_seen`'s): kopf logs one at INFO after every
    handler call, so these two wrote a line per watch event (~15 per new ModelApp), formatted and written in
    the event loop. Their failures are still logged, and `reconcile`'s successes (operators and tests read them).
    A handler's failure because the API server was busy is lowered from ERROR to WARNING (`BUSY`), and kopf's false
    alarm after it purged its last progress annotation is dropped (`ALL_REMOVED`)."""

    PREFIXES = ("Handler 'child_event'", "Handler 'modelapp_seen'")
    #: What `Engine.converge` says of a pass the API server could not take (`kube.transient`): kopf logs it at ERROR
    #: ("failed temporarily") and posts it so; it is retried in seconds and expected in a burst: a WARNING.
    BUSY = "the API server could not take a request"
    #: kopf's check of its own PATCH after a retried handler, when that PATCH removed the last annotations (its
    #: progress): the API server drops the emptied map, kopf's check compares it with a map of nulls and warns.
    #: Nothing is inconsistent: the annotations it removed are gone.
    ALL_REMOVED = re.compile(r"Merge-patching finished with inconsistencies: \(\('remove', \('metadata', "
                             r"'annotations'\), \{'[^']+': None(, '[^']+': None)*\}, None\),\)")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        if not isinstance(message, str):
            return True
        if record.levelno == logging.ERROR and " failed temporarily" in message and self.BUSY in message:
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        if self.ALL_REMOVED.fullmatch(message):
            return False
        return not (message.endswith(" succeeded.") and message.startswith(self.PREFIXES))


def _namespaced(namespace: str | None) -> str:
    """ModelApps and their children are namespaced; kopf types the namespace as optional."""
    if namespace is None:
        raise kopf.PermanentError("a cluster-scoped object where a namespaced one was expected")
    return namespace


def _config(memo: Any) -> OperatorConfig:
    config = getattr(memo, "config", None)
    return config if isinstance(config, OperatorConfig) else from_env()


def _engine(memo: Any) -> Engine:
    """The engine `configure` made (kopf runs startup handlers before any watch starts)."""
    engine = getattr(memo, "engine", None)
    if not isinstance(engine, Engine):
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return engine


@kopf.on.startup()
def configure(*, settings: kopf.OperatorSettings, memo: Any, logger: Logger, **_: Any) -> None:
    """Tune kopf once: explicit watch timeouts, annotation storage, posting level, quiet event handlers,
    peering object."""
    config = _config(memo)
    settings.watching.server_timeout = config.server_timeout
    settings.watching.client_timeout = config.client_timeout
    settings.watching.connect_timeout = config.connect_timeout
    settings.persistence.progress_storage = QuietProgressStorage(prefix="modelapp.io")
    memo.diffbase = MemoryDiffBaseStorage(kind=KIND)  # no PATCH of the ModelApp after each handling (diffbase.py)
    settings.persistence.diffbase_storage = memo.diffbase
    settings.persistence.finalizer = "modelapp.io/kopf-finalizer"
    settings.posting.level = logging.getLevelName(config.posting_level)
    settings.execution.max_workers = config.workers
    # Objects beyond the limit wait as their raw event, not as a handling state (settings.py, OBJECT_WORKERS);
    # a worker whose object is quiet for a second gives its slot up (kopf's default keeps it for 5 s).
    settings.queueing.worker_limit = config.object_workers or None
    if config.object_workers:  # a slot given up sooner; without a limit, kopf's own idle time (nothing waits)
        settings.queueing.idle_timeout = OBJECT_IDLE_SECONDS
    settings.peering.stealth = True
    objects = logging.getLogger("kopf.objects")
    if not any(isinstance(f, QuietEventHandlers) for f in objects.filters):
        objects.addFilter(QuietEventHandlers())
    settings.peering.lifetime = config.peering_lifetime
    if not config.standalone:
        for namespace in config.namespaces or ([None] if config.all_namespaces else []):
            if kube.ensure_peering(config.peering, namespace):
                logger.info(f"Created peering object {config.peering!r} in {namespace or 'the cluster'}.")
    memo.engine = Engine(config)


def in_shard(*, body: kopf.Body, memo: Any, **_: Any) -> bool:
    """kopf's `when` filter: the ModelApp belongs to this replica's shard (every one, when it has none)."""
    return _config(memo).owns((body.get("metadata", {}).get("labels") or {}).get(LABEL_SHARD))


@kopf.on.event(*MODELAPPS)
async def modelapp_seen(*, type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    """Keep the newest ModelApp in the store (kopf runs event handlers before the create/update handlers);
    one of another shard is forgotten (it may just have moved away)."""
    if type == "DELETED" or not _engine(memo).owns(body):
        # with the version it left at, so that a late answer to a write sent before cannot bring it back
        _engine(memo).forget(KIND, body.metadata.namespace or "", body.metadata.name or "",
                             version=body.metadata.get("resourceVersion"))  # fmt: skip
        memo.diffbase.forget(str(body.metadata.uid))  # if it comes back, it is new again: a full pass
    else:
        _engine(memo).remember(KIND, body)


@kopf.on.resume(*MODELAPPS, when=in_shard)
@kopf.on.create(*MODELAPPS, when=in_shard)
@kopf.on.update(*MODELAPPS, field="spec", when=in_shard)
@kopf.on.update(*MODELAPPS, field="metadata.annotations", when=in_shard)
@kopf.on.update(*MODELAPPS, field="metadata.labels", when=in_shard)  # a ModelApp that moved into this shard
def reconcile(*, name: str, namespace: str | None, body: kopf.Body, reason: str, memo: Any, logger: Logger,
              **_: Any) -> None:  # fmt: skip
    """Level-based: the same spec and history always yield the same children and the same status.

    kopf's diff-base lives in memory, so after a restart, or when a ModelApp moves into this shard, kopf says
    "create": for a ModelApp that already has a status that is a resume (its children may exist)."""
    if reason == "create" and (body.get("status") or {}).get("observedGeneration") is not None:
        reason = "resume"
    engine = _engine(memo)
    engine.remember(KIND, body)
    with metrics.timed("reconcile"):
        engine.converge(name=name, namespace=_namespaced(namespace), logger=logger, everything=True, reason=str(reason))


def _owner(body: Mapping[str, Any]) -> str | None:
    refs = body.get("metadata", {}).get("ownerReferences") or []
    return next((r["name"] for r in refs if r.get("kind") == KIND and r.get("controller")), None)


@kopf.on.event("apps", "v1", "deployments")
@kopf.on.event("", "v1", "services")
@kopf.on.event("policy", "v1", "poddisruptionbudgets")
@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers")
@kopf.on.event("networking.k8s.io", "v1", "ingresses")
async def child_event(*, type: str | None, body: kopf.Body, namespace: str | None, resource: kopf.Resource,
                      memo: Any, logger: Logger, **_: Any) -> None:  # fmt: skip
    """Every object of the child kinds, ours or not: which names are held (`cache.Names`), so that a new
    ModelApp's children need no GET to learn that their names are free. Ours (labelled managed-by=modelapp-operator):
    remembered at once (in the event loop); then the rest in a child thread (`CHILD_THREADS`). kopf awaits
    this per object, so one child's events stay in order.

    `type` is empty for the initial listing: the child is only remembered (resume covers the rest). An event of
    the very version the store keeps is the echo of our own write (`Store.holds`: every write's answer is kept
    before its watch event arrives, or the event comes first and is handled as any other): the pass that wrote it
    decided from that answer, so a second pass would decide the same from the same objects. Skipped, it costs
    nothing in the thread pool: two passes per new ModelApp (its Deployment's and its Service's ADDED).
    """
    engine, kind, namespace = _engine(memo), CHILD_KINDS[resource.plural], _namespaced(namespace)
    engine.names.note(kind, namespace, body.metadata.name or "", present=type != "DELETED")
    if (body.get("metadata", {}).get("labels") or {}).get(LABEL_MANAGED_BY) != MANAGER:
        return  # not ours (kopf's labels= filter is client-side too: one check here instead of a second handler)
    name, version = body.metadata.name or "", body.metadata.get("resourceVersion")
    if type == "DELETED":
        engine.forget(kind, namespace, name, version=version)
    elif type and engine.store.holds(kind, namespace, name, version):
        return  # the echo of our own write: its answer was kept, and the pass that wrote it decided from it
    else:
        engine.remember(kind, body)
    owner = _owner(body)
    if owner is None or engine.store.deleting(KIND, namespace, owner) is not False or not type:
        return  # not owned by a ModelApp, its ModelApp unknown (not ours, another shard's) or going; or a listing
    work = functools.partial(engine.on_child, kind=kind, event=type, body=body, owner=owner, namespace=namespace,
                             logger=logger)  # fmt: skip
    # kopf.event() and kopf's loggers read context variables: carry them into the thread, as kopf does.
    # In the child threads a namespace at a time (fairness.py), not first in first out: a tenant's flood of events
    # does not hold another namespace's behind it.
    run = functools.partial(contextvars.copy_context().run, work)
    await asyncio.wrap_future(engine.child_pool.submit(namespace, run))
