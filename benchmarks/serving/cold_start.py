"""Cold start: process started -> `GET /v2/health/ready` answers 200, for a 100 MB ONNX model.

Method: the model is already on local disk (what `fetch` leaves), the page cache is warm after the
first start (the first of `repeats` starts is reported too). Readiness is polled every 10 ms from
the moment `Popen` returns, so the figure is process start-up + imports + model load + the first
ready answer. Same worker count as the inference benchmark; KServe and MLServer start from the same
file with the same runtimes as there, for comparison.
"""

from __future__ import annotations

import statistics
import time
import urllib.error
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.serving.baseline import Baseline
from benchmarks.serving.inference import check_answer, request_body, starters
from benchmarks.serving.models import VersionDir
from benchmarks.serving.servers import Server


@dataclass(frozen=True)
class ColdStart:
    server: str
    model_mib: float
    seconds: list[float]
    median_seconds: float
    answering_seconds: list[float]
    median_answering_seconds: float


def until_answering(server: Server, body: bytes, streak: int = 10, deadline_seconds: float = 120) -> float:
    """Seconds since start until `streak` inferences in a row (fresh connections) answer 200.

    Why: readiness may be answered by one worker while another is still loading; this is when
    any request the pod gets is served.
    """
    deadline = time.monotonic() + deadline_seconds
    good = 0
    while good < streak:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name}: inferences still failing after {deadline_seconds}s")
        try:
            check_answer(server, body)
            good += 1
        except urllib.error.HTTPError as exc:
            if exc.code != 503:
                raise
            good = 0
            time.sleep(0.01)
    return time.monotonic() - server.started


def run_cold_start(
    model: VersionDir,
    *,
    workers: int,
    scratch: Path,
    repeats: int = 3,
    only: list[str] | None = None,
    baseline: Baseline | None = None,
) -> list[ColdStart]:
    """Each server started `repeats` times, interleaved (A B C A B C...), so background load hits all alike."""
    size = model.entry.stat().st_size / (1 << 20)
    table = {name: start for name, start in starters(baseline).items() if not only or name in only}
    seconds: dict[str, list[float]] = {name: [] for name in table}
    answering: dict[str, list[float]] = {name: [] for name in table}
    for _ in range(repeats):
        for name, start in table.items():
            server = start(model, "onnx", workers, scratch / "logs-cold")
            try:
                seconds[name].append(server.wait_ready(deadline_seconds=180))
                answering[name].append(until_answering(server, request_body(model)))
            finally:
                server.stop()
    results: list[ColdStart] = []
    for name in table:
        runs, answers = seconds[name], answering[name]
        result = ColdStart(name, size, runs, statistics.median(runs), answers, statistics.median(answers))
        print(
            f"  cold start {name:12} ready {result.median_seconds:5.2f} s  answering "
            f"{result.median_answering_seconds:5.2f} s  runs {[round(s, 2) for s in runs]}",
            flush=True,
        )
        results.append(result)
    return results


def as_rows(results: list[ColdStart]) -> list[dict[str, Any]]:
    return [asdict(result) for result in results]
