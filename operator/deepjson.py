"""JSON from the API server, however deep its nesting.

Why: a tenant nests an object's JSON as deep as they like, and Python's decoder does not follow. Whoever may
update an object may send its `metadata.managedFields`, and the API server keeps each entry's `fieldsV1` as
sent: it stored a 1,500-level one on a ConfigMap, a Deployment and a ModelApp. Every kind has
managedFields. Python's `json.loads` recurses once per level and raises RecursionError near 1,000. In kopf's
watch that error ends the watcher, and with it the whole operator, for every namespace; after a restart the
same object is listed again. The nightly bump's list of ModelApps fails the same way.

So every answer of the API server is decoded by `loads`: `json.loads` as usual (the same speed; nothing
else happens on the way), and only when that fails for depth, the same text again with every container nested
deeper than `CLIP_DEPTH` replaced by the string `CLIPPED`. Nothing a Kubernetes object means is that deep:
a ModelApp's spec is a few levels, and its structural schema bounds it. The operator ignores managedFields,
and a clipped spec fails the spec's parse like any other bad spec, with a message in the ModelApp's status.

`teach_kopf` makes kopf decode the same way: its watch streams (`json.loads` per event line) and its other
answers (aiohttp's `ClientResponse.json`, lists and patches). kopf has no setting for the decoder, so the
two names it calls are replaced. The check that they still exist runs at every start and fails it with a
message naming the version found.

What kopf decodes also loses `metadata.managedFields` at once (`lean`: a watch event's object, a list's items,
an object). Neither kopf nor the operator reads them (the store drops them too: cache.trim), and they are a
large share of every body: a Deployment's, with the fields of the operator and of two controllers, is about a
third of it. Why (issue 15): with kopf's worker limit, the events a burst queues wait as decoded bodies; a
tracemalloc census at the end of a 1,000-app burst (benchmarks.operator --trace-memory) found 31.5 of the
82 MiB the operator held in such bodies (19.3 MiB from a listing, 12.2 MiB from watch events).
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Containers nested deeper than this are clipped, when the text is too deep for the decoder at all.
CLIP_DEPTH = 64
#: What a clipped container becomes.
CLIPPED = f"(nested deeper than {CLIP_DEPTH} levels: not read)"
# A JSON string (escapes included) or one bracket; brackets inside strings are thereby skipped.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def loads(data: str | bytes | bytearray) -> Any:
    """`json.loads`, and for a document too deep for it the same document clipped at `CLIP_DEPTH` levels.

    Malformed JSON raises `json.JSONDecodeError` (a ValueError), as `json.loads` does.
    """
    try:
        return json.loads(data)
    except RecursionError:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
        return json.loads(clip(text))


def clip(text: str, depth: int = CLIP_DEPTH) -> str:
    """`text` with every array or object that opens deeper than `depth` levels replaced by `CLIPPED`
    (a JSON string); iterative, so any depth is fine. Text that is not JSON stays not JSON."""
    parts: list[str] = []
    level = 0
    kept_to = 0  # text before this offset is in `parts` or clipped away
    for token in _TOKENS.finditer(text):
        char = token.group()
        if char in "[{":
            level += 1
            if level == depth + 1:
                parts.append(text[kept_to : token.start()])
        elif char in "]}":
            if level == depth + 1:
                parts.append(json.dumps(CLIPPED))
                kept_to = token.end()
            level -= 1
    parts.append(text[kept_to:] if level <= depth else "")
    return "".join(parts)


def lean(doc: Any) -> Any:
    """`doc` (a watch event, a list, an object) without its objects' `metadata.managedFields`, changed in place."""
    if isinstance(doc, dict):
        for obj in (doc.get("object"), *(doc.get("items") or ()), doc):
            meta = obj.get("metadata") if isinstance(obj, dict) else None
            if isinstance(meta, dict):
                meta.pop("managedFields", None)
    return doc


def loads_lean(data: str | bytes | bytearray) -> Any:
    """`loads`, then `lean`: how kopf decodes (`teach_kopf`)."""
    return lean(loads(data))


class _KopfJson:
    """What kopf's API module sees as `json`: the stdlib module, with `loads` ours."""

    loads = staticmethod(loads_lean)

    def __getattr__(self, name: str) -> Any:
        return getattr(json, name)


def teach_kopf() -> None:
    """Make kopf (and the aiohttp client it uses) decode the API server's answers with `loads_lean`.

    Raises RuntimeError when kopf or aiohttp no longer have the names replaced here (a new major version):
    the operator must not start with a decoder that one tenant's object can stop.
    """
    import aiohttp
    import kopf
    from kopf._cogs.clients import api as kopf_api

    defaults = getattr(aiohttp.ClientResponse.json, "__kwdefaults__", None) or {}
    module_json = getattr(kopf_api, "json", None)
    if "loads" not in defaults or module_json not in (json, _KOPF_JSON):
        raise RuntimeError(
            f"kopf {getattr(kopf, '__version__', '?')} with aiohttp {aiohttp.__version__} decode the API server's "
            "answers in a way this operator does not know (kopf._cogs.clients.api.json, "
            "aiohttp.ClientResponse.json's loads): install the versions pyproject.toml allows"
        )
    defaults["loads"] = loads_lean
    setattr(kopf_api, "json", _KOPF_JSON)  # noqa: B010 (kopf does not export the name it imported)


_KOPF_JSON = _KopfJson()
