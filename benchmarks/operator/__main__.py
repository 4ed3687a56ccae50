"""`python -m benchmarks.operator`: the operator beside a no-operator baseline, in one run on a cluster of its own.

Phases (each bounded; the whole run is cut at --max-minutes):
1. create -> Deployment and Service applied, --samples per side, interleaved (baseline, operator, ...);
then for each fleet size of --apps (e.g. 300,1000) and each operator shape of --shards (e.g. 1,2: one replica, then
two shards), with fresh operator processes:
2. N ModelApps created at once -> all Ready, with the operator's peak RSS (VmHWM, and sampled VmRSS) and the
   API server's own request counts for the burst (`apiserver_request_duration_seconds`, before/after);
3. idle CPU of the operator over --idle seconds with those objects in place;
4. spec bump -> Deployment template updated, --samples per side, interleaved, with the N objects present;
5. the operator burst's namespaces deleted (waited for), then the same burst for the baseline (create + apply,
   then all Deployments available) on the cluster the operator's burst started on, its request counts too;
6. the baseline burst's namespaces deleted (waited for), so the next size starts from the same empty cluster (not
   after the last size: the cluster goes down).
With --baseline-first, phase 5's burst comes first instead: the baseline's burst and its namespaces deleted, then
phases 2-4 (the order alternated between runs shows what the order itself costs). One difference besides the
order: in the default order the operator processes and the latency phase's watches are up (idle: none of them
watches the baseline's namespaces) during the baseline's burst; baseline first, they start after it.
Load average is read beside every figure. Prints Markdown tables and writes JSON when --json is given.

Shards (`--shards N`, N > 1): `--shard-by label` runs N `modelapp run --shard sK` processes on the same namespaces,
apps labelled round-robin (kopf filters labels on the client: every process receives every event);
`--shard-by namespace` splits each burst over N namespaces (app i in namespace i mod N, on both sides) and runs
N processes each watching only its own namespace, with a peering of its own (the API server splits the streams;
the chart's `operator.shards[].namespaces`). The latency namespace belongs to the first process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from benchmarks.operator import measure, scenarios
from benchmarks.operator.measure import Proc, RssSampler, cpu_share, delta, percentile, request_stats, side_by_side
from benchmarks.operator.report import table
from kubernetes import client, config
from tests.fixtures.net import free_port
from tests.fixtures.private_cluster import install_crds

from modelapp_devcluster import LocalCluster
from modelapp_devcluster.layout import Settings
from modelapp_operator import kube

WARMUP = 3
#: With --pin: the CPUs the operator and this benchmark run on (the control plane gets CPU 0 alone); empty: no pinning.
CLIENT_CPUS: set[int] = set()


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` onto `cpus` (threads made later inherit it from their maker)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cpus)


def pin_cluster(cluster: LocalCluster) -> dict[str, object]:
    """--pin: the control plane's processes on CPU 0; this process (and so the operators it starts) on the rest."""
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2 or 0 not in cpus:
        raise SystemExit(f"--pin needs CPU 0 and one more; this process may use {sorted(cpus)}")
    CLIENT_CPUS.update(cpus - {0})
    for component in cluster.status().components:
        if component.pid:
            pin(component.pid, {0})
    pin(os.getpid(), CLIENT_CPUS)
    return {"control_plane": [0], "operator_and_benchmark": sorted(CLIENT_CPUS)}
#: Pods per kwok node; the cluster gets enough nodes for both bursts of the largest size and the samples.
NODE_PODS = 1000


def log(message: str) -> None:
    print(f"[opbench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load() -> float:
    """The machine's 1-minute load average, read beside every figure (2 shared cores)."""
    return round(os.getloadavg()[0], 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.operator", description=__doc__.splitlines()[0])
    parser.add_argument("--apps", default="1000", help="fleet sizes, comma separated (default 1000; e.g. 300,1000)")
    parser.add_argument("--samples", type=int, default=40, help="latency samples per side (default 40)")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU measurement (default 60)")
    parser.add_argument("--settle", type=float, default=300.0,
                        help="before the idle measurement, wait up to this long for the operator to be quiet: the "
                             "events a burst left queued are handled (default 300)")
    parser.add_argument("--shards", default="1",
                        help="operator processes, one shard each; comma separated to compare in one run (e.g. 1,2)")
    parser.add_argument("--shard-by", choices=("label", "namespace"), default="label",
                        help="how shards split the fleet (default label; see the module docstring)")
    parser.add_argument("--baseline-first", action="store_true",
                        help="run each size's baseline burst before the operator's (default after), to alternate "
                             "the order between runs")
    parser.add_argument("--burst-timeout", type=float, default=600.0, help="give up on a burst after this long")
    parser.add_argument("--max-minutes", type=float, default=30.0, help="stop the run after this long")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--operator-env", action="append", default=[], help="KEY=VALUE for the operator (repeatable)")
    parser.add_argument("--pin", action="store_true",
                        help="the control plane on CPU 0, the operator and this benchmark (the baseline's client) on "
                        "the others: the operator's CPU off the API server's cores, as on a node of its own")
    parser.add_argument("--apiserver-profile", type=Path,
                        help="fetch a Go CPU profile of the API server over the first --apiserver-seconds of each "
                        "burst into this folder (`go tool pprof -top FILE` reads it)")
    parser.add_argument("--apiserver-seconds", type=int, default=20, help="length of that profile (default 20)")
    parser.add_argument("--trace-memory", type=Path,
                        help="run each operator with tracemalloc (8 frames) and write into this folder what it has "
                        "allocated before its burst, at the burst's end and after the idle phase, and what grew, by "
                        "line and call stack (tracemem/sitecustomize.py; slows the operator: a diagnostic)")
    parser.add_argument("--profile", type=Path, help="py-spy record each operator process during its burst into "
                        "this folder (collapsed stacks, `profile.py` summarises them; needs py-spy on PATH)")
    args = parser.parse_args(argv)
    args.sizes = [int(n) for n in str(args.apps).split(",") if n.strip()]
    args.shard_counts = [int(n) for n in str(args.shards).split(",") if n.strip()]
    return args


def api_client(kubeconfig: Path) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = 32
    return client.ApiClient(configuration)


class Operators:
    """The operator under test: `modelapp run` subprocesses, one per shard, started at once; returns once every
    liveness endpoint answers. `namespaces`: one list per process. With `labels`, process K runs `--shard sK`
    (s0 also takes unlabelled ModelApps); else each process is a namespace shard with a peering of its own."""

    def __init__(self, cluster: LocalCluster, namespaces: list[list[str]], *, workdir: Path, extra_env: list[str],
                 labels: bool, tag: str, trace_memory: Path | None = None) -> None:  # fmt: skip
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
               "MODELAPP_SERVING_IMAGE": scenarios.CTX.serving_image}  # fmt: skip
        env |= dict(item.split("=", 1) for item in extra_env)
        self.tracing = trace_memory is not None
        if trace_memory is not None:
            trace_memory.mkdir(parents=True, exist_ok=True)
            env |= {"PYTHONTRACEMALLOC": "8", "MODELAPP_TRACE_DIR": str(trace_memory.resolve()),
                    "PYTHONPATH": os.pathsep.join([str(TRACEMEM), *filter(None, [env.get("PYTHONPATH")])])}
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        ports = []
        for shard, watched in enumerate(namespaces):
            port = free_port()
            args = [sys.executable, "-m", "modelapp_operator.cli", "run", *[f"--namespace={ns}" for ns in watched],
                    f"--liveness=http://127.0.0.1:{port}/healthz"]  # fmt: skip
            if len(namespaces) > 1 and labels:
                args += [f"--shard=s{shard}", *(["--shard-default"] if shard == 0 else [])]
            elif len(namespaces) > 1:
                args += [f"--peering=modelapp-ns{shard}"]
            path = workdir / f"operator-{tag}-{shard}.log"
            with path.open("wb") as out:
                # With --pin this process runs on CLIENT_CPUS, and the operator inherits them.
                self.processes.append(subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env))
            self.logs.append(path)
            ports.append(port)
        for process, port, path in zip(self.processes, ports, self.logs, strict=True):
            _wait_live(process, port, path)
        self.procs = [Proc(p.pid) for p in self.processes]

    def ticks(self) -> int:
        return sum(p.ticks() for p in self.procs)

    def trace_memory(self) -> None:
        """Ask each operator for its tracemalloc figures (--trace-memory; a no-op without it)."""
        for process in self.processes if self.tracing else []:
            if process.poll() is None:
                process.send_signal(signal.SIGUSR1)

    def burst_begins(self) -> list[RssSampler]:
        """RSS samplers started on every process (and, with --trace-memory, the figures compared with later)."""
        self.trace_memory()
        samplers = [RssSampler(p) for p in self.procs]
        for sampler in samplers:
            sampler.__enter__()
        return samplers

    def burst_ends(self, samplers: list[RssSampler]) -> None:
        for sampler in samplers:
            sampler.__exit__()
        self.trace_memory()

    def peak_rss_mib(self) -> list[float]:
        return [round(p.peak_rss_mib(), 1) for p in self.procs]

    def stop(self) -> dict[str, Any]:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                log(f"operator {process.pid} did not stop within 30 s of SIGTERM: killed")
                process.kill()
                process.wait(30)
        return log_findings(self.logs, KEPT_LOGS)


#: Where the operator logs of a run that logged an error or a traceback are kept (the run's folder is deleted).
KEPT_LOGS = Path(tempfile.gettempdir()) / "opbench-logs"
#: The folder whose sitecustomize.py `--trace-memory` puts first on the operator's PYTHONPATH.
TRACEMEM = Path(__file__).with_name("tracemem")


def log_findings(logs: list[Path], keep: Path) -> dict[str, Any]:
    """Tracebacks and ERROR lines in the operator's logs; logs with any are copied into `keep` (and named)."""
    found: dict[str, Any] = {"tracebacks": 0, "errors": 0}
    for path in logs:
        text = path.read_text(errors="replace")
        tracebacks, errors = text.count("Traceback"), text.count("[ERROR")
        found["tracebacks"] += tracebacks
        found["errors"] += errors
        if tracebacks or errors:
            keep.mkdir(parents=True, exist_ok=True)
            target = keep / f"{time.strftime('%Y%m%d-%H%M%S')}-{path.name}"
            target.write_text(text)
            found.setdefault("kept", []).append(str(target))
            log(f"{path.name}: {tracebacks} tracebacks, {errors} errors; kept in {target}")
    return found


#: The window over which the operator counts as quiet (under 1 % of a core) once a burst is over.
QUIET_WINDOW_S = 5.0


def wait_quiet(operators: Operators, *, limit: float) -> float | None:
    """Seconds until the operators used under 1 % of a core over `QUIET_WINDOW_S`; None if not within `limit`."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        before, t0 = operators.ticks(), time.monotonic()
        time.sleep(QUIET_WINDOW_S)
        if cpu_share(before, operators.ticks(), time.monotonic() - t0) < 0.01:
            return round(time.monotonic() - start, 1)
    return None


def _wait_live(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the operator exited: see {log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
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
            "mean_ms": statistics.fmean(kept) * 1000, "load": load()}  # fmt: skip


def interleaved(sides: list[scenarios.Side], samples: int, measure: Any) -> dict[str, list[float]]:
    """A sample that times out (a loaded machine) counts as its timeout and is logged; the run goes on."""
    found: dict[str, list[float]] = {side.name: [] for side in sides}
    for index in range(samples):
        for side in sides:
            t0 = time.monotonic()
            try:
                found[side.name].append(measure(side, index))
            except TimeoutError as exc:
                log(f"  sample {index} of {side.name} timed out, counted as {time.monotonic() - t0:.0f} s: {exc}")
                found[side.name].append(time.monotonic() - t0)
    return found


def delete_namespaces(api: client.ApiClient, names: list[str], *, timeout: float = 600) -> float:
    """Delete and wait until they are gone (the garbage collector's work must not overlap the next size)."""
    core, t0 = client.CoreV1Api(api), time.monotonic()
    for name in names:
        core.delete_namespace(name)
    left = set(names)
    while time.monotonic() - t0 < timeout:
        left = {ns.metadata.name for ns in core.list_namespace().items} & set(names)
        if not left:
            break
        time.sleep(2)
    if left:
        raise TimeoutError(f"namespaces {sorted(left)} still there {timeout:.0f} s after their deletion: what runs "
                           "next would share the cluster with them (raise --burst-timeout)")  # fmt: skip
    return time.monotonic() - t0


def profile_start(folder: Path, operators: Operators, tag: str) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """`py-spy record` attached to each operator process (collapsed stacks, 100 samples/s, idle frames left out)."""
    folder.mkdir(parents=True, exist_ok=True)
    started = []
    for number, process in enumerate(operators.processes):
        out = folder / f"operator-{tag}-{number}.txt"
        spy = subprocess.Popen(["py-spy", "record", "--pid", str(process.pid), "--rate", "100", "--format", "raw",
                                "--nonblocking", "--threads", "-o", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        started.append((spy, out))
    time.sleep(1)  # attached before the first create
    return started


def profile_stop(profilers: list[tuple[subprocess.Popen[bytes], Path]]) -> list[str]:
    """Stop the recorders (SIGINT: py-spy writes its file then) and return the files' paths."""
    for spy, _ in profilers:
        spy.send_signal(signal.SIGINT)
    for spy, _ in profilers:
        spy.wait(60)
    return [str(out) for _, out in profilers]


def cpu_ticks(procs: dict[str, Proc]) -> dict[str, int]:
    """CPU ticks so far of each named process (one that is gone counts 0)."""
    found = {}
    for name, proc in procs.items():
        try:
            found[name] = proc.ticks()
        except OSError:
            found[name] = 0
    return found


def apiserver_profile(api: client.ApiClient, target: Path, seconds: int) -> None:
    """GET /debug/pprof/profile?seconds=N from the API server (admin credentials; the cluster runs with
    profiling on for this) and write it to `target`."""
    try:
        response = api.call_api(*api.param_serialize("GET", "/debug/pprof/profile", query_params=[("seconds", seconds)],
                                                     auth_settings=["BearerToken"]),
                                _request_timeout=seconds + 30)  # fmt: skip
        response.read()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(bytes(response.data))
        log(f"  API server profile: {target}")
    except Exception as exc:  # the figures do not depend on it: say why it is missing and go on
        log(f"  no API server profile ({type(exc).__name__}: {exc})")


def events_by_reason(api: client.ApiClient, namespaces: list[str]) -> dict[str, int]:
    """Events in the burst's namespaces, counted by "component reason" (who posted what)."""
    found: dict[str, int] = {}
    for namespace in namespaces:
        for event in client.CoreV1Api(api).list_namespaced_event(namespace).items:
            who = event.reporting_component or (event.source.component if event.source else "") or "?"
            key = f"{who} {event.reason}"
            found[key] = found.get(key, 0) + (event.count or 1)
    return dict(sorted(found.items(), key=lambda item: -item[1]))


def machine_procs(cluster: LocalCluster, operators: Operators | None) -> dict[str, Proc]:
    """The processes that share the machine's cores in a burst: the control plane's, this benchmark (the
    baseline's client side), and the operator's."""
    procs = {c.name: Proc(c.pid) for c in cluster.status().components if c.pid}
    procs["benchmark"] = Proc(os.getpid())
    for number, proc in enumerate(operators.procs if operators else []):
        procs[f"operator-{number}"] = proc
    return procs


def burst_phase(api: client.ApiClient, namespaces: list[str], count: int, *, baseline: bool, args: argparse.Namespace,
                labels: scenarios.Labels,
                procs: dict[str, Proc]) -> tuple[scenarios.Burst, list[dict[str, object]], dict[str, float]]:
    """The burst, the API server's request counts over it, and the CPU seconds each process spent in it."""
    what = "available" if baseline else "Ready"
    pprof = None
    if args.apiserver_profile:
        target = args.apiserver_profile / f"apiserver-{'baseline' if baseline else 'operator'}-{count}.pprof"
        pprof = threading.Thread(target=apiserver_profile, args=(api, target, args.apiserver_seconds), daemon=True)
        pprof.start()
    before, ticks = request_stats(metrics_text(api)), cpu_ticks(procs)
    done = scenarios.burst(api, namespaces, count, baseline=baseline, timeout=args.burst_timeout, labels=labels,
                           on_tick=lambda n: log(f"  {n} {what} (load {load()})"))  # fmt: skip
    after = cpu_ticks(procs)
    done.events = events_by_reason(api, namespaces)
    cpu = {name: round((after[name] - ticks[name]) / measure.CLOCK_TICKS, 1) for name in procs}
    if pprof is not None:
        pprof.join(args.apiserver_seconds + 30)
    return done, delta(before, request_stats(metrics_text(api)), per=count), cpu


def baseline_burst(cluster: LocalCluster, api: client.ApiClient, namespaces: list[str], size: int, *,
                   args: argparse.Namespace, labels: scenarios.Labels) -> dict[str, Any]:
    """Phase 5: the baseline's burst and its requests."""
    log(f"[{size}] phase 5: {size} ModelApps at once (baseline: create + apply, all Deployments available)")
    load_before = load()
    floor, requests, cpu = burst_phase(api, namespaces, size, baseline=True, args=args, labels=labels,
                                       procs=machine_procs(cluster, None))  # fmt: skip
    found = {"burst_baseline": {"total_s": floor.total_s, "created_s": floor.created_s, "ready": floor.done,
                                "load_before": load_before, "load_after": load(),
                                "milestones": floor.milestones(), "cpu_s": cpu, "events": floor.events},
             "requests_baseline": requests}  # fmt: skip
    log(f"  {found['burst_baseline']}")
    return found


def operator_burst(cluster: LocalCluster, api: client.ApiClient, operators: Operators, namespaces: list[str],
                   size: int, *, args: argparse.Namespace, labels: scenarios.Labels, tag: str) -> dict[str, Any]:
    """Phase 2: the operator's burst, its requests and the operators' memory over it."""
    profilers = profile_start(args.profile, operators, tag) if args.profile else []
    samplers = operators.burst_begins()
    load_before = load()
    burst, requests, cpu = burst_phase(api, namespaces, size, baseline=False, args=args, labels=labels,
                                       procs=machine_procs(cluster, operators))  # fmt: skip
    operators.burst_ends(samplers)
    found = {"profiles": profile_stop(profilers),
             "burst_operator": {"total_s": burst.total_s, "created_s": burst.created_s, "ready": burst.done,
                                "load_before": load_before, "load_after": load(),
                                "peak_rss_mib": operators.peak_rss_mib(),
                                "sampled_rss_mib": [round(s.peak, 1) for s in samplers],
                                "milestones": burst.milestones(), "cpu_s": cpu, "events": burst.events},
             "requests_operator": requests}  # fmt: skip
    log(f"  {found['burst_operator']}")
    log(f"  requests: {requests[:8]}")
    return found


def fleet(cluster: LocalCluster, api: client.ApiClient, args: argparse.Namespace, *, workdir: Path, run_id: str,
          size: int, shards: int, lat: dict[str, str], last: bool) -> dict[str, Any]:  # fmt: skip
    """Phases 2-6 for one fleet size and operator shape (6 only when another follows: the cluster goes down
    after the last)."""
    by_ns = args.shard_by == "namespace" and shards > 1
    parts = shards if by_ns else 1
    ns = {key: [f"bench-{key}-{size}x{shards}-{run_id}-{k}" for k in range(parts)] for key in ("op", "base")}
    core = client.CoreV1Api(api)
    for name in [*ns["op"], *ns["base"]]:
        core.create_namespace({"metadata": {"name": name}})
    labels = scenarios.shard_labels(1 if by_ns else shards)
    found: dict[str, Any] = {"apps": size, "shards": shards, "shard_by": args.shard_by if shards > 1 else None,
                             "baseline_first": args.baseline_first}  # fmt: skip
    cleared: set[str] = set()
    if args.baseline_first:
        # Before the operator starts: the baseline's burst on the cluster the latency phase left, then its
        # namespaces deleted (waited for), so the operator's burst starts on the same cluster.
        found |= baseline_burst(cluster, api, ns["base"], size, args=args, labels=labels)
        log(f"[{size}] phase 5: deleting the baseline burst's namespaces (the operator starts on the same cluster)")
        found["baseline_cleared_s"] = round(delete_namespaces(api, ns["base"], timeout=args.burst_timeout), 1)
        cleared = set(ns["base"])
    watched = ([[lat["op"], *ns["op"]]] * shards if not by_ns else
               [[lat["op"], ns["op"][0]], *[[n] for n in ns["op"][1:]]])  # fmt: skip
    operators = Operators(cluster, watched, workdir=workdir, extra_env=args.operator_env, labels=not by_ns,
                          tag=f"{size}x{shards}", trace_memory=args.trace_memory)  # fmt: skip
    sides = [scenarios.Side("baseline", lat["base"], api, True, labels),
             scenarios.Side("operator", lat["op"], api, False, labels)]  # fmt: skip
    try:
        log(f"[{size}] phase 2: {size} ModelApps at once (operator, {shards} shard(s), by {args.shard_by})")
        found |= operator_burst(cluster, api, operators, ns["op"], size, args=args, labels=labels,
                                tag=f"{size}x{shards}")  # fmt: skip

        log(f"[{size}] phase 3: idle CPU over {args.idle:.0f} s, once the operator is quiet (under 1 % of a core "
            f"over {QUIET_WINDOW_S:.0f} s; at most {args.settle:.0f} s after the burst)")
        found["quiet_after_s"] = wait_quiet(operators, limit=args.settle)
        log(f"  quiet {found['quiet_after_s']} s after the burst")
        before, t0 = operators.ticks(), time.monotonic()
        time.sleep(args.idle)
        found["idle"] = {"cpu_percent": round(100 * cpu_share(before, operators.ticks(), time.monotonic() - t0), 3),
                         "seconds": args.idle, "rss_mib": [round(p.rss_mib(), 1) for p in operators.procs],
                         "load": load()}  # fmt: skip
        operators.trace_memory()
        log(f"  {found['idle']}")

        log(f"[{size}] phase 4: bump latency, {args.samples} samples per side, {size} objects present")
        version = str(size)
        bump = interleaved(sides, args.samples,
                           lambda side, i: scenarios.bump_latency(side, f"lat-{i:03d}", version))  # fmt: skip
        found["bump"] = {name: summary(values) for name, values in bump.items()}
        found["peak_rss_mib"] = operators.peak_rss_mib()
        log(f"  {found['bump']}")

        if not args.baseline_first:
            # The baseline's burst starts on the cluster the operator's burst started on: without the operator's
            # N apps and their pods (at 5,000 they made kwok and the controller-manager the baseline's bottleneck).
            log(f"[{size}] phase 5: deleting the operator burst's namespaces (the baseline starts on the same "
                f"cluster)")
            found["operator_cleared_s"] = round(delete_namespaces(api, ns["op"], timeout=args.burst_timeout), 1)
            cleared |= set(ns["op"])
            found |= baseline_burst(cluster, api, ns["base"], size, args=args, labels=labels)
        found["requests_side_by_side"] = side_by_side(found["requests_operator"], found["requests_baseline"])
    finally:
        for side in sides:
            side.stop()
        found["operator_log"] = operators.stop()
        if not last:
            log(f"[{size}] phase 6: deleting the bursts' namespaces")
            left = [n for n in [*ns["op"], *ns["base"]] if n not in cleared]
            found["cleanup_s"] = round(delete_namespaces(api, left, timeout=args.burst_timeout), 1)
    return found


def run(cluster: LocalCluster, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
    kube.api_client.cache_clear()
    install_crds(cluster)
    api = api_client(cluster.kubeconfig)
    run_id = uuid.uuid4().hex[:6]
    lat = {key: f"bench-{key}-{run_id}" for key in ("op", "base")}
    for name in lat.values():
        client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    results: dict[str, Any] = {"sizes": args.sizes, "samples": args.samples, "shards": args.shard_counts,
                               "shard_by": args.shard_by, "control_plane": control_plane(cluster),
                               "fleets": []}  # fmt: skip
    # Phase 1 with the first shape of --shards (a namespace shard other than the first would watch nothing here).
    first = args.shard_counts[0] if args.shard_by == "label" else 1
    labels = scenarios.shard_labels(first)
    operators = Operators(cluster, [[lat["op"]]] * first, workdir=workdir, extra_env=args.operator_env, labels=True,
                          tag="latency")  # fmt: skip
    sides = [scenarios.Side("baseline", lat["base"], api, True, labels),
             scenarios.Side("operator", lat["op"], api, False, labels)]  # fmt: skip
    try:
        log(f"phase 1: create latency, {args.samples} samples per side")
        create = interleaved(sides, args.samples,
                             lambda side, i: scenarios.create_latency(side, f"lat-{i:03d}", i))  # fmt: skip
        results["create"] = {name: summary(values) for name, values in create.items()}
        log(f"  {results['create']}")
    finally:
        for side in sides:
            side.stop()
        results["operator_log_latency"] = operators.stop()
    try:
        shapes = [(size, shards) for size in args.sizes for shards in args.shard_counts]
        for number, (size, shards) in enumerate(shapes, start=1):
            results["fleets"].append(fleet(cluster, api, args, workdir=workdir, run_id=run_id, size=size,
                                           shards=shards, lat=lat, last=number == len(shapes)))  # fmt: skip
    except BaseException as exc:  # keep what was measured (out of time, a burst that failed): print it
        results["stopped"] = f"{type(exc).__name__}: {exc}"
        log(f"stopped: {results['stopped']}")
    return results


def control_plane(cluster: LocalCluster) -> dict[str, Any]:
    """The cluster's settings that bound the figures (recorded with them)."""
    from modelapp_devcluster import components

    flags = ("--max-requests-inflight", "--max-mutating-requests-inflight", "--kube-api-qps", "--kube-api-burst",
             "--concurrent-deployment-syncs", "--concurrent-replicaset-syncs")  # fmt: skip
    source = Path(components.__file__).read_text()
    found = sorted({line.strip().strip('",') for line in source.splitlines()
                    if any(line.strip().startswith(f'"{flag}=') for flag in flags)})  # fmt: skip
    return {"kwok_nodes": cluster.settings.kwok_nodes, "node_pods": cluster.settings.node_pods, "flags": found}


class OutOfTime(Exception):
    """The run hit --max-minutes; cleanup still runs."""


def _ending() -> None:
    """The run is ending: a second signal (`timeout` and `pkill -f` both send SIGTERM) must not cut the cleanup
    short, which once left the API server, controller-manager and scheduler running."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.alarm(0)


def _out_of_time(*_: object) -> None:
    _ending()
    raise OutOfTime("the run hit --max-minutes")


class Terminated(Exception):
    """SIGTERM: the operator processes and the cluster are still stopped (nothing the run started outlives it)."""


def _terminated(*_: object) -> None:
    _ending()
    raise Terminated("the run was sent SIGTERM")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.signal(signal.SIGTERM, _terminated)
    signal.alarm(int(args.max_minutes * 60))
    pods = 2 * max(args.sizes) + 4 * args.samples
    with tempfile.TemporaryDirectory(prefix="opbench-") as scratch:
        workdir = Path(scratch)
        settings = Settings(kwok_nodes=max(2, math.ceil(pods / NODE_PODS) + 1), node_pods=NODE_PODS,
                            profiling=args.apiserver_profile is not None)  # fmt: skip
        cluster = LocalCluster(workdir / "cluster", settings, report=log)
        cluster.up()
        try:
            pinned = pin_cluster(cluster) if args.pin else None
            results = run(cluster, args, workdir)
            results["pinned"] = pinned
        finally:
            cluster.down()
    results["wall_s"] = time.monotonic() - started
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwhole run {results['wall_s']:.0f} s; control plane: {results['control_plane']}; "
          f"CPUs: {results.get('pinned') or 'shared by all'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
