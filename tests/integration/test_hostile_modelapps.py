"""Hostile ModelApps against the real API server: the CRD and the operator's parser never disagree.

Design notes: a tenant can send any JSON as a ModelApp spec. Whatever the API server (the CRD's schema and
CEL rules) accepts reaches the operator, which parses it with the pydantic spec; a spec the CRD accepts but
the parser refuses would only ever be an InvalidSpec condition, never a running revision, and one the
parser accepts but the CRD refuses cannot be written at all. So the property, for generated specs mixing
valid fields with hostile values (wrong types, huge and empty strings, negative and huge numbers, unknown
keys, nulls, control characters, our own reserved names): whatever the API server stores (after its
pruning of unknown fields and nulls, and its defaults), the parser accepts; and whatever the parser
accepts as sent, the API server accepts. Requests use `dryRun=All`, so nothing is stored and no operator
is involved; bounded by `max_examples`. A spec that would crash the parser (anything but InvalidSpec)
fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelapp_operator import kube
from modelapp_operator.spec import InvalidSpec, parse_spec

pytestmark = pytest.mark.integration

HOSTILE_TEXT = st.sampled_from(["", " ", "latest", "a" * 600, "\x00", "../../etc", "x:1\n", "🙂", "modelapp.io/x",
                                "app.kubernetes.io/instance", "-1", "1e309", "null"])  # fmt: skip
SCALAR = st.one_of(HOSTILE_TEXT, st.integers(min_value=-(2**63), max_value=2**63), st.booleans(), st.none(),
                   st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))  # fmt: skip
JSONISH = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                       max_leaves=6)  # fmt: skip

GOOD = {
    "image": "registry.example.com/team/app:1.4.0",
    "model": {"uri": "azureblob://models/iris", "version": "7", "credentialsSecret": "blob"},
    "replicas": 2,
    "service": {"type": "ClusterIP", "port": 80},
    "updates": {"image": {"policy": "semver:^1.4", "tagFilter": "^1\\."}, "model": {"policy": "numeric"}},
    "rollout": {"progressDeadlineSeconds": 300, "autoRollback": True},
}
PATHS = [("image",), ("model", "uri"), ("model", "version"), ("model", "sha256"), ("model", "credentialsSecret"),
         ("replicas",), ("service", "type"), ("service", "port"), ("updates", "image", "policy"),
         ("updates", "image", "tagFilter"), ("updates", "model", "policy"), ("rollout", "progressDeadlineSeconds"),
         ("rollout", "smokeTest"), ("env",), ("command",), ("modelClass",), ("resources",), ("unknownField",),
         ("model", "extra")]  # fmt: skip


def _with(spec: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = {**spec}
    node = out
    for key in path[:-1]:
        child = node.get(key)
        node[key] = {**child} if isinstance(child, dict) else {}
        node = node[key]
    node[path[-1]] = value
    return out


#: Values near the edge that are still meant to be valid, so that about half the specs are stored.
PLAUSIBLE: dict[tuple[str, ...], st.SearchStrategy[Any]] = {
    ("image",): st.sampled_from(["r.example/a@sha256:" + "a" * 64, "localhost:5000/x/y:v1", "app", "a/b:1.0-rc.1"]),
    ("model", "uri"): st.sampled_from(["s3://bucket-1/p", "file:///opt/m", "azureblob://abc/x/y"]),
    ("model", "version"): st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,10}\Z"),
    ("replicas",): st.integers(min_value=-1, max_value=101),
    ("service", "port"): st.integers(min_value=0, max_value=65536),
    ("service", "type"): st.sampled_from(["LoadBalancer", "NodePort", "ClusterIP", "clusterip"]),
    ("updates", "image", "policy"): st.sampled_from(["pinned", "latest", "semver:>1", "semver:^1.2 || ~2", "semver:"]),
    ("updates", "image", "tagFilter"): st.sampled_from(["^v", "(a+)+$", "(\\d)\\1", "[", ".*"]),
    ("rollout", "progressDeadlineSeconds"): st.integers(min_value=0, max_value=4000),
    ("unknownField",): JSONISH,
    ("model", "extra"): JSONISH,
}


@st.composite
def hostile_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec = dict(GOOD)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(PATHS))
        plausible = PLAUSIBLE.get(path)
        value = draw(st.one_of(JSONISH, plausible) if plausible is not None else JSONISH)
        spec = _with(spec, path, value)
    return spec


def _server_stores(namespace: str, spec: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The spec as the API server would store it, or None and why it refused."""
    body = {"apiVersion": "modelapp.io/v1alpha1", "kind": "ModelApp", "metadata": {"name": "hostile"}, "spec": spec}
    try:
        stored = kube._call("POST", f"/apis/modelapp.io/v1alpha1/namespaces/{namespace}/modelapps", body=body,
                            query={"dryRun": "All"}, content_type="application/json")  # fmt: skip
    except kube.ApiError as exc:
        assert exc.status in (400, 422), f"the API server answered {exc.status}: {exc}"
        return None, str(exc)
    result: dict[str, Any] = stored["spec"]
    return result, ""


def _parser_accepts(spec: dict[str, Any]) -> tuple[bool, str]:
    try:
        parse_spec(spec)
    except InvalidSpec as exc:
        return False, str(exc)
    return True, ""


def test_the_crd_and_the_parser_agree_on_hostile_specs(modelapp_crds: Path, namespace: str) -> None:
    assert _server_stores(namespace, GOOD)[0] is not None and _parser_accepts(GOOD) == (True, "")
    disagreements: list[str] = []
    refused = stored_count = 0

    @settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(hostile_specs())
    def check(spec: dict[str, Any]) -> None:
        nonlocal refused, stored_count
        stored, why_server = _server_stores(namespace, spec)
        if stored is None:
            refused += 1
            parser, _ = _parser_accepts(spec)
            if parser:
                disagreements.append(f"the parser accepts what the API server refuses ({why_server[:200]}): "
                                     f"{str(spec)[:300]}")  # fmt: skip
            return
        stored_count += 1
        parser, why_parser = _parser_accepts(stored)
        if not parser:
            disagreements.append(f"the API server stores what the parser refuses ({why_parser[:200]}): "
                                 f"{str(stored)[:300]}")  # fmt: skip

    check()
    assert not disagreements, "\n".join(disagreements[:5])
    assert refused > 20 and stored_count > 10, (refused, stored_count)  # both sides of the property were exercised
