"""Update policies: which model version or image tag a ModelApp may move to.

A policy is a short string from `spec.updates.{model,image}.policy`:

- `pinned` — never move;
- `latest` — the greatest candidate in natural version order (digit runs compare as numbers,
  so `10` > `9`, `1.10` > `1.9`, `2026-11-24` > `2026-09-30`); only candidates that start with a
  digit (after an optional `v`) count, so moving pointers and branch tags (`latest`, `main`,
  `dev`) never do;
- `numeric` — only candidates made of digits (`7`, `12`), the largest wins;
- `semver:<range>` — only semantic versions inside the range; the newest is what npm's node-semver
  `maxSatisfying(candidates, range)` picks (a property test runs the real node-semver to hold us to it).

Semver rules, node-semver's (strict mode), written out so that a reviewer can check them here:

- A candidate is `major.minor.patch[-pre][+build]` with an optional leading `v` (`v1.4.2`); numbers
  have no leading zeros (`01.2.3` and `1.2.3-01` are not versions), none is above 2**53-1, the whole
  is at most 256 characters. Build metadata never orders (`1.4.2+a` ties with `1.4.2`).
- A range is alternatives joined by `||`; an alternative is comparators that must all hold, joined
  by blanks or (our addition, since the CRD allows no blanks in a policy) commas: `>=1.2,<2`.
- A comparator is `[op][v]version`, op one of `=` `<` `<=` `>` `>=` `^` `~` `~>`, and the version
  may be partial or hold `x`/`X`/`*` (`1`, `1.4`, `1.4.x`, `*`); a pre-release or build only
  follows a full `major.minor.patch`. Blanks after an op are allowed (`>= 1.2`).
- Partial versions mean the whole span they name: `1.4` is `>=1.4.0 <1.5.0-0`, `>1.4` is `>=1.5.0`,
  `<=1.4` is `<1.5.0-0`, `<1.4` is `<1.4.0-0`, `>=1.4` is `>=1.4.0`, `>*` and `<*` match nothing.
- `^` allows changes that do not touch the first non-zero of major, minor, patch (`^1.4` is
  `>=1.4.0 <2.0.0-0`, `^0.4` is `>=0.4.0 <0.5.0-0`, `^0.0.3` is `>=0.0.3 <0.0.4-0`); `~` and `~>`
  allow patch changes (minor ones when only the major is given: `~1` is `>=1.0.0 <2.0.0-0`).
- A hyphen range `A - B` (blanks around the dash, so only outside the CRD, e.g. on the command
  line) is `>=A <=B`, a partial `B` covering its whole span (`1.2 - 1.4` is `>=1.2.0 <1.5.0-0`).
- Pre-releases: a pre-release candidate satisfies an alternative only when one of its comparators
  names a pre-release of the same `major.minor.patch`, so `>1.4` never picks `1.5.0-rc.1` and `^1.4`
  never picks `2.0.0-rc.1`, while `>=1.5.0-rc.0` may pick `1.5.0-rc.1` (but not `1.6.0-rc.1`).
- `*`, `x` and `>=0.0.0` name no pre-release, and an alternative that is only `*` makes the whole
  range `*`: `* || >=2.0.0-rc.1` admits no pre-release (node-semver's reading, kept for agreement).
- Ties (`1.4.2`, `v1.4.2`, `1.4.2+b`) go to the first in name order.
- Where we part from node-semver, we refuse rather than guess: an empty alternative (`1.2 ||`), which
  node-semver reads as `*`, and the looser spellings it lets through (`~=1.2`, `vv1.2`, `>==1.2`) are errors.

An optional tag filter (`tagFilter`, images only) narrows the candidates first. It is a regular
expression that must match the whole tag; when it has a named group `version`, that group is what
the policy compares (`^(?P<version>\\d+\\.\\d+\\.\\d+)-slim$` follows the `-slim` variants). The
pattern comes from a tenant and the tags from a registry the tenant names, so both are hostile: a
backtracking engine (Python's `re`) takes exponential time on `(a+)+$` against a long tag and would
stall the whole nightly bump for every tenant. Filters therefore run on RE2 (`google-re2`), whose
matching time is linear in the tag, whatever the pattern; what RE2 cannot run in linear time
(backreferences, lookaround, atomic groups, possessive quantifiers, repeats over 1000) is refused
when the spec is validated, with a message that says so. Candidates longer than 256 characters
(twice the OCI tag limit) are ignored by every policy, so no listing can make one comparison costly.

Everything else here is pure: candidates in, a `Choice` (target or none, and a reason for the plan)
out. Bump never moves backwards: when the current value is already newer than every allowed
candidate, it stays.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

PolicyKind = Literal["pinned", "latest", "numeric", "semver"]
Operator = Literal[">=", ">", "<=", "<", "="]

#: The longest candidate any policy looks at: node-semver's own limit, twice OCI's 128-character tags.
MAX_CANDIDATE_LENGTH = 256
#: The largest version number node-semver takes (JavaScript's Number.MAX_SAFE_INTEGER).
MAX_VERSION_NUMBER = 2**53 - 1

_NUMBER = r"0|[1-9]\d*"
_PRE_ID = r"(?:\d*[A-Za-z-][0-9A-Za-z-]*|0|[1-9]\d*)"
_PRE = rf"{_PRE_ID}(?:\.{_PRE_ID})*"
_BUILD = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
_SEMVER = re.compile(
    rf"v?(?P<major>{_NUMBER})\.(?P<minor>{_NUMBER})\.(?P<patch>{_NUMBER})(?:-(?P<pre>{_PRE}))?(?:\+{_BUILD})?"
)
_PART = rf"{_NUMBER}|[xX*]"
#: `[op][v]version`: a partial version or x-range; pre-release and build only after a third part.
_COMPARATOR = re.compile(
    rf"(?P<op>\^|~>?|[<>]=?|=)?v?(?P<major>{_PART})"
    rf"(?:\.(?P<minor>{_PART})(?:\.(?P<patch>{_PART})(?:-(?P<pre>{_PRE}))?(?:\+{_BUILD})?)?)?"
)
_HYPHEN = re.compile(r"(?P<low>\S+) - (?P<high>\S+)")
_OPERATOR_BLANKS = re.compile(r"(\^|~>?|[<>]=?|=) +(?=v?[0-9xX*])")  # `>= 1.2`, not `< = 1.2`
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


#: The `-0` of node-semver's exclusive upper bounds (`<2.0.0-0`): below every pre-release of that core.
_LOWEST_PRE: tuple[tuple[int, int | str], ...] = ((0, 0),)


def _pre_key(pre: str | None) -> tuple[tuple[int, int | str], ...]:
    if not pre:
        return ()
    # Numeric identifiers sort before alphanumeric ones and compare as numbers (semver §11.4).
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in pre.split("."))


def parse_semver(text: str) -> SemVer | None:
    """A full `major.minor.patch[-pre][+build]` version (optional leading `v`), or None.

    None also for what node-semver refuses: over 256 characters, or a number above 2**53-1.
    """
    if len(text) > MAX_CANDIDATE_LENGTH:
        return None
    match = _SEMVER.fullmatch(text)
    if match is None:
        return None
    numbers = (int(match["major"]), int(match["minor"]), int(match["patch"]))
    if max(numbers) > MAX_VERSION_NUMBER:
        return None
    return SemVer(*numbers, pre=_pre_key(match["pre"]))


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key for `latest`: digit runs compare as numbers, other runs as text; numbers sort first."""
    return tuple((0, int(chunk)) if chunk.isdigit() else (1, chunk) for chunk in _NATURAL_CHUNK.findall(text))


@dataclass(frozen=True)
class _Bound:
    op: Operator
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


#: What `>*` and `<*` mean: node-semver's null set `<0.0.0-0`, which nothing satisfies.
_NOTHING = (_Bound("<", SemVer(0, 0, 0, _LOWEST_PRE)),)


@dataclass(frozen=True)
class SemverRange:
    """A union (`||`) of intersections of bounds; an empty intersection is `*` (every release)."""

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
        # node-semver's testSet: a pre-release needs a comparator naming a pre-release of its own core.
        return any(bound.version.pre and bound.version.core == version.core for bound in bounds)


@dataclass(frozen=True)
class _Partial:
    """A version as written in a range: the numbers before the first `x` (0 to 3 of them), and
    the pre-release, which only counts after three numbers."""

    known: tuple[int, ...]
    pre: tuple[tuple[int, int | str], ...]

    def low(self) -> SemVer:
        """The lowest version the partial names (`1.4` -> `1.4.0`; node-semver pads with zeros)."""
        padded = (*self.known, 0, 0, 0)
        return _version(padded[0], padded[1], padded[2], self.pre)

    def next_up(self, index: int) -> SemVer:
        """`<` this excludes everything from the next value of part `index` on (`-0`: its pre-releases too)."""
        numbers = [*self.known, 0, 0, 0][:3]
        numbers[index] += 1
        numbers[index + 1 :] = [0] * (2 - index)
        return _version(numbers[0], numbers[1], numbers[2], _LOWEST_PRE)


def _version(major: int, minor: int, patch: int, pre: tuple[tuple[int, int | str], ...]) -> SemVer:
    if max(major, minor, patch) > MAX_VERSION_NUMBER:
        raise PolicyError(f"a version number in a semver range is above {MAX_VERSION_NUMBER}")
    return SemVer(major, minor, patch, pre)


def _partial(match: re.Match[str]) -> _Partial:
    known: list[int] = []
    for part in (match["major"], match["minor"], match["patch"]):
        if part is None or part in {"x", "X", "*"}:
            break
        known.append(int(part))
    return _Partial(tuple(known), _pre_key(match["pre"]) if len(known) == 3 else ())


def _caret(version: _Partial) -> tuple[_Bound, ...]:
    """`^`: the first non-zero part of major, minor, patch may not change (the last given one, if all are 0)."""
    known = version.known
    index = next((i for i, value in enumerate(known) if value != 0), len(known) - 1)
    return (*_floor(version), _Bound("<", version.next_up(index)))


def _tilde(version: _Partial) -> tuple[_Bound, ...]:
    """`~`/`~>`: patch changes when a minor is given, else minor changes."""
    return (*_floor(version), _Bound("<", version.next_up(0 if len(version.known) == 1 else 1)))


def _floor(version: _Partial) -> tuple[_Bound, ...]:
    """The `>=` bound a caret, tilde or x-range desugars to; none for `>=0.0.0`, which node-semver drops
    from what it generates (so `v0 v0.0.0-0` admits `0.0.0-0`: nothing then keeps 0.0.0's pre-releases out)."""
    low = version.low()
    return () if low == SemVer(0, 0, 0, ()) else (_Bound(">=", low),)


def _x_range(op: str, version: _Partial) -> tuple[_Bound, ...]:
    """A plain or compared partial version (`1.4`, `>1.4`, `<=1`) as node-semver desugars it."""
    last = len(version.known) - 1
    if op in {"", "="}:
        return (*_floor(version), _Bound("<", version.next_up(last)))
    if op == ">":
        return (_Bound(">=", _strip_pre(version.next_up(last))),)
    if op == "<=":
        return (_Bound("<", version.next_up(last)),)
    if op == "<":
        return (_Bound("<", _with_pre(version.low(), _LOWEST_PRE)),)
    return (_Bound(">=", version.low()),)


def _strip_pre(version: SemVer) -> SemVer:
    return _with_pre(version, ())


def _with_pre(version: SemVer, pre: tuple[tuple[int, int | str], ...]) -> SemVer:
    return SemVer(version.major, version.minor, version.patch, pre)


def _comparator(token: str, whole: str) -> tuple[_Bound, ...]:
    """One comparator (`^1.4`, `~2`, `>=1.2`, `1.x`, `*`) as plain bounds; `()` means any release."""
    match = _COMPARATOR.fullmatch(token)
    if match is None:
        raise PolicyError(
            f"{token!r} is not a version or comparator in semver range {whole!r}: "
            "write [op]version, op one of = < <= > >= ^ ~, e.g. '^1.4', '>=1.2,<2', '1.4.x'"
        )
    op, version = match["op"] or "", _partial(match)
    if not version.known:
        return _NOTHING if op in {"<", ">"} else ()
    if op == ">=" and _zero_floor(version, spelled_with_v=token[len(op) :].startswith("v")):
        return ()
    if op == "^":
        return _caret(version)
    if op in {"~", "~>"}:
        return _tilde(version)
    if len(version.known) == 3:
        return (_Bound("=" if op in {"", "="} else op, version.low()),)  # type: ignore[arg-type]
    return _x_range(op, version)


def _zero_floor(version: _Partial, *, spelled_with_v: bool) -> bool:
    """Is `>=version` what node-semver rewrites to `*`? `>=0.0.0`, `>=0`, `>=0.x` are; a full
    `>=v0.0.0` is kept as written, so it is not. It matters: `*` names no pre-release, and an
    alternative that is only `*` makes the whole range `*` (see parse_range)."""
    return not any(version.known) and not version.pre and not (len(version.known) == 3 and spelled_with_v)


def _hyphen(low_text: str, high_text: str) -> tuple[_Bound, ...] | None:
    """`A - B` as `>=A <=B`, a partial B covering its whole span; None when either side is no version."""
    low_match, high_match = _COMPARATOR.fullmatch(low_text), _COMPARATOR.fullmatch(high_text)
    if low_match is None or high_match is None or low_match["op"] or high_match["op"]:
        return None
    low, high = _partial(low_match), _partial(high_match)
    bounds: list[_Bound] = []
    if low.known and not _zero_floor(low, spelled_with_v=low_text.startswith("v")):
        bounds.append(_Bound(">=", low.low()))
    if len(high.known) == 3:
        bounds.append(_Bound("<=", high.low()))
    elif high.known:
        bounds.append(_Bound("<", high.next_up(len(high.known) - 1)))
    return tuple(bounds)


def _alternative(text: str, whole: str) -> tuple[_Bound, ...]:
    spaced = " ".join(text.replace(",", " ").split())
    if not spaced:
        raise PolicyError(f"empty alternative in semver range {whole!r}: every '||' needs a range on both sides")
    hyphen = _HYPHEN.fullmatch(spaced)
    if hyphen is not None:
        bounds = _hyphen(hyphen["low"], hyphen["high"])
        if bounds is not None:
            return bounds
    joined = _OPERATOR_BLANKS.sub(r"\1", spaced)
    return tuple(bound for token in joined.split(" ") for bound in _comparator(token, whole))


def parse_range(text: str) -> SemverRange:
    """Parse a node-semver range (plus commas for AND); raise PolicyError naming the offending part."""
    stripped = text.strip()
    if not stripped:
        raise PolicyError("a semver policy needs a range, e.g. 'semver:^1.4'")
    alternatives = tuple(_alternative(alternative, stripped) for alternative in stripped.split("||"))
    if () in alternatives:
        # node-semver: an alternative that is only `*` makes the whole range `*`, which drops the
        # pre-releases that other alternatives name (`* || >=2.0.0-rc.1` admits no pre-release).
        alternatives = ((),)
    return SemverRange(text=stripped, alternatives=alternatives)


@dataclass(frozen=True)
class TagFilter:
    """A compiled `tagFilter`: RE2, so that matching time is linear in the tag whatever the pattern."""

    pattern: str
    regex: Any = field(repr=False, compare=False)  # re2._Regexp; google-re2 ships no type hints

    def comparable(self, value: str) -> str | None:
        """The part of `value` to compare (the `version` group, else all of it), or None when it does not match."""
        match = self.regex.fullmatch(value)
        if match is None:
            return None
        if "version" in self.regex.groupindex:
            version = match.group("version")
            if version is not None:
                return str(version)
        return value


def compile_tag_filter(pattern: str) -> TagFilter:
    """Compile a tagFilter with RE2, or raise PolicyError saying why it cannot be used.

    The spec validation calls this too, so a pattern RE2 refuses is reported on the ModelApp
    when it is applied, not found by the nightly bump.
    """
    try:
        import re2  # type: ignore[import-untyped]  # only the operator extra has it
    except ImportError:
        raise PolicyError(
            "tag filters need the google-re2 package, which is missing: install 'modelapp[operator]'"
        ) from None
    options = re2.Options()
    options.log_errors = False  # the reason goes into our message, not to stderr
    try:
        return TagFilter(pattern=pattern, regex=re2.compile(pattern, options))
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        uses = next((f"it uses {name}; " for construct, name in _NOT_LINEAR if construct.search(pattern)), "")
        raise PolicyError(
            f"tag filter {pattern!r} is not a valid regular expression for RE2 ({uses}RE2 says: {reason}). "
            "Tag filters run on RE2 so that no pattern can stall the bump, and RE2 has no "
            "backreferences, lookaround, atomic groups, possessive quantifiers or conditionals, and no repeat "
            "count over 1000: rewrite the pattern without them, e.g. spell out the alternatives"
        ) from None


#: What RE2 refuses because it cannot match it in linear time, to name it in the message.
_NOT_LINEAR = [
    (re.compile(r"\\[1-9]|\(\?P="), "a backreference (\\1, (?P=name))"),
    (re.compile(r"\(\?<?[=!]"), "a lookaround ((?=, (?!, (?<=, (?<!)"),
    (re.compile(r"\(\?>"), "an atomic group ((?>...))"),
    (re.compile(r"[*+?}]\+"), "a possessive quantifier (*+, ++, ?+)"),
    (re.compile(r"\(\?\("), "a conditional group ((?(1)...))"),
    (re.compile(r"\{(?:\d*,)?\d{4,}"), "a repeat count over 1000"),
]


@dataclass(frozen=True)
class Policy:
    """A parsed policy; `tag_filter` applies before the policy itself."""

    kind: PolicyKind
    text: str
    semver_range: SemverRange | None = None
    tag_filter: TagFilter | None = field(default=None, compare=False)

    @property
    def follows(self) -> bool:
        return self.kind != "pinned"


def parse_policy(text: str | None, *, tag_filter: str | None = None) -> Policy:
    """Parse `pinned|latest|numeric|semver:<range>` (None means pinned: nothing moves by default)."""
    raw = (text or "pinned").strip()
    compiled = compile_tag_filter(tag_filter) if tag_filter else None
    if raw in {"pinned", "latest", "numeric"}:
        return Policy(kind=raw, text=raw, tag_filter=compiled)  # type: ignore[arg-type]
    if raw.startswith("semver:"):
        return Policy(kind="semver", text=raw, semver_range=parse_range(raw[len("semver:") :]), tag_filter=compiled)
    raise PolicyError(f"unknown update policy {raw!r}: use pinned, latest, numeric or semver:<range>")


@dataclass(frozen=True)
class Choice:
    """The outcome for one field: `target` is None when nothing should change; `reason` is for people."""

    target: str | None
    reason: str
    ranked: tuple[str, ...] = ()  # allowed candidates newer than the current value, best first


def comparable(policy: Policy, value: str) -> str | None:
    """The part of `value` the policy compares (after the tag filter), or None when it does not take part.

    Over-long values never take part: no registry tag or version name is that long, and a hostile
    listing should not make a single comparison costly.
    """
    if len(value) > MAX_CANDIDATE_LENGTH:
        return None
    if policy.tag_filter is not None:
        return policy.tag_filter.comparable(value)
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
