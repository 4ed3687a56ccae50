"""One tenant's pods must not hold another tenant's smoke test (the operator's smoke pool is shared).

Design notes: the smoke test runs the tenant's code path, so its answer and its timing are the tenant's. The
engine runs checks in a pool of `SMOKE_THREADS` threads (smokepool.py), each bounded by `smoke.BUDGET_SECONDS`; a tenant
with as many apps rolling out as there are threads, whose pods accept the connection and never answer,
would fill the whole pool for a minute at a time, again with every new pair it rolls out, and every other
namespace's rollouts would wait for their smoke verdict meanwhile. The servers here are real HTTP servers on
127.0.0.1 (what a hostile app image can run: one that holds every request, one that answers correctly), and
the check is the real one (`smoke.check_one` through `smoke.http_transport`, as the operator sends it to a
pod); only the pod listing is left out (kwok pods run no server) and `converge`, which a verdict triggers,
is recorded rather than run. Measured: how long the victim's verdict takes while the attacker's checks hang,
and how many of the attacker's requests are in flight at once.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from modelapp_operator import smoke, smokepool
from modelapp_operator.engine import Engine
from modelapp_operator.revisions import Pair
from modelapp_operator.rollout import SmokeVerdict
from modelapp_operator.settings import OperatorConfig
from modelapp_operator.spec import SmokeTest

pytestmark = pytest.mark.integration

TEST = SmokeTest.model_validate({"inputs": [{"shape": [1, 1], "data": [1.0]}], "expected": [{"data": [0]}],
                                 "timeoutSeconds": 120})  # fmt: skip
PAIR = Pair("r.example/app:1", "file:///m", "1")
LOG = logging.getLogger("test_tenancy_smoke")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    release = threading.Event()
    in_flight = 0
    most = 0
    lock = threading.Lock()


class _Holding(http.server.BaseHTTPRequestHandler):
    """Reads the request, then answers nothing until the test ends (a pod whose code never replies)."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.in_flight += 1
            self.server.most = max(self.server.most, self.server.in_flight)
        self.server.release.wait(90)
        with self.server.lock:
            self.server.in_flight -= 1
        self.close_connection = True  # no answer at all: the client sees the connection end


class _Answering(http.server.BaseHTTPRequestHandler):
    """Answers the golden request as expected (a healthy pod of another tenant)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.dumps({"outputs": [{"name": "output", "datatype": "FP32", "shape": [1], "data": [0]}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), handler)
    server.release = threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def holding() -> Iterator[_Server]:
    yield from _serve(_Holding)


@pytest.fixture
def answering() -> Iterator[_Server]:
    yield from _serve(_Answering)


def test_a_tenant_whose_pods_never_answer_holds_no_other_tenants_smoke_test(holding: _Server,
                                                                            answering: _Server) -> None:  # fmt: skip
    urls = {"evil": f"http://127.0.0.1:{holding.server_address[1]}",
            "shop": f"http://127.0.0.1:{answering.server_address[1]}"}  # fmt: skip

    def check(name: str, namespace: str, test: smoke.Check, pair: Pair, transport: Any) -> SmokeVerdict:
        deadline = time.monotonic() + smoke.BUDGET_SECONDS
        return smoke.check_one(test, name, smoke.http_transport(urls[namespace]), deadline=deadline)

    engine = Engine(OperatorConfig(), smoke_check=check)
    passes: list[dict[str, Any]] = []
    engine.converge = lambda **kw: passes.append(kw)  # type: ignore[method-assign]
    try:
        # The attacker: one app more than there are smoke threads, all rolling out at once.
        for i in range(smokepool.SMOKE_THREADS + 1):
            assert engine.smokes.verdict(f"evil-{i}", "evil", TEST, PAIR, LOG) is None
        time.sleep(1.0)  # let its requests reach the server

        start = time.monotonic()
        verdict = engine.smokes.verdict("iris", "shop", TEST, PAIR, LOG)
        while verdict is None and time.monotonic() - start < 20:
            time.sleep(0.1)
            verdict = engine.smokes.verdict("iris", "shop", TEST, PAIR, LOG)
        took = time.monotonic() - start
        LOG.warning(f"victim's verdict after {took:.1f} s; attacker's requests in flight at most: {holding.most}")
        assert verdict is not None, f"the victim's smoke test waited {took:.0f} s behind the attacker's pods"
        assert verdict.passed, verdict.message
        assert took < 10
        assert holding.most <= smokepool.SMOKE_PER_NAMESPACE < smokepool.SMOKE_THREADS
        # The attacker's own checks still run, a few at a time: the one that waits is asked for again.
        assert engine.smokes.verdict("evil-0", "evil", TEST, PAIR, LOG) is None
    finally:
        holding.release.set()
        engine.smokes.pool.shutdown(wait=False, cancel_futures=True)
