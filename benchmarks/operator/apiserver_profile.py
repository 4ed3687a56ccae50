"""`python -m benchmarks.operator.apiserver_profile OPERATOR.pprof BASELINE.pprof`: the API server's CPU in two bursts,
side by side, grouped by where in the API server it went (what `--apiserver-profile` of `benchmarks.operator` fetched).

Each sampled stack counts once, in the first group (in the order below) that one of its frames matches; stacks that
match none are "the rest". Needs `go` on PATH (`go tool pprof -traces` reads the profiles).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

#: (group, regex over frame names). Order matters: a ModelApp status write's stack also passes through the generic
#: update path, which must not claim it.
GROUPS = [
    ("ModelApp status PATCH (`customresource.(*StatusREST).Update`)", r"customresource\.\(\*StatusREST\)"),
    ("other ModelApp requests (`crdHandler`: create, get, list, watch)",
     r"apiextensions-apiserver/pkg/apiserver\.\(\*crdHandler\)"),
    ("Go heap GC", r"gcBgMarkWorker|gcDrain"),
    ("authentication (per request)", r"AuthenticateRequest"),
    ("etcd watch decoding", r"etcd3\.\(\*watchChan\)"),
    ("built-in creates", r"handlers\.CreateResource"),
    ("built-in updates, patches, applies", r"handlers\.(UpdateResource|PatchResource)"),
]
UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "m": 60.0}
SEPARATOR = "-----------+-------------------------------------------------------"


def traces(text: str) -> list[tuple[float, list[str]]]:
    """(seconds, frames innermost first) of each stack in `go tool pprof -traces` output."""
    found = []
    for block in text.split(SEPARATOR)[1:]:
        lines = [line for line in block.strip("\n").splitlines() if line.strip()]
        head = re.match(r"\s*([0-9.]+)(s|ms|us|µs|ns|m)\s+(.*)", lines[0]) if lines else None
        if head:
            frames = [head.group(3), *(x.strip() for x in lines[1:])]
            found.append((float(head.group(1)) * UNITS[head.group(2)], frames))
    return found


def grouped(stacks: list[tuple[float, list[str]]]) -> dict[str, float]:
    sums: dict[str, float] = {name: 0.0 for name, _ in GROUPS} | {"the rest": 0.0}
    for seconds, frames in stacks:
        name = next((n for n, rx in GROUPS if any(re.search(rx, f) for f in frames)), "the rest")
        sums[name] += seconds
    sums["total"] = sum(seconds for seconds, _ in stacks)
    return sums


def table(operator: dict[str, float], baseline: dict[str, float]) -> str:
    lines = ["| where in the API server | operator burst | baseline burst | extra |", "|---|---|---|---|"]
    for name, a in operator.items():
        b = baseline.get(name, 0.0)
        lines.append(f"| {name} | {a:.2f} s | {b:.2f} s | {a - b:+.2f} s |")
    return "\n".join(lines)


def read(path: Path) -> dict[str, float]:
    out = subprocess.run(["go", "tool", "pprof", "-traces", str(path)], capture_output=True, text=True, check=True)
    return grouped(traces(out.stdout))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    print(table(read(Path(argv[0])), read(Path(argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
