"""The operator's memory of its ModelApps and their children: trimmed, newest-wins, read-your-writes.

Why: with a GET of the ModelApp, its Deployment and its Service on every child event, 1,000 ModelApps
cost tens of thousands of reads, and the API server (not the operator) was the bottleneck. The watch
streams already deliver every object; the responses of our own writes deliver the rest.

The contract:
- `put` keeps, per (kind, namespace, name), the copy with the highest `metadata.resourceVersion`
  (compared as integers, which is what the API server's etcd revisions are; when a version is not an
  integer the newer arrival wins). So a watch event that is older than the response of our own write
  never replaces it: a reader always sees at least what the operator itself last wrote (read-your-writes).
  Only the operator writes a ModelApp's status, so the status read from here is never behind.
- `drop` forgets an object (a DELETED event); a later, newer `put` brings it back.
- Copies are trimmed (`trim`): `metadata.managedFields` and the last-applied annotation are dropped,
  which is most of an object's size, so memory stays small and O(objects).
A miss means "not seen yet" (startup, or an object that does not exist): callers read from the API then.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

Obj = dict[str, Any]
Key = tuple[str, str, str]

_DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def trim(obj: Mapping[str, Any]) -> Obj:
    """A plain-dict copy of `obj` without managedFields (and without kubectl's last-applied copy)."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    annotations = meta.get("annotations")
    if isinstance(annotations, Mapping) and any(a in annotations for a in _DROPPED_ANNOTATIONS):
        meta["annotations"] = {k: v for k, v in annotations.items() if k not in _DROPPED_ANNOTATIONS}
    return {**{k: v for k, v in obj.items() if k != "metadata"}, "metadata": meta}


def _version(obj: Mapping[str, Any]) -> int | None:
    raw = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def newer(candidate: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    """True when `candidate` should replace `current` (see the module docstring)."""
    if current is None:
        return True
    mine, theirs = _version(candidate), _version(current)
    return mine is None or theirs is None or mine >= theirs


class Store:
    """Thread-safe map of trimmed objects; kopf's event loop and its worker threads both use it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[Key, Obj] = {}

    @staticmethod
    def key(kind: str, obj: Mapping[str, Any]) -> Key:
        meta = obj.get("metadata") or {}
        return kind, str(meta.get("namespace") or ""), str(meta.get("name") or "")

    def put(self, kind: str, obj: Mapping[str, Any]) -> Obj:
        """Remember `obj` unless a newer copy is known; returns the copy now kept."""
        copy = trim(obj)
        key = self.key(kind, copy)
        with self._lock:
            current = self._objects.get(key)
            if current is not None and not newer(copy, current):
                return current
            self._objects[key] = copy
            return copy

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._objects.get((kind, namespace, name))

    def of_kind(self, kind: str) -> list[Obj]:
        """Every known object of `kind` (e.g. the managed Ingresses, to see who routes which host)."""
        with self._lock:
            return [obj for (k, _, _), obj in self._objects.items() if k == kind]

    def drop(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._objects.pop((kind, namespace, name), None)

    def __len__(self) -> int:
        return len(self._objects)


class Names:
    """Which child names are held, by anyone: every object of the child kinds in a namespace, ours or not (a
    Service the platform made, another controller's Deployment).

    Why: before a ModelApp's child is first written, the engine must know whether another owner holds its
    name (it is then never written: `NameTaken`). The store only holds our own labelled children, so that
    took a GET per child of every new ModelApp. Here one listing per (kind, namespace) primes the names
    (`prime`), and the watch events of every object of those kinds keep them current (`note`; kopf receives
    them all, only our labelled ones reach the store). `free` is None until primed: the caller reads the API.
    A name created moments before the check may not be noted yet: the same window as a GET before an apply.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._primed: set[tuple[str, str]] = set()
        self._held: set[Key] = set()

    def prime(self, kind: str, namespace: str, names: list[str]) -> None:
        with self._lock:
            self._held.update((kind, namespace, name) for name in names)
            self._primed.add((kind, namespace))

    def note(self, kind: str, namespace: str, name: str, *, present: bool) -> None:
        with self._lock:
            (self._held.add if present else self._held.discard)((kind, namespace, name))

    def free(self, kind: str, namespace: str, name: str) -> bool | None:
        """True: nobody holds the name; False: somebody does; None: not known (not primed)."""
        with self._lock:
            if (kind, namespace) not in self._primed:
                return None
            return (kind, namespace, name) not in self._held

    def __len__(self) -> int:
        return len(self._held)
