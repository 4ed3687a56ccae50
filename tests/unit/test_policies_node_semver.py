"""`semver:<range>` policies against the reference: npm's node-semver, run by `node`.

Design notes: the policy docstring claims that a semver policy picks what node-semver's
`maxSatisfying(candidates, range)` picks. A table cannot hold every corner of that grammar
(x-ranges, carets on 0.x, hyphen ranges, pre-release tuples), so hypothesis generates ranges
within our grammar and tag lists around them, and one long-lived `node` process (started once
for the module, fed one JSON line per example) answers with node-semver's choice and the set of
tags it admits. The package is pinned and installed outside the repo by
hack/install-node-semver.sh, which the fixture runs (idempotent; it installs only when missing).

Two properties: every range we generate parses, in its command-line form (blanks, hyphen ranges)
and in the CRD's blank-free form (commas), and both agree with node-semver on the chosen tag and
on the admitted set; and for ranges mutated a few characters off the grammar, whatever we accept
node-semver accepts too, with the same meaning (we may refuse more, never less).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from modelapp_operator.policies import PolicyError, parse_policy, rank
from modelapp_operator.spec import POLICY_PATTERN

REPO = Path(__file__).resolve().parents[2]

#: Reads {"range", "tags"} lines; answers {"valid", "max", "admitted"} lines (strict mode, no options).
NODE_SCRIPT = r"""
const semver = require(process.argv[1]);
const lines = require('readline').createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const { range, tags } = JSON.parse(line);
  let valid = true;
  try { new semver.Range(range); } catch (error) { valid = false; }
  const max = valid ? semver.maxSatisfying(tags, range) : null;
  const admitted = valid ? tags.filter((tag) => semver.satisfies(tag, range)) : [];
  process.stdout.write(JSON.stringify({ valid, max, admitted }) + '\n');
});
"""


@dataclass(frozen=True)
class Answer:
    valid: bool
    max: str | None
    admitted: list[str]


class NodeSemver:
    """One `node` process answering range questions over its stdin and stdout."""

    def __init__(self, package: Path) -> None:
        self.process = subprocess.Popen(
            ["node", "-e", NODE_SCRIPT, str(package)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, range_text: str, tags: list[str]) -> Answer:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps({"range": range_text, "tags": tags}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, f"node-semver's node process ended (exit {self.process.poll()}); its stderr is above"
        reply: dict[str, Any] = json.loads(line)
        return Answer(valid=reply["valid"], max=reply["max"], admitted=reply["admitted"])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def node_semver() -> Iterator[NodeSemver]:
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH: install Debian's nodejs and npm (hack/setup.sh does)")
    installed = subprocess.run(
        [str(REPO / "hack" / "install-node-semver.sh")], capture_output=True, text=True, check=False, timeout=300
    )
    if installed.returncode != 0:
        pytest.fail(f"hack/install-node-semver.sh failed (exit {installed.returncode}): {installed.stderr.strip()}")
    node = NodeSemver(Path(installed.stdout.strip().splitlines()[-1]))
    yield node
    node.close()


# --- strategies: within our grammar, small numbers so that ranges and tags meet -------------------

numbers = st.one_of(st.integers(0, 2), st.integers(0, 2), st.integers(0, 10))
pre_ids = st.one_of(st.integers(0, 3).map(str), st.sampled_from(["alpha", "beta", "rc", "0a", "x-1", "-"]))
pres = st.lists(pre_ids, min_size=1, max_size=3).map(".".join)
builds = st.sampled_from(["b1", "build.5", "001", "x-y"])
#: Tags a registry may list that are not semantic versions (or not in strict mode).
JUNK_TAGS = ["latest", "main", "1.4", "v1", "01.2.3", "1.2.3-01", "1.2.3.4", "1.2.3-", "V1.2.3", "=1.2.3", "1.2.3-a..b"]


@st.composite
def tags(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(JUNK_TAGS))
    text = ".".join(str(draw(numbers)) for _ in range(3))
    if draw(st.booleans()):
        text += "-" + draw(pres)
    if draw(st.integers(0, 6)) == 0:
        text += "+" + draw(builds)
    return ("v" if draw(st.integers(0, 4)) == 0 else "") + text


@st.composite
def partials(draw: st.DrawFn) -> str:
    count = draw(st.integers(1, 3))
    parts = [draw(st.one_of(numbers.map(str), st.sampled_from(["x", "X", "*"]))) for _ in range(count)]
    text = ".".join(parts)
    if count == 3 and draw(st.integers(0, 2)) == 0:
        text += "-" + draw(pres)
    if count == 3 and draw(st.integers(0, 6)) == 0:
        text += "+" + draw(builds)
    return ("v" if draw(st.integers(0, 5)) == 0 else "") + text


OPERATORS = ["", "=", "<", "<=", ">", ">=", "^", "~", "~>"]


@dataclass(frozen=True)
class Range:
    """One range in two spellings: blanks (node-semver's, the command line's) and the CRD's (no blanks)."""

    spaced: str
    crd: str | None  # None when it holds a hyphen range, which needs blanks


@st.composite
def ranges(draw: st.DrawFn) -> Range:
    spaced_alternatives: list[str] = []
    crd_alternatives: list[str] | None = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 5)) == 0:
            spaced_alternatives.append(f"{draw(partials())} - {draw(partials())}")
            crd_alternatives = None
            continue
        comparators = [(draw(st.sampled_from(OPERATORS)), draw(partials())) for _ in range(draw(st.integers(1, 3)))]
        blank = draw(st.sampled_from(["", " "]))
        spaced_alternatives.append("  ".join(f"{op}{blank if op else ''}{version}" for op, version in comparators))
        if crd_alternatives is not None:
            crd_alternatives.append(",".join(f"{op}{version}" for op, version in comparators))
    spaced = draw(st.sampled_from(["||", " || "])).join(spaced_alternatives)
    return Range(spaced=spaced, crd=None if crd_alternatives is None else "||".join(crd_alternatives))


@st.composite
def cases(draw: st.DrawFn) -> tuple[Range, list[str]]:
    """A range and tags, some of them pre-releases of cores the range names (where the rules bite)."""
    spelled = draw(ranges())
    candidates = draw(st.lists(tags(), max_size=20))
    for written in re.findall(r"\d+(?:\.\d+){0,2}", spelled.spaced):  # `1.4` in `>1.4`, `1.4.2` in `^1.4.2`
        major, minor, patch = (int(part) for part in [*written.split("."), "0", "0"][:3])
        near = [f"{major}.{minor}.{patch}", f"{major}.{minor}.{patch + 1}"]
        near += [f"{major}.{minor + 1}.0", f"{major + 1}.0.0"]
        candidates += [f"{draw(st.sampled_from(near))}-{draw(pres)}" for _ in range(draw(st.integers(0, 3)))]
    return spelled, candidates


def ours(range_text: str, candidates: list[str]) -> tuple[str | None, list[str]]:
    ranked = rank(parse_policy(f"semver:{range_text}"), candidates)
    return (ranked[0] if ranked else None), sorted(ranked)


@settings(max_examples=200, deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow])
@given(cases())
@example((Range(">1.4", ">1.4"), ["1.4.3", "1.5.0-rc.1"]))
@example((Range(">1", ">1"), ["1.9.0", "2.0.0-rc.1"]))
@example((Range("<=1.4 || ^0.0", "<=1.4||^0.0"), ["0.0.9", "1.4.9", "1.5.0-0", "0.1.0-rc.1"]))
@example((Range("~1.2.3-beta.2", "~1.2.3-beta.2"), ["1.2.3-beta.4", "1.2.4-beta.1", "1.2.9"]))
@example((Range("1.2 - 1.4.1-rc.1", None), ["1.4.1-rc.0", "1.4.1-rc.2", "1.4.0", "1.2.0-rc.1"]))
@example((Range("vx||v0 - v0.0.1-0+b1", None), ["0.0.1-0"]))  # a `*` alternative swallows the range
@example((Range(">=0.0.0 <=0.0.0-b", ">=0.0.0,<=0.0.0-b"), ["0.0.0-a"]))  # `>=0.0.0` is `*`...
@example((Range(">=v0.0.0 <=0.0.0-b", ">=v0.0.0,<=0.0.0-b"), ["0.0.0-a"]))  # ...but not with a `v`
@example((Range("v0  v0.0.0-0+b1", None), ["0.0.0-0"]))  # what `v0`, `^0`, `~0.0` generate drops `>=0.0.0` too
@example((Range("^0.0.0 || ~0 0.0.0-1", None), ["0.0.0-1", "0.0.0"]))
def test_semver_policy_agrees_with_node_semver(node_semver: NodeSemver, case: tuple[Range, list[str]]) -> None:
    spelled, candidates = case
    listing = sorted(set(candidates))  # our ties go to name order; node's to listing order: make them one
    reference = node_semver.ask(spelled.spaced, listing)
    assert reference.valid, f"node-semver refuses {spelled.spaced!r}: the generator left our shared grammar"
    expected = (reference.max, sorted(reference.admitted))
    assert ours(spelled.spaced, listing) == expected, f"range {spelled.spaced!r}"
    if spelled.crd is not None:
        if len(f"semver:{spelled.crd}") <= 107:
            assert re.fullmatch(POLICY_PATTERN, f"semver:{spelled.crd}"), "the CRD would refuse this range"
        assert ours(spelled.crd, listing) == expected, f"range {spelled.crd!r} (CRD spelling of {spelled.spaced!r})"


#: Enough versions, pre-releases and junk that most ranges admit some and refuse some.
POOL = sorted(
    {"0.0.1", "0.1.0", "0.1.0-rc.1", "1.0.0", "1.2.0", "1.2.3", "1.2.3-rc.1", "v1.2.4", "1.3.0-0", "1.9.9"}
    | {"2.0.0-alpha", "2.0.0", "2.1.0+b1", "10.0.0", "latest", "1.2"}
)
#: What a mutation may insert: the characters that matter to the grammar, and a few that do not.
ALPHABET = "0123456789.xX*-+^~<>=|, vrcab_"


@st.composite
def mutated_ranges(draw: st.DrawFn) -> str:
    """A valid range with a few characters inserted, deleted or replaced: near the grammar's edges."""
    text = draw(ranges()).spaced
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        char = draw(st.sampled_from(ALPHABET))
        if action == "insert":
            text = text[:at] + char + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + 1 :]
        else:
            text = text[:at] + char + text[at + 1 :]
    return text


@settings(max_examples=300, deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow])
@given(mutated_ranges())
def test_we_accept_no_range_node_semver_refuses(node_semver: NodeSemver, text: str) -> None:
    try:
        chosen = ours(text, POOL)
    except PolicyError:
        return  # refusing more than node-semver is allowed (empty alternatives, looser spellings)
    reference = node_semver.ask(text.replace(",", " "), POOL)
    assert reference.valid, f"we accept {text!r}, node-semver refuses it"
    assert chosen == (reference.max, sorted(reference.admitted)), f"range {text!r}"
