"""The version manifest: what a model version contains and how its digest is defined.

A version `<prefix>/<V>/` is complete only when `modelapp-manifest.json` is present and valid.
The manifest lists every file with its size and sha256; the *version digest* is the sha256 of
the manifest's exact bytes, so one pinned digest (`spec.model.sha256`) pins every byte of the
model. See docs/contracts.md. Pure: no I/O except `read_manifest`, which reads a local folder.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MANIFEST_NAME = "modelapp-manifest.json"
SCHEMA = "modelapp.io/manifest/v1"
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SHA256_PATTERN = re.compile(r"^[a-f0-9]{64}$")
MAX_MANIFEST_BYTES = 1024 * 1024

ModelFormat = Literal["onnx", "sklearn", "custom"]


class ManifestError(ValueError):
    """The manifest is missing, malformed or does not match what it should pin."""


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1, max_length=1024)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=SHA256_PATTERN.pattern)

    @field_validator("path")
    @classmethod
    def _relative_and_normal(cls, value: str) -> str:
        if value.startswith("/") or "\\" in value or value != posixpath.normpath(value):
            raise ValueError(f"file path {value!r} must be a normalised relative POSIX path")
        if value.split("/", maxsplit=1)[0] == ".." or value == MANIFEST_NAME:
            raise ValueError(f"file path {value!r} is not allowed")
        return value


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_: Literal["modelapp.io/manifest/v1"] = Field(alias="schema")
    version: str = Field(pattern=VERSION_PATTERN.pattern)
    format: ModelFormat = "onnx"
    entrypoint: str
    files: tuple[FileEntry, ...] = Field(min_length=1)
    created: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        paths = [entry.path for entry in self.files]
        if len(set(paths)) != len(paths):
            raise ValueError("files lists a path twice")
        if self.entrypoint not in paths:
            raise ValueError(f"entrypoint {self.entrypoint!r} is not one of the files")
        return self

    @property
    def total_size(self) -> int:
        return sum(entry.size for entry in self.files)


def digest(data: bytes) -> str:
    """The version digest: sha256 of the manifest's exact bytes."""
    return hashlib.sha256(data).hexdigest()


def parse_manifest(data: bytes) -> Manifest:
    """Parse and validate manifest bytes; raise ManifestError with a one-line reason."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"manifest is {len(data)} bytes, over the {MAX_MANIFEST_BYTES} byte limit")
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ManifestError(f"manifest is not valid JSON: {exc}") from None
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "manifest"
        raise ManifestError(f"manifest is invalid at {where}: {first['msg']}") from None


def build_manifest(
    *,
    version: str,
    model_format: ModelFormat,
    entrypoint: str,
    files: Iterable[FileEntry],
    created: datetime | None = None,
) -> bytes:
    """Render manifest bytes deterministically (sorted keys), validated by parsing them back."""
    when = (created or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "schema": SCHEMA,
        "version": version,
        "format": model_format,
        "entrypoint": entrypoint,
        "files": [entry.model_dump() for entry in files],
        "created": when,
    }
    data = (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()
    parse_manifest(data)
    return data


def verify_pin(data: bytes, pinned_sha256: str | None) -> str:
    """Return the manifest digest; raise ManifestError if a pin is given and differs."""
    actual = digest(data)
    if pinned_sha256 is not None and actual != pinned_sha256.lower():
        raise ManifestError(f"manifest digest mismatch: pinned sha256 {pinned_sha256}, got {actual}")
    return actual


def read_manifest(model_dir: Path) -> tuple[Manifest, str]:
    """Read a fetched version's manifest from a local folder: (manifest, version digest)."""
    path = model_dir / MANIFEST_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{path} not found: the folder does not hold a fetched model version") from None
    return parse_manifest(data), digest(data)
