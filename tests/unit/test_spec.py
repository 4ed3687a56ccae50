"""Parsing the ModelApp spec: what is accepted, what is refused, and how the refusal reads.

Design notes: the refusals mirror the bad-input list of issue 2 (missing image, bad sha256, negative
replicas, unknown policy, huge names, wrong types); each must produce `InvalidSpec` whose message
names the field path (`spec.model.sha256`) and says what was expected, because that message ends up
verbatim in the Ready condition that a user reads with `kubectl describe`.
"""

from __future__ import annotations

from typing import Any

import pytest

from modelapp_operator.spec import InvalidSpec, ModelAppSpec, check_name, parse_spec

DIGEST = "0123456789abcdef" * 4


def _spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "image": "registry.example.com/iris-app:1.4.2",
        "model": {"uri": "azureblob://models/iris", "version": "7"},
    }
    base.update(overrides)
    return base


def test_minimal_spec_gets_the_documented_defaults() -> None:
    spec = parse_spec(_spec())
    assert spec.replicas == 1
    assert (spec.service.type, spec.service.port) == ("LoadBalancer", 80)
    assert (spec.updates.model.policy, spec.updates.image.policy) == ("pinned", "pinned")
    assert (spec.rollout.progress_deadline_seconds, spec.rollout.auto_rollback) == (300, True)
    assert spec.model.sha256 is None and spec.model.credentials_secret is None


def test_full_spec_round_trips_under_camel_case_names() -> None:
    raw = _spec(
        model={"uri": "s3://bucket-1/iris", "version": "v1.2", "sha256": DIGEST, "credentialsSecret": "creds"},
        replicas=3,
        service={"type": "ClusterIP", "port": 8000},
        resources={"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"nvidia.com/gpu": 1}},
        env=[{"name": "LOG_LEVEL", "value": "debug"}],
        command=["python"],
        args=["-m", "app"],
        modelClass="app.model:Iris",
        updates={"model": {"policy": "latest"}, "image": {"policy": "semver:^1.4", "tagFilter": "^1\\."}},
        rollout={
            "progressDeadlineSeconds": 120,
            "autoRollback": False,
            "smokeTest": {
                "protocol": "v2",
                "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}],
                "expected": [{"name": "label", "data": [0.0]}],
                "tolerance": 0.01,
                "timeoutSeconds": 5,
            },
        },
    )
    spec = parse_spec(raw)
    assert spec.model_dump(by_alias=True, exclude_none=True) == raw
    assert spec.resources is not None and spec.resources.limits is not None
    assert spec.resources.limits.as_kube() == {"nvidia.com/gpu": 1}


@pytest.mark.parametrize(
    "image",
    [
        "iris",
        "localhost:5000/team/iris-app:latest",
        "registry.example.com/iris-app@sha256:" + DIGEST,
        "registry.example.com/iris-app:1.4.2@sha256:" + DIGEST,
        "my-registry.azurecr.io/a/b/c_d__e:v1.0-rc.1",
    ],
)
def test_image_references_accepted(image: str) -> None:
    assert parse_spec(_spec(image=image)).image == image


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"image": None}, "spec.image"),
        ({"image": "Iris:1"}, "spec.image: not an image reference"),
        ({"image": "iris@sha256:abc"}, "spec.image: not an image reference"),
        ({"image": "x" * 600}, "spec.image"),
        ({"model": {"uri": "http://example.com/m", "version": "1"}}, "spec.model.uri: not a model location"),
        ({"model": {"uri": "file:///m"}}, "spec.model.version: Field required"),
        ({"model": {"uri": "file:///m", "version": "../up"}}, "spec.model.version: not a version name"),
        ({"model": {"uri": "file:///m", "version": "1", "sha256": DIGEST.upper()}}, "spec.model.sha256: not a sha256"),
        ({"model": {"uri": "file:///m", "version": "1", "sha256": "abc"}}, "spec.model.sha256"),
        ({"model": {"uri": "file:///m", "version": "1", "credentialsSecret": "Bad_Name"}}, "credentialsSecret"),
        ({"replicas": -1}, "spec.replicas: Input should be greater than or equal to 0"),
        ({"replicas": 101}, "spec.replicas: Input should be less than or equal to 100"),
        ({"replicas": "3"}, "spec.replicas: Input should be a valid integer"),
        ({"replicas": 1.5}, "spec.replicas"),
        ({"service": {"type": "Ingress"}}, "spec.service.type"),
        ({"service": {"port": 0}}, "spec.service.port"),
        ({"updates": {"model": {"policy": "newest"}}}, "spec.updates.model.policy: not an update policy"),
        ({"updates": {"image": {"policy": "semver:"}}}, "spec.updates.image.policy"),
        ({"rollout": {"progressDeadlineSeconds": 5}}, "spec.rollout.progressDeadlineSeconds"),
        ({"rollout": {"autoRollback": "yes"}}, "spec.rollout.autoRollback"),
        ({"resources": {"requests": {"memroy": "1Gi"}}}, "spec.resources.requests.memroy: Extra inputs"),
        ({"resources": {"requests": {"cpu": "-1"}}}, "spec.resources.requests.cpu"),
        ({"env": [{"value": "x"}]}, "spec.env.0.name: Field required"),
        ({"env": "A=1"}, "spec.env: Input should be a valid list"),
        ({"modelClass": "no_colon"}, "spec.modelClass: not a model class"),
        ({"unknown": 1}, "spec.unknown: Extra inputs are not permitted"),
    ],
)
def test_invalid_specs_are_refused_with_a_readable_message(overrides: dict[str, Any], expected: str) -> None:
    raw = _spec(**overrides)
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(InvalidSpec) as info:
        parse_spec(raw)
    assert expected in str(info.value)
    assert "Traceback" not in str(info.value)


def test_many_errors_are_summarised() -> None:
    with pytest.raises(InvalidSpec, match=r"and \d+ more$"):
        parse_spec({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6})


@pytest.mark.parametrize("name", ["iris", "a", "iris-2", "a" * 63])
def test_names_accepted(name: str) -> None:
    check_name(name)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a" * 64, "at most 63"),
        ("2iris", "DNS-1035"),
        ("Iris", "DNS-1035"),
        ("iris-", "DNS-1035"),
        ("ir.is", "DNS-1035"),
    ],
)
def test_names_refused(name: str, expected: str) -> None:
    with pytest.raises(InvalidSpec, match=expected):
        check_name(name)


def test_spec_is_immutable() -> None:
    spec = parse_spec(_spec())
    with pytest.raises(ValueError, match="frozen"):
        spec.replicas = 2  # type: ignore[misc]
    assert isinstance(spec, ModelAppSpec)


def test_version_latest_is_refused_with_what_to_do_instead() -> None:
    """`version: latest` would move by itself, unpinned and past the quarantine: refused, pointing at the bump."""
    with pytest.raises(InvalidSpec, match=r"spec.model.version: .*'latest' is not a version.*updates.model.policy"):
        parse_spec({"image": "registry.example.com/iris:1", "model": {"uri": "azureblob://models/iris",
                                                                      "version": "latest"}})  # fmt: skip
    assert parse_spec({"image": "r.example/iris:1", "model": {"uri": "azureblob://m/iris", "version": "latest-7"}})


# --- spec.pod (issue 9) and no credentials for a baked model (issue 10) -------------------------------------

GOOD_POD = {
    "serviceAccountName": "iris-reader",
    "imagePullSecrets": [{"name": "acr-pull"}, {"name": "ghcr.io-pull"}],
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                     "tolerationSeconds": 300}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "agentpool", "operator": "In", "values": ["gpu"]}]}]}}},
    "labels": {"azure.workload.identity/use": "true", "team": "ml", "empty": ""},
    "annotations": {"example.com/owner": "ml-platform, on call", "app.kubernetes.io/instance": "fine as an annotation"},
}  # fmt: skip


def test_pod_settings_round_trip() -> None:
    spec = parse_spec(_spec(pod=GOOD_POD))
    assert spec.model_dump(by_alias=True, exclude_none=True)["pod"] == GOOD_POD
    assert spec.pod is not None and spec.pod.service_account_name == "iris-reader"


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        ({"labels": {"app.kubernetes.io/instance": "x"}}, "spec.pod.labels: Value error, pod.labels cannot set"),
        ({"labels": {"app.kubernetes.io/managed-by": "me"}}, "spec.pod.labels: Value error, pod.labels cannot set"),
        ({"labels": {"app.kubernetes.io/name": "other"}}, "the operator sets them"),
        ({"labels": {"modelapp.io/image": "x"}}, "spec.pod.labels: Value error, pod.labels cannot set"),
        (
            {"annotations": {"modelapp.io/image": "evil:1"}},
            "spec.pod.annotations: Value error, pod.annotations cannot use the modelapp.io/ prefix",
        ),
        ({"annotations": {"rollout.modelapp.io/retry-quarantined": "a,1"}}, "cannot use the modelapp.io/ prefix"),
        ({"labels": {"bad key": "x"}}, "spec.pod.labels.bad key.[key]: every key must be a Kubernetes label key"),
        ({"labels": {"a/b/c": "x"}}, "spec.pod.labels.a/b/c.[key]: every key must be"),
        ({"labels": {"Example.com/x": "x"}}, "every key must be"),
        ({"labels": {"a" * 254 + "/x": "x"}}, "every key must be"),
        ({"labels": {"x" * 64: "x"}}, "spec.pod.labels"),
        ({"labels": {"team": "not valid"}}, "spec.pod.labels.team: not a label value"),
        ({"labels": {"team": "x" * 64}}, "spec.pod.labels.team"),
        ({"labels": {"use": True}}, "spec.pod.labels.use: Input should be a valid string"),
        ({"labels": {f"k{i}": "v" for i in range(33)}}, "spec.pod.labels: Dictionary should have at most 32 items"),
        ({"annotations": {"k": "x" * 4097}}, "spec.pod.annotations.k"),
        ({"nodeSelector": {"agentpool": "gpu pool"}}, "spec.pod.nodeSelector.agentpool: not a label value"),
        ({"nodeSelector": {"-bad": "x"}}, "spec.pod.nodeSelector.-bad.[key]: every key must be"),
        ({"serviceAccountName": "Iris_Reader"}, "spec.pod.serviceAccountName: not a valid name"),
        ({"imagePullSecrets": ["acr"]}, "spec.pod.imagePullSecrets.0: Input should be a valid dictionary"),
        ({"imagePullSecrets": [{"name": "Acr"}]}, "spec.pod.imagePullSecrets.0.name: not a valid name"),
        ({"imagePullSecrets": [{"name": "s"}] * 17}, "spec.pod.imagePullSecrets: List should have at most 16 items"),
        ({"tolerations": [{"operator": "Exists"}]}, "spec.pod.tolerations.0.key: Field required"),
        ({"tolerations": [{"key": "a", "operator": "In"}]}, "spec.pod.tolerations.0.operator: Input should be"),
        ({"tolerations": [{"key": "a", "effect": "NoRun"}]}, "spec.pod.tolerations.0.effect: Input should be"),
        (
            {"tolerations": [{"key": "a", "operator": "Exists", "value": "x"}]},
            "spec.pod.tolerations.0.value: Value error, a toleration with operator Exists",
        ),
        (
            {"tolerations": [{"key": "a", "tolerationSeconds": 5}]},
            "spec.pod.tolerations.0.tolerationSeconds: Value error, tolerationSeconds applies only to effect NoExecute",
        ),
        (
            {"tolerations": [{"key": "a", "effect": "NoExecute", "tolerationSeconds": -1}]},
            "spec.pod.tolerations.0.tolerationSeconds: Input should be greater than or equal to 0",
        ),
        (
            {"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]},
            "spec.pod.tolerations.0.key: Value error, control-plane taints cannot be tolerated",
        ),
        ({"tolerations": [{"key": "a"}] * 33}, "spec.pod.tolerations: List should have at most 32 items"),
        ({"affinity": {"nodeAfinity": {}}}, "spec.pod.affinity.nodeAfinity: Extra inputs are not permitted"),
        ({"affinity": {"podAffinity": {"x": "y"}}}, "spec.pod.affinity.podAffinity.x: Extra inputs are not permitted"),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]}
                            ]
                            * 33
                        }
                    }
                }
            },
            "requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: List should have at most 32",
        ),
        ({"affinity": {"podAffinity": []}}, "spec.pod.affinity.podAffinity: Input should be a valid dictionary"),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpresions": []}]
                        }
                    }
                }
            },
            "spec.pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms.0"
            ".matchExpresions: Extra inputs are not permitted",
        ),
        (
            {
                "affinity": {
                    "podAntiAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {
                                "weight": 1,
                                "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "namespaceSelector": {}},
                            }
                        ]
                    }
                }
            },
            "preferredDuringSchedulingIgnoredDuringExecution.0.podAffinityTerm: Value error, pod (anti-)affinity terms "
            "apply to pods of the ModelApp's own namespace only",
        ),
        (
            {
                "affinity": {
                    "podAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [
                            {"topologyKey": "zone", "namespaces": ["other-tenant"]}
                        ]
                    }
                }
            },
            "podAffinity.requiredDuringSchedulingIgnoredDuringExecution.0: Value error, pod (anti-)affinity terms",
        ),
        (
            {
                "affinity": {
                    "podAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {"weight": "1", "podAffinityTerm": {"topologyKey": "zone"}}
                        ]
                    }
                }
            },
            "preferredDuringSchedulingIgnoredDuringExecution.0.weight: Input should be",
        ),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 0, "preference": {}}]
                    }
                }
            },
            "preferredDuringSchedulingIgnoredDuringExecution.0.weight: Input should be",
        ),
        (
            {
                "affinity": {
                    "podAntiAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [
                            {"labelSelector": {"matchLabels": {"team": "ml"}}}
                        ]
                    }
                }
            },
            "spec.pod.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution.0.topologyKey: "
            "Field required",
        ),
        (
            {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}},
            "nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: Field required",
        ),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": "zone", "operator": "Equals", "values": ["a"]}]}
                            ]
                        }
                    }
                }
            },
            "matchExpressions.0.operator: Input should be 'In', 'NotIn', 'Exists', 'DoesNotExist', 'Gt' or 'Lt'",
        ),
        (
            {
                "affinity": {
                    "podAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [
                            {"topologyKey": "zone", "labelSelector": {"matchLabels": {"tier": 1}}}
                        ]
                    }
                }
            },
            "labelSelector.matchLabels.tier: Input should be a valid string",
        ),
        (
            {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": []}}},
            "requiredDuringSchedulingIgnoredDuringExecution: Input should be a valid dictionary or instance of "
            "NodeSelector",
        ),
        ({"hostNetwork": True}, "spec.pod.hostNetwork: Extra inputs are not permitted"),
        ({"automountServiceAccountToken": True}, "spec.pod.automountServiceAccountToken: Extra inputs"),
    ],
)
def test_bad_pod_settings_are_refused_naming_the_field(pod: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_spec(_spec(pod=pod))
    assert expected in str(info.value)


def test_a_baked_model_takes_no_credentials_secret() -> None:
    """Issue 10: the fetch of a file:// model runs the app's own image, which must never hold a Secret."""
    with pytest.raises(InvalidSpec) as info:
        parse_spec(_spec(model={"uri": "file:///opt/models/iris", "version": "1", "credentialsSecret": "any-secret"}))
    message = str(info.value)
    assert message.startswith(
        "spec.model.credentialsSecret: Value error, credentialsSecret cannot be used with a file://"
    )
    assert "needs no credentials" in message and "remove credentialsSecret" in message
    assert parse_spec(_spec(model={"uri": "s3://bucket/iris", "version": "1", "credentialsSecret": "s3"}))
