"""`modelapp-serving versions` orders model versions as the operator's `latest` policy does.

Design notes: serving cannot import the operator, so the natural order is written twice; these tests
hold the two equal on hand-picked names (numbers, dates, `v` prefixes, dotted and pre-release
names, pointers that must never win) and on generated ones.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from modelapp_operator.policies import parse_policy, rank
from modelapp_serving.versions import newest_first

NAMES = ["9", "10", "v11", "1.9", "1.10", "2026-09-30", "2026-11-24", "latest", "staging", "v7", "7", "1.4.0-rc1"]


def test_newest_first_is_natural_order_without_pointers() -> None:
    assert newest_first(["9", "10", "2", "latest", "v3"]) == ["10", "9", "v3", "2"]
    assert newest_first(["1.9", "1.10", "1.10.1"]) == ["1.10.1", "1.10", "1.9"]
    assert newest_first(["staging", "main"]) == []


def test_same_order_as_the_operators_latest_policy() -> None:
    assert newest_first(NAMES) == rank(parse_policy("latest"), NAMES)


@given(st.lists(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,12}\Z"), max_size=12))
def test_same_order_on_generated_names(names: list[str]) -> None:
    assert newest_first(names) == rank(parse_policy("latest"), names)
