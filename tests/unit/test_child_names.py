"""Which child names are held (`cache.Names`), and the engine's use of it before a child is first written.

Design notes: the engine must never write over an object another owner holds (`NameTaken`), and used to GET
every child of every new ModelApp to find out. Now one listing per (kind, namespace) primes the names and
the watch events keep them current; a GET remains only for a name somebody holds (to see who). The API
module is replaced by counters here; NameTaken against the real API server is
tests/integration/test_tenancy_names.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from modelapp_operator import cache
from modelapp_operator import engine as engine_mod
from modelapp_operator.children import NameTaken
from modelapp_operator.engine import Engine
from modelapp_operator.settings import OperatorConfig


def test_names_are_unknown_until_primed_then_follow_the_events() -> None:
    names = cache.Names()
    assert names.free("Service", "ml", "iris") is None
    names.prime("Service", "ml", ["other"])
    assert names.free("Service", "ml", "iris") is True and names.free("Service", "ml", "other") is False
    assert names.free("Service", "team-b", "iris") is None, "primed per namespace"
    names.note("Service", "ml", "iris", present=True)
    assert names.free("Service", "ml", "iris") is False
    names.note("Service", "ml", "iris", present=False)
    assert names.free("Service", "ml", "iris") is True


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    seen: dict[str, list[Any]] = {"list": [], "get": []}
    foreign = {"kind": "Service", "metadata": {"name": "taken", "namespace": "ml", "resourceVersion": "1"}}

    def list_names(kind: str, namespace: str) -> list[str]:
        seen["list"].append((kind, namespace))
        return ["taken"] if kind == "Service" else []

    def get(kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        seen["get"].append((kind, name))
        return foreign if (kind, name) == ("Service", "taken") else None

    monkeypatch.setattr(engine_mod.kube, "list_names", list_names)
    monkeypatch.setattr(engine_mod.kube, "get", get)
    return seen


def _app(name: str) -> dict[str, Any]:
    return {"kind": "ModelApp", "metadata": {"name": name, "namespace": "ml", "uid": f"uid-{name}"}}


def test_a_free_name_costs_no_get_and_one_listing_per_kind(calls: dict[str, list[Any]]) -> None:
    engine = Engine(OperatorConfig())
    for name in ("a", "b", "c"):
        assert engine.children.get(_app(name), "Deployment") is None
        assert engine.children.get(_app(name), "Service") is None
    assert calls["get"] == []
    assert sorted(calls["list"]) == [("Deployment", "ml"), ("Service", "ml")]


def test_a_held_name_is_read_and_never_taken(calls: dict[str, list[Any]]) -> None:
    engine = Engine(OperatorConfig())
    with pytest.raises(NameTaken, match="Service ml/taken already exists and belongs to no controller"):
        engine.children.get(_app("taken"), "Service")
    assert calls["get"] == [("Service", "taken")]
