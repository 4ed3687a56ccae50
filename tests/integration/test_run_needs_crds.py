"""`kubectl apply -f crds/` then `modelapp run`: the install path without the chart.

Design notes: the subject is the CRDs on the API server, which are cluster-scoped, so the test gets
an API server of its own (the development cluster, started in a temporary folder and stopped at the
end) instead of the session's shared one, where the peering CRDs are always installed. First only
the ModelApp CRD is applied, as `crds/` held before kopf's peering CRDs were added to it:
`modelapp run` must stop at once with exit status 2 and a message naming both ways out, instead of
kopf retrying its startup every 60 s with a 404 traceback. Then the real `kubectl apply -f crds/`
installs the rest and the same command starts and creates its peering object.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelapp_devcluster import LocalCluster
from tests.fixtures.cluster import crd_established
from tests.fixtures.net import wait_until

pytestmark = pytest.mark.integration

CRDS = Path(__file__).resolve().parents[2] / "crds"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


@pytest.fixture(scope="module")
def bare_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """An API server with no CRDs at all."""
    cluster = LocalCluster(tmp_path_factory.mktemp("bare-cluster"))
    cluster.up()
    try:
        yield cluster
    finally:
        cluster.down()


def kubectl(cluster: LocalCluster, *args: str) -> str:
    done = subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), *args], capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def established(cluster: LocalCluster, name: str) -> bool:
    return crd_established(cluster.admin_client().get(f"{CRD_PATH}/{name}"))


def run(cluster: LocalCluster, *args: str) -> subprocess.Popen[str]:
    command = [str(Path(sys.executable).parent / "modelapp"), "run", *args]
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_run_without_peering_crds_fails_fast_then_starts_once_crds_are_applied(bare_cluster: LocalCluster) -> None:
    kubectl(bare_cluster, "apply", "-f", str(CRDS / "modelapp.io_modelapps.yaml"))
    wait_until(lambda: established(bare_cluster, "modelapps.modelapp.io"), timeout=60, what="the ModelApp CRD")

    for scope, crd in [("--all-namespaces", "clusterkopfpeerings.kopf.dev"), ("--namespace=default",
                                                                                "kopfpeerings.kopf.dev")]:  # fmt: skip
        started = time.monotonic()
        process = run(bare_cluster, scope)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 2, err
        assert time.monotonic() - started < 30
        assert f"the CRD {crd} (kopf's peering) is not installed" in err
        assert "kubectl apply -f crds/" in err and "--standalone" in err
        assert "Traceback" not in err

    kubectl(bare_cluster, "apply", "-f", str(CRDS))
    wait_until(lambda: established(bare_cluster, "clusterkopfpeerings.kopf.dev"), timeout=60, what="peering CRD")
    process = run(bare_cluster, "--all-namespaces")

    def peering_created() -> bool:
        assert process.poll() is None, "modelapp run exited"
        return "modelapp" in kubectl(bare_cluster, "get", "clusterkopfpeerings", "-o", "name")

    try:
        # kopf's startup creates the peering object: the CRDs from crds/ are all it needed.
        wait_until(peering_created, timeout=90, what="the peering object", interval=1.0)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=60)
    assert "is not installed" not in err
