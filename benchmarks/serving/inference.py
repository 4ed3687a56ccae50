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
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.serving.baseline import Baseline
from benchmarks.serving.models import IRIS_ROW, VersionDir
from benchmarks.serving.servers import HERE, Server, start_kserve, start_mlserver, start_ours


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


def run_wrk(url: str, body_file: Path, *, seconds: int, settings: LoadSettings) -> dict[str, Any]:
    """wrk against `url` for `seconds`; the Lua script's RESULT line, parsed."""
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
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
        env={**os.environ, "BENCH_BODY_FILE": str(body_file)},
    )
    match = re.search(r"^RESULT (\{.*\})$", done.stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no result: {done.stdout} {done.stderr}")
    result: dict[str, Any] = json.loads(match.group(1))
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


def starters(baseline: Baseline | None = None, also: Sequence[Baseline] = ()) -> dict[str, Starter]:
    """Each server under test: how to start it on a model of a given format (`ours-before`: `baseline`,
    `ours@REV`: each of `also`, more revisions measured in the same rounds)."""
    found: dict[str, Starter] = {
        "ours": lambda model, fmt, workers, logs: start_ours(model, workers=workers, logs=logs, tag=fmt),
        "kserve": lambda model, fmt, workers, logs: start_kserve(
            model, model_format=fmt, workers=workers, logs=logs, tag=fmt
        ),
        "mlserver": lambda model, fmt, workers, logs: start_mlserver(
            model, model_format=fmt, workers=workers, logs=logs, tag=fmt
        ),
    }
    if baseline is not None:
        found["ours-before"] = lambda model, fmt, workers, logs: start_ours(
            model, workers=workers, logs=logs, tag=fmt, baseline=baseline
        )
    for extra in also:
        found[f"ours@{extra.rev}"] = partial(_start_revision, extra)
    return found


def _start_revision(revision: Baseline, model: VersionDir, fmt: str, workers: int, logs: Path) -> Server:
    return start_ours(model, workers=workers, logs=logs, tag=fmt, baseline=revision)


def run_inference(
    models: dict[str, VersionDir],
    *,
    settings: LoadSettings,
    scratch: Path,
    only: list[str] | None = None,
    baseline: Baseline | None = None,
    also: Sequence[Baseline] = (),
) -> list[LoadResult]:
    """Per model: start every server, then measure them in interleaved rounds.

    Why rounds: the machine is shared, and its load changes within minutes; measuring A for 15 s
    and then B for 15 s would give A and B different machines. Short rounds in turn (A B C A B C...)
    spread any change in background load over all servers. Idle servers use no CPU meanwhile.
    """
    results: list[LoadResult] = []
    for model_format, model in models.items():
        table = starters(baseline, also)
        names = [name for name in table if not only or name in only]
        servers = {name: table[name](model, model_format, settings.workers, scratch / "logs") for name in names}
        try:
            targets = {
                name: prepare(server, model, settings=settings, scratch=scratch) for name, server in servers.items()
            }
            rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
            for _ in range(settings.rounds):
                for name, (url, body_file) in targets.items():
                    rounds[name].append(run_wrk(url, body_file, seconds=settings.seconds, settings=settings))
        finally:
            for server in servers.values():
                server.stop()
        for name in names:
            result = combine(name, model_format, rounds[name])
            print(
                f"  {model_format:8} {name:9} {result.requests_per_second:8.0f} req/s  "
                f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  errors {result.errors}",
                flush=True,
            )
            results.append(result)
    return results


def as_rows(results: list[LoadResult]) -> list[dict[str, Any]]:
    return [asdict(result) for result in results]
