"""Markdown tables from a results file (pure: dict in, text out).

.venv/bin/python -m benchmarks.serving.report benchmarks/results/serving-....json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

RIVALS = ("kserve", "mlserver")
NOT_SERVERS = ("floor",)


def markdown(header: Sequence[str], align: str, rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table: `align` has one letter per column, `l` or `r`; cells are printed as they are."""
    assert len(align) == len(header), (header, align)
    cells = [header, *rows]
    rule = "|" + "|".join("---:" if side == "r" else "---" for side in align) + "|"
    lines = ["| " + " | ".join(str(cell) for cell in row) + " |" for row in cells]
    return "\n".join([lines[0], rule, *lines[1:]])


def _best(rows: list[dict[str, Any]], key: str) -> float:
    return max((row[key] for row in rows), default=0.0)


def inference_table(rows: list[dict[str, Any]]) -> str:
    header = ("model", "server", "requests/s", "best round", "median round", "p50 ms", "p90 ms", "p99 ms", "errors",
              "vs faster rival (req/s)")  # fmt: skip
    lines: list[tuple[object, ...]] = []
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_model[row["model"]].append(row)
    for model, group in by_model.items():
        rival = _best([row for row in group if row["server"] in RIVALS], "requests_per_second")
        for row in group:
            ours = row["server"].startswith("ours")
            ratio = f"{row['requests_per_second'] / rival:.2f}x" if ours and rival else ""
            lines.append((model, row["server"], f"{row['requests_per_second']:,.0f}",
                          f"{row.get('best_round_rps', 0):,.0f}", f"{row.get('median_round_rps', 0):,.0f}",
                          f"{row['p50_ms']:.2f}", f"{row['p90_ms']:.2f}", f"{row['p99_ms']:.2f}", row["errors"],
                          ratio))  # fmt: skip
    return markdown(header, "llrrrrrrrr", lines)


def _ours(name: str) -> bool:
    return name.startswith("ours")


def _by_model_round(rows: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, dict[str, Any]]]:
    grouped: dict[tuple[str, int], dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        grouped[(row["model"], row["round"])][row["server"]] = row
    return grouped


def round_table(rows: list[dict[str, Any]]) -> str:
    """Every round of every server: load average at its start, req/s, p50, p99, connections per worker."""
    header = ("model", "round", "server", "load avg", "requests/s", "p50 ms", "p99 ms", "conns per worker", "threads",
              "requests per CPU s")  # fmt: skip
    lines = []
    for row in rows:
        split = "/".join(str(count) for count in row["split"]) or "-"
        rate = f"{row['requests_per_second']:,.0f}" + (" calls/s" if row["server"] in NOT_SERVERS else "")
        lines.append((row["model"], row["round"], row["server"], f"{row['load1']:.1f}", rate, f"{row['p50_ms']:.2f}",
                      f"{row['p99_ms']:.2f}", split, row.get("threads") or "", _per_cpu([row])))  # fmt: skip
    return markdown(header, "lrlrrrrlrr", lines)


def goal_rounds(rows: list[dict[str, Any]], server: str) -> list[dict[str, Any]]:
    """Per (model, round): `server` against the faster rival of that round (pure).

    held: requests/s at least 2x the faster rival's and p99 no worse than that rival's p99.
    """
    out = []
    for (model, index), group in sorted(_by_model_round(rows).items()):
        rivals = [group[name] for name in RIVALS if name in group]
        if server not in group or not rivals:
            continue
        ours, rival = group[server], max(rivals, key=lambda row: row["requests_per_second"])
        ratio = ours["requests_per_second"] / rival["requests_per_second"] if rival["requests_per_second"] else 0.0
        out.append(
            {
                "model": model,
                "round": index,
                "load1": ours["load1"],
                "server": server,
                "rps": ours["requests_per_second"],
                "rival": rival["server"],
                "rival_rps": rival["requests_per_second"],
                "ratio": ratio,
                "p99": ours["p99_ms"],
                "rival_p99": rival["p99_ms"],
                "best_rival_p99": min(row["p99_ms"] for row in rivals),
                "held": ratio >= 2.0 and ours["p99_ms"] <= rival["p99_ms"] and not ours["errors"],
            }
        )
    return out


def goal_table(rows: list[dict[str, Any]]) -> str:
    header = ("model", "round", "load avg", "server", "requests/s", "faster rival", "its requests/s", "ratio", "p99 ms",
              "rival's p99 ms", "both rivals' best p99", "held")  # fmt: skip
    lines = []
    summary = []
    for server in sorted({row["server"] for row in rows if _ours(row["server"])}):
        checks = goal_rounds(rows, server)
        for check in checks:
            lines.append((check["model"], check["round"], f"{check['load1']:.1f}", server, f"{check['rps']:,.0f}",
                          check["rival"], f"{check['rival_rps']:,.0f}", f"{check['ratio']:.2f}x", f"{check['p99']:.2f}",
                          f"{check['rival_p99']:.2f}", f"{check['best_rival_p99']:.2f}",
                          "yes" if check["held"] else "no"))  # fmt: skip
        for model in sorted({check["model"] for check in checks}):
            mine = [check for check in checks if check["model"] == model]
            summary.append(f"{server} {model}: held in {sum(c['held'] for c in mine)} of {len(mine)} rounds")
    return markdown(header, "lrrlrlrrrrrl", lines) + "\n\n" + "; ".join(summary)


def floor_table(rows: list[dict[str, Any]], workers: int) -> str:
    """Per model, summed over rounds: the floor (no HTTP), the thin server, and each server as a fraction."""
    totals: dict[tuple[str, str], list[float]] = defaultdict(list)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        totals[(row["model"], row["server"])].append(row["requests_per_second"])
        groups[(row["model"], row["server"])].append(row)
    header = ("model", "server", "requests/s (mean of rounds)", "of thin server",
              f"of floor x {workers} (one process per worker)", "of floor (one process)", "requests per CPU s",
              "of thin's per CPU s")  # fmt: skip
    lines = []
    for model in sorted({model for model, _ in totals}):
        floor = _mean(totals.get((model, "floor"), []))
        thin = _mean(totals.get((model, "thin"), []))
        for (row_model, server), rates in sorted(totals.items()):
            if row_model != model:
                continue
            rate = _mean(rates)
            of_thin = f"{rate / thin:.0%}" if thin and server != "floor" else ""
            of_floor = f"{rate / (floor * workers):.0%}" if floor and server != "floor" else ""
            of_one = f"{rate / floor:.0%}" if floor and server != "floor" else ""
            unit = " calls/s" if server in NOT_SERVERS else ""
            per_cpu = _per_cpu(groups[(model, server)])
            mine, thin_cpu = _per_cpu_value(groups[(model, server)]), _per_cpu_value(groups.get((model, "thin"), []))
            of_thin_cpu = f"{mine / thin_cpu:.0%}" if mine and thin_cpu and server != "floor" else ""
            lines.append((model, server, f"{rate:,.0f}{unit}", of_thin, of_floor, of_one, per_cpu, of_thin_cpu))
    return markdown(header, "llrrrrrr", lines)


def _per_cpu_value(rows: list[dict[str, Any]]) -> float:
    """Requests (or floor calls) per CPU second the server used over these rounds; 0 when unmeasured."""
    cpu = sum(row.get("cpu_seconds", 0.0) for row in rows)
    return sum(row.get("requests", 0) for row in rows) / cpu if cpu else 0.0


def _per_cpu(rows: list[dict[str, Any]]) -> str:
    value = _per_cpu_value(rows)
    return f"{value:,.0f}" if value else ""


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def fetch_table(rows: list[dict[str, Any]]) -> str:
    lines = []
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_name[row["downloader"]].append(row)
    for name, group in by_name.items():
        rates = sorted(row["mib_per_second"] for row in group)
        median = rates[len(rates) // 2] if len(rates) % 2 else (rates[len(rates) // 2 - 1] + rates[len(rates) // 2]) / 2
        ok = all(row["exit_code"] == 0 for row in group)
        lines.append((name, len(group), f"{rates[-1]:.0f}", f"{median:.0f}",
                      f"{max(row['peak_rss_mib'] for row in group):.0f}", "yes" if ok else "NO"))  # fmt: skip
    header = ("downloader", "runs", "best MiB/s", "median MiB/s", "peak RSS MiB (max)", "ok")
    return markdown(header, "lrrrrl", lines)


def cold_table(rows: list[dict[str, Any]]) -> str:
    header = ("server", "model MiB", "ready, median s", "all answering, median s", "ready runs (s)")
    lines = [(row["server"], f"{row['model_mib']:.0f}", f"{row['median_seconds']:.2f}",
              f"{row['median_answering_seconds']:.2f}", ", ".join(f"{value:.2f}" for value in row["seconds"]))
             for row in rows]  # fmt: skip
    return markdown(header, "lrrrl", lines)


def tables(report: dict[str, Any]) -> str:
    parts = [f"machine: {report['machine']}", f"settings: {report['settings']}"]
    if "inference" in report:
        parts += ["### Inference (POST /v2/models/iris/infer)", inference_table(report["inference"])]
    for row in report.get("inference_left_out", []):
        parts.append(f"left out: {row['server']} ({row['model']}): {row['reason'][-300:]}")
    if report.get("inference_rounds"):
        rounds = report["inference_rounds"]
        parts += ["### The goal, round by round (>= 2x the faster rival, p99 no worse)", goal_table(rounds)]
        parts += ["### Floor: no HTTP, and the thin server", floor_table(rounds, report["settings"]["workers"])]
        parts += ["### Every round", round_table(rounds)]
    if "fetch" in report:
        parts += [f"### Fetch ({report['settings']['fetch_mib']} MiB from Azurite)", fetch_table(report["fetch"])]
    if "cold_start" in report:
        parts += ["### Cold start (100 MB ONNX)", cold_table(report["cold_start"])]
    return "\n\n".join(parts)


if __name__ == "__main__":
    print(tables(json.loads(Path(sys.argv[1]).read_text())))
