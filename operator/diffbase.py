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
the shard (`forget`).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable
from typing import Any, cast

import kopf

IGNORED_PREFIX = "modelapp.io/"


class MemoryDiffBaseStorage(kopf.DiffBaseStorage):
    """The essences by ModelApp uid; thread-safe (kopf's event loop stores, the handlers' threads forget)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._essences: dict[str, kopf.BodyEssence] = {}

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        annotations = cast(dict[str, Any], essence).get("metadata", {}).get("annotations")
        if annotations:
            for key in [k for k in annotations if k.startswith(IGNORED_PREFIX)]:
                del annotations[key]
        self.remove_empty_stanzas(essence)
        return essence

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        with self._lock:
            return self._essences.get(str(body.metadata.uid))

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        """Remember the essence; the patch is left untouched (nothing is written to the ModelApp)."""
        with self._lock:
            self._essences[str(body.metadata.uid)] = copy.deepcopy(essence)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._essences.pop(uid, None)

    def __len__(self) -> int:
        return len(self._essences)


class QuietProgressStorage(kopf.AnnotationsProgressStorage):
    """kopf's progress in annotations (written only while a handler fails or waits), without the marker."""

    def _store_marker(self, prefix: str, patch: kopf.Patch, body: kopf.Body) -> None:
        """No `<prefix>/kopf-managed` annotation: it alone cost a PATCH of every new ModelApp (see above)."""
