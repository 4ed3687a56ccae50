"""Pure parts of the local cluster: helper go.mod derivation, kwok stages, command lines, PKI,
kubeconfigs and the status text.

Design notes: no I/O and no processes here; the real thing is in tests/integration/test_cluster.py.
The go.mod samples are shaped like the real ones (Kubernetes' staging replaces, etcd's `../`
replaces and its FORBIDDEN_DEPENDENCY guards) so the derivation rules are pinned down.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from modelapp_devcluster import components, gomod, kubeconfig, kwok, pki
from modelapp_devcluster.binaries import version_ldflags
from modelapp_devcluster.cli import format_status
from modelapp_devcluster.layout import Layout, Settings, default_state_dir
from modelapp_devcluster.local import ClusterStatus, ComponentStatus
from modelapp_devcluster.versions import ETCD, KUBERNETES, staging_version

K8S_GO_MOD = """\
module k8s.io/kubernetes

go 1.24.0

godebug default=go1.24

require (
\tgithub.com/spf13/cobra v1.9.1
\tk8s.io/api v0.0.0
\tk8s.io/apimachinery v0.0.0 // indirect
\tk8s.io/client-go v0.0.0
)

require k8s.io/kubectl v0.0.0

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/apimachinery => ./staging/src/k8s.io/apimachinery
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/kubectl => ./staging/src/k8s.io/kubectl
\tk8s.io/sample-controller => ./staging/src/k8s.io/sample-controller
\tgithub.com/onsi/ginkgo => github.com/onsi/ginkgo v1.16.5
)
"""

ETCD_GO_MOD = """\
module go.etcd.io/etcd/server/v3

go 1.23.0

toolchain go1.23.11

require (
\tgo.etcd.io/etcd/api/v3 v3.6.4
\tgo.etcd.io/etcd/client/v3 v3.6.4
\tgo.etcd.io/raft/v3 v3.6.0
)

replace (
\tgo.etcd.io/etcd/api/v3 => ../api
\tgo.etcd.io/etcd/client/v3 => ../client/v3
)

replace go.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY
"""


def test_kubernetes_staging_modules_are_derived_from_the_go_mod() -> None:
    assert gomod.local_replacements(K8S_GO_MOD) == ["k8s.io/api", "k8s.io/apimachinery", "k8s.io/client-go",
                                                    "k8s.io/kubectl"]
    assert gomod.go_directive(K8S_GO_MOD) == "1.24.0"


def test_etcd_sibling_modules_are_derived_and_guards_left_out() -> None:
    assert gomod.local_replacements(ETCD_GO_MOD) == ["go.etcd.io/etcd/api/v3", "go.etcd.io/etcd/client/v3"]


def test_helper_go_mod_pins_every_replaced_module() -> None:
    text = gomod.helper_go_mod(name="x/build", go_version="1.24.0", module="k8s.io/kubernetes", version="v1.34.4",
                               replaced=["k8s.io/api", "k8s.io/client-go"], replace_version="v0.34.4")
    assert "require k8s.io/kubernetes v1.34.4" in text
    assert "\tk8s.io/api => k8s.io/api v0.34.4" in text
    assert "\tk8s.io/client-go => k8s.io/client-go v0.34.4" in text
    assert gomod.required_modules(text) == {"k8s.io/kubernetes"}


def test_tools_go_imports_the_main_packages_under_a_build_tag() -> None:
    text = gomod.tools_go(["k8s.io/kubernetes/cmd/kube-apiserver"])
    assert text.startswith("//go:build tools\n")
    assert '_ "k8s.io/kubernetes/cmd/kube-apiserver"' in text


def test_versions_and_ldflags() -> None:
    assert staging_version("v1.34.4") == "v0.34.4"
    with pytest.raises(ValueError, match="unexpected"):
        staging_version("v2.0.0")
    flags = version_ldflags(KUBERNETES)
    assert flags.startswith("-s -w")
    assert "-X k8s.io/component-base/version.gitVersion=v1.34.4" in flags
    assert "-X k8s.io/component-base/version.gitMinor=34" in flags
    assert version_ldflags(ETCD) == "-s -w"


def test_default_state_dir_follows_env() -> None:
    assert default_state_dir({"MODELAPP_CLUSTER_DIR": "/x/c"}) == Path("/x/c")
    assert default_state_dir({"XDG_STATE_HOME": "/s"}) == Path("/s/modelapp/cluster")


def _all_args() -> list[list[str]]:
    layout, settings = Layout(Path("/state")), Settings()
    ports = {"apiserver": 1, "etcd_client": 2, "etcd_peer": 3, "controller_manager": 4, "scheduler": 5}
    return [
        components.etcd_args("etcd", layout, ports),
        components.apiserver_args("kube-apiserver", layout, ports, settings),
        components.controller_manager_args("kcm", layout, ports, settings),
        components.scheduler_args("sched", layout, ports),
    ]


def test_every_component_binds_to_loopback_only() -> None:
    for argv in _all_args():
        urls = [a for a in argv if "://" in a and not a.startswith("--service-account-issuer=")]
        binds = [a for a in argv if a.startswith("--bind-address=")]
        assert all("127.0.0.1" in a for a in urls + binds), argv
        assert urls or binds
        assert not any("0.0.0.0" in a for a in argv)


def test_apiserver_has_rbac_and_service_accounts() -> None:
    argv = _all_args()[1]
    assert "--authorization-mode=Node,RBAC" in argv
    assert "--service-cluster-ip-range=10.96.0.0/16" in argv
    assert any(a.startswith("--service-account-issuer=") for a in argv)
    assert "--endpoint-reconciler-type=none" in argv  # a loopback advertise address cannot be an endpoint


def test_controller_manager_runs_all_controllers_with_own_credentials() -> None:
    argv = _all_args()[2]
    assert "--controllers=*" in argv
    assert "--use-service-account-credentials=true" in argv
    assert any(a.startswith("--root-ca-file=") for a in argv)
    assert any(a.startswith("--service-account-private-key-file=") for a in argv)


def test_kwok_stages_cover_nodes_pods_and_broken_images() -> None:
    stages = {s["metadata"]["name"]: s for s in kwok.build_stages()}
    assert {"node-initialize", "node-heartbeat", "pod-ready", "pod-not-ready", "pod-complete",
            "pod-delete"} <= set(stages)
    ready = stages["pod-ready"]["spec"]["selector"]["matchExpressions"]
    not_ready = stages["pod-not-ready"]["spec"]["selector"]["matchExpressions"]
    assert {"key": '[.spec.containers[]?.image | endswith("-broken")] | any', "operator": "In",
            "values": ["false"]} in ready
    assert {"key": '[.spec.containers[]?.image | endswith("-broken")] | any', "operator": "In",
            "values": ["true"]} in not_ready
    assert 'status: "False"' in stages["pod-not-ready"]["spec"]["next"]["statusTemplate"]
    assert "ready: true" in stages["pod-ready"]["spec"]["next"]["statusTemplate"]
    # The whole set is one valid YAML stream.
    assert len(list(yaml.safe_load_all(yaml.safe_dump_all(list(stages.values()))))) == len(stages)


def test_default_nodes_hold_a_thousand_small_pods() -> None:
    settings = Settings()
    assert settings.kwok_nodes * settings.node_pods >= 1000
    node = kwok.build_node("n", pods=300, cpu="32", memory="128Gi")
    assert node["metadata"]["annotations"][kwok.FAKE_NODE_ANNOTATION] == "fake"
    assert node["status"]["capacity"]["pods"] == "300"
    assert "spec" not in node or not node["spec"].get("taints")


def test_certificates_carry_identities_and_names() -> None:
    now = dt.datetime.now(dt.UTC)
    ca, ca_key = pki.make_ca("test-ca", now=now)
    dns, ips = pki.apiserver_names("10.96.0.1", "127.0.0.1")
    server, _ = pki.issue(ca, ca_key, common_name="kube-apiserver", now=now, dns_names=dns, ips=ips, server=True)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.96.0.1"}
    admin, _ = pki.issue(ca, ca_key, common_name=pki.ADMIN.user, organizations=pki.ADMIN.groups, now=now)
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    usage = admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage
    admin.verify_directly_issued_by(ca)


def test_kubeconfigs() -> None:
    cert = kubeconfig.cert_kubeconfig(server="https://127.0.0.1:1", ca=Path("/p/ca.crt"), cert=Path("/p/a.crt"),
                                      key=Path("/p/a.key"), user_name="admin")
    assert cert["clusters"][0]["cluster"] == {"server": "https://127.0.0.1:1", "certificate-authority": "/p/ca.crt"}
    token = kubeconfig.token_kubeconfig(server="https://127.0.0.1:1", ca_pem=b"PEM", token="t", user_name="sa",
                                        namespace="ns")
    assert token["users"][0]["user"] == {"token": "t"}
    assert token["contexts"][0]["context"]["namespace"] == "ns"
    assert token["clusters"][0]["cluster"]["certificate-authority-data"] == "UEVN"


def test_status_text_names_every_component() -> None:
    status = ClusterStatus(Path("/s"), Path("/s/kubeconfig"), "https://127.0.0.1:7", True, {"apiserver": 7},
                           [ComponentStatus("etcd", 42, True, "/bin/etcd", 20480),
                            ComponentStatus("kwok", None, False, "/bin/kwok", 0)])
    text = format_status(status)
    assert "cluster:    up" in text
    assert "apiserver=7" in text
    assert "etcd" in text and "42" in text and "20" in text
    assert "kwok                           -" in text


def test_apiserver_profiler_is_off_unless_a_benchmark_asks_for_it() -> None:
    layout, ports = Layout(Path("/state")), {"apiserver": 1, "etcd_client": 2}
    assert "--profiling=false" in components.apiserver_args("kube-apiserver", layout, ports, Settings())
    profiled = components.apiserver_args("kube-apiserver", layout, ports, Settings(profiling=True))
    assert "--profiling=true" in profiled
    assert "--profiling=false" not in profiled
