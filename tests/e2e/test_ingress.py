"""A ModelApp's host name answered by a real Ingress controller (Traefik) on the real node.

Design notes: the real flow's fixtures (tests/fixtures/e2e.py: a cluster with a real node, the operator from
its chart, Azurite on the bridge) plus Traefik built from the Go module proxy (tests/fixtures/addons.py),
whose LoadBalancer Service gets a 127.0.10.x address. Requests are what a user types once DNS points at the
load balancer: `curl --resolve HOST:PORT:ADDRESS`, so the Host header and the TLS server name are the real
host name; nothing leaves loopback and the bridge. Checked: status.url is the host; IngressReady turns
Admitted with the address Traefik publishes; the prediction by host name matches scikit-learn's; another
host gets Traefik's 404; with a TLS Secret the answer comes over https with the tenant's own certificate;
a second tenant naming the same host gets no Ingress (HostTaken) and the host keeps answering with the
first tenant's model; a missing TLS Secret is IngressReady False, TLSSecretMissing, naming the Secret (the
operator asks by a dry-run create, never reads it): Traefik then serves the host with its own default
certificate, which a verifying client refuses.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client

from tests.e2e.test_real_flow import Apps, iris_rows, write_model  # noqa: F401 (iris_rows is a fixture)
from tests.fixtures.addons import Traefik
from tests.fixtures.e2e import FlowNamespace, fresh_namespace, poll

pytestmark = pytest.mark.e2e


def curl(url: str, *, host: str, port: int, address: str, body: dict[str, Any] | None = None,
         cacert: Path | None = None, insecure: bool = False) -> tuple[int, str]:  # fmt: skip
    """`curl --resolve host:port:address url` as a user would; (HTTP status or 0 on a TLS/connect error, body)."""
    cmd = ["curl", "-sS", "-m", "10", "-o", "-", "-w", "\n%{http_code}", "--resolve", f"{host}:{port}:{address}"]
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
    if cacert is not None:
        cmd += ["--cacert", str(cacert)]
    if insecure:
        cmd += ["-k"]
    result = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=30, check=False)
    text, _, code = result.stdout.rpartition("\n")
    return (int(code) if code.isdigit() else 0), text or result.stderr


def _predict(url: str, rows: np.ndarray[Any, Any], **how: Any) -> list[Any] | None:
    body = {"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32",
                        "data": rows.astype(np.float32).ravel().tolist()}]}
    code, text = curl(f"{url}/infer", body=body, **how)
    if code != 200:
        return None
    outputs = {o["name"]: o for o in json.loads(text)["outputs"]}
    return list(outputs["label"]["data"])


def self_signed(host: str, folder: Path) -> tuple[Path, Path]:
    """A certificate for `host` (its own CA, for curl --cacert) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))  # fmt: skip
    crt, pem = folder / "tls.crt", folder / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))  # fmt: skip
    return crt, pem


def _deploy(ns: FlowNamespace, apps: Apps, folder: Path, name: str, version: str, *, seed: int,
            **spec: Any) -> Any:  # fmt: skip
    estimator, files = write_model(folder / f"{name}-{version}", seed=seed)
    digest = ns.publish(version, *files)
    apps.create({"apiVersion": "modelapp.io/v1alpha1", "kind": "ModelApp", "metadata": {"name": name},
                 "spec": {"image": ns.images.serving, "replicas": 1, "service": {"type": "ClusterIP", "port": 80},
                          "model": {"uri": ns.uri(), "version": version, "sha256": digest,
                                    "credentialsSecret": "blob-credentials"}, **spec}})  # fmt: skip
    return estimator


def test_a_prediction_by_host_name_through_traefik(flow_namespace: FlowNamespace, traefik: Traefik, tmp_path: Path,
                                                   iris_rows: np.ndarray[Any, Any]) -> None:  # noqa: F811
    ns, apps = flow_namespace, Apps(flow_namespace)
    host = f"iris.{ns.name}.example.test"
    crt, key = self_signed(host, tmp_path)
    apps.core.create_namespaced_secret(ns.name, client.V1Secret(
        metadata=client.V1ObjectMeta(name="iris-tls"), type="kubernetes.io/tls",
        string_data={"tls.crt": crt.read_text(), "tls.key": key.read_text()}))
    estimator = _deploy(ns, apps, tmp_path, "iris", "1", seed=0,
                        ingress={"host": host, "className": "traefik", "tlsSecret": "iris-tls"})
    poll(lambda: apps.condition("iris", "Ready").get("status") == "True", timeout=240, what="iris Ready")
    admitted = poll(lambda: apps.condition("iris", "IngressReady").get("reason") == "Admitted" and
                    apps.condition("iris", "IngressReady"), timeout=90, what="IngressReady Admitted")  # fmt: skip
    assert traefik.address in admitted["message"]
    status = apps.get("iris")["status"]
    assert (status["url"], status["urlSource"]) == (f"https://{host}/v2/models/iris", "Ingress")
    expected = estimator.predict(iris_rows).tolist()

    # http and https by host name, the tenant's own certificate verified.
    plain = {"host": host, "port": 80, "address": traefik.address}
    got = poll(lambda: _predict(f"http://{host}/v2/models/iris", iris_rows, **plain), timeout=60,
               what="a prediction over http by host name")  # fmt: skip
    assert got == expected
    tls = {"host": host, "port": 443, "address": traefik.address, "cacert": crt}
    try:
        got = poll(lambda: _predict(status["url"], iris_rows, **tls), timeout=60, what="https")
    except AssertionError:
        raise AssertionError(f"no answer over https: {curl(status['url'] + '/ready', **tls)}") from None
    assert got == expected
    other = "nobody.example.test"
    assert curl(f"http://{other}/v2/models/iris", host=other, port=80, address=traefik.address)[0] == 404

    # Another tenant names the same host: refused, and the host still answers with the first tenant's model.
    with fresh_namespace(ns.cluster, ns.azurite, ns.images) as thief_ns:
        thieves = Apps(thief_ns)
        _deploy(thief_ns, thieves, tmp_path, "iris", "9", seed=3, ingress={"host": host, "className": "traefik"})
        taken = poll(lambda: thieves.condition("iris", "IngressReady").get("reason") == "HostTaken" and
                     thieves.condition("iris", "IngressReady"), timeout=120, what="HostTaken")  # fmt: skip
        assert f"{ns.name}/iris" in taken["message"]
        assert not client.NetworkingV1Api(ns.cluster.api()).list_namespaced_ingress(thief_ns.name).items
        version = curl(f"http://{host}/version", **plain)
        assert version[0] == 200 and json.loads(version[1])["version"] == "1", version

    # A TLS Secret that does not exist: the operator says so (a dry-run create, it never reads Secrets); Traefik
    # serves the host with its default certificate, which curl refuses unless told not to verify.
    missing = f"wine.{ns.name}.example.test"
    _deploy(ns, apps, tmp_path, "wine", "2", seed=0,  # the same model as iris's version 1, published anew
            ingress={"host": missing, "className": "traefik", "tlsSecret": "no-such-secret"})
    told = poll(lambda: apps.condition("wine", "IngressReady").get("reason") == "TLSSecretMissing" and
                apps.condition("wine", "IngressReady"), timeout=240, what="wine TLSSecretMissing")  # fmt: skip
    assert f"{ns.name}/no-such-secret" in told["message"] and told["status"] == "False"
    where = {"host": missing, "port": 443, "address": traefik.address}
    assert poll(lambda: _predict(f"https://{missing}/v2/models/wine", iris_rows, insecure=True, **where),
                timeout=60, what="wine over https with -k") == expected  # fmt: skip
    code, text = curl(f"https://{missing}/v2/models/wine", cacert=crt, **where)
    assert code == 0, (code, text)  # not the tenant's certificate: the TLS handshake is refused
