"""Operator configuration: environment variables and `modelapp run` flags, parsed once into one object.

Environment (all optional except where noted in the chart):
- `MODELAPP_SERVING_IMAGE`: the image of the `fetch-model` init container (docs/contracts.md).
- `MODELAPP_WATCH_SERVER_TIMEOUT` (s, default 300): the API server ends each watch after this, so a
  silently dead watch connection is replaced at least this often (kopf's known silent-hang issue).
- `MODELAPP_WATCH_CLIENT_TIMEOUT` (s, default 330): the client gives up on a watch that is quiet longer.
- `MODELAPP_WATCH_CONNECT_TIMEOUT` (s, default 10).
- `MODELAPP_PEERING_LIFETIME` (s, default 30): how long a replica's keep-alive counts; a replica that
  died without saying goodbye (SIGKILL, node loss) blocks lower-priority replicas for at most this long.
- `MODELAPP_REVISION_HISTORY` (default 5): old ReplicaSets kept per Deployment (rollback material).
- `MODELAPP_POSTING_LEVEL` (default WARNING): the lowest log level kopf posts as Kubernetes Events.
  Not INFO: kopf would post an Event for every handled child event, doubling the API writes.
- `MODELAPP_WORKERS` (default 12): kopf's handler threads (ModelApp events; child events have their own).
  Not more: a reconcile that creates a Service waits for the API server's ClusterIP allocation, which gets
  slower the more run at once (1,000-app burst: 81 s with 32, 65 s with 12, 69 s with 6; a Service apply
  took 2.1 s, 0.58 s, 0.24 s). The API client's connection pool (`kube.POOL_SIZE`) is larger than both.
- `MODELAPP_OBJECT_WORKERS` (default 32; 0: no limit, kopf's own default): how many objects of one kind kopf
  handles at once. The others wait as their last watch event (a few KiB) rather than as a whole handling
  state (kopf's causes, body views, coroutines and contexts: ~30 KiB per object), which set the operator's peak
  memory in a burst (1,000 ModelApps at once: 129 MiB without a limit, 108 MiB with 24; docs/scaling.md).
  One namespace holds at most three quarters of them (fairness.namespace_share): 24, twice `MODELAPP_WORKERS`
  (more slots than handler threads only hold memory; fewer would leave threads idle); the other 8 only other
  namespaces may take, so a tenant's burst never has them all (docs/security.md, "Stalling the fleet").
- `MODELAPP_SMOKE_TRANSPORT` (default direct): how the smoke test reaches a new revision's pods: `direct`
  (their IPs; the operator runs in the cluster's pod network, no RBAC on pods/proxy) or `proxy` (the API
  server's pod proxy, for an operator outside the pod network; the chart then grants create on pods/proxy).
- `MODELAPP_INGRESS_HOSTS`: JSON `{"namespace": ["host suffix", ...]}` (the chart's `operator.ingressHosts`):
  when set, a ModelApp's `spec.ingress.host` must be a suffix of its namespace's list or under one, and a
  namespace not listed may route no host (docs/security.md, "Host names"). Unset: any host, first claim wins.
- `MODELAPP_OPERATOR_NAMESPACE` (the chart sets it from the pod's own namespace) and `MODELAPP_SMOKE_KEY_SECRET`
  (default `modelapp-smoke-key`): where the operator keeps the key its smoke tokens are derived from, for
  ModelApps with `auth` (docs/security.md, "Endpoint authentication"); created once when
  missing. Unset namespace: the service account's own when in a pod.
- `MODELAPP_NAMESPACES` (comma separated) / `MODELAPP_ALL_NAMESPACES=true`: defaults for the flags.
- `MODELAPP_SHARD` / `MODELAPP_SHARD_DEFAULT=true`: defaults for `--shard` and `--shard-default`: this
  replica handles only the ModelApps labelled `modelapp.io/shard=<shard>` (and, with the default flag, those
  with no such label), with a peering object of its own (docs/scaling.md).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from modelapp_operator import __version__

DEFAULT_SERVING_IMAGE = f"modelapp-serving:{__version__}"
DEFAULT_PEERING = "modelapp"
DEFAULT_SMOKE_KEY_SECRET = "modelapp-smoke-key"  # noqa: S105 (a Secret's name)
#: A shard's name is a DNS label (it names the shard's peering object, `modelapp-shard-<name>`).
_SHARD_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?")


class ConfigError(ValueError):
    """A setting has a value the operator cannot use."""


@dataclass(frozen=True)
class OperatorConfig:
    """Everything the handlers need to know about how they were started."""

    serving_image: str = DEFAULT_SERVING_IMAGE
    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    peering: str = DEFAULT_PEERING
    standalone: bool = False
    priority: int = 0
    liveness: str | None = None
    server_timeout: int = 300
    client_timeout: int = 330
    connect_timeout: int = 10
    revision_history: int = 5
    peering_lifetime: int = 30
    posting_level: str = "WARNING"
    workers: int = 12
    #: kopf's `queueing.worker_limit` per watched kind (0: none).
    object_workers: int = 32
    smoke_transport: str = "direct"
    #: Where the smoke-token key Secret lives (None: the pod's own namespace, when the operator runs in one).
    operator_namespace: str | None = None
    smoke_key_secret: str = DEFAULT_SMOKE_KEY_SECRET
    #: Allowed host suffixes per namespace for spec.ingress (None: no list, any host; hosts.refusal).
    ingress_hosts: Mapping[str, tuple[str, ...]] | None = None
    #: The shard this replica serves (None: every ModelApp, whatever its `modelapp.io/shard` label).
    shard: str | None = None
    #: With `shard`: also the ModelApps that carry no shard label (one shard of a fleet should say so).
    shard_default: bool = False

    def owns(self, shard_label: str | None) -> bool:
        """Whether this replica handles a ModelApp whose `modelapp.io/shard` label is this (None: no label)."""
        if self.shard is None:
            return True
        return shard_label == self.shard if shard_label is not None else self.shard_default


def check_shard(name: str) -> str:
    """A shard name as given, or ConfigError saying what a shard name may be."""
    if not _SHARD_NAME.fullmatch(name):
        raise ConfigError(f"shard {name!r}: a shard name is 1-40 lower-case letters, digits and '-', starting and "
                          f"ending with a letter or digit (the value of the modelapp.io/shard label)")  # fmt: skip
    return name


def shard_peering(shard: str) -> str:
    """The peering object of a shard's replicas: each shard elects its own acting replica."""
    return f"{DEFAULT_PEERING}-shard-{shard}"

#: A host suffix: DNS labels joined by '.', lowercase (spec.HOST_PATTERN's shape; settings sit below the spec).
_HOST_SUFFIX = re.compile(r"(?:[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?\.)*[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")


def ingress_hosts(raw: str | None) -> dict[str, tuple[str, ...]] | None:
    """`MODELAPP_INGRESS_HOSTS` parsed: namespace -> allowed host suffixes; None when unset or empty."""
    if not raw or not raw.strip():
        return None
    what = 'MODELAPP_INGRESS_HOSTS must be a JSON object {"namespace": ["host suffix", ...]}'
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what}, not {type(data).__name__}")
    out: dict[str, tuple[str, ...]] = {}
    for namespace, suffixes in data.items():
        if not isinstance(suffixes, list) or not all(isinstance(s, str) for s in suffixes):
            raise ConfigError(f"{what}: the value of {namespace!r} is not a list of strings")
        bad = [s for s in suffixes if len(s) > 253 or not _HOST_SUFFIX.fullmatch(s)]
        if bad:
            raise ConfigError(f"MODELAPP_INGRESS_HOSTS: {bad[0]!r} (namespace {namespace!r}) is not a DNS name; "
                              f"write a suffix such as ml.example.com, no wildcard or leading dot")  # fmt: skip
        out[str(namespace)] = tuple(suffixes)
    return out


def _int(env: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r}: not an integer") from None
    if not low <= value <= high:
        raise ConfigError(f"{key}={value}: must be between {low} and {high}")
    return value


def from_env(env: Mapping[str, str] | None = None) -> OperatorConfig:
    """Read the environment (os.environ by default); raise ConfigError with the variable's name."""
    env = os.environ if env is None else env
    level = env.get("MODELAPP_POSTING_LEVEL", "WARNING").upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError(f"MODELAPP_POSTING_LEVEL={level!r}: not a log level")
    transport = env.get("MODELAPP_SMOKE_TRANSPORT", "direct")
    if transport not in {"direct", "proxy"}:
        raise ConfigError(f"MODELAPP_SMOKE_TRANSPORT={transport!r}: use direct (pod IPs) or proxy (the API server's)")
    namespaces = tuple(ns.strip() for ns in env.get("MODELAPP_NAMESPACES", "").split(",") if ns.strip())
    shard = env.get("MODELAPP_SHARD") or None
    return OperatorConfig(
        serving_image=env.get("MODELAPP_SERVING_IMAGE") or DEFAULT_SERVING_IMAGE,
        namespaces=namespaces,
        all_namespaces=env.get("MODELAPP_ALL_NAMESPACES", "").lower() in {"1", "true", "yes"},
        server_timeout=_int(env, "MODELAPP_WATCH_SERVER_TIMEOUT", 300, 10, 3600),
        client_timeout=_int(env, "MODELAPP_WATCH_CLIENT_TIMEOUT", 330, 15, 3700),
        connect_timeout=_int(env, "MODELAPP_WATCH_CONNECT_TIMEOUT", 10, 1, 120),
        revision_history=_int(env, "MODELAPP_REVISION_HISTORY", 5, 0, 100),
        peering_lifetime=_int(env, "MODELAPP_PEERING_LIFETIME", 30, 15, 600),
        posting_level=level,
        workers=_int(env, "MODELAPP_WORKERS", 12, 1, 60),
        object_workers=_int(env, "MODELAPP_OBJECT_WORKERS", 32, 0, 10000),
        smoke_transport=transport,
        operator_namespace=env.get("MODELAPP_OPERATOR_NAMESPACE") or None,
        smoke_key_secret=env.get("MODELAPP_SMOKE_KEY_SECRET") or DEFAULT_SMOKE_KEY_SECRET,
        ingress_hosts=ingress_hosts(env.get("MODELAPP_INGRESS_HOSTS")),
        shard=check_shard(shard) if shard else None,
        shard_default=env.get("MODELAPP_SHARD_DEFAULT", "").lower() in {"1", "true", "yes"},
    )
