"""Real pods on the embedded cluster's real node.

Design notes:
- Everything is real: the control plane of `kube_cluster`, containerd + runc, kubelet,
  kube-proxy in iptables mode, the bridge CNI, and Debian's docker-registry on 127.0.0.1.
- No image comes from a public registry. The workload is the dev cluster's packaged `hello.c`
  (modelapp_devcluster/data/pause/), compiled with `gcc -static`, written as an OCI image by
  `node_image`, and pushed to the local registry;
  the pod pulls it from there (`imagePullPolicy: Always`), which proves the registry path.
- Each test gets a fresh namespace (`namespace` from tests/fixtures/cluster.py); pods select
  `modelapp.io/node=real` and tolerate its taint (the node is dedicated, so that other tests'
  pods never land on it).
- Traffic stays on this machine: the host calls the Service's ClusterIP and its NodePort on
  127.0.0.1; a second pod calls the ClusterIP from inside the pod network.
- Every wait polls with a deadline; the time to the first Ready pod is printed for the report.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.stream import stream

from modelapp_devcluster import LocalCluster, node_build
from modelapp_devcluster.api import ApiClient
from modelapp_devcluster.node import ControlPlane, RealNode
from modelapp_devcluster.node_image import ImageFile, build_image
from modelapp_devcluster.node_registry import push_image

pytestmark = pytest.mark.integration

HELLO_PORT = 8080


def _poll(what: str, probe: Callable[[], Any], *, timeout: float) -> Any:
    """Return `probe()`'s first truthy result, or fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.25)
    pytest.fail(f"{what}: not within {timeout:.0f}s (last: {last!r})")


def _ok(api: ApiClient, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = api.request(method, path, body)
    assert response.status < 300, f"{method} {path}: HTTP {response.status} {response.body[:300]!r}"
    return response.json()


def _http_get(host: str, port: int) -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, port, timeout=3)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def hello_image(real_node: RealNode) -> str:
    """The test web server as an image in the node's local registry; returns its reference."""
    binary = node_build.static_program("hello.c")
    image = build_image([ImageFile("/hello", binary.read_bytes())], entrypoint=["/hello"],
                        cmd=[str(HELLO_PORT)], user="65534:65534", exposed_ports=[HELLO_PORT])
    return push_image(real_node.settings.registry_host, "modelapp-test/hello", image.manifest_digest[7:19], image)


def _pod(name: str, image: str, *, args: list[str] | None = None, labels: dict[str, str] | None = None,
         probe: bool = True, restart: str = "Always") -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "hello",
        "image": image,
        "imagePullPolicy": "Always",
        "ports": [{"containerPort": HELLO_PORT}],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "readOnlyRootFilesystem": True,
                            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if args is not None:
        container["args"] = args
    if probe:
        container["readinessProbe"] = {"httpGet": {"path": "/", "port": HELLO_PORT}, "periodSeconds": 1}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "nodeSelector": {"modelapp.io/node": "real"},
            "tolerations": [{"key": "modelapp.io/node", "operator": "Equal", "value": "real", "effect": "NoSchedule"}],
            "restartPolicy": restart,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 30,
            "containers": [container],
        },
    }


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def test_node_is_ready_with_the_local_sandbox_image(real_node: RealNode, real_node_control: ControlPlane) -> None:
    node = _ok(real_node_control.api(), "GET", f"/api/v1/nodes/{real_node.settings.name}")
    assert _ready(node), json.dumps(node.get("status", {}).get("conditions"))
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.4"
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://1.6.")
    assert {"key": "modelapp.io/node", "value": "real", "effect": "NoSchedule"} in node["spec"]["taints"]
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == real_node.settings.node_ip
    images = real_node._ctr("images", "list", "--quiet").stdout.split()
    assert real_node.settings.sandbox_image in images
    print(f"\nnode up: {real_node.last_up.steps if real_node.last_up else 'already running'}")


def test_pod_runs_and_answers_through_its_service(real_node: RealNode, real_node_control: ControlPlane,
                                                   hello_image: str, namespace: str) -> None:
    api = real_node_control.api()
    labels = {"app": "hello"}
    started = time.monotonic()
    _ok(api, "POST", f"/api/v1/namespaces/{namespace}/pods", _pod("hello", hello_image, labels=labels))
    service = _ok(api, "POST", f"/api/v1/namespaces/{namespace}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "hello"},
        "spec": {"type": "NodePort", "selector": labels, "ports": [{"port": 80, "targetPort": HELLO_PORT}]},
    })
    pod = _poll("pod Ready", lambda: (p := _ok(api, "GET", f"/api/v1/namespaces/{namespace}/pods/hello"))
                and _ready(p) and p, timeout=120)
    print(f"\nfirst pod Ready after {time.monotonic() - started:.1f}s")
    # `kubectl logs`: the API server reaches the kubelet with its own client certificate.
    logs = api.request("GET", f"/api/v1/namespaces/{namespace}/pods/hello/log")
    assert logs.status == 200 and "hello: listening on" in logs.body.decode(), (logs.status, logs.body[:300])
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(real_node.settings.pod_subnet)
    assert pod["status"]["containerStatuses"][0]["imageID"].startswith(hello_image.rsplit(":", 1)[0] + "@sha256:")

    cluster_ip, node_port = service["spec"]["clusterIP"], service["spec"]["ports"][0]["nodePort"]
    for host, port in ((cluster_ip, 80), ("127.0.0.1", node_port)):
        # Until kube-proxy has written the Service's rules, the ClusterIP does not answer and a
        # NodePort on 127.0.0.1 may reach whatever else listens on that port: wait for our answer,
        # then check that it stays ours.
        _poll(f"GET http://{host}:{port}/", lambda h=host, p=port: _try_get(h, p) == (200, "hello from hello\n"),
              timeout=30)
        assert [_try_get(host, port) for _ in range(5)] == [(200, "hello from hello\n")] * 5


def test_kubectl_logs_and_exec_reach_the_pod(real_node_control: ControlPlane, kube_cluster: LocalCluster,
                                             hello_image: str, namespace: str) -> None:
    """`kubectl logs` and `kubectl exec` (issue 11.6): both go from the API server to kubelet on the node's
    InternalIP with the API server's client certificate, then to containerd's streaming server; a
    client of the cluster's kubeconfig sees what kubectl sees (exec over WebSocket, as kubectl 1.34 does)."""
    api = real_node_control.api()
    _ok(api, "POST", f"/api/v1/namespaces/{namespace}/pods", _pod("shell", hello_image))
    _poll("pod Ready", lambda: _ready(_ok(api, "GET", f"/api/v1/namespaces/{namespace}/pods/shell")), timeout=120)
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(kube_cluster.kubeconfig)))
    assert "hello: listening on" in core.read_namespaced_pod_log("shell", namespace)
    # `hello probe` prints the answer's body on success, "hello probe: ..." otherwise.
    out = stream(core.connect_get_namespaced_pod_exec, "shell", namespace, container="hello",
                 command=["/hello", "probe", "127.0.0.1", str(HELLO_PORT)], stdout=True, stderr=True,
                 stdin=False, tty=False, _request_timeout=60)
    assert out == "hello from shell\n", out


def _try_get(host: str, port: int) -> tuple[int, str] | None:
    try:
        return _http_get(host, port)
    except OSError:
        return None


def test_a_pod_reaches_a_service_from_inside_the_pod_network(real_node_control: ControlPlane, hello_image: str,
                                                             namespace: str) -> None:
    api = real_node_control.api()
    labels = {"app": "server"}
    _ok(api, "POST", f"/api/v1/namespaces/{namespace}/pods", _pod("server", hello_image, labels=labels))
    service = _ok(api, "POST", f"/api/v1/namespaces/{namespace}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "server"},
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": HELLO_PORT}]},
    })
    _poll("server Ready", lambda: _ready(_ok(api, "GET", f"/api/v1/namespaces/{namespace}/pods/server")),
          timeout=120)
    cluster_ip = service["spec"]["clusterIP"]
    # The Service works only once kube-proxy has written its rules (it syncs on its own schedule):
    # wait until the ClusterIP answers from the host, so the pod's single probe tests the pod network.
    _poll(f"GET http://{cluster_ip}/", lambda: _try_get(cluster_ip, 80) == (200, "hello from server\n"), timeout=30)
    # OnFailure: a probe that loses a race with a rule sync is retried by kubelet, as any real client would.
    client = _pod("client", hello_image, args=["probe", cluster_ip, "80"], probe=False, restart="OnFailure")
    _ok(api, "POST", f"/api/v1/namespaces/{namespace}/pods", client)
    phase = _poll("client finished", lambda: _phase(api, namespace, "client") in ("Succeeded", "Failed")
                  and _phase(api, namespace, "client"), timeout=120)
    assert phase == "Succeeded"


def _phase(api: ApiClient, namespace: str, pod: str) -> str:
    return str(_ok(api, "GET", f"/api/v1/namespaces/{namespace}/pods/{pod}").get("status", {}).get("phase", ""))


def test_deleting_a_pod_stops_its_container_promptly(real_node: RealNode, real_node_control: ControlPlane,
                                                     hello_image: str, namespace: str) -> None:
    """hello and pause both exit on SIGTERM, so deletion takes far less than the 30 s grace period."""
    api = real_node_control.api()
    _ok(api, "POST", f"/api/v1/namespaces/{namespace}/pods", _pod("short", hello_image))
    _poll("pod Ready", lambda: _ready(_ok(api, "GET", f"/api/v1/namespaces/{namespace}/pods/short")), timeout=120)
    started = time.monotonic()
    _ok(api, "DELETE", f"/api/v1/namespaces/{namespace}/pods/short")
    _poll("pod gone", lambda: api.request("GET", f"/api/v1/namespaces/{namespace}/pods/short").status == 404,
          timeout=25)
    assert time.monotonic() - started < 25
