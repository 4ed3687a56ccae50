"""The operator benchmark's figures as Markdown tables (`table`), from the results `python -m benchmarks.operator`
prints and writes with --json. `python -m benchmarks.operator.report RUN.json` prints them again from such a file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _cpu_ratio(operator: dict[str, Any], baseline: dict[str, Any]) -> tuple[str, str]:
    """Both bursts' CPU, all processes: where the cores are shared and busy (both bursts use ~2 of 2), all Ready
    over all available equals this ratio to within a few hundredths (benchmarks/README.md, 2026-12-04 19:48)."""
    mine, theirs = sum((operator.get("cpu_s") or {}).values()), sum((baseline.get("cpu_s") or {}).values())
    if not theirs:
        return "-", "-"
    return f"{mine:.1f} s ({mine / theirs:.2f}x)", f"{theirs:.1f} s"


def _seconds(value: float | None) -> str:
    return "not within --settle" if value is None else f"{value:.0f} s"


def table(r: dict[str, Any]) -> str:
    """The figures as Markdown: one column pair (operator, baseline) per fleet size."""
    c = r["create"]

    def ms(side: dict[str, Any], key: str) -> str:
        return f"{side[key]:.0f} ms"

    def shape(f: dict[str, Any]) -> str:
        split = f" ({f['shards']} shards by {f.get('shard_by') or 'label'})" if f["shards"] > 1 else ""
        order = ", baseline first" if f.get("baseline_first") else ""
        return f"{f['apps']}{split}{order}"

    head = ["measure"] + [f"{shape(f)}: operator | {shape(f)}: baseline" for f in r["fleets"]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * (1 + 2 * len(r["fleets"]))]

    def row(name: str, cells: list[tuple[str, str]]) -> None:
        lines.append(f"| {name} | " + " | ".join(f"{a} | {b}" for a, b in cells) + " |")

    row("create -> children applied, p95 (load)", [(f"{ms(c['operator'], 'p95_ms')} ({c['operator']['load']})",
                                                    f"{ms(c['baseline'], 'p95_ms')} ({c['baseline']['load']})")]
        + [("", "")] * (len(r["fleets"]) - 1))  # fmt: skip
    row("N at once -> all Ready / all available (load before-after)",
        [(f"{f['burst_operator']['total_s']:.1f} s ({f['burst_operator']['ready']}; "
          f"{f['burst_operator']['load_before']}-{f['burst_operator']['load_after']})",
          f"{f['burst_baseline']['total_s']:.1f} s ({f['burst_baseline']['ready']}; "
          f"{f['burst_baseline']['load_before']}-{f['burst_baseline']['load_after']})") for f in r["fleets"]])
    row("ratio operator / baseline",
        [(f"{f['burst_operator']['total_s'] / f['burst_baseline']['total_s']:.2f}x", "") for f in r["fleets"]])
    row("CPU of every process in the burst (ratio: on shared cores, the time ratio follows it)",
        [_cpu_ratio(f["burst_operator"], f["burst_baseline"]) for f in r["fleets"]])
    row("bump -> template updated, p95 (load)",
        [(f"{ms(f['bump']['operator'], 'p95_ms')} ({f['bump']['operator']['load']})",
          f"{ms(f['bump']['baseline'], 'p95_ms')} ({f['bump']['baseline']['load']})") for f in r["fleets"]])
    row("peak RSS per process (VmHWM)", [(" + ".join(f"{m:.0f}" for m in f["peak_rss_mib"]) + " MiB", "-")
                                         for f in r["fleets"]])  # fmt: skip
    row("idle CPU, all processes (load)", [(f"{f['idle']['cpu_percent']:.2f} % ({f['idle']['load']})", "-")
                                           for f in r["fleets"]])  # fmt: skip
    row("quiet (< 1 % of a core) after the burst", [(_seconds(f["quiet_after_s"]) if "quiet_after_s" in f else "-", "-")
                                                   for f in r["fleets"]])
    out = "\n".join(lines)
    for f in r["fleets"]:
        out += f"\n\nWhere the {shape(f)} bursts' time went (seconds after the first create: p50 / p90 / last app):\n"
        out += "| milestone | operator | baseline |\n|---|---|---|\n"
        for milestone in ("applied", "available", "ready"):
            cells = [(f[side].get("milestones") or {}).get(milestone) for side in ("burst_operator", "burst_baseline")]
            out += f"| {milestone} | " + " | ".join(
                f"{c['p50_s']:.1f} / {c['p90_s']:.1f} / {c['last_s']:.1f}" if c else "-" for c in cells) + " |\n"
    for f in r["fleets"]:
        out += _both_bursts(f, "cpu_s", f"CPU seconds spent in the {shape(f)} bursts, by process", "process", str)
    for f in r["fleets"]:
        out += _both_bursts(f, "events", f"Events in the {shape(f)} bursts' namespaces, by who posted them and why "
                            "(per app)", "component reason", lambda v, n=f["apps"]: f"{v / n:.2f}")  # fmt: skip
    for f in r["fleets"]:
        out += f"\n\nAPI requests during the {shape(f)} bursts (operator phase vs baseline phase, per app):\n"
        out += "| verb resource | operator | baseline | extra per app |\n|---|---|---|---|\n"
        for x in f["requests_side_by_side"][:14]:
            out += (f"| {x['verb']} {x['resource']} | {x['operator']} | {x['baseline']} | "
                    f"{int(str(x['extra'])) / f['apps']:+.2f} |\n")  # fmt: skip
    return out


def _both_bursts(f: dict[str, Any], key: str, title: str, what: str, cell: Any) -> str:
    """A table of one per-name figure (`key`) of both bursts of a fleet, largest first; "-" where a side has none."""
    op, base = f["burst_operator"].get(key) or {}, f["burst_baseline"].get(key) or {}
    out = f"\n\n{title}:\n| {what} | operator burst | baseline burst |\n|---|---|---|\n"
    for name in sorted(set(op) | set(base), key=lambda n: -(op.get(n, 0) + base.get(n, 0))):
        cells = [cell(side[name]) if name in side else "-" for side in (op, base)]
        out += f"| {name} | {cells[0]} | {cells[1]} |\n"
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m benchmarks.operator.report RUN.json (a file --json wrote)", file=sys.stderr)
        return 2
    print(table(json.loads(Path(args[0]).read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
