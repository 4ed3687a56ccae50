"""What version cards and signature checks cost (issue 14): publish, the smoke test, the bump's plan.

    .venv/bin/python -m benchmarks.signatures [--runs 5]

Real components on 127.0.0.1, as the tests start them: a `file://` store, a real `modelapp-serving serve`
with a published-and-fetched iris ONNX version, Debian's docker-registry. Prints one JSON object:

- publish: seconds to publish the same ONNX file as `custom` (no card derived: the cost before cards) and as
  `onnx` with acceptance examples (the model loaded for its signature and run on its examples), medians;
- smoke: seconds for one pod's check with the ModelApp's own golden request, and with the version's examples
  (one GET of the card, its sha256, then the same request), medians;
- bump: registry requests and seconds to plan 30 apps on 3 repositories whose newest images carry a
  signature label, and the same with unlabelled images: both read the proposed digest's manifest and config
  (2 GETs per digest, once per run) to learn whether there is a label; before signatures the plan made 6
  requests here (3 listings, 3 digest HEADs), now 12.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fixtures.models import ModelDir, start_serve, stop_serve
from tests.fixtures.registry import running_registry
from tests.integration.test_signatures import accepts, onnx_model

from modelapp_operator import smoke
from modelapp_operator.bump import plan_app
from modelapp_operator.discovery import ModelCatalog, TagCatalog
from modelapp_operator.registry import RegistryClient
from modelapp_operator.signatures import LABEL
from modelapp_operator.spec import SmokeTest
from modelapp_serving.card import CARD_NAME
from modelapp_serving.fetch import fetch_version
from modelapp_serving.publish import publish_version
from modelapp_serving.stores import open_store


def _median(step: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 4)


def measure_publish(root: Path, runs: int) -> dict[str, float]:
    made = onnx_model(root / "model", 4)
    store = open_store(f"file://{root / 'store'}")
    count = iter(range(1_000_000))

    def publish(model_format: str, **card: Any) -> None:
        publish_version(store, version=str(next(count)), sources=[made.path], model_format=model_format,  # type: ignore[arg-type]
                        entrypoint=None, **card)  # fmt: skip

    return {"custom_no_card_s": _median(lambda: publish("custom"), runs),
            "onnx_with_examples_s": _median(lambda: publish("onnx", examples=made.examples()), runs)}  # fmt: skip


def measure_smoke(root: Path, runs: int) -> dict[str, float]:
    made = onnx_model(root / "smoke-model", 4)
    store = open_store(f"file://{root / 'smoke-store'}")
    digest = publish_version(store, version="1", sources=[made.path], model_format="onnx", entrypoint=None,
                             examples=made.examples())  # fmt: skip
    fetch_version(store, version="1", dest=root / "fetched", pinned=digest)
    server = start_serve(ModelDir(root / "fetched", digest, "1"), "iris", (), None)
    try:
        server.wait_ready()
        transport = smoke.http_transport(server.url)
        own = SmokeTest.model_validate(made.examples().model_dump(mode="json", by_alias=True, exclude_none=True))
        wanted = smoke.VersionExamples(hashlib.sha256((root / "fetched" / CARD_NAME).read_bytes()).hexdigest())
        assert smoke.check_one(own, "iris", transport).passed and smoke.check_one(wanted, "iris", transport).passed
        own_s = _median(lambda: smoke.check_one(own, "iris", transport), runs * 4)
        card_s = _median(lambda: smoke.check_one(wanted, "iris", transport), runs * 4)
        return {"own_golden_request_s": own_s, "version_examples_s": card_s}
    finally:
        stop_serve(server)


def measure_bump(root: Path) -> dict[str, dict[str, float]]:
    store_root = root / "bump-store"
    store = open_store(f"file://{store_root}")
    for version in ("1", "2"):
        publish_version(store, version=version, sources=[onnx_model(root / f"bump-{version}", 4).path],
                        model_format="onnx", entrypoint=None)  # fmt: skip
    out: dict[str, dict[str, float]] = {}
    with running_registry("anonymous", root / "registry", host="127.0.0.1") as registry:
        for kind in ("unlabelled", "labelled"):
            repositories = [registry.fresh_repository() for _ in range(3)]
            for repository in repositories:
                registry.push(repository, "1.0.0")
                registry.push(repository, "1.1.0", labels={LABEL: accepts(4)} if kind == "labelled" else None)
            tags = TagCatalog(RegistryClient())
            models = ModelCatalog(lambda key: open_store(key.uri))
            apps = [{"metadata": {"namespace": "ml", "name": f"app-{i}", "resourceVersion": "1"},
                     "spec": {"image": f"{registry.host}/{repositories[i % 3]}:1.0.0",
                              "model": {"uri": f"file://{store_root}", "version": "1"},
                              "updates": {"image": {"policy": "semver:^1"}, "model": {"policy": "numeric"}}}}
                    for i in range(30)]  # fmt: skip
            started = time.perf_counter()
            plans = [plan_app(app, tags=tags, models=models) for app in apps]
            seconds = time.perf_counter() - started
            assert all(plan.patch is not None for plan in plans)
            out[kind] = {"apps": 30, "registry_requests": tags.client.requests_made,
                         "store_requests": models.request_count(), "seconds": round(seconds, 3)}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        result = {"publish": measure_publish(root, args.runs), "smoke": measure_smoke(root, args.runs),
                  "bump": measure_bump(root)}  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
