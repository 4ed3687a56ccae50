"""fairness.py: a namespace at a time, in the operator's child threads and in kopf's queue of object workers.

The kopf half runs kopf's own Scheduler (the fair subclass `teach_kopf` installs) in a real event loop, with
coroutines shaped as kopf's worker is (`key`, `streams` of kopf's own `Stream`), so a kopf that changes either
fails here as well as at the operator's start. The whole path (kopf's watcher, a flood in one namespace) runs on
the real API server in tests/integration/test_tenancy_flood.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from modelapp_operator import fairness
from modelapp_operator.fairness import FairPool, Rounds


def test_rounds_serve_each_group_in_turn_and_each_group_in_order() -> None:
    rounds: Rounds[str] = Rounds()
    for i in range(4):
        rounds.put("flood", f"f{i}")
    rounds.put("quiet", "q0")
    rounds.put("other", "o0")
    rounds.put("quiet", "q1")
    assert len(rounds) == 7 and rounds.groups() == 3
    taken = [rounds.get() for _ in range(7)]
    assert taken == ["f0", "q0", "o0", "f1", "q1", "f2", "f3"]
    assert not rounds and len(rounds) == 0
    with pytest.raises(IndexError):
        rounds.get()


def test_a_group_that_comes_back_waits_for_its_turn_at_the_end() -> None:
    rounds: Rounds[str] = Rounds()
    rounds.put("a", "a0")
    rounds.put("b", "b0")
    assert rounds.get() == "a0"
    rounds.put("a", "a1")  # "a" had no more: it queues again behind "b"
    assert [rounds.get(), rounds.get()] == ["b0", "a1"]


def test_rounds_skip_a_group_that_is_not_eligible_and_keep_its_turn() -> None:
    rounds: Rounds[str] = Rounds()
    for item in ("a0", "a1"):
        rounds.put("a", item)
    rounds.put("b", "b0")
    assert rounds.get(eligible=lambda group: group != "a") == "b0"
    assert rounds.any(lambda group: group == "a") and not rounds.any(lambda group: group == "b")
    with pytest.raises(IndexError):  # nothing eligible: the same error as nothing at all, not StopIteration
        rounds.get(eligible=lambda group: group == "b")
    assert len(rounds) == 2  # what was refused still waits, "a" still first
    assert [rounds.get(), rounds.get()] == ["a0", "a1"]


def test_the_pool_runs_another_namespaces_work_next_not_after_the_flood() -> None:
    pool = FairPool(1, name="test-fair")
    gate, holding, order = threading.Event(), threading.Event(), []
    pool.submit("flood", lambda: (holding.set(), gate.wait()))  # holds the only thread until the queue is built
    assert holding.wait(10)
    futures = [pool.submit("flood", lambda i=i: order.append(f"flood-{i}")) for i in range(50)]
    futures.append(pool.submit("quiet", lambda: order.append("quiet")))
    gate.set()
    for future in futures:
        future.result(timeout=10)
    assert order.index("quiet") == 1, order[:5]
    assert [o for o in order if o != "quiet"] == [f"flood-{i}" for i in range(50)], "one namespace keeps its order"
    pool.shutdown()


def test_the_pool_starts_threads_as_work_comes_up_to_its_size_and_returns_results_and_errors() -> None:
    pool = FairPool(3, name="test-lazy")
    assert not [t for t in threading.enumerate() if t.name.startswith("test-lazy_")], "no thread before work"
    gate = threading.Event()
    held = [pool.submit(f"ns{i}", gate.wait) for i in range(5)]
    deadline = time.monotonic() + 10
    while pool.waiting() > 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    names = [t.name for t in threading.enumerate() if t.name.startswith("test-lazy_")]
    assert len(names) == 3, names
    assert pool.waiting() == 2, "three running, two waiting for a thread"
    gate.set()
    assert all(f.result(timeout=5) is True for f in held)
    assert pool.submit("x", lambda: 42).result(timeout=5) == 42
    failed = pool.submit("x", lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failed.result(timeout=5)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit("x", lambda: None)


def test_work_that_comes_at_once_gets_a_thread_each_even_while_an_idle_one_is_waking() -> None:
    pool = FairPool(16, name="test-burst")
    pool.submit("ns", lambda: None).result(timeout=5)  # one thread, now idle
    gate, running = threading.Event(), []
    lock = threading.Lock()

    def hold() -> None:
        with lock:
            running.append(1)
        gate.wait(10)

    held = [pool.submit(f"ns{i % 3}", hold) for i in range(8)]
    deadline = time.monotonic() + 5
    while len(running) < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(running) == 8, "eight items at once ran at once (one idle thread did not take them one by one)"
    gate.set()
    for future in held:
        future.result(timeout=5)
    assert len([t for t in threading.enumerate() if t.name.startswith("test-burst_")]) == 8
    pool.shutdown()


def test_asyncio_awaits_the_pools_future() -> None:
    pool = FairPool(2, name="test-fair-aio")

    async def main() -> int:
        return await asyncio.wrap_future(pool.submit("ns", lambda: 7))

    assert asyncio.run(main()) == 7
    pool.shutdown()


# -- kopf's scheduler --------------------------------------------------------------------------------------


def _event(namespace: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "x", "uid": "u"}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"type": "ADDED", "object": {"metadata": meta}}


def test_teach_kopf_accepts_the_installed_kopf_and_is_done_once() -> None:
    from kopf._cogs.aiokits import aiotasks
    from kopf._core.reactor import queueing

    original = queueing.aiotasks
    try:
        fairness.teach_kopf()
        taught = queueing.aiotasks
        assert taught is not aiotasks and issubclass(taught.Scheduler, aiotasks.Scheduler)
        assert taught.cancel_coro is aiotasks.cancel_coro, "every other name is kopf's own"
        fairness.teach_kopf()
        assert queueing.aiotasks is taught, "a second call changes nothing"
    finally:
        queueing.aiotasks = original


def test_teach_kopf_refuses_a_kopf_it_does_not_know(monkeypatch: pytest.MonkeyPatch) -> None:
    from kopf._core.reactor import queueing

    async def worker(*, settings: Any, processor: Any) -> None:  # a worker without key and streams
        pass

    monkeypatch.setattr(queueing, "worker", worker)
    with pytest.raises(RuntimeError, match=r"kopf .* queues its object workers in a way .* the kopf version pyproject"):
        fairness.teach_kopf()


def test_kopfs_scheduler_taught_starts_another_namespaces_worker_next() -> None:
    """kopf's Scheduler with a limit of 1, as the operator's watcher has 24: a flood of 20 objects in one namespace
    spawned first, then one object in another. kopf's own queue starts it last; the taught one third (the running
    one, then the one whose turn came before it)."""
    from kopf._cogs.aiokits import aiotasks
    from kopf._core.reactor import queueing

    started: list[str] = []

    async def run(scheduler_type: type) -> list[str]:
        started.clear()
        spawned = asyncio.Event()

        async def worker(*, key: tuple[str, str], streams: dict[Any, Any]) -> None:  # kopf's worker, as far as read
            started.append(key[1])
            await spawned.wait()  # the first holds the only slot until every worker is queued

        scheduler = scheduler_type(limit=1)
        streams: dict[Any, Any] = {}
        for namespace, uid in [*[("flood", f"f{i}") for i in range(20)], ("quiet", "q")]:
            key = ("modelapps", uid)
            streams[key] = queueing.Stream(backlog=asyncio.Queue(), pressure=asyncio.Event())
            await streams[key].backlog.put(_event(namespace))
            await scheduler.spawn(worker(key=key, streams=streams), name=f"worker for {key}")
        spawned.set()
        await scheduler.wait()
        await scheduler.close()
        return list(started)

    fifo = asyncio.run(run(aiotasks.Scheduler))
    assert fifo.index("q") == 20, "kopf's own queue: the quiet namespace last"
    fair = asyncio.run(run(fairness._KopfAiotasks(aiotasks).Scheduler))
    assert fair.index("q") == 2, f"after the flood's one turn that was queued first: {fair}"
    assert sorted(fair) == sorted(fifo), "every worker still runs, once"


def test_one_namespace_holds_at_most_its_share_of_kopfs_workers() -> None:
    """A namespace whose workers never end (events every second, a handler retrying) keeps what it holds, but no
    more than `namespace_share`: another namespace's worker starts in the slots left, without waiting for one."""
    from kopf._cogs.aiokits import aiotasks
    from kopf._core.reactor import queueing

    assert (fairness.namespace_share(32), fairness.namespace_share(4), fairness.namespace_share(2)) == (24, 3, 1)
    assert fairness.namespace_share(None) is None and fairness.namespace_share(1) is None

    async def run() -> tuple[int, list[str], list[str]]:
        release, running, most, started = asyncio.Event(), {"n": 0}, {"n": 0}, []

        async def worker(*, key: tuple[str, str], streams: dict[Any, Any]) -> None:
            started.append(key[1])
            if key[1].startswith("f"):
                running["n"] += 1
                most["n"] = max(most["n"], running["n"])
                await release.wait()
                running["n"] -= 1

        scheduler = fairness._KopfAiotasks(aiotasks).Scheduler(limit=4)
        streams: dict[Any, Any] = {}
        for namespace, uid in [*[("flood", f"f{i}") for i in range(10)], ("quiet", "q1"), ("quiet", "q2")]:
            key = ("modelapps", uid)
            streams[key] = queueing.Stream(backlog=asyncio.Queue(), pressure=asyncio.Event())
            await streams[key].backlog.put(_event(namespace))
            await scheduler.spawn(worker(key=key, streams=streams), name=f"worker for {key}")
        for _ in range(50):  # let the spawner and the quiet workers run
            await asyncio.sleep(0)
        before_release = list(started)
        release.set()
        await scheduler.wait()
        await scheduler.close()
        return most["n"], before_release, started

    most, before_release, started = asyncio.run(run())
    assert most == 3, "the flood held 3 of the 4 slots, never the fourth"
    assert {"q1", "q2"} <= set(before_release), "the quiet namespace's workers ran while the flood held its share"
    assert sorted(started) == sorted([f"f{i}" for i in range(10)] + ["q1", "q2"]), "every worker ran once"


def test_a_worker_whose_event_cannot_be_read_waits_in_a_round_of_its_own() -> None:
    async def worker(*, key: Any, streams: dict[Any, Any]) -> None:
        pass

    coro = worker(key="missing", streams={})
    assert fairness._namespace_of(coro) is None
    coro.close()
    assert fairness._namespace_of(object()) is None

    from kopf._core.reactor import queueing

    async def make() -> tuple[Any, Any]:
        streams = {"k": queueing.Stream(backlog=asyncio.Queue(), pressure=asyncio.Event())}
        await streams["k"].backlog.put(_event(None))  # a cluster-scoped object: the round of ""
        return worker(key="k", streams=streams), streams

    coro, _ = asyncio.run(make())
    assert fairness._namespace_of(coro) == ""
    coro.close()
