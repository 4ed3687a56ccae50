"""The resource's names (`names.py`) and the typed revision entry (`revisions.Revision`) against the CRD.

Design notes: `crds/` is the one source of the schema, so everything the code spells about the resource is
checked against it here: group, version, kind, plural; the fields of a `status.revisions` item (names,
which are required, enums and bounds) against the pydantic model that parses them; and the condition
types the operator writes against the CRD's description of `status.conditions`. A field added to one side
only fails here with its name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelapp_operator import names
from modelapp_operator.revisions import Pair, Revision, parse_revisions

CRD = yaml.safe_load((Path(__file__).resolve().parents[2] / "crds" / "modelapp.io_modelapps.yaml").read_text())


def _status_schema() -> dict[str, Any]:
    schema: dict[str, Any] = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    return schema


def test_the_resource_names_are_the_crds() -> None:
    assert CRD["spec"]["group"] == names.GROUP
    assert CRD["spec"]["names"]["kind"] == names.KIND
    assert CRD["spec"]["names"]["plural"] == names.PLURAL
    assert [v["name"] for v in CRD["spec"]["versions"]] == [names.VERSION]
    assert CRD["metadata"]["name"] == f"{names.PLURAL}.{names.GROUP}"


def test_a_revision_entry_has_the_crds_fields_and_constraints() -> None:
    item = _status_schema()["properties"]["revisions"]["items"]
    fields = {(f.alias or n): f for n, f in Revision.model_fields.items()}
    assert set(fields) == set(item["properties"])
    assert {n for n, f in fields.items() if f.is_required()} == set(item["required"])
    assert tuple(item["properties"]["outcome"]["enum"]) == names.OUTCOMES
    assert item["properties"]["smokeTest"]["enum"] == ["Passed", "Failed"]
    for bounded in ("reason", "message", "settings"):
        limit = item["properties"][bounded]["maxLength"]
        metadata = fields[bounded].metadata
        assert any(getattr(m, "max_length", None) == limit for m in metadata), bounded


def test_what_the_operator_writes_parses_back_unchanged() -> None:
    entry = Revision.new(3, Pair("r.example/app@sha256:" + "a" * 64, "azureblob://m/iris", "7", "b" * 64),
                         at="2026-12-02T08:00:00Z", outcome="Progressing", reason="RollingOut", message="rolling")
    entry.available_at, entry.smoke_test = "2026-12-02T08:01:00Z", "Passed"
    stored = entry.to_status()
    assert stored["imageDigest"] == "sha256:" + "a" * 64
    assert parse_revisions({"revisions": [stored]}) == [entry]


@pytest.mark.parametrize("shape", [
    {"image": "a:1", "model": "1", "outcome": "Failed"},  # no revision number
    {"revision": 1, "image": "a:1", "model": {"version": "1"}, "outcome": "Failed"},  # model as an object
    {"revision": 1, "image": "a:1", "modelVersion": "1", "outcome": "Failed"},  # another schema's field name
    {"revision": 1, "image": "a:1", "model": "1", "outcome": "Succeeded"},  # not an outcome of ours
    "Failed",
])  # fmt: skip
def test_shapes_the_crd_refuses_are_not_read(shape: Any) -> None:
    good = {"revision": 9, "image": "a:2", "model": "2", "outcome": "Failed"}
    assert [r.revision for r in parse_revisions({"revisions": [shape, good]})] == [9]


def test_the_condition_types_are_described_by_the_crd() -> None:
    text = yaml.safe_dump(_status_schema()["properties"]["conditions"])
    for kind in (names.READY, names.PROGRESSING, names.DEGRADED, names.MODEL_RESOLVED, names.ROLLED_BACK):
        assert kind in text, f"condition type {kind} is not described in the CRD"
