"""The example app's signature (examples/app/signatures.json) against its model class and the bump's rules.

Design notes: one file serves both halves of the recipe: `hack/app-ci.sh` writes it into the image label
`io.modelapp.signatures` (the signatures the image accepts), and the data scientist publishes the model version
with `--signature signatures.json` (a user class's signature is declared, not derived). These tests keep it in
step with what `IrisModel` declares, so the label never refuses the app's own model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from modelapp_operator.signatures import fit, parse_accepts
from modelapp_serving.card import parse_signature

APP = Path(__file__).resolve().parents[2] / "examples" / "app"


def test_the_label_and_the_published_signature_are_the_same_file_and_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (APP / "signatures.json").read_text()
    published = parse_signature(text.encode())
    accepted = parse_accepts(text)
    assert fit(published, accepted) is None
    monkeypatch.syspath_prepend(str(APP / "src"))
    monkeypatch.delitem(sys.modules, "iris_app.model", raising=False)
    from iris_app.model import IrisModel

    assert [t.model_dump(mode="json") for t in published.inputs] == IrisModel.inputs
    assert [t.model_dump(mode="json") for t in published.outputs] == IrisModel.outputs
