"""`python -m benchmarks.operator.profile FILE...`: where an operator process's CPU went, from py-spy's
collapsed stacks (`python -m benchmarks.operator --profile DIR` records them during each burst).

Each line of a py-spy `--format raw` file is one stack, outermost frame first, `;`-separated, and the number
of samples in which that stack was seen. Threads blocked in a socket read, epoll or an idle pool are not CPU
(py-spy's idle detection misses some in a container): `WAITING` sets them apart, the shares are of the rest.
Printed: the share of samples per area (the first matching rule of `AREAS`,
looked for from the innermost frame out, so "json" wins over "kopf watching" for a json.loads under kopf's
watch loop), then the frames with the most samples of their own (self) and in total (inclusive).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

#: A stack whose innermost frame is one of these is a thread blocked (socket read, epoll, a pool's idle queue):
#: py-spy's idle detection misses them in a container, so they are counted apart and left out of the CPU shares.
WAITING = re.compile(r"^(?:(?:SSLSocket\.(?:read|recv_into)|EpollSelector\.select|\S*do_poll|Condition\.wait"
                     r"|Event\.wait|Queue\.get|SimpleQueue\.get) |_worker \(concurrent/futures/thread\.py:81\)$)")
#: (area, pattern on one frame `function (file:line)`); the innermost frame that matches any rule decides.
AREAS: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern))
    for name, pattern in [
        ("deepcopy (kopf's essence, ours)", r"\(copy\.py:"),
        ("json decode/encode", r"\((json/|.*orjson)"),
        ("logging", r"\(logging/"),
        ("ssl / sockets", r"\((ssl\.py|socket\.py|selectors\.py|asyncio/selector_events\.py|asyncio/sslproto\.py)"),
        ("pydantic (spec parsing)", r"pydantic"),
        ("kubernetes client / urllib3", r"\((kubernetes|urllib3)/"),
        ("aiohttp", r"aiohttp/"),
        ("our engine: builders", r"modelapp_operator/builders\.py"),
        ("our engine: status", r"modelapp_operator/status\.py"),
        ("our engine: rollout", r"modelapp_operator/(rollout|revisions)\.py"),
        ("our engine: store", r"modelapp_operator/cache\.py"),
        ("our engine: other", r"modelapp_operator/"),
        ("kopf: diffs and essences", r"kopf/_cogs/(structs/diffs|configs/(diffbase|progress))\.py"),
        ("kopf: watching and queueing", r"kopf/_(cogs/clients/watching|core/reactor/queueing)\.py"),
        ("kopf: processing and handler calls", r"kopf/_core/(reactor|actions|intents)/"),
        ("kopf: other", r"kopf/"),
        ("asyncio loop", r"asyncio/"),
        ("threads (pool, queue)", r"\((threading|concurrent/futures/thread|queue)\.py"),
    ]
]


def read(paths: list[Path]) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            head, _, count = line.rpartition(" ")
            if head and count.isdigit():
                stacks[tuple(head.split(";"))] += int(count)
    return stacks


def area(stack: tuple[str, ...]) -> str:
    for frame in reversed(stack):
        for name, pattern in AREAS:
            if pattern.search(frame):
                return name
    return "other"


def summary(stacks: Counter[tuple[str, ...]], *, top: int = 15) -> str:
    """Shares of the samples in which a thread was running (blocked threads counted apart, see WAITING)."""
    areas: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    waiting = 0
    for stack, count in stacks.items():
        frames = [f for f in stack if not f.startswith(("thread ", "process "))]
        if frames and WAITING.match(frames[-1]):
            waiting += count
            continue
        areas[area(tuple(frames))] += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    total = sum(areas.values()) or 1
    lines = [f"{total} samples running, {waiting} more of threads blocked (left out)", "", "| area | share |",
             "|---|---|"]  # fmt: skip
    lines += [f"| {name} | {100 * n / total:.1f} % |" for name, n in areas.most_common()]
    lines += ["", "| self | share |", "|---|---|"]
    lines += [f"| `{frame}` | {100 * n / total:.1f} % |" for frame, n in own.most_common(top)]
    lines += ["", "| inclusive | share |", "|---|---|"]
    lines += [f"| `{frame}` | {100 * n / total:.1f} % |" for frame, n in inclusive.most_common(top * 2)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.operator.profile", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="py-spy --format raw files (summed)")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    print(summary(read(args.files), top=args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
