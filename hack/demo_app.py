"""The demo's cluster steps, with the Python Kubernetes client (kubectl is not needed on the machine).

    python hack/demo_app.py apply --kubeconfig K --namespace NS --image IMG --uri U --version V --sha256 S
                                  --connection-string CS
    python hack/demo_app.py wait  --kubeconfig K --namespace NS [--timeout 300]

`apply` creates or updates: the namespace, the `blob-credentials` Secret (the model store's
connection string, the ModelApp's `credentialsSecret`) and the ModelApp `iris` (2 replicas, a
LoadBalancer Service on port 80, model pinned to its version digest). `wait` polls until the
ModelApp is Ready, printing its conditions as they change, then prints `status.url` last.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from kubernetes import client, config

GROUP, VERSION, PLURAL, NAME = "modelapp.io", "v1alpha1", "modelapps", "iris"


def _upsert(create: Any, replace: Any, read: Any, body: Any) -> None:
    try:
        create(body)
    except client.ApiException as err:
        if err.status != 409:
            raise
        current = read()
        rv = current["metadata"]["resourceVersion"] if isinstance(current, dict) else current.metadata.resource_version
        if isinstance(body, dict):
            body["metadata"]["resourceVersion"] = rv
        else:
            body.metadata.resource_version = rv
        replace(body)


def apply(args: argparse.Namespace, api: client.ApiClient) -> None:
    core, custom, ns = client.CoreV1Api(api), client.CustomObjectsApi(api), args.namespace
    namespace = client.V1Namespace(metadata=client.V1ObjectMeta(name=ns))
    _upsert(core.create_namespace, lambda b: core.replace_namespace(ns, b), lambda: core.read_namespace(ns), namespace)
    secret = client.V1Secret(metadata=client.V1ObjectMeta(name="blob-credentials"),
                             string_data={"AZURE_STORAGE_CONNECTION_STRING": args.connection_string})
    _upsert(lambda b: core.create_namespaced_secret(ns, b),
            lambda b: core.replace_namespaced_secret("blob-credentials", ns, b),
            lambda: core.read_namespaced_secret("blob-credentials", ns), secret)
    app = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelApp", "metadata": {"name": NAME},
           "spec": {"image": args.image, "replicas": 2, "service": {"type": "LoadBalancer", "port": 80},
                    "model": {"uri": args.uri, "version": args.version, "sha256": args.sha256,
                              "credentialsSecret": "blob-credentials"}}}
    _upsert(lambda b: custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, b),
            lambda b: custom.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, NAME, b),
            lambda: custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, NAME), app)
    print(f"applied ModelApp {ns}/{NAME}: {args.uri} version {args.version}", file=sys.stderr)


def wait(args: argparse.Namespace, api: client.ApiClient) -> int:
    custom = client.CustomObjectsApi(api)
    deadline, last = time.monotonic() + args.timeout, ""
    while time.monotonic() < deadline:
        app = custom.get_namespaced_custom_object(GROUP, VERSION, args.namespace, PLURAL, NAME)
        status = app.get("status", {})
        conditions = {c["type"]: c for c in status.get("conditions", [])}
        line = ", ".join(f"{t}={c['status']}" for t, c in conditions.items())
        if line != last:
            print(f"  {line}  {conditions.get('Ready', {}).get('message', '')}", file=sys.stderr)
            last = line
        if conditions.get("Ready", {}).get("status") == "True" and status.get("urlSource") == "LoadBalancer":
            print(status["url"])
            return 0
        time.sleep(1)
    print(f"ModelApp {args.namespace}/{NAME} not Ready after {args.timeout}s", file=sys.stderr)
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("apply", "wait"))
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", default="demo")
    for flag in ("--image", "--uri", "--version", "--sha256", "--connection-string"):
        parser.add_argument(flag)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    api = config.new_client_from_config(config_file=args.kubeconfig)
    if args.command == "apply":
        apply(args, api)
        return 0
    return wait(args, api)


if __name__ == "__main__":
    raise SystemExit(main())
