"""spec.pod and the file:// credentials rule against the real API server (issues 9 and 10).

Design notes: the unit tests prove the pydantic side and that the CRD carries the same CEL rules; here the
real kube-apiserver has the last word. Every bad shape is created the way `kubectl create` does it
(fieldValidation=Strict) and must be refused (422, or 400 for an unknown field) with the spec's own
message, and the pydantic spec must refuse the same input, so `kubectl apply` and `modelapp render` never
disagree. What `modelapp render` prints is then created as a Deployment (server-side dry run, strict), so
the pod fields we write are ones the API server knows and keeps. Last, the operator itself: a change of a
pod setting rolls out a new ReplicaSet, and the pods run as the named ServiceAccount with no API token.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from modelapp_operator import kube
from modelapp_operator import spec as specmod
from modelapp_operator.commands import render_text
from tests.fixtures.operator import OperatorProcess, wait_for

pytestmark = pytest.mark.integration

RunOperator = Callable[..., OperatorProcess]
MODELAPPS = "/apis/modelapp.io/v1alpha1/namespaces/{ns}/modelapps"

GOOD_POD: dict[str, Any] = {
    "serviceAccountName": "iris-reader",
    "imagePullSecrets": [{"name": "registry-pull"}],
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [
        {"key": "sku", "value": "gpu", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
    ],
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 50,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"team": "ml"}},
                    },
                }
            ]
        }
    },
    "labels": {"azure.workload.identity/use": "true", "team": "ml"},
    "annotations": {"example.com/owner": "ml platform"},
}


def _app(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modelapp.io/v1alpha1",
        "kind": "ModelApp",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "image": "localhost:5000/iris-app:1.0.0",
            "model": {"uri": "file:///opt/models/iris", "version": "1"},
            "service": {"type": "ClusterIP"},
            **spec,
        },
    }


def _create(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    """A plain strict create, as `kubectl create -f` sends it."""
    return kube._call("POST", MODELAPPS.format(ns=namespace), body=body, content_type="application/json",
                      query={"fieldValidation": "Strict"})  # fmt: skip


BAD = [
    ("our selector label", {"pod": {"labels": {"app.kubernetes.io/instance": "other"}}}, specmod.POD_LABELS_RESERVED),
    ("our manager label", {"pod": {"labels": {"app.kubernetes.io/managed-by": "me"}}}, specmod.POD_LABELS_RESERVED),
    ("our name label", {"pod": {"labels": {"app.kubernetes.io/name": "x"}}}, specmod.POD_LABELS_RESERVED),
    ("a modelapp.io label", {"pod": {"labels": {"modelapp.io/image": "x"}}}, specmod.POD_LABELS_RESERVED),
    ("our revision annotation", {"pod": {"annotations": {"modelapp.io/image": "evil:1"}}},
     specmod.POD_ANNOTATIONS_RESERVED),
    ("a modelapp.io subdomain annotation", {"pod": {"annotations": {"rollout.modelapp.io/x": "1"}}},
     specmod.POD_ANNOTATIONS_RESERVED),
    ("a Secret for a baked model",
     {"model": {"uri": "file:///opt/models/iris", "version": "1", "credentialsSecret": "some-secret"}},
     specmod.FILE_MODEL_NO_CREDENTIALS),
    ("a label key with a space", {"pod": {"labels": {"bad key": "x"}}}, specmod.BAD_KEYS),
    ("an annotation key with two slashes", {"pod": {"annotations": {"a/b/c": "x"}}}, specmod.BAD_KEYS),
    ("a node selector key prefix over 253", {"pod": {"nodeSelector": {"a" * 254 + "/x": "y"}}}, specmod.BAD_KEYS),
    ("a label value with a space", {"pod": {"labels": {"team": "m l"}}}, "spec.pod.labels.team"),
    ("33 labels", {"pod": {"labels": {f"k{i}": "v" for i in range(33)}}}, "spec.pod.labels"),
    ("a control-plane toleration",
     {"pod": {"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}},
     specmod.TOLERATION_CONTROL_PLANE),
    ("Exists with a value", {"pod": {"tolerations": [{"key": "sku", "operator": "Exists", "value": "gpu"}]}},
     specmod.TOLERATION_EXISTS_VALUE),
    ("tolerationSeconds without NoExecute", {"pod": {"tolerations": [{"key": "sku", "tolerationSeconds": 5}]}},
     specmod.TOLERATION_SECONDS_NOEXECUTE),
    ("a toleration of every taint", {"pod": {"tolerations": [{"operator": "Exists"}]}}, "spec.pod.tolerations[0].key"),
    ("an unknown operator", {"pod": {"tolerations": [{"key": "sku", "operator": "In"}]}},
     "spec.pod.tolerations[0].operator"),
    ("an unknown affinity key", {"pod": {"affinity": {"nodeAfinity": {}}}},
     'unknown field "spec.pod.affinity.nodeAfinity"'),
    ("a typo inside a node term", {"pod": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpresions": []}]}}}}},
     'unknown field "spec.pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]'
     '.matchExpresions"'),
    ("a pod term naming other namespaces", {"pod": {"affinity": {"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone", "namespaces": ["other"]}]}}}},
     specmod.AFFINITY_OTHER_NAMESPACES),
    ("a pod term selecting every namespace", {"pod": {"affinity": {"podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 5, "podAffinityTerm": {"topologyKey": "zone", "namespaceSelector": {}}}]}}}},
     specmod.AFFINITY_OTHER_NAMESPACES),
    ("an affinity weight of 0", {"pod": {"affinity": {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 0, "preference": {}}]}}}},
     "spec.pod.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight"),
    ("a pod field we do not offer", {"pod": {"hostNetwork": True}}, 'unknown field "spec.pod.hostNetwork"'),
    ("a pull Secret by a bare name", {"pod": {"imagePullSecrets": ["x"]}}, "spec.pod.imagePullSecrets[0]"),
    ("a service account name in capitals", {"pod": {"serviceAccountName": "Reader"}}, "spec.pod.serviceAccountName"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "override", "expected"), BAD, ids=[b[0] for b in BAD])
def test_the_crd_refuses_what_the_spec_refuses(
    modelapp_crds: Any, namespace: str, what: str, override: dict[str, Any], expected: str
) -> None:
    body = _app("bad", namespace, **override)
    with pytest.raises(kube.ApiError) as info:
        _create(body, namespace)
    # A field the schema does not have is a strict-decoding 400; a value the schema refuses is a 422.
    assert info.value.status == (400 if "unknown field" in expected else 422), what
    assert expected in str(info.value), str(info.value)
    with pytest.raises(specmod.InvalidSpec):
        specmod.parse_spec(body["spec"])
    assert kube.get("ModelApp", "bad", namespace) is None


def test_the_crd_accepts_good_pod_settings_and_defaults_like_the_spec(modelapp_crds: Any, namespace: str) -> None:
    stored = _create(_app("iris", namespace, pod=GOOD_POD), namespace)
    wanted = copy.deepcopy(GOOD_POD)
    wanted["tolerations"][0]["operator"] = "Equal"  # the CRD's default, also pydantic's
    assert stored["spec"]["pod"] == wanted
    parsed = specmod.parse_spec(stored["spec"]).model_dump(by_alias=True, exclude_none=True)
    assert parsed["pod"] == wanted
    # An annotation key that is ours as a label is fine as an annotation, and an s3 model keeps its Secret.
    other = _app("other", namespace, model={"uri": "s3://bucket-1/iris", "version": "1", "credentialsSecret": "s3"},
                 pod={"annotations": {"app.kubernetes.io/instance": "x"}})  # fmt: skip
    assert _create(other, namespace)["spec"]["model"]["credentialsSecret"] == "s3"


def test_render_shows_the_pod_settings_and_the_api_server_keeps_them(modelapp_crds: Any, namespace: str) -> None:
    text = yaml.safe_dump(_app("iris", namespace, pod=GOOD_POD))
    rendered = list(yaml.safe_load_all(render_text(text, source="app.yaml", namespace=namespace,
                                                   serving_image="localhost:5000/modelapp-serving:test")))  # fmt: skip
    deployment = next(d for d in rendered if d["kind"] == "Deployment")
    template = deployment["spec"]["template"]
    pod = template["spec"]
    assert pod["serviceAccountName"] == "iris-reader" and pod["automountServiceAccountToken"] is False
    assert pod["imagePullSecrets"] == [{"name": "registry-pull"}]
    assert pod["nodeSelector"] == GOOD_POD["nodeSelector"] and pod["affinity"] == GOOD_POD["affinity"]
    assert [t["key"] for t in pod["tolerations"]] == ["sku", "node.kubernetes.io/unreachable"]
    assert template["metadata"]["labels"]["team"] == "ml"
    assert template["metadata"]["annotations"]["example.com/owner"] == "ml platform"
    assert template["metadata"]["annotations"]["azure.workload.identity/skip-containers"] == "app"
    assert all("envFrom" not in c for c in pod["initContainers"] + pod["containers"])

    # Strict validation: a field the API server does not know would be a 422 here, not silently dropped.
    strict = {"dryRun": "All", "fieldValidation": "Strict"}
    stored = kube._call("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", body=deployment, query=strict,
                        content_type="application/json")  # fmt: skip
    kept = stored["spec"]["template"]
    for key in ("serviceAccountName", "imagePullSecrets", "nodeSelector", "affinity", "automountServiceAccountToken"):
        assert kept["spec"][key] == pod[key], key
    assert kept["spec"]["tolerations"] == pod["tolerations"]
    assert kept["metadata"]["labels"] == template["metadata"]["labels"]
    assert kept["metadata"]["annotations"] == template["metadata"]["annotations"]


def _ready(name: str, namespace: str) -> dict[str, Any] | None:
    app = kube.get("ModelApp", name, namespace) or {}
    status = app.get("status") or {}
    ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)
    current = status.get("observedGeneration") == app.get("metadata", {}).get("generation")
    return app if ready and ready["status"] == "True" and current else None


def _replicasets(namespace: str) -> set[str]:
    items = kube._call("GET", f"/apis/apps/v1/namespaces/{namespace}/replicasets")["items"]
    return {rs["metadata"]["name"] for rs in items}


def test_a_pod_setting_change_rolls_out_and_pods_get_no_api_token(run_operator: RunOperator, namespace: str) -> None:
    kube._call("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", content_type="application/json",
               body={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "iris-reader"}})  # fmt: skip
    run_operator(namespace)
    pod_settings = {
        "serviceAccountName": "iris-reader",
        "labels": {"team": "a"},
        "imagePullSecrets": [{"name": "pull"}],
    }
    kube.apply(_app("iris", namespace, pod=pod_settings))
    wait_for("iris Ready", lambda: _ready("iris", namespace), timeout=90)
    before = _replicasets(namespace)
    pods = kube._call("GET", f"/api/v1/namespaces/{namespace}/pods")["items"]
    assert pods, "a pod"
    for pod in pods:
        assert pod["spec"]["serviceAccountName"] == "iris-reader" and pod["metadata"]["labels"]["team"] == "a"
        assert pod["spec"]["automountServiceAccountToken"] is False
        mounts = [m for c in pod["spec"]["initContainers"] + pod["spec"]["containers"] for m in c["volumeMounts"]]
        assert not [m for m in mounts if m["mountPath"].startswith("/var/run/secrets/kubernetes.io")], mounts

    kube.apply(_app("iris", namespace, pod={**pod_settings, "labels": {"team": "b"}}))

    def rolled_out() -> bool:
        dep = kube.get("Deployment", "iris", namespace) or {}
        labels = dep.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
        return labels.get("team") == "b" and bool(_replicasets(namespace) - before) and bool(_ready("iris", namespace))

    wait_for("a new ReplicaSet with team=b, Ready", rolled_out, timeout=90)
