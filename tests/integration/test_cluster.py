"""The embedded local cluster, end to end on real processes.

Design notes: everything here runs against the session's `kube_cluster` (real etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and kwok on 127.0.0.1) and talks to it
through the kubeconfig it writes, with the official Python client, exactly as the operator will.
No operator is involved: a plain Deployment must get Ready pods on kwok nodes, and a pod whose
image ends in `-broken` must stay not ready (the hook rollback tests rely on). The command line is
exercised as a subprocess. Lifecycle tests that stop a cluster use a second cluster of their own,
so the shared one is never disturbed. Waits poll with deadlines.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from modelapp_devcluster import ClusterError, LocalCluster
from modelapp_devcluster.binaries import find_binary, run_go
from modelapp_devcluster.versions import ETCD, KUBERNETES

pytestmark = pytest.mark.integration


def _api(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


def _poll(what: str, check: Callable[[], Any], *, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _modelapp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelapp_operator.cli", *args], capture_output=True, text=True,
                          timeout=300, check=False)


def _deployment(name: str, image: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image,
                                         "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
            },
        },
    }


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def test_up_is_healthy(kube_cluster: LocalCluster) -> None:
    api = _api(kube_cluster.kubeconfig)
    assert kube_cluster.admin_client().ready()
    version = client.VersionApi(api).get_code()
    assert version.git_version.startswith("v1.34.")
    core = client.CoreV1Api(api)
    assert core.read_namespaced_service_account("default", "default").metadata.name == "default"
    nodes = [n for n in core.list_node().items if n.metadata.annotations.get("kwok.x-k8s.io/node") == "fake"]
    assert len(nodes) >= 1
    assert all(any(c.type == "Ready" and c.status == "True" for c in n.status.conditions) for n in nodes)
    assert sum(int(n.status.allocatable["pods"]) for n in nodes) >= 1000
    assert kube_cluster.server.startswith("https://127.0.0.1:")


def test_rbac_is_enforced_for_a_service_account_token(kube_cluster: LocalCluster, namespace: str) -> None:
    core = client.CoreV1Api(_api(kube_cluster.kubeconfig))
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    rbac = client.RbacAuthorizationV1Api(_api(kube_cluster.kubeconfig))
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "pod-reader"},
                                            "rules": [{"apiGroups": [""], "resources": ["pods"],
                                                       "verbs": ["get", "list"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
    })
    path = kube_cluster.service_account_kubeconfig(namespace, "reader")
    as_sa = client.CoreV1Api(_api(path))
    assert _poll("the role binding to apply", lambda: _allowed(lambda: as_sa.list_namespaced_pod(namespace)))
    with pytest.raises(client.ApiException) as denied:
        as_sa.list_namespaced_secret(namespace)
    assert denied.value.status == 403
    with pytest.raises(client.ApiException) as denied:
        as_sa.list_namespaced_pod("kube-system")
    assert denied.value.status == 403


def _allowed(call: Callable[[], Any]) -> bool:
    try:
        call()
    except client.ApiException as exc:
        if exc.status == 403:
            return False
        raise
    return True


def test_deployment_gets_ready_pods_on_kwok_nodes(kube_cluster: LocalCluster, namespace: str) -> None:
    api = _api(kube_cluster.kubeconfig)
    client.AppsV1Api(api).create_namespaced_deployment(namespace, _deployment("web", "example.com/app:1.0", 3))
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    _poll("3 ready replicas", lambda: apps.read_namespaced_deployment(  # type: ignore[no-any-return]
        "web", namespace).status.ready_replicas == 3)
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 3
    for pod in pods:
        assert pod.spec.node_name.startswith("kwok-node-")
        assert pod.status.phase == "Running"
        assert pod.status.pod_ip
        assert _ready(pod)


def test_broken_image_never_becomes_ready(kube_cluster: LocalCluster, namespace: str) -> None:
    api = _api(kube_cluster.kubeconfig)
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(namespace, _deployment("good", "example.com/app:1.0", 1))
    apps.create_namespaced_deployment(namespace, _deployment("bad", "example.com/app:1.0-broken", 1))

    def bad_pod_started() -> Any:
        pods = core.list_namespaced_pod(namespace, label_selector="app=bad").items
        return pods[0] if pods and pods[0].status.phase == "Running" else None

    _poll("the good pod to be ready", lambda: apps.read_namespaced_deployment(  # type: ignore[no-any-return]
        "good", namespace).status.ready_replicas == 1)
    pod = _poll("the broken pod to start", bad_pod_started)
    assert not _ready(pod)
    assert pod.status.container_statuses[0].ready is False
    # Bounded wait: it must still not be ready a while later, and the Deployment has no ready replica.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        assert not _ready(core.read_namespaced_pod(pod.metadata.name, namespace))
        time.sleep(0.5)
    assert not apps.read_namespaced_deployment("bad", namespace).status.ready_replicas


def test_status_and_kubeconfig_commands(kube_cluster: LocalCluster) -> None:
    state = str(kube_cluster.state_dir)
    status = _modelapp("cluster", "status", "--state-dir", state)
    assert status.returncode == 0, status.stderr
    assert "cluster:    up" in status.stdout
    assert kube_cluster.server in status.stdout
    for component in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"):
        assert component in status.stdout
    path = _modelapp("cluster", "kubeconfig", "--state-dir", state)
    assert path.returncode == 0
    assert path.stdout.strip() == str(kube_cluster.kubeconfig)
    again = _modelapp("cluster", "up", "--state-dir", state)
    assert again.returncode == 0, again.stderr
    assert "already up" in again.stderr
    assert again.stdout.strip() == str(kube_cluster.kubeconfig)


def test_port_in_use_is_a_one_line_error(tmp_path: Path, kube_cluster: LocalCluster) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = _modelapp("cluster", "up", "--state-dir", str(tmp_path / "c"), "--apiserver-port", str(port))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == f"error: port {port} on 127.0.0.1 (apiserver) is in use; pick another or stop its owner"
    assert _modelapp("cluster", "status", "--state-dir", str(tmp_path / "c")).returncode == 1


def test_a_second_cluster_goes_up_and_down(tmp_path: Path, kube_cluster: LocalCluster) -> None:
    other = LocalCluster(tmp_path / "other")
    assert other.up() is True
    try:
        assert other.is_up()
        assert other.server != kube_cluster.server
        assert other.up() is False  # idempotent
    finally:
        stopped = other.down()
    assert set(stopped) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
    status = other.status()
    assert not status.healthy
    assert status.running == []
    assert kube_cluster.is_up()


def test_go_missing_is_a_one_line_error(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path / "empty"), "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    with pytest.raises(ClusterError) as exc:
        LocalCluster(tmp_path / "state", env=env).up()
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith("Go is not installed and etcd are missing")
    assert "KUBEBUILDER_ASSETS" in message


def test_a_failed_build_reports_the_tail_of_its_log(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    script = "print('go: downloading x'); print('# k8s.io/x'); print('x.go:1: undefined: foo'); raise SystemExit(2)"
    failing = [sys.executable, "-c", script]
    with pytest.raises(ClusterError) as exc:
        run_go(failing, cwd=tmp_path, env={}, log=log, label="building kube-apiserver", report=lambda _: None)
    assert str(exc.value) == (
        f"building kube-apiserver failed (exit 2): go: downloading x | # k8s.io/x | x.go:1: undefined: foo "
        f"(full log: {log})")


def test_binaries_from_kubebuilder_assets_are_used_only_at_the_right_version(
        tmp_path: Path, kube_cluster: LocalCluster) -> None:
    record = kube_cluster.record()
    assert record is not None
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "kube-apiserver").symlink_to(record.binaries["kube-apiserver"])
    old = assets / "etcd"
    old.write_text("#!/bin/sh\necho 'etcd Version: 3.4.30'\n")
    old.chmod(0o755)
    env = {"KUBEBUILDER_ASSETS": str(assets), "PATH": "", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    found = find_binary("kube-apiserver", KUBERNETES, env)
    assert found is not None
    assert (found.source, found.path) == ("KUBEBUILDER_ASSETS", assets / "kube-apiserver")
    assert find_binary("etcd", ETCD, env) is None  # too old: it would be built instead
