"""The registry client's trust rules, as pure functions: where a token realm may be, where a
next-page link and a redirect may lead, which tags a listing may hold, what text reaches a message.

Design notes: these are the decisions that keep a hostile registry from turning the bump's
credentials against it; tables cover the registries a fleet meets (Docker Hub, ACR, GHCR, GitLab,
Distribution with its own token server) and the attacks, and a hypothesis property pins the tag
grammar to the CRD's image pattern. The same rules are exercised over real sockets in
tests/integration/test_registry_hostile.py.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from modelapp_operator.registry import (
    LOOPBACK,
    SKIPPED,
    TAG_PATTERN,
    DockerConfig,
    RegistryClient,
    RegistryError,
    RegistryRefused,
    _Answer,
    _clean,
    _next_page,
    _origin,
    check_realm,
    parse_image,
    parse_trusted_realms,
)
from modelapp_operator.spec import IMAGE_PATTERN

GITLAB_TRUST = {"registry.gitlab.com": frozenset({"gitlab.com"})}


@pytest.mark.parametrize(
    ("image", "realm", "trusted"),
    [
        ("python:3.11", "https://auth.docker.io/token", {}),  # Docker Hub: the built-in companion
        ("docker.io/library/python", "https://auth.docker.io/token", {}),
        ("myacr.azurecr.io/app", "https://myacr.azurecr.io/oauth2/token", {}),  # ACR: same host
        ("ghcr.io/org/app", "https://ghcr.io/token", {}),
        ("ghcr.io/org/app", "https://GHCR.io:443/token", {}),  # host names compare without case
        ("registry.gitlab.com/group/app", "https://gitlab.com/jwt/auth", GITLAB_TRUST),
        ("127.0.0.1:5000/app", "http://127.0.0.1:5001/token", {}),  # Distribution's token server beside it
        ("[::1]:5000/app", "http://[::1]:5001/token", {}),
    ],
)
def test_realms_that_get_credentials(image: str, realm: str, trusted: dict[str, frozenset[str]]) -> None:
    assert check_realm(realm, parse_image(image), trusted=trusted) == realm


@pytest.mark.parametrize(
    ("image", "realm", "trusted", "why"),
    [
        ("evil.example.com/app", "https://auth.docker.io/token", {}, "not this registry's host"),
        ("python:3.11", "https://auth.docker.io.evil.example.com/token", {}, "not this registry's host"),
        ("registry.gitlab.com/group/app", "https://gitlab.com/jwt/auth", {}, "trust it for registry.gitlab.com"),
        ("myacr.azurecr.io/app", "https://collector.example.com/token", {}, "not this registry's host"),
        ("python:3.11", "http://auth.docker.io/token", {}, "plain HTTP"),
        ("registry.gitlab.com/group/app", "http://gitlab.com/jwt/auth", GITLAB_TRUST, "plain HTTP"),
        ("myacr.azurecr.io/app", "ftp://myacr.azurecr.io/token", {}, "not an http"),
        ("myacr.azurecr.io/app", "https://user@myacr.azurecr.io/token", {}, "not an http"),
        ("myacr.azurecr.io/app", "https://myacr.azurecr.io:99999999/token", {}, "not an http"),
        ("myacr.azurecr.io/app", "/token", {}, "not an http"),
        ("127.0.0.1:5000/app", "http://127.0.0.2:5001/token", {}, "plain HTTP"),
    ],
)
def test_realms_that_are_refused(image: str, realm: str, trusted: dict[str, frozenset[str]], why: str) -> None:
    ref = parse_image(image)
    with pytest.raises(RegistryRefused, match=re.escape(why)) as caught:
        check_realm(realm, ref, trusted=trusted)
    assert str(caught.value).startswith(f"{ref.key}: ") and SKIPPED in str(caught.value)


def test_an_insecure_realm_host_may_be_plain_http_when_trusted() -> None:
    ref = parse_image("registry.internal:5000/app")
    insecure = LOOPBACK | {"registry.internal:5000", "tokens.internal"}
    trusted = {"registry.internal:5000": frozenset({"tokens.internal"})}
    assert check_realm("http://tokens.internal/t", ref, trusted=trusted, insecure=insecure)
    with pytest.raises(RegistryRefused, match="not this registry's host"):
        check_realm("http://tokens.internal/t", ref, trusted={}, insecure=insecure)


def test_trusted_realms_are_keyed_as_image_references_write_the_registry() -> None:
    """`docker.io` in trusted_realms means Docker Hub's API host, as the docker config does."""
    client = RegistryClient(trusted_realms={"docker.io": ["auth.example.com"]})
    assert client._trusted == {"registry-1.docker.io": frozenset({"auth.example.com"})}


def test_trusted_realms_from_the_command_line() -> None:
    items = ["registry.gitlab.com=gitlab.com", "registry.gitlab.com=Auth.GitLab.com", "[::1]:5000=[::1]"]
    assert parse_trusted_realms(items) == {
        "registry.gitlab.com": frozenset({"gitlab.com", "auth.gitlab.com"}),
        "[::1]:5000": frozenset({"::1"}),
    }


@pytest.mark.parametrize(
    "item", ["gitlab.com", "=gitlab.com", "registry.gitlab.com=", "r.io=https://x.io", "r.io=x.io:443"]
)
def test_trusted_realms_that_are_not_registry_equals_host(item: str) -> None:
    with pytest.raises(ValueError, match="is not REGISTRY=HOST"):
        parse_trusted_realms([item])


def answer(url: str, link: str) -> _Answer:
    return _Answer("GET", url, 200, CaseInsensitiveDict({"Link": link}), b"{}")


BASE = "https://registry.example.com"
PATH = "/v2/team/app/tags/list"


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ('</v2/team/app/tags/list?last=1.0.9&n=5>; rel="next"', f"{BASE}{PATH}?last=1.0.9&n=5"),
        (f"<{BASE}:443{PATH}?last=a>; rel=next", f"{BASE}:443{PATH}?last=a"),
        ("", None),
        ('</v2/team/app/tags/list?last=a>; rel="prev"', None),
    ],
)
def test_next_page_on_the_registry(link: str, expected: str | None) -> None:
    ref = parse_image("registry.example.com/team/app")
    assert _next_page(answer(f"{BASE}{PATH}?n=5", link), ref, BASE, PATH) == expected


@pytest.mark.parametrize(
    ("link", "why"),
    [
        ('<https://collector.example.com/v2/team/app/tags/list?last=a>; rel="next"', "another host"),
        ('<http://registry.example.com/v2/team/app/tags/list?last=a>; rel="next"', "another host"),
        ('<https://registry.example.com:8443/v2/team/app/tags/list>; rel="next"', "another host"),
        ('<//collector.example.com/v2/team/app/tags/list>; rel="next"', "another host"),
        ('</v2/other/app/tags/list?n=5>; rel="next"', "another listing"),
        ('</v2/team/app/manifests/latest>; rel="next"', "another listing"),
        ('<https://registry.example.com:x/v2/>; rel="next"', "port that is not a number"),
    ],
)
def test_next_page_elsewhere_is_refused(link: str, why: str) -> None:
    ref = parse_image("registry.example.com/team/app")
    with pytest.raises(RegistryRefused, match=why):
        _next_page(answer(f"{BASE}{PATH}?n=5", link), ref, BASE, PATH)


@pytest.mark.parametrize(
    ("location", "allowed"),
    [
        ("https://cdn.example.net/blob", True),  # another host over HTTPS: followed, without Authorization
        ("/v2/team/app/elsewhere", True),
        ("http://registry.example.com/v2/", False),  # a downgrade to plain HTTP
        ("http://169.254.169.254/latest/meta-data/", False),
        ("file:///etc/passwd", False),
        ("http://localhost:5000/v2/", True),  # loopback is read over plain HTTP (as Docker does)
    ],
)
def test_redirect_targets(location: str, allowed: bool) -> None:
    client = RegistryClient()
    ref = parse_image("registry.example.com/team/app")
    if allowed:
        assert client._redirect_target(answer(f"{BASE}{PATH}", ""), location, ref).endswith(location.lstrip("/"))
    else:
        with pytest.raises(RegistryRefused, match="redirects to"):
            client._redirect_target(answer(f"{BASE}{PATH}", ""), location, ref)


def test_origins_compare_with_default_ports_and_without_case() -> None:
    ref = parse_image("registry.example.com/app")
    assert _origin("https://Registry.Example.com/v2/", ref) == _origin("https://registry.example.com:443/x", ref)
    assert _origin("http://registry.example.com/v2/", ref) != _origin("https://registry.example.com/v2/", ref)
    assert _origin("https://registry.example.com:5000/", ref) != _origin("https://registry.example.com/", ref)


@given(st.text(alphabet=st.characters(codec="ascii"), max_size=140).filter(lambda t: not set(t) & set("/@")))
def test_tag_pattern_agrees_with_the_crd(tag: str) -> None:
    """A tag a listing may hold is exactly one the CRD's image pattern accepts after `name:`."""
    assert bool(TAG_PATTERN.fullmatch(tag)) == bool(re.fullmatch(IMAGE_PATTERN, f"app:{tag}"))


@pytest.mark.parametrize("tag", ["1.4.2", "latest", "_x", "v1.0.0-rc.1", "A" * 128])
def test_tags_the_crd_accepts(tag: str) -> None:
    assert TAG_PATTERN.fullmatch(tag) and re.fullmatch(IMAGE_PATTERN, f"app:{tag}")


@pytest.mark.parametrize("tag", ["", "-rc", ".hidden", "1.0\n", "a b", "A" * 129, "1.0;rm"])
def test_tags_the_crd_refuses(tag: str) -> None:
    assert not TAG_PATTERN.fullmatch(tag)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("NAME_UNKNOWN", "NAME_UNKNOWN"),
        ("a\nlevel=error", "'a\\nlevel=error'"),
        ("\x1b[2J", "'\\x1b[2J'"),
        ("x" * 200, repr("x" * 120)),
    ],
)
def test_registry_text_is_shown_safely(text: str, shown: str) -> None:
    assert _clean(text) == shown


@pytest.mark.parametrize("text", ["{", "[" * 5000 + "]" * 5000, '{"auths": ' + "[" * 5000 + "]" * 5000 + "}"])
def test_a_pull_secret_that_is_not_json_is_a_registry_error(text: str) -> None:
    """A tenant's `.dockerconfigjson`: malformed, or nested deeper than Python decodes, says so in one line."""
    with pytest.raises(RegistryError, match="docker config is not valid JSON"):
        DockerConfig.from_json(text)
