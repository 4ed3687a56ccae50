"""Pure builders of the real node's configuration: containerd, CNI, kubelet, kube-proxy, registry.

Why a real node: kwok's nodes only pretend; pods on this node really run (containerd + runc),
get an IP on a local bridge (the bridge CNI plugin, host-local IPAM) and are reachable through
Services (kube-proxy, iptables mode). Everything binds to 127.0.0.1 or to the node's own bridge,
and every file, socket and state directory lives under the node's folder in the cluster state
dir, never under /etc or /var/lib, so the node can be removed by deleting one folder.

Contract of this module: data in (a `NodeSettings` and the `NodePaths` derived from the state
dir), documents out (dicts, or TOML text for containerd). No I/O; `node.py` writes and runs them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REAL_NODE_LABEL = "modelapp.io/node"
"""Label (value `real`) on the real node, and the key of its taint when it is dedicated."""

CNI_BIN_DIR = Path("/usr/lib/cni")
"""Where Debian's `containernetworking-plugins` installs bridge, host-local, loopback, portmap."""


@dataclass(frozen=True)
class NodeSettings:
    """What makes one real node: its name, its bridge and pod subnet, and what it talks to.

    `pod_subnet` is a /24 (or wider) of which the first address is the bridge's own address,
    which is also the node IP: kubelet refuses a loopback node IP, and the bridge address is
    on this machine and reachable from the host and from every pod.

    `dedicated` taints the node `modelapp.io/node=real:NoSchedule`, so that only pods that
    tolerate it run here: on a cluster that also has kwok nodes, other tests' pods (with images
    nobody can pull) must not land on the real node by chance.
    """

    name: str = "modelapp-node"
    bridge: str = "modelapp0"
    pod_subnet: str = "10.244.0.0/24"
    cluster_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    cluster_domain: str = "cluster.local"
    cluster_dns: tuple[str, ...] = ()
    registry_port: int = 5001
    sandbox_image: str = "modelapp.local/pause:1"
    kubelet_port: int = 10250
    max_pods: int = 110
    dedicated: bool = True

    @property
    def node_ip(self) -> str:
        """The bridge's address: the pod subnet's first host address."""
        return str(next(ipaddress.ip_network(self.pod_subnet).hosts()))

    @property
    def registry_host(self) -> str:
        """The local registry as image references name it, e.g. `127.0.0.1:5001`."""
        return f"127.0.0.1:{self.registry_port}"


@dataclass(frozen=True)
class NodePaths:
    """Every file and folder of the node, under `<cluster state dir>/node`."""

    root: Path
    extra: Mapping[str, Path] = field(default_factory=dict)

    @property
    def containerd_dir(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_config(self) -> Path:
        return self.containerd_dir / "config.toml"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_dir / "containerd.sock"

    @property
    def registry_hosts_dir(self) -> Path:
        return self.containerd_dir / "certs.d"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet-config.yaml"

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.root / "kubelet.kubeconfig"

    @property
    def proxy_config(self) -> Path:
        return self.root / "kube-proxy-config.yaml"

    @property
    def proxy_kubeconfig(self) -> Path:
        return self.root / "kube-proxy.kubeconfig"

    @property
    def pod_logs_dir(self) -> Path:
        return self.root / "pod-logs"

    @property
    def registry_dir(self) -> Path:
        return self.root / "registry"

    @property
    def registry_config(self) -> Path:
        return self.registry_dir / "config.yml"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def pki_dir(self) -> Path:
        return self.root / "pki"


def to_toml(document: Mapping[str, object], _prefix: str = "") -> str:
    """A minimal TOML writer: nested tables, strings, ints, bools and lists of scalars.

    Table names are always quoted segments, so containerd's dotted plugin names
    (`io.containerd.grpc.v1.cri`) come out right.
    """
    scalars: list[str] = []
    tables: list[str] = []
    for key, value in document.items():
        if isinstance(value, Mapping):
            name = f'{_prefix}."{key}"' if _prefix else f'"{key}"'
            body = to_toml(value, name)
            tables.append(f"[{name}]\n{body}")
        else:
            scalars.append(f'"{key}" = {_toml_value(value)}\n')
    return "".join(scalars) + "".join(f"\n{table}" for table in tables)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def containerd_config(settings: NodeSettings, paths: NodePaths) -> dict[str, object]:
    """containerd 1.6 config (version 2): own root, state and socket; CRI with our sandbox image.

    `restrict_oom_score_adj`: containerd gives every sandbox an OOM score of -998 (and Guaranteed
    containers -997); lowering a score needs CAP_SYS_RESOURCE, which this machine's root does not
    have (CapEff 000001fffeffffff lacks bit 24), and runc then fails with "failed to update
    /proc/self/oom_score_adj: Permission denied". Restricting clamps scores to containerd's own.
    runc's state (`Root`) lives under the node's folder, apart from any system containerd.

    The CRI plugin uses cgroupfs (the machine runs cgroup v1, and kubelet is set to match),
    the bridge CNI config from `cni_conf_dir`, and registry hosts from `registry_hosts_dir`
    (where the local registry is declared plain HTTP). Metrics and debug endpoints are off so
    that nothing listens beyond the unix sockets.
    """
    cri = {
        "sandbox_image": settings.sandbox_image,
        "enable_selinux": False,
        "restrict_oom_score_adj": True,
        "max_container_log_line_size": 16384,
        "containerd": {
            "snapshotter": "overlayfs",
            "default_runtime_name": "runc",
            "runtimes": {
                "runc": {
                    "runtime_type": "io.containerd.runc.v2",
                    "options": {"SystemdCgroup": False, "Root": str(paths.containerd_dir / "runc")},
                }
            },
        },
        "cni": {"bin_dir": str(CNI_BIN_DIR), "conf_dir": str(paths.cni_conf_dir), "max_conf_num": 1},
        "registry": {"config_path": str(paths.registry_hosts_dir)},
    }
    return {
        "version": 2,
        "root": str(paths.containerd_dir / "root"),
        "state": str(paths.containerd_dir / "state"),
        "grpc": {"address": str(paths.containerd_socket)},
        "ttrpc": {"address": f"{paths.containerd_socket}.ttrpc"},
        "debug": {"address": ""},
        "metrics": {"address": ""},
        "plugins": {"io.containerd.grpc.v1.cri": cri},
    }


def registry_hosts_toml(settings: NodeSettings) -> str:
    """containerd's `hosts.toml` for the local registry: plain HTTP on 127.0.0.1.

    containerd (on the host, not in a pod) does the pull, so 127.0.0.1 is the registry itself.
    """
    url = f"http://{settings.registry_host}"
    return to_toml({"server": url, "host": {url: {"capabilities": ["pull", "resolve", "push"]}}})


def cni_conflist(settings: NodeSettings, paths: NodePaths) -> dict[str, object]:
    """The pod network: a bridge with the node IP as gateway, host-local IPAM, and port maps.

    `ipMasq` lets pods reach the host's other addresses; `hairpinMode` lets a pod reach itself
    through a Service. IPAM state lives under the node's folder, not /var/lib/cni. `firewall`
    accepts each pod's forwarded traffic ahead of the FORWARD chain's policy, which Docker's
    engine (installed on the same machine for image builds) sets to DROP: without it, bridged
    pod-to-pod packets, which br_netfilter sends through FORWARD, are dropped.
    """
    return {
        "cniVersion": "1.0.0",
        "name": "modelapp",
        "plugins": [
            {
                "type": "bridge",
                "bridge": settings.bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(paths.cni_ipam_dir),
                    "ranges": [[{"subnet": settings.pod_subnet, "gateway": settings.node_ip}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            {"type": "firewall", "backend": "iptables"},
        ],
    }


def kubelet_config(settings: NodeSettings, paths: NodePaths, *, client_ca: Path) -> dict[str, object]:
    """KubeletConfiguration: cgroupfs, swap allowed, webhook auth, serving on the bridge address only.

    `oomScoreAdj: 0`: kubelet would lower its own score to -999, which needs CAP_SYS_RESOURCE (see
    `containerd_config`). Eviction thresholds are low on purpose: this node shares a developer's disk, and a
    nearly full disk should not make it evict the pods a test is waiting for.
    """
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": settings.node_ip,
        "port": settings.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "memorySwap": {"swapBehavior": "NoSwap"},
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDomain": settings.cluster_domain,
        "clusterDNS": list(settings.cluster_dns),
        "resolvConf": "/etc/resolv.conf",
        "podLogsDir": str(paths.pod_logs_dir),
        "maxPods": settings.max_pods,
        "serializeImagePulls": False,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "registerNode": True,
        "registerWithTaints": [{"key": REAL_NODE_LABEL, "value": "real", "effect": "NoSchedule"}]
        if settings.dedicated else [],
        "oomScoreAdj": 0,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "shutdownGracePeriod": "0s",
    }


def kube_proxy_config(settings: NodeSettings, paths: NodePaths) -> dict[str, object]:
    """KubeProxyConfiguration in iptables mode; NodePorts answer on 127.0.0.1 and the bridge.

    Listing 127.0.0.0/8 in `nodePortAddresses` makes kube-proxy set `route_localnet`, so a
    NodePort is reachable at 127.0.0.1:<nodePort> from the host. Conntrack sysctls are left
    alone (`maxPerCore: 0`, and 0s for the TCP timeouts, as kind's config does: else kube-proxy sets the
    host's established/close-wait timeouts to 24 h/1 h and nothing puts them back): the machine may be a
    container that may not write them, and they are the machine's; its own OOM score too
    (`oomScoreAdj: 0`, lowering needs CAP_SYS_RESOURCE).
    """
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(paths.proxy_kubeconfig)},
        "hostnameOverride": settings.name,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "clusterCIDR": settings.cluster_cidr,
        "nodePortAddresses": ["127.0.0.0/8", f"{settings.node_ip}/32"],
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "oomScoreAdj": 0,
        "iptables": {"masqueradeAll": False, "syncPeriod": "10s", "minSyncPeriod": "0s"},
    }


def kubeconfig(*, server: str, ca_file: Path, cert_file: Path, key_file: Path, user: str) -> dict[str, object]:
    """A kubeconfig with one cluster, one client-certificate user and one current context."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "modelapp", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"client-certificate": str(cert_file), "client-key": str(key_file)}}],
        "contexts": [{"name": "modelapp", "context": {"cluster": "modelapp", "user": user}}],
        "current-context": "modelapp",
    }


def registry_config(settings: NodeSettings, paths: NodePaths) -> dict[str, object]:
    """Debian's `docker-registry` (distribution 2.8): filesystem storage, 127.0.0.1 only, deletes allowed."""
    return {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(paths.registry_dir / "data")},
            "delete": {"enabled": True},
        },
        "http": {"addr": settings.registry_host, "headers": {"X-Content-Type-Options": ["nosniff"]}},
    }


# -- before anything starts: what the node needs free -----------------------------------------------------------
@dataclass(frozen=True)
class Listener:
    """One address a node part listens on: checked free before that part starts (issue 11)."""

    part: str
    what: str
    host: str
    port: int


def listeners(settings: NodeSettings) -> list[Listener]:
    """Every address the node's parts listen on (their configs above are the source of these numbers)."""
    return [
        Listener("registry", "registry", "127.0.0.1", settings.registry_port),
        Listener("kubelet", "kubelet API", settings.node_ip, settings.kubelet_port),
        Listener("kubelet", "kubelet healthz", "127.0.0.1", 10248),
        Listener("kube-proxy", "kube-proxy healthz", "127.0.0.1", 10256),
        Listener("kube-proxy", "kube-proxy metrics", "127.0.0.1", 10249),
    ]


def port_conflicts(wanted: Sequence[Listener], running: set[str],
                   problem: Callable[[str, int], str | None]) -> list[str]:
    """One line per address a part that is not running yet cannot listen on (pure given `problem`).

    A part of ours that runs already holds its own ports, which is fine: `up` keeps it. `problem`
    answers for host:port ("in use by pid 42 (nginx)", or None when it is free).
    """
    found = []
    for listener in wanted:
        if listener.part in running:
            continue
        why = problem(listener.host, listener.port)
        if why:
            found.append(f"{listener.host}:{listener.port} ({listener.what}) is {why}")
    return found


def parse_ip_addr(text: str) -> list[tuple[str, str]]:
    """(interface, address/prefix) pairs from `ip -o -4 addr show` (pure)."""
    pairs = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 4 and words[2] == "inet":
            pairs.append((words[1], words[3]))
    return pairs


def subnet_conflicts(settings: NodeSettings, interfaces: Sequence[tuple[str, str]]) -> list[str]:
    """Interfaces other than our bridge whose network overlaps the pod subnet: routing to pods would break."""
    pods = ipaddress.ip_network(settings.pod_subnet)
    return [f"{name} ({cidr})" for name, cidr in interfaces
            if name != settings.bridge and ipaddress.ip_interface(cidr).network.overlaps(pods)]


def stale_parts(servers: Mapping[str, str | None], current: str, running: set[str]) -> list[str]:
    """Running parts whose kubeconfig names another API server than `current` (pure).

    After a killed run, or a control plane restarted on another port or address, kubelet and
    kube-proxy may still run against the old one; `up` keeps running parts, so these must be
    restarted, or the Node never turns Ready and `up` waits out its timeout.
    """
    return [part for part, server in servers.items() if part in running and server != current]
