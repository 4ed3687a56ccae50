"""Watches that timestamp what the API server reports, so latencies are measured the same way for both sides.

One thread per (collection, namespace) streams watch events; every event is kept per object name with the
`time.monotonic()` at which it arrived. `first(...)` answers "when was this object first seen in a state
that satisfies `check`", waiting (with a deadline) until it is.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client, watch

Obj = dict[str, Any]
Check = Callable[[Obj], bool]


class Watcher:
    """Stream one namespaced collection; remember (arrival time, object) per name."""

    def __init__(self, api: client.ApiClient, resource: str, namespace: str, *, keep: bool = True) -> None:
        """`resource`: "apps/v1/deployments", "v1/services", "modelapp.io/v1alpha1/modelapps"."""
        self._api, self._call, self._namespace, self._keep = api, resource, namespace, keep
        self.events: dict[str, list[tuple[float, Obj]]] = defaultdict(list)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._listeners: list[Callable[[float, str, Obj], None]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = threading.Event()

    def listen(self, callback: Callable[[float, str, Obj], None]) -> None:
        self._listeners.append(callback)

    def start(self) -> Watcher:
        self._thread.start()
        self._started.wait(30)
        return self

    def stop(self) -> None:
        self._stop.set()

    def _list(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """Plain dicts for group resources (CustomObjectsApi serves any group); the core group is typed."""
        group, version, plural = self._call.split("/") if self._call.count("/") == 2 else ("", *self._call.split("/"))
        if group:
            return client.CustomObjectsApi(self._api).list_namespaced_custom_object, (group, version, self._namespace,
                                                                                        plural)  # fmt: skip
        return getattr(client.CoreV1Api(self._api), f"list_namespaced_{plural.rstrip('s')}"), (self._namespace,)

    def _run(self) -> None:
        function, args = self._list()
        version = ""
        while not self._stop.is_set():
            stream = watch.Watch()
            self._started.set()
            kwargs: dict[str, Any] = {"timeout_seconds": 60}
            if version:
                kwargs["resource_version"] = version
            try:
                for event in stream.stream(function, *args, **kwargs):
                    self._record(event)
                    version = _rv(event["object"]) or version
                    if self._stop.is_set():
                        stream.stop()
            except client.ApiException as exc:
                if exc.status == 410:
                    version = ""  # expired: relist
                    continue
                raise
            except (urllib3.exceptions.HTTPError, OSError):
                # The stream broke: the API server went down at the end of the run (stopped: nothing to say), or
                # the connection dropped mid-run (resume from the last version seen, as any watcher does).
                if self._stop.wait(1.0):
                    return

    def _record(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        obj = event["object"] if isinstance(event["object"], dict) else self._api.sanitize_for_serialization(
            event["object"])  # fmt: skip
        name = obj["metadata"]["name"]
        for listener in self._listeners:
            listener(now, event["type"], obj)
        if self._keep:
            with self._cond:
                self.events[name].append((now, obj))
                self._cond.notify_all()

    def first(self, name: str, check: Check, *, after: float, timeout: float) -> float:
        """Arrival time of the first event for `name` at or after `after` whose object satisfies `check`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for arrived, obj in self.events.get(name, []):
                    if arrived >= after and check(obj):
                        return arrived
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self._call} {self._namespace}/{name}: not seen within {timeout:.0f}s")
                self._cond.wait(min(remaining, 1.0))


def _rv(obj: Any) -> str:
    meta = obj.get("metadata", {}) if isinstance(obj, dict) else getattr(obj, "metadata", None)
    if isinstance(meta, dict):
        return str(meta.get("resourceVersion") or "")
    return str(getattr(meta, "resource_version", "") or "")
