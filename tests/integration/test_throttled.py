"""The real API server throttles the operator (API Priority and Fairness answers 429), and nothing is lost.

Design notes: APF exempts `system:masters`, so the operator runs as a ServiceAccount (bound to cluster-admin: this
test is about throttling, test_operator_rbac.py about the chart's rules). A FlowSchema of the test's own sends
that ServiceAccount's ModelApp status PATCHes, and its ConfigMap creates, to a priority level with no share of
the server (`nominalConcurrencyShares: 0`, nothing lent or borrowed, `Reject`): the API server then runs one of
its requests at a time and rejects the others with 429 and Retry-After. One at a time is not a 429 by itself, so
a validating webhook of the test's own (HTTPS on 127.0.0.1) holds the ServiceAccount's dry-run ConfigMap creates
for a few seconds each, back to back: while one is held, the level is full. A ModelApp bumped meanwhile must be
rolled out (its Deployment is not in the jail) and its status written once the level has room again: the
operator sends the 429 again after the wait the server asks, ends the pass as transient when it stays throttled
(one WARNING line, not an ERROR with a traceback), and tries again. The API server's own metrics count the 429s.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import re
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from modelapp_devcluster import LocalCluster, pki
from modelapp_devcluster.api import ApiClient
from modelapp_operator import kube
from tests.fixtures.operator import OperatorProcess, wait_for

pytestmark = pytest.mark.integration

GOOD = "localhost:5000/iris-app:1.0.0"
NEWER = "localhost:5000/iris-app:1.1.0"
SA = "throttled-operator"
HOLD_LABEL = "modelapp.test/hold"
HOLD_SECONDS = 4.0
BUSY = re.compile(r"could not take a request \(HTTP 429")


class _Holder(http.server.BaseHTTPRequestHandler):
    """The webhook: allows every review, after holding it until `release` is set (at most HOLD_SECONDS)."""

    release = threading.Event()
    held: list[float] = []  # noqa: RUF012 (one server per test)

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.held.append(time.monotonic())
        self.release.wait(HOLD_SECONDS)
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                           "response": {"uid": review["request"]["uid"], "allowed": True}}).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@dataclass
class Jail:
    """The test's APF jail for one ServiceAccount, and the webhook that can keep it full."""

    namespace: str
    client: ApiClient  # as the ServiceAccount
    holding: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def configmap(self, *, hold: bool) -> int:
        """A dry-run ConfigMap create as the ServiceAccount (in the jail); its HTTP status."""
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": f"c-{uuid.uuid4().hex[:8]}", "labels": {HOLD_LABEL: str(hold).lower()}}}
        return self.client.request("POST", f"/api/v1/namespaces/{self.namespace}/configmaps?dryRun=All", body).status

    def hold(self) -> None:
        """Keep the jail's one seat taken, by held requests back to back, until `free`."""
        _Holder.release.clear()
        self.holding.set()

        def loop() -> None:
            while self.holding.is_set():
                self.configmap(hold=True)

        self.threads.append(threading.Thread(target=loop, daemon=True))
        self.threads[-1].start()

    def free(self) -> None:
        self.holding.clear()
        _Holder.release.set()
        for thread in self.threads:
            thread.join(timeout=HOLD_SECONDS + 5)


def _rejected(cluster: LocalCluster, level: str) -> int:
    """The API server's own count of the requests APF rejected at `level`."""
    text = cluster.admin_client().request("GET", "/metrics").body.decode()
    pattern = re.compile(r'^apiserver_flowcontrol_rejected_requests_total\{[^}]*priority_level="' + re.escape(level)
                         + r'"[^}]*\} (\S+)$', re.MULTILINE)  # fmt: skip
    return int(sum(float(v) for v in pattern.findall(text)))


def _webhook(tmp_path: Path) -> tuple[http.server.ThreadingHTTPServer, bytes]:
    """The holding webhook on 127.0.0.1, with a certificate for that address; and its CA in PEM."""
    now = dt.datetime.now(dt.UTC)
    ca, ca_key = pki.make_ca("modelapp-test-webhook-ca", now=now)
    cert, key = pki.issue(ca, ca_key, common_name="127.0.0.1", now=now, ips=("127.0.0.1",), server=True)
    (tmp_path / "webhook.crt").write_bytes(pki.cert_pem(cert))
    (tmp_path / "webhook.key").write_bytes(pki.key_pem(key))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tmp_path / "webhook.crt"), str(tmp_path / "webhook.key"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Holder)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, pki.cert_pem(ca)


def _jail_objects(namespace: str, port: int, ca_pem: bytes) -> list[dict[str, Any]]:
    level = f"modelapp-jail-{namespace}"
    flow = "flowcontrol.apiserver.k8s.io/v1"
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"{level}-admin"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
         "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": namespace}]},
        {"apiVersion": flow, "kind": "PriorityLevelConfiguration", "metadata": {"name": level},
         "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 0, "lendablePercent": 0,
                                                 "borrowingLimitPercent": 0, "limitResponse": {"type": "Reject"}}}},
        {"apiVersion": flow, "kind": "FlowSchema", "metadata": {"name": level},
         "spec": {"matchingPrecedence": 500, "priorityLevelConfiguration": {"name": level},
                  "rules": [{"subjects": [{"kind": "ServiceAccount",
                                           "serviceAccount": {"name": SA, "namespace": namespace}}],
                             "resourceRules": [
                                 {"verbs": ["patch"], "apiGroups": ["modelapp.io"], "resources": ["modelapps/status"],
                                  "namespaces": [namespace]},
                                 {"verbs": ["create"], "apiGroups": [""], "resources": ["configmaps"],
                                  "namespaces": [namespace]}]}]}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": level},
         "webhooks": [{"name": "hold.modelapp.test", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                       "timeoutSeconds": int(HOLD_SECONDS) + 5, "failurePolicy": "Ignore",
                       "clientConfig": {"url": f"https://127.0.0.1:{port}/hold",
                                        "caBundle": base64.b64encode(ca_pem).decode()},
                       "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                  "resources": ["configmaps"], "scope": "Namespaced"}],
                       "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                       "objectSelector": {"matchLabels": {HOLD_LABEL: "true"}}}]},
    ]  # fmt: skip


@pytest.fixture
def jail(kube_cluster: LocalCluster, modelapp_crds: Path, namespace: str, tmp_path: Path) -> Iterator[Jail]:
    server, ca_pem = _webhook(tmp_path)
    objects = _jail_objects(namespace, server.server_address[1], ca_pem)
    kube._call("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
               body={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SA}})  # fmt: skip
    paths = []
    try:
        for obj in objects:
            group_version = obj["apiVersion"]
            plural = {"ClusterRoleBinding": "clusterrolebindings", "PriorityLevelConfiguration":
                      "prioritylevelconfigurations", "FlowSchema": "flowschemas",
                      "ValidatingWebhookConfiguration": "validatingwebhookconfigurations"}[obj["kind"]]  # fmt: skip
            paths.append(f"/apis/{group_version}/{plural}/{obj['metadata']['name']}")
            kube._call("POST", f"/apis/{group_version}/{plural}", body=obj)
        token = kube_cluster.admin_client().create_token(namespace, SA, expiration_seconds=3600)
        as_sa = ApiClient(kube_cluster.server, ca=kube_cluster.layout.cert("ca"), token=token, timeout=30)
        yield Jail(namespace, as_sa)
    finally:
        _Holder.release.set()
        for path in paths:
            kube_cluster.admin_client().delete(path)
        server.shutdown()


def _app(namespace: str, image: str) -> dict[str, Any]:
    return {"apiVersion": "modelapp.io/v1alpha1", "kind": "ModelApp",
            "metadata": {"name": "iris", "namespace": namespace},
            "spec": {"image": image, "model": {"uri": "file:///opt/models/iris", "version": "1"}, "replicas": 1,
                     "service": {"type": "ClusterIP"}}}  # fmt: skip


def _serving(namespace: str, image: str) -> dict[str, Any] | None:
    app = kube.get("ModelApp", "iris", namespace) or {}
    status = app.get("status") or {}
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
    current = status.get("observedGeneration") == app.get("metadata", {}).get("generation")
    available = any(e["image"] == image and e.get("outcome") == "Available" for e in status.get("revisions", []))
    return app if ready and current and available else None


def test_a_bump_the_api_server_throttles_is_rolled_out_and_recorded_once_it_has_room(
        jail: Jail, kube_cluster: LocalCluster, run_operator: Any, namespace: str, tmp_path: Path) -> None:  # fmt: skip
    level = f"modelapp-jail-{namespace}"
    wait_for("the ServiceAccount allowed (its binding loaded)", lambda: jail.configmap(hold=False) == 201, timeout=30)
    kubeconfig = kube_cluster.service_account_kubeconfig(namespace, SA, path=tmp_path / "sa.kubeconfig")
    op: OperatorProcess = run_operator(namespace, env={"KUBECONFIG": str(kubeconfig)})
    kube.apply(_app(namespace, GOOD))
    wait_for("GOOD serving (one status write at a time is room enough)", lambda: _serving(namespace, GOOD), timeout=90)

    jail.hold()
    wait_for("the jail full (APF loads FlowSchemas in the background): the ServiceAccount's next request is rejected",
             lambda: jail.configmap(hold=False) == 429, timeout=30)  # fmt: skip
    rejected_before = _rejected(kube_cluster, level)
    kube.apply(_app(namespace, NEWER))
    wait_for("the operator told that the API server could not take its status write",
             lambda: BUSY.search(op.text()), timeout=60)  # fmt: skip
    deployment = wait_for("NEWER rolled out meanwhile (the Deployment is not in the jail)",
                          lambda: NEWER in json.dumps((kube.get("Deployment", "iris", namespace) or {}).get("spec")))
    assert deployment
    jail.free()

    app = wait_for("NEWER serving, recorded once the jail has room", lambda: _serving(namespace, NEWER), timeout=90)
    assert [e["outcome"] for e in app["status"]["revisions"] if e["image"] == NEWER] == ["Available"]
    assert _rejected(kube_cluster, level) > rejected_before, "the API server itself rejected the operator's writes"
    busy_lines = [line for line in op.text().splitlines() if BUSY.search(line)]
    assert busy_lines and all("[WARNING" in line for line in busy_lines), busy_lines
    assert "Traceback" not in op.text() and "inconsistencies" not in op.text(), "no false alarm after the retry"
