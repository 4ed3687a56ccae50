"""Pure builders of the children: Deployment, Service, PodDisruptionBudget.

Design notes: the builders are plain functions, so these tests call them with parsed specs and look
at the dicts. They pin the pod shape of docs/contracts.md (init container args, mounts, probes), the
security posture, the rollout strategy, and the property that matters most for rollouts: every change
of image, model uri, version or sha256 changes the pod template, and nothing else does.
"""

from __future__ import annotations

from typing import Any

import pytest

from modelapp_operator import builders as b
from modelapp_operator.spec import OUR_POD_LABELS, ModelAppSpec, PodSettings, parse_spec

CTX = b.BuildContext(serving_image="registry.example.com/modelapp-serving:0.1.0")
DIGEST = "ab" * 32


def _spec(**overrides: Any) -> ModelAppSpec:
    raw: dict[str, Any] = {
        "image": "registry.example.com/iris-app:1.4.2",
        "model": {"uri": "azureblob://models/iris", "version": "7"},
    }
    raw.update(overrides)
    return parse_spec(raw)


def _pod(spec: ModelAppSpec) -> dict[str, Any]:
    pod: dict[str, Any] = b.build_deployment("iris", "ml", spec, CTX)["spec"]["template"]["spec"]
    return pod


def test_init_container_follows_the_contract() -> None:
    spec = _spec(
        model={"uri": "azureblob://models/iris", "version": "7", "sha256": DIGEST, "credentialsSecret": "blob"}
    )
    init = _pod(spec)["initContainers"]
    assert [c["name"] for c in init] == ["fetch-model"]
    fetch = init[0]
    assert fetch["image"] == CTX.serving_image
    assert [*fetch["command"], *fetch["args"]] == [
        "modelapp-serving", "fetch", "--uri", "azureblob://models/iris", "--version", "7",
        "--dest", "/mnt/models/model", "--sha256", DIGEST,
    ]  # fmt: skip
    assert fetch["envFrom"] == [{"secretRef": {"name": "blob"}}]
    assert {"name": "model", "mountPath": "/mnt/models"} in fetch["volumeMounts"]


def test_file_models_are_fetched_from_the_app_image_without_credentials() -> None:
    fetch = _pod(_spec(model={"uri": "file:///opt/models/iris", "version": "1"}))["initContainers"][0]
    assert fetch["image"] == "registry.example.com/iris-app:1.4.2"
    assert "--sha256" not in fetch["args"]
    assert "envFrom" not in fetch


def test_app_container_serves_on_8080_with_v2_probes() -> None:
    app = _pod(_spec(modelClass="app.model:Iris", env=[{"name": "A", "value": "1"}]))["containers"][0]
    assert app["name"] == "app" and app["image"] == "registry.example.com/iris-app:1.4.2"
    assert [*app["command"], *app["args"]] == [
        "modelapp-serving", "serve", "--model-dir", "/mnt/models/model", "--name", "iris", "--port", "8080",
    ]  # fmt: skip
    assert app["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
    ]
    assert app["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert app["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    env = {e["name"]: e["value"] for e in app["env"]}
    assert env["MODELAPP_MODEL_CLASS"] == "app.model:Iris" and env["A"] == "1" and env["MODELAPP_MODEL_NAME"] == "iris"
    assert {"name": "model", "mountPath": "/mnt/models", "readOnly": True} in app["volumeMounts"]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"command": ["python", "-m", "app"]},
        {"args": ["serve", "--workers", "2"]},
        {"env": [{"name": "A", "value": "1"}]},
    ],
)
def test_the_metrics_port_is_set_by_the_environment_whatever_the_command(overrides: dict[str, Any]) -> None:
    """The env, not a flag: an older app image ignores it instead of refusing an unknown flag."""
    app = _pod(_spec(**overrides))["containers"][0]
    env = [e for e in app["env"] if e["name"] == "MODELAPP_METRICS_PORT"]
    assert env == [{"name": "MODELAPP_METRICS_PORT", "value": "9090"}]
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in app["ports"]
    assert "--metrics-port" not in [*app.get("command", []), *app.get("args", [])]
    # The probes stay on the public port, which still answers them.
    assert app["readinessProbe"]["httpGet"]["port"] == app["livenessProbe"]["httpGet"]["port"] == "http"


def test_every_child_service_exposes_http_only() -> None:
    spec = _spec(replicas=3, service={"type": "LoadBalancer", "port": 443})
    services = [m for m in b.build_children("iris", "ml", spec, CTX).apply if m["kind"] == "Service"]
    assert len(services) == 1
    assert services[0]["spec"]["ports"] == [{"name": "http", "port": 443, "targetPort": 8080, "protocol": "TCP"}]


def test_pinned_digest_is_passed_to_serve() -> None:
    app = _pod(_spec(model={"uri": "s3://bucket/iris", "version": "7", "sha256": DIGEST}))["containers"][0]
    assert app["args"][-2:] == ["--sha256", DIGEST]


@pytest.mark.parametrize(
    ("overrides", "command", "args"),
    [
        ({"command": ["python", "-m", "app"]}, ["python", "-m", "app"], None),
        ({"command": ["python"], "args": ["-m", "app"]}, ["python"], ["-m", "app"]),
        ({"args": ["serve", "--workers", "2"]}, ["modelapp-serving"], ["serve", "--workers", "2"]),
    ],
)
def test_command_and_args_overrides(overrides: dict[str, Any], command: list[str], args: list[str] | None) -> None:
    app = _pod(_spec(**overrides))["containers"][0]
    assert app["command"] == command
    assert app.get("args") == args


def test_pod_security() -> None:
    pod = _pod(_spec())
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["initContainers"] + pod["containers"]:
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
    assert {v["name"] for v in pod["volumes"]} == {"model", "tmp"}


def test_resources_go_to_both_containers() -> None:
    pod = _pod(_spec(resources={"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}))
    for container in pod["initContainers"] + pod["containers"]:
        assert container["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}


def test_deployment_rollout_settings_and_labels() -> None:
    dep = b.build_deployment("iris", "ml", _spec(replicas=3, rollout={"progressDeadlineSeconds": 120}), CTX)
    spec = dep["spec"]
    assert (dep["metadata"]["name"], dep["metadata"]["namespace"]) == ("iris", "ml")
    assert spec["replicas"] == 3 and spec["progressDeadlineSeconds"] == 120
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    assert spec["revisionHistoryLimit"] == 5
    template_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= template_labels.items()
    assert template_labels["app.kubernetes.io/managed-by"] == "modelapp-operator"
    assert {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
            "app.kubernetes.io/part-of"} <= template_labels.keys()  # fmt: skip


def _template(spec: ModelAppSpec) -> dict[str, Any]:
    template: dict[str, Any] = b.build_deployment("iris", "ml", spec, CTX)["spec"]["template"]
    return template


@pytest.mark.parametrize(
    "overrides",
    [
        {"image": "registry.example.com/iris-app:1.4.3"},
        {"model": {"uri": "azureblob://models/iris", "version": "8"}},
        {"model": {"uri": "azureblob://models/iris", "version": "7", "sha256": DIGEST}},
        {"model": {"uri": "azureblob://models/iris2", "version": "7"}},
    ],
)
def test_every_revision_change_changes_the_template_annotations(overrides: dict[str, Any]) -> None:
    before = _template(_spec())["metadata"]["annotations"]
    after = _template(_spec(**overrides))["metadata"]["annotations"]
    assert before != after


def test_replica_and_service_changes_do_not_roll_out() -> None:
    assert _template(_spec()) == _template(_spec(replicas=4, service={"type": "ClusterIP", "port": 81}))


def test_template_annotations() -> None:
    annotations = _template(_spec(model={"uri": "s3://bucket/iris", "version": "7", "sha256": DIGEST}))["metadata"]
    assert annotations["annotations"] == {
        "modelapp.io/image": "registry.example.com/iris-app:1.4.2",
        "modelapp.io/model-uri": "s3://bucket/iris",
        "modelapp.io/model-version": "7",
        "modelapp.io/model-sha256": DIGEST,
    }


@pytest.mark.parametrize("service", [{}, {"type": "NodePort", "port": 8000}])
def test_service(service: dict[str, Any]) -> None:
    svc = b.build_service("iris", "ml", _spec(service=service), CTX)
    assert svc["spec"]["type"] == service.get("type", "LoadBalancer")
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": service.get("port", 80), "targetPort": 8080, "protocol": "TCP"}
    ]
    assert svc["spec"]["selector"] == b.selector("iris")
    assert all(port["targetPort"] != b.METRICS_PORT and port["name"] != "metrics" for port in svc["spec"]["ports"])


@pytest.mark.parametrize(("replicas", "has_pdb"), [(0, False), (1, False), (2, True), (100, True)])
def test_pdb_only_with_more_than_one_replica(replicas: int, has_pdb: bool) -> None:
    children = b.build_children("iris", "ml", _spec(replicas=replicas), CTX)
    kinds = [m["kind"] for m in children.apply]
    assert ("PodDisruptionBudget" in kinds) is has_pdb
    assert (("PodDisruptionBudget", "iris") in children.absent) is not has_pdb
    assert ("HorizontalPodAutoscaler", "iris") in children.absent, "no autoscaling, no HPA"
    assert kinds[0] == "Deployment" and kinds[-1] == "Service"
    if has_pdb:
        pdb = children.apply[1]
        assert pdb["spec"]["maxUnavailable"] == 1 and pdb["spec"]["selector"]["matchLabels"] == b.selector("iris")


def test_with_owner_is_a_copy_with_a_controller_reference() -> None:
    svc = b.build_service("iris", "ml", _spec(), CTX)
    owned = b.with_owner(svc, name="iris", uid="u-1")
    assert "ownerReferences" not in svc["metadata"]
    assert owned["metadata"]["ownerReferences"] == [
        {"apiVersion": "modelapp.io/v1alpha1", "kind": "ModelApp", "name": "iris", "uid": "u-1",
         "controller": True, "blockOwnerDeletion": True},
    ]  # fmt: skip


def test_builders_are_deterministic() -> None:
    spec = _spec(replicas=2)
    assert b.build_children("iris", "ml", spec, CTX) == b.build_children("iris", "ml", spec, CTX)


def test_drift_ignores_server_defaults_and_omitted_zero_values() -> None:
    dep = b.build_deployment("iris", "ml", _spec(), CTX)
    live = {**dep, "status": {"replicas": 1}, "metadata": {**dep["metadata"], "uid": "u", "generation": 2}}
    live["spec"] = {**dep["spec"], "paused": False}
    assert not b.drifted(dep, live)
    assert not b.drifted({"a": 0, "b": {}, "c": ""}, {})


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["spec"].update(replicas=7),
        lambda d: d["spec"]["template"]["metadata"]["annotations"].pop("modelapp.io/image"),
        lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="evil:1"),
        lambda d: d["spec"]["template"]["spec"]["containers"].append({"name": "sidecar"}),
    ],
)
def test_drift_detects_edits(edit: Any) -> None:
    dep = b.build_deployment("iris", "ml", _spec(), CTX)
    live = b.build_deployment("iris", "ml", _spec(), CTX)
    edit(live)
    assert b.drifted(dep, live)


# --- spec.pod: where and as whom the pods run (issue 9) ---------------------------------------------------

POD = {
    "serviceAccountName": "iris-reader",
    "imagePullSecrets": [{"name": "acr-pull"}],
    "nodeSelector": {"kubernetes.io/os": "linux", "agentpool": "gpu"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                    {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "tolerationSeconds": 30}],
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                            "labelSelector": {"matchLabels": {"team": "ml"}}}}]}},
    "labels": {"azure.workload.identity/use": "true", "team": "ml"},
    "annotations": {"prometheus.io/scrape": "false"},
}  # fmt: skip


def test_pod_settings_reach_the_pod_template() -> None:
    template = _template(_spec(pod=POD))
    pod = template["spec"]
    assert pod["serviceAccountName"] == "iris-reader"
    assert pod["imagePullSecrets"] == [{"name": "acr-pull"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "agentpool": "gpu"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "operator": "Equal", "effect": "NoExecute", "tolerationSeconds": 30},
    ]
    assert pod["affinity"] == POD["affinity"]
    assert template["metadata"]["labels"]["team"] == "ml"
    assert template["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "false"


def test_a_service_account_brings_back_no_api_token() -> None:
    pod = _pod(_spec(pod={"serviceAccountName": "iris-reader"}))
    assert pod["automountServiceAccountToken"] is False
    for container in pod["initContainers"] + pod["containers"]:
        assert not any(m["mountPath"].startswith("/var/run/secrets") for m in container["volumeMounts"])
    assert {v["name"] for v in pod["volumes"]} == {"model", "tmp"}


def test_identity_webhooks_skip_the_app_container_unless_told_otherwise() -> None:
    annotations = _template(_spec(pod={"serviceAccountName": "iris-reader"}))["metadata"]["annotations"]
    assert annotations["azure.workload.identity/skip-containers"] == "app"
    assert annotations["eks.amazonaws.com/skip-containers"] == "app"
    theirs = _spec(
        pod={"serviceAccountName": "iris-reader", "annotations": {"azure.workload.identity/skip-containers": ""}}
    )
    assert _template(theirs)["metadata"]["annotations"]["azure.workload.identity/skip-containers"] == ""


def test_without_pod_settings_the_template_is_unchanged() -> None:
    """An operator upgrade must not roll out every ModelApp: no spec.pod (or an empty one) adds nothing."""
    bare = _template(_spec())
    assert _template(_spec(pod={})) == bare
    placement = {"serviceAccountName", "imagePullSecrets", "nodeSelector", "tolerations", "affinity"}
    assert not placement & bare["spec"].keys()
    assert set(bare["metadata"]["annotations"]) == {"modelapp.io/image", "modelapp.io/model-uri",
                                                     "modelapp.io/model-version"}  # fmt: skip


@pytest.mark.parametrize(
    "pod",
    [
        {"serviceAccountName": "other"},
        {"imagePullSecrets": [{"name": "other"}]},
        {"nodeSelector": {"agentpool": "cpu"}},
        {"tolerations": [{"key": "dedicated", "value": "ml"}]},
        {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}},
        {"labels": {"team": "ml"}},
        {"annotations": {"team": "ml"}},
    ],
)
def test_every_pod_setting_changes_the_template(pod: dict[str, Any]) -> None:
    assert _template(_spec(pod=pod)) != _template(_spec())


def test_pod_labels_and_annotations_never_replace_ours() -> None:
    """The spec refuses our keys; even a spec built without validation (model_copy) cannot replace them."""
    spec = _spec()
    hostile = spec.model_copy(update={"pod": PodSettings.model_construct(
        labels={"app.kubernetes.io/instance": "other", "app.kubernetes.io/managed-by": "me"},
        annotations={"modelapp.io/image": "evil:1", "modelapp.io/model-version": "666"})})  # fmt: skip
    metadata = _template(hostile)["metadata"]
    assert b.selector("iris").items() <= metadata["labels"].items()
    assert metadata["annotations"]["modelapp.io/image"] == "registry.example.com/iris-app:1.4.2"
    assert metadata["annotations"]["modelapp.io/model-version"] == "7"


def test_our_labels_are_the_ones_the_spec_reserves() -> None:
    assert set(b.labels("iris")) == set(OUR_POD_LABELS)


# --- issue 10: a Secret never reaches the tenant's own image ---------------------------------------------


def test_no_secret_reaches_a_container_running_the_app_image() -> None:
    """The spec refuses credentialsSecret with file://, but a last-good pair is put in place by model_copy
    (revisions.apply_to), which skips validation: the builder itself must keep the Secret out."""
    spec = _spec(model={"uri": "azureblob://models/iris", "version": "7", "credentialsSecret": "blob"})
    baked = spec.model_copy(update={"model": spec.model.model_copy(update={"uri": "file:///opt/models/iris"})})
    pod = _pod(baked)
    for container in pod["initContainers"] + pod["containers"]:
        if container["image"] == baked.image:
            assert "envFrom" not in container, container["name"]
            assert all("valueFrom" not in e for e in container.get("env", [])), container["name"]
    assert pod["initContainers"][0]["image"] == baked.image


def test_the_serving_image_still_gets_the_named_secret() -> None:
    spec = _spec(model={"uri": "s3://bucket/iris", "version": "7", "credentialsSecret": "s3"})
    fetch = _pod(spec)["initContainers"][0]
    assert fetch["image"] == CTX.serving_image and fetch["envFrom"] == [{"secretRef": {"name": "s3"}}]
    assert "envFrom" not in _pod(_spec())["containers"][0]


def test_autoscaling_hands_replicas_to_an_hpa() -> None:
    """With spec.autoscaling the Deployment has no replicas (the HPA owns them under server-side apply),
    an autoscaling/v2 HPA targets it, and a PDB follows the maximum."""
    spec = _spec(replicas=1, autoscaling={"minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 60,
                                          "targetMemoryUtilizationPercentage": 75})  # fmt: skip
    children = b.build_children("iris", "ml", spec, CTX)
    kinds = [m["kind"] for m in children.apply]
    assert kinds == ["Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Service"]
    assert "replicas" not in children.apply[0]["spec"]
    hpa = children.apply[2]
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["metadata"]["labels"] == b.labels("iris")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "iris"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert [(m["resource"]["name"], m["resource"]["target"]["averageUtilization"]) for m in hpa["spec"]["metrics"]] \
        == [("cpu", 60), ("memory", 75)]
    assert children.absent == [("Ingress", "iris")], "no spec.ingress, no Ingress"
    one = b.build_children("iris", "ml", _spec(autoscaling={"maxReplicas": 1}), CTX)
    assert ("PodDisruptionBudget", "iris") in one.absent, "at most one pod: no PDB"


def test_every_container_running_the_app_image_always_pulls() -> None:
    """A pod of another namespace must not run a private image a pod of its owner left on the node: the
    kubelet asks the registry (with the pod's pull Secrets) at every start. The serving image (the
    platform's) keeps the default."""
    fetched = b.pod_spec("iris", _spec(), CTX)
    assert fetched["containers"][0]["imagePullPolicy"] == "Always"
    assert "imagePullPolicy" not in fetched["initContainers"][0], "the platform's serving image"
    baked = b.pod_spec("iris", _spec(model={"uri": "file:///opt/models/iris", "version": "1"}), CTX)
    assert [c["imagePullPolicy"] for c in baked["initContainers"] + baked["containers"]] == ["Always", "Always"]
