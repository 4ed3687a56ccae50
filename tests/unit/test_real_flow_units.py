"""Unit tests for the real flow: the LoadBalancer address planner, real-node cluster settings, serving-pod details.

Design notes: `loadbalancer.plan` is pure (Services in, addresses out), so it is tested with
plain dicts shaped like the API's Service objects: addresses are unique, stable for Services that
have one, handed out oldest first, and never given to other Service types. The CLI's settings for
`--real-node` are checked without starting anything: the API server must bind to the bridge.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from modelapp_devcluster import cli, components, loadbalancer
from modelapp_devcluster.layout import Layout


def svc(name: str, *, kind: str = "LoadBalancer", ip: str | None = None, created: str = "2026-01-01T00:00:00Z",
        namespace: str = "ns") -> dict[str, Any]:
    status = {"loadBalancer": {"ingress": [{"ip": ip}]}} if ip else {}
    return {"metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
            "spec": {"type": kind}, "status": status}


def test_each_waiting_service_gets_a_distinct_free_loopback_address() -> None:
    services = [svc("a", ip="127.0.10.1"), svc("b", created="2026-01-02T00:00:00Z"), svc("c")]
    planned = loadbalancer.plan(services)
    assert planned == {("ns", "c"): "127.0.10.2", ("ns", "b"): "127.0.10.3"}
    assert all(ip.startswith("127.") for ip in loadbalancer.POOL)


def test_other_types_and_assigned_services_are_left_alone() -> None:
    assert loadbalancer.plan([svc("x", kind="ClusterIP"), svc("y", kind="NodePort"), svc("z", ip="127.0.10.9")]) == {}


def test_a_full_pool_assigns_what_it_can() -> None:
    planned = loadbalancer.plan([svc("a"), svc("b"), svc("c")], pool=("127.0.10.1", "127.0.10.2"))
    assert sorted(planned.values()) == ["127.0.10.1", "127.0.10.2"]


def test_real_node_cluster_binds_the_api_server_to_the_bridge(tmp_path: Path) -> None:
    args = argparse.Namespace(state_dir=tmp_path, real_node=True, nodes=0, apiserver_port=0, etcd_port=0)
    cluster = cli._cluster(args)
    assert cluster.settings.kwok_nodes == 0
    assert cluster.settings.bind_address == cluster.settings.advertise_address == "10.244.0.1"
    argv = components.apiserver_args("kube-apiserver", Layout(tmp_path), {"apiserver": 6443, "etcd_client": 2379},
                                     cluster.settings)
    assert "--bind-address=10.244.0.1" in argv
    assert "--endpoint-reconciler-type=lease" in argv
    assert cli._real_node_settings(0).dedicated is False
    assert cli._real_node_settings(4).dedicated is True


def test_without_a_real_node_everything_stays_on_loopback(tmp_path: Path) -> None:
    args = argparse.Namespace(state_dir=tmp_path, real_node=False, nodes=None, apiserver_port=0, etcd_port=0)
    settings = cli._cluster(args).settings
    assert settings.bind_address == settings.advertise_address == "127.0.0.1"
    assert settings.kwok_nodes == 4


def test_serving_pods_drain_before_gunicorn_stops_listening() -> None:
    """Rollouts without refused requests: the app container pauses in preStop before its SIGTERM."""
    from modelapp_operator import builders
    from modelapp_operator.spec import ModelAppSpec

    spec = ModelAppSpec.model_validate({"image": "img:1", "model": {"uri": "azureblob://m/iris", "version": "1"}})
    app = builders.app_container("iris", spec)
    assert app["lifecycle"] == {"preStop": {"sleep": {"seconds": builders.DRAIN_SECONDS}}}
    assert 0 < builders.DRAIN_SECONDS < 30  # inside the default terminationGracePeriodSeconds


def test_a_failed_fetch_says_why_in_the_pod_status() -> None:
    """The fetch's one-line stderr reason becomes the init container's termination message."""
    from modelapp_operator import builders
    from modelapp_operator.spec import ModelAppSpec

    spec = ModelAppSpec.model_validate({"image": "img:1", "model": {"uri": "azureblob://m/iris", "version": "1"}})
    fetch = builders.fetch_container(spec, builders.BuildContext(serving_image="serving:1"))
    assert fetch["terminationMessagePolicy"] == "FallbackToLogsOnError"
