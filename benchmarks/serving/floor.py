"""The floor without HTTP: the same model call as a request makes, in a loop, in one process.

    .venv/bin/python -m benchmarks.serving.floor --model-dir DIR --sha256 HEX --body-file F --seconds 5

What is called: `DataPlane.infer("iris", body)`, exactly what `POST /v2/models/iris/infer` runs after
HTTP (JSON decode, tensor checks, the model's `predict`, JSON encode), with the same model folder,
pin and onnxruntime settings as `serve`. One process, one thread: calls per second per core. The
model is loaded and called once before the clock starts. Prints one line `RESULT {json}` with
`calls`, `seconds`, `cpu_seconds` (this process's CPU time meanwhile) and the latency percentiles
of single calls (microseconds).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from modelapp_serving.dataplane import DataPlane
from modelapp_serving.models import resolve_model


def dataplane_for(model_dir: Path, *, name: str, sha256: str | None) -> DataPlane:
    """A loaded dataplane of `model_dir`, as a serving worker has it (no metrics, no readiness)."""
    model, info = resolve_model(model_dir, name=name, pinned_sha256=sha256, model_class=None)
    dataplane = DataPlane(model, info)
    dataplane.load()
    if dataplane.load_error:
        raise SystemExit(dataplane.load_error)
    return dataplane


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--sha256")
    parser.add_argument("--name", default="iris")
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    dataplane = dataplane_for(args.model_dir, name=args.name, sha256=args.sha256)
    body = args.body_file.read_bytes()
    dataplane.infer(args.name, body)
    latencies: list[float] = []
    clock = time.perf_counter
    cpu_started = time.process_time()
    started = clock()
    deadline = started + args.seconds
    now = started
    while now < deadline:
        before = now
        dataplane.infer(args.name, body)
        now = clock()
        latencies.append(now - before)
    elapsed = now - started
    latencies.sort()

    def percentile(share: float) -> float:
        return latencies[min(len(latencies) - 1, int(share * len(latencies)))] * 1e6

    result = {
        "calls": len(latencies),
        "seconds": elapsed,
        "cpu_seconds": time.process_time() - cpu_started,
        "p50_us": percentile(0.50),
        "p99_us": percentile(0.99),
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
