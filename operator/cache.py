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
- `drop` forgets an object (a DELETED event, or a ModelApp that left this replica's shard); a later, newer
  `put` brings it back. Given the version at which it left, the store remembers that version for
  `TOMBSTONE_SECONDS` and refuses a `put` of it or anything older: the response of a write sent before the
  object left (read in a worker thread after the event loop dropped it) must not bring it back. Without
  that, a shard that had just written a ModelApp's status kept it after it moved away, and acted on its
  child events as well as the new shard (test_shards.py: rolled back by the old shard, once in CI).
- Copies are trimmed (`trim`): `metadata.managedFields` and the last-applied annotation are dropped,
  which is most of an object's size, so memory stays small and O(objects).
- Copies are kept serialized (`marshal`, CPython's own compact format for plain values) and decoded on every
  read, so each reader gets an object of its own. Why (issue 15): as Python dicts a ModelApp, its Deployment
  and its Service took tens of KiB per app (every key, string and number a heap object of its own, every dict
  with spare slots), the largest share of the operator's memory at 5,000 ModelApps; serialized they take
  less than their compact JSON. `marshal` rather than JSON because it is 3-5x faster both ways (a Deployment:
  ~25 us to keep, ~50 us to read back); it is safe here because the store only ever reads back bytes it wrote
  itself, from values that came out of JSON. `deleting` answers the one question asked on every child event
  (is the owner known, and is it going?) without decoding anything.
- The serialized copies are compressed (zlib, level 1) against a preset dictionary per kind: the first object
  of that kind the store kept. Two ModelApps, Deployments or Services of this operator share most of their
  bytes (keys, labels, the container's shape), so a copy shrinks to what is its own: on the captured objects
  of a 5,000-app run (`python -m benchmarks.operator.store`), 6.9 KiB per app serialized, 0.8-1.2 KiB
  compressed, for ~11 us more per write and ~5 us per read of a Deployment (issue 15: the operator's peak at
  5,000 apps went from 251.5 to 232.7 MiB; benchmarks/README.md). Measured inside the operator in a 1,000-app
  burst (thread CPU time), the store is ~13 % of the operator's CPU: 85-95 us per write, ~70 us per read,
  three to four times what the store benchmark measures on a quiet core (the control plane shares the cores).
  Raw deflate with an 8 KiB window and a small hash table was 3x faster to compress on a quiet core and no
  faster there, so zlib's defaults stay.
- A `put` of the version already kept encodes nothing: every write of ours is answered and then comes back as
  a watch event of the same version (a 1,000-app burst: 14,379 encodes -> 9,662).
A miss means "not seen yet" (startup, or an object that does not exist): callers read from the API then.
"""

from __future__ import annotations

import marshal
import threading
import time
import zlib
from collections.abc import Mapping
from typing import Any, cast

Obj = dict[str, Any]
Key = tuple[str, str, str]

_DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)
#: How long a dropped object's last version is remembered (`Store.drop`): far longer than a write is in flight.
TOMBSTONE_SECONDS = 120.0


def trim(obj: Mapping[str, Any]) -> Obj:
    """A plain-dict copy of `obj` without managedFields (and without kubectl's last-applied copy)."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    annotations = meta.get("annotations")
    if isinstance(annotations, Mapping) and any(a in annotations for a in _DROPPED_ANNOTATIONS):
        meta["annotations"] = {k: v for k, v in annotations.items() if k not in _DROPPED_ANNOTATIONS}
    return {**{k: v for k, v in obj.items() if k != "metadata"}, "metadata": meta}


def _version(obj: Mapping[str, Any]) -> int | None:
    return _number((obj.get("metadata") or {}).get("resourceVersion"))


def _number(raw: object) -> int | None:
    """A resourceVersion as the integer it is (an etcd revision), or None."""
    try:
        return int(raw) if isinstance(raw, str | int) else None
    except ValueError:
        return None


class Store:
    """Thread-safe map of trimmed objects kept serialized; kopf's event loop and its worker threads both use it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: key -> (resourceVersion as a number, being deleted, the object serialized)
        self._objects: dict[Key, tuple[int | None, bool, bytes]] = {}
        #: key -> (the version it was dropped at, when): only objects that were kept, for TOMBSTONE_SECONDS
        self._dropped: dict[Key, tuple[int, float]] = {}
        self._pruned = time.monotonic()
        self._zdicts: dict[str, bytes] = {}  # kind -> its first kept object, serialized: the preset dictionary

    @staticmethod
    def key(kind: str, obj: Mapping[str, Any]) -> Key:
        meta = obj.get("metadata") or {}
        return kind, str(meta.get("namespace") or ""), str(meta.get("name") or "")

    def put(self, kind: str, obj: Mapping[str, Any]) -> Obj:
        """Remember `obj` unless a newer copy is known, or it was dropped at its version or a newer one; returns
        the copy now kept (the caller's own object), or `obj` trimmed when a drop refused it."""
        copy = trim(obj)
        key, version = self.key(kind, copy), _version(copy)
        with self._lock:
            current = self._objects.get(key)
        if current is not None and version is not None and current[0] == version:
            return copy  # this very version is kept (our write's answer, then its watch event): nothing to encode
        entry = (version, bool(copy["metadata"].get("deletionTimestamp")), self._encode(kind, copy))
        with self._lock:
            current = self._objects.get(key)
            if current is None and self._dropped:
                dropped = self._dropped.get(key)
                if dropped is not None and version is not None and version <= dropped[0]:
                    return copy  # a copy from before it left: not kept
                self._dropped.pop(key, None)
            if current is None or _replaces(version, current[0]):
                self._objects[key] = entry
                return copy
        return self._decode(kind, current[2])

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        with self._lock:
            kept = self._objects.get((kind, namespace, name))
        return None if kept is None else self._decode(kind, kept[2])

    def holds(self, kind: str, namespace: str, name: str, version: object) -> bool:
        """This very version of the object is kept: a watch event of it tells nothing new (the echo of our own
        write, whose answer was kept first)."""
        at = _number(version)
        with self._lock:
            kept = self._objects.get((kind, namespace, name))
        return at is not None and kept is not None and kept[0] == at

    def deleting(self, kind: str, namespace: str, name: str) -> bool | None:
        """None: not known; True: known and being deleted (a deletionTimestamp); False: known, not going."""
        with self._lock:
            kept = self._objects.get((kind, namespace, name))
        return None if kept is None else kept[1]

    def of_kind(self, kind: str) -> list[Obj]:
        """Every known object of `kind` (e.g. the managed Ingresses, to see who routes which host)."""
        with self._lock:
            blobs = [blob for (k, _, _), (_, _, blob) in self._objects.items() if k == kind]
        return [self._decode(kind, blob) for blob in blobs]

    def drop(self, kind: str, namespace: str, name: str, *, version: object = None) -> None:
        """Forget an object. `version`: the resourceVersion it left at (its DELETED event, the event that moved it
        out of the shard); when it was kept, older copies are refused for TOMBSTONE_SECONDS."""
        key, at, now = (kind, namespace, name), _number(version), time.monotonic()
        with self._lock:
            kept = self._objects.pop(key, None)
            if kept is not None and at is not None:
                self._dropped[key] = (at, now)
            if self._dropped and now - self._pruned > TOMBSTONE_SECONDS:
                self._dropped = {k: v for k, v in self._dropped.items() if now - v[1] < TOMBSTONE_SECONDS}
                self._pruned = now

    def size(self) -> int:
        """The bytes of compressed objects kept (what the store's memory grows with)."""
        with self._lock:
            return sum(len(blob) for _, _, blob in self._objects.values())

    def __len__(self) -> int:
        return len(self._objects)

    def _encode(self, kind: str, obj: Obj) -> bytes:
        raw = marshal.dumps(obj)
        zdict = self._zdicts.get(kind)
        if zdict is None:
            with self._lock:
                zdict = self._zdicts.setdefault(kind, raw)
        packer = zlib.compressobj(1, zdict=zdict)
        return packer.compress(raw) + packer.flush()

    def _decode(self, kind: str, blob: bytes) -> Obj:
        raw = zlib.decompressobj(zdict=self._zdicts[kind]).decompress(blob)
        return cast(Obj, marshal.loads(raw))  # noqa: S302 - only bytes this store wrote (from JSON values)


def _replaces(mine: int | None, theirs: int | None) -> bool:
    """A copy of version `mine` replaces the kept one of version `theirs` (see the module docstring)."""
    return mine is None or theirs is None or mine >= theirs


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
