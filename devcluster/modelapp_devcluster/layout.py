"""Where everything of one local cluster lives, and the settings it runs with.

A cluster is its state folder: PKI, kubeconfigs, etcd data, logs, pid files and `cluster.json`
(the ports and binaries of the last `up`). Two clusters with different folders and ports can run
side by side.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_ENV = "MODELAPP_CLUSTER_DIR"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def default_state_dir(env: dict[str, str] | None = None) -> Path:
    """`$MODELAPP_CLUSTER_DIR`, else `${XDG_STATE_HOME:-~/.local/state}/modelapp/cluster`."""
    env = dict(os.environ) if env is None else env
    if env.get(STATE_ENV):
        return Path(env[STATE_ENV]).expanduser()
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "modelapp" / "cluster"


@dataclass(frozen=True)
class Layout:
    """Paths inside a state folder."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def state_file(self) -> Path:
        return self.root / "cluster.json"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    def kubeconfig_for(self, stem: str) -> Path:
        return self.config / f"{stem}.kubeconfig"

    def pid_file(self, component: str) -> Path:
        return self.run / f"{component}.pid"

    def log_file(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def cert(self, stem: str) -> Path:
        return self.pki / f"{stem}.crt"

    def key(self, stem: str) -> Path:
        return self.pki / f"{stem}.key"


@dataclass(frozen=True)
class Ports:
    """TCP ports on 127.0.0.1; 0 means "pick a free one at `up`"."""

    apiserver: int = 0
    etcd_client: int = 0
    etcd_peer: int = 0
    controller_manager: int = 0
    scheduler: int = 0

    def unresolved(self) -> list[str]:
        return [name for name, port in asdict(self).items() if port == 0]


@dataclass(frozen=True)
class Settings:
    """What a cluster runs with. Defaults give a cluster for 1,000+ small kwok pods."""

    ports: Ports = field(default_factory=Ports)
    service_cidr: str = "10.96.0.0/16"
    pod_cidr: str = "10.244.0.0/16"
    advertise_address: str = "127.0.0.1"
    # The API server listens on this one address: loopback, or the real node's bridge (10.244.0.1) so that
    # pods reach it through the `kubernetes` Service; the host reaches the bridge address as well.
    bind_address: str = "127.0.0.1"
    kwok_nodes: int = 4
    # Per kwok node: 4 x 300 pods, 4 x 32 CPUs, 4 x 128Gi -- room for 1,000 pods of 100m / 128Mi.
    node_pods: int = 300
    node_cpu: str = "32"
    node_memory: str = "128Gi"
    # The API server's Go profiler (/debug/pprof, admin only): off, as in a hardened cluster; the operator
    # benchmark turns it on to see where the API server's CPU goes in a burst (`--apiserver-profile`).
    profiling: bool = False

    @property
    def service_ip(self) -> str:
        """The first address of the service range: the `kubernetes` Service's cluster IP."""
        return str(next(ipaddress.ip_network(self.service_cidr).hosts()))


@dataclass
class RunRecord:
    """What `up` wrote to `cluster.json`: enough for `status`, `down` and a later `up` to agree."""

    ports: dict[str, int]
    binaries: dict[str, str]
    pids: dict[str, int]
    server: str
    started_at: str
    settings: dict[str, object] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> RunRecord | None:
        """The record, or None when there is none or it cannot be read (treated as "never started")."""
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None
