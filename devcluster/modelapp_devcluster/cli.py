"""`modelapp-cluster up|down|status|kubeconfig`: the embedded local cluster from the command line.

Exit codes: 0 on success (`status`: the cluster is up and healthy), 1 on a failure (one line on
stderr) or, for `status`, when the cluster is not (fully) up. Progress goes to stderr so that
`modelapp-cluster kubeconfig` prints nothing but the path on stdout (`export KUBECONFIG=$(...)`).
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelapp_devcluster import addons, loadbalancer, node, node_host
from modelapp_devcluster.binaries import ensure_binaries
from modelapp_devcluster.errors import ClusterError
from modelapp_devcluster.layout import Ports, Settings
from modelapp_devcluster.local import ClusterStatus, LocalCluster
from modelapp_devcluster.node import RealNode, check_host, check_network
from modelapp_devcluster.node_config import NodeSettings


def _report(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _cluster(args: argparse.Namespace) -> LocalCluster:
    nodes = getattr(args, "nodes", None)
    settings = Settings(ports=Ports(apiserver=getattr(args, "apiserver_port", 0) or 0,
                                    etcd_client=getattr(args, "etcd_port", 0) or 0),
                        kwok_nodes=Settings().kwok_nodes if nodes is None else nodes)
    if getattr(args, "real_node", False):
        # Pods reach the API server through the `kubernetes` Service: it must listen on the bridge.
        node_ip = NodeSettings().node_ip
        settings = Settings(ports=settings.ports, kwok_nodes=settings.kwok_nodes, advertise_address=node_ip,
                            bind_address=node_ip)
    return LocalCluster(args.state_dir, settings, report=_report)


def _real_node_settings(kwok_nodes: int) -> NodeSettings:
    """The real node is dedicated (tainted) only when kwok nodes share the cluster; alone, it takes every pod."""
    return NodeSettings(dedicated=kwok_nodes > 0)


def _guard(func: Any) -> Any:
    """Turn a ClusterError into its one-line message and exit code 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            result: int = func(args)
        except ClusterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return result

    return run


def cmd_up(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    with cluster.exclusive("up --real-node" if args.real_node else "up"):  # a second `up` is refused, naming us
        return _up(cluster, args)


def _up(cluster: LocalCluster, args: argparse.Namespace) -> int:
    """`up` comes up, or stops what it started: the node's ports are checked before the control plane
    starts (another state folder's node holds them), and a node that fails stops the control plane this
    call started."""
    if args.real_node:  # the bridge first: the API server binds to its address
        node_settings = _real_node_settings(cluster.settings.kwok_nodes)
        real = RealNode(cluster.state_dir, node_settings)
        check_host()
        check_network(node_settings)
        made_bridge = node_host.run(["ip", "link", "show", node_settings.bridge], check=False).returncode != 0
        node_host.ensure_bridge(node_settings.bridge, node_settings.node_ip,
                                ipaddress.ip_network(node_settings.pod_subnet).prefixlen)
        try:
            real.check_ports()
        except ClusterError:
            if made_bridge:
                node_host.remove_bridge(node_settings.bridge)
            raise
    started = cluster.up(timeout=args.timeout)
    if args.real_node:  # the real node (modelapp_devcluster.node): pods that really run
        if not cluster.server.startswith(f"https://{node_settings.node_ip}:"):
            _report(f"note: this cluster's API server listens on {cluster.server}, unreachable from pods; "
                    "`modelapp-cluster down` and `up --real-node` again to move it to the bridge")
        try:
            real.up(report=_report, timeout=max(args.timeout, 120.0))
            loadbalancer.start(cluster.state_dir)
        except BaseException:
            if started:
                _report("the real node did not come up: stopping what this `up` started (logs stay in the state dir)")
                real.down(report=_report)
                cluster.down()
            raise
        _report("LoadBalancer addresses: 127.0.10.x from the allocator (docs/local-cluster.md)")
    print(cluster.kubeconfig)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    """Build (or find) every binary the cluster needs, without starting anything: CI's warm-up step."""
    for name, binary in sorted(ensure_binaries(report=_report).items()):
        print(f"{name:<24} {binary.path}")
    if args.addons:
        for name, path in sorted(addons.ensure_addon_binaries(report=_report).items()):
            print(f"{name:<24} {path}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    if not cluster.state_dir.is_dir():
        _report(f"nothing was running (no state folder {cluster.state_dir})")
        return 0
    with cluster.exclusive("down"):
        return _down(cluster)


def _down(cluster: LocalCluster) -> int:
    real = RealNode(cluster.state_dir)
    loadbalancer.stop(cluster.state_dir)
    if any(real.status().values()):  # the real node first, while the API server can still delete its Node
        real.down(report=_report)
    stopped = cluster.down()
    _report(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def format_status(status: ClusterStatus) -> str:
    """Human-readable status: state, where to connect, and one line per component."""
    state = "up" if status.healthy else ("partly running" if status.running else "down")
    lines = [
        f"cluster:    {state}",
        f"state dir:  {status.state_dir}",
        f"kubeconfig: {status.kubeconfig}",
        f"server:     {status.server or '-'}",
        "ports:      " + (", ".join(f"{k}={v}" for k, v in sorted(status.ports.items())) or "-"),
        f"{'COMPONENT':<24} {'PID':>7} {'RSS MiB':>8}  BINARY",
    ]
    for comp in status.components:
        pid = str(comp.pid) if comp.running and comp.pid else "-"
        rss = f"{comp.rss_kib / 1024:.0f}" if comp.running else "-"
        lines.append(f"{comp.name:<24} {pid:>7} {rss:>8}  {comp.binary}")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    status = cluster.status()
    print(format_status(status))
    parts = RealNode(cluster.state_dir).status()
    if any(parts.values()):
        parts["loadbalancer"] = loadbalancer.running(cluster.state_dir)
        print("real node:  " + ", ".join(f"{part} {'running' if up else 'stopped'}" for part, up in parts.items()))
    return 0 if status.healthy else 1


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    if not cluster.kubeconfig.exists():
        raise ClusterError(f"no kubeconfig at {cluster.kubeconfig}: run `modelapp-cluster up` first")
    print(cluster.kubeconfig)
    return 0


def cmd_node(args: argparse.Namespace) -> int:
    return node.run_command(args.node_command, args.state_dir)


def cmd_loadbalancer(args: argparse.Namespace) -> int:
    loadbalancer.run(args.state_dir)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelapp-cluster",
                                     description="A local Kubernetes cluster for the ModelApp operator: etcd, "
                                                 "kube-apiserver, controller-manager, scheduler and kwok on "
                                                 "127.0.0.1, optionally a real node (docs/local-cluster.md).")
    sub = parser.add_subparsers(dest="cluster_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", type=Path, default=None,
                        help="cluster state folder (default: $MODELAPP_CLUSTER_DIR, else "
                             "${XDG_STATE_HOME:-~/.local/state}/modelapp/cluster)")
    up = sub.add_parser("up", parents=[common], help="start the cluster (builds binaries on first use)")
    up.add_argument("--apiserver-port", type=int, default=0, help="kube-apiserver port (default: a free one)")
    up.add_argument("--etcd-port", type=int, default=0, help="etcd client port (default: a free one)")
    up.add_argument("--nodes", type=int, default=None, help="number of kwok nodes (default 4, 300 pods each)")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each readiness step")
    up.add_argument("--real-node", action="store_true",
                    help="also start a real node (containerd, kubelet, kube-proxy, registry on 127.0.0.1:5001; "
                         "needs root and hack/install-node.sh), see docs/local-cluster.md")
    up.set_defaults(func=_guard(cmd_up))
    build = sub.add_parser("build", help="build or find the binaries (etcd, Kubernetes, kwok) without starting them")
    build.add_argument("--addons", action="store_true",
                       help="also the add-ons the real node can run as pods: Traefik (Ingress) and metrics-server")
    build.set_defaults(func=_guard(cmd_build))
    sub.add_parser("down", parents=[common], help="stop every component").set_defaults(func=_guard(cmd_down))
    sub.add_parser("status", parents=[common], help="what runs, where, with which binaries").set_defaults(
        func=_guard(cmd_status))
    sub.add_parser("kubeconfig", parents=[common], help="print the admin kubeconfig path").set_defaults(
        func=_guard(cmd_kubeconfig))
    node_parser = sub.add_parser("node", parents=[common],
                                 help="the real node's parts alone: up, down, status, registry, or build "
                                      "(kubelet and kube-proxy, no root needed)")
    node_parser.add_argument("node_command", choices=node.NODE_COMMANDS)
    node_parser.set_defaults(func=cmd_node)
    lb = sub.add_parser("loadbalancer", help="run the LoadBalancer address allocator in the foreground")
    lb.add_argument("--state-dir", type=Path, required=True)
    lb.set_defaults(func=cmd_loadbalancer)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
