"""`python -m benchmarks.operator.store [--apps 5000]`: what the operator's store costs per ModelApp, kept as
trimmed dicts (how it kept objects before issue 15's change), serialized alone (`marshal`, its second form) and as
it keeps them now (`cache.Store`: serialized, then compressed against the kind's first object).

The objects are a real ModelApp (Ready, with its status), its Deployment and its Service as the API server returned
them in a 5,000-app run of `benchmarks.operator` (objects.json, managedFields included: trimming is part of the
store). Each app gets its own copies (names, uids and resourceVersions differ, nothing shared), as watch events
deliver them. Memory is what tracemalloc counts while the copies are kept; time is per call, best of 5 rounds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import marshal
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelapp_operator import cache

OBJECTS = Path(__file__).with_name("objects.json")
KINDS = ("ModelApp", "Deployment", "Service")


def copies(count: int) -> list[tuple[str, dict[str, Any]]]:
    """`count` apps' worth of (kind, object), each decoded on its own from JSON."""
    template = json.loads(OBJECTS.read_text())
    out = []
    for i in range(count):
        for kind in KINDS:
            obj = json.loads(json.dumps(template[kind]))
            meta = obj["metadata"]
            meta |= {"name": f"app-{i:05d}", "uid": f"{i:08x}-0000-4000-8000-{KINDS.index(kind):012x}",
                     "resourceVersion": str(100_000 + 3 * i + KINDS.index(kind))}  # fmt: skip
            out.append((kind, obj))
    return out


def held(fill: Callable[[list[tuple[str, dict[str, Any]]]], object], objects: list[tuple[str, dict[str, Any]]]) -> int:
    """Bytes that stay allocated once `fill` has kept `objects` (the inputs themselves excluded)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = fill(objects)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return after - before


def as_dicts(objects: list[tuple[str, dict[str, Any]]]) -> dict[cache.Key, cache.Obj]:
    """The store before: trimmed copies as dicts (a JSON round trip, so no value is shared with the input)."""
    return {cache.Store.key(kind, obj): json.loads(json.dumps(cache.trim(obj))) for kind, obj in objects}


def as_marshal(objects: list[tuple[str, dict[str, Any]]]) -> dict[cache.Key, bytes]:
    """The store's second form: each trimmed copy serialized with `marshal`, not compressed."""
    return {cache.Store.key(kind, obj): marshal.dumps(cache.trim(obj)) for kind, obj in objects}


def as_store(objects: list[tuple[str, dict[str, Any]]]) -> cache.Store:
    store = cache.Store()
    for kind, obj in objects:
        store.put(kind, obj)
    return store


def per_call(call: Callable[[], object], number: int) -> float:
    """Microseconds per call, best of 5 rounds of `number` calls."""
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(number):
            call()
        best = min(best, time.perf_counter() - t0)
    return best / number * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=5000, help="apps kept (default 5000)")
    args = parser.parse_args(argv)
    objects = copies(args.apps)
    dicts, serial, store = held(as_dicts, objects), held(as_marshal, objects), held(as_store, objects)
    print(f"{args.apps} apps (ModelApp + Deployment + Service each), objects.json from a 5,000-app run\n")
    print("| | trimmed dicts | serialized (`marshal`) | compressed (`cache.Store`) |\n|---|---|---|---|")
    print(f"| kept, per app | {dicts / args.apps / 1024:.1f} KiB | {serial / args.apps / 1024:.1f} KiB "
          f"| {store / args.apps / 1024:.1f} KiB |")
    print(f"| kept, {args.apps} apps | {dicts / 2**20:.1f} MiB | {serial / 2**20:.1f} MiB | {store / 2**20:.1f} MiB |")
    kept = as_store(objects)
    for kind in KINDS:
        obj = next(o for k, o in objects if k == kind)
        name = obj["metadata"]["name"]
        plain: dict[cache.Key, cache.Obj] = {}
        put_dict = per_call(lambda: plain.__setitem__(cache.Store.key(kind, obj), cache.trim(obj)), 2000)  # noqa: B023
        blob = marshal.dumps(cache.trim(obj))
        put_marshal = per_call(lambda: marshal.dumps(cache.trim(obj)), 2000)  # noqa: B023
        get_marshal = per_call(lambda: marshal.loads(blob), 2000)  # noqa: B023, S302
        newer = itertools.count(10**9)  # each put a newer version (the same version again encodes nothing)
        put = per_call(lambda: kept.put(kind, {**obj, "metadata": {**obj["metadata"],  # noqa: B023
                                                                  "resourceVersion": str(next(newer))}}), 2000)  # noqa: B023
        get = per_call(lambda: kept.get(kind, obj["metadata"]["namespace"], name), 2000)  # noqa: B023
        print(f"| {kind}: put / get | {put_dict:.1f} / ~0 µs | {put_marshal:.1f} / {get_marshal:.1f} µs "
              f"| {put:.1f} / {get:.1f} µs |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
