"""spec.auth on the real API server (kwok nodes) and against real model servers (issue 12.4).

Design notes: `modelapp run` runs as a subprocess against the local cluster, with its smoke-test key kept
in a namespace of its own (MODELAPP_OPERATOR_NAMESPACE), as the chart runs it. kwok pods run no server, so,
as in test_rollback_smoke.py, the HTTP half runs against real `modelapp-serving serve` processes on
127.0.0.1, started with exactly the environment the operator's pod template gives the app container: the
token Secret's value (what the kubelet resolves from `secretKeyRef`) and the smoke digest the operator wrote.
Checked:
- the operator renders and applies the auth env, creates its key once in its own namespace and no Secret in
  the tenant's, and a restarted operator derives the same digest (no roll);
- the smoke test (`smoke.run` with the token the operator derives) passes against the app's own server and
  gets 401 from another app's; a tenant's token does not open another app either;
- the threat: every string a reader of namespace X can see in the ModelApp, its Deployment, ReplicaSets,
  Service and pods (the digest included) is refused as a token;
- a missing token Secret: Ready False / TokenSecretMissing naming Secret and key, the pair not quarantined
  past its progress deadline, the running revision's pods kept. kwok's pods never start a container, so the
  test writes the pod status the kubelet writes in that case (CreateContainerConfigError and its message);
- the chart's Role is enough for the key and nothing more, acting as the chart's ServiceAccount;
- a Secret name the CRD refuses.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from modelapp_devcluster import LocalCluster
from modelapp_operator import builders, kube, smoke
from modelapp_operator.spec import SmokeTest
from tests.fixtures.cluster import fresh_namespace
from tests.fixtures.helm import Rendered
from tests.fixtures.models import Iris, ModelDir, ServeProcess
from tests.fixtures.operator import OperatorProcess, wait_for

pytestmark = pytest.mark.integration

RunOperator = Callable[..., OperatorProcess]
IMAGE = "localhost:5000/iris-app:1.0.0"


@pytest.fixture
def operator_namespace(kube_cluster: LocalCluster) -> Iterator[str]:
    """The operator's own namespace (where its key lives), apart from the tenant's."""
    with fresh_namespace(kube_cluster, "op") as name:
        yield name


@pytest.fixture
def auth_operator(run_operator: RunOperator, operator_namespace: str, monkeypatch: pytest.MonkeyPatch) -> RunOperator:
    monkeypatch.setenv("MODELAPP_OPERATOR_NAMESPACE", operator_namespace)
    monkeypatch.setenv("MODELAPP_SMOKE_KEY_SECRET", "modelapp-smoke-key")
    return run_operator


def _golden(iris: Iris) -> SmokeTest:
    rows = iris.features[:3]
    return SmokeTest.model_validate({
        "inputs": [{"name": "input", "shape": [3, 4], "data": [float(x) for x in rows.flatten()]}],
        "expected": [{"name": "label", "data": [float(x) for x in iris.estimator.predict(rows)]}],
    })  # fmt: skip


def _secret(name: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}  # fmt: skip


def _app(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "modelapp.io/v1alpha1", "kind": "ModelApp",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"image": IMAGE, "model": {"uri": "file:///opt/models/iris", "version": "1"},
                     "service": {"type": "ClusterIP"}, **spec}}  # fmt: skip


def _app_env(name: str, namespace: str) -> dict[str, Any]:
    dep = kube.get("Deployment", name, namespace) or {}
    containers = ((((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")) or [{}]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in containers[0].get("env") or []}


def _serve_like_the_pod(start: Callable[..., ServeProcess], model: ModelDir, name: str, namespace: str) -> ServeProcess:
    """A real server with the app container's auth environment, resolved as the kubelet resolves it."""
    env = _app_env(name, namespace)
    ref = env[builders.ENV_AUTH_TOKEN]["secretKeyRef"]
    data = kube.secret_data(ref["name"], namespace) or {}
    server = start(model, name, [], {builders.ENV_AUTH_TOKEN: data[ref["key"]].decode(),
                                     builders.ENV_AUTH_SMOKE_SHA256: env[builders.ENV_AUTH_SMOKE_SHA256]})  # fmt: skip
    server.wait_ready()
    return server


def _token_for(app: dict[str, Any], key: bytes) -> str:
    """The smoke token as the operator derives it for the app's current pair."""
    spec = app["spec"]
    return builders.smoke_token(key, uid=app["metadata"]["uid"], image=spec["image"], uri=spec["model"]["uri"],
                                version=spec["model"]["version"], sha256=spec["model"].get("sha256", ""))  # fmt: skip


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from _strings(item)
    elif isinstance(obj, str):
        yield obj


def test_auth_is_applied_and_the_smoke_token_opens_its_own_app_only(
    auth_operator: RunOperator, namespace: str, operator_namespace: str, *, iris: Iris, onnx_model_dir: ModelDir,
    serve_process: Callable[..., ServeProcess],
) -> None:
    golden = _golden(iris).model_dump(by_alias=True, exclude_none=True)
    tokens = {"iris-a": "token-of-a-" + uuid.uuid4().hex, "iris-b": "token-of-b-" + uuid.uuid4().hex}
    for name, token in tokens.items():
        kube.apply(_secret(f"{name}-token", namespace, {"token": token}))
    operator = auth_operator(namespace)
    for name in tokens:
        kube.apply(_app(name, namespace, auth={"secretName": f"{name}-token"}, rollout={"smokeTest": golden}))
    for name in tokens:
        wait_for(f"{name} applied with its smoke digest", lambda n=name: builders.ENV_AUTH_SMOKE_SHA256 in _app_env(
            n, namespace), timeout=90)  # fmt: skip
        assert _app_env(name, namespace)[builders.ENV_AUTH_TOKEN] == {
            "secretKeyRef": {"name": f"{name}-token", "key": "token"}}  # fmt: skip
    key = (kube.secret_data("modelapp-smoke-key", operator_namespace) or {}).get("key", b"")
    assert len(key) == 32, "the operator made its key in its own namespace"
    tenant_secrets = {s["metadata"]["name"] for s in kube.list_objects("Secret", namespace)}
    assert tenant_secrets == {"iris-a-token", "iris-b-token"}, "and nothing in the tenant's"
    apps = {name: kube.get("ModelApp", name, namespace) or {} for name in tokens}
    smoke_tokens = {name: _token_for(app, key) for name, app in apps.items()}
    for name in tokens:
        assert _app_env(name, namespace)[builders.ENV_AUTH_SMOKE_SHA256] == builders.token_sha256(smoke_tokens[name])

    servers = {name: _serve_like_the_pod(serve_process, onnx_model_dir, name, namespace) for name in tokens}
    test = _golden(iris)
    for name, other in (("iris-a", "iris-b"), ("iris-b", "iris-a")):
        own = smoke.run(test, name, smoke.http_transport(servers[name].url, token=smoke_tokens[name]))
        assert own.passed, own.message
        crossed = smoke.run(test, other, smoke.http_transport(servers[other].url, token=smoke_tokens[name]))
        assert not crossed.passed and crossed.message.startswith("HTTP 401"), crossed.message
        none = smoke.run(test, name, smoke.http_transport(servers[name].url))
        assert not none.passed and none.message.startswith("HTTP 401"), none.message
        reply = requests.get(f"{servers[other].url}/version", headers={"Authorization": f"Bearer {tokens[name]}"},
                             timeout=5)  # fmt: skip
        assert reply.status_code == 401, "a tenant's token does not open another app"
        assert requests.get(f"{servers[name].url}/version", headers={"Authorization": f"Bearer {tokens[name]}"},
                            timeout=5).status_code == 200  # fmt: skip

    # The threat: whatever a reader of namespace X sees of the app, tried as the token, opens nothing.
    selector = builders.selector("iris-a")
    seen = [kube.get("ModelApp", "iris-a", namespace), kube.get("Deployment", "iris-a", namespace),
            kube.get("Service", "iris-a", namespace), *kube.list_objects("Pod", namespace, selector=selector),
            *kube._call("GET", f"/apis/apps/v1/namespaces/{namespace}/replicasets")["items"]]  # fmt: skip
    candidates = {s.strip() for s in _strings(seen) if s.strip() and len(s) < 4096 and s.isascii() and s.isprintable()}
    assert builders.token_sha256(smoke_tokens["iris-a"]) in candidates, "the digest is among what a reader sees"
    with requests.Session() as session:
        url = f"{servers['iris-a'].url}/version"
        opened = [c for c in sorted(candidates)
                  if session.get(url, headers={"Authorization": f"Bearer {c}"}, timeout=5).status_code != 401]
    assert opened == [], f"{len(candidates)} strings tried; these opened the app: {opened[:5]}"

    # A restarted operator derives the same digest: the Deployment is not changed (nothing rolls).
    before = {name: (kube.get("Deployment", name, namespace) or {})["metadata"]["generation"] for name in tokens}
    operator.stop()
    auth_operator(namespace)
    # The new operator resumes every ModelApp (a pass applying whatever drifted); that it is at work is seen when
    # it repairs a deleted child.
    service_uid = (kube.get("Service", "iris-a", namespace) or {})["metadata"]["uid"]
    kube.delete("Service", "iris-a", namespace)
    wait_for("the restarted operator at work", lambda: (kube.get("Service", "iris-a", namespace) or {}).get(
        "metadata", {}).get("uid") not in (None, service_uid), timeout=90)  # fmt: skip
    after = {name: (kube.get("Deployment", name, namespace) or {})["metadata"]["generation"] for name in tokens}
    assert after == before
    assert (kube.secret_data("modelapp-smoke-key", operator_namespace) or {}).get("key") == key


def _condition(name: str, namespace: str, kind: str) -> dict[str, Any]:
    status = (kube.get("ModelApp", name, namespace) or {}).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def _kubelet_cannot_start(pod: dict[str, Any], message: str) -> None:
    """Write what the kubelet writes for a container whose env names a missing Secret (kwok runs none)."""
    name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
    statuses = [{"name": c["name"], "image": c["image"], "imageID": "", "ready": False, "restartCount": 0,
                 "started": False, "state": {"waiting": {"reason": "CreateContainerConfigError", "message": message}}}
                for c in pod["spec"]["containers"]]  # fmt: skip
    kube._call("PATCH", f"/api/v1/namespaces/{namespace}/pods/{name}/status",
               body={"status": {"containerStatuses": statuses}}, content_type="application/merge-patch+json")


def test_a_missing_token_secret_is_a_condition_and_no_quarantine(auth_operator: RunOperator, namespace: str) -> None:
    kube.apply(_secret("iris-token", namespace, {"token": "t0ken"}))
    auth_operator(namespace)
    kube.apply(_app("iris", namespace, replicas=2, auth={"secretName": "iris-token"}))
    wait_for("iris Ready", lambda: _condition("iris", namespace, "Ready").get("status") == "True", timeout=90)
    old_pods = {p["metadata"]["name"] for p in kube.list_objects("Pod", namespace, selector=builders.selector("iris"))}
    # A new pair naming a Secret that does not exist; "-broken" keeps kwok from calling its pods ready.
    kube.apply(_app("iris", namespace, replicas=2, image=IMAGE + "-broken", auth={"secretName": "iris-token-v2"},
                    rollout={"progressDeadlineSeconds": 10}))  # fmt: skip

    def new_pod() -> dict[str, Any] | None:
        pods = kube.list_objects("Pod", namespace, selector=builders.selector("iris"))
        # Running: kwok has written its status (written before, ours would be overwritten by kwok's stage).
        fresh = (p for p in pods
                 if p["metadata"]["name"] not in old_pods and p.get("status", {}).get("phase") == "Running")
        return next(fresh, None)

    pod = wait_for("a pod of the new revision", new_pod, timeout=60)
    _kubelet_cannot_start(pod, 'secret "iris-token-v2" not found')
    ready = wait_for("TokenSecretMissing", lambda: (c := _condition("iris", namespace, "Ready")).get(
        "reason") == "TokenSecretMissing" and c, timeout=60)  # fmt: skip
    assert ready["status"] == "False"
    assert f"Create the Secret {namespace}/iris-token-v2 with the key 'token'" in ready["message"]
    assert 'secret "iris-token-v2" not found' in ready["message"]
    # Past the progress deadline (10 s): the Deployment says ProgressDeadlineExceeded, the pair stays unjudged.
    wait_for("the deadline", lambda: any(c.get("reason") == "ProgressDeadlineExceeded" for c in (
        (kube.get("Deployment", "iris", namespace) or {}).get("status") or {}).get("conditions") or []), timeout=60)
    wait_for("a pass after the deadline", lambda: _condition("iris", namespace, "Ready").get("reason") == (
        "TokenSecretMissing") and _condition("iris", namespace, "Degraded").get("status") == "True", timeout=30)
    app = kube.get("ModelApp", "iris", namespace) or {}
    outcomes = {r["image"]: r["outcome"] for r in app["status"]["revisions"]}
    assert outcomes == {IMAGE: "Superseded", IMAGE + "-broken": "Progressing"}, outcomes
    assert _condition("iris", namespace, "RolledBack").get("status") != "True"
    pods = {p["metadata"]["name"] for p in kube.list_objects("Pod", namespace, selector=builders.selector("iris"))}
    assert old_pods <= pods, "the running revision's pods keep serving"


def test_the_charts_role_is_enough_for_the_key_and_nothing_more(
    kube_cluster: LocalCluster, modelapp_crds: Any, render_chart: Callable[..., Rendered], namespace: str,
    operator_namespace: str,
) -> None:
    rendered = render_chart({}, namespace=operator_namespace)
    admin_api, ns = kube_cluster.admin_client(), operator_namespace
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ma-modelapp", "namespace": ns}}
    assert admin_api.create(f"/api/v1/namespaces/{ns}/serviceaccounts", account)
    for kind, plural in (("Role", "roles"), ("RoleBinding", "rolebindings")):
        obj = rendered.only(kind, "ma-modelapp-smoke-key", ns)
        assert admin_api.create(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/{plural}", obj), kind
    kube.apply(_secret("tenant-token", namespace, {"token": "tenant"}))
    kube.apply(_secret("other", operator_namespace, {"x": "y"}))
    as_operator = kube_cluster.service_account_kubeconfig(operator_namespace, "ma-modelapp")
    admin = str(kube_cluster.kubeconfig)
    try:
        kube.use_kubeconfig(str(as_operator))
        key = wait_for("RBAC in effect", lambda: _try_key(operator_namespace), timeout=30)
        assert len(key) == 32 and kube.ensure_secret_key("ma-modelapp-smoke-key", operator_namespace) == key
        for name, where in (("tenant-token", namespace), ("other", operator_namespace)):
            with pytest.raises(kube.ApiError) as refused:
                kube.secret_data(name, where)
            assert refused.value.status == 403, name
        with pytest.raises(kube.ApiError) as listing:
            kube.list_objects("Secret", operator_namespace)
        assert listing.value.status == 403
    finally:
        kube.use_kubeconfig(admin)


def _try_key(namespace: str) -> bytes | None:
    try:
        return kube.ensure_secret_key("ma-modelapp-smoke-key", namespace)
    except kube.ApiError as exc:
        if exc.status == 403:
            return None  # the RoleBinding is not in the authorizer's cache yet
        raise


@pytest.mark.parametrize(("auth", "message"), [
    ({"secretName": "Iris_Token"}, "spec.auth.secretName"),
    ({"key": "token"}, "spec.auth.secretName: Required value"),
    ({"secretName": "t", "key": "a/b"}, "spec.auth.key"),
])  # fmt: skip
def test_the_crd_refuses_bad_auth(modelapp_crds: Any, namespace: str, auth: dict[str, Any], message: str) -> None:
    with pytest.raises(kube.ApiError) as refused:
        kube.apply(_app("iris", namespace, auth=auth))
    assert refused.value.status == 422 and message in str(refused.value), str(refused.value)


def test_the_smoke_test_fails_a_pod_that_answers_without_the_token(serve_process: Callable[..., ServeProcess],
                                                                    onnx_model_dir: ModelDir) -> None:  # fmt: skip
    """An app image on a serving runtime older than spec.auth ignores the token's variables and answers anyone:
    after a passed golden request, each pod is asked without the token and must refuse (engine: a failed
    smoke verdict, so the pair is rolled back and quarantined like any failed smoke test). The older runtime
    is a real server without the variables: it behaves exactly so."""
    from tests.fixtures.net import free_port

    ignores = serve_process(onnx_model_dir, "iris")
    ignores.wait_ready()
    problem = smoke.refuses_without_token(smoke.http_transport(ignores.url))
    assert problem is not None and "HTTP 200" in problem and "does not enforce spec.auth" in problem
    enforces = serve_process(onnx_model_dir, "iris", [], {builders.ENV_AUTH_TOKEN: "t0ken"})
    enforces.wait_ready()
    assert smoke.refuses_without_token(smoke.http_transport(enforces.url)) is None
    gone = smoke.refuses_without_token(smoke.http_transport(f"http://127.0.0.1:{free_port()}"), timeout=2)
    assert gone is not None and gone.startswith("GET /version without a token got no answer")
