"""kopf's state storages, chosen so that handling a ModelApp writes nothing to it when the handler succeeds.

`MemoryDiffBaseStorage`: kopf's diff-base (the last handled "essence" of each ModelApp) kept in memory.
`QuietProgressStorage`: kopf's progress in `modelapp.io/*` annotations, without kopf's prefix marker.

Why: kopf tells a create from an update (and which fields changed) by comparing a ModelApp with the essence
it stored after the last successful handling. Its stock storages keep that essence *in the object*
(`AnnotationsDiffBaseStorage`, `StatusDiffBaseStorage`), so every create and every spec change costs one
more PATCH of the ModelApp after our handler, and one more watch event to every watcher of ModelApps (the
operator itself included): at a 1,000-app burst, 1,000 writes of the ~6,000 the operator sent. The engine
needs none of it: a pass is level-based and reads everything it decides from in the cluster, so the
essence is only a filter against needless passes, and memory is the right place for a filter.

What changes, as kopf sees it: after a restart (or when a ModelApp moves into this replica's shard) there
is no essence, so kopf reports `create` instead of `resume`; the handler treats a `create` of a ModelApp
that already has a status as a resume (`handlers.reconcile`). Changes made while no replica ran are then
converged like any resume. Nothing else moves: progress (retries, delays, permanent failures) stays in
annotations, which kopf writes only when a handler fails. kopf's DiffBaseStorage is its documented
extension point for this; the class is small enough to live upstream as a built-in choice.

The marker: kopf's annotation storages also write `<prefix>/kopf-managed: yes` the first time they store
anything, so that *other* kopf operators leave that prefix out of their diffs. The progress storage stores
a record for every handler run and purges it in the same patch when the handler succeeded; the marker
stayed, so each new ModelApp still cost one PATCH for it. `QuietProgressStorage` writes no marker (no other
kopf operator handles ModelApps, and ours leaves the prefix out by name); progress of a failing or waiting
handler is written as before.

The essence leaves out every `modelapp.io/` annotation (bookkeeping of the operator and the bump, and kopf's
own progress), as kopf does for the prefix it stores under, so those writes never look like a change.
Memory: one essence (spec, labels, annotations) per handled ModelApp, dropped when it is deleted or leaves
the shard (`forget`), kept serialized like the engine's store (cache.py: `marshal`, a fraction of its dicts).

The cost per watch event (issue 15, a py-spy profile of a 1,000-app burst): kopf builds an essence for *every*
event of every watched kind before it looks for handlers, and its stock `build` deep-copies the whole body
(managedFields and status included) only to delete most of it; its progress storage copies the result once
more. A child (Deployment, Service, ...) has only event handlers here, which never read an essence, and the
Deployment's ~5 status updates per rollout made these copies the largest single cost of the operator's
process in a burst. So `build` returns an empty essence for every kind but ModelApp, and for a ModelApp
copies only what an essence keeps (spec, labels, annotations, and any extra field a handler names) rather
than the status with its revision history. The essence itself is the same as kopf's (tests/unit/test_diffbase.py).
"""

from __future__ import annotations

import marshal
import threading
from collections.abc import Iterable
from typing import Any, cast

import kopf

IGNORED_PREFIX = "modelapp.io/"
#: The top-level keys of a body that kopf's essence always drops (metadata comes back as labels + annotations).
_SYSTEM_KEYS = frozenset({"apiVersion", "kind", "metadata", "status"})


class MemoryDiffBaseStorage(kopf.DiffBaseStorage):
    """The essences by ModelApp uid; thread-safe (kopf's event loop stores, the handlers' threads forget)."""

    def __init__(self, *, kind: str) -> None:
        """`kind`: the one kind whose essences matter (ModelApp; names.KIND, passed in: this layer sits below it)."""
        super().__init__()
        self._kind = kind
        self._lock = threading.Lock()
        self._essences: dict[str, bytes] = {}  # uid -> the essence, serialized

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        """kopf's essence of a ModelApp, without its `modelapp.io/` annotations; an empty one for other kinds
        (their handlers are event handlers: nothing compares it), built without copying what it drops."""
        kind = body.get("kind")
        if kind is not None and kind != self._kind:
            return cast(kopf.BodyEssence, {})
        extra = [tuple(f.split(".")) if isinstance(f, str) else tuple(f) for f in extra_fields or []]
        essence = super().build(body=_lean(body, extra), extra_fields=extra)
        annotations = cast(dict[str, Any], essence).get("metadata", {}).get("annotations")
        if annotations:
            for key in [k for k in annotations if k.startswith(IGNORED_PREFIX)]:
                del annotations[key]
        self.remove_empty_stanzas(essence)
        return essence

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        with self._lock:
            kept = self._essences.get(str(body.metadata.uid))
        return None if kept is None else cast(kopf.BodyEssence, marshal.loads(kept))  # noqa: S302 - only our bytes

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        """Remember the essence; the patch is left untouched (nothing is written to the ModelApp)."""
        kept = marshal.dumps(cast(dict[str, Any], essence))  # a copy: later changes to `essence` do not reach it
        with self._lock:
            self._essences[str(body.metadata.uid)] = kept

    def forget(self, uid: str) -> None:
        with self._lock:
            self._essences.pop(uid, None)

    def __len__(self) -> int:
        return len(self._essences)


def _lean(body: kopf.Body, extra: list[tuple[Any, ...]]) -> kopf.Body:
    """The part of `body` kopf's essence keeps (the rest of it is only copied to be deleted): every top-level
    key but the system ones, labels and annotations, and the top-level (or metadata) key of each extra field."""
    meta = body.get("metadata", {})
    tops = {path[0] for path in extra if path}
    metas = {"labels", "annotations"} | {path[1] for path in extra if len(path) > 1 and path[0] == "metadata"}
    lean: dict[str, Any] = {k: v for k, v in body.items() if k not in _SYSTEM_KEYS or (k in tops and k != "metadata")}
    lean["metadata"] = dict(meta) if ("metadata",) in extra else {k: meta[k] for k in metas if k in meta}
    return kopf.Body(cast(kopf.RawBody, lean))


class QuietProgressStorage(kopf.AnnotationsProgressStorage):
    """kopf's progress in annotations (written only while a handler fails or waits), without the marker."""

    def _store_marker(self, prefix: str, patch: kopf.Patch, body: kopf.Body) -> None:
        """No `<prefix>/kopf-managed` annotation: it alone cost a PATCH of every new ModelApp (see above)."""
