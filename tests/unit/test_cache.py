"""The operator's object store (`modelapp_operator.cache`): pure, no I/O.

Design notes: the store replaced GETs on every child event, so what matters is that a reader never sees
something older than the operator's own last write (newest resourceVersion wins, whatever the order of
arrival), that a deletion is forgotten, and that the copies kept are trimmed (managedFields is most of an
object's bytes and would make memory grow with every field manager).
"""

from __future__ import annotations

from typing import Any

from modelapp_operator.cache import Store, trim


def obj(name: str, rv: str | None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", **({"resourceVersion": rv} if rv else {})}
    return {"metadata": meta, **extra}


def test_newest_resource_version_wins_whatever_the_order() -> None:
    store = Store()
    store.put("ModelApp", obj("a", "12", status={"n": 2}))  # our write's response
    kept = store.put("ModelApp", obj("a", "9", status={"n": 1}))  # a late watch event
    assert kept["status"] == {"n": 2}
    assert store.get("ModelApp", "ns", "a") == kept
    store.put("ModelApp", obj("a", "100", status={"n": 3}))  # compared as numbers, not text
    assert (store.get("ModelApp", "ns", "a") or {})["status"] == {"n": 3}


def test_versions_that_are_not_numbers_let_the_newer_arrival_win() -> None:
    def kept_after(*versions: str | None) -> str | None:
        store = Store()
        for version in versions:
            store.put("ModelApp", obj("a", version))
        return (store.get("ModelApp", "ns", "a") or {})["metadata"].get("resourceVersion")

    assert kept_after("5", "x1") == "x1"
    assert kept_after(None, "5") == "5"
    assert kept_after("5") == "5"
    assert kept_after("5", "4") == "5"


def test_kinds_and_namespaces_are_separate_and_drop_forgets() -> None:
    store = Store()
    store.put("Deployment", obj("a", "1"))
    assert store.get("Service", "ns", "a") is None
    assert store.get("Deployment", "other", "a") is None
    store.drop("Deployment", "ns", "a")
    assert store.get("Deployment", "ns", "a") is None
    assert len(store) == 0


def test_trim_drops_managed_fields_and_last_applied_but_keeps_the_rest() -> None:
    body = obj("a", "3", spec={"replicas": 1}, status={"readyReplicas": 1})
    body["metadata"] |= {
        "managedFields": [{"manager": "x", "fieldsV1": {}}],
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}", "keep": "me"},
        "ownerReferences": [{"kind": "ModelApp", "name": "a"}],
    }
    trimmed = trim(body)
    assert "managedFields" not in trimmed["metadata"]
    assert trimmed["metadata"]["annotations"] == {"keep": "me"}
    assert trimmed["metadata"]["ownerReferences"] == [{"kind": "ModelApp", "name": "a"}]
    assert trimmed["spec"] == {"replicas": 1} and trimmed["status"] == {"readyReplicas": 1}
    assert "managedFields" in body["metadata"]  # the input is not changed


def test_each_read_is_an_object_of_its_own() -> None:
    """Kept serialized: a reader that changes what it read changes nothing for the next reader."""
    store = Store()
    store.put("ModelApp", obj("a", "1", status={"conditions": [{"type": "Ready", "status": "True"}]}))
    first = store.get("ModelApp", "ns", "a") or {}
    first["status"]["conditions"][0]["status"] = "False"
    assert (store.get("ModelApp", "ns", "a") or {})["status"]["conditions"][0]["status"] == "True"
    assert store.of_kind("ModelApp")[0]["status"]["conditions"][0]["status"] == "True"
    assert store.get("ModelApp", "ns", "a") is not store.get("ModelApp", "ns", "a")


def test_memory_per_kept_object_is_about_its_compact_json() -> None:
    """Issue 15: at 5,000 ModelApps the store's dicts were the largest share of the operator's memory. A real
    Deployment as the builders make it costs about its compact JSON in the store, a fraction of its dicts."""
    import json
    import tracemalloc

    from modelapp_operator import builders
    from modelapp_operator.spec import parse_spec

    spec = parse_spec({"image": "registry.example/iris-app:1.0.0",
                       "model": {"uri": "azureblob://models/iris", "version": "7"}})  # fmt: skip
    ctx = builders.BuildContext(serving_image="registry.example/modelapp-serving:1")

    def deployment(i: int) -> dict[str, Any]:
        built = next(m for m in builders.build_children(f"app-{i}", "ns", spec, ctx).apply if m["kind"] == "Deployment")
        manifest = json.loads(json.dumps(built))  # as a watch event delivers it: fresh dicts, nothing shared
        manifest["metadata"] |= {"resourceVersion": str(1000 + i), "uid": f"{i:08d}-0000-4000-8000-000000000000"}
        return manifest

    count, store = 300, Store()
    objects = [deployment(i) for i in range(count)]
    text = sum(len(json.dumps(trim(o), separators=(",", ":"))) for o in objects)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        as_dicts = [json.loads(json.dumps(trim(o))) for o in objects]
        dicts = tracemalloc.get_traced_memory()[0] - before
        del as_dicts
        before = tracemalloc.get_traced_memory()[0]
        for o in objects:
            store.put("Deployment", o)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0 < store.size() <= text
    assert kept < 1.3 * text, f"{kept / count:.0f} bytes per Deployment kept, its text is {text / count:.0f}"
    assert kept < dicts / 3, f"kept {kept / count:.0f} bytes per Deployment, as dicts {dicts / count:.0f}"


def test_deleting_says_known_and_going_without_reading() -> None:
    store = Store()
    assert store.deleting("ModelApp", "ns", "a") is None
    store.put("ModelApp", obj("a", "1"))
    assert store.deleting("ModelApp", "ns", "a") is False
    going = obj("a", "2")
    going["metadata"]["deletionTimestamp"] = "2026-12-03T10:00:00Z"
    store.put("ModelApp", going)
    assert store.deleting("ModelApp", "ns", "a") is True
    store.put("ModelApp", obj("a", "1"))  # an older copy changes nothing
    assert store.deleting("ModelApp", "ns", "a") is True
    store.drop("ModelApp", "ns", "a")
    assert store.deleting("ModelApp", "ns", "a") is None


def test_a_copy_from_before_a_drop_does_not_bring_the_object_back() -> None:
    store = Store()
    store.put("ModelApp", obj("a", "10", status={"n": 1}))
    store.drop("ModelApp", "ns", "a", version="12")  # it moved to another shard at 12 (or was deleted)
    late = store.put("ModelApp", obj("a", "11", status={"n": 2}))  # our write's answer, read after the drop
    assert late["status"] == {"n": 2}, "the caller still gets its copy"
    assert store.get("ModelApp", "ns", "a") is None and store.deleting("ModelApp", "ns", "a") is None
    store.put("ModelApp", obj("a", "12"))
    assert store.get("ModelApp", "ns", "a") is None, "the version it left at is not newer either"
    store.put("ModelApp", obj("a", "13", status={"n": 3}))  # it came back (moved back, or made again)
    assert (store.get("ModelApp", "ns", "a") or {})["status"] == {"n": 3}
    store.drop("ModelApp", "ns", "a")
    store.put("ModelApp", obj("a", "5"))  # dropped without a version: nothing is refused
    assert store.get("ModelApp", "ns", "a") is not None


def test_drops_are_remembered_only_for_what_was_kept_and_only_for_a_while(monkeypatch: Any) -> None:
    from modelapp_operator import cache

    clock = [1000.0]
    monkeypatch.setattr(cache.time, "monotonic", lambda: clock[0])
    store = Store()
    for i in range(100):
        store.drop("ModelApp", "ns", f"never-kept-{i}", version="7")  # another shard's ModelApps, every event
    store.put("ModelApp", obj("kept", "1"))
    store.drop("ModelApp", "ns", "kept", version="2")
    assert len(store._dropped) == 1
    clock[0] += cache.TOMBSTONE_SECONDS + 1
    store.drop("ModelApp", "ns", "other", version="3")  # any later drop prunes the old ones
    assert len(store._dropped) == 0


def test_the_version_already_kept_is_not_encoded_again(monkeypatch: Any) -> None:
    """Every write of ours is answered and then comes back as a watch event of the same version: the second
    `put` keeps nothing new and costs no compression."""
    store = Store()
    encoded: list[str] = []
    encode = store._encode
    monkeypatch.setattr(store, "_encode", lambda kind, o: encoded.append(o["metadata"]["resourceVersion"])
                        or encode(kind, o))  # fmt: skip
    answer = store.put("Deployment", obj("a", "7", status={"n": 1}))
    event = store.put("Deployment", obj("a", "7", status={"n": 1}))
    assert encoded == ["7"] and answer == event == store.get("Deployment", "ns", "a")
    store.put("Deployment", obj("a", "8", status={"n": 2}))
    assert encoded == ["7", "8"] and (store.get("Deployment", "ns", "a") or {})["status"] == {"n": 2}


def test_holds_names_only_the_very_version_kept() -> None:
    """`holds` tells the handler that a watch event is the echo of our own write (its answer kept first)."""
    store = Store()
    assert not store.holds("Deployment", "ns", "a", "7"), "nothing kept"
    store.put("Deployment", obj("a", "7"))
    assert store.holds("Deployment", "ns", "a", "7")
    assert not store.holds("Deployment", "ns", "a", "8"), "a newer version is news"
    assert not store.holds("Deployment", "ns", "a", "6"), "an older one is not what is kept"
    assert not store.holds("Service", "ns", "a", "7") and not store.holds("Deployment", "other", "a", "7")
    assert not store.holds("Deployment", "ns", "a", None) and not store.holds("Deployment", "ns", "a", "x")
    store.drop("Deployment", "ns", "a", version="9")
    assert not store.holds("Deployment", "ns", "a", "7"), "dropped: forgotten"
