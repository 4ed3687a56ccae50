"""The child handler skips the echo of the operator's own writes (operator/handlers.py, `child_event`).

Design notes: every write of a child is answered, the answer kept in the store, and then the same version comes
back as a watch event. The pass that wrote it decided from that answer, so the handler hands the event to the
engine only when it brings something the store does not hold: a newer version, an event that arrived before
the answer, a deletion. The handler is called as kopf calls it (keyword arguments, awaited); the engine's
`on_child` is recorded, nothing reaches an API server.
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import kopf

from modelapp_operator import handlers, kube
from modelapp_operator.engine import Engine
from modelapp_operator.names import KIND, LABEL_MANAGED_BY, MANAGER
from modelapp_operator.settings import OperatorConfig

DEPLOYMENTS = kopf.Resource("apps", "v1", "deployments")


def _engine() -> tuple[Engine, list[tuple[str, str]]]:
    engine, calls = Engine(OperatorConfig()), []
    engine.on_child = lambda **kw: calls.append((kw["event"], kw["body"]["metadata"]["resourceVersion"]))  # type: ignore[method-assign]
    engine.remember(KIND, {"metadata": {"name": "iris", "namespace": "ml", "uid": "u", "resourceVersion": "1"}})
    return engine, calls


def _deployment(version: str, *, ours: bool = True) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "iris", "namespace": "ml", "resourceVersion": version,
                         "labels": {LABEL_MANAGED_BY: MANAGER} if ours else {},
                         "ownerReferences": [{"kind": KIND, "name": "iris", "uid": "u", "controller": True}]},
            "status": {"observedGeneration": int(version)}}  # fmt: skip


def _event(engine: Engine, type: str, raw: dict[str, Any]) -> None:
    body = kopf.Body(kopf.RawBody(raw))  # type: ignore[typeddict-item]
    asyncio.run(handlers.child_event(type=type, body=body, namespace="ml", resource=DEPLOYMENTS,
                                     memo=SimpleNamespace(engine=engine), logger=logging.getLogger("t")))  # fmt: skip


def test_the_echo_of_our_own_write_starts_no_pass() -> None:
    engine, calls = _engine()
    engine.store.put("Deployment", _deployment("5"))  # the answer to our apply, kept by the pass that sent it
    _event(engine, "ADDED", _deployment("5"))
    assert calls == [], "the same version the pass decided from: nothing new"
    _event(engine, "MODIFIED", _deployment("6"))  # the Deployment controller's status update
    assert calls == [("MODIFIED", "6")]
    assert engine.store.holds("Deployment", "ml", "iris", "6"), "kept, as every event of ours"


def test_an_event_before_the_answer_and_a_deletion_are_handled() -> None:
    engine, calls = _engine()
    _event(engine, "ADDED", _deployment("5"))  # the watch was quicker than our write's answer
    _event(engine, "DELETED", _deployment("7"))
    assert calls == [("ADDED", "5"), ("DELETED", "7")]
    assert engine.store.get("Deployment", "ml", "iris") is None


def test_a_listing_and_what_is_not_ours_start_no_pass() -> None:
    engine, calls = _engine()
    _event(engine, "", _deployment("5"))
    assert calls == [] and engine.store.holds("Deployment", "ml", "iris", "5"), "listed: remembered, resume covers it"
    _event(engine, "MODIFIED", _deployment("6", ours=False))
    assert calls == [] and engine.store.holds("Deployment", "ml", "iris", "5"), "another's object: only its name"


def test_a_repair_does_not_keep_its_answer_so_its_echo_is_checked_again(monkeypatch: Any) -> None:
    """A repair runs outside the ModelApp's turn, from the ModelApp as it was when the event came: what it wrote
    must be compared with the ModelApp as it is when its echo arrives (a spec change applied meanwhile)."""
    engine, _ = _engine()
    app = {"metadata": {"name": "iris", "namespace": "ml", "uid": "u", "resourceVersion": "1"},
           "spec": {"image": "localhost:5000/iris-app:1.0.0", "model": {"uri": "file:///opt/models/iris",
                                                                        "version": "1"}}}  # fmt: skip
    applied: list[str] = []

    def apply(manifest: dict[str, Any]) -> dict[str, Any]:
        applied.append(manifest["kind"])
        return {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": "9"}}

    monkeypatch.setattr(kube, "apply", apply)
    monkeypatch.setattr(kube, "get", lambda kind, name, namespace: app)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "iris", "namespace": "ml"}}
    engine.children.repair(kind="Service", event="DELETED", body=service, app=app, logger=logging.getLogger("t"))
    assert applied == ["Service"] and not engine.store.holds("Service", "ml", "iris", "9")
