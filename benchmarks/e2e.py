"""Real pods: time from applying a ModelApp to its first answered request, and failed requests during rollouts.

    .venv/bin/python -m benchmarks.e2e [--sizes 10,100] [--rollouts 3] [--json FILE]

Setup (the end-to-end tier's own, from tests/fixtures/e2e.py): `modelapp-cluster up --real-node
--nodes 0` in a temporary folder, both images built from the Dockerfiles and pushed to the node's
registry, Azurite on the bridge, the operator installed by its chart. Then:
- cold start per model size: a fresh namespace, a version of `size` MiB published (the iris ONNX model
  plus random padding; the init container downloads and verifies every byte), the ModelApp created
  (2 replicas) and the clock stopped at the first 200 from `status.url`. The first run also pulls the
  serving image onto the node (reported as such); the others find it there.
- rollouts under steady load: version N+1 published, `modelapp bump` run, sequential requests to
  `status.url` the whole time, failures counted, until only N+1 answers.
Everything is torn down at the end (`modelapp-cluster down`). Needs root, like the real node.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tests.e2e.test_real_flow import Apps, _only_version, modelapp_body, steady_load, write_model
from tests.fixtures.e2e import (
    FlowImages,
    fresh_namespace,
    install_operator,
    modelapp_cli,
    poll,
    push,
    running_bridge_azurite,
    running_real_cluster,
)
from tests.fixtures.images import build_image

REPO = Path(__file__).resolve().parents[1]


def _answers(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def cold_start(ns: Any, work: Path, size_mib: int) -> dict[str, Any]:
    apps = Apps(ns)
    _, files = write_model(work / f"cold-{size_mib}", seed=0, pad_mib=size_mib)
    digest = ns.publish("1", *files)
    started = time.monotonic()
    apps.create(modelapp_body("iris", ns, "1", digest))
    url = poll(lambda: apps.ready("iris", "1"), timeout=600, what="Ready")
    ready = time.monotonic() - started
    poll(lambda: _answers(url), timeout=60, what="first answer")
    answered = time.monotonic() - started
    return {"size_mib": sum(f.stat().st_size for f in files) / 2**20, "ready_s": round(ready, 2),
            "first_answer_s": round(answered, 2)}


def rollouts(ns: Any, work: Path, count: int, rows: np.ndarray[Any, Any]) -> list[dict[str, Any]]:
    apps = Apps(ns)
    _, files = write_model(work / "r1", seed=0)
    apps.create(modelapp_body("roll", ns, "1", ns.publish("1", *files), updates={"model": {"policy": "numeric"}}))
    url = poll(lambda: apps.ready("roll", "1"), timeout=300, what="Ready")
    poll(lambda: _answers(url), timeout=60, what="first answer")
    results = []
    for version in range(2, count + 2):
        _, files = write_model(work / f"r{version}", seed=version)
        ns.publish(str(version), *files)
        with steady_load(url, rows) as load:
            poll(lambda: load.ok >= 5, timeout=30, what="load answers")
            started = time.monotonic()
            modelapp_cli("bump", "--namespace", ns.name, "--kubeconfig", str(ns.cluster.kubeconfig), timeout=120)
            poll(lambda v=str(version): apps.ready("roll", v), timeout=300, what=f"version {version} Ready")
            poll(lambda v=str(version): _only_version(url, v), timeout=60, what=f"only version {version} answering")
            seconds = time.monotonic() - started
        results.append({"to_version": version, "requests": load.ok + len(load.failures),
                        "failed": len(load.failures), "bump_to_only_new_s": round(seconds, 2),
                        "failures": load.failures[:3]})
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100", help="model sizes in MiB, comma separated")
    parser.add_argument("--rollouts", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from sklearn.datasets import load_iris

    rows = np.asarray(load_iris(return_X_y=True)[0][:8], dtype=np.float32)
    base = subprocess.run([str(REPO / "hack" / "base-image.sh")], capture_output=True, text=True, check=True,
                          timeout=1800).stdout.strip().splitlines()[-1]
    serving, operator = build_image("serving", base), build_image("operator", base)
    helm = Path(subprocess.run([str(REPO / "hack" / "install-helm.sh")], capture_output=True, text=True, check=True,
                               timeout=1800).stdout.strip().splitlines()[-1])
    report: dict[str, Any] = {"cold": [], "rollouts": []}
    with tempfile.TemporaryDirectory(prefix="e2ebench-") as tmp:
        work = Path(tmp)
        (work / "azurite").mkdir()
        with running_real_cluster(work / "cluster") as cluster, running_bridge_azurite(work / "azurite") as azurite:
            images = FlowImages(push(serving, "modelapp/serving"), push(operator, "modelapp/operator"))
            install_operator(cluster, images, helm)
            for size in (int(s) for s in args.sizes.split(",")):
                with fresh_namespace(cluster, azurite, images) as ns:
                    result = cold_start(ns, work, size)
                    result["image_on_node"] = bool(report["cold"])
                    report["cold"].append(result)
                    print(json.dumps(result), flush=True)
            with fresh_namespace(cluster, azurite, images) as ns:
                report["rollouts"] = rollouts(ns, work, args.rollouts, rows)
                print(json.dumps(report["rollouts"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
