"""tagFilter: a tenant's regular expression over a registry's tags must not stall the bump (issue 10).

Design notes: the filter and the tags are both hostile (the tenant writes one, a registry the
tenant names lists the other). Filters run on RE2, linear in the tag, and what RE2 cannot run
(backreferences, lookaround, ...) is refused at spec validation with a message that says why. The
timing tests use patterns that are exponential for a backtracking engine, against the longest tags
a policy looks at, and assert only that ranking *finishes* within a generous budget (a thread join
timeout, not a benchmark). One control runs the same pattern on Python's `re` in a subprocess and
asserts that it does *not* finish in that time, so the hostile patterns are known to be hostile.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from modelapp_operator.policies import MAX_CANDIDATE_LENGTH, PolicyError, compile_tag_filter, parse_policy, rank
from modelapp_operator.spec import InvalidSpec, parse_spec

#: Patterns that make a backtracking engine take exponential (or high-polynomial) time on a near-miss.
HOSTILE = [
    r"(a+)+$",
    r"(a|a)*b",
    r"(a|aa)+c",
    r"(.*a){12}x",
    r"^(([a-z])+.)+[A-Z]([a-z])+$",
    r"(?P<version>(\d+\.?)+)-slim",
    r"(\w+\d*)+!",
]
#: Near-misses at the length limit: almost matching is what makes backtracking explode.
LONG_TAGS = ["a" * MAX_CANDIDATE_LENGTH, "a" * (MAX_CANDIDATE_LENGTH - 1) + "!", "1." * (MAX_CANDIDATE_LENGTH // 2)]
BUDGET_SECONDS = 20.0


def finishes(work: object, *, within: float = BUDGET_SECONDS) -> bool:
    """Run `work()` in a daemon thread; True when it returned within the budget."""
    done = threading.Event()

    def run() -> None:
        work()  # type: ignore[operator]
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=within)
    return done.is_set()


@pytest.mark.parametrize("pattern", HOSTILE)
def test_hostile_filter_over_long_tags_finishes(pattern: str) -> None:
    policy = parse_policy("latest", tag_filter=pattern)
    candidates = [*LONG_TAGS, *(tag[:-k] + "b" for tag in LONG_TAGS for k in range(1, 40)), "1.2.3"]
    result: list[list[str]] = []
    assert finishes(lambda: result.append(rank(policy, candidates))), f"ranking with {pattern!r} did not finish"
    assert result, "ranking raised instead of returning"


def test_the_control_pattern_really_stalls_a_backtracking_engine() -> None:
    """Without this, a fast pass above could mean the patterns were harmless, not that RE2 helps."""
    code = "import re; re.fullmatch(r'(a+)+$', 'a' * 40 + '!')"
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([sys.executable, "-c", code], timeout=3, check=False)


def test_over_long_candidates_take_no_part() -> None:
    long_version = "1." + "0" * MAX_CANDIDATE_LENGTH + ".0"
    assert rank(parse_policy("latest"), [long_version, "2"]) == ["2"]
    assert rank(parse_policy("latest", tag_filter=r"[0-9.]+"), [long_version, "2"]) == ["2"]


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        (r"(a+)\1", "it uses a backreference"),
        (r"(?P<v>\d+)(?P=v)", "it uses a backreference"),
        (r"(?=1)\d+", "it uses a lookaround"),
        (r"\d+(?!-rc)", "it uses a lookaround"),
        (r"(?<=v)\d+", "it uses a lookaround"),
        (r"(?>\d+)", "it uses an atomic group"),
        (r"\d++", "it uses a possessive quantifier"),
        (r"(?(1)a|b)", "it uses a conditional group"),
        (r"a{2,1001}", "it uses a repeat count over 1000"),
        (r"(", "RE2 says: missing ): ("),
    ],
)
def test_filters_re2_cannot_run_are_refused_with_the_reason(pattern: str, names: str) -> None:
    with pytest.raises(PolicyError, match="not a valid regular expression for RE2") as raised:
        compile_tag_filter(pattern)
    assert names in str(raised.value)
    assert "rewrite the pattern" in str(raised.value)


def test_spec_refuses_such_a_filter_when_applied() -> None:
    spec = {
        "image": "registry.example.com/iris:1.4.2",
        "model": {"uri": "azureblob://models/iris", "version": "7"},
        "updates": {"image": {"policy": "semver:^1.4", "tagFilter": r"(\d+)\1-slim"}},
    }
    with pytest.raises(InvalidSpec, match=r"tagFilter.*not a valid regular expression for RE2 \(it uses a backref"):
        parse_spec(spec)
    spec["updates"] = {"image": {"policy": "semver:^1.4", "tagFilter": r"^(?P<version>\d+\.\d+\.\d+)-slim$"}}
    assert parse_spec(spec).updates.image.tag_filter == r"^(?P<version>\d+\.\d+\.\d+)-slim$"


@pytest.mark.parametrize(
    ("pattern", "candidates", "expected"),
    [
        (r"^(?P<version>\d+\.\d+\.\d+)-slim$", ["1.4.0-slim", "1.5.0-slim", "1.6.0", "1.7.0-slim-x"], ["1.5.0-slim"]),
        (r"(?<version>\d+\.\d+\.\d+)-slim", ["1.4.0-slim", "1.5.0-slim"], ["1.5.0-slim"]),  # RE2's other spelling
        (r"1\.4\.\d+", ["1.4.1", "1.4.12", "1.5.0", "x1.4.1"], ["1.4.12"]),
        (r"(?i)V?(?P<version>[0-9.]+)", ["V1.6.0", "v1.5.0"], ["V1.6.0"]),
    ],
)
def test_re2_filters_still_select_as_documented(pattern: str, candidates: list[str], expected: list[str]) -> None:
    choice = rank(parse_policy("semver:^1.4", tag_filter=pattern), candidates)
    assert choice[:1] == expected
