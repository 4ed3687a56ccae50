"""The version card, publish's card inputs, and the smoke test's reading of a pod's card (no I/O).

Design notes: the card is the tenant's (the bump reads it from the store, the smoke test from the pod), so the
refusals are checked for their bounds and their messages; the smoke test's side uses a transport that is a
plain function returning what a pod would, as the other smoke unit tests do.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from modelapp_operator import engine, smoke
from modelapp_operator.rollout import SmokeVerdict
from modelapp_operator.signatures import ANN_PAIR_FACTS, ModelFacts, PairFacts
from modelapp_operator.spec import parse_spec
from modelapp_serving.card import (
    CARD_NAME,
    CardError,
    Examples,
    Provenance,
    Signature,
    build_card,
    parse_card,
    parse_examples,
    parse_signature,
)
from modelapp_serving.publish import PublishError, collect, parse_meta

SIG = Signature.model_validate({"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
                                "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}]})  # fmt: skip
EXAMPLES = Examples.model_validate({"inputs": [{"name": "input", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}],
                                    "expected": [{"name": "label", "data": [0]}]})  # fmt: skip


def test_a_card_renders_deterministically_and_parses_back() -> None:
    provenance = Provenance(training_run="run-1", meta={"team": "fraud"})
    data = build_card(signature=SIG, examples=EXAMPLES, provenance=provenance)
    assert data == build_card(signature=SIG, examples=EXAMPLES, provenance=provenance)
    card = parse_card(data)
    assert (card.signature, card.examples, card.provenance) == (SIG, EXAMPLES, provenance)
    assert json.loads(data)["provenance"] == {"trainingRun": "run-1", "meta": {"team": "fraud"}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "the version card is not valid JSON"),
        (b"x" * (1024 * 1024 + 1), "over the 1048576 byte limit"),
        (json.dumps({"schema": "other"}).encode(), "invalid at schema"),
        (json.dumps({"provenance": {"trainingRun": "r" * 257}}).encode(), "invalid at provenance.trainingRun"),
        (json.dumps({"provenance": {"meta": {str(i): "v" for i in range(33)}}}).encode(), "provenance.meta"),
        (json.dumps({"signature": {"inputs": [{"name": "a", "datatype": "FP32", "shape": [1]}] * 2,
                                   "outputs": []}}).encode(), "a tensor name appears twice"),
    ],
)  # fmt: skip
def test_a_hostile_card_is_refused_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(CardError, match=message.replace(".", r"\.")):
        parse_card(data)


def test_declared_signatures_and_examples_name_the_file_and_the_field() -> None:
    with pytest.raises(CardError, match=r"--signature s\.json is invalid at inputs\.0\.shape"):
        parse_signature(b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": "4"}], "outputs": []}',
                        "--signature s.json")
    with pytest.raises(CardError, match="expected"):
        parse_examples(b'{"inputs": [{"shape": [1], "data": [1]}], "expected": []}')


def test_meta_is_key_value_and_the_card_name_is_reserved(tmp_path: Path) -> None:
    assert parse_meta(["team=fraud", "note=a=b"]) == {"team": "fraud", "note": "a=b"}
    for bad in (["team"], ["=x"], ["a=1", "a=2"]):
        with pytest.raises(PublishError):
            parse_meta(bad)
    (tmp_path / CARD_NAME).write_text("{}")
    with pytest.raises(PublishError, match="the version card's name"):
        collect([tmp_path / CARD_NAME])


# -- the smoke test reads a pod's card ------------------------------------------------------------------


def pod(card: bytes | None, answer: Mapping[str, Any]) -> smoke.Transport:
    """A pod serving `card` at /v2/models/iris/card and `answer` to the golden request."""

    def send(path: str, body: Mapping[str, Any] | None, timeout: float) -> tuple[int, bytes]:
        if body is None:
            return (200, card) if card is not None and path == "/v2/models/iris/card" else (404, b"{}")
        return 200, json.dumps(answer).encode()

    return send


CARD = build_card(signature=SIG, examples=EXAMPLES, provenance=Provenance())
RIGHT = {"outputs": [{"name": "label", "datatype": "INT64", "shape": [1], "data": [0]}]}
WRONG = {"outputs": [{"name": "label", "datatype": "INT64", "shape": [1], "data": [2]}]}


def test_the_version_examples_pass_or_fail_on_the_pods_answer() -> None:
    wanted = smoke.VersionExamples(hashlib.sha256(CARD).hexdigest())
    assert smoke.check_one(wanted, "iris", pod(CARD, RIGHT)) == SmokeVerdict(True, "every expected output matched")
    failed = smoke.check_one(wanted, "iris", pod(CARD, WRONG))
    assert failed == SmokeVerdict(False, "version examples: label: element 0 is 2, expected 0.0 (tolerance 0.0001)")


@pytest.mark.parametrize(
    ("card", "sha", "message"),
    [
        (None, hashlib.sha256(CARD).hexdigest(), "answered HTTP 404: the app image's serving runtime predates"),
        (CARD, "0" * 64, "the card the pod serves has sha256"),
        (b"{", hashlib.sha256(b"{").hexdigest(), "the version card is not valid JSON"),
        (build_card(signature=SIG, examples=None, provenance=Provenance()),
         hashlib.sha256(build_card(signature=SIG, examples=None, provenance=Provenance())).hexdigest(),
         "the version's card holds none"),
    ],
)  # fmt: skip
def test_a_version_whose_examples_cannot_be_had_is_never_good(card: bytes | None, sha: str, message: str) -> None:
    verdict = smoke.check_one(smoke.VersionExamples(sha), "iris", pod(card, RIGHT))
    assert not verdict.passed and verdict.message.startswith("the version's acceptance examples: ")
    assert message in verdict.message


def test_the_engine_runs_version_examples_only_for_the_exact_version_the_bump_recorded() -> None:
    spec = parse_spec({"image": "r.example/app:1", "model": {"uri": "azureblob://m/iris", "version": "8",
                                                              "sha256": "a" * 64}})  # fmt: skip
    facts = PairFacts(model=ModelFacts(uri="azureblob://m/iris", version="8", sha256="a" * 64, card="c" * 64,
                                       examples=True))  # fmt: skip
    annotations = {ANN_PAIR_FACTS: facts.to_annotation()}
    assert engine._version_examples(annotations, spec) == smoke.VersionExamples("c" * 64)
    other = spec.model_copy(update={"model": spec.model.model_copy(update={"sha256": "b" * 64})})
    assert engine._version_examples(annotations, other) is None
    none = PairFacts(model=facts.model.model_copy(update={"examples": False}) if facts.model else None)
    assert engine._version_examples({ANN_PAIR_FACTS: none.to_annotation()}, spec) is None
    assert engine._version_examples({}, spec) is None
