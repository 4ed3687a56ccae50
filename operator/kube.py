"""The one module that talks to the Kubernetes API (synchronous; kopf runs sync handlers in threads).

Every write is either a server-side apply under the single field manager `modelapp-operator` (so
reconcile is idempotent and a field someone else changed is taken back: `force=true`), a JSON merge
patch of a ModelApp's `status` subresource, or a delete. Objects travel as plain dicts.

What happens on errors, per call (first, for every call: a 429, or for a GET a 5xx with Retry-After, is sent again
after the wait the server asks, up to THROTTLE_RETRIES times, and within `throttle_budget` only while the budget
lasts; no answer at all raises `ApiError` with status 0; `transient` tells the callers which errors are worth a
later try):
- `apply`: creates or updates; 404 is impossible for the object itself but happens when its
  namespace is gone, and a create in a namespace being deleted is a 403 NamespaceTerminating (both raised as
  `Gone`); 409 cannot happen with force=true; anything else raises
  `ApiError` and the engine tries the pass again (engine.BUSY_RETRY_SECONDS, doubling).
- `patch_status`: returns the ModelApp as stored; 404 (the ModelApp was deleted meanwhile) returns None;
  no 409 (merge patches carry no resourceVersion).
- `delete`: 404 returns False (already gone, which is what we wanted).
- `get`: 404 returns None; `list_objects` and `list_names`: an empty namespace gives an empty list (pages of 500 are
  followed to the end; a 410 for an expired continue token raises `ApiError`, the caller lists again).
- `patch`: merge patch of an object (metadata/spec); 404 raises `Gone`, 409 (a stale
  `metadata.resourceVersion` in the patch) raises `ApiError` with status 409 for the caller to re-read.
- `create`: POST; 409 (exists) and 403 (RBAC) raise `ApiError` with that status.
- `secret_data`: a Secret's decoded data; 404 returns None, 403 raises `ApiError`.
- `name_taken`: whether a name is taken, by a dry-run create (never a read); 409 is the answer True; 403 raises
  `ApiError`.
- `ensure_secret_key`: the operator's own key Secret, created once when missing; 409 (another replica created it
  first) reads that one; 403 raises `ApiError`.

Who uses it: the operator's handlers and engine, `modelapp bump`, `modelapp rollback`, `modelapp run`; the
configuration (kubeconfig or in-cluster) is chosen once per process (`use_kubeconfig` to change it).
- `pod_proxy_post`: never raises for HTTP errors of the pod: its status and body come back as they are
  (the API server's own 503 for an unreachable pod too); transport failures raise `ApiError`.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import functools
import itertools
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.util.retry import Retry

from modelapp_operator import deepjson
from modelapp_operator.names import GROUP, LABEL_MANAGED_BY, MANAGER, PLURAL, VERSION

Obj = dict[str, Any]

#: Kept-alive connections to the API server. The client's default (5 x CPUs, 10 here) is below the
#: operator's worker threads: every request beyond it opened a new TLS connection and threw it away.
POOL_SIZE = 64

#: A request the API server throttled (`_throttled`) is sent again up to this many times (client-go: 10), waiting
#: what the server asked, at most THROTTLE_WAIT_SECONDS each; then the caller gets the ApiError (`transient`).
THROTTLE_RETRIES = 3
THROTTLE_WAIT_SECONDS = 5.0

#: What the requests within `throttle_budget` may still sleep in all for the server's Retry-After (seconds, in a
#: list so the context's requests share it); None outside: THROTTLE_RETRIES waits per request.
_budget: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar("modelapp_throttle_budget", default=None)

#: REST collection of each kind we touch: (API prefix, plural).
_COLLECTIONS = {
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Service": ("/api/v1", "services"),
    "Pod": ("/api/v1", "pods"),
    "Secret": ("/api/v1", "secrets"),
    "Event": ("/api/v1", "events"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "Ingress": ("/apis/networking.k8s.io/v1", "ingresses"),
    "ModelApp": (f"/apis/{GROUP}/{VERSION}", PLURAL),
    "KopfPeering": ("/apis/kopf.dev/v1", "kopfpeerings"),
    "ClusterKopfPeering": ("/apis/kopf.dev/v1", "clusterkopfpeerings"),
    "CustomResourceDefinition": ("/apis/apiextensions.k8s.io/v1", "customresourcedefinitions"),
}


class ApiError(RuntimeError):
    """An API call failed in a way the caller cannot fix (the handler retries later)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Gone(ApiError):
    """The object's namespace no longer exists or is being deleted (a create there is a 403 NamespaceTerminating),
    or the object itself does not (404)."""


#: Where a pod's service account says which namespace it runs in.
SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def use_kubeconfig(path: str | None) -> None:
    """Talk to the cluster of this kubeconfig from now on (None: $KUBECONFIG / in-cluster as before)."""
    if path:
        os.environ["KUBECONFIG"] = path
    api_client.cache_clear()


def _kubeconfig_path() -> str | None:
    return os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None


def default_namespace() -> str:
    """The namespace a command acts on when none is given: the pod's own when in a cluster, else the
    kubeconfig's current context's, else `default`."""
    if SA_NAMESPACE.is_file() and not _kubeconfig_path():
        return SA_NAMESPACE.read_text().strip() or "default"
    try:
        _, active = config.list_kube_config_contexts(config_file=_kubeconfig_path())  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError):
        return "default"
    return str((active or {}).get("context", {}).get("namespace") or "default")


@functools.cache
def api_client() -> client.ApiClient:
    """$KUBECONFIG when set (`use_kubeconfig`), else the pod's service account, else ~/.kube/config."""
    configuration = client.Configuration()
    configuration.connection_pool_maxsize = POOL_SIZE
    # urllib3's default also sends a GET again on a 429 or 503 with Retry-After (for as long as the server asks);
    # `_call` does that for every method, bounded, so urllib3 keeps only its retries of failed connections.
    configuration.retries = Retry(total=3, respect_retry_after_header=False)
    # The library reads $KUBECONFIG once at import; read it at call time instead.
    path = _kubeconfig_path()
    if path is None:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return client.ApiClient(configuration)
        except config.ConfigException:
            pass  # not in a pod
    config.load_kube_config(config_file=path, client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration)


def _path(kind: str, name: str | None, namespace: str | None, sub: str = "") -> str:
    prefix, plural = _COLLECTIONS[kind]
    where = f"/namespaces/{namespace}" if namespace else ""
    return f"{prefix}{where}/{plural}" + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


def _call(method: str, path: str, *, body: Any = None, query: Mapping[str, Any] | None = None,
          content_type: str | None = None, accept: str = "application/json") -> Obj:  # fmt: skip
    """One request; JSON in and out. Raises ApiError (Gone for 404) with the server's message."""
    api = api_client()
    headers = {"Accept": accept, **({"Content-Type": content_type} if content_type else {})}
    params = api.param_serialize(
        method, path, query_params=list((query or {}).items()), header_params=headers, body=body,
        auth_settings=["BearerToken"],
    )  # fmt: skip
    for attempt in itertools.count():
        try:
            response = api.call_api(*params, _request_timeout=(10, 60))
            response.read()  # type: ignore[no-untyped-call]
        except ApiException as exc:  # transport-level failures; HTTP errors come back as responses
            raise ApiError(int(exc.status or 0), _message(exc.body) or str(exc.reason)) from None
        except urllib3.exceptions.HTTPError as exc:  # no answer: timed out, refused, reset (`transient`)
            raise ApiError(0, f"no answer from the API server: {type(exc).__name__}: {exc}") from None
        wait = _throttled(method, response.status, response.getheader("Retry-After"))  # type: ignore[no-untyped-call]
        if wait is None or attempt >= THROTTLE_RETRIES or not _spend(wait):
            break
        time.sleep(wait)  # the API server asked us to come back (for a 429: it did not process this request)
    if response.status >= 400:
        message = _message(response.data) or str(response.reason)
        gone = response.status == 404 or (response.status == 403 and _namespace_terminating(response.data))
        raise (Gone if gone else ApiError)(response.status, message)
    return cast(Obj, deepjson.loads(response.data or b"{}"))  # any depth: deepjson.py says why


def _throttled(method: str, status: int, retry_after: str | None) -> float | None:
    """Seconds to wait before sending a request again, when the API server asked for that; else None. A 429 (API
    Priority and Fairness rejecting it, or "storage is (re)initializing" right after a CRD appears) was not
    processed, so any request may be sent again. A 5xx with Retry-After (client-go resends those) may have been
    processed (a timeout after etcd took the write), so only a read is sent again: a write guarded by a
    resourceVersion would come back as a conflict with its own first copy. The wait is the server's Retry-After,
    1 s when it gives none, at most THROTTLE_WAIT_SECONDS."""
    if status != 429 and not (status >= 500 and retry_after and method == "GET"):
        return None
    try:
        asked = float(retry_after) if retry_after else 1.0
    except ValueError:
        asked = 1.0
    return min(max(asked, 0.1), THROTTLE_WAIT_SECONDS)


@contextlib.contextmanager
def throttle_budget(seconds: float) -> Iterator[None]:
    """Within (this context: a thread, or what `contextvars.copy_context` carries), the requests the API server
    throttles together sleep at most `seconds` before they are sent again; a wait past that is not slept, and the
    caller gets the 429 (`transient`) at once. The operator's passes run in a few threads shared by every
    namespace: a pass must not hold one for 3 x 5 s per request because the API server throttles its identity."""
    token = _budget.set([seconds])
    try:
        yield
    finally:
        _budget.reset(token)


def _spend(wait: float) -> bool:
    """Take `wait` seconds from the context's throttle budget; False when it has not that much left."""
    budget = _budget.get()
    if budget is None:
        return True
    if budget[0] < wait:
        return False
    budget[0] -= wait
    return True


def transient(exc: ApiError) -> bool:
    """The API server could not take the request now (still throttled after the retries, a 5xx, no answer): the
    same request later may well succeed. Not a Gone, a refusal (4xx) or a conflict."""
    return not isinstance(exc, Gone) and (exc.status in (0, 429) or exc.status >= 500)


def _namespace_terminating(body: Any) -> bool:
    """A 403 of the NamespaceLifecycle admission: nothing new may be created in a namespace being deleted."""
    try:
        causes = (deepjson.loads(body).get("details") or {}).get("causes") or []
    except (TypeError, ValueError, AttributeError):
        return False
    return any(isinstance(c, dict) and c.get("reason") == "NamespaceTerminating" for c in causes)


def _message(body: Any) -> str:
    try:
        return str(json.loads(body).get("message", ""))
    except (TypeError, ValueError, AttributeError):
        return ""


def apply(manifest: Mapping[str, Any]) -> Obj:
    """Server-side apply of a full desired object; returns the object as stored."""
    meta = manifest["metadata"]
    return _call(
        "PATCH", _path(manifest["kind"], meta["name"], meta.get("namespace")), body=dict(manifest),
        query={"fieldManager": MANAGER, "force": "true"}, content_type="application/apply-patch+yaml",
    )  # fmt: skip


def get(kind: str, name: str, namespace: str | None) -> Obj | None:
    """The object, or None when it does not exist."""
    try:
        return _call("GET", _path(kind, name, namespace))
    except Gone:
        return None


def delete(kind: str, name: str, namespace: str | None) -> bool:
    """Delete (background propagation); False when it was already gone."""
    try:
        _call("DELETE", _path(kind, name, namespace), body={"propagationPolicy": "Background"})
    except Gone:
        return False
    return True


def patch_status(name: str, namespace: str, patch: Mapping[str, Any]) -> Obj | None:
    """Merge-patch `status` of a ModelApp; the ModelApp as stored, or None when it is gone."""
    try:
        return _call("PATCH", _path("ModelApp", name, namespace, "status"), body={"status": dict(patch)},
                     content_type="application/merge-patch+json")  # fmt: skip
    except Gone:
        return None


def ensure_peering(name: str, namespace: str | None) -> bool:
    """Create kopf's peering object (namespaced, or cluster-wide for None) if missing; True if created.

    409 AlreadyExists means another replica created it first: fine, it is the same object.
    """
    kind = "KopfPeering" if namespace else "ClusterKopfPeering"
    body = {
        "apiVersion": "kopf.dev/v1",
        "kind": kind,
        "metadata": {"name": name, **({"namespace": namespace} if namespace else {})},
    }
    try:
        _call("POST", _path(kind, None, namespace), body=body, content_type="application/json")
    except ApiError as exc:
        if exc.status == 409:
            return False
        raise
    return True


def list_objects(kind: str, namespace: str | None, *, selector: Mapping[str, str] | None = None,
                 page: int = 500) -> list[Obj]:  # fmt: skip
    """Objects of `kind` in `namespace` (None: every namespace) whose labels include `selector`."""
    query: dict[str, Any] = {"limit": page}
    if selector:
        query["labelSelector"] = ",".join(f"{k}={v}" for k, v in selector.items())
    items: list[Obj] = []
    while True:
        listed = _call("GET", _path(kind, None, namespace), query=query)
        items.extend(listed.get("items") or [])
        token = (listed.get("metadata") or {}).get("continue")
        if not token:
            return items
        query["continue"] = token


def list_names(kind: str, namespace: str) -> list[str]:
    """The names of every object of `kind` in `namespace`, whoever made it (metadata-only listing, pages of
    500, read from etcd: nothing created before the call is missing)."""
    query: dict[str, Any] = {"limit": 500}
    names: list[str] = []
    while True:
        listed = _call("GET", _path(kind, None, namespace), query=query,
                       accept="application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io")  # fmt: skip
        names += [str(item["metadata"]["name"]) for item in listed.get("items") or []]
        token = (listed.get("metadata") or {}).get("continue")
        if not token:
            return names
        query["continue"] = token


def create(kind: str, namespace: str | None, body: Mapping[str, Any]) -> Obj:
    """Create an object (POST); the object as stored."""
    return _call("POST", _path(kind, None, namespace), body=dict(body), content_type="application/json")


def name_taken(kind: str, name: str, namespace: str) -> bool:
    """Whether an object of `kind` named `name` exists, asked without reading it: a dry-run create of an empty
    one (`dryRun=All`: nothing is stored, no value is sent or returned). 409 AlreadyExists: True; created:
    False. Needs `create` on the kind, never `get`: the operator learns of a tenant's Secret that its name is
    taken, nothing more. 403 (RBAC), a namespace being deleted or a webhook that refuses dry runs raise
    `ApiError`."""
    body = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}
    try:
        _call("POST", _path(kind, None, namespace), body=body, query={"dryRun": "All"},
              content_type="application/json")  # fmt: skip
    except ApiError as exc:
        if exc.status == 409:
            return True
        raise
    return False


def secret_data(name: str, namespace: str) -> dict[str, bytes] | None:
    """A Secret's data, decoded to bytes (its values may be any bytes); None when it does not exist."""
    secret = get("Secret", name, namespace)
    if secret is None:
        return None
    return {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}


def ensure_secret_key(name: str, namespace: str, *, key: str = "key", size: int = 32) -> bytes:
    """The value of `key` in the Secret `namespace/name`, first creating the Secret with `size` random bytes
    when it does not exist. Every replica and every restart reads the same value (so what is derived from it
    stays the same); of two replicas creating it at once, the second gets 409 and reads the first's.
    A Secret without the key (or with an empty one) raises `ApiError` (status 0) saying so: it is never
    overwritten, since everything derived from it would change."""
    data = secret_data(name, namespace)
    if data is None:
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace, "labels": {LABEL_MANAGED_BY: MANAGER}},
                "data": {key: base64.b64encode(os.urandom(size)).decode()}}  # fmt: skip
        try:
            create("Secret", namespace, body)
        except ApiError as exc:
            if exc.status != 409:
                raise
        data = secret_data(name, namespace) or {}
    if not data.get(key):
        raise ApiError(0, f"Secret {namespace}/{name} has no value under {key!r}: delete it, and the operator "
                          "creates a new key (every app with auth then rolls once)")  # fmt: skip
    return data[key]


def patch(kind: str, name: str, namespace: str | None, body: Mapping[str, Any]) -> Obj:
    """JSON merge patch (metadata and spec); a `metadata.resourceVersion` in it makes the write conditional."""
    return _call("PATCH", _path(kind, name, namespace), body=dict(body), content_type="application/merge-patch+json")


def pod_proxy_post(namespace: str, pod: str, port: int, path: str, body: Any, *, timeout: float,
                   limit: int, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:  # fmt: skip
    """POST JSON to a pod's port through the API server's pod proxy (a GET when `body` is None: RBAC `get` on
    `pods/proxy`); (HTTP status, body bytes).

    The path is `/api/v1/namespaces/NS/pods/NAME:PORT/proxy/<path>`: the operator needs no network route
    to pod IPs, only RBAC `create` on `pods/proxy`. The answer is read as it streams, at most `limit`
    bytes and within `timeout` seconds in all (a pod that trickles an endless answer cannot hold the
    operator): past either, `ApiError` (status 0) says which.
    """
    api = api_client()
    url = f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/{path.lstrip('/')}"
    sent = {**(headers or {}), "Accept": "application/json", "Content-Type": "application/json"}
    method = "GET" if body is None else "POST"
    params = api.param_serialize(method, url, header_params=sent, body=body, auth_settings=["BearerToken"])
    deadline = time.monotonic() + timeout
    response = None
    try:
        response = api.call_api(*params, _request_timeout=(min(timeout, 10.0), timeout))
        data = read_bounded(response.response.stream(64 * 1024), limit=limit, deadline=deadline)
    except ApiException as exc:
        raise ApiError(int(exc.status or 0), _message(exc.body) or str(exc.reason)) from None
    except ApiError:
        raise
    except Exception as exc:  # urllib3 timeouts and connection errors
        raise ApiError(0, f"{type(exc).__name__}: {exc}") from None
    finally:
        if response is not None:
            with contextlib.suppress(Exception):
                response.response.release_conn()
    return int(response.status), data


def read_bounded(chunks: Iterable[bytes], *, limit: int, deadline: float) -> bytes:
    """Join streamed chunks, refusing more than `limit` bytes or a stream still going at `deadline`."""
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise ApiError(0, f"the answer is larger than {limit} bytes")
        if time.monotonic() > deadline:
            raise ApiError(0, "the answer did not end within its timeout")
        parts.append(chunk)
    return b"".join(parts)
