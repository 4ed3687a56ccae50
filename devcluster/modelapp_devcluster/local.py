"""`LocalCluster`: bring the embedded cluster up, down, and report on it.

Contract of `up()`: when it returns, kube-apiserver answers `/readyz`, the `default`
ServiceAccount exists (so kube-controller-manager's token and service-account controllers run),
and every kwok node is Ready (so kwok and the scheduler can place pods). It is idempotent: a
healthy running cluster is left alone. A partly running one (a component died) is stopped and
started again from its state, which keeps etcd's data, the PKI and, when still free, the ports.
On failure every process it started is stopped again and a ClusterError says why in one line:
the component, its exit code or the health check that failed, and the last lines of its log.

Only one `up` or `down` works on a state folder at a time: a second one fails at once naming the
pid that holds the folder (`<state>/.lock`, an flock the kernel releases when that process dies,
so a killed run never leaves a stale lock). Ports are checked before anything starts, and one in
use is named with the process that holds it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from modelapp_devcluster import components, kubeconfig, kwok, pki, ports, processes
from modelapp_devcluster.api import ApiClient
from modelapp_devcluster.binaries import Binary, ensure_binaries
from modelapp_devcluster.errors import ClusterError
from modelapp_devcluster.layout import COMPONENTS, Layout, Ports, RunRecord, Settings, default_state_dir
from modelapp_devcluster.node_config import NodeSettings

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


def resolve_ports(wanted: Ports, previous: dict[str, int], *, hosts: dict[str, str] | None = None) -> dict[str, int]:
    """Explicit ports must be free (else ClusterError naming the holder); others reuse the previous run's if free.

    `hosts` says which address a port is bound on (the API server's may be the bridge's); 127.0.0.1
    for the rest.
    """
    hosts = hosts or {}
    chosen: dict[str, int] = {}
    for name, port in asdict(wanted).items():
        host = hosts.get(name, "127.0.0.1")
        if port:
            problem = ports.listen_problem(host, port)
            if problem and problem.startswith("in use"):
                raise ClusterError(f"port {port} on {host} ({name}) is {problem}; pick another or stop its owner")
            if problem:
                raise ClusterError(f"cannot listen on {host}:{port} ({name}): {problem}")
            chosen[name] = port
        elif previous.get(name) and ports.bind_problem(host, previous[name]) is None:
            chosen[name] = previous[name]
    missing = [name for name in asdict(wanted) if name not in chosen]
    taken = set(chosen.values())
    fresh = [p for p in _free_ports(len(missing) + len(taken)) if p not in taken]
    chosen.update(zip(missing, fresh, strict=False))
    return chosen


def check_bind_address(address: str) -> None:
    """Fail before starting anything when the API server could not listen on `address` at all."""
    if ports.bind_problem(address, 0) == ports.NOT_HERE:
        hint = (" (the real node's bridge address: `modelapp-cluster up --real-node` creates the bridge first)"
                if address == NodeSettings().node_ip else "")
        raise ClusterError(f"the API server would listen on {address}, which is not an address of this "
                           f"machine{hint}")


def wait_for(what: str, check: Callable[[], bool], *, timeout: float, alive: Callable[[], str | None],
             detail: Callable[[], str | None] | None = None) -> None:
    """Poll `check` until true or `timeout`; `alive` returns an error line when a process died meanwhile.

    On timeout the message carries `detail()`: what the health check saw last and the log's end.
    """
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
    extra = detail() if detail else None
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}" + (f": {extra}" if extra else ""))


def lock_holder(text: str) -> str:
    """Who holds a state folder, from its lock file's text (`<pid> <command>`), for the refusal message."""
    words = text.split(maxsplit=1)
    if not words or not words[0].isdigit():
        return "another `modelapp-cluster` command (pid unknown)"
    command = words[1].strip() if len(words) > 1 else "up"
    return f"another `modelapp-cluster {command}` (pid {words[0]})"


_held: set[Path] = set()
"""State folders whose lock this process holds: `exclusive` is re-entrant, so the command line can
hold a folder across the real node's steps and still call `LocalCluster.up`/`down` inside."""


@contextlib.contextmanager
def exclusive(state_dir: Path, command: str, *, wait: float = 0.0) -> Iterator[None]:
    """Hold `<state>/.lock` for `command`; if another process holds it (after `wait` seconds), say who.

    An flock, so the kernel drops it when its holder dies: a killed `up` never blocks the next one.
    The holder's pid is written into the file for the message only; the lock is the flock.
    """
    key = state_dir.resolve()
    if key in _held:
        yield
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / ".lock"
    with path.open("a+") as handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = lock_holder(path.read_text())
                    raise ClusterError(f"{holder} is working on {state_dir}: wait for it to finish, or stop it "
                                       f"and run `modelapp-cluster down --state-dir {state_dir}`") from None
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {command}\n")
        handle.flush()
        _held.add(key)
        try:
            yield
        finally:
            _held.discard(key)
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)


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

    def _refresh_kubernetes_endpoints(self, client: ApiClient, port: int) -> None:
        """Drop a `default/kubernetes` Endpoints that still names an earlier run's API server port.

        The state folder keeps etcd's data; when the previous port was taken this run listens on another,
        and the API server's lease reconciler corrects the address but not the port, so pods (the operator)
        would reach 10.96.0.1:443 and be refused. Deleted, it is written again at once with the port in use.
        """
        found = client.request("GET", "/api/v1/namespaces/default/endpoints/kubernetes")
        if found.status != 200:
            return
        listed = [p.get("port") for subset in found.json().get("subsets") or [] for p in subset.get("ports") or []]
        if not listed or port in listed:
            return
        for path in ("/api/v1/namespaces/default/endpoints/kubernetes",
                     "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes"):  # fmt: skip
            client.request("DELETE", path)
        self.report(f"the kubernetes Service pointed at port {listed[0]} of an earlier run: refreshed to {port}")

    def admin_client(self) -> ApiClient:
        pki_dir = self.layout.pki
        return ApiClient(self.server, ca=pki_dir / "ca.crt", cert=pki_dir / "admin.crt", key=pki_dir / "admin.key")

    def status(self) -> ClusterStatus:
        record = self.record()
        comps = []
        for name in COMPONENTS:
            pid = processes.read_pid(self.layout.pid_file(name))
            binary = record.binaries.get(name, name) if record else name
            running = processes.is_running_from(self.layout.pid_file(name), binary)
            comps.append(ComponentStatus(name, pid, running, binary, processes.rss_kib(pid) if running and pid else 0))
        healthy = bool(record) and all(c.running for c in comps) and self.admin_client().ready()
        return ClusterStatus(self.state_dir, self.kubeconfig, record.server if record else None, healthy,
                             dict(record.ports) if record else {}, comps)

    def is_up(self) -> bool:
        return self.status().healthy

    def exclusive(self, command: str, *, wait: float = 0.0) -> contextlib.AbstractContextManager[None]:
        """Hold this state folder for `command` (see `exclusive`); `up` and `down` take it themselves."""
        return exclusive(self.layout.root, command, wait=wait)

    # -- up / down ---------------------------------------------------------------------------------------------
    def up(self, *, timeout: float = START_TIMEOUT_S, wait: float = 0.0) -> bool:
        """Bring the cluster up; True if this call started it, False if it was already up.

        `wait`: seconds to wait for another `up`/`down` on this state folder before refusing
        (0, the command line's choice: say at once who holds it).
        """
        self.layout.root.mkdir(parents=True, exist_ok=True)
        with exclusive(self.layout.root, "up", wait=wait):
            if self.is_up():
                self.report(f"cluster already up: kubeconfig {self.kubeconfig}")
                return False
            self._stop_all()
            check_bind_address(self.settings.bind_address)
            started = time.monotonic()
            binaries = ensure_binaries(env=self.env, report=self.report)
            try:
                self._start(binaries, timeout=timeout)
            except BaseException:
                self._stop_all()
                raise
            self.report(f"cluster up in {time.monotonic() - started:.1f}s: kubeconfig {self.kubeconfig}")
            return True

    def down(self, *, wait: float = 0.0) -> list[str]:
        """Stop every component (kwok first, etcd last); returns the names that were running."""
        if not self.layout.root.is_dir():
            return []
        with exclusive(self.layout.root, "down", wait=wait):
            return self._stop_all()

    def _stop_all(self) -> list[str]:
        record = self.record()
        stopped = []
        for name in reversed(COMPONENTS):
            pid_file = self.layout.pid_file(name)
            held = processes.read(pid_file)
            binary = record.binaries.get(name, name) if record else name
            if held is not None and processes.is_running(held.pid, binary, started=held.started):
                processes.stop(held.pid, binary, started=held.started)
                stopped.append(name)
            pid_file.unlink(missing_ok=True)
        return stopped

    # -- the start sequence ------------------------------------------------------------------------------------
    def _prepare(self, ports: dict[str, int]) -> str:
        """PKI, kubeconfigs and kwok stages on disk; returns the API server URL."""
        layout, settings = self.layout, self.settings
        for line in pki.ensure_pki(layout.pki, service_ip=settings.service_ip,
                                   advertise_address=settings.advertise_address, bind_address=settings.bind_address):
            self.report(line)
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

    def _died(self, names: list[str], binaries: dict[str, Binary], waiting_for: str) -> Callable[[], str | None]:
        """A check for `wait_for`: the first of `names` that is no longer running, said in full."""
        def check() -> str | None:
            for name in names:
                held = processes.read(self.layout.pid_file(name))
                if held is None:
                    return f"{name}: its pid file {self.layout.pid_file(name)} is gone (another `down`?)"
                if not processes.is_running(held.pid, str(binaries[name].path), started=held.started):
                    return (f"{name} (pid {held.pid}) exited while waiting for {waiting_for}, "
                            f"{processes.describe_exit(processes.exit_code(held.pid))}; "
                            f"{processes.log_tail(self.layout.log_file(name))}")
            return None

        return check

    def _log_detail(self, client: ApiClient, names: list[str]) -> Callable[[], str]:
        """What a timed-out wait reports: the API server's last answer and the logs' last lines."""
        def detail() -> str:
            parts = [f"last health check: {client.readyz_problem() or 'ready'}"]
            parts += [f"{name}: {processes.log_tail(self.layout.log_file(name), lines=3)}" for name in names]
            return "; ".join(parts)

        return detail

    def _start(self, binaries: dict[str, Binary], *, timeout: float) -> None:
        layout, settings = self.layout, self.settings
        previous = self.record()
        ports = resolve_ports(settings.ports, previous.ports if previous else {},
                              hosts={"apiserver": settings.bind_address})
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
                 alive=self._died(["etcd", "kube-apiserver"], binaries, "kube-apiserver /readyz"),
                 detail=self._log_detail(client, ["kube-apiserver", "etcd"]))
        self.report(f"kube-apiserver ready on {server}")
        self._refresh_kubernetes_endpoints(client, ports["apiserver"])
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
        wait_for("the default ServiceAccount", lambda: _exists(client, "/api/v1/namespaces/default/serviceaccounts/"
                                                                       "default"), timeout=timeout,
                 alive=self._died(list(COMPONENTS), binaries, "the default ServiceAccount"),
                 detail=self._log_detail(client, ["kube-controller-manager"]))
        wait_for("kwok nodes Ready", lambda: _nodes_ready(client, kwok.node_names(settings.kwok_nodes)),
                 timeout=timeout, alive=self._died(list(COMPONENTS), binaries, "kwok nodes Ready"),
                 detail=self._log_detail(client, ["kwok"]))

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
