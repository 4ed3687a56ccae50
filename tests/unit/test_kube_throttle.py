"""What the operator does when the API server cannot take a request now (operator/kube.py `_throttled`,
`transient`; operator/engine.py `Engine.converge`, `Engine.on_child`).

Design notes: a 429 (API Priority and Fairness, or "storage is (re)initializing" just after a CRD appears) was not
processed, so the request is sent again after the server's Retry-After, a few times (client-go does the same). What
is still refused after that, a 5xx, or no answer at all is transient: kopf's handler gets a TemporaryError (one
line, retried in 5 s; an ApiError was logged with a traceback and retried after kopf's default 60 s), and a pass of
a child event or a timer asks for a pass of its own (nothing else would retry it). A refusal (4xx but Gone) is
tried again the same way, logged as an error: an RBAC rule, an admission policy or a quota may be lifted (the real
API server's refusal is met in tests/integration/test_refused_writes.py). The server here is a plain HTTP server on
127.0.0.1 that answers what the test says, for what a real API server does not give on demand (a 503 or 504 with
or without Retry-After, exact waits, a given number of 429s); the real API server's 429, from API
Priority and Fairness, is met in tests/integration/test_throttled.py.
"""

from __future__ import annotations

import http.server
import itertools
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import kopf
import pytest

from modelapp_operator import engine as engine_mod
from modelapp_operator import kube
from modelapp_operator.engine import Engine
from modelapp_operator.settings import OperatorConfig


class _Scripted(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[list[tuple[int, dict[str, str]]]] = []
    seen: ClassVar[list[str]] = []

    def _answer(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        body = json.dumps({"kind": "Status", "message": f"scripted {status}"} if status >= 400 else
                          {"metadata": {"name": "iris", "resourceVersion": "7"}}).encode()  # fmt: skip
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PATCH = do_POST = _answer

    def log_message(self, *_: Any) -> None:
        pass


def _talk_to(port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kube's client talks to http://127.0.0.1:PORT from now on (a kubeconfig of its own)."""
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "t",
              "clusters": [{"name": "t", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
              "users": [{"name": "t", "user": {"token": "t"}}],
              "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}  # fmt: skip
    (tmp_path / "kubeconfig").write_text(json.dumps(config))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    kube.use_kubeconfig(None)


@pytest.fixture()
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Scripted]]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    _talk_to(httpd.server_port, tmp_path, monkeypatch)
    _Scripted.answers, _Scripted.seen = [], []
    try:
        yield _Scripted
    finally:
        httpd.shutdown()
        monkeypatch.delenv("KUBECONFIG")
        kube.use_kubeconfig(None)


def test_a_throttled_request_is_sent_again_after_the_wait_the_server_asks(server: type[_Scripted]) -> None:
    server.answers = [(429, {"Retry-After": "0.2"}), (429, {})]
    applied = kube.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                          "metadata": {"name": "iris", "namespace": "ml"}})  # fmt: skip
    assert applied["metadata"]["resourceVersion"] == "7"
    assert len(server.seen) == 3 and len(set(server.seen)) == 1, server.seen


def test_still_throttled_after_the_retries_is_a_transient_error(server: type[_Scripted]) -> None:
    server.answers = [(429, {"Retry-After": "0"})] * (kube.THROTTLE_RETRIES + 1)
    with pytest.raises(kube.ApiError) as caught:
        kube.get("Deployment", "iris", "ml")
    assert caught.value.status == 429 and kube.transient(caught.value)
    assert len(server.seen) == kube.THROTTLE_RETRIES + 1


def test_a_5xx_is_sent_again_only_for_a_read_and_only_when_it_says_when(server: type[_Scripted]) -> None:
    server.answers = [(503, {})]
    with pytest.raises(kube.ApiError) as caught:
        kube.get("Deployment", "iris", "ml")
    assert caught.value.status == 503 and kube.transient(caught.value) and len(server.seen) == 1
    server.answers, server.seen[:] = [(503, {"Retry-After": "0"})], []
    assert kube.get("Deployment", "iris", "ml") is not None and len(server.seen) == 2
    server.answers, server.seen[:] = [(504, {"Retry-After": "0"})], []
    with pytest.raises(kube.ApiError):  # a write may have been done before the timeout: not sent twice
        kube.patch_status("iris", "ml", {"status": {}})
    assert len(server.seen) == 1, server.seen
    server.answers, server.seen[:] = [(422, {"Retry-After": "1"})], []
    with pytest.raises(kube.ApiError) as refused:
        kube.get("Deployment", "iris", "ml")
    assert not kube.transient(refused.value) and len(server.seen) == 1, "a refusal is not sent again"


def test_the_wait_is_bounded_and_which_errors_are_transient() -> None:
    assert kube._throttled("POST", 429, None) == 1.0
    assert kube._throttled("GET", 429, "3600") == kube.THROTTLE_WAIT_SECONDS, "a server cannot park a thread an hour"
    assert kube._throttled("GET", 429, "soon") == 1.0 and kube._throttled("PATCH", 429, "0") == 0.1
    assert kube._throttled("GET", 500, None) is None and kube._throttled("GET", 409, "1") is None
    assert kube._throttled("GET", 503, "2") == 2.0 and kube._throttled("PATCH", 503, "2") is None
    assert [kube.transient(kube.ApiError(s, "")) for s in (0, 429, 500, 504)] == [True] * 4
    assert [kube.transient(kube.ApiError(s, "")) for s in (400, 403, 409, 422)] == [False] * 4
    assert not kube.transient(kube.Gone(404, "")) and not kube.transient(kube.Gone(403, "terminating"))


def _failing_once(status: int) -> tuple[Engine, list[bool]]:
    engine, passes = Engine(OperatorConfig()), []

    def fake_pass(**kw: Any) -> None:
        passes.append(kw["everything"])
        if len(passes) == 1:
            raise kube.ApiError(status, "scripted")

    engine._pass = fake_pass  # type: ignore[method-assign]
    return engine, passes


@pytest.mark.parametrize(("status", "said"), [(429, "could not take a request"), (403, "refused a request")])
def test_kopfs_handler_gets_a_temporary_error_retried_soon(status: int, said: str) -> None:
    """Busy (429) or refused (403: a refusal may be lifted, and kopf's default was 60 s and a traceback)."""
    engine, passes = _failing_once(status)
    with pytest.raises(kopf.TemporaryError) as caught:
        engine.converge(name="iris", namespace="ml", logger=logging.getLogger("t"), everything=True)
    delay = caught.value.delay
    assert delay is not None and engine_mod.BUSY_RETRY_SECONDS <= delay <= engine_mod.BUSY_RETRY_SECONDS * 1.2
    assert f"trying again in {delay:g} s" in str(caught.value)
    assert said in str(caught.value) and f"HTTP {status}" in str(caught.value)
    engine.converge(name="iris", namespace="ml", logger=logging.getLogger("t"), everything=True)
    assert passes == [True, True], "the turn was given back"
    assert engine._busy == {}, "a pass that went through starts the count again"


def test_a_child_events_pass_asks_for_a_pass_of_its_own(monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    monkeypatch.setattr(engine_mod, "BUSY_RETRY_SECONDS", 0.2)
    engine, passes = _failing_once(503)
    with caplog.at_level(logging.WARNING):
        engine.converge(name="iris", namespace="ml", logger=logging.getLogger("t"), everything=False)
    assert engine._later.pending(("ml", "iris")) and "could not take a request" in caplog.text
    for _ in range(100):
        if len(passes) == 2:
            break
        threading.Event().wait(0.05)
    assert passes == [False, False], "the pass asked for ran"


def test_a_refusal_in_a_child_events_or_timers_pass_is_tried_again_and_logged_as_an_error(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """A pass at the end of a held first status (pacing.py) is a timer's: re-raised, its error went into a future
    nobody reads, and the status stayed unwritten until the ModelApp's next event. A refusal (an RBAC rule, an
    admission policy, a quota) may be lifted, so it is tried again as a busy API server's pass is."""
    monkeypatch.setattr(engine_mod, "BUSY_RETRY_SECONDS", 0.2)
    engine, passes = _failing_once(403)
    with caplog.at_level(logging.WARNING):
        engine.converge(name="iris", namespace="ml", logger=logging.getLogger("t"), everything=False)
    assert engine._later.pending(("ml", "iris"))
    refused = [r for r in caplog.records if "refused a request" in r.getMessage()]
    assert [r.levelno for r in refused] == [logging.ERROR], "a refusal is an error, not a busy server's warning"
    assert "403" in refused[0].getMessage() and "trying again in" in refused[0].getMessage()
    for _ in range(100):
        if len(passes) == 2:
            break
        threading.Event().wait(0.05)
    assert passes == [False, False], "the pass asked for ran"


def _repairing(status: int) -> tuple[Engine, list[str]]:
    """An engine whose first repair of Service ml/iris the API server answers with `status`."""
    engine, repairs = Engine(OperatorConfig()), []
    app = {"metadata": {"name": "iris", "namespace": "ml", "uid": "u-1"}}
    engine.store.deleting = lambda *_: False  # type: ignore[method-assign]
    engine.store.get = lambda *_: app  # type: ignore[method-assign]
    engine.converge = lambda **_: None  # type: ignore[method-assign]

    def repair(**kw: Any) -> None:
        repairs.append(kw["event"])
        if len(repairs) == 1:
            raise kube.ApiError(status, "scripted")

    engine.children.repair = repair  # type: ignore[method-assign]
    return engine, repairs


def _service_event(engine: Engine) -> None:
    engine.on_child(kind="Service", event="MODIFIED", body={"metadata": {"name": "iris"}}, owner="iris",
                    namespace="ml", logger=logging.getLogger("t"))  # fmt: skip


def test_a_refused_repair_is_tried_again(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(engine_mod, "BUSY_RETRY_SECONDS", 0.2)
    engine, repairs = _repairing(403)
    with caplog.at_level(logging.ERROR):
        _service_event(engine)
    assert engine._later.pending(("ml", "Service", "iris")) and "refused a request (HTTP 403" in caplog.text
    for _ in range(100):
        if len(repairs) == 2:
            break
        threading.Event().wait(0.05)
    assert repairs == ["MODIFIED", "MODIFIED"], "the repair was tried again"


def test_a_repair_the_spec_makes_invalid_is_not_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    """A 400 or 422: as a pass's ChildRejected, only a change of the spec can help (and brings its own pass)."""
    engine, repairs = _repairing(422)
    with caplog.at_level(logging.ERROR):
        _service_event(engine)
    assert not engine._later.pending(("ml", "Service", "iris")) and repairs == ["MODIFIED"]
    assert "refused the Service this ModelApp's spec builds" in caplog.text


def test_the_wait_doubles_while_the_api_server_stays_busy_and_resets_after_a_pass(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(engine_mod, "BUSY_RETRY_JITTER", 0.0)
    engine, delays, fail = Engine(OperatorConfig()), [], [True]

    def fake_pass(**_: Any) -> None:
        if fail[0]:
            raise kube.ApiError(0, "connection refused")

    engine._pass = fake_pass  # type: ignore[method-assign]
    for _ in range(6):
        with pytest.raises(kopf.TemporaryError) as caught:
            engine.converge(name="iris", namespace="ml", logger=logging.getLogger("t"), everything=True)
        delays.append(caught.value.delay)
    assert delays == [5, 10, 20, 40, 60, 60], "an outage costs one pass per app a minute, not one every 5 s"
    fail[0] = False
    engine.converge(name="iris", namespace="ml", logger=logging.getLogger("t"), everything=True)
    fail[0] = True
    with pytest.raises(kopf.TemporaryError) as again:
        engine.converge(name="iris", namespace="ml", logger=logging.getLogger("t"), everything=True)
    assert again.value.delay == engine_mod.BUSY_RETRY_SECONDS, "a pass that went through starts the count again"


def test_no_answer_is_a_transient_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused connection (nothing listens on the port) comes back as ApiError 0, not as urllib3's own error."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _talk_to(port, tmp_path, monkeypatch)
    try:
        with pytest.raises(kube.ApiError) as caught:
            kube.get("Deployment", "iris", "ml")
    finally:
        monkeypatch.delenv("KUBECONFIG")
        kube.use_kubeconfig(None)
    assert caught.value.status == 0 and kube.transient(caught.value) and "no answer" in str(caught.value)


def test_the_passes_an_outage_stopped_together_come_back_spread() -> None:
    """Up to BUSY_RETRY_JITTER longer, at random: a fleet stopped in the same second does not return in one."""
    delays = {Engine(OperatorConfig())._busy_delay(("ml", "iris")) for _ in range(50)}
    assert min(delays) >= engine_mod.BUSY_RETRY_SECONDS and max(delays) <= engine_mod.BUSY_RETRY_SECONDS * 1.2
    assert len(delays) >= 5, delays


def test_within_a_budget_the_throttled_requests_sleep_at_most_that_in_all(server: type[_Scripted]) -> None:
    """A pass holds one of the threads every namespace shares: past its budget a 429 is not waited out."""
    server.answers = [(429, {"Retry-After": "0.3"})] * 3
    with kube.throttle_budget(0.5), pytest.raises(kube.ApiError) as caught:
        kube.get("Deployment", "iris", "ml")  # 0.3 s slept, the next 0.3 s would pass the budget
    assert caught.value.status == 429 and kube.transient(caught.value) and len(server.seen) == 2
    server.answers, server.seen[:] = [(429, {"Retry-After": "0.3"}), (200, {}), (429, {"Retry-After": "0.3"})], []
    with kube.throttle_budget(0.5):
        kube.get("Deployment", "iris", "ml")  # 0.3 s of it spent, then served
        with pytest.raises(kube.ApiError):
            kube.get("Deployment", "iris", "ml")  # 0.2 s left: shared by the requests within
    assert len(server.seen) == 3, server.seen
    server.answers, server.seen[:] = [(429, {"Retry-After": "0.3"})] * 2, []
    assert kube.get("Deployment", "iris", "ml") is not None and len(server.seen) == 3, "outside: per request"


def test_each_pass_has_a_throttle_budget_of_its_own() -> None:
    engine, budgets = Engine(OperatorConfig()), []
    engine._pass = lambda **_: budgets.append(kube._budget.get())  # type: ignore[method-assign]
    engine.turns.enter(("ml", "iris"), wait=False)  # another pass of it is under way: it asks for one more
    engine.converge(name="iris", namespace="ml", logger=logging.getLogger("t"), everything=False)
    engine.turns.leave(("ml", "iris"))  # the one under way ends; the one asked for stays asked for
    engine.converge(name="iris", namespace="ml", logger=logging.getLogger("t"), everything=True)
    assert len(budgets) == 2 and all(b == [engine_mod.PASS_THROTTLE_SECONDS] for b in budgets), budgets
    assert all(a is not b for a, b in itertools.pairwise(budgets)), "not shared from one pass to the next"
    assert kube._budget.get() is None, "only within the pass"


def test_a_busy_api_server_is_a_warning_in_kopfs_log_not_an_error() -> None:
    from modelapp_operator.handlers import QuietEventHandlers

    def record(level: int, message: str) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)

    busy = record(logging.ERROR, "Handler 'reconcile' failed temporarily: the API server could not take a request "
                                 "(HTTP 429: too many requests); trying again in 5.4 s")  # fmt: skip
    other = record(logging.ERROR, "Handler 'reconcile' failed temporarily: NameTaken: …")
    failed = record(logging.ERROR, "Handler 'reconcile' failed with an exception. Will retry.")
    assert all(QuietEventHandlers().filter(r) for r in (busy, other, failed)), "all kept"
    assert (busy.levelname, other.levelname, failed.levelname) == ("WARNING", "ERROR", "ERROR")


def test_kopfs_false_alarm_after_purging_its_last_annotations_is_dropped() -> None:
    """Seen after every retried handler of a ModelApp with no annotations of its own (test_throttled.py)."""
    from modelapp_operator.handlers import QuietEventHandlers

    def kept(message: str) -> bool:
        return QuietEventHandlers().filter(logging.LogRecord("kopf.objects", logging.WARNING, __file__, 1, message,
                                                             None, None))  # fmt: skip

    prefix = "Merge-patching finished with inconsistencies: "
    assert not kept(prefix + "(('remove', ('metadata', 'annotations'), {'modelapp.io/reconcile.spec': None, "
                              "'modelapp.io/touch-dummy': None}, None),)")  # fmt: skip
    assert not kept(prefix + "(('remove', ('metadata', 'annotations'), {'modelapp.io/touch-dummy': None}, None),)")
    assert kept(prefix + "(('remove', ('metadata', 'annotations'), {'modelapp.io/x': 'kept'}, None),)")
    assert kept(prefix + "(('change', ('status', 'phase'), 'Ready', None),)"), "a real inconsistency is kept"
    assert kept(prefix + "(('remove', ('metadata', 'annotations'), {'a': None}, None), ('change', ('spec',), 1, 2))")


def test_a_timers_pass_that_fails_otherwise_is_logged_and_tried_again(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """Its future is read by no one: before, what it raised vanished without a line in the log."""
    monkeypatch.setattr(engine_mod, "BUSY_RETRY_MAX_SECONDS", 0.2)
    engine, passes = Engine(OperatorConfig()), []

    def fake_pass(**kw: Any) -> None:
        passes.append(kw["everything"])
        if len(passes) == 1:
            raise KeyError("a bug")

    engine._pass = fake_pass  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR):
        engine._look_again("iris", "ml", logging.getLogger("t"), delay=0.0)
        for _ in range(100):
            if len(passes) == 2:
                break
            threading.Event().wait(0.05)
    assert passes == [False, False], "the pass was tried again"
    failed = [r for r in caplog.records if "A pass of ModelApp ml/iris failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is not None and "a bug" in str(failed[0].exc_info[1])
