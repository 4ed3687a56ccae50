"""Annotations a tenant writes on its own ModelApp are hostile input to the operator: bounded, never a crash.

Design notes: the operator reads a few annotations of a ModelApp (`rollout.modelapp.io/rollback`, the note
`modelapp rollback` leaves; `rollout.modelapp.io/retry-quarantined`; `modelapp.io/pair-facts`, the bump's
facts; `modelapp.io/quarantine-cleared`). Whoever may edit the ModelApp may write them, up to the API server's
own limit (256 KiB for all of an object's annotations). Each is tried here at that size and as JSON nested as
deep as the size allows (what makes Python's parser raise RecursionError rather than ValueError), against
the real API server and the real operator: the app must still go Ready, a spent note must be removed, and the
operator must log no traceback (a handler that raises is retried by kopf for ever, a pass that never writes
the status).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from modelapp_operator import kube
from modelapp_operator.names import ANN_RETRY, ANN_ROLLBACK
from modelapp_operator.signatures import ANN_PAIR_FACTS
from tests.fixtures.operator import OperatorProcess, wait_for
from tests.integration.test_operator import _app, _ready

pytestmark = pytest.mark.integration

RunOperator = Callable[..., OperatorProcess]
#: JSON nested as deep as fits in 60,000 characters: well inside the annotation limit, far past the recursion limit.
DEEP = "[" * 30_000 + "]" * 30_000


def _annotated(name: str, namespace: str, annotations: dict[str, str]) -> dict[str, Any]:
    app = _app(name, namespace)
    app["metadata"]["annotations"] = annotations
    return app


@pytest.mark.parametrize("annotation", [ANN_ROLLBACK, ANN_PAIR_FACTS, ANN_RETRY, "modelapp.io/quarantine-cleared"])
def test_a_huge_or_deeply_nested_annotation_is_no_crash(run_operator: RunOperator, namespace: str,
                                                         annotation: str) -> None:  # fmt: skip
    op = run_operator(namespace)
    kube.apply(_annotated("deep", namespace, {annotation: DEEP}))
    kube.apply(_annotated("huge", namespace, {annotation: "x" * 200_000}))
    for name in ("deep", "huge"):
        wait_for(f"{name} Ready", lambda name=name: _ready(name, namespace), timeout=90)  # type: ignore[misc]
    if annotation == ANN_ROLLBACK:  # a note that cannot be read is spent: removed, not read again each pass
        for name in ("deep", "huge"):
            wait_for(f"{name}'s note removed", lambda name=name: annotation not in (
                (kube.get("ModelApp", name, namespace) or {}).get("metadata", {}).get("annotations") or {}),
                timeout=60)  # fmt: skip
    assert op.process.poll() is None
    assert "Traceback" not in op.text() and "RecursionError" not in op.text(), op.text()[-3000:]
