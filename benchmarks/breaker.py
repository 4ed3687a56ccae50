"""The fleet circuit breaker on the real node: N apps on one image, a broken image pushed, one bump run under load.

    sudo flock /tmp/real-node.lock .venv/bin/python -m benchmarks.breaker [--apps 6] [--cap 2] [--no-build]

Setup (the end-to-end tier's own, tests/fixtures/e2e.py): `modelapp-cluster up --real-node --nodes 0` in a
temporary folder, both images built from the Dockerfiles and pushed to the node's registry, Azurite on the
bridge, the operator installed by its chart. The app image is the serving image pushed as
`modelapp/fleet-app:1.0.0`; the broken release `1.1.0` is the same image whose `modelapp-serving` exits at
once (a release that crashes on start), so its pods never become ready and the Deployment misses its
progress deadline (20 s). Every app: 2 replicas, model version 1 from Azurite, `updates.image.policy:
semver:^1.0`. Then, with sequential requests to every app's `status.url` the whole time (one loop per
app), one `modelapp bump --max-rollouts CAP` run; "tried" is counted from the cluster (apps owning a
ReplicaSet whose template runs 1.1.0), failed requests from the loops, and a second bump run shows that no
further app tries it. Everything is torn down at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from kubernetes import client
from tests.e2e.test_real_flow import Apps, modelapp_body, steady_load, write_model
from tests.fixtures.e2e import (
    REGISTRY,
    FlowImages,
    fresh_namespace,
    install_operator,
    poll,
    push,
    running_bridge_azurite,
    running_real_cluster,
)
from tests.fixtures.images import Image, build_image

REPO = Path(__file__).resolve().parents[1]
APP_REPO = "modelapp/fleet-app"
BROKEN_DOCKERFILE = """\
FROM {serving}
USER 0
RUN mkdir -p /opt/broken && printf '#!/bin/sh\\necho "release 1.1.0 is broken on purpose" >&2\\nexit 1\\n' \\
    > /opt/broken/modelapp-serving && chmod 755 /opt/broken/modelapp-serving
USER 1000:1000
ENV PATH=/opt/broken:/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
"""


def _docker(*args: str, timeout: float = 600) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=timeout).stdout


def push_as(image: str, tag: str) -> str:
    ref = f"{REGISTRY}/{APP_REPO}:{tag}"
    _docker("tag", image, ref)
    _docker("push", "--quiet", ref)
    return ref


def broken_image(serving: str, work: Path) -> str:
    (work / "broken").mkdir()
    (work / "broken" / "Dockerfile").write_text(BROKEN_DOCKERFILE.format(serving=serving))
    subprocess.run(
        ["docker", "build", "--quiet", "-t", "modelapp/fleet-app:broken", str(work / "broken")],
        check=True,
        capture_output=True,
        timeout=600,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    return "modelapp/fleet-app:broken"


def tried(apps: Apps, image: str) -> set[str]:
    sets = client.AppsV1Api(apps.core.api_client).list_namespaced_replica_set(apps.ns).items
    return {
        rs.metadata.labels["app.kubernetes.io/instance"]
        for rs in sets
        if (rs.spec.template.metadata.annotations or {}).get("modelapp.io/image") == image
    }


def bump(kubeconfig: Path, namespace: str, cap: int) -> tuple[int, dict[str, Any], float]:
    command = [
        str(Path(sys.executable).parent / "modelapp"),
        "bump",
        "--namespace",
        namespace,
        "--kubeconfig",
        str(kubeconfig),
        "--max-rollouts",
        str(cap),
        "--rollout-timeout",
        "300",
        "-o",
        "json",
    ]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout), time.monotonic() - started


def scenario(
    ns: Any, work: Path, good: str, bad_local: str, *, count: int, cap: int, rows: np.ndarray[Any, Any]
) -> dict[str, Any]:
    apps = Apps(ns)
    _, files = write_model(work / "v1", seed=0)
    digest = ns.publish("1", *files)
    names = [f"app-{i:02d}" for i in range(count)]
    for name in names:
        apps.create(
            modelapp_body(
                name,
                ns,
                "1",
                digest,
                image=good,
                rollout={"progressDeadlineSeconds": 20, "autoRollback": True},
                updates={"image": {"policy": "semver:^1.0"}, "model": {"policy": "pinned"}},
            )
        )
    urls = {name: poll(lambda n=name: apps.ready(n, "1"), timeout=600, what=f"{name} Ready") for name in names}
    broken = push_as(bad_local, "1.1.0")
    with ExitStack() as stack:
        loads = {name: stack.enter_context(steady_load(url, rows, limit_s=900)) for name, url in urls.items()}
        poll(lambda: all(load.ok >= 3 for load in loads.values()), timeout=120, what="every load loop answering")
        code, report, seconds = bump(ns.cluster.kubeconfig, ns.name, cap)
        first = tried(apps, broken)
        code2, report2, _ = bump(ns.cluster.kubeconfig, ns.name, cap)
        time.sleep(5)  # a few more answers from every app after both runs
    second = tried(apps, broken) - first
    result = {
        "apps": count,
        "cap": cap,
        "tried_first_run": len(first),
        "tried_second_run": len(second),
        "held_first_run": len(report["breaker"]["held"]),
        "exit_codes": [code, code2],
        "first_run_s": round(seconds, 1),
        "rollouts": report["breaker"]["rollouts"],
        "held_second_run": sum(r["result"] == "held" for r in report2["rows"] if r["field"] == "image"),
        "requests": sum(load.ok + len(load.failures) for load in loads.values()),
        "failed_requests": sum(len(load.failures) for load in loads.values()),
        "failures": [f for load in loads.values() for f in load.failures][:5],
        "canaries_serving_again": sum(apps.condition(n, "RolledBack").get("status") == "True" for n in first),
    }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=6)
    parser.add_argument("--cap", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--no-build",
        action="store_true",
        help="use modelapp/serving:dev and modelapp/operator:dev as they are (built beforehand)",
    )
    args = parser.parse_args()
    from sklearn.datasets import load_iris

    rows = np.asarray(load_iris(return_X_y=True)[0][:8], dtype=np.float32)
    base = (
        subprocess.run([str(REPO / "hack" / "base-image.sh")], capture_output=True, text=True, check=True, timeout=1800)
        .stdout.strip()
        .splitlines()[-1]
    )
    if args.no_build:
        serving, operator = Image("modelapp/serving:dev", 0), Image("modelapp/operator:dev", 0)
    else:
        serving, operator = build_image("serving", base), build_image("operator", base)
    helm = Path(
        subprocess.run(
            [str(REPO / "hack" / "install-helm.sh")], capture_output=True, text=True, check=True, timeout=1800
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    with tempfile.TemporaryDirectory(prefix="breakerbench-") as tmp:
        work = Path(tmp)
        (work / "azurite").mkdir()
        bad_local = broken_image(serving.name, work)
        with running_real_cluster(work / "cluster") as cluster, running_bridge_azurite(work / "azurite") as azurite:
            images = FlowImages(push(serving, "modelapp/serving"), push(operator, "modelapp/operator"))
            install_operator(cluster, images, helm)
            good = push_as(serving.name, "1.0.0")
            with fresh_namespace(cluster, azurite, images) as ns:
                result = scenario(ns, work, good, bad_local, count=args.apps, cap=args.cap, rows=rows)
    print(json.dumps(result, indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
