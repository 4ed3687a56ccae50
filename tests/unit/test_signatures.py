"""Signature fit, the image label and the bump's recorded facts (pure, no I/O).

Design notes: signatures are built from the JSON a data scientist or an app team writes, as the label and the
card hold them; each refusal is checked for the field it names, since that text is what the condition and the
bump's plan show.
"""

from __future__ import annotations

import json

import pytest

from modelapp_operator import signatures
from modelapp_operator.signatures import ImageFacts, ModelFacts, PairFacts, fit, mismatch, parse_accepts, parse_facts
from modelapp_serving.card import Signature

IRIS = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]}  # fmt: skip


def sig(raw: dict[str, object]) -> Signature:
    return Signature.model_validate(raw)


def test_the_same_signature_fits_and_an_image_reading_fewer_outputs_fits() -> None:
    assert fit(sig(IRIS), [sig(IRIS)]) is None
    reads_label = {**IRIS, "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}]}
    assert fit(sig(IRIS), [sig(reads_label)]) is None


def test_any_size_dimensions_fit_fixed_ones_and_a_single_input_matches_by_position() -> None:
    fixed = {**IRIS, "inputs": [{"name": "measurements", "datatype": "FP32", "shape": [1, 4]}]}
    assert fit(sig(IRIS), [sig(fixed)]) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]},
         "input 'input' datatype: the model takes FP32, the image expects FP64"),
        ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 5]}]},
         "input 'input' shape: the model takes [-1, 4], the image expects [-1, 5]"),
        ({"outputs": [{"name": "species", "datatype": "BYTES", "shape": [-1]}]},
         "output 'species': the image reads it, the model does not produce it (it produces ['label', "
         "'probabilities'])"),
        ({"outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1]}]},
         "output 'probabilities' shape: the model produces [-1, 3], the image expects [-1]"),
    ],
)  # fmt: skip
def test_the_first_field_that_differs_is_named(change: dict[str, object], message: str) -> None:
    assert fit(sig(IRIS), [sig({**IRIS, **change})]) == message


def test_inputs_the_model_requires_and_the_image_does_not_send_are_named() -> None:
    two = {**IRIS, "inputs": [{"name": "a", "datatype": "FP32", "shape": [-1]},
                              {"name": "b", "datatype": "FP32", "shape": [-1]}]}  # fmt: skip
    sends_a = {**IRIS, "inputs": [{"name": "a", "datatype": "FP32", "shape": [-1]},
                                  {"name": "c", "datatype": "FP32", "shape": [-1]}]}  # fmt: skip
    message = fit(sig(two), [sig(sends_a)])
    assert message is not None and message.startswith("input 'c': the image sends it, the model has no such input")
    assert "and 1 more difference(s)" in message


def test_several_accepted_signatures_fit_when_one_does_and_the_closest_is_reported() -> None:
    other = {**IRIS, "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 5]}]}
    assert fit(sig(IRIS), [sig(other), sig(IRIS)]) is None
    new_model = {**IRIS, "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 6]}]}
    message = fit(sig(new_model), [sig(other), sig(IRIS)])
    assert message is not None and message.endswith("the image accepts 2 signatures, this is the closest")


def test_nothing_is_checked_when_either_side_says_nothing() -> None:
    assert fit(None, [sig(IRIS)]) is None
    assert fit(sig(IRIS), None) is None
    assert fit(sig(IRIS), []) == f"the image's label {signatures.LABEL} lists no signature at all"


def test_the_label_is_a_list_or_one_signature_and_hostile_labels_are_refused_with_a_reason() -> None:
    assert parse_accepts(json.dumps(IRIS)) == (sig(IRIS),)
    assert parse_accepts(json.dumps([IRIS, IRIS])) == (sig(IRIS), sig(IRIS))
    with pytest.raises(signatures.SignatureError, match="over the 16384 byte limit"):
        parse_accepts(" " * 20000)
    with pytest.raises(signatures.SignatureError, match="is not valid JSON"):
        parse_accepts("[" * 10_000)
    with pytest.raises(signatures.SignatureError, match="lists 17 signatures"):
        parse_accepts(json.dumps([IRIS] * 17))
    with pytest.raises(signatures.SignatureError, match=r"invalid at 0\.inputs\.0\.datatype"):
        parse_accepts(json.dumps({**IRIS, "inputs": [{"name": "x", "datatype": "FLOAT", "shape": [1]}]}))


def test_facts_apply_only_to_the_exact_pair_they_were_read_for() -> None:
    other = {**IRIS, "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 5]}]}
    facts = PairFacts(
        image=ImageFacts(image="r.example/app:2", accepts=(sig(other),)),
        model=ModelFacts(uri="azureblob://m/iris", version="8", sha256="a" * 64, signature=sig(IRIS)),
    )
    again = parse_facts(facts.to_annotation())
    assert again == facts
    why = mismatch(again, image="r.example/app:2", uri="azureblob://m/iris", version="8", sha256="a" * 64)
    assert why == ("image r.example/app:2 does not accept model version 8: input 'input' shape: the model takes "
                   "[-1, 4], the image expects [-1, 5]")  # fmt: skip
    assert mismatch(again, image="r.example/app:3", uri="azureblob://m/iris", version="8", sha256="a" * 64) is None
    assert mismatch(again, image="r.example/app:2", uri="azureblob://m/iris", version="8", sha256="b" * 64) is None


@pytest.mark.parametrize("text", [None, "", "{", "[]", "x" * 70_000, json.dumps({"image": {"image": 3}})])
def test_an_unreadable_annotation_is_no_facts(text: str | None) -> None:
    assert parse_facts(text) == PairFacts()
