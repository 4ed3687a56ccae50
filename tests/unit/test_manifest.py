"""The version manifest: parsing, path rules, rendering and the digest (pure, no I/O).

Design notes: the manifest is the trust anchor of a model version -- its sha256 is what
`spec.model.sha256` pins -- so these tests pin down what is refused (escaping or unnormalised
paths, duplicates, a missing entrypoint, oversized or non-JSON bytes) and that rendering is
deterministic, since a publish that rendered differently would print a different digest.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from modelapp_serving.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    FileEntry,
    ManifestError,
    build_manifest,
    digest,
    parse_manifest,
    verify_pin,
)

SHA = "a" * 64
WHEN = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)


def body(**changes: Any) -> bytes:
    raw: dict[str, Any] = {
        "schema": "modelapp.io/manifest/v1",
        "version": "7",
        "format": "onnx",
        "entrypoint": "model.onnx",
        "files": [{"path": "model.onnx", "size": 10, "sha256": SHA}],
    }
    raw.update(changes)
    return json.dumps(raw).encode()


def test_a_valid_manifest_parses() -> None:
    manifest = parse_manifest(body(files=[{"path": "model.onnx", "size": 10, "sha256": SHA},
                                          {"path": "tok/vocab.json", "size": 5, "sha256": SHA}]))  # fmt: skip
    assert manifest.version == "7"
    assert manifest.format == "onnx"
    assert manifest.total_size == 15


@pytest.mark.parametrize(
    "path",
    ["../model.onnx", "/etc/passwd", "a/../../b", "./model.onnx", "a//b", "a\\..\\b", "..", MANIFEST_NAME, "a/"],
)
def test_paths_that_could_escape_or_collide_are_refused(path: str) -> None:
    files = [{"path": path, "size": 1, "sha256": SHA}]
    with pytest.raises(ManifestError, match=r"files\.0\.path"):
        parse_manifest(body(files=files, entrypoint=path))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "not valid JSON: maximum recursion depth exceeded"),
        (body(schema="other/v9"), "at schema"),
        (body(version="../7"), "at version"),
        (body(entrypoint="missing.onnx"), "entrypoint 'missing.onnx' is not one of the files"),
        (body(files=[]), "at files"),
        (body(files=[{"path": "m", "size": 1, "sha256": SHA}] * 2, entrypoint="m"), "lists a path twice"),
        (body(files=[{"path": "model.onnx", "size": -1, "sha256": SHA}]), "files.0.size"),
        (body(files=[{"path": "model.onnx", "size": 1, "sha256": "A" * 64}]), "files.0.sha256"),
        (body(extra="field"), "at extra"),
        (body(format="pickle"), "at format"),
        (b" " * (MAX_MANIFEST_BYTES + 1), "over the 1048576 byte limit"),
    ],
)
def test_malformed_manifests_fail_with_one_line(data: bytes, reason: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(data)
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_rendering_is_deterministic_and_round_trips() -> None:
    entries = [FileEntry(path="model.onnx", size=10, sha256=SHA)]
    first = build_manifest(version="7", model_format="onnx", entrypoint="model.onnx", files=entries, created=WHEN)
    again = build_manifest(version="7", model_format="onnx", entrypoint="model.onnx", files=entries, created=WHEN)
    assert first == again
    assert parse_manifest(first).created == "2026-11-24T13:00:00Z"
    assert digest(first) == hashlib.sha256(first).hexdigest()


def test_rendering_refuses_what_parsing_refuses() -> None:
    with pytest.raises(ManifestError, match="entrypoint"):
        build_manifest(
            version="7", model_format="onnx", entrypoint="x", files=[FileEntry(path="m", size=1, sha256=SHA)]
        )


def test_pin_is_compared_case_insensitively_and_mismatch_names_both() -> None:
    data = body()
    actual = hashlib.sha256(data).hexdigest()
    assert verify_pin(data, None) == actual
    assert verify_pin(data, actual.upper()) == actual
    with pytest.raises(ManifestError, match=f"pinned sha256 {'0' * 64}, got {actual}"):
        verify_pin(data, "0" * 64)
