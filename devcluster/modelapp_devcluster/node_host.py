"""The host side of the real node: kernel settings, the pod bridge, and detached processes.

Why the bridge is made here and not left to the CNI plugin: kubelet needs a node IP before the
first pod exists, it refuses a loopback one, and the node's servers (kubelet, NodePorts) must
bind only to addresses of this machine. So the bridge `modelapp0` is created up front with the
pod subnet's first address; the bridge CNI plugin then reuses it for every pod.

Processes run detached (own session), log to a file, and are tracked by pid files whose
command line is checked before any signal, so a recycled pid is never killed by mistake.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from modelapp_devcluster.errors import ClusterError

SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
}


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a short host command; on failure raise `ClusterError` with its stderr."""
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise ClusterError(f"`{' '.join(argv)}` failed: {(result.stderr or result.stdout).strip()[-400:]}")
    return result


def ensure_sysctls() -> None:
    """IP forwarding on, and bridged traffic through iptables (kube-proxy's Service rules need both)."""
    if not Path("/proc/sys/net/bridge").exists():
        run(["modprobe", "br_netfilter"])
    for key, value in SYSCTLS.items():
        path = Path("/proc/sys") / key
        if path.read_text().strip() != value:
            path.write_text(value)


HOST_SETTINGS = (
    "vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
    "net/ipv4/conf/all/route_localnet",
)
"""Host-wide settings the node changes while it runs, which `down` puts back: kubelet writes the first six
(its kernel tunables: overcommit 1, panic 10, panic_on_oops 1, ...) since `protectKernelDefaults: true`
would only refuse to start on a machine that has other values; kube-proxy sets `route_localnet` for its
NodePorts on 127.0.0.1. kubelet runs in the host's own mount namespace (pod volumes must reach containerd),
so the kind node's way, files bound over /proc/sys in the node, is not open here."""


def save_host_settings(record: Path, *, sysctl: Path = Path("/proc/sys")) -> None:
    """Keep HOST_SETTINGS' values in `record`, unless it holds them already: an earlier `up` whose `down`
    has not run (a killed run) kept the values the machine had before any node ran."""
    if record.exists():
        return
    values = {key: (sysctl / key).read_text().strip() for key in HOST_SETTINGS if (sysctl / key).exists()}
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps(values, indent=1) + "\n")
    tmp.replace(record)


def restore_host_settings(record: Path, *, sysctl: Path = Path("/proc/sys")) -> list[str]:
    """Write back what `save_host_settings` kept and forget it; returns "key now -> kept" for each change."""
    try:
        values = json.loads(record.read_text())
    except (OSError, ValueError):
        return []
    changed = []
    for key, value in values.items():
        path = sysctl / key
        with contextlib.suppress(OSError):
            now = path.read_text().strip()
            if now != value:
                path.write_text(value)
                changed.append(f"{key.replace('/', '.')} {now} -> {value}")
    record.unlink(missing_ok=True)
    return changed


def ensure_bridge(name: str, address: str, prefix: int) -> None:
    """A Linux bridge `name` holding `address/prefix`, up; idempotent."""
    if run(["ip", "link", "show", name], check=False).returncode != 0:
        run(["ip", "link", "add", name, "type", "bridge"])
    run(["ip", "addr", "replace", f"{address}/{prefix}", "dev", name])
    run(["ip", "link", "set", name, "up"])


def remove_bridge(name: str) -> None:
    """Delete the bridge if it exists (its pods' veths are gone once their sandboxes are)."""
    if run(["ip", "link", "show", name], check=False).returncode == 0:
        run(["ip", "link", "delete", name], check=False)


PER_POD_CHAIN = re.compile(r"^CNI-[0-9a-f]{24}$")
"""The bridge plugin's per-pod masquerade chain: `CNI-` and 24 hex digits of a hash of network and container."""


def sweep_cni_rules(*, network: str, subnet: str) -> None:
    """Delete iptables rules the CNI plugins left for pods of `network` whose teardown never ran.

    The bridge plugin's masquerade rules carry the comment `name: "<network>" id: ...` and jump to
    per-pod `CNI-<hash>` chains; the firewall plugin's accept rules in CNI-FORWARD name the pod IP.
    """
    net = ipaddress.ip_network(subnet)
    for table in ("nat", "filter"):
        rules = run(["iptables", "-t", table, "-S"], check=False).stdout.splitlines()
        chains: set[str] = set()
        for rule in rules:
            words = shlex.split(rule)
            if words[:1] != ["-A"]:
                continue
            masquerade = any(word.startswith(f'name: "{network}" id: ') for word in words)
            ours = masquerade or (words[1] == "CNI-FORWARD" and _names_pod(words, net))
            if ours:
                run(["iptables", "-t", table, "-D", *words[1:]], check=False)
                target = words[words.index("-j") + 1] if "-j" in words else ""
                chains.update(c for c in (words[1], target) if PER_POD_CHAIN.match(c))
        for chain in chains:
            run(["iptables", "-t", table, "-F", chain], check=False)
            run(["iptables", "-t", table, "-X", chain], check=False)
        # A teardown cut between "drop the jump" and "drop the chain" leaves an empty, unreferenced
        # per-pod chain with nothing naming our network in it: -X removes exactly those (it refuses
        # a chain that still has rules or references, so a live pod's chain is never touched).
        for rule in rules:
            words = shlex.split(rule)
            if words[:1] == ["-N"] and PER_POD_CHAIN.match(words[1]) and words[1] not in chains:
                run(["iptables", "-t", table, "-X", words[1]], check=False)


NODE_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT", "CNI-FORWARD", "CNI-ADMIN")
"""Chains the node leaves behind: kubelet's (`KUBE-FIREWALL`, `KUBE-KUBELET-CANARY`, `KUBE-IPTABLES-HINT`; `kube-proxy
--cleanup` does not touch them) and the CNI firewall plugin's (`CNI-FORWARD`, `CNI-ADMIN`)."""


def sweep_node_chains() -> None:
    """Delete the jumps to NODE_CHAINS from any chain, then the chains themselves (every table, IPv4 and IPv6).

    Only for `down`, when this machine's one real node has stopped: nothing else creates these chains.
    """
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            rules = run([tool, "-t", table, "-S"], check=False).stdout.splitlines()
            for rule in rules:
                words = shlex.split(rule)
                if words[:1] == ["-A"] and "-j" in words and words[words.index("-j") + 1] in NODE_CHAINS:
                    run([tool, "-t", table, "-D", *words[1:]], check=False)
            present = {shlex.split(rule)[1] for rule in rules if rule.startswith("-N ")}
            for step in ("-F", "-X"):
                for chain in (c for c in NODE_CHAINS if c in present):
                    run([tool, "-t", table, step, chain], check=False)


def _names_pod(words: list[str], net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    for flag in ("-s", "-d"):
        if flag in words:
            address = words[words.index(flag) + 1].split("/")[0]
            with contextlib.suppress(ValueError):
                if ipaddress.ip_address(address) in net:
                    return True
    return False


def wait_for(what: str, probe: Callable[[], bool], *, timeout: float, log: Path | None = None,
             alive: Callable[[], bool] | None = None, interval: float = 0.25) -> float:
    """Poll `probe` until true; return the seconds waited. Fail fast if `alive` says the process died."""
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if probe():
            return time.monotonic() - started
        if alive is not None and not alive():
            raise ClusterError(f"{what}: the process exited; {_log_tail(log)}")
        time.sleep(interval)
    raise ClusterError(f"{what}: not ready after {timeout:.0f}s; {_log_tail(log)}")


def _log_tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return "no log"
    lines = log.read_text(errors="replace").strip().splitlines()[-3:]
    return f"log {log}: " + " | ".join(line[-300:] for line in lines)


class Processes:
    """Detached processes of the node, one pid file and one log per name, under `root`."""

    def __init__(self, root: Path) -> None:
        self.run_dir = root / "run"
        self.logs_dir = root / "logs"

    def log(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def pid(self, name: str) -> int | None:
        """The pid of `name` if it runs and is still the program we started, else None."""
        try:
            pid_text, marker = (self.run_dir / f"{name}.pid").read_text().split("\n", 1)
            cmdline = Path(f"/proc/{int(pid_text)}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return int(pid_text) if cmdline.split(b"\0", 1)[0].decode(errors="replace") == marker.strip() else None

    def alive(self, name: str) -> bool:
        pid = self.pid(name)
        if pid is None:
            return False
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"

    def start(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None) -> int:
        """Start `argv` detached unless `name` already runs; return its pid."""
        running = self.pid(name)
        if running is not None and self.alive(name):
            return running
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        with self.log(name).open("ab") as out:
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=env)
        (self.run_dir / f"{name}.pid").write_text(f"{proc.pid}\n{argv[0]}\n")
        # Until the child has exec'd, its command line is still ours: wait for it, so that `alive`
        # never mistakes a process that is starting for one that has gone.
        wait_for(f"starting {name}", lambda: self.pid(name) is not None or proc.poll() is not None, timeout=10.0,
                 interval=0.01)
        return proc.pid

    def stop(self, name: str, *, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; forget the pid file."""
        pid = self.pid(name)
        if pid is not None:
            _signal(pid, signal.SIGTERM)
            try:
                wait_for(f"stopping {name}", lambda: not self.alive(name), timeout=timeout)
            except ClusterError:
                _signal(pid, signal.SIGKILL)
                wait_for(f"killing {name}", lambda: not self.alive(name), timeout=10.0)
        (self.run_dir / f"{name}.pid").unlink(missing_ok=True)


def _signal(pid: int, signo: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signo)
