"""An OCI Distribution API client: list tags, resolve a tag to its digest, read an image's labels.

Why our own: bump needs three calls (`GET /v2/<repo>/tags/list`, `HEAD /v2/<repo>/manifests/<tag>`, and
the image config's labels) with the auth every registry in use speaks, and nothing more. The contract
with a registry:

- Tags: `GET /v2/<repo>/tags/list?n=<page>`, following `Link: <...>; rel="next"` until none is
  left (Distribution spec, "Listing Tags"). One listing per repository per bump.
- Digests: `HEAD /v2/<repo>/manifests/<tag>` with Accept for OCI and Docker manifests and
  indexes; the digest is the `Docker-Content-Digest` header (else sha256 of a `GET` body).
- Labels: `GET /v2/<repo>/manifests/<digest>` (an index: the linux/amd64 entry, else the first
  image), then `GET /v2/<repo>/blobs/<config digest>`; each body must hash to the digest it was
  asked by, the config is at most `MAX_CONFIG_BYTES`, and only `config.Labels` is read
  (string values; an image without labels has none).
- Auth: anonymous first; on `401` the `WWW-Authenticate` challenge says how. `Basic` sends the
  Docker config credentials. `Bearer realm=..,service=..` (Docker Hub, ACR, GHCR, Distribution's
  token auth) fetches a token for `repository:<repo>:pull` from the realm — with basic
  credentials, or for an `identitytoken` (ACR's refresh token) by the OAuth2 `refresh_token`
  grant — caches it per scope until it expires, and retries once.
- Faults become `RegistryError` subclasses with one-line messages: unreachable or slow
  (`RegistryUnavailable`), refused (`RegistryAuthError`), missing (`NotFound`), misbehaving
  (`RegistryRefused`). Nothing is retried beyond the one auth round trip: bump reports the app's
  row as failed and carries on with the others.

The registry is not trusted. A tenant names it in a ModelApp and may run it, while the bump
holds the platform's credentials and serves every tenant in turn. So (docs/registry-trust.md):

- Credentials go only to the host they are configured for. `Authorization` is dropped on a
  redirect to another origin (scheme, host, port); a redirect from HTTPS to plain HTTP is
  refused; a `Link` to another origin or another repository is refused.
- A token realm gets credentials (and any request at all) only over HTTPS, or plain HTTP to a
  loopback or `insecure` host, and only on the registry's own host name (any port), on a
  built-in companion host (`KNOWN_REALMS`: Docker Hub's `auth.docker.io`), or on a host the
  platform trusts for that registry (`trusted_realms`, e.g. GitLab's `gitlab.com` for
  `registry.gitlab.com`). The token goes back to the registry host only.
- Every exchange has a total deadline (`timeout`, connect to last byte, redirects included), not
  just a socket timeout, which a registry trickling one byte at a time would reset for ever;
  every call (a whole listing, a digest with its auth round trip) has another (`call_timeout`).
  Every body is read up to `max_body` bytes; compressed bodies are refused (we ask for none).
- A listing stops with an error past `max_pages` pages or `max_tags` tags, and a tag the CRD
  would refuse (`TAG_PATTERN`) fails the listing rather than reaching a spec patch.
- Text a registry sends (error codes, URLs, headers) reaches a message only as a short repr.

Plain HTTP is used only for loopback registries and ones named in `insecure` (as Docker does).
Host name resolution is left to the system resolver and its own timeouts.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import http.cookiejar
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = frozenset({MANIFEST_TYPES[0], MANIFEST_TYPES[2]})
#: The most an image config may weigh for its labels to be read (configs are a few KiB; history makes
#: some tens of KiB).
MAX_CONFIG_BYTES = 1024 * 1024
LOOPBACK = frozenset({"localhost", "127.0.0.1", "[::1]"})
DIGEST_PATTERN = re.compile(r"^sha256:[a-f0-9]{64}$")
#: A tag as the CRD's image pattern accepts it (spec.IMAGE_PATTERN's tag part; a unit test compares).
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
#: Token services that live on another host than their registry's API, by registry API host.
KNOWN_REALMS: Mapping[str, frozenset[str]] = {DOCKER_HUB_API: frozenset({"auth.docker.io"})}
_HOST_PATTERN = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")
_ERROR_CODE = re.compile(r"^[A-Z][A-Z_]{0,63}$")
_TOKEN_TEXT = re.compile(r"^[\x21-\x7e]+$")
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*"([^"]*)"')
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
#: What the bump does with an app whose registry misbehaved (the end of every refusal message).
SKIPPED = "this app's image is left as it is"


class RegistryError(Exception):
    """A registry call failed; the message names the registry, the repository and why."""


class RegistryUnavailable(RegistryError):
    """Unreachable, timed out, rate-limited or a 5xx: worth trying again on the next bump."""


class RegistryAuthError(RegistryError):
    """The registry refused the credentials, or wants credentials we do not have."""


class NotFound(RegistryError):
    """The repository or the tag does not exist."""


class RegistryRefused(RegistryError):
    """The registry did what the bump will not go along with: pointed credentials or requests at
    another host, sent too much, or sent something no registry would. Not worth retrying as is."""


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference. `name` is the text before the tag, kept as written for rewriting."""

    name: str
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def key(self) -> str:
        """Identity of the repository: ModelApps with equal keys share one tag listing."""
        return f"{self.registry}/{self.repository}"

    def format(self, *, tag: str | None, digest: str | None) -> str:
        text = self.name
        if tag:
            text += f":{tag}"
        if digest:
            text += f"@{digest}"
        return text


def parse_image(reference: str) -> ImageRef:
    """Split `[registry/]repo[:tag][@sha256:...]` the way Docker normalises names."""
    rest, _, digest = reference.partition("@")
    if digest and not DIGEST_PATTERN.fullmatch(digest):
        raise ValueError(f"image {reference!r} has a malformed digest")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    tag = rest[colon + 1 :] if colon > slash else None
    name = rest[:colon] if colon > slash else rest
    if not name or (tag is not None and not tag):
        raise ValueError(f"image reference {reference!r} is not valid")
    first, _, remainder = name.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, remainder
    else:
        registry, repository = DOCKER_HUB, name if "/" in name else f"library/{name}"
    return ImageRef(name=name, registry=registry, repository=repository, tag=tag, digest=digest or None)


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""


@dataclass(frozen=True)
class DockerConfig:
    """Registry credentials from a Docker config JSON (`~/.docker/config.json` or a
    `kubernetes.io/dockerconfigjson` secret's `.dockerconfigjson`). Only inline `auths` are
    read; credential helpers (`credsStore`, `credHelpers`) cannot run inside a CronJob."""

    auths: Mapping[str, Credentials] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: bytes | str) -> DockerConfig:
        try:
            raw = json.loads(data)
        except (json.JSONDecodeError, RecursionError) as exc:  # a tenant's Secret: nested as deep as it likes
            raise RegistryError(f"docker config is not valid JSON: {exc}") from None
        entries = raw.get("auths", {}) if isinstance(raw, dict) else {}
        if not isinstance(entries, dict):
            raise RegistryError("docker config: 'auths' must be an object")
        return cls(auths={_host_of(key): _credentials(key, value) for key, value in entries.items()})

    @classmethod
    def load(cls, path: Path | None = None) -> DockerConfig:
        """Read `path`, else `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; missing means anonymous."""
        if path is None:
            folder = os.environ.get("DOCKER_CONFIG")
            path = Path(folder) / "config.json" if folder else Path.home() / ".docker" / "config.json"
        try:
            return cls.from_json(path.read_bytes())
        except FileNotFoundError:
            return cls()

    def lookup(self, registry: str) -> Credentials | None:
        if registry in {DOCKER_HUB, DOCKER_HUB_API, "index.docker.io"}:
            return self.auths.get(DOCKER_HUB) or self.auths.get("index.docker.io")
        return self.auths.get(registry)


def _host_of(key: str) -> str:
    host = re.sub(r"^https?://", "", key).split("/")[0]
    return DOCKER_HUB if host in {"index.docker.io", "registry-1.docker.io"} else host


def _credentials(key: str, value: Any) -> Credentials:
    if not isinstance(value, dict):
        raise RegistryError(f"docker config: auths[{key!r}] must be an object")
    username, password = str(value.get("username", "")), str(value.get("password", ""))
    if value.get("auth"):
        try:
            username, _, password = base64.b64decode(str(value["auth"])).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise RegistryError(f"docker config: auths[{key!r}].auth is not base64 'user:password'") from None
    return Credentials(username=username, password=password, identity_token=str(value.get("identitytoken", "")))


@dataclass
class _Token:
    header: str
    expires: float


@dataclass(frozen=True)
class _Budget:
    """A point on the monotonic clock that an exchange must finish by, and the limit it stands for
    (named in the message when it runs out)."""

    at: float
    seconds: float
    what: str

    @classmethod
    def start(cls, seconds: float, what: str) -> _Budget:
        return cls(time.monotonic() + seconds, seconds, what)

    def left(self) -> float:
        return self.at - time.monotonic()


@dataclass(frozen=True)
class _Answer:
    """One HTTP answer, its body read whole within the size cap and the deadline."""

    method: str
    url: str
    status: int
    headers: CaseInsensitiveDict[str]
    body: bytes

    @property
    def path(self) -> str:
        return _clean(urlsplit(self.url).path)

    def json(self) -> Any:
        """The body as JSON; ValueError if it is not (nesting too deep for the parser included)."""
        try:
            return json.loads(self.body)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


# --- the total deadline of one exchange ---------------------------------------------------------

_IN_FLIGHT = threading.local()


class _Deadline:
    """Shuts the sockets of the exchange in flight once its time is up.

    A socket timeout bounds each read, so a registry that sends one byte just inside it (in the
    TLS handshake, the headers or the body) holds the bump for ever. A timer closes that door:
    it shuts the connection (through a duplicate descriptor that this object owns, so it never
    touches a descriptor that was closed and reused meanwhile) and the blocked read ends at once.
    """

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._duplicates: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(seconds, 0.0), self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        _IN_FLIGHT.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        _IN_FLIGHT.deadline = None
        self._timer.cancel()
        with self._lock:
            for duplicate in self._duplicates:
                duplicate.close()
            self._duplicates.clear()

    def watch(self, sock: socket.socket) -> None:
        try:
            duplicate = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except OSError:
            return  # already closed: nothing left to hold us
        with self._lock:
            self._duplicates.append(duplicate)
            if self.expired:
                _shut(duplicate)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for duplicate in self._duplicates:
                _shut(duplicate)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # the peer or urllib3 got there first
        sock.shutdown(socket.SHUT_RDWR)


def _watch(sock: socket.socket | None) -> None:
    deadline = getattr(_IN_FLIGHT, "deadline", None)
    if isinstance(deadline, _Deadline) and sock is not None:
        deadline.watch(sock)


class _WatchedHTTPConnection(HTTPConnection):
    """A urllib3 connection that hands its socket to the exchange's `_Deadline`: when it is made
    (before any TLS handshake) and each time it is used for a response (a kept-alive one too)."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)
        return sock

    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]  # as urllib3's own
        _watch(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    """The same for HTTPS (the MRO puts the watching before urllib3's TLS connection)."""


class _WatchedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS: dict[str, type[urllib3.HTTPConnectionPool]] = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter with watched connections, direct or through a proxy from the environment."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_WATCHED_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_WATCHED_POOLS)
        return manager


class _NoNetrc(requests.auth.AuthBase):
    """Set as the session's auth so that requests never adds `~/.netrc` credentials (a `default`
    entry there would go to any host a tenant names)."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


# --- the client ---------------------------------------------------------------------------------


class RegistryClient:
    """Talks to any number of registries; caches auth per (registry, scope) for its lifetime.

    `requests_made` counts HTTP exchanges (token fetches and redirect hops included) so bump can
    report them. The limits are keyword arguments (module docstring): `timeout` for one request
    from connect to last byte, `call_timeout` for one `list_tags` or `resolve_digest` with every
    page, redirect and auth round trip, `max_body` bytes per answer, `max_pages` and `max_tags`
    per listing, `max_redirects` per request. `trusted_realms` maps a registry host (as written in
    image references; `docker.io` for Docker Hub) to the token-service host names it may use
    beyond its own host name and `KNOWN_REALMS`.
    """

    def __init__(
        self,
        *,
        config: DockerConfig | None = None,
        timeout: float = 10.0,
        call_timeout: float = 120.0,
        page_size: int = 1000,
        max_pages: int = 1000,
        max_tags: int = 100_000,
        max_body: int = 8 * 1024 * 1024,
        max_redirects: int = 5,
        insecure: Iterable[str] = (),
        trusted_realms: Mapping[str, Iterable[str]] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self._config = config or DockerConfig()
        self._timeout = timeout
        self._call_timeout = call_timeout
        self._page_size = page_size
        self._max_pages = max_pages
        self._max_tags = max_tags
        self._max_body = max_body
        self._max_redirects = max_redirects
        self._insecure = frozenset(host.lower() for host in insecure) | LOOPBACK
        self._trusted = {
            _api_host(registry): frozenset(_hostname(host) for host in hosts)
            for registry, hosts in (trusted_realms or {}).items()
        }
        self._session = session or requests.Session()
        self._session.auth = _NoNetrc()
        # No cookies: auth is by header per request, and a cookie one registry sets for a parent
        # domain (a tenant's `*.azurecr.io`) would otherwise travel to the platform's registry.
        self._session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        adapter = _WatchedAdapter()
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._auth: dict[tuple[str, str], _Token] = {}
        self._down: dict[str, str] = {}
        self.requests_made = 0

    def list_tags(self, ref: ImageRef) -> list[str]:
        """Every tag of the repository, following pagination on the registry's host; raises RegistryError."""
        self._refuse_if_down(ref)
        budget = _Budget.start(self._call_timeout, "listing")
        base = self._base(ref.registry)
        path = f"/v2/{ref.repository}/tags/list"
        url: str | None = f"{base}{path}?n={self._page_size}"
        tags: list[str] = []
        seen: set[str] = set()
        while url is not None:
            if len(seen) >= self._max_pages:
                raise RegistryRefused(
                    f"{ref.key}: the tag list runs past {self._max_pages} pages; {SKIPPED} "
                    "(prune the repository's tags: the bump reads at most that many pages of one repository)"
                )
            seen.add(url)
            answer = self._call("GET", url, ref, {"Accept": "application/json"}, budget)
            tags.extend(_tags_of(answer, ref))
            if len(tags) > self._max_tags:
                raise RegistryRefused(
                    f"{ref.key}: the tag list holds more than {self._max_tags} tags; {SKIPPED} "
                    "(prune the repository's tags: the bump reads at most that many tags of one repository)"
                )
            url = _next_page(answer, ref, base, path)
            if url in seen:
                raise RegistryRefused(f"{ref.key}: the next-page link leads back to a page already read; {SKIPPED}")
        return tags

    def resolve_digest(self, ref: ImageRef, tag: str) -> str:
        """The manifest digest the tag points at now (`sha256:...`)."""
        if not TAG_PATTERN.fullmatch(tag):
            raise RegistryError(f"{ref.key}: {_clean(tag)} is not a valid tag; {SKIPPED}")
        self._refuse_if_down(ref)
        budget = _Budget.start(self._call_timeout, "digest lookup")
        url = f"{self._base(ref.registry)}/v2/{ref.repository}/manifests/{tag}"
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        answer = self._call("HEAD", url, ref, headers, budget)
        digest = answer.headers.get("Docker-Content-Digest", "")
        if not digest:
            digest = "sha256:" + hashlib.sha256(self._call("GET", url, ref, headers, budget).body).hexdigest()
        if not DIGEST_PATTERN.fullmatch(digest):
            raise RegistryError(f"{ref.key}:{tag}: registry returned a malformed digest {_clean(digest)}; {SKIPPED}")
        return digest

    def image_labels(self, ref: ImageRef, digest: str) -> dict[str, str]:
        """The labels of the image `digest` names (its config's `config.Labels`); raises RegistryError.

        Every body is checked against the digest it was fetched by, so a registry cannot answer for
        another image; the config's declared size is checked before it is fetched."""
        if not DIGEST_PATTERN.fullmatch(digest):
            raise RegistryError(f"{ref.key}: {_clean(digest)} is not a sha256 digest; {SKIPPED}")
        self._refuse_if_down(ref)
        budget = _Budget.start(self._call_timeout, "label lookup")
        base = f"{self._base(ref.registry)}/v2/{ref.repository}"
        manifest = self._by_digest(f"{base}/manifests/{digest}", digest, ref, budget, accept=MANIFEST_TYPES)
        if manifest.get("mediaType") in INDEX_TYPES or "manifests" in manifest:
            chosen = _platform_entry(manifest, ref)
            manifest = self._by_digest(f"{base}/manifests/{chosen}", chosen, ref, budget, accept=MANIFEST_TYPES)
        config = manifest.get("config")
        if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
            raise RegistryRefused(f"{ref.key}@{digest[:19]}: the image manifest has no config; {SKIPPED}")
        size = config.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_CONFIG_BYTES:
            raise RegistryRefused(f"{ref.key}@{digest[:19]}: the image config is declared {_clean(str(size))} bytes, "
                                  f"over the {MAX_CONFIG_BYTES}-byte cap for reading labels; {SKIPPED}")  # fmt: skip
        blob = self._by_digest(f"{base}/blobs/{config['digest']}", config["digest"], ref, budget, accept=("*/*",))
        inner = blob.get("config")
        labels = inner.get("Labels") if isinstance(inner, dict) else None
        if not isinstance(labels, dict):
            return {}
        return {str(k): v for k, v in labels.items() if isinstance(v, str)}

    def _by_digest(self, url: str, digest: str, ref: ImageRef, budget: _Budget, *,
                   accept: tuple[str, ...]) -> dict[str, Any]:  # fmt: skip
        """GET a JSON object by its digest: the body must hash to it."""
        if not isinstance(digest, str) or not DIGEST_PATTERN.fullmatch(digest):
            raise RegistryRefused(f"{ref.key}: {_clean(str(digest))} is not a sha256 digest; {SKIPPED}")
        answer = self._call("GET", url, ref, {"Accept": ", ".join(accept)}, budget)
        if "sha256:" + hashlib.sha256(answer.body).hexdigest() != digest:
            raise RegistryRefused(f"{ref.key}: {answer.path} does not hash to {digest[:19]}...; {SKIPPED}")
        try:
            body = answer.json()
        except ValueError:
            raise RegistryRefused(f"{ref.key}: {answer.path} is not JSON; {SKIPPED}") from None
        if not isinstance(body, dict):
            raise RegistryRefused(f"{ref.key}: {answer.path} is not a JSON object; {SKIPPED}")
        return body

    def _refuse_if_down(self, ref: ImageRef) -> None:
        first = self._down.get(ref.registry)
        if first is not None:
            raise RegistryUnavailable(
                f"{ref.key}: not asked, {ref.registry} already failed this run ({first}); {SKIPPED} this run"
            )

    def _base(self, registry: str) -> str:
        host = _api_host(registry)
        if not _HOST_PATTERN.fullmatch(host):
            raise RegistryError(f"{_clean(registry)} is not a registry host[:port]; {SKIPPED}")
        parts = urlsplit(f"//{host}")
        scheme = "http" if _plain_http_ok(parts.hostname or "", parts.netloc, self._insecure) else "https"
        return f"{scheme}://{host}"

    def _call(self, method: str, url: str, ref: ImageRef, headers: dict[str, str], budget: _Budget) -> _Answer:
        """One request with auth: cached credentials first, one challenge round trip on 401."""
        scope = f"repository:{ref.repository}:pull"
        token = self._auth.get((ref.registry, scope))
        if token is not None and token.expires > time.monotonic():
            headers = {**headers, "Authorization": token.header}
        answer = self._send(method, url, ref, headers, budget)
        if answer.status == 401:
            token = self._authenticate(answer, ref, scope, budget)
            self._auth[(ref.registry, scope)] = token
            answer = self._send(method, url, ref, {**headers, "Authorization": token.header}, budget)
        _raise_for_status(answer, ref)
        return answer

    def _send(self, method: str, url: str, ref: ImageRef, headers: Mapping[str, str], budget: _Budget) -> _Answer:
        """One request, redirects followed: `Authorization` only to the origin of `url` (our
        registry's), never over a downgrade to plain HTTP, all hops within one deadline."""
        origin = _origin(url, ref)
        request = _Budget.start(self._timeout, "request")
        deadline = request if request.at <= budget.at else budget
        bare = {name: value for name, value in headers.items() if name.lower() != "authorization"}
        for _ in range(self._max_redirects + 1):
            answer = self._exchange(method, url, ref, headers if _origin(url, ref) == origin else bare, deadline)
            location = answer.headers.get("Location")
            if answer.status not in _REDIRECTS or not location:
                return answer
            url = self._redirect_target(answer, location, ref)
        raise RegistryRefused(
            f"{ref.key}: more than {self._max_redirects} redirects for {method} {_clean(urlsplit(url).path)}; {SKIPPED}"
        )

    def _redirect_target(self, answer: _Answer, location: str, ref: ImageRef) -> str:
        target = urljoin(answer.url, location.strip())
        parts = urlsplit(target)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise RegistryRefused(
                f"{ref.key}: {answer.method} {answer.path} redirects to {_clean(target)}, not an http(s) URL; {SKIPPED}"
            )
        if parts.scheme == "http" and not _plain_http_ok(parts.hostname, parts.netloc, self._insecure):
            raise RegistryRefused(
                f"{ref.key}: {answer.method} {answer.path} redirects to plain HTTP on {_clean(parts.netloc)}; "
                f"only loopback and --insecure-registry hosts are read over HTTP, so {SKIPPED}"
            )
        return target

    def _exchange(
        self,
        method: str,
        url: str,
        ref: ImageRef,
        headers: Mapping[str, str],
        budget: _Budget,
        *,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> _Answer:
        """One HTTP request and its whole answer (no redirects), within `budget` and `max_body`.

        A registry that cannot be reached, or misses a request deadline, is remembered as down for
        the client's lifetime (one bump run): its other repositories fail at once instead of each
        costing a timeout. Missing a call deadline (a long listing) marks nothing."""
        late = f"no answer within {budget.seconds:g}s (the {budget.what} limit)"
        left = budget.left()
        if left <= 0:
            raise RegistryUnavailable(f"{ref.key}: {late}; {SKIPPED} this run")
        self.requests_made += 1
        failure: str | None = None
        try:
            with _Deadline(left) as deadline:
                response = self._session.request(
                    method,
                    url,
                    headers={**headers, "Accept-Encoding": "identity"},
                    params=params,
                    data=data,
                    timeout=left,
                    stream=True,
                    allow_redirects=False,
                )
                try:
                    body = self._read_body(response, method, ref)
                finally:
                    response.close()
                if deadline.expired:
                    failure = late
        except requests.Timeout:
            failure = late
        except requests.RequestException as exc:
            failure = (
                late if deadline.expired else f"cannot reach {_clean(urlsplit(url).netloc)} ({type(exc).__name__})"
            )
        if failure is not None:
            if budget.what == "request" or failure != late:
                self._down.setdefault(ref.registry, failure)  # no repository in it: another tenant may read it
            raise RegistryUnavailable(f"{ref.key}: {failure}; {SKIPPED} this run")
        return _Answer(method, url, response.status_code, response.headers, body)

    def _read_body(self, response: requests.Response, method: str, ref: ImageRef) -> bytes:
        if method == "HEAD":
            return b""
        where = f"{ref.key}: {method} {_clean(urlsplit(response.url).path)}"
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in {"", "identity"}:
            raise RegistryRefused(f"{where} answered with a {_clean(encoding)} body it was not asked for; {SKIPPED}")
        declared = response.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > self._max_body:
            raise RegistryRefused(f"{where} announced {declared} bytes, over the {self._max_body}-byte cap; {SKIPPED}")
        body = bytearray()
        for chunk in response.raw.stream(_CHUNK, decode_content=False):
            body += chunk
            if len(body) > self._max_body:
                raise RegistryRefused(f"{where} sent more than {self._max_body} bytes; {SKIPPED}")
        return bytes(body)

    def _authenticate(self, challenge: _Answer, ref: ImageRef, scope: str, budget: _Budget) -> _Token:
        header = challenge.headers.get("WWW-Authenticate", "")
        scheme, _, params_text = header.partition(" ")
        params = dict(_CHALLENGE_PARAM.findall(params_text))
        credentials = self._config.lookup(ref.registry)
        if scheme.lower() == "basic":
            if credentials is None or not credentials.username:
                raise RegistryAuthError(f"{ref.key}: the registry wants a login and the docker config has none")
            return _Token(_basic(credentials), expires=float("inf"))
        if scheme.lower() == "bearer" and params.get("realm"):
            realm = check_realm(params["realm"], ref, trusted=self._trusted, insecure=self._insecure)
            service = params.get("service", "")
            return self._fetch_token(ref, realm, service=service, scope=scope, credentials=credentials, budget=budget)
        raise RegistryAuthError(f"{ref.key}: unsupported auth challenge {_clean(header, 80)}")

    def _fetch_token(
        self, ref: ImageRef, realm: str, *, service: str, scope: str, credentials: Credentials | None, budget: _Budget
    ) -> _Token:
        """The token dance: GET realm?service&scope (basic auth if we have it), or the OAuth2
        refresh-token grant for an identity token; `token` or `access_token` in the JSON answer.
        The scope is ours, never the challenge's: a token is asked for this repository only.
        No redirects: a token service answers where it said it would."""
        request = _Budget.start(self._timeout, "request")
        deadline = request if request.at <= budget.at else budget
        if credentials is not None and credentials.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": credentials.identity_token}
            form |= {"service": service, "scope": scope, "client_id": "modelapp"}
            answer = self._exchange("POST", realm, ref, {}, deadline, data=form)
        else:
            headers = {"Authorization": _basic(credentials)} if credentials and credentials.username else {}
            answer = self._exchange("GET", realm, ref, headers, deadline, params={"service": service, "scope": scope})
        if answer.status in {401, 403}:
            raise RegistryAuthError(f"{ref.key}: token service refused the credentials ({answer.status})")
        if answer.status in _REDIRECTS:
            raise RegistryRefused(
                f"{ref.key}: the token service redirects ({answer.status}); "
                f"tokens are fetched without redirects, so {SKIPPED}"
            )
        _raise_for_status(answer, ref)
        return _token_from(answer, ref)


# --- pure rules -----------------------------------------------------------------------------------


def check_realm(
    realm: str, ref: ImageRef, *, trusted: Mapping[str, frozenset[str]], insecure: frozenset[str] = LOOPBACK
) -> str:
    """`realm` if the bump may send this registry's credentials there, else RegistryRefused.

    The rule: HTTPS (plain HTTP only to a loopback or insecure host), and the realm's host name is
    the registry's own (any port: Distribution's token server often runs beside it), a built-in
    companion (`KNOWN_REALMS`), or one the platform trusts for this registry (`trusted`, keyed by
    registry API host). Anonymous token requests obey it too, so a registry cannot make the bump
    call hosts of its choosing.
    """
    registry = _api_host(ref.registry)
    try:
        parts = urlsplit(realm)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:
        host, parts = "", urlsplit("")
    if parts.scheme not in {"http", "https"} or not host or parts.username is not None:
        raise RegistryRefused(f"{ref.key}: the token realm {_clean(realm, 80)} is not an http(s) URL; {SKIPPED}")
    if parts.scheme == "http" and not _plain_http_ok(host, parts.netloc, insecure):
        raise RegistryRefused(
            f"{ref.key}: the token realm {_clean(realm, 80)} is plain HTTP, so credentials would cross the network "
            f"in clear; {SKIPPED} (use an https realm, or name the host with --insecure-registry if it is meant)"
        )
    own = (urlsplit(f"//{registry}").hostname or "").lower()
    if host != own and host not in KNOWN_REALMS.get(registry, frozenset()) | trusted.get(registry, frozenset()):
        raise RegistryRefused(
            f"{ref.key}: the token realm is on {_clean(host)}, which is not this registry's host; {SKIPPED} "
            f"(if {_clean(host)} is the registry's token service, trust it for {registry} with trusted_realms: "
            f"modelapp bump --trusted-realm {registry}={_clean(host)})"
        )
    return realm


def parse_trusted_realms(items: Iterable[str]) -> dict[str, frozenset[str]]:
    """`REGISTRY=HOST` pairs (a repeated command-line option) as RegistryClient's `trusted_realms`."""
    trusted: dict[str, set[str]] = {}
    for item in items:
        registry, _, host = item.partition("=")
        valid = _HOST_PATTERN.fullmatch(registry) and _HOST_PATTERN.fullmatch(host)
        if not valid or urlsplit(f"//{host}").port is not None:
            raise ValueError(
                f"trusted realm {item!r} is not REGISTRY=HOST with a host name and no port "
                "(for GitLab: registry.gitlab.com=gitlab.com)"
            )
        trusted.setdefault(registry, set()).add(_hostname(host))
    return {registry: frozenset(hosts) for registry, hosts in trusted.items()}


def _hostname(host: str) -> str:
    return (urlsplit(f"//{host}").hostname or host).lower()


def _api_host(registry: str) -> str:
    return DOCKER_HUB_API if registry == DOCKER_HUB else registry


def _plain_http_ok(hostname: str, netloc: str, insecure: frozenset[str]) -> bool:
    """Whether a host may be spoken to over plain HTTP: loopback, or named (with or without port)."""
    hostname, netloc = hostname.lower(), netloc.lower()
    return bool({hostname, f"[{hostname}]", netloc} & insecure)


def _origin(url: str, ref: ImageRef) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL: where credentials for it may go."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise RegistryRefused(f"{ref.key}: {_clean(url, 80)} has a port that is not a number; {SKIPPED}") from None
    return parts.scheme, (parts.hostname or "").lower(), port or (443 if parts.scheme == "https" else 80)


def _clean(text: str, limit: int = 120) -> str:
    """Registry-sent text as a message may show it: as is when it is short printable ASCII, else a
    cut repr (no control characters reach a log line or an Event)."""
    if len(text) <= limit and re.fullmatch(r"[\x21-\x7e]*", text):
        return text
    return repr(text[:limit])


def _basic(credentials: Credentials | None) -> str:
    username, password = (credentials.username, credentials.password) if credentials else ("", "")
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _token_from(answer: _Answer, ref: ImageRef) -> _Token:
    try:
        body = answer.json()
    except ValueError:
        raise RegistryAuthError(f"{ref.key}: token service answered with something other than JSON") from None
    value = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise RegistryAuthError(f"{ref.key}: token service answer holds no token")
    if not _TOKEN_TEXT.fullmatch(value):
        raise RegistryRefused(f"{ref.key}: the token service sent a token with spaces or control characters; {SKIPPED}")
    lifetime = body.get("expires_in", 60)
    lifetime = lifetime if isinstance(lifetime, int | float) and lifetime > 0 else 60
    return _Token(f"Bearer {value}", expires=time.monotonic() + float(lifetime) - 5)


def _raise_for_status(answer: _Answer, ref: ImageRef) -> None:
    status = answer.status
    if status < 400:
        return
    code = _error_code(answer)
    where = f"{ref.key}: {answer.method} {answer.path}"
    if status in {401, 403}:
        raise RegistryAuthError(f"{where} refused ({status} {code})".rstrip())
    if status == 404:
        what = "no such tag or digest" if "/manifests/" in answer.url else "no such repository"
        raise NotFound(f"{where}: not found, {what} ({code or 404})")
    if status == 429 or status >= 500:
        raise RegistryUnavailable(f"{where}: registry answered {status} {code}".rstrip())
    raise RegistryError(f"{where}: registry answered {status} {code}".rstrip())


def _error_code(answer: _Answer) -> str:
    """The first `errors[].code` of a Distribution error body (`NAME_UNKNOWN`, ...), if it looks like one."""
    try:
        errors = answer.json().get("errors") or []
        code = str(errors[0].get("code", "")) if errors else ""
    except (ValueError, AttributeError, IndexError, KeyError, TypeError):
        return ""
    return code if _ERROR_CODE.fullmatch(code) else ""


def _platform_entry(index: Mapping[str, Any], ref: ImageRef) -> str:
    """The digest of an index's linux/amd64 image (what the serving nodes run), else of its first image."""
    entries = [e for e in index.get("manifests") or [] if isinstance(e, dict) and isinstance(e.get("digest"), str)]
    if not entries:
        raise RegistryRefused(f"{ref.key}: the image index lists no image; {SKIPPED}")
    for entry in entries:
        platform = entry.get("platform")
        if isinstance(platform, dict) and (platform.get("os"), platform.get("architecture")) == ("linux", "amd64"):
            return str(entry["digest"])
    return str(entries[0]["digest"])


def _tags_of(answer: _Answer, ref: ImageRef) -> list[str]:
    try:
        body = answer.json()
    except ValueError:
        raise RegistryError(f"{ref.key}: tag list is not JSON; {SKIPPED}") from None
    tags = body.get("tags") if isinstance(body, dict) else None
    if tags is None:
        return []  # Distribution answers `"tags": null` for a repository with no tags left
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise RegistryError(f"{ref.key}: tag list has an unexpected shape; {SKIPPED}")
    invalid = [tag for tag in tags if not TAG_PATTERN.fullmatch(tag)]
    if invalid:
        raise RegistryRefused(
            f"{ref.key}: the tag list holds {len(invalid)} name(s) that are not valid tags, such as "
            f"{_clean(invalid[0], 40)}; no registry stores such tags, so {SKIPPED}"
        )
    return list(tags)


def _next_page(answer: _Answer, ref: ImageRef, base: str, path: str) -> str | None:
    """The next page's URL, only on the registry's origin and for this repository's listing."""
    match = _LINK_NEXT.search(answer.headers.get("Link", ""))
    if not match:
        return None
    target = urljoin(answer.url, str(match.group(1)).strip())
    if _origin(target, ref) != _origin(base, ref):
        raise RegistryRefused(
            f"{ref.key}: the next-page link points to another host ({_clean(urlsplit(target).netloc)}); "
            f"tag pages are read from the registry's own host only, so {SKIPPED}"
        )
    if urlsplit(target).path != path:
        raise RegistryRefused(
            f"{ref.key}: the next-page link points to another listing ({_clean(urlsplit(target).path)}); {SKIPPED}"
        )
    return target
