"""`python -m benchmarks.operator`: the operator beside a no-operator baseline, in one run on a cluster of its own.

Phases (each bounded; the whole run is cut at --max-minutes):
1. create -> Deployment and Service applied, --samples per side, interleaved (baseline, operator, ...);
2. --apps ModelApps created at once -> all Ready, with the operator's peak RSS (VmHWM, and sampled VmRSS);
3. idle CPU of the operator over --idle seconds with those objects in place;
4. spec bump -> Deployment template updated, --samples per side, interleaved, with the --apps objects present;
5. the same burst for the baseline (create + apply, then all Deployments available): the control plane's floor.
Prints a Markdown table (figures for benchmarks/README.md) and writes JSON when --json is given.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from benchmarks.operator import scenarios
from benchmarks.operator.measure import Proc, RssSampler, cpu_share, percentile, request_mix
from kubernetes import client, config
from tests.fixtures.net import free_port
from tests.fixtures.private_cluster import install_crds

from modelapp_devcluster import LocalCluster
from modelapp_devcluster.layout import Settings
from modelapp_operator import kube

WARMUP = 3


def log(message: str) -> None:
    print(f"[opbench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.operator", description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=1000, help="ModelApps created at once (default 1000)")
    parser.add_argument("--samples", type=int, default=40, help="latency samples per side (default 40)")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU measurement (default 60)")
    parser.add_argument("--max-minutes", type=float, default=15.0, help="stop the run after this long")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--operator-env", action="append", default=[], help="KEY=VALUE for the operator (repeatable)")
    return parser.parse_args(argv)


def api_client(kubeconfig: Path) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = 32
    return client.ApiClient(configuration)


def start_operator(
    cluster: LocalCluster, namespaces: list[str], workdir: Path, extra_env: list[str]
) -> tuple[subprocess.Popen[bytes], int]:
    """`modelapp run` on the benchmark namespaces; returns once its liveness endpoint answers."""
    port = free_port()
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "MODELAPP_SERVING_IMAGE": scenarios.CTX.serving_image}
    env |= dict(item.split("=", 1) for item in extra_env)
    args = [sys.executable, "-m", "modelapp_operator.cli", "run", *[f"--namespace={ns}" for ns in namespaces],
            f"--liveness=http://127.0.0.1:{port}/healthz"]  # fmt: skip
    with (workdir / "operator.log").open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the operator exited: see {workdir / 'operator.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return process, port
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the operator's liveness endpoint did not answer within 120 s")


def metrics_text(api: client.ApiClient) -> str:
    """The API server's own Prometheus metrics (GET /metrics with the admin credentials)."""
    response = api.call_api(*api.param_serialize("GET", "/metrics", header_params={"Accept": "text/plain"},
                                                 auth_settings=["BearerToken"]))  # fmt: skip
    response.read()
    return bytes(response.data).decode()


def summary(values: list[float]) -> dict[str, float]:
    kept = values[WARMUP:] if len(values) > WARMUP * 2 else values
    return {"n": len(kept), "p50_ms": percentile(kept, 0.5) * 1000, "p95_ms": percentile(kept, 0.95) * 1000,
            "mean_ms": statistics.fmean(kept) * 1000}  # fmt: skip


def interleaved(sides: list[scenarios.Side], samples: int, measure: Any) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {side.name: [] for side in sides}
    for index in range(samples):
        for side in sides:
            found[side.name].append(measure(side, index))
    return found


def run(cluster: LocalCluster, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
    kube.api_client.cache_clear()
    install_crds(cluster)
    api = api_client(cluster.kubeconfig)
    run_id = uuid.uuid4().hex[:6]
    ns = {key: f"bench-{key}-{run_id}" for key in ("op", "base", "op-burst", "base-burst")}
    for name in ns.values():
        client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    operator, _ = start_operator(cluster, [ns["op"], ns["op-burst"]], workdir, args.operator_env)
    proc = Proc(operator.pid)
    results: dict[str, Any] = {"apps": args.apps, "samples": args.samples}
    sides = [scenarios.Side("baseline", ns["base"], api, True), scenarios.Side("operator", ns["op"], api, False)]
    try:
        log(f"phase 1: create latency, {args.samples} samples per side")
        create = interleaved(sides, args.samples, lambda side, i: scenarios.create_latency(side, f"lat-{i:03d}"))
        results["create"] = {name: summary(values) for name, values in create.items()}
        log(f"  {results['create']}")

        log(f"phase 2: {args.apps} ModelApps at once (operator)")
        with RssSampler(proc) as sampler:
            burst = scenarios.burst(api, ns["op-burst"], args.apps, baseline=False, timeout=300,
                                    on_tick=lambda n: log(f"  {n} Ready"))  # fmt: skip
        results["burst_operator"] = {"total_s": burst.total_s, "created_s": burst.created_s, "ready": burst.done,
                                     "peak_rss_mib": max(proc.peak_rss_mib(), sampler.peak)}  # fmt: skip
        log(f"  {results['burst_operator']}")
        results["apiserver_after_burst"] = request_mix(metrics_text(api))
        log(f"  API server, most time: {results['apiserver_after_burst'][:4]}")

        log(f"phase 3: idle CPU over {args.idle:.0f} s (after 10 s to settle)")
        time.sleep(10)
        before, t0 = proc.ticks(), time.monotonic()
        time.sleep(args.idle)
        results["idle"] = {"cpu_percent": 100 * cpu_share(before, proc.ticks(), time.monotonic() - t0),
                           "seconds": args.idle, "rss_mib": proc.rss_mib()}  # fmt: skip
        log(f"  {results['idle']}")

        log(f"phase 4: bump latency, {args.samples} samples per side, {args.apps} objects present")
        bump = interleaved(sides, args.samples, lambda side, i: scenarios.bump_latency(side, f"lat-{i:03d}", "2"))
        results["bump"] = {name: summary(values) for name, values in bump.items()}
        log(f"  {results['bump']}")
        results["peak_rss_mib"] = proc.peak_rss_mib()

        log(f"phase 5: {args.apps} ModelApps at once (baseline: create + apply, all Deployments available)")
        floor = scenarios.burst(api, ns["base-burst"], args.apps, baseline=True, timeout=300,
                                on_tick=lambda n: log(f"  {n} available"))  # fmt: skip
        results["burst_baseline"] = {"total_s": floor.total_s, "created_s": floor.created_s, "ready": floor.done}
        log(f"  {results['burst_baseline']}")
    finally:
        for side in sides:
            side.stop()
        operator.terminate()
        operator.wait(30)
        text = (workdir / "operator.log").read_text(errors="replace")
        results["operator_log"] = {"tracebacks": text.count("Traceback"), "errors": text.count("[ERROR")}
        for name in ns.values():
            client.CoreV1Api(api).delete_namespace(name)
    return results


def table(r: dict[str, Any]) -> str:
    """The figures as a Markdown table: measure, operator, baseline, goal."""
    c, b, op, floor = r["create"], r["bump"], r["burst_operator"], r["burst_baseline"]

    def ms(side: dict[str, Any], key: str) -> str:
        return f"{side[key]:.0f} ms"

    idle = r["idle"]
    rows = [
        ("create -> Deployment+Service applied, p50", ms(c["operator"], "p50_ms"), ms(c["baseline"], "p50_ms"), ""),
        ("create -> Deployment+Service applied, p95", ms(c["operator"], "p95_ms"), ms(c["baseline"], "p95_ms"),
         f"<= 1.5x baseline ({1.5 * c['baseline']['p95_ms']:.0f} ms)"),
        (f"{r['apps']} ModelApps at once -> all Ready", f"{op['total_s']:.1f} s ({op['ready']} Ready)",
         f"{floor['total_s']:.1f} s (all Deployments available)", "<= 60 s"),
        ("operator peak RSS (VmHWM)", f"{r['peak_rss_mib']:.0f} MiB", "-", "<= 250 MB"),
        (f"idle CPU, {r['apps']} objects, {idle['seconds']:.0f} s", f"{idle['cpu_percent']:.2f} % of a core", "-",
         "< 2 %"),
        ("spec bump -> Deployment template updated, p50", ms(b["operator"], "p50_ms"), ms(b["baseline"], "p50_ms"), ""),
        ("spec bump -> Deployment template updated, p95", ms(b["operator"], "p95_ms"), ms(b["baseline"], "p95_ms"),
         "<= 500 ms"),
    ]  # fmt: skip
    lines = ["| measure | operator | baseline | goal |", "|---|---|---|---|"]
    return "\n".join(lines + [f"| {' | '.join(row)} |" for row in rows])


class OutOfTime(Exception):
    """The run hit --max-minutes; cleanup still runs."""


def _out_of_time(*_: object) -> None:
    raise OutOfTime("the run hit --max-minutes")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.alarm(int(args.max_minutes * 60))
    with tempfile.TemporaryDirectory(prefix="opbench-") as scratch:
        workdir = Path(scratch)
        # Room for both bursts and the samples: 4 kwok nodes x 700 pods.
        cluster = LocalCluster(workdir / "cluster", Settings(node_pods=700), report=log)
        cluster.up()
        try:
            results = run(cluster, args, workdir)
        finally:
            cluster.down()
    results["wall_s"] = time.monotonic() - started
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwhole run {results['wall_s']:.0f} s; operator log: {results['operator_log']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
