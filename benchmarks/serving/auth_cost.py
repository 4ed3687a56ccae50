"""What bearer-token authentication (a ModelApp's `spec.auth`) costs an inference call.

    .venv/bin/python -m benchmarks.serving.auth_cost [--rounds 5] [--seconds 5] [--connections 16]

Method, as `inference.py`: the same `modelapp-serving serve` (2 workers, the iris ONNX version) started twice,
without and with `MODELAPP_AUTH_TOKEN` + `MODELAPP_AUTH_SMOKE_SHA256` (what the operator's pod template
gives it); wrk (closed loop, one iris row as OIP v2 JSON) loads one server at a time in interleaved rounds
(off on off on ...), so the shared machine's background load hits both alike; the `auth` rows send
`Authorization: Bearer <token>`. A third row, `auth, no token`, measures the 401 path (what an attacker
without the token costs). Every answer of the first two rows must be a 200, of the third a 401.
Prints a Markdown table (median of the rounds) for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.serving.models import IRIS_ROW, iris_versions
from benchmarks.serving.servers import HERE, Server, start_ours

TOKEN = "bench-token-0123456789abcdef"  # noqa: S105 (a benchmark's token)


def wrk(url: str, body: Path, *, seconds: int, connections: int, token: str | None) -> dict[str, Any]:
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    header = ["-H", f"Authorization: Bearer {token}"] if token else []
    command = [binary, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s",
               str(HERE / "wrk_report.lua"), *header, url]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True,
                          env={**os.environ, "BENCH_BODY_FILE": str(body)})  # fmt: skip
    match = re.search(r"^RESULT (\{.*\})$", done.stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no result: {done.stdout} {done.stderr}")
    result: dict[str, Any] = json.loads(match.group(1))
    result["load1"] = os.getloadavg()[0]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-auth-"))
    model = iris_versions(root)["onnx"]
    body = root / "body.json"
    body.write_text(json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": IRIS_ROW}]}))
    smoke = hashlib.sha256(b"another accepted token").hexdigest()
    servers: dict[str, Server] = {
        "off": start_ours(model, workers=2, logs=root / "logs", tag="off"),
        "auth": start_ours(model, workers=2, logs=root / "logs", tag="auth",
                           extra_env={"MODELAPP_AUTH_TOKEN": TOKEN, "MODELAPP_AUTH_SMOKE_SHA256": smoke}),
    }  # fmt: skip
    rows = {"no auth": ("off", None, "200"), "auth, right token": ("auth", TOKEN, "200"),
            "auth, no token (401)": ("auth", None, "401")}  # fmt: skip
    results: dict[str, list[dict[str, Any]]] = {row: [] for row in rows}
    try:
        for server in servers.values():
            server.wait_ready()
        for server, token, _ in rows.values():  # warm-up
            wrk(servers[server].url + "/v2/models/iris/infer", body, seconds=2, connections=args.connections,
                token=token)  # fmt: skip
        for _ in range(args.rounds):
            for row, (server, token, _) in rows.items():
                results[row].append(wrk(servers[server].url + "/v2/models/iris/infer", body, seconds=args.seconds,
                                        connections=args.connections, token=token))  # fmt: skip
    finally:
        for server in servers.values():
            server.stop()
    print(f"| {args.connections} connections, 2 workers, {args.rounds} x {args.seconds} s | requests/s | p50 ms | "
          "p99 ms | non-2xx | load1 |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for row, (_, _, expected) in rows.items():
        runs = results[row]
        rps = statistics.median(r["requests"] / (r["duration_us"] / 1e6) for r in runs)
        p50 = statistics.median(r["p50_us"] for r in runs) / 1000
        p99 = statistics.median(r["p99_us"] for r in runs) / 1000
        non_2xx = sum(r["status_errors"] for r in runs)
        errors = sum(r["socket_errors"] + r["timeouts"] for r in runs)
        load = statistics.median(r["load1"] for r in runs)
        print(f"| {row} (expect {expected}) | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {non_2xx} (+{errors} socket) | "
              f"{load:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
