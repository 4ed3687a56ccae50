"""The serving benchmarks of issue 3 in one run: inference, fetch, cold start.

    hack/bench-serving.sh                # or: .venv/bin/python -m benchmarks.serving.run
    .venv/bin/python -m benchmarks.serving.run --only inference --seconds 10
    hack/bench-serving.sh --baseline 09de185        # adds `ours-before` rows: that revision of serving/
    hack/bench-serving.sh --only inference --servers ours --baseline af021d5 --also 7262238   # + `ours@7262238`
    hack/bench-serving.sh --only inference --baseline 0176ccd   # issue 13: rivals, floor, thin server, before/after

Raw results go to `benchmarks/results/serving-<UTC time>.json` (gitignored); the tables are printed
as Markdown, ready for benchmarks/README.md. The competitors' virtualenvs are created on first use
under ~/.cache/modelapp/bench (a few minutes once). About 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.serving import cold_start, fetch_bench, inference
from benchmarks.serving.baseline import export
from benchmarks.serving.models import big_onnx_version, iris_versions
from benchmarks.serving.report import tables

RESULTS = Path(__file__).resolve().parents[1] / "results"
PARTS = ("inference", "fetch", "cold")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=PARTS, action="append", help="run only these parts (repeatable)")
    parser.add_argument(
        "--servers", help="comma-separated subset of ours,kserve,mlserver,thin,floor,granian (default: all but granian)"
    )
    parser.add_argument("--seconds", type=int, default=5, help="one measured wrk round per server and model")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per server and model")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fetch-mib", type=int, default=1024)
    parser.add_argument("--fetch-repeats", type=int, default=2)
    parser.add_argument("--fetch-tunings", default="", help="extra rows of ours, e.g. 4x4,16x4 (CHUNK_MIBxWORKERS)")
    parser.add_argument(
        "--ours-threads", default="", help="inference only: rows `ours-tN` with MODELAPP_THREADS=N, e.g. 1,2"
    )
    parser.add_argument("--baseline", help="git revision of serving/ to run beside the current one (ours-before)")
    parser.add_argument(
        "--also", action="append", default=[], metavar="REV", help="inference only: more revisions as `ours@REV` rows"
    )
    return parser.parse_args()


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
        "wrk": shutil.which("wrk"),
    }


def main() -> None:
    args = parse_args()
    parts = args.only or list(PARTS)
    servers = args.servers.split(",") if args.servers else None
    settings = inference.LoadSettings(
        connections=args.connections, seconds=args.seconds, rounds=args.rounds, workers=args.workers
    )
    report: dict[str, Any] = {"machine": machine(), "settings": vars(args), "started": time.time()}
    with tempfile.TemporaryDirectory(prefix="modelapp-bench-") as scratch_name:
        scratch = Path(scratch_name)
        before = export(args.baseline, scratch / "baseline") if args.baseline else None
        also = [export(rev, scratch / f"also-{rev}") for rev in args.also]
        if servers and before is not None:
            servers.append("ours-before")
        if servers:
            servers += [f"ours@{rev}" for rev in args.also]
            servers += [f"ours-t{item}" for item in args.ours_threads.split(",") if item]
        if "inference" in parts:
            print("inference", flush=True)
            runs, rounds, failed = inference.run_inference(
                iris_versions(scratch),
                settings=settings,
                scratch=scratch,
                only=servers,
                baseline=before,
                also=also,
                threads=[int(item) for item in args.ours_threads.split(",") if item],
            )
            report["inference"] = inference.as_rows(runs)
            report["inference_rounds"] = rounds
            report["inference_left_out"] = failed
        if "fetch" in parts:
            print("fetch", flush=True)
            tunings = [item for item in args.fetch_tunings.split(",") if item]
            fetches = fetch_bench.run_fetch(
                scratch / "fetch",
                size=args.fetch_mib << 20,
                repeats=args.fetch_repeats,
                baseline=before,
                tunings=tunings,
            )
            report["fetch"] = fetch_bench.as_rows(fetches)
        if "cold" in parts:
            print("cold start", flush=True)
            starts = cold_start.run_cold_start(
                big_onnx_version(scratch), workers=args.workers, scratch=scratch, only=servers, baseline=before
            )
            report["cold_start"] = cold_start.as_rows(starts)
    report["seconds"] = time.time() - report["started"]
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / time.strftime("serving-%Y%m%dT%H%M%SZ.json", time.gmtime())
    out.write_text(json.dumps(report, indent=2))
    print(f"\nraw results: {out}  ({report['seconds']:.0f} s)\n")
    print(tables(report))


if __name__ == "__main__":
    main()
