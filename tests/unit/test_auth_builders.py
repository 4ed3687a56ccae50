"""Endpoint authentication in the spec and the pod template (issue 12.4).

Design notes: pure, no I/O. What matters here is what a reader of the ModelApp or of its pods can see
(docs/security.md, "Endpoint authentication"): the tenant's token only as a reference to its Secret (the
kubelet resolves it, the operator never reads it), and of the operator's smoke token only its SHA-256.
The smoke token is derived from the operator's key, the ModelApp's uid and the revision's pair, so it is
the same after a restart (no roll), differs for another app or revision, and cannot be derived from
anything a tenant can read. The runtime side (401s against a real server) is in
tests/integration/test_serve_auth.py.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from modelapp_operator import builders as b
from modelapp_operator.spec import InvalidSpec, ModelAppSpec, parse_spec

KEY = bytes(range(32))
CTX = b.BuildContext(serving_image="registry.example.com/modelapp-serving:0.1.0", smoke_key=KEY)
UID = "5f1b7a2e-0000-4000-8000-000000000001"
SMOKE = {"inputs": [{"shape": [1, 1], "data": [1.0]}], "expected": [{"data": [1.0]}]}


def _spec(**overrides: Any) -> ModelAppSpec:
    raw: dict[str, Any] = {
        "image": "registry.example.com/iris-app:1.4.2",
        "model": {"uri": "azureblob://models/iris", "version": "7"},
    }
    raw.update(overrides)
    return parse_spec(raw)


def _env(spec: ModelAppSpec, *, uid: str = UID, ctx: b.BuildContext = CTX) -> dict[str, Any]:
    dep = b.build_deployment("iris", "ml", spec, ctx, uid=uid)
    (app,) = dep["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in app["env"]}


def test_without_auth_the_template_is_unchanged() -> None:
    spec = _spec(rollout={"smokeTest": SMOKE})
    assert b.build_deployment("iris", "ml", spec, CTX, uid=UID) == b.build_deployment(
        "iris", "ml", spec, b.BuildContext(serving_image=CTX.serving_image)
    ), "an operator with a key rolls nothing out for apps without auth"
    assert b.ENV_AUTH_TOKEN not in _env(spec)


def test_the_token_comes_from_the_secret_by_reference() -> None:
    env = _env(_spec(auth={"secretName": "iris-token"}))
    assert env[b.ENV_AUTH_TOKEN] == {"secretKeyRef": {"name": "iris-token", "key": "token"}}
    assert b.ENV_AUTH_SMOKE_SHA256 in env, "a version's own examples are a smoke test too: always accepted"
    with_test = _env(_spec(auth={"secretName": "iris-token"}, rollout={"smokeTest": SMOKE}))
    assert with_test == env, "adding a smoke test rolls nothing"
    env = _env(_spec(auth={"secretName": "iris-token", "key": "api-key"}))
    assert env[b.ENV_AUTH_TOKEN] == {"secretKeyRef": {"name": "iris-token", "key": "api-key"}}


def test_the_pod_gets_only_the_digest_of_the_smoke_token() -> None:
    spec = _spec(auth={"secretName": "iris-token"}, rollout={"smokeTest": SMOKE})
    env = _env(spec)
    token = b.smoke_token(KEY, uid=UID, image=spec.image, uri=spec.model.uri, version="7", sha256="")
    assert env[b.ENV_AUTH_SMOKE_SHA256] == hashlib.sha256(token.encode()).hexdigest()
    rendered = repr(b.build_children("iris", "ml", spec, CTX, uid=UID))
    assert token not in rendered and KEY.hex() not in rendered, "neither the token nor the key is in any child"


def test_the_smoke_token_is_stable_and_bound_to_app_and_revision() -> None:
    spec = _spec(auth={"secretName": "iris-token"}, rollout={"smokeTest": SMOKE})
    assert _env(spec) == _env(spec), "the same key, uid and pair: the same template (a restart rolls nothing)"
    digest = _env(spec)[b.ENV_AUTH_SMOKE_SHA256]
    other_app = _env(spec, uid="5f1b7a2e-0000-4000-8000-000000000002")[b.ENV_AUTH_SMOKE_SHA256]
    other_revision = _env(spec.model_copy(update={"image": "registry.example.com/iris-app:1.4.3"}))
    other_key = _env(spec, ctx=b.BuildContext(serving_image=CTX.serving_image, smoke_key=b"k" * 32))
    assert len({digest, other_app, other_revision[b.ENV_AUTH_SMOKE_SHA256], other_key[b.ENV_AUTH_SMOKE_SHA256]}) == 4


def test_the_token_is_an_hmac_under_the_key_not_a_hash_of_public_facts() -> None:
    """A reader knows uid, image, uri, version: without the key, the token is an HMAC they cannot compute."""
    token = b.smoke_token(KEY, uid=UID, image="i", uri="u", version="v", sha256="")
    public = "\0".join((UID, "i", "u", "v", ""))
    assert token != hashlib.sha256(public.encode()).hexdigest()
    assert token == hmac.new(KEY, b"modelapp.io/smoke-token/v1\0" + public.encode(), hashlib.sha256).hexdigest()
    # Field boundaries are part of the message: moving text from one field to the next changes the token.
    assert token != b.smoke_token(KEY, uid=UID, image="iu", uri="", version="v", sha256="")


def test_render_without_key_or_uid_writes_no_smoke_digest() -> None:
    spec = _spec(auth={"secretName": "iris-token"}, rollout={"smokeTest": SMOKE})
    assert b.ENV_AUTH_SMOKE_SHA256 not in _env(spec, uid="")
    assert b.ENV_AUTH_SMOKE_SHA256 not in _env(spec, ctx=b.BuildContext(serving_image=CTX.serving_image))


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({}, "spec.auth.secretName: Field required"),
        ({"secretName": "Iris_Token"}, "spec.auth.secretName: not a valid name"),
        ({"secretName": "t", "key": "a/b"}, "spec.auth.key: not a Secret key"),
        ({"secretName": "t", "extra": 1}, "spec.auth.extra: Extra inputs are not permitted"),
    ],
)
def test_bad_auth_is_refused_with_the_field_named(auth: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpec, match=message.replace(".", r"\.")):
        _spec(auth=auth)
