"""The CRD's structural schema and the pydantic spec model describe the same thing.

Design notes: both sides are normalised into one small shape (type, properties, required, enum,
pattern, bounds, items, map values) and compared node by node, so a field added, renamed or re-bounded on one side
only fails here with its path. Defaults are compared by behaviour: the CRD's defaults are applied to a
minimal spec (as the API server would) and the result must equal what pydantic fills in. Also checked:
every CRD field carries a description (`kubectl explain` reads them) and the CRD's shape is right.
A structural schema cannot constrain a map's keys, so the CRD does it in CEL rules; those rules and their
messages must be exactly `spec.CRD_RULES`, which is built from the patterns and messages the pydantic
validators use, so a key rule or a refusal message changed on one side only fails here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelapp_operator import spec as specmod

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "modelapp.io_modelapps.yaml"
_CONSTRAINTS = ("pattern", "maxLength", "minimum", "maximum", "maxItems", "maxProperties", "enum")


def _crd() -> dict[str, Any]:
    with CRD_PATH.open() as fh:
        doc: dict[str, Any] = yaml.safe_load(fh)
    return doc


def _root_schema() -> dict[str, Any]:
    schema: dict[str, Any] = _crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _norm_crd(node: dict[str, Any]) -> dict[str, Any]:
    """Reduce a CRD schema node to the comparable shape."""
    if node.get("x-kubernetes-int-or-string"):
        return {"type": "int-or-string", **{k: node[k] for k in _CONSTRAINTS if k in node}}
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return {"type": "free-object"}
    out: dict[str, Any] = {"type": node["type"], **{k: node[k] for k in _CONSTRAINTS if k in node}}
    if isinstance(node.get("additionalProperties"), dict):  # a map: keys are checked by CEL rules
        out["values"] = _norm_crd(node["additionalProperties"])
    if "properties" in node:
        out["properties"] = {k: _norm_crd(v) for k, v in node["properties"].items()}
        out["required"] = sorted(node.get("required", []))
    if "items" in node:
        out["items"] = _norm_crd(node["items"])
    return out


def _norm_pydantic(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Reduce a pydantic JSON-schema node (refs resolved, Optional unwrapped) to the same shape."""
    if "$ref" in node:
        return _norm_pydantic(defs[node["$ref"].rsplit("/", 1)[1]], defs)
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) == 1:
            return _norm_pydantic({**branches[0], **{k: v for k, v in node.items() if k != "anyOf"}}, defs)
        kinds = sorted(b.get("type") for b in branches)
        assert kinds == ["integer", "string"], node
        text = next(b for b in branches if b["type"] == "string")
        return {"type": "int-or-string", **{k: text[k] for k in _CONSTRAINTS if k in text}}
    if node.get("type") == "object" and node.get("additionalProperties") is True and "properties" not in node:
        return {"type": "free-object"}
    out: dict[str, Any] = {"type": node["type"], **{k: node[k] for k in _CONSTRAINTS if k in node}}
    if "patternProperties" in node:  # a map with constrained keys (the key rules are compared as CEL rules)
        (values,) = node["patternProperties"].values()
        out["values"] = _norm_pydantic(values, defs)
    elif isinstance(node.get("additionalProperties"), dict):
        out["values"] = _norm_pydantic(node["additionalProperties"], defs)
    if "const" in node:
        out["enum"] = [node["const"]]
    if "properties" in node:
        out["properties"] = {k: _norm_pydantic(v, defs) for k, v in node["properties"].items()}
        out["required"] = sorted(node.get("required", []))
    if "items" in node:
        out["items"] = _norm_pydantic(node["items"], defs)
    return out


def _diff(a: Any, b: Any, path: str = "spec") -> list[str]:
    """Paths where two normalised trees differ (empty when they agree)."""
    if isinstance(a, dict) and isinstance(b, dict):
        problems = [f"{path}.{k}: only in the CRD" for k in a.keys() - b.keys()]
        problems += [f"{path}.{k}: only in pydantic" for k in b.keys() - a.keys()]
        for key in a.keys() & b.keys():
            problems += _diff(a[key], b[key], f"{path}.{key}")
        return problems
    return [] if a == b else [f"{path}: CRD {a!r} != pydantic {b!r}"]


def _apply_crd_defaults(value: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """What the API server's defaulting does to an object: fill absent properties that have a default."""
    out = dict(value)
    for key, sub in node.get("properties", {}).items():
        if key not in out and "default" in sub:
            out[key] = sub["default"]
        if isinstance(out.get(key), dict) and "properties" in sub:
            out[key] = _apply_crd_defaults(out[key], sub)
    return out


def test_spec_schemas_agree_field_by_field() -> None:
    crd = _norm_crd(_root_schema()["properties"]["spec"])
    schema = specmod.ModelAppSpec.model_json_schema(by_alias=True)
    ours = _norm_pydantic(schema, schema.get("$defs", {}))
    assert _diff(crd, ours) == []


def test_defaults_agree_with_api_server_defaulting() -> None:
    minimal = {"image": "example.com/app:1", "model": {"uri": "file:///models/iris", "version": "1"}}
    defaulted = _apply_crd_defaults(minimal, _root_schema()["properties"]["spec"])
    parsed = specmod.parse_spec(minimal).model_dump(by_alias=True, exclude_none=True)
    assert parsed == specmod.parse_spec(defaulted).model_dump(by_alias=True, exclude_none=True)
    assert parsed == defaulted


def test_name_rule_agrees() -> None:
    name = _root_schema()["properties"]["metadata"]["properties"]["name"]
    assert name["pattern"] == specmod.NAME_PATTERN
    assert name["maxLength"] == specmod.NAME_MAX_LENGTH


def _undescribed(node: dict[str, Any], path: str) -> list[str]:
    # The API server forbids anything but name/generateName under metadata; kubectl explains ObjectMeta itself.
    missing = [] if node.get("description") or path == ".metadata" else [path]
    for key, sub in node.get("properties", {}).items():
        missing += _undescribed(sub, f"{path}.{key}")
    if "items" in node:
        missing += _undescribed(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        missing += _undescribed(node["additionalProperties"], f"{path}{{}}")
    return missing


def test_every_field_has_a_description() -> None:
    assert _undescribed(_root_schema(), "") == []


def _cel_rules(node: dict[str, Any], path: str) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    if node.get("x-kubernetes-validations"):
        found[path] = [(r["rule"], r["message"]) for r in node["x-kubernetes-validations"]]
    for key, sub in node.get("properties", {}).items():
        found.update(_cel_rules(sub, f"{path}.{key}".lstrip(".")))
    if "items" in node:
        found.update(_cel_rules(node["items"], f"{path}[]"))
    return found


def test_cel_rules_and_messages_are_the_spec_models() -> None:
    """The CRD refuses what the validators refuse, in the same words (`kubectl apply` and `modelapp render`
    read the same message)."""
    found = _cel_rules(_root_schema()["properties"]["spec"], "")
    assert found == specmod.CRD_RULES, (
        "the CRD's x-kubernetes-validations and spec.CRD_RULES differ: a CEL rule is added or changed in both, "
        "its message a constant of spec.py that the pydantic validator raises too"
    )


def test_crd_identity_columns_and_subresources() -> None:
    crd = _crd()
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == "modelapps.modelapp.io"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == ("ModelApp", "modelapps", ["ma"])
    version = crd["spec"]["versions"][0]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}, "scale": {  # `kubectl scale ma`
        "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector"}}  # fmt: skip
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"] if not c.get("priority")}
    assert columns == {  # `kubectl get ma`: the pair that serves, from status (never the spec's beside it)
        "Ready": '.status.conditions[?(@.type=="Ready")].status',
        "Image": ".status.image.ref",
        "Model": ".status.model.version",
        "URL": ".status.url",
        "Age": ".metadata.creationTimestamp",
    }
    wide = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"] if c.get("priority") == 1}
    assert wide == {"Spec-Image": ".spec.image", "Spec-Model": ".spec.model.version",
                    "Applied": ".status.effective.source"}  # fmt: skip


@pytest.mark.parametrize("field", ["image", "model"])
def test_required_top_level_fields(field: str) -> None:
    assert field in _root_schema()["properties"]["spec"]["required"]
