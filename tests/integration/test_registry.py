"""The OCI registry client against a real registry (Debian's docker-registry, Distribution 2.8).

Design notes: the same behaviours are checked in the three auth flavours a real fleet meets
(anonymous, htpasswd basic, bearer token from a token service), with images pushed through the
registry API by the fixture. Faults use real conditions where they exist (a closed port, wrong
passwords, a missing repository) and a silent socket only for "too slow". Each test pushes to a
repository of its own.
"""

from __future__ import annotations

import time

import pytest

from modelapp_operator.registry import (
    DockerConfig,
    NotFound,
    RegistryAuthError,
    RegistryClient,
    RegistryUnavailable,
    parse_image,
)
from tests.fixtures.net import free_port
from tests.fixtures.registry import IDENTITY_TOKEN, PUSHER, READER, Registry

pytestmark = pytest.mark.integration


@pytest.fixture(params=["anonymous", "basic", "token"])
def registry(request: pytest.FixtureRequest) -> Registry:
    """Each flavour in turn; the session fixtures keep one process per flavour."""
    result: Registry = request.getfixturevalue(f"registry_{request.param}")
    return result


def client_for(registry: Registry, **kwargs: int | float) -> RegistryClient:
    config = DockerConfig.from_json(registry.docker_config(READER))
    return RegistryClient(config=config, **kwargs)  # type: ignore[arg-type]


def test_lists_tags_and_resolves_digests(registry: Registry) -> None:
    repository = registry.fresh_repository()
    digests = {tag: registry.push(repository, tag) for tag in ("1.4.0", "1.4.2", "1.5.0", "latest")}
    ref = parse_image(f"{registry.host}/{repository}:1.4.0")
    client = client_for(registry)
    assert sorted(client.list_tags(ref)) == sorted(digests)
    for tag, digest in digests.items():
        assert client.resolve_digest(ref, tag) == digest


@pytest.mark.parametrize("flavour", ["v3_anonymous", "v3_token"])
def test_paginates_beyond_page_size(flavour: str, request: pytest.FixtureRequest) -> None:
    """Distribution 3 pages `tags/list` with `n` and `Link` (Debian's 2.8 does not page at all)."""
    registry: Registry = request.getfixturevalue(f"registry_{flavour}")
    repository = registry.fresh_repository()
    tags = [f"1.0.{patch}" for patch in range(23)]
    for tag in tags:
        registry.push(repository, tag, payload=b"same layer")
    client = client_for(registry, page_size=5)
    assert sorted(client.list_tags(parse_image(f"{registry.host}/{repository}"))) == sorted(tags)
    before = client.requests_made
    client.list_tags(parse_image(f"{registry.host}/{repository}"))
    assert client.requests_made - before == 5  # 23 tags, 5 a page, auth cached from the first listing


def test_moved_tag_changes_digest(registry: Registry) -> None:
    repository = registry.fresh_repository()
    first = registry.push(repository, "1.4.2", payload=b"first build")
    ref = parse_image(f"{registry.host}/{repository}:1.4.2")
    client = client_for(registry)
    assert client.resolve_digest(ref, "1.4.2") == first
    second = registry.push(repository, "1.4.2", payload=b"rebuilt under the same tag")
    assert second != first
    assert client.resolve_digest(ref, "1.4.2") == second


def test_missing_repository_and_tag_are_not_found(registry: Registry) -> None:
    repository = registry.fresh_repository()
    client = client_for(registry)
    with pytest.raises(NotFound, match="no such repository"):
        client.list_tags(parse_image(f"{registry.host}/{repository}"))
    registry.push(repository, "1.0.0")
    with pytest.raises(NotFound, match="no such tag or digest"):
        client.resolve_digest(parse_image(f"{registry.host}/{repository}"), "9.9.9")


def test_basic_auth_rejects_wrong_password_and_missing_login(registry_basic: Registry) -> None:
    repository = registry_basic.fresh_repository()
    registry_basic.push(repository, "1.0.0")
    ref = parse_image(f"{registry_basic.host}/{repository}")
    wrong = RegistryClient(config=DockerConfig.from_json(registry_basic.docker_config((READER[0], "nope"))))
    with pytest.raises(RegistryAuthError, match="refused"):
        wrong.list_tags(ref)
    with pytest.raises(RegistryAuthError, match="has none"):
        RegistryClient().list_tags(ref)


def test_token_auth_scopes_and_credentials(registry_token: Registry) -> None:
    assert registry_token.token_server is not None
    private = registry_token.fresh_repository("team")
    public = registry_token.fresh_repository("public")
    registry_token.push(private, "1.0.0")
    registry_token.push(public, "2.0.0")
    anonymous = RegistryClient()
    assert anonymous.list_tags(parse_image(f"{registry_token.host}/{public}")) == ["2.0.0"]
    with pytest.raises(RegistryAuthError, match="refused"):
        anonymous.list_tags(parse_image(f"{registry_token.host}/{private}"))
    wrong = RegistryClient(config=DockerConfig.from_json(registry_token.docker_config((PUSHER[0], "nope"))))
    with pytest.raises(RegistryAuthError, match="token service refused"):
        wrong.list_tags(parse_image(f"{registry_token.host}/{private}"))


def test_token_is_cached_per_repository(registry_token: Registry) -> None:
    assert registry_token.token_server is not None
    repository = registry_token.fresh_repository()
    registry_token.push(repository, "1.0.0")
    client = client_for(registry_token)
    ref = parse_image(f"{registry_token.host}/{repository}")
    issued = registry_token.token_server.issued
    client.list_tags(ref)
    client.resolve_digest(ref, "1.0.0")
    client.list_tags(ref)
    assert registry_token.token_server.issued - issued == 1


def test_identity_token_uses_the_refresh_grant(registry_token: Registry) -> None:
    """ACR's `az acr login --expose-token` style: an identity token, exchanged by OAuth2."""
    repository = registry_token.fresh_repository()
    digest = registry_token.push(repository, "3.1.0")
    config = DockerConfig.from_json(registry_token.docker_config(None, identity_token=IDENTITY_TOKEN))
    client = RegistryClient(config=config)
    ref = parse_image(f"{registry_token.host}/{repository}")
    assert client.list_tags(ref) == ["3.1.0"]
    assert client.resolve_digest(ref, "3.1.0") == digest
    bad = DockerConfig.from_json(registry_token.docker_config(None, identity_token="stale"))
    with pytest.raises(RegistryAuthError):
        RegistryClient(config=bad).list_tags(ref)


def test_registry_down_is_unavailable() -> None:
    ref = parse_image(f"127.0.0.1:{free_port()}/app/down")
    with pytest.raises(RegistryUnavailable, match="cannot reach"):
        RegistryClient(timeout=2).list_tags(ref)


def test_registry_too_slow_times_out(silent_server: str) -> None:
    client = RegistryClient(timeout=0.5)
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match=r"no answer within 0\.5s"):
        client.list_tags(parse_image(f"{silent_server}/app/slow"))
    assert time.monotonic() - started < 5


def test_registry_counts_one_listing_request(registry_anonymous: Registry) -> None:
    """The registry's own access log agrees with the client's request counter."""
    repository = registry_anonymous.fresh_repository()
    registry_anonymous.push(repository, "1.0.0")
    client = RegistryClient()
    client.list_tags(parse_image(f"{registry_anonymous.host}/{repository}"))
    deadline = time.monotonic() + 5
    while registry_anonymous.request_count(f"/v2/{repository}/tags/list") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert registry_anonymous.request_count(f"/v2/{repository}/tags/list") == 1
    assert client.requests_made == 1
