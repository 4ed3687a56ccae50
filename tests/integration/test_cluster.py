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

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from modelapp_devcluster import ClusterError, LocalCluster, pki, processes
from modelapp_devcluster.api import ApiClient
from modelapp_devcluster.binaries import find_binary, run_go
from modelapp_devcluster.layout import Settings
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


def _cluster_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`modelapp-cluster ...` as a user runs it (the dev cluster's own command line)."""
    return subprocess.run([sys.executable, "-m", "modelapp_devcluster.cli", *args], capture_output=True, text=True,
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
    status = _cluster_cli("status", "--state-dir", state)
    assert status.returncode == 0, status.stderr
    assert "cluster:    up" in status.stdout
    assert kube_cluster.server in status.stdout
    for component in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"):
        assert component in status.stdout
    path = _cluster_cli("kubeconfig", "--state-dir", state)
    assert path.returncode == 0
    assert path.stdout.strip() == str(kube_cluster.kubeconfig)
    again = _cluster_cli("up", "--state-dir", state)
    assert again.returncode == 0, again.stderr
    assert "already up" in again.stderr
    assert again.stdout.strip() == str(kube_cluster.kubeconfig)


def test_port_in_use_is_a_one_line_error(tmp_path: Path, kube_cluster: LocalCluster) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = _cluster_cli("up", "--state-dir", str(tmp_path / "c"), "--apiserver-port", str(port))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    # The holder is named: this test's own process.
    assert last.startswith(f"error: port {port} on 127.0.0.1 (apiserver) is in use by pid {os.getpid()} ("), last
    assert last.endswith("); pick another or stop its owner"), last
    assert _cluster_cli("status", "--state-dir", str(tmp_path / "c")).returncode == 1


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


# -- issue 11: first time, every time, or say exactly why not ----------------------------------------------------
def test_a_process_that_is_starting_is_never_taken_for_one_that_exited(tmp_path: Path) -> None:
    """The false "kube-scheduler exited:" of issue 11: checked right after start, while exec may be under way.

    Before, identity was the program name in /proc/<pid>/cmdline, which reads empty until the kernel
    has set up the new program's arguments; about 2 in 100 immediate checks said "exited". Now our
    own children are asked directly, and other processes are named by their start time.
    """
    sleep = "/usr/bin/sleep"
    pid_file, log = tmp_path / "p.pid", tmp_path / "p.log"
    false_exits = 0
    for _ in range(200):
        pid = processes.start([sleep, "30"], log=log, pid_file=pid_file, env={})
        if not processes.is_running_from(pid_file, sleep):
            false_exits += 1
        processes.stop(pid, sleep)
    assert false_exits == 0
    assert not processes.is_running_from(pid_file, sleep)


def test_a_process_started_elsewhere_is_named_by_its_start_time(tmp_path: Path) -> None:
    """`status` and `down` run in another process than `up`: there the pid file's start time decides."""
    pid_file = tmp_path / "p.pid"
    script = ("import sys; from pathlib import Path; from modelapp_devcluster import processes; "
              "processes.start(['/usr/bin/sleep', '30'], log=Path(sys.argv[1] + '.log'), pid_file=Path(sys.argv[1]), "
              "env={})")
    subprocess.run([sys.executable, "-c", script, str(pid_file)], check=True, timeout=60)
    held = processes.read(pid_file)
    assert held is not None and held.started is not None
    try:
        assert processes.is_running(held.pid, "/usr/bin/sleep", started=held.started)
        # The same pid with another start time is another process (a reused pid): never ours to signal.
        assert not processes.is_running(held.pid, "/usr/bin/sleep", started=held.started + 1)
        assert processes.exit_code(held.pid) is None  # not our child: no exit code to claim
    finally:
        processes.stop(held.pid, "/usr/bin/sleep", started=held.started)
    assert not processes.is_running(held.pid, "/usr/bin/sleep", started=held.started)


def test_a_component_that_dies_is_named_with_its_exit_code_and_its_log(tmp_path: Path) -> None:
    """A real kube-apiserver refusing to start (its service-account key is damaged) fails `up` at once."""
    state = tmp_path / "broken"
    cluster = LocalCluster(state)
    pki.ensure_pki(cluster.layout.pki, service_ip=cluster.settings.service_ip, advertise_address="127.0.0.1")
    (cluster.layout.pki / "sa.key").write_text("not a key\n")
    started = time.monotonic()
    with pytest.raises(ClusterError) as exc:
        cluster.up(timeout=120)
    message = str(exc.value)
    assert time.monotonic() - started < 60, "a dead component must fail `up` before the timeout"
    assert "\n" not in message
    assert message.startswith("kube-apiserver (pid "), message
    assert "exited while waiting for kube-apiserver /readyz, exit code 1; last lines of " in message, message
    assert "sa.key" in message, message  # the API server's own words about the file it could not read
    status = cluster.status()
    assert status.running == [], f"a failed `up` left processes behind: {status.running}"


def test_a_second_up_is_refused_naming_the_first(tmp_path: Path, kube_cluster: LocalCluster) -> None:
    state = tmp_path / "busy"
    first = subprocess.Popen([sys.executable, "-m", "modelapp_devcluster.cli", "up", "--state-dir", str(state)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _poll("the first `up` to hold the state folder",
              lambda: (state / ".lock").exists() and (state / ".lock").read_text().startswith(f"{first.pid} up"))
        second = _cluster_cli("up", "--state-dir", str(state))
        assert second.returncode == 1
        assert second.stderr.strip().splitlines()[-1] == (
            f"error: another `modelapp-cluster up` (pid {first.pid}) is working on {state}: wait for it to "
            f"finish, or stop it and run `modelapp-cluster down --state-dir {state}`")
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        down = _cluster_cli("down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    assert LocalCluster(state).status().running == []


def test_a_folder_moved_to_another_address_gets_a_certificate_for_it(tmp_path: Path,
                                                                        kube_cluster: LocalCluster) -> None:
    """Issue 11: a folder first used on loopback, then on other addresses (`--real-node`: the bridge).

    127.0.0.2 stands in for the bridge's 10.244.0.1 (the real node is not started here): the
    certificate issued for the first `up` does not name it, so the second must issue a new one
    instead of waiting out its timeout on TLS errors.
    """
    state = tmp_path / "moved"
    first = LocalCluster(state)
    first.up(timeout=120)
    first.down()
    reports: list[str] = []
    moved = LocalCluster(state, Settings(advertise_address="127.0.0.2", bind_address="127.0.0.2"),
                         report=reports.append)
    started = time.monotonic()
    try:
        assert moved.up(timeout=60) is True
        assert time.monotonic() - started < 60
        assert moved.server.startswith("https://127.0.0.2:")
        assert moved.admin_client().ready()
        assert "the API server's certificate was issued again: it does not cover 127.0.0.2" in reports
    finally:
        moved.down()
    assert moved.status().running == []


def test_an_address_not_on_this_machine_is_refused_before_anything_starts(tmp_path: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is on no machine, like the real node's bridge address before the bridge exists.
    cluster = LocalCluster(tmp_path / "nowhere", Settings(advertise_address="192.0.2.1", bind_address="192.0.2.1"))
    with pytest.raises(ClusterError) as exc:
        cluster.up(timeout=30)
    assert str(exc.value) == "the API server would listen on 192.0.2.1, which is not an address of this machine"
    assert cluster.status().running == []


def test_a_health_check_that_fails_says_what_it_saw(tmp_path: Path, kube_cluster: LocalCluster) -> None:
    """What a timed-out `up` quotes: the real API server's TLS refusal, or a port where nothing listens."""
    other_ca, _ = pki.make_ca("modelapp-local-ca", now=dt.datetime.now(dt.UTC))  # same name, other key
    (tmp_path / "ca.crt").write_bytes(pki.cert_pem(other_ca))
    layout = kube_cluster.layout
    wrong = ApiClient(kube_cluster.server, ca=tmp_path / "ca.crt", cert=layout.cert("admin"), key=layout.key("admin"))
    problem = wrong.readyz_problem()
    assert problem is not None
    assert problem.startswith(f"TLS to 127.0.0.1:{kube_cluster.server.rsplit(':', 1)[1]} failed: "), problem
    assert "certificate" in problem, problem
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    nobody = ApiClient(f"https://127.0.0.1:{port}", ca=layout.cert("ca"))
    assert nobody.readyz_problem() == f"127.0.0.1:{port}: Connection refused"
    assert kube_cluster.admin_client().readyz_problem() is None
