"""The kind cluster's pure parts: its configuration, the node image's cache key, the docker shim, errors.

Design notes: no cluster here (tests/kind/ brings one up for real). The docker shim is a shell
script, run for real with a script printing its argv standing in for docker, so what is checked is the argv
it hands on — the exact flags a node container gets on a host where `--privileged` cannot start.
"""

from __future__ import annotations

import subprocess
from importlib import resources
from pathlib import Path

import pytest
import yaml

from modelapp_devcluster import kind_cluster, kind_node
from modelapp_devcluster.kind_cluster import cluster_config, explain_kind_failure

SHIM = Path(str(resources.files("modelapp_devcluster").joinpath("data", "kind", "docker-shim")))


def test_built_image_config_disables_kindnet_and_names_our_etcd() -> None:
    config = cluster_config(name="c", built_image=True, workers=2, registry="c-registry")
    assert config["networking"] == {"podSubnet": "10.245.0.0/16", "serviceSubnet": "10.96.0.0/16",
                                     "apiServerAddress": "127.0.0.1", "disableDefaultCNI": True}
    assert [n["role"] for n in config["nodes"]] == ["control-plane", "worker", "worker"]
    patch = yaml.safe_load(config["kubeadmConfigPatches"][0])
    assert patch == {"kind": "ClusterConfiguration", "etcd": {"local": {"imageTag": kind_node.ETCD_IMAGE_TAG}}}
    assert kind_node.ETCD_IMAGE_TAG == "3.6.4-0"
    (patch_text,) = config["containerdConfigPatches"]
    assert patch_text == '[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n'


def test_registry_hosts_toml_sends_pulls_to_the_endpoint_over_http() -> None:
    toml = kind_cluster.registry_hosts_toml("127.0.0.1:5002", "c-registry:5000")
    assert toml == ('server = "http://127.0.0.1:5002"\n\n[host."http://c-registry:5000"]\n'
                    '  capabilities = ["pull", "resolve"]\n')


def test_public_image_config_keeps_kinds_defaults() -> None:
    config = cluster_config(name="c", built_image=False, workers=0, registry=None)
    assert "disableDefaultCNI" not in config["networking"]
    assert "kubeadmConfigPatches" not in config and "containerdConfigPatches" not in config
    assert config["networking"]["podSubnet"] != "10.244.0.0/16"  # the hand-made node's range


def test_lb_pool_is_outside_every_pod_and_service_range() -> None:
    pool = kind_cluster.lb_pool()
    assert pool[0] == "10.247.0.1" and len(pool) == 254
    assert not any(ip.startswith(("10.244.", "10.245.", "10.96.")) for ip in pool)


def test_inputs_digest_changes_with_any_input(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"kubelet")
    b.write_bytes(b"kubeadm")
    first = kind_node.inputs_digest({"bin/kubelet": a, "bin/kubeadm": b}, base_image_id="sha256:1")
    assert first == kind_node.inputs_digest({"bin/kubeadm": b, "bin/kubelet": a}, base_image_id="sha256:1")
    assert first != kind_node.inputs_digest({"bin/kubelet": a, "bin/kubeadm": b}, base_image_id="sha256:2")
    b.write_bytes(b"kubeadm, rebuilt")
    assert first != kind_node.inputs_digest({"bin/kubelet": a, "bin/kubeadm": b}, base_image_id="sha256:1")
    assert kind_node.image_tag(first) == f"modelapp/kind-node:v1.34.4-{first[:12]}"


def test_shim_turns_privileged_into_every_cap_but_sys_resource(tmp_path: Path) -> None:
    out = subprocess.run(
        ["bash", str(SHIM), "run", "--privileged", "--volume", "/var", "--volume", "/lib/modules:/lib/modules:ro",
         "--tmpfs", "/run", "img"],
        capture_output=True, text=True, check=True,
        env={"MODELAPP_REAL_DOCKER": str(_argv_printer(tmp_path)), "MODELAPP_EMPTY_DIR": "/empty",
             "PATH": "/usr/bin:/bin"})
    assert out.stdout.splitlines() == [
        "run", "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--device-cgroup-rule", "a *:* rwm",
        "--volume", "/var", "--volume", "/empty:/lib/modules:ro", "--tmpfs", "/run", "img"]


def test_shim_drops_privileged_on_exec_and_leaves_other_commands(tmp_path: Path) -> None:
    printer = _argv_printer(tmp_path)
    env = {"MODELAPP_REAL_DOCKER": str(printer), "MODELAPP_EMPTY_DIR": "/empty", "PATH": "/usr/bin:/bin"}
    run = lambda *a: subprocess.run(["bash", str(SHIM), *a], capture_output=True, text=True, env=env,  # noqa: E731
                                    check=True).stdout.splitlines()
    assert run("exec", "--privileged", "-i", "node", "cat", "/kind/version") == [
        "exec", "-i", "node", "cat", "/kind/version"]
    assert run("inspect", "--privileged") == ["inspect", "--privileged"]


def _argv_printer(tmp_path: Path) -> Path:
    script = tmp_path / "argv"
    script.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    script.chmod(0o755)
    return script


@pytest.mark.parametrize(("stderr", "says"), [
    ("ERROR: failed to create cluster: node(s) already exist for a cluster with the name \"m\"", "down --name m"),
    ("docker: Error response from daemon: driver failed: port is already allocated.", "a port kind wanted is in use"),
    ("Error response from daemon: Pool overlaps with other one on this address space", "overlaps"),
    ("runc create failed: unable to start container process: unable to apply caps", "MODELAPP_KIND_SHIM"),
    ('ERROR: failed to create cluster: failed to pull image "kindest/node:v1.34.0"', "leave out --public-image"),
])
def test_kind_failures_name_cause_and_fix(stderr: str, says: str) -> None:
    assert says in explain_kind_failure(stderr, "m")


def test_pod_routes_send_each_nodes_range_to_that_node() -> None:
    def node(name: str, ip: str, cidr: str | None) -> dict[str, object]:
        spec = {"podCIDR": cidr} if cidr else {}
        return {"metadata": {"name": name}, "spec": spec,
                "status": {"addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]}}
    routes = kind_cluster.pod_routes([node("cp", "172.18.0.2", "10.245.0.0/24"),
                                      node("w1", "172.18.0.3", "10.245.1.0/24"), node("w2", "172.18.0.4", None)])
    assert routes == {"cp": [("10.245.1.0/24", "172.18.0.3")], "w1": [("10.245.0.0/24", "172.18.0.2")]}
    assert kind_cluster.pod_routes([node("cp", "172.18.0.2", "10.245.0.0/24")]) == {"cp": []}
