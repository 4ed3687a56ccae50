"""Bearer-token authentication of a real `modelapp-serving serve` (a ModelApp's `spec.auth`, issue 12.4).

Design notes: each test runs the real server (gunicorn, two workers, the fast path in front of Flask) with
the environment the operator's pod template gives it -- `MODELAPP_AUTH_TOKEN` (the tenant's Secret, by the
kubelet) and `MODELAPP_AUTH_SMOKE_SHA256` (the digest of the operator's smoke token) -- and talks to it with
real HTTP clients. Checked from the client's side: every model route and /version answers 401 with
`WWW-Authenticate: Bearer` and a JSON error to a missing, malformed or wrong token, on both the fast path
(a model call with a plain JSON body) and Flask (chunked bodies, GETs, unknown paths), before the body is
read; the health probes stay open; the metrics port stays as it was; both accepted tokens open every
route, and the 401s are counted under their route's label.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
import requests

from modelapp_operator import builders
from modelapp_operator.spec import parse_spec
from tests.fixtures.models import Iris, ModelDir, ServeProcess

Start = Callable[..., ServeProcess]
ROW = {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}
TOKEN = "s3cr3t-tenant-token-0123456789"
SMOKE = builders.smoke_token(b"k" * 32, uid="uid-1", image="iris-app:1", uri="file:///m", version="7", sha256="")


@pytest.fixture
def server(serve_process: Start, onnx_model_dir: ModelDir) -> ServeProcess:
    env = {"MODELAPP_AUTH_TOKEN": TOKEN + "\n", "MODELAPP_AUTH_SMOKE_SHA256": builders.token_sha256(SMOKE)}
    started = serve_process(onnx_model_dir, "iris", ["--workers", "2"], env)
    started.wait_ready()
    return started


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


CALLS: list[tuple[str, str, object]] = [
    ("POST", "/v2/models/iris/infer", {"inputs": [ROW]}),
    ("POST", "/v2/models/iris/versions/7/infer", {"inputs": [ROW]}),
    ("POST", "/v1/models/iris:predict", {"instances": [ROW["data"]]}),
    ("POST", "/score", {"input": [ROW["data"]]}),
    ("GET", "/version", None),
    ("GET", "/v2", None),
    ("GET", "/v2/models/iris", None),
    ("GET", "/v2/models/iris/ready", None),
    ("GET", "/v1/models/iris", None),
]


def _call(server: ServeProcess, method: str, path: str, body: object, headers: dict[str, str]) -> requests.Response:
    return requests.request(method, server.url + path, json=body, headers=headers, timeout=10)


def _assert_401(reply: requests.Response, *, invalid: bool) -> None:
    assert reply.status_code == 401, (reply.status_code, reply.text)
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.headers["WWW-Authenticate"].startswith('Bearer realm="modelapp"')
    assert ('error="invalid_token"' in reply.headers["WWW-Authenticate"]) is invalid
    assert "token" in reply.json()["error"]


@pytest.mark.parametrize(("method", "path", "body"), CALLS)
def test_every_route_but_the_probes_needs_the_token(server: ServeProcess, method: str, path: str,
                                                    body: object) -> None:  # fmt: skip
    _assert_401(_call(server, method, path, body, {}), invalid=False)
    _assert_401(_call(server, method, path, body, _bearer("wrong")), invalid=True)
    _assert_401(_call(server, method, path, body, _bearer(TOKEN + "x")), invalid=True)
    _assert_401(_call(server, method, path, body, _bearer(TOKEN[:-1])), invalid=True)
    _assert_401(_call(server, method, path, body, {"Authorization": f"Basic {TOKEN}"}), invalid=False)
    _assert_401(_call(server, method, path, body, {"Authorization": TOKEN}), invalid=False)
    for token in (TOKEN, SMOKE):  # the tenant's token and the operator's smoke token
        reply = _call(server, method, path, body, _bearer(token))
        assert reply.status_code == 200, (path, reply.text)
    assert _call(server, method, path, body, {"authorization": f"bearer {TOKEN}"}).status_code == 200
    assert _call(server, method, path, body, {"X-ModelApp-Token": SMOKE}).status_code == 200, "the pod proxy's way"


def test_the_probes_stay_open_and_unknown_paths_say_nothing(server: ServeProcess) -> None:
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert requests.get(server.url + path, timeout=5).status_code == 200, path
    _assert_401(requests.get(server.url + "/no/such/path", timeout=5), invalid=False)
    _assert_401(requests.delete(server.url + "/v2/models/iris/infer", timeout=5), invalid=False)
    assert requests.get(server.url + "/no/such/path", headers=_bearer(TOKEN), timeout=5).status_code == 404
    assert requests.get(server.url + "/metrics", headers=_bearer(TOKEN), timeout=5).status_code == 404


def test_a_chunked_body_without_token_is_refused_before_it_is_read(server: ServeProcess) -> None:
    """Flask's path (no Content-Length): the 401 comes first, whatever the body would have been."""

    def chunks() -> object:
        yield b'{"inputs": ['
        yield b"9" * 65536

    reply = requests.post(f"{server.url}/v2/models/iris/infer", data=chunks(), timeout=10)
    _assert_401(reply, invalid=False)
    ok = requests.post(f"{server.url}/v2/models/iris/infer", json={"inputs": [ROW]}, headers=_bearer(TOKEN), timeout=10)
    assert ok.status_code == 200 and ok.json()["outputs"], ok.text


def test_the_metrics_port_is_unchanged_and_counts_the_401s(server: ServeProcess, iris: Iris) -> None:
    for _ in range(3):
        requests.post(f"{server.url}/v2/models/iris/infer", json={"inputs": [ROW]}, timeout=10)
    text = requests.get(f"{server.metrics_url}/metrics", timeout=5).text  # no token on the metrics port
    refused = [line for line in text.splitlines() if line.startswith("modelapp_requests_total{")
               and 'endpoint="/v2/models/<name>/infer"' in line and 'code="401"' in line]  # fmt: skip
    assert len(refused) == 1 and float(refused[0].rsplit(" ", 1)[1]) == 3.0, refused


def test_an_empty_token_accepts_nothing_but_the_smoke_token(serve_process: Start, onnx_model_dir: ModelDir) -> None:
    """A Secret key with an empty value fails closed: no client gets in with an empty or any other token."""
    env = {"MODELAPP_AUTH_TOKEN": "", "MODELAPP_AUTH_SMOKE_SHA256": builders.token_sha256(SMOKE)}
    server = serve_process(onnx_model_dir, "iris", [], env)
    server.wait_ready()
    _assert_401(_call(server, "GET", "/version", None, {"Authorization": "Bearer "}), invalid=False)
    _assert_401(_call(server, "GET", "/version", None, _bearer("anything")), invalid=True)
    assert _call(server, "GET", "/version", None, _bearer(SMOKE)).status_code == 200
    assert "is empty" in server.log()


def test_a_bad_smoke_digest_stops_serve_with_the_reason(serve_process: Start, onnx_model_dir: ModelDir) -> None:
    env = {"MODELAPP_AUTH_TOKEN": TOKEN, "MODELAPP_AUTH_SMOKE_SHA256": "not-a-digest"}
    server = serve_process(onnx_model_dir, "iris", [], env)
    assert server.process.wait(timeout=60) == 2
    assert "MODELAPP_AUTH_SMOKE_SHA256 must be 64 lowercase hex characters" in server.log()


def test_without_auth_nothing_changes(serve_process: Start, onnx_model_dir: ModelDir) -> None:
    server = serve_process(onnx_model_dir, "iris", [])
    server.wait_ready()
    assert requests.get(f"{server.url}/version", timeout=5).status_code == 200


def test_the_pod_template_and_the_server_agree_on_the_digest() -> None:
    """What the builder writes is what the server compares: the SHA-256 of the token, hex."""
    smoke = {"inputs": [{"shape": [1], "data": [1.0]}], "expected": [{"data": [1.0]}]}
    spec = parse_spec({"image": "iris-app:1", "model": {"uri": "file:///m", "version": "7"},
                       "auth": {"secretName": "t"}, "rollout": {"smokeTest": smoke}})  # fmt: skip
    ctx = builders.BuildContext(serving_image="s:1", smoke_key=b"k" * 32)
    env = {e["name"]: e.get("value") for e in builders.app_container("iris", spec, ctx, uid="uid-1")["env"]}
    assert env[builders.ENV_AUTH_SMOKE_SHA256] == hashlib.sha256(SMOKE.encode()).hexdigest()
