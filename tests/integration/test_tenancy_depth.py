"""A tenant's object nested deeper than Python decodes stops nothing outside its namespace (issue: tenancy).

Design notes: whoever may update an object may write its `metadata.managedFields`, and the real API server
keeps their `fieldsV1` as sent, 1,500 levels deep here, on any kind. Python's decoder raises RecursionError
near 1,000 levels: in kopf's watch that ended the watcher and the whole operator (every namespace), and the
bump's list of ModelApps failed the same way. So, against the real API server and the operator as a
subprocess watching two namespaces: tenant X plants such objects (its own Deployment, listed by the operator
at its start, and its ModelApp, seen by the running watch); the operator stays up, tenant Y's ModelApp and
X's own go Ready, and the cluster-wide list the bump reads returns every ModelApp. Second, the ModelApp's
spec has no free-form JSON left: a deep `pod.affinity` is refused by the CRD's typed schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from modelapp_operator import deepjson, kube
from tests.fixtures.cluster import LocalCluster, fresh_namespace
from tests.fixtures.operator import OperatorProcess, wait_for
from tests.integration.test_operator import _app, _ready

pytestmark = pytest.mark.integration

RunOperator = Callable[..., OperatorProcess]
LEVELS = 1500


def _deep(levels: int) -> str:
    """A managedFields `fieldsV1` as JSON text (Python's encoder does not reach this depth either)."""
    return '{"f:a": ' * levels + "{}" + "}" * levels


def _plant_deep_managed_fields(kind: str, name: str, namespace: str) -> None:
    """PUT the object back with one managedFields entry nested LEVELS deep, as any editor of it may."""

    def put() -> bool:
        obj = kube.get(kind, name, namespace)
        assert obj is not None
        obj["metadata"]["managedFields"] = [
            {"manager": "tenant", "operation": "Update", "apiVersion": obj["apiVersion"], "fieldsType": "FieldsV1",
             "fieldsV1": "DEEP"},
        ]  # fmt: skip
        text = json.dumps(obj).replace('"DEEP"', _deep(LEVELS))  # sent as YAML: the client encodes JSON bodies
        try:
            kube._call("PUT", kube._path(kind, name, namespace), body=text, content_type="application/yaml")
        except kube.ApiError as exc:
            if exc.status == 409:  # the operator wrote it meanwhile: read it again
                return False
            raise
        return True

    wait_for(f"{kind} {name} updated", put, timeout=30)
    stored = kube.get(kind, name, namespace) or {}
    clipped = json.dumps(stored["metadata"].get("managedFields"))
    assert json.dumps(deepjson.CLIPPED) in clipped, "the API server keeps it deeper than Python decodes"


def _tenant_deployment(name: str, namespace: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "c", "image": "localhost:5000/iris-app:1.0.0"}]}},
        },
    }  # fmt: skip


def test_an_object_too_deep_for_python_stops_nothing(run_operator: RunOperator, namespace: str,
                                                     kube_cluster: LocalCluster) -> None:  # fmt: skip
    with fresh_namespace(kube_cluster, "other") as other:
        # Before the operator starts: its first list of Deployments in X holds the deep one.
        kube.create("Deployment", namespace, _tenant_deployment("own", namespace))
        _plant_deep_managed_fields("Deployment", "own", namespace)
        op = run_operator(namespace, "--namespace", other)
        kube.apply(_app("deep", namespace))
        wait_for("deep Ready", lambda: _ready("deep", namespace), timeout=120)
        # While it runs: the watch of ModelApps gets the deep one as an event.
        _plant_deep_managed_fields("ModelApp", "deep", namespace)
        kube.apply(_app("good", other))
        kube.apply(_app("after", namespace))
        wait_for("Y's ModelApp Ready", lambda: _ready("good", other), timeout=120)
        wait_for("X's next ModelApp Ready", lambda: _ready("after", namespace), timeout=120)
        assert op.process.poll() is None, op.text()[-3000:]
        log = op.text()
        assert "RecursionError" not in log and "has failed" not in log, log[-3000:]
        # The bump's view: the cluster-wide list of ModelApps, the deep one in it.
        names = {(a["metadata"]["namespace"], a["metadata"]["name"]) for a in kube.list_objects("ModelApp", None)}
        assert {(namespace, "deep"), (namespace, "after"), (other, "good")} <= names


def test_a_deep_affinity_is_refused_by_the_crd(modelapp_crds: Any, namespace: str) -> None:
    body = json.dumps(_app("deep", namespace, pod={"affinity": {"nodeAffinity": "DEEP"}}))
    text = body.replace('"DEEP"', '{"a": ' * LEVELS + "{}" + "}" * LEVELS)
    with pytest.raises(kube.ApiError) as info:
        kube._call("POST", kube._path("ModelApp", None, namespace), body=text, content_type="application/yaml",
                   query={"fieldValidation": "Strict"})  # fmt: skip
    assert info.value.status == 400 and 'unknown field "spec.pod.affinity.nodeAffinity.a"' in str(info.value)
    # Without strict validation (the API's default) the field is pruned: what is stored is shallow.
    kube._call("POST", kube._path("ModelApp", None, namespace), body=text, content_type="application/yaml")
    stored = kube.get("ModelApp", "deep", namespace) or {}
    assert stored["spec"]["pod"]["affinity"] == {"nodeAffinity": {}}
