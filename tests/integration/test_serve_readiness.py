"""Readiness means every gunicorn worker can serve, against a real `serve` with 2 workers.

Design notes: the model is `tests.fixtures.staggered_model:StaggeredModel`, whose first worker
loads at once while every later load waits for a gate file the test opens. So "one worker ready,
the other still loading" is a state the test holds as long as it wants, not a race it hopes to
catch: while it lasts, inference may already succeed on the loaded worker, but every readiness
answer (whichever worker gives it) must be 503. Once ready is 200, requests on fresh connections
(spread over the workers by the kernel) must all succeed. Churn: a worker killed with SIGKILL is
restarted by gunicorn; until the new process has loaded, readiness is 503 again, then 200.
Workers are found as the children of the serve process in /proc (Linux).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.fixtures.models import ModelDir, ServeProcess, write_version

pytestmark = pytest.mark.integration

Start = Callable[..., ServeProcess]
MODEL_CLASS = "tests.fixtures.staggered_model:StaggeredModel"
BODY = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [1.0, 3.0]}]}


def children(pid: int) -> set[int]:
    """Live child processes of `pid`, from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def status(url: str) -> int:
    """One request on a fresh connection (so the kernel may hand it to either worker)."""
    return requests.get(url, timeout=5, headers={"Connection": "close"}).status_code


def poll(predicate: Callable[[], bool], *, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} within {seconds}s")


def infer_status(server: ServeProcess) -> int:
    return requests.post(
        f"{server.url}/v2/models/slow/infer", json=BODY, timeout=5, headers={"Connection": "close"}
    ).status_code


@pytest.fixture
def staggered(tmp_path: Path) -> ModelDir:
    return write_version(tmp_path / "model", {"factor.txt": b"2"}, model_format="custom", entrypoint="factor.txt")


def serves(server: ServeProcess) -> bool:
    assert server.process.poll() is None, server.log()
    try:
        return infer_status(server) == 200
    except requests.ConnectionError:  # not listening yet
        return False


def start_two_workers(serve_process: Start, model: ModelDir) -> ServeProcess:
    server = serve_process(model, "slow", ["--model-class", MODEL_CLASS, "--workers", "2"])
    poll(lambda: serves(server), seconds=60, what="the first worker serves")
    return server


def test_ready_only_when_every_worker_has_loaded(serve_process: Start, staggered: ModelDir) -> None:
    server = start_two_workers(serve_process, staggered)
    answers = [status(f"{server.url}/v2/health/ready") for _ in range(30)]
    model_answers = [status(f"{server.url}/v2/models/slow/ready") for _ in range(10)]
    assert set(answers) == {503}, answers
    assert set(model_answers) == {503}, model_answers
    assert requests.get(f"{server.url}/v2/health/live", timeout=5).status_code == 200

    (staggered.path / "factor.txt.go").touch()
    server.wait_ready()
    statuses = [infer_status(server) for _ in range(60)]
    assert statuses == [200] * 60
    assert status(f"{server.url}/v2/models/slow/ready") == 200


def test_a_restarted_worker_is_not_ready_until_it_has_loaded(serve_process: Start, staggered: ModelDir) -> None:
    server = start_two_workers(serve_process, staggered)
    gate = staggered.path / "factor.txt.go"
    gate.touch()
    server.wait_ready()
    workers = children(server.process.pid)
    assert len(workers) == 2, workers

    gate.unlink()  # the replacement worker will wait in load()
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    poll(lambda: len(children(server.process.pid) - {victim}) == 2, seconds=30, what="gunicorn restarts the worker")
    poll(lambda: status(f"{server.url}/v2/health/ready") == 503, seconds=10, what="readiness drops")
    assert {status(f"{server.url}/v2/health/ready") for _ in range(20)} == {503}

    gate.touch()
    server.wait_ready()
    assert [infer_status(server) for _ in range(40)] == [200] * 40
