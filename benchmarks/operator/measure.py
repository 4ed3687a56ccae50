"""Pure figures (percentiles, CPU share) and /proc readings of one process, for the operator benchmark.

Why /proc: the goals are about the operator process itself (peak RSS, idle CPU of a core), which only
the kernel's own accounting measures without an agent inside the process.
"""

from __future__ import annotations

import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction in 0..1) of a non-empty list."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def status_kib(text: str, field: str) -> int:
    """A `kB` field (VmRSS, VmHWM) of /proc/<pid>/status text."""
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_ticks(stat: str) -> int:
    """utime + stime of /proc/<pid>/stat text (fields 14 and 15; the command may contain spaces)."""
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_share(ticks_before: int, ticks_after: int, seconds: float) -> float:
    """Share of one core used over `seconds` (0.01 = 1 %)."""
    return (ticks_after - ticks_before) / CLOCK_TICKS / seconds


@dataclass
class Proc:
    """Readings of one live process."""

    pid: int

    def status(self) -> str:
        return Path(f"/proc/{self.pid}/status").read_text()

    def rss_mib(self) -> float:
        return status_kib(self.status(), "VmRSS") / 1024

    def peak_rss_mib(self) -> float:
        """VmHWM: the kernel's high-water mark of resident memory since the process started."""
        return status_kib(self.status(), "VmHWM") / 1024

    def ticks(self) -> int:
        return cpu_ticks(Path(f"/proc/{self.pid}/stat").read_text())


class RssSampler:
    """Samples VmRSS every `interval` seconds in a thread; `peak` is the largest sample (cross-check of VmHWM)."""

    def __init__(self, proc: Proc, interval: float = 0.5) -> None:
        self.proc, self.interval, self.peak = proc, interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.rss_mib())
            except (OSError, KeyError):
                return
            self._stop.wait(self.interval)


_SAMPLE = re.compile(r"^apiserver_request_duration_seconds_(sum|count)\{([^}]*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def request_mix(metrics_text: str, *, top: int = 12) -> list[dict[str, object]]:
    """The API server's requests by (verb, resource[/subresource]), most total time first, from its
    Prometheus text: where the control plane's time went (WATCH and LIST left out: they last by design)."""
    found: dict[tuple[str, str], dict[str, float]] = {}
    for line in metrics_text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match.group(2)))
        if labels.get("verb") in ("WATCH", "LIST", None):
            continue
        resource = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        row = found.setdefault((labels["verb"], resource), {"sum": 0.0, "count": 0.0})
        row[match.group(1)] += float(match.group(3))
    rows = sorted(found.items(), key=lambda kv: kv[1]["sum"], reverse=True)[:top]
    return [{"verb": verb, "resource": resource, "count": int(v["count"]), "total_s": round(v["sum"], 1),
             "mean_ms": round(1000 * v["sum"] / v["count"], 1) if v["count"] else 0.0}
            for (verb, resource), v in rows]  # fmt: skip


Stats = dict[tuple[str, str], dict[str, float]]


def request_stats(metrics_text: str) -> Stats:
    """Cumulative (count, seconds) per (verb, resource[/subresource]) from the API server's
    `apiserver_request_duration_seconds` (every request, whoever sent it; WATCH left out: it lasts by
    design). Two snapshots subtracted (`delta`) give what one phase cost the API server."""
    found: Stats = {}
    for line in metrics_text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match.group(2)))
        if labels.get("verb") in ("WATCH", None):
            continue
        resource = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        row = found.setdefault((labels["verb"], resource), {"sum": 0.0, "count": 0.0})
        row[match.group(1)] += float(match.group(3))
    return found


def delta(before: Stats, after: Stats, *, per: int = 1) -> list[dict[str, object]]:
    """What happened between two snapshots, most requests first: count, count per `per` (an app), seconds,
    mean ms. Rows with no request in between are left out."""
    rows = []
    for key, now in after.items():
        was = before.get(key, {"sum": 0.0, "count": 0.0})
        count, seconds = now["count"] - was["count"], now["sum"] - was["sum"]
        if count <= 0:
            continue
        rows.append({"verb": key[0], "resource": key[1], "count": int(count), "per_app": round(count / per, 2),
                     "total_s": round(seconds, 1), "mean_ms": round(1000 * seconds / count, 1)})  # fmt: skip
    return sorted(rows, key=lambda r: (-int(str(r["count"])), str(r["verb"]), str(r["resource"])))


def side_by_side(operator: list[dict[str, object]], baseline: list[dict[str, object]]) -> list[dict[str, object]]:
    """The two phases' request counts per (verb, resource), with the operator's extra (operator - baseline)."""
    keyed = {(str(r["verb"]), str(r["resource"])): r for r in operator}
    base = {(str(r["verb"]), str(r["resource"])): r for r in baseline}
    rows = []
    for key in sorted(keyed.keys() | base.keys()):
        op, bl = int(str(keyed.get(key, {}).get("count", 0))), int(str(base.get(key, {}).get("count", 0)))
        rows.append({"verb": key[0], "resource": key[1], "operator": op, "baseline": bl, "extra": op - bl})
    return sorted(rows, key=lambda r: -abs(int(str(r["extra"]))))
