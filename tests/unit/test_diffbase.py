"""kopf's diff-base in memory (`operator/diffbase.py`): nothing written to the ModelApp, same change detection.

Design notes: the storage is driven here the way kopf drives it (`build` -> `fetch` -> compare -> `store` into
kopf's patch object); what matters is that the patch stays empty (no PATCH request after a handler), that
status and the operator's own `modelapp.io/` annotations never count as a change while spec, labels and a
user's `rollout.modelapp.io/` annotations do, and that a forgotten ModelApp is new again (kopf: create).
The essence is kopf's own (its stock `build`, less our prefix), built from a lean copy; other kinds get an empty
one, since kopf builds an essence for every event of every watched kind and only ModelApps have handlers that
compare essences (issue 15: those copies were the largest cost per child event).
"""

from __future__ import annotations

import copy
from typing import Any

import kopf

from modelapp_operator.diffbase import MemoryDiffBaseStorage, QuietProgressStorage


def body(**changes: Any) -> kopf.Body:
    raw: dict[str, Any] = {
        "apiVersion": "modelapp.io/v1alpha1", "kind": "ModelApp",
        "metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "resourceVersion": "7", "generation": 1,
                     "labels": {"modelapp.io/shard": "a"},
                     "annotations": {"modelapp.io/bumped-at": "2026-12-02T10:00:00Z"}},
        "spec": {"image": "r/app:1", "model": {"uri": "file:///m", "version": "1"}},
        "status": {"observedGeneration": 1},
    }  # fmt: skip
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = raw
        for key in parents:
            node = node[key]
        node[last] = value
    return kopf.Body(kopf.RawBody(copy.deepcopy(raw)))  # type: ignore[typeddict-item]


def handled(storage: MemoryDiffBaseStorage, obj: kopf.Body) -> kopf.Patch:
    patch = kopf.Patch()
    storage.store(body=obj, patch=patch, essence=storage.build(body=obj))
    return patch


def test_storing_writes_nothing_to_the_object() -> None:
    storage = MemoryDiffBaseStorage(kind="ModelApp")
    assert storage.fetch(body=body()) is None, "never seen: kopf calls it a create"
    assert not handled(storage, body()), "an empty patch: kopf sends no request"
    assert storage.fetch(body=body()) == storage.build(body=body())
    assert len(storage) == 1


def test_only_real_changes_differ() -> None:
    storage = MemoryDiffBaseStorage(kind="ModelApp")
    handled(storage, body())
    old = storage.fetch(body=body())
    same = [body(status={"observedGeneration": 1, "readyReplicas": 2}),
            body(metadata__resourceVersion="9"),
            body(metadata__annotations={"modelapp.io/bumped-at": "later", "modelapp.io/kopf-managed": "yes"})]
    for obj in same:
        assert storage.build(body=obj) == old, obj
    changed = [body(spec={"image": "r/app:2", "model": {"uri": "file:///m", "version": "1"}}),
               body(metadata__labels={"modelapp.io/shard": "b"}),
               body(metadata__annotations={"rollout.modelapp.io/retry-quarantined": "r/app:1,1"})]  # fmt: skip
    for obj in changed:
        assert storage.build(body=obj) != old, obj


def test_forget_makes_it_new_again() -> None:
    storage = MemoryDiffBaseStorage(kind="ModelApp")
    handled(storage, body())
    storage.forget("u-1")
    assert storage.fetch(body=body()) is None and len(storage) == 0


def test_a_handler_that_succeeds_leaves_no_patch() -> None:
    """kopf stores a progress record for every handler run and purges it on success in the same patch; only
    the stock storage's prefix marker was left, and it alone cost a PATCH of every new ModelApp."""
    record: Any = {"started": "2026-12-02T10:00:00Z", "success": True}
    for storage, left in ((QuietProgressStorage(prefix="modelapp.io"), {}),
                          (kopf.AnnotationsProgressStorage(prefix="modelapp.io"),
                           {"metadata": {"annotations": {"modelapp.io/kopf-managed": "yes"}}})):  # fmt: skip
        patch = kopf.Patch()
        storage.store(key="reconcile", record=record, body=body(), patch=patch)  # type: ignore[arg-type]
        assert patch, "a record is stored while the handler runs"
        storage.purge(key="reconcile", body=body(), patch=patch)  # type: ignore[arg-type]
        assert dict(patch) == left


EXTRA = [("spec",), ("metadata", "annotations"), ("metadata", "labels")]  # what kopf passes for our handlers


def test_the_essence_is_kopfs_own_less_our_prefix() -> None:
    """Same essence as kopf's stock build (which deep-copies the whole body first), for kopf's extra fields."""
    stock = kopf.AnnotationsDiffBaseStorage(prefix="other.io")
    obj = body(metadata__managedFields=[{"manager": "x", "fieldsV1": {"f:spec": {}}}],
               status={"observedGeneration": 1, "revisions": [{"image": "r/app:1"}]})  # fmt: skip
    for extra in (None, EXTRA, [("status", "observedGeneration")], ["metadata.finalizers"]):
        want = stock.build(body=obj, extra_fields=extra)
        want["metadata"]["annotations"].pop("modelapp.io/bumped-at")  # type: ignore[typeddict-item]
        stock.remove_empty_stanzas(want)
        assert MemoryDiffBaseStorage(kind="ModelApp").build(body=obj, extra_fields=extra) == want, extra


def test_a_child_kind_gets_an_empty_essence() -> None:
    """kopf builds one for every Deployment/Service event too; nothing of ours ever compares it."""
    deployment = kopf.Body(kopf.RawBody({"apiVersion": "apps/v1", "kind": "Deployment",  # type: ignore[typeddict-item]
                                         "metadata": {"name": "iris", "uid": "d-1", "labels": {"a": "b"}},
                                         "spec": {"replicas": 1}, "status": {"replicas": 1}}))  # fmt: skip
    assert MemoryDiffBaseStorage(kind="ModelApp").build(body=deployment, extra_fields=EXTRA) == {}
