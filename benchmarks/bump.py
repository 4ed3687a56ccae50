"""Benchmark: one `modelapp bump` pass over 1,000 ModelApps, 50 image repositories, 50 model prefixes.

Needs the local cluster up (`modelapp-cluster up`) and Debian's docker-registry installed. It
starts a registry on 127.0.0.1, pushes 3 tags to each of 50 repositories, publishes 3 versions
under each of 50 prefixes of a `file://` store, creates 1,000 ModelApps in a fresh namespace, runs
one bump pass (patching) and prints the wall time and the request counts: the client's own
counters and the registry's access log.

    .venv/bin/python -m benchmarks.bump
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

from kubernetes import client, config
from tests.fixtures.registry import _start, debian_registry
from tests.integration.test_bump_plan import publish

from modelapp_devcluster import LocalCluster, default_state_dir
from modelapp_operator import kube
from modelapp_operator.bump import run_bump
from modelapp_operator.registry import RegistryClient

APPS, REPOSITORIES, PREFIXES = 1000, 50, 50


def main() -> None:
    cluster = LocalCluster(default_state_dir())
    if not cluster.is_up():
        raise SystemExit("start the local cluster first: modelapp-cluster up")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        registry_run = _start("anonymous", root / "registry", debian_registry())
        registry = next(registry_run)
        repositories = [f"bench/app-{index}" for index in range(REPOSITORIES)]
        for repository in repositories:
            for tag in ("1.4.0", "1.4.1", "1.5.0"):
                registry.push(repository, tag, payload=b"benchmark layer")
        prefixes = [root / "models" / f"model-{index}" for index in range(PREFIXES)]
        for prefix in prefixes:
            publish(prefix, "1", "2", "3")
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
        custom = client.CustomObjectsApi(api)
        started = time.monotonic()
        for index in range(APPS):
            spec = {
                "image": f"{registry.host}/{repositories[index % REPOSITORIES]}:1.4.0",
                "model": {"uri": f"file://{prefixes[index % PREFIXES]}", "version": "1"},
                "updates": {"image": {"policy": "semver:^1.4"}, "model": {"policy": "numeric"}},
            }
            body = {"apiVersion": "modelapp.io/v1alpha1", "kind": "ModelApp", "metadata": {"name": f"app-{index}"}}
            custom.create_namespaced_custom_object(
                "modelapp.io", "v1alpha1", namespace, "modelapps", body | {"spec": spec}
            )
        created = time.monotonic() - started
        before = registry.request_count()
        registry_client = RegistryClient()
        started = time.monotonic()
        kube.use_kubeconfig(str(cluster.kubeconfig))
        outcome = run_bump(
            namespace=namespace, dry_run=False, registry=registry_client, trusted_stores=[f"file://{root}"]
        )
        elapsed = time.monotonic() - started
        patched = sum(1 for row in outcome.rows if row.result == "patched")
        failed = sum(1 for row in outcome.rows if row.result == "failed")
        print(f"created {APPS} ModelApps in {created:.1f}s")
        print(f"bump pass: {elapsed:.2f}s wall, {patched} fields patched, {failed} failed")
        print(
            f"registry requests: client {outcome.registry_requests}, registry log {registry.request_count() - before}"
        )
        listings, heads = registry.request_count("/tags/list"), registry.request_count("/manifests/", "HEAD")
        print(f"  tags/list: {listings}, manifest HEAD: {heads}")
        print(f"storage requests: {outcome.storage_requests}")
        client.CoreV1Api(api).delete_namespace(namespace)
        for _ in registry_run:
            pass


if __name__ == "__main__":
    main()
