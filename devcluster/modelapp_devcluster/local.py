"""`LocalCluster`: bring the embedded cluster up, down, and report on it.

Contract of `up()`: when it returns, kube-apiserver answers `/readyz`, the `default`
ServiceAccount exists (so kube-controller-manager's token and service-account controllers run),
and every kwok node is Ready (so kwok and the scheduler can place pods). It is idempotent: a
healthy running cluster is left alone. A partly running one (a component died) is stopped and
started again from its state, which keeps etcd's data, the PKI and, when still free, the ports.
On failure every process it started is stopped again and a ClusterError says why in one line.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from modelapp_devcluster import components, kubeconfig, kwok, pki, processes
from modelapp_devcluster.api import ApiClient
from modelapp_devcluster.binaries import Binary, ensure_binaries, file_lock
from modelapp_devcluster.errors import ClusterError
from modelapp_devcluster.layout import COMPONENTS, Layout, Ports, RunRecord, Settings, default_state_dir

Report = Callable[[str], None]
START_TIMEOUT_S = 120.0

__all__ = ["ClusterStatus", "LocalCluster", "default_state_dir"]


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    running: bool
    binary: str
    rss_kib: int


@dataclass(frozen=True)
class ClusterStatus:
    """What `status` shows: whether it is up, where, and each component's process."""

    state_dir: Path
    kubeconfig: Path
    server: str | None
    healthy: bool
    ports: dict[str, int]
    components: list[ComponentStatus]

    @property
    def running(self) -> list[str]:
        return [c.name for c in self.components if c.running]


def _quiet(_: str) -> None:
    return None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """`count` distinct free ports on 127.0.0.1 (held open together so none repeats)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def resolve_ports(wanted: Ports, previous: dict[str, int]) -> dict[str, int]:
    """Explicit ports must be free (else ClusterError); others reuse the previous run's if free, else any."""
    chosen: dict[str, int] = {}
    for name, port in asdict(wanted).items():
        if port:
            if not _port_free(port):
                raise ClusterError(f"port {port} on 127.0.0.1 ({name}) is in use; pick another or stop its owner")
            chosen[name] = port
        elif previous.get(name) and _port_free(previous[name]):
            chosen[name] = previous[name]
    missing = [name for name in asdict(wanted) if name not in chosen]
    taken = set(chosen.values())
    fresh = [p for p in _free_ports(len(missing) + len(taken)) if p not in taken]
    chosen.update(zip(missing, fresh, strict=False))
    return chosen


def wait_for(what: str, check: Callable[[], bool], *, timeout: float, alive: Callable[[], str | None]) -> None:
    """Poll `check` until true or `timeout`; `alive` returns an error line when a process died meanwhile."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        if check():
            return
        died = alive()
        if died:
            raise ClusterError(died)
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")


class LocalCluster:
    """One local cluster, identified by its state folder."""

    def __init__(self, state_dir: Path | str | None = None, settings: Settings | None = None, *,
                 report: Report = _quiet, env: dict[str, str] | None = None) -> None:
        self.layout = Layout(Path(state_dir).expanduser().resolve() if state_dir else default_state_dir(env))
        self.settings = settings or Settings()
        self.report = report
        self.env = dict(os.environ) if env is None else env

    # -- facts -------------------------------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.layout.root

    @property
    def kubeconfig(self) -> Path:
        """The admin (system:masters) kubeconfig."""
        return self.layout.admin_kubeconfig

    def record(self) -> RunRecord | None:
        return RunRecord.load(self.layout.state_file)

    @property
    def server(self) -> str:
        record = self.record()
        if record is None:
            raise ClusterError(f"no cluster was started from {self.state_dir}")
        return record.server

    def admin_client(self) -> ApiClient:
        pki_dir = self.layout.pki
        return ApiClient(self.server, ca=pki_dir / "ca.crt", cert=pki_dir / "admin.crt", key=pki_dir / "admin.key")

    def status(self) -> ClusterStatus:
        record = self.record()
        comps = []
        for name in COMPONENTS:
            pid = processes.read_pid(self.layout.pid_file(name))
            binary = record.binaries.get(name, name) if record else name
            running = processes.is_running(pid, binary)
            comps.append(ComponentStatus(name, pid, running, binary, processes.rss_kib(pid) if running and pid else 0))
        healthy = bool(record) and all(c.running for c in comps) and self.admin_client().ready()
        return ClusterStatus(self.state_dir, self.kubeconfig, record.server if record else None, healthy,
                             dict(record.ports) if record else {}, comps)

    def is_up(self) -> bool:
        return self.status().healthy

    # -- up / down ---------------------------------------------------------------------------------------------
    def up(self, *, timeout: float = START_TIMEOUT_S) -> bool:
        """Bring the cluster up; True if this call started it, False if it was already up."""
        self.layout.root.mkdir(parents=True, exist_ok=True)
        with file_lock(self.layout.root / ".lock"):
            if self.is_up():
                self.report(f"cluster already up: kubeconfig {self.kubeconfig}")
                return False
            self._stop_all()
            started = time.monotonic()
            binaries = ensure_binaries(env=self.env, report=self.report)
            try:
                self._start(binaries, timeout=timeout)
            except BaseException:
                self._stop_all()
                raise
            self.report(f"cluster up in {time.monotonic() - started:.1f}s: kubeconfig {self.kubeconfig}")
            return True

    def down(self) -> list[str]:
        """Stop every component (kwok first, etcd last); returns the names that were running."""
        if not self.layout.root.is_dir():
            return []
        with file_lock(self.layout.root / ".lock"):
            return self._stop_all()

    def _stop_all(self) -> list[str]:
        record = self.record()
        stopped = []
        for name in reversed(COMPONENTS):
            pid_file = self.layout.pid_file(name)
            pid = processes.read_pid(pid_file)
            binary = record.binaries.get(name, name) if record else name
            if processes.is_running(pid, binary) and pid is not None:
                processes.stop(pid, binary)
                stopped.append(name)
            pid_file.unlink(missing_ok=True)
        return stopped

    # -- the start sequence ------------------------------------------------------------------------------------
    def _prepare(self, ports: dict[str, int]) -> str:
        """PKI, kubeconfigs and kwok stages on disk; returns the API server URL."""
        layout, settings = self.layout, self.settings
        pki.ensure_pki(layout.pki, service_ip=settings.service_ip, advertise_address=settings.advertise_address)
        server = f"https://{settings.bind_address}:{ports['apiserver']}"
        layout.config.mkdir(parents=True, exist_ok=True)
        for ident in pki.CLIENTS:
            config = kubeconfig.cert_kubeconfig(server=server, ca=layout.cert("ca"), cert=layout.cert(ident.stem),
                                                key=layout.key(ident.stem), user_name=ident.user)
            path = layout.admin_kubeconfig if ident is pki.ADMIN else layout.kubeconfig_for(ident.stem)
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            path.chmod(0o600)
        (layout.config / "kwok-stages.yaml").write_text(yaml.safe_dump_all(kwok.build_stages(), sort_keys=False))
        return server

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        child_env = {k: v for k, v in (env or self.env).items() if k != "KUBECONFIG"}
        return processes.start(argv, log=self.layout.log_file(name), pid_file=self.layout.pid_file(name),
                               env=child_env)

    def _died(self, names: list[str], binaries: dict[str, Binary]) -> Callable[[], str | None]:
        def check() -> str | None:
            for name in names:
                if not processes.is_running(processes.read_pid(self.layout.pid_file(name)), str(binaries[name].path)):
                    return f"{name} exited: {processes.log_tail(self.layout.log_file(name))}"
            return None

        return check

    def _start(self, binaries: dict[str, Binary], *, timeout: float) -> None:
        layout, settings = self.layout, self.settings
        previous = self.record()
        ports = resolve_ports(settings.ports, previous.ports if previous else {})
        server = self._prepare(ports)
        paths = {name: str(b.path) for name, b in binaries.items()}
        record = RunRecord(ports=ports, binaries=paths, pids={}, server=server,
                           started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                           settings=asdict(settings))
        record.save(layout.state_file)
        layout.etcd_data.mkdir(parents=True, exist_ok=True)
        layout.etcd_data.chmod(0o700)
        record.pids["etcd"] = self._spawn("etcd", components.etcd_args(paths["etcd"], layout, ports))
        record.save(layout.state_file)
        self.report(f"etcd on 127.0.0.1:{ports['etcd_client']}")
        record.pids["kube-apiserver"] = self._spawn(
            "kube-apiserver", components.apiserver_args(paths["kube-apiserver"], layout, ports, settings))
        record.save(layout.state_file)
        client = self.admin_client()
        wait_for("kube-apiserver /readyz", client.ready, timeout=timeout,
                 alive=self._died(["etcd", "kube-apiserver"], binaries))
        self.report(f"kube-apiserver ready on {server}")
        record.pids["kube-controller-manager"] = self._spawn(
            "kube-controller-manager",
            components.controller_manager_args(paths["kube-controller-manager"], layout, ports, settings))
        record.pids["kube-scheduler"] = self._spawn(
            "kube-scheduler", components.scheduler_args(paths["kube-scheduler"], layout, ports))
        kwok_home = layout.root / "kwok-home"
        kwok_home.mkdir(exist_ok=True)
        record.pids["kwok"] = self._spawn(
            "kwok", components.kwok_args(paths["kwok"], layout, layout.config / "kwok-stages.yaml", settings),
            env={**self.env, "HOME": str(kwok_home)})
        record.save(layout.state_file)
        self._settle(client, binaries, timeout=timeout)

    def _settle(self, client: ApiClient, binaries: dict[str, Binary], *, timeout: float) -> None:
        """Create the kwok nodes, then wait for them to be Ready and for the default ServiceAccount."""
        settings = self.settings
        for name in kwok.node_names(settings.kwok_nodes):
            client.create("/api/v1/nodes", kwok.build_node(name, pods=settings.node_pods, cpu=settings.node_cpu,
                                                          memory=settings.node_memory))
        died = self._died(list(COMPONENTS), binaries)
        wait_for("the default ServiceAccount", lambda: _exists(client, "/api/v1/namespaces/default/serviceaccounts/"
                                                                       "default"), timeout=timeout, alive=died)
        wait_for("kwok nodes Ready", lambda: _nodes_ready(client, kwok.node_names(settings.kwok_nodes)),
                 timeout=timeout, alive=died)

    # -- identities --------------------------------------------------------------------------------------------
    def service_account_kubeconfig(self, namespace: str, name: str, *, path: Path | None = None,
                                   expiration_seconds: int = 3600) -> Path:
        """Write a kubeconfig that acts as ServiceAccount `namespace/name` (token from the TokenRequest API).

        The ServiceAccount must exist. Default path: `<state>/config/sa-<namespace>-<name>.kubeconfig`.
        """
        token = self.admin_client().create_token(namespace, name, expiration_seconds=expiration_seconds)
        config = kubeconfig.token_kubeconfig(server=self.server, ca_pem=self.layout.cert("ca").read_bytes(),
                                             token=token, user_name=f"system:serviceaccount:{namespace}:{name}",
                                             namespace=namespace)
        target = path or self.layout.config / f"sa-{namespace}-{name}.kubeconfig"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        target.chmod(0o600)
        return target


def _exists(client: ApiClient, path: str) -> bool:
    try:
        return client.get(path) is not None
    except OSError:
        return False


def _nodes_ready(client: ApiClient, names: list[str]) -> bool:
    for name in names:
        try:
            node = client.get(f"/api/v1/nodes/{name}")
        except OSError:
            return False
        conditions = (node or {}).get("status", {}).get("conditions") or []
        if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            return False
    return True
