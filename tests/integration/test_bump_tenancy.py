"""The bump opens a tenant's store with that tenant's credentials only (issue 10: a namespace is a tenant).

Design notes: against the real API server (ModelApps and Secrets) and Azurite (a private container), with
`modelapp bump` as a subprocess whose own environment holds a full connection string, the way a platform
gives the CronJob an identity of its own. A tenant must not get that identity's access by naming its store
with no Secret, or with a Secret that sets only an endpoint (the bump used to lay the Secret over its own
environment); a Secret whose bytes are not text fails only its own row; an honest tenant is bumped beside
them, and the exit code says the run was partial. `--trusted-store` is the platform's way to lend the bump's
identity to a store on purpose.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modelapp_devcluster import LocalCluster
from modelapp_operator import kube
from modelapp_serving.publish import publish_version
from modelapp_serving.stores import open_store
from tests.fixtures.azurite import AzureContainer

pytestmark = pytest.mark.integration


def _secret(namespace: str, name: str, data: dict[str, bytes]) -> None:
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}  # fmt: skip
    kube.create("Secret", namespace, body)


def _app(namespace: str, name: str, uri: str, secret: str | None) -> None:
    model: dict[str, Any] = {"uri": uri, "version": "1", **({"credentialsSecret": secret} if secret else {})}
    kube.create("ModelApp", namespace, {
        "apiVersion": "modelapp.io/v1alpha1", "kind": "ModelApp", "metadata": {"name": name, "namespace": namespace},
        "spec": {"image": "registry.example.com/team/app:1.0.0", "model": model,
                 "updates": {"model": {"policy": "numeric"}}},
    })  # fmt: skip


def _bump(cluster: LocalCluster, namespace: str, env: dict[str, str], *extra: str) -> tuple[int, dict[str, Any]]:
    command = [sys.executable, "-m", "modelapp_operator.cli", "bump", "--kubeconfig", str(cluster.kubeconfig),
               "--namespace", namespace, "-o", "json", *extra]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False, env=env)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def _model_rows(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in report["rows"] if row["field"] == "model"}


def test_a_tenant_never_reads_its_store_with_the_bumps_credentials(
    kube_cluster: LocalCluster, modelapp_crds: Path, namespace: str, azure_container: AzureContainer, tmp_path: Path
) -> None:
    kube.use_kubeconfig(str(kube_cluster.kubeconfig))
    store = open_store(azure_container.uri(), env=azure_container.env)
    for version in ("1", "2"):
        source = tmp_path / version / "model.onnx"
        source.parent.mkdir()
        source.write_bytes(f"model {version}".encode())
        publish_version(store, version=version, sources=[source], model_format="onnx", entrypoint=None)
    full = azure_container.env["AZURE_STORAGE_CONNECTION_STRING"].encode()
    _secret(namespace, "honest", {"AZURE_STORAGE_CONNECTION_STRING": full})
    _secret(namespace, "endpoint-only", {"AZURE_STORAGE_ACCOUNT_URL": azure_container.azurite.account_url.encode()})
    _secret(namespace, "bytes", {"AZURE_STORAGE_CONNECTION_STRING": b"\xff\xfe not text"})
    _secret(namespace, "bad-endpoint", {"AWS_ENDPOINT_URL": b"::not a url", "AWS_ACCESS_KEY_ID": b"k",
                                        "AWS_SECRET_ACCESS_KEY": b"s"})  # fmt: skip
    uri = azure_container.uri()
    _app(namespace, "honest", uri, "honest")
    _app(namespace, "borrower", uri, "endpoint-only")
    _app(namespace, "nosecret", uri, None)
    _app(namespace, "bytes", uri, "bytes")
    _app(namespace, "missing", uri, "no-such-secret")
    _app(namespace, "badurl", "s3://models/iris", "bad-endpoint")
    # The bump's own identity: a full connection string in its environment.
    own = {**os.environ, "AZURE_STORAGE_CONNECTION_STRING": full.decode()}

    code, report = _bump(kube_cluster, namespace, own)
    rows = _model_rows(report)
    assert code == 2, "some rows failed: a partial run"
    assert (rows["honest"]["result"], rows["honest"]["new"]) == ("patched", "2")
    for borrower in ("borrower", "nosecret"):
        assert rows[borrower]["result"] == "failed", rows[borrower]
    assert "not UTF-8" in rows["bytes"]["reason"] and rows["bytes"]["result"] == "failed"
    assert "no-such-secret does not exist" in rows["missing"]["reason"]
    assert rows["borrower"]["reason"].count(uri) == 1, "the location is named once"
    assert "check AWS_ENDPOINT_URL" in rows["badurl"]["reason"] and rows["badurl"]["result"] == "failed"
    assert full.decode() not in json.dumps(report), "no credential in the report"
    for name in ("borrower", "nosecret", "bytes", "missing", "badurl"):
        assert (kube.get("ModelApp", name, namespace) or {})["spec"]["model"]["version"] == "1", name

    # The platform lends the bump's identity to this store on purpose: the app naming no Secret moves.
    code, report = _bump(kube_cluster, namespace, own, "--trusted-store", f"azureblob://{azure_container.name}")
    rows = _model_rows(report)
    assert (rows["nosecret"]["result"], rows["nosecret"]["new"]) == ("patched", "2")
    assert rows["borrower"]["result"] == "failed", "a named Secret is never laid over the bump's identity"
