"""`python -m benchmarks.tenancy`: what hostile tenants cost good ones, each figure side by side in one run.

1. operator: a good app's create -> Ready (apps created one at a time), without and then with hostile
   ModelApps watched by the same operator (`operator_side.py` says which and why);
2. bump: `modelapp bump` wall time over good apps, in clean rounds and in rounds with hostile rows beside
   them, alternating (`bump_side.py`).
Both run on a cluster of their own in a temporary folder (etcd, the control plane and kwok on 127.0.0.1),
deleted at the end. Prints Markdown tables; --json writes the raw figures.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.operator.__main__ import api_client, start_operator
from benchmarks.tenancy import bump_side, operator_side
from kubernetes import client
from tests.fixtures.private_cluster import install_crds

from modelapp_devcluster import LocalCluster
from modelapp_devcluster.layout import Settings


def log(message: str) -> None:
    print(f"[tenancy {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tenancy", description=__doc__.splitlines()[0])
    parser.add_argument("--good", type=int, default=20, help="good apps per operator phase (default 20)")
    parser.add_argument("--hostile", type=int, default=20, help="hostile ModelApps for the operator (default 20)")
    parser.add_argument("--pace", type=float, default=3.0,
                        help="seconds from one good app's create to the next at least (default 3: a phase of 20 "
                             "spans the operator's 60 s NameTaken retry)")  # fmt: skip
    parser.add_argument(
        "--churn-rate",
        type=float,
        default=10.0,
        help="hostile spec edits a second in the last operator phase (default 10)",
    )
    parser.add_argument("--bump-apps", type=int, default=200, help="good apps per bump round (default 200)")
    parser.add_argument("--bump-hostile", type=int, default=5, help="hostile bump rows of each kind (default 5)")
    parser.add_argument("--bump-rounds", type=int, default=5, help="rounds, each measuring every bump side (default 5)")
    parser.add_argument("--only", choices=("operator", "bump"), help="run one part only")
    parser.add_argument("--max-minutes", type=float, default=15.0, help="stop the run after this long")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def operator_part(cluster: LocalCluster, api: client.ApiClient, args: argparse.Namespace, workdir: Path) -> Any:
    run_id = uuid.uuid4().hex[:6]
    namespaces = {key: f"tenancy-{key}-{run_id}" for key in ("quiet", "hostile", "crowded", "churned", "after")}
    for name in namespaces.values():
        client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    operator, _ = start_operator(cluster, list(namespaces.values()), workdir, [])
    try:
        results = operator_side.run(api, namespaces, good=args.good, hostile=args.hostile, pace=args.pace,
                                    churn_rate=args.churn_rate, workdir=workdir, log=log)  # fmt: skip
    finally:
        operator.terminate()
        operator.wait(30)
        for name in namespaces.values():
            client.CoreV1Api(api).delete_namespace(name)
    text = (workdir / "operator.log").read_text(errors="replace")
    results["operator_log"] = {"tracebacks": text.count("Traceback"), "errors": text.count("[ERROR")}
    return results


def operator_table(r: dict[str, Any]) -> str:
    phases = [r["quiet"], r["crowded"], r["churned"], r["after"]]
    hostile = sum(sum(reasons.values()) for reasons in r["hostile"].values())
    churned = r["churned"]

    def cells(key: str, unit: str = " ms") -> str:
        return " | ".join(f"{phase[key]:.0f}{unit}" for phase in phases)

    lines = [f"| measure (n = {phases[0]['n']} each) | no hostile app | {hostile} hostile apps present | "
             f"{hostile} hostile apps, edited {churned['edits'] / churned['seconds']:.1f}/s | "
             "no hostile app (after deleting them) |", "|---|---|---|---|---|",
             f"| good app create -> Ready, p50 | {cells('p50_ms')} |",
             f"| good app create -> Ready, p95 | {cells('p95_ms')} |",
             f"| good app create -> Ready, max | {cells('max_ms')} |",
             f"| hostile ModelApp watch events during the phase | - | {r['crowded']['hostile_events']} in "
             f"{r['crowded']['seconds']:.0f} s | {churned['hostile_events']} in {churned['seconds']:.0f} s "
             f"({churned['edits']} edits by the attacker) | - |",
             "| load average (1 min) at the end of the phase | "
             + " | ".join(f"{phase['load_avg_1m']:.1f}" for phase in phases) + " |",
             "", "| hostile kind | Ready reason at the end (count) |", "|---|---|"]  # fmt: skip
    for kind, reasons in r["hostile"].items():
        lines.append(f"| {kind} | {', '.join(f'{reason} ({n})' for reason, n in reasons.items())} |")
    return "\n".join(lines)


def bump_table(r: dict[str, Any]) -> str:
    sides = {side: r[side] for side in bump_side.SIDES}
    heads = [f"{r['apps']} good apps", *(f"+ {r['per_kind'] * len(kinds)} rows: {', '.join(kinds)}"
                                          for kinds in list(bump_side.SIDES.values())[1:])]  # fmt: skip
    rows = [("`modelapp bump` wall time, median", [f"{s['median_s']:.2f} s" for s in sides.values()]),
            ("each round", [", ".join(f"{v:.2f}" for v in s["runs_s"]) + " s" for s in sides.values()]),
            (f"good rows patched (of {2 * r['apps']})", [str(s["good_patched"]) for s in sides.values()]),
            ("exit code", [str(s["exit"]) for s in sides.values()])]  # fmt: skip
    lines = [f"| measure | {' | '.join(heads)} |", "|---|" + "---|" * len(heads)]
    lines += [f"| {name} | {' | '.join(cells)} |" for name, cells in rows]
    lines += ["", "| hostile row | what the bump said (last round, all rows of the kind) |", "|---|---|"]
    last = r["rounds"]["hostile"][-1]
    lines += [f"| {kind} | {'<br>'.join(last.get(kind) or ['-'])} |" for kind in bump_side.HOSTILE_KINDS]
    regex = r["regex"]
    lines += ["", f"`(a+)+` against `a...ab`: Python `re` {regex['python_re_20_s']:.2f} s at 21 characters, "
              f"{regex['python_re_24_s']:.2f} s at 25; RE2 {regex['re2_121_us']:.0f} µs at 121."]  # fmt: skip
    return "\n".join(lines)


class OutOfTime(Exception):
    """The run hit --max-minutes; cleanup still runs."""


def _out_of_time(*_: object) -> None:
    raise OutOfTime("the run hit --max-minutes: give it more time, or fewer --good/--bump-apps/--bump-rounds")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.alarm(int(args.max_minutes * 60))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tenancy-") as scratch:
        workdir = Path(scratch)
        cluster = LocalCluster(workdir / "cluster", Settings(), report=log)
        try:
            cluster.up()
            install_crds(cluster)
            api = api_client(cluster.kubeconfig)
            if args.only in (None, "operator"):
                results["operator"] = operator_part(cluster, api, args, workdir)
            if args.only in (None, "bump"):
                results["bump"] = bump_side.run(api, cluster.kubeconfig, workdir, apps=args.bump_apps,
                                                hostile_per_kind=args.bump_hostile, rounds=args.bump_rounds,
                                                log=log)  # fmt: skip
        finally:
            cluster.down()
    results["wall_s"] = time.monotonic() - started
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if "operator" in results:
        print(operator_table(results["operator"]), end="\n\n")
    if "bump" in results:
        print(bump_table(results["bump"]), end="\n\n")
    print(f"whole run {results['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
