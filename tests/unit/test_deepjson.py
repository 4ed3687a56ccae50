"""Decoding the API server's answers whatever their depth (operator/deepjson.py).

Design notes: the documents are shaped like the hostile ones the API server really keeps (a managedFields
entry nested 1,500 levels, as a tenant may write it); what must hold is that the decoder returns the object
with only the too-deep part replaced, that nothing shallow changes, and that text which is not JSON still
raises. Against the real API server and the operator: tests/integration/test_tenancy_depth.py.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import aiohttp
import pytest
from kopf._cogs.clients import api as kopf_api

from modelapp_operator import commands, deepjson


def _hostile(levels: int) -> str:
    """A ConfigMap as the API server answered it after a tenant's update of its managedFields (written as
    text: Python's encoder does not reach such depths either)."""
    fields = '{"f:a": ' * levels + "{}" + "}" * levels
    return (
        '{"kind": "ConfigMap", "metadata": {"name": "cm", "managedFields": [{"manager": "evil", "fieldsV1": '
        + fields
        + '}], "labels": {"after": "the deep part"}}, "data": {"a": "b"}}'
    )


def _depth(node: Any) -> int:
    depth = 0
    while isinstance(node, dict) and "f:a" in node:
        depth, node = depth + 1, node["f:a"]
    return depth


def test_shallow_documents_decode_as_json_does() -> None:
    text = _hostile(40)
    assert deepjson.loads(text) == json.loads(text)
    assert deepjson.clip(text) == text


def test_a_document_too_deep_for_the_decoder_is_clipped_there_and_nowhere_else() -> None:
    text = _hostile(1500)
    with pytest.raises(RecursionError):
        json.loads(text)
    obj = deepjson.loads(text.encode())
    fields = obj["metadata"]["managedFields"][0]["fieldsV1"]
    # fieldsV1 opens at level 4 (root, metadata, managedFields, the entry): levels up to 64 are kept.
    assert _depth(fields) == deepjson.CLIP_DEPTH - 4
    leaf = fields
    while isinstance(leaf, dict):
        leaf = leaf["f:a"]
    assert leaf == deepjson.CLIPPED
    assert obj["metadata"]["name"] == "cm" and obj["metadata"]["labels"] == {"after": "the deep part"}
    assert obj["data"] == {"a": "b"}


def test_arrays_and_brackets_inside_strings_count_right() -> None:
    tricky = 'a "quoted" [{ and \\ }]'
    item = json.dumps(tricky)
    text = '{"x": ' + "[" * 2000 + item + ("], " + item) * 1999 + '], "y": "]]}}"}'
    obj = deepjson.loads(text)
    assert obj["y"] == "]]}}"
    node, arrays = obj["x"], 0
    while isinstance(node, list):
        assert len(node) == 1 or node[-1] == tricky
        node, arrays = node[0], arrays + 1
    assert node == deepjson.CLIPPED and arrays == deepjson.CLIP_DEPTH - 1  # the root object is the first level


@pytest.mark.parametrize("broken", ['{"a": ' * 1500 + "1", '{"a": ' * 1500 + '"open', "[" * 1500 + "]" * 1499 + "x"])
def test_text_that_is_not_json_still_raises(broken: str) -> None:
    with pytest.raises(ValueError):
        deepjson.loads(broken)


def test_kopf_decodes_with_it() -> None:
    deepjson.teach_kopf()
    deepjson.teach_kopf()  # every start may call it: a second time changes nothing
    assert kopf_api.json.loads is deepjson.loads_lean
    assert kopf_api.json.JSONDecodeError is json.JSONDecodeError  # everything else is the stdlib's
    kwdefaults = aiohttp.ClientResponse.json.__kwdefaults__
    assert kwdefaults is not None and kwdefaults["loads"] is deepjson.loads_lean


def test_what_kopf_decodes_has_no_managed_fields_and_everything_else() -> None:
    fields = [{"manager": "modelapp-operator", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]

    def obj(name: str) -> dict[str, Any]:
        meta = {"name": name, "resourceVersion": "7", "managedFields": fields}
        return {"kind": "Deployment", "metadata": meta, "spec": {"replicas": 2},
                "status": {"managedFields": "a field of that name elsewhere stays"}}  # fmt: skip

    def without(o: dict[str, Any]) -> dict[str, Any]:
        return {**o, "metadata": {k: v for k, v in o["metadata"].items() if k != "managedFields"}}

    event = {"type": "MODIFIED", "object": obj("a")}
    listing = {"kind": "DeploymentList", "metadata": {"resourceVersion": "9"}, "items": [obj("a"), obj("b")]}
    error = {"type": "ERROR", "object": {"code": 410}}
    for doc, lean in [(event, {**event, "object": without(obj("a"))}),
                      (listing, {**listing, "items": [without(obj("a")), without(obj("b"))]}),
                      (obj("a"), without(obj("a"))), ([1, 2], [1, 2]), ("text", "text"), (None, None),
                      (error, error)]:  # fmt: skip
        assert deepjson.loads_lean(json.dumps(doc)) == lean
    hostile = deepjson.loads_lean(_hostile(1500))  # too deep for json.loads: clipped, then gone all the same
    assert hostile["metadata"] == {"name": "cm", "labels": {"after": "the deep part"}} and hostile["data"] == {"a": "b"}


def test_an_unknown_kopf_is_refused_before_it_starts(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setattr(kopf_api, "json", object())  # as if kopf had moved its decoding elsewhere
    with pytest.raises(RuntimeError, match=r"install the versions pyproject\.toml allows"):
        deepjson.teach_kopf()
    args = argparse.Namespace(namespace=["ml"], all_namespaces=False, peering=None, standalone=True, priority=1,
                              liveness=None, metrics_port=0, metrics_address="0.0.0.0", verbose=False, shard=None,
                              shard_default=None)  # fmt: skip
    assert commands.run_main(args) == 2, "modelapp run stops, naming the cause"
    assert "decode the API server's answers in a way this operator does not know" in capsys.readouterr().err
