"""The registry client against a registry that tries to turn the bump against its own credentials.

Design notes: a tenant names the registry in its ModelApp and may run it, while the bump holds
the platform's Docker config. The hostile registry here (`tests/fixtures/hostile_registry.py`, a
scripted server on 127.0.0.1: no real registry misbehaves on demand) asks for the platform's
login first, so the client has credentials in hand before the hostile move, and a bystander on
127.0.0.2 (another host) records every `Authorization` it receives. Each test asserts the
refusal's class and message (registry, what it did, what bump does) and, where credentials are
at stake, what the bystander saw. Good paths against real registries are in test_registry.py.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator

import pytest

from modelapp_operator.registry import (
    SKIPPED,
    DockerConfig,
    RegistryClient,
    RegistryError,
    RegistryRefused,
    RegistryUnavailable,
    parse_image,
)
from tests.fixtures.hostile_registry import (
    BASIC,
    LOGIN,
    Exchange,
    HostileServer,
    Script,
    hostile_server,
    trickling_tls_server,
)

pytestmark = pytest.mark.integration

REPOSITORY = "team/app"
TAGS = f"/v2/{REPOSITORY}/tags/list"
MANIFEST = f"/v2/{REPOSITORY}/manifests/"
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with hostile_server("127.0.0.1") as server:
        yield server


@pytest.fixture
def bystander() -> Iterator[HostileServer]:
    """Another host (127.0.0.2) that answers like a registry and records what reaches it."""
    with hostile_server("127.0.0.2") as server:
        server.route("/v2/", lambda ex: ex.answer(200, {"name": REPOSITORY, "tags": ["6.6.6"]}))
        yield server


def client_for(hostile: HostileServer, **kwargs: object) -> RegistryClient:
    """The bump's client with the platform's login for the hostile registry; 127.0.0.2 is reachable
    over plain HTTP (as an insecure registry would be) unless a test says otherwise."""
    config = DockerConfig.from_json(json.dumps({"auths": {hostile.host: {"username": LOGIN[0], "password": LOGIN[1]}}}))
    options: dict[str, object] = {"insecure": ["127.0.0.2"], "timeout": 3.0, **kwargs}
    return RegistryClient(config=config, **options)  # type: ignore[arg-type]


def after_login(script: Script) -> Script:
    """Ask for the platform's login first, then run `script`: the client holds credentials when it acts."""

    def run(exchange: Exchange) -> None:
        if exchange.authorized:
            script(exchange)
        else:
            exchange.ask_for_login()

    return run


# --- credentials go to the registry's host only -----------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_cross_host_redirect_drops_authorization(hostile: HostileServer, bystander: HostileServer, status: int) -> None:
    hostile.route(TAGS, after_login(lambda ex: ex.answer(status, headers={"Location": f"{bystander.url}{TAGS}"})))
    client = client_for(hostile)
    assert client.list_tags(parse_image(f"{hostile.host}/{REPOSITORY}")) == ["6.6.6"]
    assert BASIC in hostile.authorizations()
    assert len(bystander.requests_to(TAGS)) == 1
    assert bystander.authorizations() == []


def test_cross_host_redirect_of_a_manifest_drops_authorization(
    hostile: HostileServer, bystander: HostileServer
) -> None:
    bystander.routes.insert(0, (MANIFEST, lambda ex: ex.answer(200, headers={"Docker-Content-Digest": DIGEST})))
    hostile.route(MANIFEST, after_login(lambda ex: ex.answer(307, headers={"Location": f"{bystander.url}{ex.path}"})))
    client = client_for(hostile)
    assert client.resolve_digest(parse_image(f"{hostile.host}/{REPOSITORY}"), "1.0.0") == DIGEST
    assert bystander.requests_to(MANIFEST) and bystander.authorizations() == []


def test_same_host_redirect_keeps_authorization(hostile: HostileServer) -> None:
    moved = f"/v2/{REPOSITORY}/moved"
    hostile.route(TAGS, after_login(lambda ex: ex.answer(307, headers={"Location": moved})))
    hostile.route(moved, after_login(lambda ex: ex.answer(200, {"tags": ["1.0.0"]})))
    assert client_for(hostile).list_tags(parse_image(f"{hostile.host}/{REPOSITORY}")) == ["1.0.0"]
    assert [seen.authorization for seen in hostile.requests_to(moved)] == [BASIC]


def test_login_asked_for_after_a_cross_host_redirect_goes_nowhere(
    hostile: HostileServer, bystander: HostileServer
) -> None:
    """The other host asks for a login: the client retries at the registry, never at the other host."""
    bystander.routes.insert(0, (TAGS, lambda ex: ex.ask_for_login()))
    hostile.route(TAGS, lambda ex: ex.answer(307, headers={"Location": f"{bystander.url}{TAGS}"}))
    with pytest.raises(RegistryError, match="refused"):
        client_for(hostile).list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))
    assert len(bystander.requests_to(TAGS)) == 2
    assert bystander.authorizations() == []


def test_redirect_to_plain_http_elsewhere_is_refused(hostile: HostileServer, bystander: HostileServer) -> None:
    hostile.route(TAGS, after_login(lambda ex: ex.answer(302, headers={"Location": f"{bystander.url}{TAGS}"})))
    client = client_for(hostile, insecure=[])
    with pytest.raises(RegistryRefused, match=r"redirects to plain HTTP on 127\.0\.0\.2") as caught:
        client.list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))
    assert hostile.host in str(caught.value) and SKIPPED in str(caught.value)
    assert bystander.seen == []


def test_redirect_loop_is_bounded(hostile: HostileServer) -> None:
    hostile.route(TAGS, lambda ex: ex.answer(302, headers={"Location": ex.path}))
    with pytest.raises(RegistryRefused, match="more than 3 redirects"):
        client_for(hostile, max_redirects=3).list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))
    assert len(hostile.requests_to(TAGS)) == 4


def test_next_page_on_another_host_is_refused(hostile: HostileServer, bystander: HostileServer) -> None:
    link = f'<{bystander.url}{TAGS}?last=1.0.0&n=1000>; rel="next"'
    hostile.route(TAGS, after_login(lambda ex: ex.answer(200, {"tags": ["1.0.0"]}, {"Link": link})))
    with pytest.raises(RegistryRefused, match=r"next-page link points to another host \(127\.0\.0\.2:") as caught:
        client_for(hostile).list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))
    assert str(caught.value).startswith(f"{hostile.host}/{REPOSITORY}: ")
    assert bystander.seen == []


def test_next_page_of_another_repository_is_refused(hostile: HostileServer) -> None:
    """Same host, another tenant's repository: its tags must not be offered as this app's."""
    link = '</v2/other-team/app/tags/list?n=1000>; rel="next"'
    hostile.route(TAGS, after_login(lambda ex: ex.answer(200, {"tags": ["1.0.0"]}, {"Link": link})))
    with pytest.raises(RegistryRefused, match="another listing"):
        client_for(hostile).list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))
    assert hostile.requests_to("/v2/other-team/") == []


def bearer(realm: str) -> Script:
    """A registry that wants a token from `realm` and accepts the one the test realm issues."""

    def run(exchange: Exchange) -> None:
        if exchange.headers.get("Authorization") == "Bearer issued-by-realm":
            exchange.answer(200, {"tags": ["2.0.0"]})
        else:
            challenge = f'Bearer realm="{realm}",service="hostile",scope="repository:other-team/app:pull"'
            exchange.answer(401, {"errors": [{"code": "UNAUTHORIZED"}]}, {"WWW-Authenticate": challenge})

    return run


def test_token_realm_on_another_host_gets_nothing(hostile: HostileServer, bystander: HostileServer) -> None:
    hostile.route(TAGS, bearer(f"{bystander.url}/token"))
    with pytest.raises(
        RegistryRefused, match=r"token realm is on 127\.0\.0\.2, which is not this registry's host"
    ) as e:
        client_for(hostile).list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))
    assert "trusted_realms" in str(e.value) and SKIPPED in str(e.value)
    assert bystander.seen == []


def test_trusted_realm_gets_the_login_for_this_repository_only(
    hostile: HostileServer, bystander: HostileServer
) -> None:
    """The positive side of the rule: a realm trusted for this registry gets the login, for our scope
    (not the `scope` the challenge asked for), and the token it issues goes to the registry."""
    bystander.routes.insert(0, ("/token", lambda ex: ex.answer(200, {"token": "issued-by-realm", "expires_in": 60})))
    hostile.route(TAGS, bearer(f"{bystander.url}/token"))
    client = client_for(hostile, trusted_realms={hostile.host: ["127.0.0.2"]})
    assert client.list_tags(parse_image(f"{hostile.host}/{REPOSITORY}")) == ["2.0.0"]
    (fetch,) = bystander.requests_to("/token")
    assert fetch.authorization == BASIC
    assert "scope=repository%3Ateam%2Fapp%3Apull" in fetch.path
    assert "Bearer issued-by-realm" in hostile.authorizations()


def test_token_realm_over_plain_http_is_refused(hostile: HostileServer, bystander: HostileServer) -> None:
    """Trusted, but plain HTTP to a host that is neither loopback nor insecure: no login in clear."""
    hostile.route(TAGS, bearer(f"{bystander.url}/token"))
    client = client_for(hostile, insecure=[], trusted_realms={hostile.host: ["127.0.0.2"]})
    with pytest.raises(RegistryRefused, match="is plain HTTP, so credentials would cross the network in clear"):
        client.list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))
    assert bystander.seen == []


def test_cookies_are_neither_kept_nor_sent(hostile: HostileServer, bystander: HostileServer) -> None:
    """A cookie set for a parent domain would reach other registries under it; the bump keeps none."""
    cookie = {"Set-Cookie": "sid=tenant-session; Path=/", "Location": f"{bystander.url}{TAGS}"}
    hostile.route(TAGS, lambda ex: ex.answer(307, headers=cookie))
    hostile.route(MANIFEST, lambda ex: ex.answer(200, headers={"Docker-Content-Digest": DIGEST}))
    client = client_for(hostile)
    client.list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))
    client.resolve_digest(parse_image(f"{hostile.host}/{REPOSITORY}"), "1.0.0")
    assert [seen.cookie for seen in hostile.seen + bystander.seen] == [None, None, None]


def test_token_with_control_characters_is_refused(hostile: HostileServer) -> None:
    hostile.route("/token", lambda ex: ex.answer(200, {"token": "abc\r\nX-Injected: 1"}))
    hostile.route(TAGS, bearer(f"{hostile.url}/token"))
    with pytest.raises(RegistryRefused, match="token with spaces or control characters"):
        client_for(hostile).list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))


# --- nothing a registry sends can hold the bump or fill its memory ------------------------------


def test_endless_body_is_cut_at_the_cap(hostile: HostileServer) -> None:
    hostile.route(TAGS, lambda ex: ex.stream(b'{"tags": [' + b'"1.0.0", ' * 4096))
    started = time.monotonic()
    with pytest.raises(RegistryRefused, match=r"GET /v2/team/app/tags/list sent more than 262144 bytes"):
        client_for(hostile, max_body=256 * 1024).list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))
    assert time.monotonic() - started < 3


def test_endless_chunked_body_is_cut_at_the_cap(hostile: HostileServer) -> None:
    hostile.route(TAGS, lambda ex: ex.stream_chunked(b"0" * 4096))
    with pytest.raises(RegistryRefused, match=r"sent more than 262144 bytes"):
        client_for(hostile, max_body=256 * 1024).list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))


def test_announced_huge_body_is_refused_unread(hostile: HostileServer) -> None:
    hostile.route(TAGS, lambda ex: ex.stream(b"x" * 65536, headers={"Content-Length": str(10**12)}))
    with pytest.raises(RegistryRefused, match=r"announced 1000000000000 bytes, over the \d+-byte cap"):
        client_for(hostile).list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))


def test_compressed_body_is_refused(hostile: HostileServer) -> None:
    """A small gzip body can unpack to gigabytes; we ask for `identity` and take nothing else."""
    hostile.route(TAGS, lambda ex: ex.answer(200, b"\x1f\x8b\x08\x00", {"Content-Encoding": "gzip"}))
    with pytest.raises(RegistryRefused, match="answered with a gzip body it was not asked for"):
        client_for(hostile).list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))


def test_trickled_body_meets_the_total_deadline(hostile: HostileServer) -> None:
    """One byte every 0.2 s never trips a 1.5 s socket timeout; the total deadline ends it."""
    hostile.route(TAGS, lambda ex: ex.stream(b" ", every=0.2))
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match=r"no answer within 1\.5s \(the request limit\)"):
        client_for(hostile, timeout=1.5).list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))
    assert 1.4 < time.monotonic() - started < 4


def test_trickled_headers_meet_the_total_deadline(hostile: HostileServer) -> None:
    def headers_forever(exchange: Exchange) -> None:
        exchange.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        exchange.trickle_raw(b"a", every=0.2)

    hostile.route(TAGS, headers_forever)
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match=r"no answer within 1\.5s"):
        client_for(hostile, timeout=1.5).list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))
    assert time.monotonic() - started < 4


def test_trickled_tls_handshake_meets_the_total_deadline(hostile: HostileServer) -> None:
    """Reached over HTTPS (a redirect), a host that trickles its handshake is cut off at the deadline too."""
    with trickling_tls_server(every=0.2) as tls_host:
        hostile.route(TAGS, lambda ex: ex.answer(307, headers={"Location": f"https://{tls_host}{TAGS}"}))
        started = time.monotonic()
        with pytest.raises(RegistryUnavailable, match=r"no answer within 1\.5s"):
            client_for(hostile, timeout=1.5).list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))
        assert time.monotonic() - started < 4


def test_slow_pages_meet_the_listing_deadline(hostile: HostileServer) -> None:
    """Each page inside the request limit, the whole listing not: `call_timeout` ends it."""

    def slow_page(exchange: Exchange) -> None:
        time.sleep(0.3)
        page = exchange.path.count("x") + 1
        link = f'<{TAGS}?last={"x" * page}>; rel="next"'
        exchange.answer(200, {"tags": [f"1.0.{page}"]}, {"Link": link})

    hostile.route(TAGS, slow_page)
    hostile.route(MANIFEST, lambda ex: ex.answer(200, headers={"Docker-Content-Digest": DIGEST}))
    client = client_for(hostile, timeout=1.0, call_timeout=1.2)
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match=r"no answer within 1\.2s \(the listing limit\)"):
        client.list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))
    assert time.monotonic() - started < 3
    # a long listing is that repository's problem: the registry is not marked down for the run
    assert client.resolve_digest(parse_image(f"{hostile.host}/{REPOSITORY}"), "1.0.0") == DIGEST


def test_a_registry_that_missed_a_deadline_costs_one_timeout_per_run(hostile: HostileServer) -> None:
    """Its other repositories fail at once, without a request, and without naming the first one."""
    hostile.route("/v2/", lambda ex: ex.stream(b" ", every=0.2))
    client = client_for(hostile, timeout=1.0)
    with pytest.raises(RegistryUnavailable, match=r"no answer within 1s"):
        client.list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))
    asked = len(hostile.seen)
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match=r"not asked, 127\.0\.0\.1:\d+ already failed this run") as e:
        client.resolve_digest(parse_image(f"{hostile.host}/other-team/app"), "1.0.0")
    assert time.monotonic() - started < 0.5 and len(hostile.seen) == asked
    assert REPOSITORY not in str(e.value).partition("already failed")[2]


# --- a listing is bounded and holds only tags the CRD accepts ---------------------------------


def test_pages_without_end_stop_at_max_pages(hostile: HostileServer) -> None:
    def next_page(exchange: Exchange) -> None:
        page = len(hostile.requests_to(TAGS))
        exchange.answer(200, {"tags": [f"1.0.{page}"]}, {"Link": f'<{TAGS}?n=1&last=1.0.{page}>; rel="next"'})

    hostile.route(TAGS, after_login(next_page))
    with pytest.raises(RegistryRefused, match="the tag list runs past 20 pages") as caught:
        client_for(hostile, max_pages=20).list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))
    assert "at most that many pages" in str(caught.value)
    assert len([seen for seen in hostile.requests_to(TAGS) if seen.authorization]) == 20


def test_page_link_back_to_itself_is_refused(hostile: HostileServer) -> None:
    hostile.route(TAGS, lambda ex: ex.answer(200, {"tags": ["1.0.0"]}, {"Link": f'<{ex.path}>; rel="next"'}))
    with pytest.raises(RegistryRefused, match="leads back to a page already read"):
        client_for(hostile).list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))
    assert len(hostile.requests_to(TAGS)) == 1


def test_huge_tag_list_is_refused(hostile: HostileServer) -> None:
    hostile.route(TAGS, lambda ex: ex.answer(200, {"tags": [f"1.0.{n}" for n in range(1001)]}))
    with pytest.raises(RegistryRefused, match="holds more than 1000 tags"):
        client_for(hostile, max_tags=1000).list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))


def test_tags_the_crd_would_refuse_fail_the_listing(hostile: HostileServer) -> None:
    bad = ["1.0.0", "1.0.1\nlevel=error msg=forged", "../../v2/other/manifests/x", "-rc", "x" * 129]
    hostile.route(TAGS, lambda ex: ex.answer(200, {"tags": bad}))
    with pytest.raises(RegistryRefused, match="holds 4 name") as caught:
        client_for(hostile).list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))
    assert "\n" not in str(caught.value)


def test_registry_text_reaches_messages_only_as_a_short_repr(hostile: HostileServer) -> None:
    """Error codes that are not Distribution's shape are dropped; no control character gets through."""
    forged = {"errors": [{"code": "DENIED\nlevel=info msg=bump-ok"}]}
    hostile.route(TAGS, lambda ex: ex.answer(400, forged))
    hostile.route(MANIFEST, lambda ex: ex.answer(200, headers={"Docker-Content-Digest": "sha256:\x1b[2J" + "a" * 300}))
    with pytest.raises(RegistryError, match=r"registry answered 400$") as caught:
        client_for(hostile).list_tags(parse_image(f"{hostile.host}/{REPOSITORY}"))
    assert "bump-ok" not in str(caught.value)
    with pytest.raises(RegistryError, match="malformed digest") as caught:
        client_for(hostile).resolve_digest(parse_image(f"{hostile.host}/{REPOSITORY}"), "1.0.0")
    assert "\x1b" not in str(caught.value) and len(str(caught.value)) < 300


def test_digest_lookup_refuses_a_tag_the_crd_would_refuse(hostile: HostileServer) -> None:
    with pytest.raises(RegistryError, match="is not a valid tag"):
        client_for(hostile).resolve_digest(parse_image(f"{hostile.host}/{REPOSITORY}"), "../../other/manifests/x")
    assert hostile.seen == []


# --- an image's labels (signatures, issue 14.2) ---------------------------------------------------


def _digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _image(config: bytes, *, declared: int | None = None) -> tuple[bytes, str]:
    descriptor = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                  "size": len(config) if declared is None else declared}  # fmt: skip
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": descriptor, "layers": []}).encode()  # fmt: skip
    return manifest, _digest(manifest)


def test_labels_are_read_from_the_config_the_digest_names(hostile: HostileServer) -> None:
    config = json.dumps({"config": {"Labels": {"io.modelapp.signatures": "[]", "n": 3}}}).encode()
    manifest, digest = _image(config)
    hostile.route(MANIFEST, after_login(lambda ex: ex.answer(200, manifest)))
    hostile.route(f"/v2/{REPOSITORY}/blobs/", after_login(lambda ex: ex.answer(200, config)))
    labels = client_for(hostile).image_labels(parse_image(f"{hostile.host}/{REPOSITORY}"), digest)
    assert labels == {"io.modelapp.signatures": "[]"}  # string values only


def test_a_manifest_that_is_not_the_digests_is_refused(hostile: HostileServer) -> None:
    manifest, _ = _image(b"{}")
    hostile.route(MANIFEST, after_login(lambda ex: ex.answer(200, manifest)))
    with pytest.raises(RegistryRefused, match=r"does not hash to sha256:abababababab") as caught:
        client_for(hostile).image_labels(parse_image(f"{hostile.host}/{REPOSITORY}"), DIGEST)
    assert SKIPPED in str(caught.value)


def test_a_config_declared_too_big_is_never_fetched(hostile: HostileServer) -> None:
    manifest, digest = _image(b"{}", declared=64 * 1024 * 1024)
    hostile.route(MANIFEST, after_login(lambda ex: ex.answer(200, manifest)))
    hostile.route(f"/v2/{REPOSITORY}/blobs/", after_login(lambda ex: ex.stream(b"x" * 65536)))
    with pytest.raises(RegistryRefused, match="over the 1048576-byte cap for reading labels"):
        client_for(hostile).image_labels(parse_image(f"{hostile.host}/{REPOSITORY}"), digest)
    assert hostile.requests_to(f"/v2/{REPOSITORY}/blobs/") == []


def test_an_endless_config_ends_at_the_body_cap(hostile: HostileServer) -> None:
    config = b"{}"
    manifest, digest = _image(config)
    hostile.route(MANIFEST, after_login(lambda ex: ex.answer(200, manifest)))
    hostile.route(f"/v2/{REPOSITORY}/blobs/", after_login(lambda ex: ex.stream(b"x" * 65536)))
    started = time.monotonic()
    with pytest.raises(RegistryRefused, match="sent more than 2097152 bytes"):
        client_for(hostile, max_body=2 * 1024 * 1024).image_labels(parse_image(f"{hostile.host}/{REPOSITORY}"),
                                                                   digest)  # fmt: skip
    assert time.monotonic() - started < 10


def test_a_trickled_config_ends_at_the_deadline(hostile: HostileServer) -> None:
    config = b"{}"
    manifest, digest = _image(config)
    hostile.route(MANIFEST, after_login(lambda ex: ex.answer(200, manifest)))
    hostile.route(f"/v2/{REPOSITORY}/blobs/", after_login(lambda ex: ex.stream(b" ", every=0.5)))
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match="no answer within"):
        client_for(hostile, timeout=2.0).image_labels(parse_image(f"{hostile.host}/{REPOSITORY}"), digest)
    assert time.monotonic() - started < 6
