"""Inference throughput and latency: the same model, workers and load generator for every server.

Method: the three servers are started (one model at a time), each checked with one real request
(200 and an OIP answer) and warmed up; then wrk loads one server at a time (never two together:
2 cores) with a fixed number of connections, in interleaved rounds of fixed duration (A B C A B C
A B C), so a change in the shared machine's background load hits every server alike. wrk is closed-loop
(each connection sends its next request when the answer arrives), so requests/s is the capacity at
that concurrency and p50/p99 are the latencies a client saw. Any non-2xx or socket error is
reported and makes the row invalid. The body is one iris row as an OIP v2 JSON request.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.serving.baseline import Baseline
from benchmarks.serving.models import IRIS_ROW, VersionDir
from benchmarks.serving.servers import (
    HERE,
    REPO,
    Server,
    start_granian,
    start_gunicorn,
    start_kserve,
    start_mlserver,
    start_ours,
    start_thin,
)
from benchmarks.serving.split import connection_split, session_cpu_seconds, session_threads, worker_counts


@dataclass(frozen=True)
class LoadSettings:
    connections: int = 16
    threads: int = 1
    warmup_seconds: int = 3
    seconds: int = 5  # per round
    rounds: int = 3
    workers: int = 2


@dataclass(frozen=True)
class LoadResult:
    server: str
    model: str
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    requests: int
    errors: int
    best_round_rps: float = 0.0
    median_round_rps: float = 0.0


def request_body(model: VersionDir) -> bytes:
    row = IRIS_ROW if model.features == len(IRIS_ROW) else [0.5] * model.features
    tensor = {"name": model.input_name, "shape": [1, model.features], "datatype": "FP32", "data": row}
    return json.dumps({"inputs": [tensor]}).encode()


def check_answer(server: Server, body: bytes) -> dict[str, Any]:
    """One request before the load: it must answer 200 with an OIP response (asserted)."""
    request = urllib.request.Request(  # noqa: S310 - our own loopback URL
        f"{server.url}/v2/models/iris/infer", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - our own loopback URL
        assert answer.status == 200, answer.status
        payload: dict[str, Any] = json.loads(answer.read())
    assert payload["outputs"], payload
    return payload


def run_wrk(
    url: str,
    body_file: Path,
    *,
    seconds: int,
    settings: LoadSettings,
    sample: Callable[[], list[int]] | None = None,
    cpu: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """wrk against `url` for `seconds`; the Lua script's RESULT line, parsed.

    `sample`, when given, is called three times while the connections are open and its fullest
    answer kept as `split`: the connections each worker holds (then the server's thread count). The
    machine's 1-minute load average at the start is kept as `load1`; `cpu`, when given, reads the
    server's CPU seconds so far, and the difference over the round is kept as `cpu_seconds`. wrk is
    killed if it overruns the round by a minute.
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    command = [
        wrk,
        f"-t{settings.threads}",
        f"-c{settings.connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(HERE / "wrk_report.lua"),
        url,
    ]
    load1 = os.getloadavg()[0]
    cpu_before = cpu() if cpu is not None else 0.0
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "BENCH_BODY_FILE": str(body_file)},
    ) as process:
        split: list[int] = []
        if sample is not None:  # three looks (a quarter, half, three quarters in); the fullest is kept
            for _ in range(3):
                time.sleep(seconds / 4)
                look = sample()
                if sum(look[:-1]) >= sum(split[:-1]):
                    split = look
        try:
            stdout, stderr = process.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    cpu_seconds = cpu() - cpu_before if cpu is not None else 0.0
    if process.returncode:
        raise RuntimeError(f"wrk exited {process.returncode}: {stderr}")
    match = re.search(r"^RESULT (\{.*\})$", stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no result: {stdout} {stderr}")
    result: dict[str, Any] = json.loads(match.group(1))
    result["load1"] = load1
    result["split"] = split
    result["cpu_seconds"] = cpu_seconds
    return result


def run_floor(model: VersionDir, body_file: Path, *, seconds: int) -> dict[str, Any]:
    """The model call with no HTTP (`floor.py`), one process: its RESULT line, with `load1`."""
    command = [sys.executable, "-m", "benchmarks.serving.floor", "--model-dir", str(model.path)]
    command += ["--sha256", model.digest, "--body-file", str(body_file), "--seconds", str(seconds)]
    load1 = os.getloadavg()[0]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120, check=True, cwd=REPO)
    match = re.search(r"^RESULT (\{.*\})$", done.stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"the floor printed no result: {done.stdout} {done.stderr}")
    result: dict[str, Any] = json.loads(match.group(1))
    result["load1"] = load1
    return result


def to_result(server: str, model: str, raw: dict[str, Any]) -> LoadResult:
    seconds = raw["duration_us"] / 1e6
    return LoadResult(
        server=server,
        model=model,
        requests_per_second=raw["requests"] / seconds,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        mean_ms=raw["mean_us"] / 1000,
        requests=raw["requests"],
        errors=raw["status_errors"] + raw["socket_errors"] + raw["timeouts"],
    )


def prepare(server: Server, model: VersionDir, *, settings: LoadSettings, scratch: Path) -> tuple[str, Path]:
    """Wait for readiness, check one answer, warm up; the URL and body file for the measured rounds."""
    body = request_body(model)
    body_file = scratch / f"body-{model.input_name}.json"
    body_file.write_bytes(body)
    server.wait_ready()
    check_answer(server, body)
    url = f"{server.url}/v2/models/iris/infer"
    run_wrk(url, body_file, seconds=settings.warmup_seconds, settings=settings)
    return url, body_file


def combine(server: str, model: str, rounds: list[dict[str, Any]]) -> LoadResult:
    """Rounds into one row: requests/s over all rounds; each latency figure is the median round's."""

    def median(key: str) -> float:
        return float(statistics.median(raw[key] for raw in rounds))

    total = {
        "requests": sum(raw["requests"] for raw in rounds),
        "duration_us": sum(raw["duration_us"] for raw in rounds),
        "status_errors": sum(raw["status_errors"] for raw in rounds),
        "socket_errors": sum(raw["socket_errors"] for raw in rounds),
        "timeouts": sum(raw["timeouts"] for raw in rounds),
        "p50_us": median("p50_us"),
        "p90_us": median("p90_us"),
        "p99_us": median("p99_us"),
        "mean_us": median("mean_us"),
    }
    per_round = sorted(raw["requests"] / (raw["duration_us"] / 1e6) for raw in rounds)
    result = to_result(server, model, total)
    return replace(result, best_round_rps=per_round[-1], median_round_rps=float(statistics.median(per_round)))


Starter = Callable[[VersionDir, str, int, Path], Server]


def starters(
    baseline: Baseline | None = None, also: Sequence[Baseline] = (), threads: Sequence[int] = ()
) -> dict[str, Starter]:
    """Each server under test: how to start it on a model of a given format (`ours-before`: `baseline`,
    `ours@REV`: each of `also`, `ours-tN`: the current tree with N threads per worker; all measured in
    the same rounds)."""
    found: dict[str, Starter] = {
        "ours": lambda model, fmt, workers, logs: start_ours(model, workers=workers, logs=logs, tag=fmt),
        "kserve": lambda model, fmt, workers, logs: start_kserve(
            model, model_format=fmt, workers=workers, logs=logs, tag=fmt
        ),
        "mlserver": lambda model, fmt, workers, logs: start_mlserver(
            model, model_format=fmt, workers=workers, logs=logs, tag=fmt
        ),
        "thin": lambda model, fmt, workers, logs: start_thin(model, workers=workers, logs=logs, tag=fmt),
        "granian": lambda model, fmt, workers, logs: start_granian(model, workers=workers, logs=logs, tag=fmt),
        "gevent": lambda model, fmt, workers, logs: start_gunicorn(
            model, worker_class="gevent", workers=workers, logs=logs, tag=fmt
        ),
    }
    if baseline is not None:
        found["ours-before"] = lambda model, fmt, workers, logs: start_ours(
            model, workers=workers, logs=logs, tag=fmt, baseline=baseline
        )
    for extra in also:
        found[f"ours@{extra.rev}"] = partial(_start_revision, extra)
    for count in threads:
        found[f"ours-t{count}"] = partial(_start_threads, count)
    return found


def _start_threads(count: int, model: VersionDir, fmt: str, workers: int, logs: Path) -> Server:
    return start_ours(model, workers=workers, logs=logs, tag=fmt, extra_env={"MODELAPP_THREADS": str(count)})


def _start_revision(revision: Baseline, model: VersionDir, fmt: str, workers: int, logs: Path) -> Server:
    return start_ours(model, workers=workers, logs=logs, tag=fmt, baseline=revision)


FLOOR = "floor"  # not a server: the model call with no HTTP, one process (`floor.py`)
DEFAULT_SERVERS = ("ours", "kserve", "mlserver", "thin", FLOOR)  # granian, gevent: on request (--servers)


def run_inference(
    models: dict[str, VersionDir],
    *,
    settings: LoadSettings,
    scratch: Path,
    only: list[str] | None = None,
    baseline: Baseline | None = None,
    also: Sequence[Baseline] = (),
    threads: Sequence[int] = (),
) -> tuple[list[LoadResult], list[dict[str, Any]], list[dict[str, Any]]]:
    """Per model: start every server, then measure them in interleaved rounds; also the servers left
    out (one that does not start or answer is reported and the others are measured).

    Why rounds: the machine is shared, and its load changes within minutes; measuring A for 15 s
    and then B for 15 s would give A and B different machines. Short rounds in turn (A B C A B C...)
    spread any change in background load over all servers. Idle servers use no CPU meanwhile. The
    floor (no HTTP) takes its turn in the same rounds. Every round is also kept on its own (the
    goal is judged per round), with the load average at its start and the connections per worker.
    """
    results: list[LoadResult] = []
    per_round: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for model_format, model in models.items():
        table = starters(baseline, also, threads)
        wanted = only or [*DEFAULT_SERVERS, *(name for name in table if name.startswith("ours-") or "@" in name)]
        names = [name for name in table if name in wanted]
        floor = FLOOR in wanted
        servers: dict[str, Server] = {}
        targets: dict[str, tuple[str, Path]] = {}
        try:
            for name in names:  # one at a time: ten servers importing their stacks at once starve each other
                try:
                    servers[name] = table[name](model, model_format, settings.workers, scratch / "logs")
                    targets[name] = prepare(servers[name], model, settings=settings, scratch=scratch)
                except (RuntimeError, OSError, AssertionError, subprocess.SubprocessError) as exc:
                    print(f"  {model_format:8} {name:9} left out: it did not start and answer: {exc}", flush=True)
                    failed.append({"server": name, "model": model_format, "reason": str(exc)[-1500:]})
            names = list(targets)
            body_file = scratch / f"body-{model.input_name}.json"
            body_file.write_bytes(request_body(model))
            rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in [*names, *([FLOOR] if floor else [])]}
            for index in range(settings.rounds):
                for name, (url, body) in targets.items():
                    server = servers[name]
                    sample = partial(_split, server, settings.workers)
                    cpu = partial(session_cpu_seconds, server.session)
                    raw = run_wrk(url, body, seconds=settings.seconds, settings=settings, sample=sample, cpu=cpu)
                    rounds[name].append(raw)
                    per_round.append(_round_row(name, model_format, index, raw))
                if floor:
                    raw = run_floor(model, body_file, seconds=settings.seconds)
                    rounds[FLOOR].append(raw)
                    per_round.append(_floor_row(model_format, index, raw))
        finally:
            for server in servers.values():
                server.stop()
        for name in names:
            result = combine(name, model_format, rounds[name])
            print(
                f"  {model_format:8} {name:9} {result.requests_per_second:8.0f} req/s  "
                f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  errors {result.errors}  "
                f"conns per worker {' '.join(_slashed(raw['split'][:-1]) for raw in rounds[name])}",
                flush=True,
            )
            results.append(result)
        if floor:
            calls = sum(raw["calls"] for raw in rounds[FLOOR]) / sum(raw["seconds"] for raw in rounds[FLOOR])
            print(f"  {model_format:8} {FLOOR:9} {calls:8.0f} calls/s, one process, no HTTP", flush=True)
    return results, per_round, failed


def _split(server: Server, workers: int) -> list[int]:
    """The connections each worker holds, and last, the threads of all the server's processes."""
    return [*worker_counts(connection_split(server.port, server.session), workers), session_threads(server.session)]


def _slashed(split: list[int]) -> str:
    return "/".join(str(count) for count in split) or "-"


def _round_row(name: str, model: str, index: int, raw: dict[str, Any]) -> dict[str, Any]:
    result = to_result(name, model, raw)
    return {
        "server": name,
        "model": model,
        "round": index + 1,
        "load1": raw["load1"],
        "requests_per_second": result.requests_per_second,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "errors": result.errors,
        "split": raw["split"][:-1],
        "threads": raw["split"][-1] if raw["split"] else 0,
        "cpu_seconds": raw.get("cpu_seconds", 0.0),
        "requests": raw["requests"],
    }


def _floor_row(model: str, index: int, raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "server": FLOOR,
        "model": model,
        "round": index + 1,
        "load1": raw["load1"],
        "requests_per_second": raw["calls"] / raw["seconds"],
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": 0,
        "split": [],
        "cpu_seconds": raw["cpu_seconds"],
        "requests": raw["calls"],
    }


def as_rows(results: list[LoadResult]) -> list[dict[str, Any]]:
    return [asdict(result) for result in results]
