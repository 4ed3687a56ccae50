"""`modelapp bump` wall time over good apps, with and without hostile rows beside them, in one run.

Contracts of the measurement:
- Each round is a fresh namespace: `apps` good ModelApps (images in Debian's docker-registry on
  127.0.0.1, `semver:^1.4`, 1.4.0 -> 1.5.0; models in a `file://` store the platform trusts,
  `numeric`, 1 -> 3), plus, in a "hostile" round, the hostile rows below in the same namespace.
- The time is `modelapp bump --namespace NS -o json --trusted-store file://...` as a subprocess, start to
  exit, so it includes what a CronJob run pays (interpreter start, listing, planning, patching).
- Each round measures every side in turn (clean, hostile, hostile without `hang`), so all see the same
  machine.
- The bump runs with its own store identity in its environment (Azurite's full connection string), the
  way a platform configures the CronJob: a hostile row must not be able to borrow it.

Hostile rows (each kind `per_kind` times):
- `hang`: an image on a registry that accepts connections and never answers (a 127.0.0.1 socket);
- `bad-bytes`: a model in Azurite whose credentials Secret holds bytes that are not text;
- `endpoint-only`: a model in Azurite whose Secret sets only the endpoint (and would like the bump's key);
- `regex`: an image whose tagFilter is `(a+)+`, in a repository holding a 121-character tag `a...ab`,
  which Python's `re` would take longer than the age of the universe to reject.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.tenancy.operator_side import CATASTROPHIC
from kubernetes import client
from tests.fixtures.azurite import Azurite, running_azurite
from tests.fixtures.net import free_port
from tests.fixtures.registry import Registry, _start, debian_registry
from tests.integration.test_bump_plan import publish

from modelapp_serving.publish import publish_version
from modelapp_serving.stores import open_store

GROUP, VERSION, PLURAL = "modelapp.io", "v1alpha1", "modelapps"
REPOSITORIES, PREFIXES = 10, 10
REGEX_TAG = "a" * 120 + "b"
HOSTILE_KINDS = ("hang", "bad-bytes", "endpoint-only", "regex")
#: The sides of the comparison, measured in turn each round: the hostile rows each adds.
SIDES = {"clean": (), "hostile": HOSTILE_KINDS, "hostile-no-hang": ("bad-bytes", "endpoint-only", "regex")}


@contextmanager
def silent_registry() -> Iterator[str]:
    """host:port of a 127.0.0.1 socket that accepts connections (the kernel's backlog) and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


@dataclass(frozen=True)
class Stage:
    """Everything the rounds share: the registries, the stores, where the bump's own identity comes from."""

    registry: Registry
    silent: str
    store_root: Path
    azurite: Azurite
    container: str
    kubeconfig: Path

    @property
    def azure_uri(self) -> str:
        return f"azureblob://{self.container}/models"


def _app(name: str, image: str, model: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelApp", "metadata": {"name": name},
            "spec": {"image": image, "model": model, "updates": updates}}  # fmt: skip


def good_apps(stage: Stage, count: int) -> list[dict[str, Any]]:
    return [_app(f"good-{i:04d}", f"{stage.registry.host}/bench/app-{i % REPOSITORIES}:1.4.0",
                 {"uri": f"file://{stage.store_root}/model-{i % PREFIXES}", "version": "1"},
                 {"image": {"policy": "semver:^1.4"}, "model": {"policy": "numeric"}})
            for i in range(count)]  # fmt: skip


def hostile_apps(stage: Stage, per_kind: int, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    pinned_model = {"uri": f"file://{stage.store_root}/model-0", "version": "1"}
    image = f"{stage.registry.host}/bench/app-0:1.4.0"
    numeric = {"model": {"policy": "numeric"}}
    found = []
    for i in range(per_kind):
        by_kind = {
            "hang": _app(f"hang-{i}", f"{stage.silent}/team/app-{i}:1.4.0", pinned_model,
                         {"image": {"policy": "semver:^1.4"}}),
            "bad-bytes": _app(f"bad-bytes-{i}", image,
                              {"uri": stage.azure_uri, "version": "1", "credentialsSecret": "bad-bytes"}, numeric),
            "endpoint-only": _app(f"endpoint-only-{i}", image,
                                  {"uri": stage.azure_uri, "version": "1", "credentialsSecret": "endpoint-only"},
                                  numeric),
            "regex": _app(f"regex-{i}", f"{stage.registry.host}/hostile/regex:1.4.0", pinned_model,
                          {"image": {"policy": "semver:^1.4", "tagFilter": CATASTROPHIC}}),
        }  # fmt: skip
        found += [by_kind[kind] for kind in kinds]
    return found


def hostile_secrets(stage: Stage) -> list[dict[str, Any]]:
    def secret(name: str, data: dict[str, bytes]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}  # fmt: skip

    return [secret("bad-bytes", {"AZURE_STORAGE_CONNECTION_STRING": b"\xff\xfe not text"}),
            secret("endpoint-only", {"AZURE_STORAGE_ACCOUNT_URL": stage.azurite.account_url.encode()})]  # fmt: skip


def bump(stage: Stage, namespace: str, *, timeout: float) -> tuple[float, int, list[dict[str, Any]]]:
    """One `modelapp bump` subprocess: wall seconds, exit code, rows."""
    command = [sys.executable, "-m", "modelapp_operator.cli", "bump", "--kubeconfig", str(stage.kubeconfig),
               "--namespace", namespace, "-o", "json", "--trusted-store", f"file://{stage.store_root}"]  # fmt: skip
    env = {**os.environ, "AZURE_STORAGE_CONNECTION_STRING": stage.azurite.connection_string()}
    t0 = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    wall = time.monotonic() - t0
    if not done.stdout:
        raise SystemExit(f"modelapp bump printed no report (exit {done.returncode}): {done.stderr[-2000:]}")
    return wall, done.returncode, json.loads(done.stdout)["rows"]


def round_once(api: client.ApiClient, stage: Stage, namespace: str, *, apps: int, per_kind: int,
               kinds: tuple[str, ...], timeout: float) -> dict[str, Any]:  # fmt: skip
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": namespace}})
    bodies = good_apps(stage, apps)
    if kinds:
        for secret in hostile_secrets(stage):
            core.create_namespaced_secret(namespace, secret)
        bodies += hostile_apps(stage, per_kind, kinds)
    for body in bodies:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    wall, code, rows = bump(stage, namespace, timeout=timeout)
    good = [row for row in rows if row["name"].startswith("good-")]
    outcome: dict[str, Any] = {
        "wall_s": wall, "exit": code, "load_avg_1m": os.getloadavg()[0],
        "good_patched": sum(row["result"] == "patched" for row in good), "good_rows": len(good),
    }  # fmt: skip
    for kind in kinds:
        mine = [row for row in rows if row["name"].rsplit("-", 1)[0] == kind and row.get("reason") != "pinned"]
        said = Counter(_said(row) for row in mine)
        outcome[kind] = [f"{count} x {text}" for text, count in said.most_common()]
    secret_text = stage.azurite.connection_string()
    if secret_text in json.dumps(rows):
        raise SystemExit("the bump's own connection string appears in its report")
    core.delete_namespace(namespace)
    return outcome


def _said(row: dict[str, Any]) -> str:
    """A row's outcome with the per-app parts (numbered names, the run's namespace) made alike."""
    text = f"{row['field']} {row['result']}: {row.get('reason') or ''}".rstrip(": ")
    return re.sub(r"(app|bump-[a-z-]+)-[0-9-]+", r"\1-N", text)


def python_re_seconds(length: int) -> float:
    """How long Python's `re` takes to reject `a` * length + `b` with the catastrophic filter (fullmatch)."""
    pattern = re.compile(CATASTROPHIC)
    t0 = time.perf_counter()
    pattern.fullmatch("a" * length + "b")
    return time.perf_counter() - t0


def re2_seconds(text: str) -> float:
    import re2  # type: ignore[import-untyped]  # the operator extra's RE2 binding, as the bump uses it

    pattern = re2.compile(CATASTROPHIC)
    best = float("inf")
    for _ in range(20):
        t0 = time.perf_counter()
        pattern.fullmatch(text)
        best = min(best, time.perf_counter() - t0)
    return best


def run(api: client.ApiClient, kubeconfig: Path, workdir: Path, *, apps: int, hostile_per_kind: int, rounds: int,
        log: Any) -> dict[str, Any]:  # fmt: skip
    """Start the registries and stores, then `rounds` clean/hostile pairs."""
    registry_run = _start("anonymous", workdir / "registry", debian_registry())
    registry = next(registry_run)
    azurite_port = free_port()
    try:
        with running_azurite(workdir, host="127.0.0.1", port=azurite_port), silent_registry() as silent:
            azurite = Azurite(azurite_port)
            container = "tenant-models"
            azurite.service().create_container(container)
            store = open_store(f"azureblob://{container}/models", env={"AZURE_STORAGE_CONNECTION_STRING":
                                                                      azurite.connection_string()})  # fmt: skip
            for version in ("1", "2"):
                source = workdir / f"azure-src-{version}" / "model.onnx"
                source.parent.mkdir()
                source.write_bytes(f"model {version}".encode())
                publish_version(store, version=version, sources=[source], model_format="onnx", entrypoint=None)
            log(f"bump: pushing {REPOSITORIES} repositories x 3 tags, publishing {PREFIXES} prefixes x 3 versions")
            for index in range(REPOSITORIES):
                for tag in ("1.4.0", "1.4.1", "1.5.0"):
                    registry.push(f"bench/app-{index}", tag, payload=b"benchmark layer")
            for tag in ("1.4.0", "1.5.0", REGEX_TAG):
                registry.push("hostile/regex", tag, payload=b"benchmark layer")
            store_root = workdir / "models"
            for index in range(PREFIXES):
                publish(store_root / f"model-{index}", "1", "2", "3")
            stage = Stage(registry, silent, store_root, azurite, container, kubeconfig)
            sides: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
            for index in range(rounds):
                for side, kinds in SIDES.items():
                    namespace = f"bump-{side}-{index}-{os.getpid()}"
                    outcome = round_once(api, stage, namespace, apps=apps, per_kind=hostile_per_kind, kinds=kinds,
                                         timeout=300)  # fmt: skip
                    log(f"  {side} round {index}: {outcome['wall_s']:.2f} s, exit {outcome['exit']}, "
                        f"{outcome['good_patched']}/{outcome['good_rows']} good rows patched")  # fmt: skip
                    sides[side].append(outcome)
    finally:
        for _ in registry_run:
            pass
    results: dict[str, Any] = {"apps": apps, "per_kind": hostile_per_kind, "rounds": sides}
    for side, outcomes in sides.items():
        results[side] = {"median_s": statistics.median(o["wall_s"] for o in outcomes),
                         "runs_s": [round(o["wall_s"], 2) for o in outcomes],
                         "good_patched": [o["good_patched"] for o in outcomes],
                         "exit": [o["exit"] for o in outcomes]}  # fmt: skip
    results["regex"] = {"python_re_20_s": python_re_seconds(20), "python_re_24_s": python_re_seconds(24),
                        "re2_121_us": 1e6 * re2_seconds(REGEX_TAG)}  # fmt: skip
    return results
