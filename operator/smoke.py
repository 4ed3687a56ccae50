"""The smoke test: one golden request to each ready pod of a new revision, and its verdict.

`check_pods` is what the engine calls: it finds up to `PODS` ready pods of the new pair and asks each.
`request_for` and `judge` are pure (spec in, request/verdict out). `run` sends the request through a
`Transport` — a callable `(path, json body, timeout) -> (HTTP status, body bytes)` — so the same code
talks to a pod straight at its IP (`direct_transport`, the default), through the API server's pod proxy
(`proxy_transport`, for an operator outside the cluster's pod network), and to a `modelapp-serving serve`
process on 127.0.0.1 in the tests (`http_transport`).
A transport error counts as a failed answer after `attempts` tries: a pod that passed its readiness probe
but cannot answer one request is not a good revision.

The tenant owns the app image, so the pod's answer is hostile input: it is read at most `MAX_ANSWER`
bytes, and the whole check of one revision ends within `BUDGET_SECONDS` however slowly its pods answer
(a verdict that says so), so no app can hold the operator's threads or memory.

A ModelApp with `spec.auth` gets the smoke token of its revision (`builders.smoke_token`; its pods hold only
its SHA-256): `token=` on the transports sends it as `Authorization: Bearer`, or, through the API server's pod
proxy (which spends `Authorization` on the operator's own credentials), as `X-ModelApp-Token`.

When the ModelApp names no smoke test and its version was published with acceptance examples, the test is
the version's own (`VersionExamples`, issue 14.1): each pod is asked for the card of the version it loaded
(`GET /v2/models/<name>/card`, a transport called with no body), the bytes must hash to the card sha256 the
version's manifest pins (recorded by the bump in `modelapp.io/pair-facts`), and its examples are then run as
a golden request. The operator never opens the tenant's store: the pod has the verified copy.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from modelapp_operator import kube
from modelapp_operator.builders import PORT, selector
from modelapp_operator.revisions import Pair
from modelapp_operator.rollout import SmokeVerdict
from modelapp_operator.spec import SmokeTest
from modelapp_serving.card import CardError, parse_card

#: (path, JSON body or None for a GET, timeout) -> (HTTP status, body bytes).
Transport = Callable[[str, Mapping[str, Any] | None, float], tuple[int, bytes]]


@dataclass(frozen=True)
class VersionExamples:
    """The acceptance examples of the version a pod loaded: its card, which must hash to `card_sha256`."""

    card_sha256: str


#: What a smoke check runs: the ModelApp's own golden request, or the version's examples.
Check = SmokeTest | VersionExamples


class TransportFor(Protocol):
    """How the smoke test reaches a pod: (namespace, the pod as listed) -> transport; `token`, the revision's
    smoke token for a ModelApp with `auth` (bind it with functools.partial)."""

    def __call__(self, namespace: str, pod: Mapping[str, Any], *, token: str | None = None) -> Transport: ...


#: At most this many ready pods of a new revision get the golden request.
PODS = 3
#: The most of a pod's answer that is read (a golden answer is a few hundred bytes).
MAX_ANSWER = 1024 * 1024
#: The whole check of one revision, every pod and attempt included, ends within this many seconds.
BUDGET_SECONDS = 60.0


class TransportError(RuntimeError):
    """The request did not get an HTTP answer."""


def request_for(test: SmokeTest, model: str) -> tuple[str, dict[str, Any]]:
    """(path, JSON body) of the golden request for the model named `model`."""
    tensors = [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape), "data": list(t.data)}
               for t in test.inputs]  # fmt: skip
    if test.protocol == "v2":
        return f"/v2/models/{model}/infer", {"inputs": tensors}
    first = test.inputs[0]
    rows = _reshape(list(first.data), list(first.shape))
    if test.protocol == "v1":
        return f"/v1/models/{model}:predict", {"instances": rows}
    return "/score", {"input": rows}


def _reshape(data: list[float], shape: list[int]) -> Any:
    """Row-major nesting of flat data (v1 and /score take nested lists)."""
    if len(shape) <= 1:
        return data
    step = len(data) // shape[0] if shape[0] else 0
    return [_reshape(data[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [x for item in value for x in _flatten(item)]
    return [value]


def _outputs(protocol: str, reply: Any) -> dict[str | None, list[Any]]:
    """Output name -> flat data; None names the first output."""
    if protocol == "v2":
        outputs = reply.get("outputs") if isinstance(reply, Mapping) else None
        if not isinstance(outputs, list) or not outputs:
            raise ValueError("the answer has no outputs")
        named: dict[str | None, list[Any]] = {
            str(o.get("name")): _flatten(o.get("data")) for o in outputs if isinstance(o, Mapping)
        }
        return {**named, None: _flatten(outputs[0].get("data") if isinstance(outputs[0], Mapping) else None)}
    key = "predictions" if protocol == "v1" else "output"
    if not isinstance(reply, Mapping) or key not in reply:
        raise ValueError(f"the answer has no {key!r}")
    return {None: _flatten(reply[key])}


def judge(test: SmokeTest, status: int, body: bytes) -> SmokeVerdict:
    """Compare one answer with the expected outputs, element by element within the tolerance."""
    if status != 200:
        return SmokeVerdict(False, f"HTTP {status}: {body[:200].decode(errors='replace')}")
    try:
        outputs = _outputs(test.protocol, json.loads(body))
    except (ValueError, RecursionError) as exc:  # the tenant's code answers: nested as deep as it likes
        return SmokeVerdict(False, f"unreadable answer: {exc}")
    for expected in test.expected:
        got = outputs.get(expected.name)
        label = expected.name or "the first output"
        if got is None:
            return SmokeVerdict(False, f"{label} is missing from the answer")
        problem = _mismatch(got, list(expected.data), test.tolerance)
        if problem:
            return SmokeVerdict(False, f"{label}: {problem}")
    return SmokeVerdict(True, "every expected output matched")


def _mismatch(got: Sequence[Any], want: Sequence[float], tolerance: float) -> str | None:
    if len(got) != len(want):
        return f"{len(got)} elements, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if isinstance(g, bool) or not isinstance(g, int | float) or not math.isfinite(g) or abs(g - w) > tolerance:
            return f"element {i} is {g!r}, expected {w!r} (tolerance {tolerance:g})"
    return None


def run(test: SmokeTest, model: str, transport: Transport, *, attempts: int = 3,
        deadline: float | None = None) -> SmokeVerdict:  # fmt: skip
    """Send the golden request; transport errors are retried, then count as a failure. `deadline`
    (time.monotonic()) bounds every attempt together."""
    path, body = request_for(test, model)
    error = ""
    for tried in range(attempts):
        timeout = float(test.timeout_seconds)
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                return SmokeVerdict(False, f"no answer within the smoke test's budget of {BUDGET_SECONDS:g} s "
                                           f"after {tried} attempt(s): {error or 'too slow'}")  # fmt: skip
        try:
            status, data = transport(path, body, timeout)
        except TransportError as exc:
            error = str(exc)
            continue
        return judge(test, status, data)
    return SmokeVerdict(False, f"no answer after {attempts} attempts: {error}")


def _is_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return not pod["metadata"].get("deletionTimestamp") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
    )


def ready_pods(name: str, namespace: str, pair: Pair) -> list[Mapping[str, Any]]:
    """Ready pods whose template annotations name `pair` (pods carry their template's annotations)."""
    pods = kube.list_objects("Pod", namespace, selector=selector(name))
    return [p for p in pods if Pair.from_template({"spec": {"template": p}}) == pair and _is_ready(p)]


def version_examples(examples: VersionExamples, model: str, transport: Transport, *,
                     deadline: float | None = None) -> SmokeTest | SmokeVerdict:  # fmt: skip
    """The examples of the version the pod loaded, as a golden request; or the verdict that they cannot be
    had (a failure: a version is never good without its own examples passing)."""
    try:
        return _examples(examples, model, transport, deadline)
    except _NoExamples as exc:
        return SmokeVerdict(False, f"the version's acceptance examples: {exc}")


class _NoExamples(Exception):
    """Why a pod's version examples cannot be run."""


def _examples(examples: VersionExamples, model: str, transport: Transport, deadline: float | None) -> SmokeTest:
    timeout = 10.0 if deadline is None else min(10.0, deadline - time.monotonic())
    if timeout <= 0:
        raise _NoExamples(f"no time left within the smoke test's budget of {BUDGET_SECONDS:g} s")
    try:
        status, body = transport(f"/v2/models/{model}/card", None, timeout)
    except TransportError as exc:
        raise _NoExamples(f"the pod did not answer for its version card: {exc}") from None
    if status != 200:
        raise _NoExamples(f"GET /v2/models/{model}/card answered HTTP {status}: the app image's serving runtime "
                          "predates version cards; rebuild it on a current serving image, or name "
                          "spec.rollout.smokeTest")  # fmt: skip
    actual = hashlib.sha256(body).hexdigest()
    if actual != examples.card_sha256:
        raise _NoExamples(f"the card the pod serves has sha256 {actual[:12]}..., not the version's "
                          f"{examples.card_sha256[:12]}...")  # fmt: skip
    try:
        card = parse_card(body)
    except CardError as exc:
        raise _NoExamples(str(exc)) from None
    if card.examples is None:
        raise _NoExamples("the version's card holds none")
    return SmokeTest.model_validate(card.examples.model_dump(mode="json", by_alias=True, exclude_none=True))


def check_pods(name: str, namespace: str, test: Check, pair: Pair,
               transport_for: TransportFor) -> SmokeVerdict | None:  # fmt: skip
    """The golden request (the ModelApp's, or the version's examples) to up to PODS ready pods of `pair`, all
    within BUDGET_SECONDS; None when no pod is ready (yet)."""
    deadline = time.monotonic() + BUDGET_SECONDS
    pods = ready_pods(name, namespace, pair)[:PODS]
    for pod in pods:
        verdict = check_one(test, name, transport_for(namespace, pod), deadline=deadline)
        if not verdict.passed:
            return SmokeVerdict(False, f"pod {pod['metadata']['name']}: {verdict.message}")
    what = "the version's acceptance examples" if isinstance(test, VersionExamples) else "the golden request"
    return SmokeVerdict(True, f"{len(pods)} pod(s) answered {what} as expected") if pods else None


def check_one(test: Check, model: str, transport: Transport, *, deadline: float | None = None) -> SmokeVerdict:
    """One pod: its version's examples fetched first when that is the test, then the golden request."""
    if isinstance(test, VersionExamples):
        found = version_examples(test, model, transport, deadline=deadline)
        if isinstance(found, SmokeVerdict):
            return found
        verdict = run(found, model, transport, deadline=deadline)
        return verdict if verdict.passed else SmokeVerdict(False, f"version examples: {verdict.message}")
    return run(test, model, transport, deadline=deadline)


def refuses_without_token(transport: Transport, *, timeout: float = 5.0) -> str | None:
    """Why a pod of an app with `spec.auth` does not enforce it (it answers GET /version without a token, or
    not at all); None when it refuses with a 401, as it must. An app image built on a serving runtime older
    than `spec.auth` ignores the token's variables and answers everyone: its pair must not be called good."""
    try:
        status, _ = transport("/version", None, timeout)
    except TransportError as exc:
        return f"GET /version without a token got no answer: {exc}"
    if status == 401:
        return None
    return (f"answered GET /version without its bearer token (HTTP {status}): its serving runtime does not "
            "enforce spec.auth; rebuild the app image on a current serving image")  # fmt: skip


def token_enforced(name: str, namespace: str, pair: Pair, transport_for: TransportFor) -> SmokeVerdict | None:
    """After a passed smoke test of an app with `spec.auth`: up to PODS ready pods of `pair`, each asked without
    the token (`refuses_without_token`); the failed verdict of the first that answers, else None."""
    for pod in ready_pods(name, namespace, pair)[:PODS]:
        problem = refuses_without_token(transport_for(namespace, pod))
        if problem:
            return SmokeVerdict(False, f"pod {pod['metadata']['name']} {problem}")
    return None


def direct_transport(namespace: str, pod: Mapping[str, Any], *, token: str | None = None) -> Transport:
    """Straight to the pod's IP and serving port (the default: no RBAC on pods/proxy needed, but the
    operator must reach the pod network, as it does when it runs in the cluster)."""
    ip = str((pod.get("status") or {}).get("podIP") or "")
    if not ip:
        def unreachable(path: str, body: Mapping[str, Any] | None, timeout: float) -> tuple[int, bytes]:
            raise TransportError(f"pod {namespace}/{pod['metadata']['name']} has no IP yet")

        return unreachable
    host = f"[{ip}]" if ":" in ip else ip
    return http_transport(f"http://{host}:{PORT}", token=token)


def proxy_transport(namespace: str, pod: Mapping[str, Any], *, token: str | None = None) -> Transport:
    """The serving port of a pod, through the API server's pod proxy (needs `create` on `pods/proxy`)."""
    return pod_transport(namespace, str(pod["metadata"]["name"]), PORT, token=token)


#: The header that carries the smoke token through the pod proxy (serving/auth.py reads it).
TOKEN_HEADER = "X-ModelApp-Token"  # noqa: S105 (a header's name)


def pod_transport(namespace: str, pod: str, port: int, *, token: str | None = None) -> Transport:
    """Through the API server's pod proxy."""
    headers = {TOKEN_HEADER: token} if token else {}

    def send(path: str, body: Mapping[str, Any] | None, timeout: float) -> tuple[int, bytes]:
        try:
            sent = None if body is None else dict(body)
            return kube.pod_proxy_post(namespace, pod, port, path, sent, timeout=timeout, limit=MAX_ANSWER,
                                       headers=headers)  # fmt: skip
        except kube.ApiError as exc:
            raise TransportError(str(exc)) from None

    return send


TRANSPORTS: dict[str, TransportFor] = {"direct": direct_transport, "proxy": proxy_transport}


def http_transport(base_url: str, *, token: str | None = None) -> Transport:
    """Straight to a server: a pod's IP, or in the tests a `modelapp-serving serve` on 127.0.0.1. The answer
    is streamed, at most MAX_ANSWER bytes, and must end within `timeout` in all (a trickle cannot hold it)."""
    import requests

    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def send(path: str, body: Mapping[str, Any] | None, timeout: float) -> tuple[int, bytes]:
        deadline = time.monotonic() + timeout
        method, sent = ("GET", None) if body is None else ("POST", dict(body))
        try:
            with requests.request(method, base_url.rstrip("/") + path, json=sent, headers=headers, timeout=timeout,
                                  stream=True) as answer:  # fmt: skip
                data = kube.read_bounded(answer.iter_content(64 * 1024), limit=MAX_ANSWER, deadline=deadline)
                return answer.status_code, data
        except requests.RequestException as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        except kube.ApiError as exc:
            raise TransportError(str(exc).removeprefix("HTTP 0: ")) from None

    return send
