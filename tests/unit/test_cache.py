"""The operator's object store (`modelapp_operator.cache`): pure, no I/O.

Design notes: the store replaced GETs on every child event, so what matters is that a reader never sees
something older than the operator's own last write (newest resourceVersion wins, whatever the order of
arrival), that a deletion is forgotten, and that the copies kept are trimmed (managedFields is most of an
object's bytes and would make memory grow with every field manager).
"""

from __future__ import annotations

from typing import Any

from modelapp_operator.cache import Store, newer, trim


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
    assert newer(obj("a", "x1"), obj("a", "5"))
    assert newer(obj("a", "5"), obj("a", None))
    assert newer(obj("a", "5"), None)
    assert not newer(obj("a", "4"), obj("a", "5"))


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
