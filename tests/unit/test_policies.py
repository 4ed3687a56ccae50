"""Update policies: parsing, ranges, ranking and the choice bump makes.

Design notes: the policy module is pure, so these tests are tables of (policy, candidates,
expected) plus hypothesis properties for the ordering rules that a table cannot exhaust:
the choice is always an allowed candidate, never older than the current value, and does not
depend on the order in which a registry or a store happens to list things.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelapp_operator.policies import (
    PolicyError,
    choose,
    natural_key,
    parse_policy,
    parse_range,
    parse_semver,
    rank,
)

TAGS = ["1.3.9", "1.4.0", "1.4.2", "1.5.0-rc.1", "1.9.1", "2.0.0", "2.0.0-rc.1", "latest", "main", "v1.9.2", "0.4.1"]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("semver:^1.4", ["v1.9.2", "1.9.1", "1.4.2", "1.4.0"]),
        ("semver:~1.4", ["1.4.2", "1.4.0"]),
        ("semver:~2", ["2.0.0"]),
        ("semver:>=1.2,<2", ["v1.9.2", "1.9.1", "1.4.2", "1.4.0", "1.3.9"]),
        ("semver:>= 1.2 < 1.4", ["1.3.9"]),
        ("semver:1.4.2", ["1.4.2"]),
        ("semver:=1.4.0", ["1.4.0"]),
        ("semver:1.4", ["1.4.2", "1.4.0"]),
        ("semver:1.x", ["v1.9.2", "1.9.1", "1.4.2", "1.4.0", "1.3.9"]),
        ("semver:^0.4", ["0.4.1"]),
        ("semver:<1.4 || ^2", ["2.0.0", "1.3.9", "0.4.1"]),
        ("semver:>1.9", ["2.0.0"]),
        ("semver:<=1.4", ["1.4.2", "1.4.0", "1.3.9", "0.4.1"]),
        ("semver:*", ["2.0.0", "v1.9.2", "1.9.1", "1.4.2", "1.4.0", "1.3.9", "0.4.1"]),
        ("semver:^2.0.0-rc.0", ["2.0.0", "2.0.0-rc.1"]),
        ("semver:^3", []),
        ("latest", ["2.0.0-rc.1", "2.0.0", "v1.9.2", "1.9.1", "1.5.0-rc.1", "1.4.2", "1.4.0", "1.3.9", "0.4.1"]),
        ("numeric", []),
        ("pinned", []),
    ],
)
def test_rank_table(policy: str, expected: list[str]) -> None:
    assert rank(parse_policy(policy), TAGS) == expected


@pytest.mark.parametrize(
    ("policy", "candidates", "expected"),
    [
        ("numeric", ["1", "7", "10", "9", "x", "7a"], ["10", "9", "7", "1"]),
        ("latest", ["2026-09-30", "2026-11-24", "2026-10-01"], ["2026-11-24", "2026-10-01", "2026-09-30"]),
        ("latest", ["1.9", "1.10", "dev"], ["1.10", "1.9"]),
    ],
)
def test_rank_model_versions(policy: str, candidates: list[str], expected: list[str]) -> None:
    assert rank(parse_policy(policy), candidates) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("newest", "unknown update policy"),
        ("semver:", "needs a range"),
        ("semver:^one", "not a version"),
        ("semver:>=1.2 ||", "empty alternative"),
    ],
)
def test_bad_policies_say_why(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(text)


def test_bad_tag_filter_says_why() -> None:
    with pytest.raises(PolicyError, match="not a valid regular expression"):
        parse_policy("latest", tag_filter="(")


def test_none_is_pinned() -> None:
    policy = parse_policy(None)
    assert policy.kind == "pinned"
    assert choose(policy, current="1", candidates=["2"]).target is None


def test_tag_filter_with_version_group() -> None:
    policy = parse_policy("semver:^1.4", tag_filter=r"(?P<version>.+)-slim")
    choice = choose(policy, current="1.4.0-slim", candidates=["1.4.0-slim", "1.5.0-slim", "1.6.0", "1.7.0-alpine"])
    assert choice.target == "1.5.0-slim"
    assert "filter" in choice.reason


def test_tag_filter_without_group_narrows_only() -> None:
    policy = parse_policy("latest", tag_filter=r"1\.4\..*")
    assert rank(policy, ["1.4.1", "1.4.3", "1.5.0"]) == ["1.4.3", "1.4.1"]


@pytest.mark.parametrize(
    ("policy", "current", "candidates", "excluded", "target", "reason"),
    [
        ("semver:^1.4", "1.4.0", TAGS, [], "v1.9.2", "newest allowed by semver:^1.4"),
        ("semver:^1.4", "v1.9.2", TAGS, [], None, "is the newest allowed"),
        ("semver:^1.4", "3.0.0", TAGS, [], None, "not moving back"),
        ("semver:^1.4", "1.4.0", TAGS, ["v1.9.2"], "1.9.1", "skipping quarantined v1.9.2"),
        ("semver:^1.4", "1.9.1", TAGS, ["v1.9.2"], None, "every newer candidate is quarantined"),
        ("semver:^1.4", "main", TAGS, [], "v1.9.2", "newest allowed"),
        ("semver:^5", "1.0.0", TAGS, [], None, "no candidate matches semver:^5 among 11"),
        ("numeric", "7", ["1", "7", "8", "10"], ["10"], "8", "skipping quarantined 10"),
        ("pinned", "7", ["8"], [], None, "pinned"),
    ],
)
def test_choose_table(  # noqa: PLR0917 -- one parameter per table column reads best
    policy: str, current: str, candidates: list[str], excluded: list[str], target: str | None, reason: str
) -> None:
    choice = choose(parse_policy(policy), current=current, candidates=candidates, excluded=excluded)
    assert choice.target == target
    assert reason in choice.reason


def test_semver_precedence_follows_the_spec() -> None:
    ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11"]
    ordered += ["1.0.0-rc.1", "1.0.0"]
    keys = [parsed.sort_key() for parsed in (parse_semver(text) for text in ordered) if parsed is not None]
    assert len(keys) == len(ordered)
    assert keys == sorted(keys)
    assert parse_semver("1.0") is None
    assert parse_semver("01.0.0") is None
    assert parse_semver("v1.2.3+build.5") is not None


@pytest.mark.parametrize(
    ("policy", "candidates", "expected"),
    [
        # Issue 9.5: partial versions under > and <= once named a pre-release of the next core.
        ("semver:>1.4", ["1.4.3", "1.5.0-rc.1"], []),
        ("semver:>1.4", ["1.4.3", "1.5.0-rc.1", "1.5.0"], ["1.5.0"]),
        ("semver:>1", ["1.9.0", "2.0.0-rc.1"], []),
        ("semver:<=1.4", ["1.4.9", "1.5.0-0", "1.4.9-rc.1"], ["1.4.9"]),
        ("semver:<1.4", ["1.3.9", "1.4.0-rc.1"], ["1.3.9"]),
        ("semver:>=1.5.0-rc.0", ["1.5.0-rc.1", "1.6.0-rc.1", "1.6.0"], ["1.6.0", "1.5.0-rc.1"]),
        ("semver:~1.2.3-beta.2", ["1.2.3-beta.1", "1.2.3-beta.4", "1.2.4-beta.1", "1.2.9"], ["1.2.9", "1.2.3-beta.4"]),
        ("semver:^0.0.3", ["0.0.3", "0.0.4", "0.1.0"], ["0.0.3"]),
        ("semver:^0.0", ["0.0.9", "0.1.0"], ["0.0.9"]),
        ("semver:~>1.2", ["1.2.9", "1.3.0"], ["1.2.9"]),
        ("semver:1.2 - 1.4", ["1.1.9", "1.2.0", "1.4.9", "1.5.0"], ["1.4.9", "1.2.0"]),
        ("semver:>=v1.2,<v2", ["v1.9.0", "2.0.0"], ["v1.9.0"]),
        ("semver:>*||1.0.0", ["1.0.0", "2.0.0"], ["1.0.0"]),
        ("semver:*", ["1.2.3-01", "01.2.3", "1.2.3-rc.01", "1.2.3", "9007199254740992.0.0"], ["1.2.3"]),
    ],
)
def test_semver_agrees_with_node_semver_on_known_cases(policy: str, candidates: list[str], expected: list[str]) -> None:
    """Hand-picked cases of tests/unit/test_policies_node_semver.py's property, without node."""
    assert rank(parse_policy(policy), candidates) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("semver:||^1", "empty alternative"),
        ("semver:~=1.2", "not a version or comparator"),
        ("semver:^01.2", "not a version or comparator"),
        ("semver:^1.2-rc.1", "not a version or comparator"),
        ("semver:>", "not a version or comparator"),
        ("semver:< = v0", "not a version or comparator"),
        ("semver:>=9007199254740992", "above 9007199254740991"),
    ],
)
def test_ranges_node_semver_refuses_or_reads_loosely_are_refused(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(text)


def test_prerelease_needs_a_prerelease_comparator() -> None:
    assert rank(parse_policy("semver:^1.4"), ["1.5.0-rc.1"]) == []
    assert not parse_range("^1.4").admits(parse_semver("2.0.0-rc.1"))  # type: ignore[arg-type]
    assert rank(parse_policy("semver:>=1.5.0-rc.0"), ["1.5.0-rc.1", "1.6.0-rc.1"]) == ["1.5.0-rc.1"]


versions = st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30)).map(lambda t: "{}.{}.{}".format(*t))
numbers = st.integers(0, 10_000).map(str)


@given(st.lists(versions, max_size=30), st.permutations(list(range(30))))
def test_rank_ignores_listing_order(candidates: list[str], order: list[int]) -> None:
    shuffled = [candidates[i] for i in order if i < len(candidates)]
    policy = parse_policy("semver:>=1.0.0")
    assert rank(policy, candidates) == rank(policy, shuffled)


@given(st.lists(versions, min_size=1, max_size=30))
def test_semver_rank_is_descending(candidates: list[str]) -> None:
    ranked = rank(parse_policy("semver:*"), candidates)
    keys = [natural_key(text) for text in ranked]
    assert keys == sorted(keys, reverse=True)
    assert set(ranked) == set(candidates)


@given(st.lists(numbers, max_size=30), numbers, st.lists(numbers, max_size=5))
def test_choice_is_allowed_newer_and_not_excluded(candidates: list[str], current: str, excluded: list[str]) -> None:
    choice = choose(parse_policy("numeric"), current=current, candidates=candidates, excluded=excluded)
    if choice.target is None:
        assert all(int(c) <= int(current) or c in excluded for c in candidates)
    else:
        assert choice.target in candidates
        assert choice.target not in excluded
        assert int(choice.target) > int(current)
        assert all(int(c) <= int(choice.target) or c in excluded for c in candidates)


@given(st.lists(versions, max_size=20), st.sampled_from(["^1.2", "~2.3", ">=1.0.0,<5", "1.x", "*", "^0.3"]))
def test_semver_choice_stays_inside_the_range(candidates: list[str], spec: str) -> None:
    policy = parse_policy(f"semver:{spec}")
    choice = choose(policy, current="0.0.0", candidates=candidates)
    if choice.target is not None:
        parsed = parse_semver(choice.target)
        assert parsed is not None
        assert parse_range(spec).admits(parsed)
