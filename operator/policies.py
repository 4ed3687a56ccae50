"""Update policies: which model version or image tag a ModelApp may move to.

A policy is a short string from `spec.updates.{model,image}.policy`:

- `pinned` — never move;
- `latest` — the greatest candidate in natural version order (digit runs compare as numbers,
  so `10` > `9`, `1.10` > `1.9`, `2026-11-24` > `2026-09-30`); only candidates that start with a
  digit (after an optional `v`) count, so moving pointers and branch tags (`latest`, `main`,
  `dev`) never do;
- `numeric` — only candidates made of digits (`7`, `12`), the largest wins;
- `semver:<range>` — only semantic versions (`1.4.2`, `v1.4.2`, `2.0.0-rc.1`) inside the range:
  `^1.4`, `~2.0`, `>=1.2,<2`, `1.4.x`, `*`, an exact `1.4.2`, alternatives joined by `||`.
  Pre-releases count only when a comparator of the range names a pre-release of the same
  `major.minor.patch` (npm's rule), so `^1.4` never picks `1.5.0-rc.1`.

An optional tag filter (a regular expression that must match the whole tag) narrows the
candidates first; when it has a named group `version`, that group is what the policy compares
(`^(?P<version>\\d+\\.\\d+\\.\\d+)-slim$` follows the `-slim` variants).

Everything here is pure: candidates in, a `Choice` (target or none, and a reason for the plan) out.
Bump never moves backwards: when the current value is already newer than every allowed
candidate, it stays.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

PolicyKind = Literal["pinned", "latest", "numeric", "semver"]

_SEMVER = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
_PARTIAL = re.compile(
    r"^v?(?P<major>\d+|[xX*])(?:\.(?P<minor>\d+|[xX*]))?(?:\.(?P<patch>\d+|[xX*]))?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
_COMPARATOR = re.compile(r"^(?P<op>\^|~|>=|<=|>|<|=)?\s*(?P<version>\S+)$")
_NUMERIC = re.compile(r"^\d{1,30}$")
_NATURAL_CHUNK = re.compile(r"\d+|[^\d]+")
_VERSIONISH = re.compile(r"^v?\d")


class PolicyError(ValueError):
    """The policy string (or its tag filter) cannot be understood; the message says why."""


@dataclass(frozen=True, order=True)
class SemVer:
    """A semantic version; ordering follows semver.org §11 (a release sorts after its pre-releases)."""

    major: int
    minor: int
    patch: int
    pre: tuple[tuple[int, int | str], ...] = ()

    @property
    def core(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def sort_key(self) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
        # (1,) marks a release, which sorts after any pre-release (0, ...) of the same core.
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, self.pre)


def _pre_key(pre: str | None) -> tuple[tuple[int, int | str], ...]:
    if not pre:
        return ()
    # Numeric identifiers sort before alphanumeric ones and compare as numbers (semver §11.4).
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in pre.split("."))


def parse_semver(text: str) -> SemVer | None:
    """A full `major.minor.patch[-pre][+build]` version (optional leading `v`), or None."""
    match = _SEMVER.match(text)
    if match is None:
        return None
    return SemVer(int(match["major"]), int(match["minor"]), int(match["patch"]), _pre_key(match["pre"]))


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key for `latest`: digit runs compare as numbers, other runs as text; numbers sort first."""
    return tuple((0, int(chunk)) if chunk.isdigit() else (1, chunk) for chunk in _NATURAL_CHUNK.findall(text))


@dataclass(frozen=True)
class _Bound:
    op: Literal[">=", ">", "<=", "<", "="]
    version: SemVer

    def admits(self, version: SemVer) -> bool:
        key, ref = version.sort_key(), self.version.sort_key()
        return {
            ">=": key >= ref,
            ">": key > ref,
            "<=": key <= ref,
            "<": key < ref,
            "=": key == ref,
        }[self.op]


@dataclass(frozen=True)
class SemverRange:
    """A union (`||`) of intersections of bounds, as npm's node-semver defines ranges."""

    text: str
    alternatives: tuple[tuple[_Bound, ...], ...]

    def admits(self, version: SemVer) -> bool:
        return any(self._admits_set(bounds, version) for bounds in self.alternatives)

    @staticmethod
    def _admits_set(bounds: tuple[_Bound, ...], version: SemVer) -> bool:
        if not all(bound.admits(version) for bound in bounds):
            return False
        if not version.pre:
            return True
        return any(bound.version.pre and bound.version.core == version.core for bound in bounds)


def _expand(op: str, text: str) -> tuple[_Bound, ...]:
    """Turn one comparator (`^1.4`, `~2`, `>=1.2`, `1.x`) into plain bounds."""
    match = _PARTIAL.match(text)
    if match is None:
        raise PolicyError(f"{text!r} is not a version in a semver range")
    parts = [match["major"], match["minor"], match["patch"]]
    known: list[int] = []
    for part in parts:
        if part is None or part in {"x", "X", "*"}:
            break
        known.append(int(part))
    pre = _pre_key(match["pre"]) if len(known) == 3 else ()
    padded = [*known, 0, 0, 0]
    low = SemVer(padded[0], padded[1], padded[2], pre=pre)
    if not known:
        return (_Bound(">=", SemVer(0, 0, 0)),) if op in {"", "=", "^", "~", ">="} else (_Bound("<", SemVer(0, 0, 0)),)
    upper = _upper(op, known)
    if op in {"^", "~"} or (op in {"", "="} and len(known) < 3):
        return (_Bound(">=", low), _Bound("<", upper))
    if op in {"", "="}:
        return (_Bound("=", low),)
    if op == ">" and len(known) < 3:
        return (_Bound(">=", upper),)
    if op == "<=" and len(known) < 3:
        return (_Bound("<", upper),)
    return (_Bound(op, low),)  # type: ignore[arg-type]


def _upper(op: str, known: list[int]) -> SemVer:
    """The exclusive upper bound of `^`, `~` or a partial version (`1.4` means `1.4.x`)."""
    if op == "^":
        # The first non-zero component is the one that may not change (node-semver's caret).
        for index, value in enumerate(known):
            if value != 0 or index == len(known) - 1:
                return _bump_at(known, index)
        return _bump_at(known, len(known) - 1)
    if op == "~":
        return _bump_at(known, min(1, len(known) - 1) if len(known) > 1 else 0)
    return _bump_at(known, len(known) - 1)


def _bump_at(known: list[int], index: int) -> SemVer:
    numbers = [*known, 0, 0, 0][:3]
    numbers[index] += 1
    for later in range(index + 1, 3):
        numbers[later] = 0
    return SemVer(numbers[0], numbers[1], numbers[2], pre=((0, 0),))  # below every release of that core


def parse_range(text: str) -> SemverRange:
    """Parse a node-semver style range; raise PolicyError with the offending part."""
    stripped = text.strip()
    if not stripped:
        raise PolicyError("a semver policy needs a range, e.g. 'semver:^1.4'")
    alternatives: list[tuple[_Bound, ...]] = []
    for alternative in stripped.split("||"):
        comparators = [part for part in re.split(r"[,\s]+", _join_operators(alternative.strip())) if part]
        if not comparators:
            raise PolicyError(f"empty alternative in semver range {text!r}")
        bounds: list[_Bound] = []
        for comparator in comparators:
            match = _COMPARATOR.match(comparator)
            if match is None:
                raise PolicyError(f"{comparator!r} is not a comparator in semver range {text!r}")
            bounds.extend(_expand(match["op"] or "", match["version"]))
        alternatives.append(tuple(bounds))
    return SemverRange(text=stripped, alternatives=tuple(alternatives))


def _join_operators(text: str) -> str:
    """`>= 1.2` is one comparator: drop blanks between an operator and its version."""
    return re.sub(r"(\^|~|>=|<=|>|<|=)\s+", r"\1", text)


@dataclass(frozen=True)
class Policy:
    """A parsed policy; `tag_filter` (compiled) applies before the policy itself."""

    kind: PolicyKind
    text: str
    semver_range: SemverRange | None = None
    tag_filter: re.Pattern[str] | None = field(default=None, compare=False)

    @property
    def follows(self) -> bool:
        return self.kind != "pinned"


def parse_policy(text: str | None, *, tag_filter: str | None = None) -> Policy:
    """Parse `pinned|latest|numeric|semver:<range>` (None means pinned: nothing moves by default)."""
    raw = (text or "pinned").strip()
    compiled = _compile_filter(tag_filter)
    if raw in {"pinned", "latest", "numeric"}:
        return Policy(kind=raw, text=raw, tag_filter=compiled)  # type: ignore[arg-type]
    if raw.startswith("semver:"):
        return Policy(kind="semver", text=raw, semver_range=parse_range(raw[len("semver:") :]), tag_filter=compiled)
    raise PolicyError(f"unknown update policy {raw!r}: use pinned, latest, numeric or semver:<range>")


def _compile_filter(tag_filter: str | None) -> re.Pattern[str] | None:
    if not tag_filter:
        return None
    try:
        return re.compile(tag_filter)
    except re.error as exc:
        raise PolicyError(f"tag filter {tag_filter!r} is not a valid regular expression: {exc}") from None


@dataclass(frozen=True)
class Choice:
    """The outcome for one field: `target` is None when nothing should change; `reason` is for people."""

    target: str | None
    reason: str
    ranked: tuple[str, ...] = ()  # allowed candidates newer than the current value, best first


def comparable(policy: Policy, value: str) -> str | None:
    """The part of `value` the policy compares (after the tag filter), or None when it does not take part."""
    if policy.tag_filter is not None:
        match = policy.tag_filter.fullmatch(value)
        if match is None:
            return None
        if "version" in policy.tag_filter.groupindex and match["version"] is not None:
            return str(match["version"])
    return value


def _key(policy: Policy, value: str) -> tuple[Any, ...] | None:
    """The policy's sort key for a value (after the tag filter), or None when the policy ignores it."""
    compared = comparable(policy, value)
    if compared is None:
        return None
    if policy.kind == "latest":
        return natural_key(compared.removeprefix("v")) if _VERSIONISH.match(compared) else None
    if policy.kind == "numeric":
        return (int(compared),) if _NUMERIC.match(compared) else None
    if policy.kind == "semver":
        version = parse_semver(compared)
        return None if version is None else version.sort_key()
    return None


def _allowed(policy: Policy, value: str) -> bool:
    if policy.kind == "semver":
        version = parse_semver(comparable(policy, value) or "")
        return version is not None and policy.semver_range is not None and policy.semver_range.admits(version)
    return _key(policy, value) is not None


def rank(policy: Policy, candidates: Iterable[str]) -> list[str]:
    """Allowed candidates, best first (ties, e.g. `1.4.2` and `v1.4.2`, keep name order)."""
    if not policy.follows:
        return []
    keyed = [(key, candidate) for candidate in sorted(set(candidates)) if (key := _key(policy, candidate)) is not None]
    keyed = [(key, candidate) for key, candidate in keyed if _allowed(policy, candidate)]
    keyed.sort(key=lambda pair: pair[0], reverse=True)
    return [candidate for _, candidate in keyed]


def _newer(policy: Policy, candidate: str, current: str) -> bool:
    """Is candidate newer than current? A current value the policy cannot order (`latest`,
    a branch tag) counts as older than everything, so following starts at the best candidate."""
    now, then = _key(policy, current), _key(policy, candidate)
    if now is None:
        return True
    return then is not None and then > now


def choose(policy: Policy, *, current: str, candidates: Sequence[str], excluded: Iterable[str] = ()) -> Choice:
    """Pick the newest allowed candidate newer than `current`, never moving backwards.

    `excluded` names candidates that must not be picked (quarantined after a failed rollout);
    the next best one is taken instead and the reason says so.
    """
    if not policy.follows:
        return Choice(None, "pinned")
    ranked = rank(policy, candidates)
    if not ranked:
        return Choice(None, f"no candidate matches {_describe(policy)} among {len(candidates)}")
    newer = [candidate for candidate in ranked if candidate != current and _newer(policy, candidate, current)]
    if not newer:
        if not _allowed(policy, current):
            return Choice(None, f"{current} is outside {_describe(policy)} and newer than any allowed; not moving back")
        return Choice(None, f"{current} is the newest allowed by {_describe(policy)}")
    skipped = set(excluded)
    allowed = [candidate for candidate in newer if candidate not in skipped]
    if not allowed:
        return Choice(None, f"every newer candidate is quarantined ({', '.join(newer)})", tuple(newer))
    passed = [candidate for candidate in newer[: newer.index(allowed[0])] if candidate in skipped]
    note = f" (skipping quarantined {', '.join(passed)})" if passed else ""
    return Choice(allowed[0], f"newest allowed by {_describe(policy)}{note}", tuple(allowed))


def _describe(policy: Policy) -> str:
    text = policy.text
    if policy.tag_filter is not None:
        text += f" with filter {policy.tag_filter.pattern!r}"
    return text
