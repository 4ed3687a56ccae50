"""Where smoke tests run: a pool of their own, a share of it per namespace, and their verdicts until a pass reads them.

A pass never runs a smoke test (the tenant's code answers it, and may hold every request for
`smoke.BUDGET_SECONDS`): it asks `SmokePool.verdict`, which starts the check in this pool when none runs and
hands the verdict out once it is in. When a check ends, the ModelApp's pass is asked for (`again`), or, when no
pod could answer yet, a pass in SMOKE_RETRY_SECONDS (`later`). So the pods of one app hold at most one of these
threads, never a kopf worker, a child thread or another app's turn; and a namespace holds at most
SMOKE_PER_NAMESPACE of them (a namespace is a tenant: tests/integration/test_tenancy_smoke.py).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from modelapp_operator import kube, rollout, smoke
from modelapp_operator.revisions import Pair

#: What the operator's functions log to: kopf hands each handler an adapter with its object in every line.
Logger = logging.Logger | logging.LoggerAdapter[Any]

#: Threads that run smoke tests (one check each at a time).
SMOKE_THREADS = 4
#: At most this many of those threads work for one namespace at a time: pods that hold every request for the
#: whole budget, in as many apps as there are threads, would otherwise keep every other namespace's smoke test,
#: and so its rollout, waiting. A check over the share waits its turn, its ModelApp looked at again in
#: SMOKE_RETRY_SECONDS.
SMOKE_PER_NAMESPACE = 2
SMOKE_RETRY_SECONDS = 5.0
#: What one check may sleep in all for the API server's Retry-After (`kube.throttle_budget`; engine.py says why).
SMOKE_THROTTLE_SECONDS = 5.0

SmokeCheck = Callable[[str, str, smoke.Check, Pair, smoke.TransportFor], rollout.SmokeVerdict | None]
#: A pass of ModelApp (name, namespace) now (`again`), or in that many seconds (`later`).
Again = Callable[[str, str, Logger], None]
Later = Callable[[str, str, Logger, float], None]


class SmokePool:
    """The smoke tests of one operator process. `again` and `later` ask for a pass of a ModelApp (the engine's)."""

    def __init__(self, *, transport: smoke.TransportFor, check: SmokeCheck, again: Again, later: Later) -> None:
        self.pool = ThreadPoolExecutor(max_workers=SMOKE_THREADS, thread_name_prefix="modelapp-smoke")
        self.transport = transport
        self._check = check
        self._again = again
        self._later = later
        self._lock = threading.Lock()
        #: (namespace, name, pair) -> None while its check runs, then its verdict until a pass takes it.
        self._verdicts: dict[tuple[str, str, Pair], rollout.SmokeVerdict | None] = {}
        self._running: dict[str, int] = {}  # namespace -> checks submitted and not finished

    def verdict(self, name: str, namespace: str, test: smoke.Check, pair: Pair, logger: Logger, *,
                token: str | None = None) -> rollout.SmokeVerdict | None:  # fmt: skip
        """The verdict of the smoke test of `pair` once it is in (handed out once: the pass records it in
        status.revisions); until then None, and a check is started if none runs. `token`: the revision's smoke
        token, sent with the golden request (spec.auth)."""
        key = (namespace, name, pair)
        with self._lock:
            if key in self._verdicts:
                verdict = self._verdicts[key]
                if verdict is not None:
                    del self._verdicts[key]
                return verdict
            waits = self._running.get(namespace, 0) >= SMOKE_PER_NAMESPACE
            if not waits:
                self._verdicts[key] = None
                self._running[namespace] = self._running.get(namespace, 0) + 1
        if waits:  # this namespace has its share of the pool: ask again later
            self._later(name, namespace, logger, SMOKE_RETRY_SECONDS)
            return None
        check = functools.partial(self._run, key, test, logger, token)
        # kopf.event() and kopf's loggers read context variables: carry them into the check, as kopf does.
        self.pool.submit(contextvars.copy_context().run, check)
        return None

    def _run(self, key: tuple[str, str, Pair], test: smoke.Check, logger: Logger, token: str | None) -> None:
        namespace, name, pair = key
        transport = functools.partial(self.transport, token=token) if token else self.transport
        try:
            with kube.throttle_budget(SMOKE_THROTTLE_SECONDS):  # its own, not what the pass that asked left
                verdict = self._check(name, namespace, test, pair, transport)
                if token and verdict is not None and verdict.passed:  # and without the token, a 401 (spec.auth)
                    verdict = smoke.token_enforced(name, namespace, pair, self.transport) or verdict
        except Exception as exc:  # the API server could not list the pods: try again at the next pass
            logger.warning(f"Smoke test of {pair.describe()} could not run: {exc}")
            verdict = None
        with self._lock:
            self._running[namespace] -= 1
            if not self._running[namespace]:
                del self._running[namespace]
            if verdict is None:
                self._verdicts.pop(key, None)  # no ready pod (yet): a pass in a few seconds starts it again
            else:
                self._verdicts[key] = verdict
        if verdict is None:
            self._later(name, namespace, logger, SMOKE_RETRY_SECONDS)
        else:
            self._again(name, namespace, logger)


__all__ = ["SMOKE_PER_NAMESPACE", "SMOKE_RETRY_SECONDS", "SMOKE_THREADS", "SmokeCheck", "SmokePool"]
