"""Every namespace its turn: what waits for kopf's object workers, and for the operator's child threads, is served a
namespace at a time, not first in first out.

Why (a namespace is a tenant; docs/security.md, "Stalling the fleet"): the operator handles at most
`MODELAPP_OBJECT_WORKERS` objects of a kind at once (kopf's `queueing.worker_limit`, which bounds its memory in a
burst: docs/scaling.md), and its passes run in CHILD_THREADS threads. Whatever waits for those waited in one queue,
in the order it came. A tenant who creates 300 ModelApps at once therefore put every other namespace's new
ModelApp behind all 300 of them: tests/integration/test_tenancy_flood.py measured the quiet namespace's Deployment
created last of 301 and its ModelApp Ready 19-43 s after its create, 2-3 s before the flood's last. Served a
namespace at a time, another namespace's object takes the next free worker after at most one object of each other
namespace that waits (then, for a ModelApp, kopf's handler threads take it first in first out, behind at most the
others that hold a worker).

A worker, once started, keeps its slot while its object's events keep coming (kopf hands them to it directly) and
while kopf's retry of a failed handler sleeps: one tenant that touches 24 ModelApps every second would keep every
slot. So one namespace holds at most `namespace_share` of them (24 of the default 32: as many as one namespace's
burst had before, settings.py): the rest only other namespaces may take.

`Rounds` is that queue (no I/O, no threads). Two users:

- `FairPool`: the operator's child threads (child events and the passes asked for later, `later.Later`): an
  executor whose `submit` names the namespace the work is for.
- kopf's scheduler of object workers (kopf._cogs.aiokits.aiotasks.Scheduler, made by each watcher in
  kopf._core.reactor.queueing): kopf has no setting for its queue, so `teach_kopf` gives the watchers a subclass
  whose pending workers wait in `Rounds`, by the namespace of the event each was started for. That event is the
  one the watcher put in the object's backlog just before (the worker coroutine's `streams[key]`). A worker whose
  event cannot be read waits in a round of its own (None); cluster-scoped objects share the round of "". As with
  deepjson.teach_kopf, what is replaced is checked at every start, and a kopf that differs stops it with a message
  naming its version.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Rounds(Generic[T]):
    """A queue per group, taken from in turn: `get` gives the oldest item of the group whose turn it is, and that
    group's next item waits until every other group that waits has had one. Not thread-safe: callers lock."""

    def __init__(self) -> None:
        self._queues: dict[Hashable, deque[T]] = {}
        self._turns: deque[Hashable] = deque()  # the groups that wait, in the order of their turns
        self._size = 0

    def put(self, group: Hashable, item: T) -> None:
        queue = self._queues.get(group)
        if queue is None:
            queue = self._queues[group] = deque()
            self._turns.append(group)
        queue.append(item)
        self._size += 1

    def get(self, *, eligible: Callable[[Hashable], bool] | None = None) -> T:
        """The next item (of the first group in turn that is `eligible`); IndexError when nothing (eligible) waits."""
        if eligible is None:
            group = self._turns.popleft()
        else:
            at = next((i for i, g in enumerate(self._turns) if eligible(g)), None)
            if at is None:
                raise IndexError("nothing eligible waits")
            group = self._turns[at]
            del self._turns[at]
        queue = self._queues[group]
        item = queue.popleft()
        self._size -= 1
        if queue:
            self._turns.append(group)
        else:
            del self._queues[group]
        return item

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return bool(self._turns)

    def groups(self) -> int:
        return len(self._turns)

    def any(self, eligible: Callable[[Hashable], bool]) -> bool:
        return any(eligible(g) for g in self._turns)


class FairPool:
    """Up to `threads` threads, started as work comes; `submit(group, fn)` queues `fn` in its group's round.

    The threads are daemons: at exit, work that waits is dropped, not run (every pass is level-based and the next
    operator decides again from the cluster), and a running pass ends with the process."""

    def __init__(self, threads: int, *, name: str) -> None:
        self._max = threads
        self._name = name
        self._cond = threading.Condition()
        self._rounds: Rounds[tuple[Future[Any], Callable[[], Any]]] = Rounds()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    def submit(self, group: Hashable, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("cannot schedule new work after shutdown")
            self._rounds.put(group, (future, fn))
            if self._idle:
                self._cond.notify()
            # An idle thread takes one item once it wakes (it may not have yet): more items than that, another thread.
            if len(self._rounds) > self._idle and len(self._threads) < self._max:
                thread = threading.Thread(target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # the system has no thread to give: the threads there are take it, if any
                    if not self._threads:
                        raise
                else:
                    self._threads.append(thread)
        return future

    def waiting(self) -> int:
        with self._cond:
            return len(self._rounds)

    def shutdown(self) -> None:
        """No new work; the threads end once what waits is done."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._rounds and not self._closed:
                    self._idle += 1
                    self._cond.wait()
                    self._idle -= 1
                if not self._rounds:
                    return
                future, fn = self._rounds.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn()
            except BaseException as exc:  # the caller's future gets it, as in ThreadPoolExecutor
                future.set_exception(exc)
            else:
                future.set_result(result)


# -- kopf's object workers ---------------------------------------------------------------------------------


def _namespace_of(coro: Any) -> str | None:
    """The namespace of the event that kopf's worker coroutine `coro` (not started yet) was spawned for: the
    first in its object's backlog (kopf._core.reactor.queueing.watcher puts it there just before); None when
    that cannot be read."""
    try:
        args = coro.cr_frame.f_locals
        event = args["streams"][args["key"]].backlog._queue[0]
        namespace = event["object"]["metadata"].get("namespace")
    except Exception:  # anything but kopf's first event (an end-of-stream marker, another shape): a round of its own
        return None
    return namespace if isinstance(namespace, str) else ""


def namespace_share(limit: int | None) -> int | None:
    """How many of kopf's `limit` object workers one namespace may hold at once: all but a quarter (at least one),
    which only other namespaces may take. None: no limit, no share."""
    if not limit or limit < 2:
        return None
    return limit - max(1, limit // 4)


class _Pending:
    """What kopf's scheduler keeps its pending jobs in (an asyncio.Queue there): `put`, `get_nowait`, `empty`; the
    jobs of a namespace that holds its share of running workers (`share`) wait, as if not there, until one ends
    (`ended`)."""

    def __init__(self, share: int | None) -> None:
        self._rounds: Rounds[tuple[Hashable, Any]] = Rounds()  # (namespace, job)
        self._share = share
        self._running: dict[Hashable, int] = {}  # namespace -> its workers started and not ended
        self._started: dict[Any, Hashable] = {}  # a started worker's coroutine -> its namespace

    def _eligible(self, group: Hashable) -> bool:
        return self._share is None or self._running.get(group, 0) < self._share

    async def put(self, job: Any) -> None:
        self.put_nowait(job)

    def put_nowait(self, job: Any) -> None:
        group = _namespace_of(getattr(job, "coro", None))
        self._rounds.put(group, (group, job))

    def get_nowait(self) -> Any:
        group, job = self._rounds.get(eligible=None if self._share is None else self._eligible)
        if self._share is not None:
            self._running[group] = self._running.get(group, 0) + 1
            self._started[job.coro] = group
        return job

    def ended(self, coro: Any) -> None:
        """A worker's task is done (or was cancelled before it ran)."""
        group = self._started.pop(coro, _NOT_STARTED)
        if group is _NOT_STARTED:
            return
        left = self._running[group] - 1
        if left:
            self._running[group] = left
        else:
            del self._running[group]

    def empty(self) -> bool:
        """Nothing that may start now waits (kopf's scheduler starts a job only when this is False)."""
        return not self._rounds or (self._share is not None and not self._rounds.any(self._eligible))

    def qsize(self) -> int:
        return len(self._rounds)


_NOT_STARTED = object()


def _fair_scheduler(base: type) -> type:
    class FairScheduler(base):  # type: ignore[misc]
        """kopf's Scheduler, its pending workers served a namespace at a time, no namespace holding more than its
        share of the running ones (`namespace_share`)."""

        def __init__(self, *args: Any, limit: int | None = None, **kwargs: Any) -> None:
            super().__init__(*args, limit=limit, **kwargs)
            self._pending_coros = _Pending(namespace_share(limit))

        def _task_done_callback(self, task: Any) -> None:
            self._pending_coros.ended(task.get_coro())  # before kopf's cleaner wakes the spawner
            super()._task_done_callback(task)

    return FairScheduler


class _KopfAiotasks:
    """What kopf's queueing module sees as `aiotasks`: kopf's module, with `Scheduler` the fair one."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self.Scheduler = _fair_scheduler(module.Scheduler)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def teach_kopf() -> None:
    """Make kopf's watchers start their object workers a namespace at a time (see above).

    Raises RuntimeError when kopf is not built the way this relies on (a new version): the names replaced, the
    pending queue of its scheduler and the arguments of its worker coroutine are checked first."""
    import kopf
    from kopf._cogs.aiokits import aiotasks
    from kopf._core.reactor import queueing

    current = getattr(queueing, "aiotasks", None)
    if isinstance(current, _KopfAiotasks):
        return
    scheduler = getattr(aiotasks, "Scheduler", None)
    init_names = getattr(getattr(scheduler, "__init__", None), "__code__", None)
    done = getattr(scheduler, "_task_done_callback", None)
    worker = getattr(getattr(queueing, "worker", None), "__code__", None)
    stream = getattr(queueing, "Stream", None)
    if (current is not aiotasks or init_names is None or "_pending_coros" not in init_names.co_names or done is None
            or worker is None or not {"key", "streams"} <= set(worker.co_varnames[: worker.co_kwonlyargcount])
            or "backlog" not in getattr(stream, "_fields", ())):  # fmt: skip
        raise RuntimeError(
            f"kopf {getattr(kopf, '__version__', '?')} queues its object workers in a way this operator does not "
            "know (kopf._core.reactor.queueing's aiotasks.Scheduler, worker(key, streams), Stream.backlog): "
            "install the kopf version pyproject.toml allows"
        )
    setattr(queueing, "aiotasks", _KopfAiotasks(aiotasks))  # noqa: B010 (kopf does not export the name it imported)


__all__ = ["FairPool", "Rounds", "teach_kopf"]
