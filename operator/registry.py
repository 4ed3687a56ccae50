"""An OCI Distribution API client: list tags and resolve a tag to its digest.

Why our own: bump needs two calls (`GET /v2/<repo>/tags/list`, `HEAD /v2/<repo>/manifests/<tag>`)
with the auth every registry in use speaks, and nothing more. The contract with a registry:

- Tags: `GET /v2/<repo>/tags/list?n=<page>`, following `Link: <...>; rel="next"` until none is
  left (Distribution spec, "Listing Tags"). One listing per repository per bump.
- Digests: `HEAD /v2/<repo>/manifests/<tag>` with Accept for OCI and Docker manifests and
  indexes; the digest is the `Docker-Content-Digest` header (else sha256 of a `GET` body).
- Auth: anonymous first; on `401` the `WWW-Authenticate` challenge says how. `Basic` sends the
  Docker config credentials. `Bearer realm=..,service=..,scope=..` (Docker Hub, ACR, GHCR,
  Distribution's token auth) fetches a token from the realm — with basic credentials, or for an
  `identitytoken` (ACR's refresh token) by the OAuth2 `refresh_token` grant — caches it per
  scope until it expires, and retries once.
- Faults become `RegistryError` subclasses with one-line messages: unreachable or slow
  (`RegistryUnavailable`, timeouts are per request), refused (`RegistryAuthError`), missing
  (`NotFound`). Nothing is retried beyond the one auth round trip: bump reports and carries on.

Plain HTTP is used only for loopback registries and ones named in `insecure` (as Docker does).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
LOOPBACK = frozenset({"localhost", "127.0.0.1", "[::1]"})
DIGEST_PATTERN = re.compile(r"^sha256:[a-f0-9]{64}$")
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*"([^"]*)"')
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_MAX_PAGES = 10_000


class RegistryError(Exception):
    """A registry call failed; the message names the registry, the repository and why."""


class RegistryUnavailable(RegistryError):
    """Unreachable, timed out, rate-limited or a 5xx: worth trying again on the next bump."""


class RegistryAuthError(RegistryError):
    """The registry refused the credentials, or wants credentials we do not have."""


class NotFound(RegistryError):
    """The repository or the tag does not exist."""


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
    if digest and not DIGEST_PATTERN.match(digest):
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
        except json.JSONDecodeError as exc:
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


class RegistryClient:
    """Talks to any number of registries; caches auth per (registry, scope) for its lifetime.

    `requests_made` counts HTTP requests (token fetches included) so bump can report them.
    """

    def __init__(
        self,
        *,
        config: DockerConfig | None = None,
        timeout: float = 10.0,
        page_size: int = 1000,
        insecure: Iterable[str] = (),
        session: requests.Session | None = None,
    ) -> None:
        self._config = config or DockerConfig()
        self._timeout = timeout
        self._page_size = page_size
        self._insecure = frozenset(insecure) | LOOPBACK
        self._session = session or requests.Session()
        self._auth: dict[tuple[str, str], _Token] = {}
        self.requests_made = 0

    def list_tags(self, ref: ImageRef) -> list[str]:
        """Every tag of the repository, following pagination; raises RegistryError."""
        url: str | None = f"{self._base(ref.registry)}/v2/{ref.repository}/tags/list?n={self._page_size}"
        tags: list[str] = []
        seen: set[str] = set()
        while url is not None and url not in seen and len(seen) < _MAX_PAGES:
            seen.add(url)
            response = self._call("GET", url, ref, headers={"Accept": "application/json"})
            tags.extend(_tags_of(response, ref))
            url = _next_page(response, url)
        return tags

    def resolve_digest(self, ref: ImageRef, tag: str) -> str:
        """The manifest digest the tag points at now (`sha256:...`)."""
        url = f"{self._base(ref.registry)}/v2/{ref.repository}/manifests/{tag}"
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        response = self._call("HEAD", url, ref, headers=headers)
        digest = response.headers.get("Docker-Content-Digest", "")
        if not digest:
            digest = "sha256:" + hashlib.sha256(self._call("GET", url, ref, headers=headers).content).hexdigest()
        if not DIGEST_PATTERN.match(digest):
            raise RegistryError(f"{ref.key}:{tag}: registry returned a malformed digest {digest!r}")
        return digest

    def _base(self, registry: str) -> str:
        host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
        scheme = "http" if host.rsplit(":", 1)[0] in self._insecure or host in self._insecure else "https"
        return f"{scheme}://{host}"

    def _call(self, method: str, url: str, ref: ImageRef, *, headers: dict[str, str]) -> requests.Response:
        """One request with auth: cached credentials first, one challenge round trip on 401."""
        scope = f"repository:{ref.repository}:pull"
        token = self._auth.get((ref.registry, scope))
        if token is not None and token.expires > time.monotonic():
            headers = {**headers, "Authorization": token.header}
        response = self._send(method, url, ref, headers)
        if response.status_code == 401:
            token = self._authenticate(response, ref, scope)
            self._auth[(ref.registry, scope)] = token
            response = self._send(method, url, ref, {**headers, "Authorization": token.header})
        _raise_for_status(response, ref, url)
        return response

    def _send(self, method: str, url: str, ref: ImageRef, headers: Mapping[str, str]) -> requests.Response:
        self.requests_made += 1
        try:
            return self._session.request(method, url, headers=dict(headers), timeout=self._timeout)
        except requests.Timeout:
            raise RegistryUnavailable(f"{ref.key}: no answer within {self._timeout:g}s") from None
        except requests.RequestException as exc:
            raise RegistryUnavailable(f"{ref.key}: cannot reach the registry ({type(exc).__name__})") from None

    def _authenticate(self, challenge: requests.Response, ref: ImageRef, scope: str) -> _Token:
        header = challenge.headers.get("WWW-Authenticate", "")
        scheme, _, params_text = header.partition(" ")
        params = dict(_CHALLENGE_PARAM.findall(params_text))
        credentials = self._config.lookup(ref.registry)
        if scheme.lower() == "basic":
            if credentials is None or not credentials.username:
                raise RegistryAuthError(f"{ref.key}: the registry wants a login and the docker config has none")
            return _Token(_basic(credentials), expires=float("inf"))
        if scheme.lower() == "bearer" and params.get("realm"):
            return self._fetch_token(ref, params, params.get("scope") or scope, credentials)
        raise RegistryAuthError(f"{ref.key}: unsupported auth challenge {header[:80]!r}")

    def _fetch_token(
        self, ref: ImageRef, params: Mapping[str, str], scope: str, credentials: Credentials | None
    ) -> _Token:
        """The token dance: GET realm?service&scope (basic auth if we have it), or the OAuth2
        refresh-token grant for an identity token; `token` or `access_token` in the JSON answer."""
        realm, service = params["realm"], params.get("service", "")
        self.requests_made += 1
        try:
            if credentials is not None and credentials.identity_token:
                form = {"grant_type": "refresh_token", "refresh_token": credentials.identity_token}
                form |= {"service": service, "scope": scope, "client_id": "modelapp"}
                response = self._session.post(realm, data=form, timeout=self._timeout)
            else:
                auth = (credentials.username, credentials.password) if credentials and credentials.username else None
                query = {"service": service, "scope": scope}
                response = self._session.get(realm, params=query, auth=auth, timeout=self._timeout)
        except requests.RequestException as exc:
            raise RegistryUnavailable(f"{ref.key}: token service {realm} unreachable ({type(exc).__name__})") from None
        if response.status_code in {401, 403}:
            raise RegistryAuthError(f"{ref.key}: token service refused the credentials ({response.status_code})")
        _raise_for_status(response, ref, realm)
        return _token_from(response, ref)


def _basic(credentials: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()


def _token_from(response: requests.Response, ref: ImageRef) -> _Token:
    try:
        body = response.json()
    except ValueError:
        raise RegistryAuthError(f"{ref.key}: token service answered with something other than JSON") from None
    value = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise RegistryAuthError(f"{ref.key}: token service answer holds no token")
    lifetime = body.get("expires_in", 60)
    lifetime = lifetime if isinstance(lifetime, int | float) and lifetime > 0 else 60
    return _Token(f"Bearer {value}", expires=time.monotonic() + float(lifetime) - 5)


def _raise_for_status(response: requests.Response, ref: ImageRef, url: str) -> None:
    status = response.status_code
    if status < 400:
        return
    code = _error_code(response)
    where = f"{ref.key}: {response.request.method if response.request else ''} {url.partition('?')[0]}"
    if status in {401, 403}:
        raise RegistryAuthError(f"{where} refused ({status} {code})".rstrip())
    if status == 404:
        what = "no such tag or digest" if "/manifests/" in url else "no such repository"
        raise NotFound(f"{where}: not found, {what} ({code or 404})")
    if status == 429 or status >= 500:
        raise RegistryUnavailable(f"{where}: registry answered {status} {code}".rstrip())
    raise RegistryError(f"{where}: registry answered {status} {code}".rstrip())


def _error_code(response: requests.Response) -> str:
    """The first `errors[].code` of a Distribution error body (`NAME_UNKNOWN`, ...), if any."""
    try:
        errors = response.json().get("errors") or []
        return str(errors[0].get("code", "")) if errors else ""
    except (ValueError, AttributeError, IndexError):
        return ""


def _tags_of(response: requests.Response, ref: ImageRef) -> list[str]:
    try:
        body = response.json()
    except ValueError:
        raise RegistryError(f"{ref.key}: tag list is not JSON") from None
    tags = body.get("tags") if isinstance(body, dict) else None
    if tags is None:
        return []  # Distribution answers `"tags": null` for a repository with no tags left
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise RegistryError(f"{ref.key}: tag list has an unexpected shape")
    return list(tags)


def _next_page(response: requests.Response, url: str) -> str | None:
    match = _LINK_NEXT.search(response.headers.get("Link", ""))
    return urljoin(url, match.group(1)) if match else None
