"""The ModelApp handler's view of kopf's causes, with kopf's diff-base in memory (operator/diffbase.py).

Design notes: after a restart, or when a ModelApp moves into this replica's shard, kopf has no essence for
it and reports "create". The engine reads nothing before deciding on a real create (none of the children
can exist yet), so a "create" of a ModelApp that already has a status must reach the engine as "resume":
its children exist and must be read and checked. The handler is called directly, the engine's `converge`
recorded; the shard filter is called as kopf calls it (keyword arguments).
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import kopf

from modelapp_operator import handlers
from modelapp_operator.engine import Engine
from modelapp_operator.names import LABEL_SHARD
from modelapp_operator.settings import OperatorConfig


def _memo(config: OperatorConfig) -> tuple[Any, list[dict[str, Any]]]:
    engine, calls = Engine(config), []
    engine.converge = lambda **kwargs: calls.append(kwargs)  # type: ignore[method-assign]
    return SimpleNamespace(engine=engine, config=config), calls


def _body(status: dict[str, Any] | None, shard: str | None = None) -> kopf.Body:
    raw = {"apiVersion": "modelapp.io/v1alpha1", "kind": "ModelApp",
           "metadata": {"name": "iris", "namespace": "ml", "uid": "u", "resourceVersion": "3",
                        "labels": {LABEL_SHARD: shard} if shard else {}},
           "spec": {}, **({"status": status} if status is not None else {})}  # fmt: skip
    return kopf.Body(kopf.RawBody(raw))  # type: ignore[typeddict-item]


def _reason(body: kopf.Body, reason: str) -> str:
    memo, calls = _memo(OperatorConfig())
    handlers.reconcile(name="iris", namespace="ml", body=body, reason=reason, memo=memo,
                       logger=logging.getLogger("t"))  # fmt: skip
    (call,) = calls
    return str(call["reason"])


def test_a_create_with_a_status_is_a_resume() -> None:
    assert _reason(_body(None), "create") == "create", "a new ModelApp: nothing to read first"
    assert _reason(_body({"conditions": []}), "create") == "create", "no observedGeneration: never converged"
    assert _reason(_body({"observedGeneration": 2}), "create") == "resume"
    assert _reason(_body({"observedGeneration": 2}), "update") == "update"


def test_the_shard_filter_reads_the_label() -> None:
    memo, _ = _memo(OperatorConfig(shard="a"))
    assert handlers.in_shard(body=_body(None, "a"), memo=memo, logger=None)
    assert not handlers.in_shard(body=_body(None, "b"), memo=memo)
    assert not handlers.in_shard(body=_body(None), memo=memo), "unlabelled: the default shard's"
