"""The chart's metrics: the operator's /metrics behind a ClusterIP Service, and Prometheus monitors.

Design notes: rendered by the real helm (`helm template`, `helm lint --strict`) and checked as the
objects a cluster would receive, one test per value: operator.metrics.{enabled, port} (the flag
`modelapp run` is given, as its own parser reads it; the container port; the Service, ClusterIP
only), serviceMonitor.{enabled, interval, scrapeTimeout, labels, servingPods} (a ServiceMonitor on
that Service, a PodMonitor on the serving pods' port `metrics` selected by the operator's
managed-by label, in the watched namespaces only). Whatever the values, no object the chart renders
exposes a metrics port outside the cluster. Bad values are refused by the schema or `fail`, with
the value named.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelapp_operator.builders import METRICS_PORT
from modelapp_operator.cli import build_parser
from modelapp_operator.names import LABEL_MANAGED_BY, MANAGER
from tests.fixtures.helm import CHART, Rendered

pytestmark = pytest.mark.integration

Render = Callable[..., Rendered]
MONITORS = {"serviceMonitor.enabled": True}


def _operator(rendered: Rendered) -> dict[str, Any]:
    containers: list[dict[str, Any]] = rendered.only("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_operator_metrics_are_on_by_default_behind_a_cluster_ip_service(render_chart: Render) -> None:
    rendered = render_chart()
    assert not rendered.error, rendered.error
    operator = _operator(rendered)
    assert "--metrics-port=9090" in operator["args"]
    assert build_parser().parse_args(operator["args"]).metrics_port == 9090  # what `modelapp run` reads
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in operator["ports"]
    service = rendered.only("Service")
    assert service["metadata"]["name"] == "ma-modelapp-metrics"
    assert service["metadata"]["namespace"] == "modelapp-system"
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    pod_labels = rendered.only("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert not rendered.all("ServiceMonitor") and not rendered.all("PodMonitor"), "monitors are off by default"


def test_operator_metrics_port_and_off(render_chart: Render) -> None:
    rendered = render_chart({"operator.metrics.port": 9300})
    assert not rendered.error, rendered.error
    assert build_parser().parse_args(_operator(rendered)["args"]).metrics_port == 9300
    assert {"name": "metrics", "containerPort": 9300, "protocol": "TCP"} in _operator(rendered)["ports"]
    assert rendered.only("Service")["spec"]["ports"][0]["port"] == 9300
    off = render_chart({"operator.metrics.enabled": False})
    assert not off.error, off.error
    assert build_parser().parse_args(_operator(off)["args"]).metrics_port == 0
    assert [port["name"] for port in _operator(off)["ports"]] == ["healthz"]
    assert not off.all("Service")


def test_monitors_scrape_the_operator_service_and_every_serving_pod(render_chart: Render) -> None:
    rendered = render_chart(MONITORS)
    assert not rendered.error, rendered.error
    monitor = rendered.only("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = rendered.only("Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["modelapp-system"]}
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "scheme": "http", "honorLabels": False}
    ]
    pods = rendered.only("PodMonitor")
    assert pods["apiVersion"] == "monitoring.coreos.com/v1"
    assert pods["spec"]["selector"] == {"matchLabels": {LABEL_MANAGED_BY: MANAGER}}
    assert pods["spec"]["namespaceSelector"] == {"any": True}  # rbac.scope=cluster watches every namespace
    endpoint = pods["spec"]["podMetricsEndpoints"]
    assert endpoint == [{"port": "metrics", "path": "/metrics", "scheme": "http", "honorLabels": False}]


def test_pod_monitor_port_is_the_one_the_builders_name(render_chart: Render) -> None:
    """The PodMonitor scrapes the container port the operator gives every serving pod."""
    from modelapp_operator.builders import app_container
    from modelapp_operator.spec import ModelAppSpec

    spec = ModelAppSpec.model_validate(
        {"image": "registry.example.com/iris:1", "model": {"uri": "azureblob://models/iris", "version": "7"}}
    )
    ports = {port["name"]: port["containerPort"] for port in app_container("iris", spec)["ports"]}
    endpoint = render_chart(MONITORS).only("PodMonitor")["spec"]["podMetricsEndpoints"][0]
    assert ports[endpoint["port"]] == METRICS_PORT


def test_pod_monitor_follows_the_watched_namespaces(render_chart: Render) -> None:
    rendered = render_chart({**MONITORS, "rbac.scope": "namespaced", "watchNamespaces": ["team-a", "team-b"]})
    assert not rendered.error, rendered.error
    assert rendered.only("PodMonitor")["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}


def test_monitor_interval_timeout_and_labels(render_chart: Render) -> None:
    values = {**MONITORS, "serviceMonitor.interval": "30s", "serviceMonitor.scrapeTimeout": "10s"}
    rendered = render_chart({**values, "serviceMonitor.labels": {"release": "kube-prometheus-stack"}})
    assert not rendered.error, rendered.error
    for kind, key in (("ServiceMonitor", "endpoints"), ("PodMonitor", "podMetricsEndpoints")):
        monitor = rendered.only(kind)
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        (endpoint,) = monitor["spec"][key]
        assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("30s", "10s")


def test_serving_pods_can_be_left_out(render_chart: Render) -> None:
    rendered = render_chart({**MONITORS, "serviceMonitor.servingPods": False})
    assert not rendered.error, rendered.error
    assert rendered.only("ServiceMonitor") and not rendered.all("PodMonitor")


def test_without_operator_metrics_only_the_pod_monitor_remains(render_chart: Render) -> None:
    rendered = render_chart({**MONITORS, "operator.metrics.enabled": False})
    assert not rendered.error, rendered.error
    assert not rendered.all("ServiceMonitor") and rendered.only("PodMonitor")


@pytest.mark.parametrize(
    "values",
    [{}, MONITORS, {**MONITORS, "rbac.scope": "namespaced", "watchNamespaces": ["a"]}, {"bump.enabled": True}],
)
def test_no_metrics_port_leaves_the_cluster(render_chart: Render, values: dict[str, Any]) -> None:
    rendered = render_chart(values)
    assert not rendered.error, rendered.error
    for service in rendered.all("Service"):
        assert service["spec"]["type"] == "ClusterIP", service["metadata"]["name"]
    assert not rendered.all("Ingress")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"operator.metrics.port": 8080}, "operator.metrics.port is also operator.livenessPort"),
        ({"operator.metrics.port": 80}, "/operator/metrics/port"),
        ({"operator.metrics.enabled": "yes"}, "/operator/metrics/enabled"),
        ({"operator.metrics.path": "/m"}, "additional properties 'path' not allowed"),
        ({"serviceMonitor.interval": "30"}, "/serviceMonitor/interval"),
        ({"serviceMonitor.scrapeTimeout": "ten seconds"}, "/serviceMonitor/scrapeTimeout"),
        ({"serviceMonitor.labels": {"release": 1}}, "/serviceMonitor/labels/release"),
        ({"serviceMonitor.namespace": "monitoring"}, "additional properties 'namespace' not allowed"),
        ({"serviceMonitor.servingPods": "no"}, "/serviceMonitor/servingPods"),
    ],
)
def test_bad_metrics_values_are_refused(render_chart: Render, values: dict[str, Any], message: str) -> None:
    rendered = render_chart(values)
    assert rendered.objects == []
    assert message in rendered.error, rendered.error


def test_lint_strict_with_monitors(helm_bin: Path) -> None:
    sets = [arg for key, value in {**MONITORS, "serviceMonitor.interval": "1m"}.items()
            for arg in ("--set-json", f"{key}={json.dumps(value)}")]  # fmt: skip
    result = subprocess.run(
        [str(helm_bin), "lint", "--strict", str(CHART), *sets], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
