"""Two nodes from the built node image: pods on different nodes reach each other.

Design notes: kindnetd is not on the Go module proxy, so with the built image each node's containerd
makes a bridge on the node's own podCIDR and `kind_cluster.up` routes the other nodes' ranges; this
checks that for real on the session's kind cluster (tests/fixtures/kind.py: one worker), a `hello` pod
pinned to each node, each probing the other's pod IP.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from modelapp_devcluster import kind_build, kind_cluster, node_build, node_image
from tests.fixtures.kind import NAME, KindCluster

HELLO = "modelapp.local/hello:kind"


@pytest.fixture(scope="module")
def kubeconfig(shared_kind_cluster: KindCluster) -> Path:
    hello = node_image.build_image(
        [node_image.ImageFile("/hello", node_build.static_program("hello.c").read_bytes())],
        entrypoint=["/hello"],
        cmd=["8080"],
    )
    archive = kind_cluster.Paths.for_name(NAME).root / "hello-nodes.oci.tar"
    archive.write_bytes(node_image.oci_layout_tar(hello, ref=HELLO))
    loaded = kind_cluster.run_kind(NAME, ["load", "image-archive", "--name", NAME, str(archive)])
    assert loaded.returncode == 0, loaded.stderr
    return shared_kind_cluster.kubeconfig


def test_pods_on_two_nodes_reach_each_other(kubeconfig: Path) -> None:
    kubectl = [str(kind_build.ensure_kind_binaries().kubectl), "--kubeconfig", str(kubeconfig)]
    pods = {"on-cp": f"{NAME}-control-plane", "on-worker": f"{NAME}-worker"}
    for pod, node in pods.items():
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod},
            "spec": {
                "nodeName": node,
                "tolerations": [{"operator": "Exists"}],
                "containers": [{"name": "hello", "image": HELLO, "imagePullPolicy": "Never"}],
            },
        }
        subprocess.run(
            [*kubectl, "apply", "-f", "-"], input=json.dumps(manifest), text=True, check=True, capture_output=True
        )
    subprocess.run(
        [*kubectl, "wait", "--for=condition=Ready", *(f"pod/{p}" for p in pods), "--timeout=120s"],
        check=True,
        capture_output=True,
    )
    ips = {
        pod: subprocess.run(
            [*kubectl, "get", "pod", pod, "-o", "jsonpath={.status.podIP}"], capture_output=True, text=True, check=True
        ).stdout
        for pod in pods
    }
    assert ips["on-cp"].split(".")[2] != ips["on-worker"].split(".")[2]  # two nodes, two /24 ranges
    for source, target in (("on-worker", "on-cp"), ("on-cp", "on-worker")):
        probe = subprocess.run(
            [*kubectl, "exec", source, "--", "/hello", "probe", ips[target], "8080"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert probe.returncode == 0, f"{source} -> {target} ({ips[target]}): {probe.stdout} {probe.stderr}"
