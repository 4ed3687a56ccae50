"""`modelapp-serving versions`: the complete model versions under a URI, newest first.

Why it is here: an app's CI job that bakes "the newest model" into its image must pick the same
version the operator's `latest` policy would, from the same store code, on a build runner that has
only the serving image (serving never imports the operator, so the order is restated here and a
unit test holds it equal to `modelapp_operator.policies.rank` for `latest`).

"Newest" is natural version order: digit runs compare as numbers (`10` > `9`, `1.10` > `1.9`,
`2026-11-24` > `2026-09-30`); only names that start with a digit, after an optional `v`, count, so
a pointer such as `latest` or `staging` is never picked. Only complete versions are listed (the
manifest is present and names its own version); `fetch` then verifies every byte of the one chosen.
Output: one version a line, newest first; nothing listed is exit 1 with the reason on stderr.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable, Sequence

from modelapp_serving.stores import StoreError, open_store, scrub
from modelapp_serving.stores.transfer import settings_from_env

_CHUNK = re.compile(r"\d+|\D+")
_VERSIONISH = re.compile(r"^v?\d")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Digit runs compare as numbers, other runs as text; a number sorts before text."""
    return tuple((0, int(chunk)) if chunk.isdigit() else (1, chunk) for chunk in _CHUNK.findall(name))


def newest_first(names: Iterable[str]) -> list[str]:
    """Version-like names, newest first; ties (`7` and `v7`) keep name order, as the operator's rank does."""
    ordered = sorted(name for name in set(names) if _VERSIONISH.match(name))
    ordered.sort(key=lambda name: natural_key(name.removeprefix("v")), reverse=True)
    return ordered


def _rank(names: Sequence[str]) -> Sequence[str]:
    return newest_first(names)


def main(args: argparse.Namespace) -> int:
    """CLI adapter: versions on stdout; one scrubbed line on stderr and exit 1 when there are none."""
    try:
        store = open_store(args.uri, settings=settings_from_env(os.environ))
        found = store.list_versions(rank=_rank, limit=args.limit)
    except (StoreError, OSError, ValueError) as exc:
        print(f"versions failed: {scrub(str(exc))}", file=sys.stderr)
        return 1
    if not found:
        print(
            f"versions: no complete version under {args.uri} (a version is complete once its "
            "modelapp-manifest.json is published; names must start with a digit, or v and a digit)",
            file=sys.stderr,
        )
        return 1
    for version in found:
        print(version)
    return 0
