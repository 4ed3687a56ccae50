"""Pure builders of the real node: OCI images written by hand, and the node's configuration.

Design notes: no I/O and no processes — these check the documents the node writes (what
containerd, kubelet, kube-proxy and the CNI plugins read) and the image bytes (what containerd
imports and the registry stores). The integration test `test_real_node.py` runs them for real.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import tomllib
from pathlib import Path

from modelapp_devcluster import node_config
from modelapp_devcluster.node_config import NodePaths, NodeSettings
from modelapp_devcluster.node_image import ImageFile, build_image, digest_of, oci_layout_tar

PATHS = NodePaths(Path("/state/node"))


def _image() -> bytes:
    image = build_image([ImageFile("/pause", b"\x7fELF fake")], entrypoint=["/pause"], user="65535:65535")
    return oci_layout_tar(image, ref="modelapp.local/pause:1")


def test_images_are_reproducible_and_content_addressed() -> None:
    first = build_image([ImageFile("/bin/app", b"x")], entrypoint=["/bin/app"])
    second = build_image([ImageFile("/bin/app", b"x")], entrypoint=["/bin/app"])
    assert first.manifest_digest == second.manifest_digest
    assert first.manifest_digest == digest_of(first.manifest)
    for digest, blob in first.blobs.items():
        assert digest == "sha256:" + hashlib.sha256(blob).hexdigest()


def test_the_config_records_the_uncompressed_layer_and_the_process() -> None:
    image = build_image([ImageFile("/bin/app", b"x", mode=0o700)], entrypoint=["/bin/app"], cmd=["8080"],
                        user="65534:65534", exposed_ports=[8080])
    config = json.loads(image.blobs[image.config_digest])
    layer = gzip.decompress(image.blobs[image.layer_digests[0]])
    assert config["rootfs"]["diff_ids"] == [digest_of(layer)]
    assert config["config"]["Entrypoint"] == ["/bin/app"]
    assert config["config"]["Cmd"] == ["8080"]
    assert config["config"]["User"] == "65534:65534"
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert list(members) == ["bin", "bin/app"]
    assert members["bin/app"].mode == 0o700
    assert (members["bin/app"].uid, members["bin/app"].mtime) == (0, 0)


def test_the_layout_tarball_names_the_image_for_containerd() -> None:
    with tarfile.open(fileobj=io.BytesIO(_image())) as tar:
        names = tar.getnames()
        index_file = tar.extractfile("index.json")
        assert index_file is not None
        index = json.loads(index_file.read())
    assert "oci-layout" in names
    annotations = index["manifests"][0]["annotations"]
    assert annotations == {"io.containerd.image.name": "modelapp.local/pause:1",
                           "org.opencontainers.image.ref.name": "1"}
    digest = index["manifests"][0]["digest"]
    assert f"blobs/sha256/{digest.split(':')[1]}" in names


def test_containerd_config_is_valid_toml_with_our_sandbox_and_sockets() -> None:
    text = node_config.to_toml(node_config.containerd_config(NodeSettings(), PATHS))
    config = tomllib.loads(text)
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert config["grpc"]["address"] == "/state/node/containerd/containerd.sock"
    assert config["root"].startswith("/state/node/")
    assert cri["sandbox_image"] == "modelapp.local/pause:1"
    assert cri["restrict_oom_score_adj"] is True
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["registry"]["config_path"] == "/state/node/containerd/certs.d"


def test_registry_hosts_are_plain_http_on_loopback() -> None:
    hosts = tomllib.loads(node_config.registry_hosts_toml(NodeSettings(registry_port=5999)))
    assert hosts["server"] == "http://127.0.0.1:5999"
    assert hosts["host"]["http://127.0.0.1:5999"]["capabilities"] == ["pull", "resolve", "push"]


def test_cni_gateway_is_the_node_ip_and_ipam_state_stays_in_the_node_folder() -> None:
    settings = NodeSettings(pod_subnet="10.250.3.0/24")
    conflist = node_config.cni_conflist(settings, PATHS)
    bridge = conflist["plugins"][0]  # type: ignore[index]
    assert settings.node_ip == "10.250.3.1"
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.250.3.0/24", "gateway": "10.250.3.1"}]]
    assert bridge["ipam"]["dataDir"] == "/state/node/cni/ipam"
    assert [p["type"] for p in conflist["plugins"]] == ["bridge", "portmap", "firewall"]  # type: ignore[attr-defined]


def test_kubelet_binds_to_the_bridge_and_runs_on_cgroup_v1_with_swap() -> None:
    config = node_config.kubelet_config(NodeSettings(), PATHS, client_ca=Path("/state/pki/ca.crt"))
    assert config["address"] == "10.244.0.1"
    assert config["healthzBindAddress"] == "127.0.0.1"
    assert config["readOnlyPort"] == 0
    assert (config["cgroupDriver"], config["failSwapOn"]) == ("cgroupfs", False)
    assert config["containerRuntimeEndpoint"] == "unix:///state/node/containerd/containerd.sock"
    assert config["registerWithTaints"] == [{"key": "modelapp.io/node", "value": "real", "effect": "NoSchedule"}]
    shared = node_config.kubelet_config(NodeSettings(dedicated=False), PATHS, client_ca=Path("/ca"))
    assert shared["registerWithTaints"] == []


def test_kube_proxy_serves_node_ports_on_loopback_and_the_bridge_only() -> None:
    config = node_config.kube_proxy_config(NodeSettings(), PATHS)
    assert config["mode"] == "iptables"
    assert config["nodePortAddresses"] == ["127.0.0.0/8", "10.244.0.1/32"]
    assert str(config["metricsBindAddress"]).startswith("127.0.0.1:")


def test_toml_writer_quotes_dotted_keys_and_escapes_strings() -> None:
    text = node_config.to_toml({"a.b": {"c": 'say "hi"', "n": 3, "on": True, "l": ["x", "y"]}})
    assert tomllib.loads(text) == {"a.b": {"c": 'say "hi"', "n": 3, "on": True, "l": ["x", "y"]}}
