"""A real node for the embedded cluster: containerd + runc, kubelet, kube-proxy, a local registry.

Pods scheduled here really run. The node joins the control plane that `modelapp-cluster up`
started from the same state folder: it reads `cluster.json` (API server URL) and the cluster CA
(`pki/ca.{crt,key}`) to issue its own client certificates — `system:node:<name>` in group
`system:nodes` for kubelet (the API server's Node authorizer then grants exactly what a kubelet
needs) and `system:kube-proxy` for kube-proxy (bound by the built-in `system:node-proxier` role).

Where things are: everything of the node lives under `<state>/node/` (configs, containerd's
root and state, kubelet's root dir, pod logs, the registry's storage, logs, pid files). Nothing
is written to /etc or /var/lib. What binds where:
- containerd: unix sockets only; the registry: 127.0.0.1:<registry_port> (plain HTTP);
- kubelet: the bridge address (node IP) :10250, healthz 127.0.0.1:10248;
- kube-proxy: 127.0.0.1 (healthz 10256, metrics 10249); NodePorts on 127.0.0.1 and the bridge.

Lifecycle: `RealNode(state_dir).up()` is idempotent (running parts are kept), `down()` stops
every part, removes its containers, network namespaces, mounts, iptables rules and bridge, and
deletes the Node object; `status()` tells what runs. Needs root (it creates a bridge and
iptables rules) and the host packages of `hack/install-node.sh`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import ipaddress
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelapp_devcluster import node_build, node_config, node_host, pki, ports, versions
from modelapp_devcluster.api import ApiClient
from modelapp_devcluster.errors import ClusterError
from modelapp_devcluster.layout import Layout, RunRecord
from modelapp_devcluster.node_config import NodePaths, NodeSettings
from modelapp_devcluster.node_image import ImageFile, build_image, oci_layout_tar

HOST_TOOLS = ("containerd", "ctr", "runc", "iptables", "conntrack", "ip", "docker-registry")
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
PARTS = ("registry", "containerd", "kubelet", "kube-proxy")
Report = Callable[[str], None]


@dataclass(frozen=True)
class ControlPlane:
    """What the node needs to know about the running control plane, read from its state folder."""

    server: str
    ca_cert: Path
    ca_key: Path
    admin_cert: Path
    admin_key: Path
    service_cidr: str
    pod_cidr: str

    @classmethod
    def from_state_dir(cls, state_dir: Path) -> ControlPlane:
        layout = Layout(state_dir)
        record = RunRecord.load(layout.state_file)
        if record is None:
            raise ClusterError(f"no cluster in {state_dir}: run `modelapp-cluster up` first")
        settings = record.settings
        return cls(server=record.server, ca_cert=layout.cert("ca"), ca_key=layout.key("ca"),
                   admin_cert=layout.cert("admin"), admin_key=layout.key("admin"),
                   service_cidr=str(settings.get("service_cidr", "10.96.0.0/16")),
                   pod_cidr=str(settings.get("pod_cidr", "10.244.0.0/16")))

    def api(self) -> ApiClient:
        return ApiClient(self.server, ca=self.ca_cert, cert=self.admin_cert, key=self.admin_key)


@dataclass
class NodeTimings:
    """Seconds spent in each step of `up`, for the report and the benchmarks."""

    steps: dict[str, float] = field(default_factory=dict)

    def measure(self, name: str, started: float) -> None:
        self.steps[name] = round(time.monotonic() - started, 2)


class RealNode:
    """The real node of the cluster in `state_dir`; see the module docstring for the contract."""

    def __init__(self, state_dir: Path, settings: NodeSettings | None = None) -> None:
        self.state_dir = state_dir
        self.settings = settings or NodeSettings()
        self.paths = NodePaths(state_dir / "node")
        self.procs = node_host.Processes(self.paths.root)
        self.last_up: NodeTimings | None = None

    # ----------------------------------------------------------------------------- up
    def up(self, *, report: Report = print, timeout: float = 180.0) -> NodeTimings:
        """Bring every part up (keeping the ones that run) and wait until the Node is Ready."""
        timings = NodeTimings()
        self.last_up = timings
        control = ControlPlane.from_state_dir(self.state_dir)
        self.settings = _with_cluster_ranges(self.settings, control)
        check_host()
        started = time.monotonic()
        bins = node_build.ensure_node_binaries(report=report)
        timings.measure("binaries", started)
        started = time.monotonic()
        self._restart_stale(control, report)
        self._write_files(control)
        node_host.ensure_sysctls()
        node_host.save_host_settings(self._host_settings)  # before kubelet and kube-proxy change them
        net = ipaddress.ip_network(self.settings.pod_subnet)
        node_host.ensure_bridge(self.settings.bridge, self.settings.node_ip, net.prefixlen)
        self.check_ports()
        timings.measure("configure", started)
        for name, step in (("registry", self._start_registry), ("containerd", self._start_containerd),
                           ("kubelet", lambda: self._start_kubelet(bins.kubelet, control, timeout)),
                           ("kube-proxy", lambda: self._start_proxy(bins.kube_proxy))):
            started = time.monotonic()
            report(f"node: starting {name}")
            step()
            timings.measure(name, started)
        report(f"node {self.settings.name} Ready at {self.settings.node_ip} ({_fmt(timings.steps)})")
        return timings

    @property
    def _host_settings(self) -> Path:
        """The host's own values of `node_host.HOST_SETTINGS` while the node runs (`down` writes them back)."""
        return self.paths.root / "host-settings.json"

    def _restart_stale(self, control: ControlPlane, report: Report) -> None:
        """Stop kubelet or kube-proxy when they run against another API server than this control plane's."""
        servers = {"kubelet": _kubeconfig_server(self.paths.kubelet_kubeconfig),
                   "kube-proxy": _kubeconfig_server(self.paths.proxy_kubeconfig)}
        running = {part for part in servers if self.procs.alive(part)}
        for part in node_config.stale_parts(servers, control.server, running):
            report(f"node: {part} runs against {servers[part]}, the control plane is at {control.server}: "
                   "restarting it")
            self.procs.stop(part)

    def check_ports(self) -> None:
        """Every address a part that is not running yet listens on must be free: else one line naming each."""
        running = {part for part in PARTS if self.procs.alive(part)}
        taken = node_config.port_conflicts(node_config.listeners(self.settings), running, ports.listen_problem)
        if taken:
            raise ClusterError(f"the real node cannot start: {'; '.join(taken)}. Stop what holds them (an earlier "
                               "node of another state folder: `modelapp-cluster down --state-dir` that folder)")

    def _write_files(self, control: ControlPlane) -> None:
        paths, settings = self.paths, self.settings
        for folder in (paths.containerd_dir, paths.cni_conf_dir, paths.cni_ipam_dir, paths.kubelet_dir,
                       paths.pod_logs_dir, paths.registry_dir, paths.images_dir, paths.pki_dir,
                       paths.registry_hosts_dir / settings.registry_host):
            folder.mkdir(parents=True, exist_ok=True)
        paths.containerd_config.write_text(node_config.to_toml(node_config.containerd_config(settings, paths)))
        (paths.registry_hosts_dir / settings.registry_host / "hosts.toml").write_text(
            node_config.registry_hosts_toml(settings))
        _write_atomically(paths.cni_conf_dir / "10-modelapp.conflist",
                          json.dumps(node_config.cni_conflist(settings, paths), indent=2))
        _write_yaml(paths.registry_config, node_config.registry_config(settings, paths))
        _write_yaml(paths.kubelet_config, node_config.kubelet_config(settings, paths, client_ca=control.ca_cert))
        _write_yaml(paths.proxy_config, node_config.kube_proxy_config(settings, paths))
        for stem, user, groups, target in (
            ("kubelet", f"system:node:{settings.name}", ("system:nodes",), paths.kubelet_kubeconfig),
            ("kube-proxy", "system:kube-proxy", (), paths.proxy_kubeconfig),
        ):
            cert, key = self._ensure_client_cert(control, stem, user, groups)
            _write_yaml(target, node_config.kubeconfig(server=control.server, ca_file=control.ca_cert,
                                                       cert_file=cert, key_file=key, user=user))

    def _ensure_client_cert(self, control: ControlPlane, stem: str, user: str,
                            groups: tuple[str, ...]) -> tuple[Path, Path]:
        """A client certificate signed by the cluster CA; reissued when the CA changed."""
        cert_path, key_path = self.paths.pki_dir / f"{stem}.crt", self.paths.pki_dir / f"{stem}.key"
        ca_cert = x509.load_pem_x509_certificate(control.ca_cert.read_bytes())
        if cert_path.exists() and key_path.exists():
            existing = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if existing.issuer == ca_cert.subject and _signed_by(existing, ca_cert):
                return cert_path, key_path
        ca_key = serialization.load_pem_private_key(control.ca_key.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ClusterError(f"{control.ca_key}: expected the cluster's ECDSA CA key")
        cert, key = pki.issue(ca_cert, ca_key, common_name=user, organizations=groups, now=dt.datetime.now(dt.UTC))
        key_path.write_bytes(pki.key_pem(key))
        key_path.chmod(0o600)
        cert_path.write_bytes(pki.cert_pem(cert))
        return cert_path, key_path

    def start_registry(self) -> str:
        """Only the local registry (for pushing images before the node is up); returns `127.0.0.1:PORT`."""
        self.paths.registry_dir.mkdir(parents=True, exist_ok=True)
        _write_yaml(self.paths.registry_config, node_config.registry_config(self.settings, self.paths))
        self._start_registry()
        return self.settings.registry_host

    def _start_registry(self) -> None:
        self.procs.start("registry", ["docker-registry", "serve", str(self.paths.registry_config)])
        url = f"http://{self.settings.registry_host}/v2/"
        node_host.wait_for("registry", lambda: _http_ok(url), timeout=30, log=self.procs.log("registry"),
                           alive=lambda: self.procs.alive("registry"))

    def _start_containerd(self) -> None:
        self.procs.start("containerd", ["containerd", "--config", str(self.paths.containerd_config)])
        node_host.wait_for("containerd", lambda: self._ctr("version", check=False).returncode == 0, timeout=30,
                           log=self.procs.log("containerd"), alive=lambda: self.procs.alive("containerd"))
        self._import_pause_image()

    def _import_pause_image(self) -> None:
        """Build the sandbox image from the packaged pause.c and import it into containerd's k8s.io namespace."""
        binary = node_build.static_program("pause.c")
        image = build_image([ImageFile("/pause", binary.read_bytes())], entrypoint=["/pause"], user="65535:65535")
        archive = self.paths.images_dir / "pause.tar"
        archive.write_bytes(oci_layout_tar(image, ref=self.settings.sandbox_image))
        self._ctr("images", "import", str(archive))

    def _start_kubelet(self, binary: Path, control: ControlPlane, timeout: float) -> None:
        argv = [str(binary), f"--config={self.paths.kubelet_config}",
                f"--kubeconfig={self.paths.kubelet_kubeconfig}", f"--root-dir={self.paths.kubelet_dir}",
                f"--cert-dir={self.paths.pki_dir / 'kubelet-serving'}",
                f"--hostname-override={self.settings.name}", f"--node-ip={self.settings.node_ip}",
                f"--node-labels={node_config.REAL_NODE_LABEL}=real", "--v=1"]
        self.procs.start("kubelet", argv)
        node_host.wait_for("kubelet healthz", lambda: _http_ok("http://127.0.0.1:10248/healthz"), timeout=timeout,
                           log=self.procs.log("kubelet"), alive=lambda: self.procs.alive("kubelet"))
        api = control.api()
        node_host.wait_for(f"node {self.settings.name} Ready", lambda: _node_ready(api, self.settings.name),
                           timeout=timeout, log=self.procs.log("kubelet"), alive=lambda: self.procs.alive("kubelet"))
        _uncordon(api, self.settings.name)

    def _start_proxy(self, binary: Path) -> None:
        self.procs.start("kube-proxy", [str(binary), f"--config={self.paths.proxy_config}", "--v=1"])
        node_host.wait_for("kube-proxy healthz", lambda: _http_ok("http://127.0.0.1:10256/healthz"), timeout=60,
                           log=self.procs.log("kube-proxy"), alive=lambda: self.procs.alive("kube-proxy"))

    # ----------------------------------------------------------------------------- down
    def down(self, *, report: Report = print) -> None:
        """Stop every part and undo what `up` did to the host; the node's files are kept.

        Pods are drained first (node cordoned, its pods deleted, containerd watched until no task
        runs), so kubelet tears their networks down through CNI; whatever is left after that
        (containers, network namespaces, mounts, the CNI plugins' iptables rules) is swept.
        """
        if self.procs.alive("kubelet") and self.procs.alive("containerd"):
            self._drain()
        for name in ("kube-proxy", "kubelet"):
            self.procs.stop(name)
        # Now, while the API server is reachable: it may listen on the bridge, which goes below.
        self._delete_node_object()
        if self.procs.alive("containerd"):
            self._remove_containers()
        self.procs.stop("containerd")
        _kill_orphan_shims(self.paths.containerd_socket)
        _unmount_under(self.paths.root)
        proxy = versions.bin_dir(node_build.NODE_RECIPE) / "kube-proxy"
        if proxy.exists():
            node_host.run([str(proxy), "--cleanup"], check=False)
        node_host.sweep_cni_rules(network="modelapp", subnet=self.settings.pod_subnet)
        node_host.sweep_node_chains()
        node_host.remove_bridge(self.settings.bridge)
        shutil.rmtree(self.paths.cni_ipam_dir, ignore_errors=True)
        self.procs.stop("registry")
        restored = node_host.restore_host_settings(self._host_settings)
        if restored:
            report(f"host settings put back: {', '.join(restored)}")
        report(f"node {self.settings.name} stopped")

    def _drain(self, timeout: float = 30.0) -> None:
        """Cordon the node and delete its pods, then wait until containerd runs no task (best effort)."""
        try:
            api = ControlPlane.from_state_dir(self.state_dir).api()
            node = api.get(f"/api/v1/nodes/{self.settings.name}")
            if node is None:
                return
            node.setdefault("spec", {})["unschedulable"] = True
            api.request("PUT", f"/api/v1/nodes/{self.settings.name}", node)
            pods = api.get(f"/api/v1/pods?fieldSelector=spec.nodeName%3D{self.settings.name}") or {}
            for pod in pods.get("items", []):
                meta = pod["metadata"]
                api.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}")
        except (ClusterError, OSError):
            return  # no API server: the sweep in `down` cleans up instead
        with contextlib.suppress(ClusterError):  # not drained in time: the sweep in `down` kills what is left
            node_host.wait_for("pods drained", lambda: "RUNNING" not in self._ctr("tasks", "list", check=False).stdout,
                               timeout=timeout)

    def _remove_containers(self) -> None:
        """Kill and delete every container of the k8s.io namespace, and release their network namespaces."""
        listing = self._ctr("containers", "list", "--quiet", check=False).stdout.split()
        netns: set[str] = set()
        for container in listing:
            info = self._ctr("containers", "info", container, check=False).stdout
            netns.update(_network_namespaces(info))
        for container in listing:
            # --force kills a running task before deleting it; containerd waits for the exit itself.
            self._ctr("tasks", "delete", "--force", container, check=False)
            self._ctr("containers", "delete", container, check=False)
        for path in netns:
            node_host.run(["umount", path], check=False)
            Path(path).unlink(missing_ok=True)

    def _delete_node_object(self) -> None:
        try:
            control = ControlPlane.from_state_dir(self.state_dir)
            control.api().request("DELETE", f"/api/v1/nodes/{self.settings.name}")
        except (ClusterError, OSError):
            pass  # no control plane running: nothing to delete

    # ----------------------------------------------------------------------------- status
    def status(self) -> dict[str, bool]:
        """Which parts run (by pid file and command line)."""
        return {name: self.procs.alive(name) for name in PARTS}

    def import_image(self, archive: Path) -> None:
        """Import an OCI/docker image tarball into the node's containerd (what kubelet runs from)."""
        self._ctr("images", "import", str(archive))

    def _ctr(self, *args: str, check: bool = True) -> Any:
        return node_host.run(["ctr", "--address", str(self.paths.containerd_socket), "--namespace", "k8s.io",
                              *args], check=check, timeout=120)


def check_network(settings: NodeSettings) -> None:
    """Before the bridge is made: no other interface may already hold part of the pod subnet."""
    interfaces = node_config.parse_ip_addr(node_host.run(["ip", "-o", "-4", "addr", "show"]).stdout)
    clash = node_config.subnet_conflicts(settings, interfaces)
    if clash:
        raise ClusterError(f"the real node's pod subnet {settings.pod_subnet} overlaps {', '.join(clash)}: pods "
                           "would be unreachable. Remove that network, or run the real node on a machine without it")


def check_host() -> None:
    """Fail with one clear line when a host tool is missing (they come from hack/install-node.sh)."""
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    missing += [f"cni/{plugin}" for plugin in CNI_PLUGINS if not (node_config.CNI_BIN_DIR / plugin).exists()]
    if missing:
        raise ClusterError(f"the real node needs {', '.join(missing)}: run hack/install-node.sh (as root)")
    if os.geteuid() != 0:
        raise ClusterError("the real node needs root (it creates a bridge, iptables rules and containers)")


def _with_cluster_ranges(settings: NodeSettings, control: ControlPlane) -> NodeSettings:
    return dataclasses.replace(settings, service_cidr=control.service_cidr, cluster_cidr=control.pod_cidr)


def _kubeconfig_server(path: Path) -> str | None:
    """The API server a kubeconfig written by `_write_files` names (None when there is none)."""
    try:
        server = yaml.safe_load(path.read_text())["clusters"][0]["cluster"]["server"]
    except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError):
        return None
    return server if isinstance(server, str) else None


def _write_atomically(path: Path, text: str) -> None:
    """containerd watches the CNI folder: it must never see a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _write_yaml(path: Path, document: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback URLs built here)
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _node_ready(api: ApiClient, name: str) -> bool:
    try:
        node = api.get(f"/api/v1/nodes/{name}")
    except OSError:
        return False
    conditions = (node or {}).get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _uncordon(api: ApiClient, name: str) -> None:
    """A Node left cordoned by an interrupted `down` (drain cordons first) takes pods again."""
    node = api.get(f"/api/v1/nodes/{name}")
    if node and node.get("spec", {}).get("unschedulable"):
        node["spec"]["unschedulable"] = False
        api.request("PUT", f"/api/v1/nodes/{name}", node)


def _network_namespaces(info_json: str) -> list[str]:
    """Network namespace paths (bind mounts under /var/run/netns) of a container's OCI spec."""
    try:
        spec = json.loads(info_json).get("Spec", {})
    except ValueError:
        return []
    namespaces = spec.get("linux", {}).get("namespaces", [])
    return [ns["path"] for ns in namespaces if ns.get("type") == "network" and ns.get("path", "").startswith(
        ("/var/run/netns/", "/run/netns/"))]


def _kill_orphan_shims(socket: Path) -> None:
    """containerd-shim-runc-v2 processes started for our socket outlive containerd; end them by pid."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and str(socket).encode() in argv:
            node_host.run(["kill", "-9", proc.name], check=False)


def _unmount_under(root: Path) -> None:
    """Unmount whatever kubelet and containerd left mounted under `root` (deepest first)."""
    prefix = str(root.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for target in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        node_host.run(["umount", "-l", target], check=False)


def _fmt(steps: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.1f}s" for name, seconds in steps.items())


NODE_COMMANDS = ("up", "down", "status", "registry", "build")


def run_command(command: str, state_dir: Path | None) -> int:
    """`modelapp-cluster node up|down|status|registry|build [--state-dir DIR]` (used by hack/ and CI)."""
    from modelapp_devcluster.layout import default_state_dir

    node = RealNode(state_dir or default_state_dir())
    try:
        if command == "up":
            node.up()
        elif command == "down":
            node.down()
        elif command == "registry":
            print(node.start_registry())
        elif command == "build":  # kubelet and kube-proxy only (CI's warm-up; no root needed)
            bins = node_build.ensure_node_binaries(report=print)
            print(f"{bins.kubelet}\n{bins.kube_proxy}")
        else:
            for part, running in node.status().items():
                print(f"{part:12} {'running' if running else 'stopped'}")
    except ClusterError as err:
        print(f"error: {err}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m modelapp_devcluster.node COMMAND`: the same as `modelapp-cluster node COMMAND`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m modelapp_devcluster.node")
    parser.add_argument("command", choices=NODE_COMMANDS)
    parser.add_argument("--state-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    return run_command(args.command, args.state_dir)


if __name__ == "__main__":
    raise SystemExit(main())
