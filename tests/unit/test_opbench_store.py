"""benchmarks.operator.store: the store's memory per app on real objects (objects.json, from a benchmark run)."""

from __future__ import annotations

from benchmarks.operator import store as bench


def test_copies_are_apps_of_their_own() -> None:
    objects = bench.copies(3)
    assert [kind for kind, _ in objects] == list(bench.KINDS) * 3
    names = {(kind, obj["metadata"]["name"]) for kind, obj in objects}
    assert len(names) == 9
    first, second = objects[0][1], objects[3][1]
    assert first["spec"] == second["spec"] and first["spec"] is not second["spec"]


def test_serialized_store_keeps_a_fraction_of_the_dicts_on_real_objects() -> None:
    """The ModelApp (Ready, with its status), Deployment and Service of objects.json: kept serialized, an app costs
    less than a third of its trimmed dicts."""
    objects = bench.copies(50)
    dicts, kept = bench.held(bench.as_dicts, objects), bench.held(bench.as_store, objects)
    assert 0 < kept < dicts / 3, f"serialized {kept / 50:.0f} B per app, dicts {dicts / 50:.0f} B"
    store = bench.as_store(objects)
    assert len(store) == 150
    deployment = objects[1][1]
    assert store.get("Deployment", deployment["metadata"]["namespace"], "app-00000") == bench.cache.trim(deployment)
