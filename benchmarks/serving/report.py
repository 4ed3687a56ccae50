"""Markdown tables from a results file (pure: dict in, text out).

.venv/bin/python -m benchmarks.serving.report benchmarks/results/serving-....json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any


def _best(rows: list[dict[str, Any]], key: str) -> float:
    return max((row[key] for row in rows), default=0.0)


def inference_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | server | requests/s | best round | median round | p50 ms | p90 ms | p99 ms | errors "
        "| vs faster rival (req/s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_model[row["model"]].append(row)
    for model, group in by_model.items():
        rival = _best([row for row in group if not row["server"].startswith("ours")], "requests_per_second")
        for row in group:
            ours = row["server"].startswith("ours")
            ratio = f"{row['requests_per_second'] / rival:.2f}x" if ours and rival else ""
            lines.append(
                f"| {model} | {row['server']} | {row['requests_per_second']:,.0f} | "
                f"{row.get('best_round_rps', 0):,.0f} | {row.get('median_round_rps', 0):,.0f} | {row['p50_ms']:.2f} | "
                f"{row['p90_ms']:.2f} | {row['p99_ms']:.2f} | {row['errors']} | {ratio} |"
            )
    return "\n".join(lines)


def fetch_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| downloader | runs | best MiB/s | median MiB/s | peak RSS MiB (max) | ok |",
        "|---|---:|---:|---:|---:|---|",
    ]
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_name[row["downloader"]].append(row)
    for name, group in by_name.items():
        rates = sorted(row["mib_per_second"] for row in group)
        median = rates[len(rates) // 2] if len(rates) % 2 else (rates[len(rates) // 2 - 1] + rates[len(rates) // 2]) / 2
        ok = all(row["exit_code"] == 0 for row in group)
        lines.append(
            f"| {name} | {len(group)} | {rates[-1]:.0f} | {median:.0f} | "
            f"{max(row['peak_rss_mib'] for row in group):.0f} | {'yes' if ok else 'NO'} |"
        )
    return "\n".join(lines)


def cold_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| server | model MiB | ready, median s | all answering, median s | ready runs (s) |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        runs = ", ".join(f"{value:.2f}" for value in row["seconds"])
        lines.append(
            f"| {row['server']} | {row['model_mib']:.0f} | {row['median_seconds']:.2f} | "
            f"{row['median_answering_seconds']:.2f} | {runs} |"
        )
    return "\n".join(lines)


def tables(report: dict[str, Any]) -> str:
    parts = [f"machine: {report['machine']}", f"settings: {report['settings']}"]
    if "inference" in report:
        parts += ["### Inference (POST /v2/models/iris/infer)", inference_table(report["inference"])]
    if "fetch" in report:
        parts += [f"### Fetch ({report['settings']['fetch_mib']} MiB from Azurite)", fetch_table(report["fetch"])]
    if "cold_start" in report:
        parts += ["### Cold start (100 MB ONNX)", cold_table(report["cold_start"])]
    return "\n\n".join(parts)


if __name__ == "__main__":
    print(tables(json.loads(Path(sys.argv[1]).read_text())))
