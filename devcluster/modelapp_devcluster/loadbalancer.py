"""LoadBalancer addresses for the local cluster: each such Service gets its own loopback address.

Why loopback: the cluster must never send or accept traffic on any address but this machine's
loopback and its own bridge. kube-proxy (iptables mode) already routes a Service's
`status.loadBalancer.ingress[].ip` to its endpoints, and because its `nodePortAddresses` include
127.0.0.0/8 it sets `route_localnet`, so a connection from the host to a 127.x address can be
DNAT-ed to a pod on the bridge (and masqueraded back). So the allocator only has to write an
address: every LoadBalancer Service gets one address of `POOL` (127.0.10.1-127.0.10.254), and
`curl http://127.0.10.N:<service port>/...` from the host reaches its pods. The operator's
`status.url` is built from that ingress, so it is curl-able from the host as is.

The contract: an address is never given to two Services; a Service keeps its address for its
lifetime (it is read back from the Service's status, there is no other state); Services that are
not of type LoadBalancer, or already have an ingress, are left alone. `plan()` is pure; `run()`
polls the API server once a second and writes with `PUT .../status` (a 409 is retried on the
next pass). It runs as a detached process started by `modelapp-cluster up --real-node`, tracked
like the node's parts (`<state>/node/run/loadbalancer.pid`, log `<state>/node/logs/loadbalancer.log`).
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from modelapp_devcluster import node_host
from modelapp_devcluster.api import ApiClient
from modelapp_devcluster.layout import Layout, RunRecord

NAME = "loadbalancer"
POOL = tuple(str(ipaddress.ip_address("127.0.10.0") + i) for i in range(1, 255))
"""Loopback addresses handed out to LoadBalancer Services, in order."""

Key = tuple[str, str]


def _ingress_ips(service: Mapping[str, Any]) -> list[str]:
    ingress = (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
    return [str(i["ip"]) for i in ingress if i.get("ip")]


def plan(services: Iterable[Mapping[str, Any]], pool: tuple[str, ...] = POOL) -> dict[Key, str]:
    """(namespace, name) -> address for each LoadBalancer Service that has no ingress yet.

    Addresses already in some Service's status are taken; the rest of `pool` is handed out in order
    (oldest Service first, so a re-run gives the same answer). A full pool leaves the rest unassigned.
    """
    items = list(services)
    taken = {ip for svc in items for ip in _ingress_ips(svc)}
    free = [ip for ip in pool if ip not in taken]
    waiting = sorted(
        (svc for svc in items if (svc.get("spec") or {}).get("type") == "LoadBalancer" and not _ingress_ips(svc)),
        key=lambda svc: (svc["metadata"].get("creationTimestamp", ""), svc["metadata"]["namespace"],
                         svc["metadata"]["name"]),
    )
    return {(svc["metadata"]["namespace"], svc["metadata"]["name"]): ip for svc, ip in zip(waiting, free,
                                                                                           strict=False)}


def assign_once(api: ApiClient) -> dict[Key, str]:
    """One pass: list Services, write the planned ingress addresses; returns what was written."""
    listing = api.get("/api/v1/services") or {}
    written: dict[Key, str] = {}
    for (namespace, name), ip in plan(listing.get("items", [])).items():
        path = f"/api/v1/namespaces/{namespace}/services/{name}/status"
        service = api.get(path)
        if service is None or _ingress_ips(service):
            continue
        service.setdefault("status", {})["loadBalancer"] = {"ingress": [{"ip": ip, "ipMode": "VIP"}]}
        if api.request("PUT", path, service).status < 300:  # 409: changed meanwhile, next pass retries
            written[(namespace, name)] = ip
    return written


def run(state_dir: Path, *, interval: float = 1.0) -> None:
    """Assign addresses until killed; API errors are logged and retried on the next pass."""
    layout = Layout(state_dir)
    record = RunRecord.load(layout.state_file)
    if record is None:
        raise SystemExit(f"no cluster in {state_dir}")
    api = ApiClient(record.server, ca=layout.cert("ca"), cert=layout.cert("admin"), key=layout.key("admin"))
    while True:
        try:
            for (namespace, name), ip in assign_once(api).items():
                print(f"{namespace}/{name}: {ip}", flush=True)
        except (OSError, ValueError) as err:
            print(f"pass failed: {err}", flush=True)
        time.sleep(interval)


def processes(state_dir: Path) -> node_host.Processes:
    return node_host.Processes(state_dir / "node")


def start(state_dir: Path) -> int:
    """Start the allocator for the cluster in `state_dir` unless it runs; returns its pid."""
    argv = [sys.executable, "-m", "modelapp_devcluster.loadbalancer", "--state-dir", str(state_dir)]
    return processes(state_dir).start(NAME, argv)


def stop(state_dir: Path) -> None:
    processes(state_dir).stop(NAME)


def running(state_dir: Path) -> bool:
    return processes(state_dir).alive(NAME)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelapp_devcluster.loadbalancer")
    parser.add_argument("--state-dir", type=Path, required=True)
    run(parser.parse_args(argv).state_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
