"""Pure parts of fetching: URI parsing, credential scrubbing, range planning and the transfer engine.

Design notes: no I/O here. The transfer engine takes `read(start, length)` as a plain
function, so its retry, resume and size rules are driven by an in-memory reader over a byte
string that fails on cue -- the engine's input, not a stand-in for a server (the real servers
and a real connection cut are in tests/integration/test_fetch_faults.py).
"""

from __future__ import annotations

import hashlib
import io
import threading

import pytest

from modelapp_serving.fetch import FetchError, check_pin
from modelapp_serving.stores import IntegrityError, Location, StoreConfigError, TransientError, parse_uri, scrub
from modelapp_serving.stores.transfer import TransferSettings, TransferStats, plan_ranges, read_small, stream_object

FAST = TransferSettings(chunk_size=10, workers=3, window=4, attempts=3, backoff_seconds=0.0, sleep=lambda _: None)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("azureblob://models/iris", Location("azureblob", "models", "iris")),
        ("azureblob://models", Location("azureblob", "models", "")),
        ("azureblob://models/a/b/", Location("azureblob", "models", "a/b")),
        ("s3://my.bucket-1/team/iris", Location("s3", "my.bucket-1", "team/iris")),
        ("file:///opt/model", Location("file", "", "/opt/model")),
        ("file://localhost/opt/model/", Location("file", "", "/opt/model")),
    ],
)
def test_uris_parse(uri: str, expected: Location) -> None:
    assert parse_uri(uri) == expected


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("https://account.blob.core.windows.net/models", "unknown scheme 'https'"),
        ("models/iris", "unknown scheme ''"),
        ("azureblob://Models/iris", "not a valid Azure container name"),
        ("azureblob://a--b/iris", "not a valid Azure container name"),
        ("azureblob:///iris", "not a valid Azure container name"),
        ("s3://ab/iris", "not a valid S3 bucket name"),
        ("s3://a..b/iris", "not a valid S3 bucket name"),
        ("azureblob://models/a/../b", "'..' segment"),
        ("azureblob://models/a//b", "empty"),
        ("file://host/opt/model", "absolute path"),
        ("file:relative/model", "absolute path"),
    ],
)
def test_bad_uris_are_refused_with_a_reason(uri: str, reason: str) -> None:
    with pytest.raises(StoreConfigError, match=reason):
        parse_uri(uri)


def test_a_sas_in_the_uri_is_refused_without_repeating_it() -> None:
    with pytest.raises(StoreConfigError) as caught:
        parse_uri("azureblob://models/iris?sv=2022-11-02&sig=SECRETSIGNATURE")
    assert "SECRETSIGNATURE" not in str(caught.value)
    assert "credentials in the environment" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("GET https://a.blob/c/b?sv=2022&se=2030&sp=r&sig=abc%2Bdef HTTP 403", "abc%2Bdef"),
        ("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=Zm9vYmFyYmF6==;EndpointSuffix=x", "Zm9vYmFyYmF6=="),
        ("headers: {'Authorization': 'SharedKey a:c2lnbmF0dXJl'}", "c2lnbmF0dXJl"),
        ("X-Amz-Signature=0123456789abcdef&X-Amz-Credential=AKIA/2026", "0123456789abcdef"),
    ],
)
def test_scrub_removes_signatures_and_keys(text: str, leak: str) -> None:
    assert leak not in scrub(text)


def test_scrub_removes_named_secrets_and_joins_lines() -> None:
    assert scrub("token hunter2-long\nsecond line", ["hunter2-long"]) == "token *** second line"


def test_plan_ranges_covers_the_object_exactly() -> None:
    assert plan_ranges(4, 25, 10) == [(4, 10), (14, 10), (24, 1)]
    assert plan_ranges(10, 10, 10) == []
    with pytest.raises(ValueError, match="positive"):
        plan_ranges(0, 10, 0)


class Reader:
    """`read(start, length)` over `data`, failing the first `failures` calls for each offset in `flaky`."""

    def __init__(self, data: bytes, *, flaky: tuple[int, ...] = (), failures: int = 1, short: bool = False) -> None:
        self.data, self.flaky, self.failures, self.short = data, flaky, failures, short
        self.calls: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def __call__(self, start: int, length: int) -> tuple[bytes, int]:
        with self._lock:
            self.calls.append((start, length))
            failing = start in self.flaky and self.calls.count((start, length)) <= self.failures
        if failing and self.short:
            return self.data[start : start + length // 2], len(self.data)
        if failing:
            raise TransientError(f"connection reset at {start}")
        return self.data[start : start + length], len(self.data)


def stream(reader: Reader, expected: int, settings: TransferSettings = FAST) -> tuple[str, bytes, TransferStats]:
    sink, stats = io.BytesIO(), TransferStats()
    sha = stream_object(reader, sink, expected_size=expected, settings=settings, stats=stats, name="1/model.onnx")
    return sha, sink.getvalue(), stats


def test_stream_writes_in_order_and_hashes_what_it_wrote() -> None:
    data = bytes(range(256)) * 3 + b"tail"
    sha, written, _ = stream(Reader(data), len(data))
    assert written == data
    assert sha == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("short", [False, True], ids=["reset", "short-read"])
def test_a_failed_range_is_retried_alone(short: bool) -> None:
    data = bytes(range(100))
    reader = Reader(data, flaky=(0, 50), failures=2, short=short)
    _, written, stats = stream(reader, len(data))
    assert written == data
    assert stats.retries == 4
    assert [call for call in reader.calls if call[0] == 20] == [(20, 10)]  # ranges that worked were read once


def test_a_range_that_keeps_failing_gives_up() -> None:
    reader = Reader(bytes(100), flaky=(30,), failures=99)
    with pytest.raises(TransientError, match="gave up after 3 attempts: connection reset at 30"):
        stream(reader, 100)


@pytest.mark.parametrize(
    ("stored", "expected", "reason"),
    [(b"", 10, "is empty"), (b"12345", 10, "is 5 bytes"), (b"x" * 20, 10, "is 20 bytes"), (b"x", 0, "is 1 bytes")],
)
def test_wrong_sizes_fail_after_one_request(stored: bytes, expected: int, reason: str) -> None:
    reader = Reader(stored)
    with pytest.raises(IntegrityError, match=reason):
        stream(reader, expected)
    assert len(reader.calls) == 1


def test_an_object_that_changes_mid_download_fails() -> None:
    class Growing(Reader):
        def __call__(self, start: int, length: int) -> tuple[bytes, int]:
            data, total = super().__call__(start, length)
            return data, total + (start >= 50)

    with pytest.raises(IntegrityError, match="changed during the download"):
        stream(Growing(bytes(100)), 100)


def test_read_small_refuses_an_oversized_object() -> None:
    with pytest.raises(IntegrityError, match="over the 10 byte limit"):
        read_small(Reader(bytes(11)), limit=10, settings=FAST, stats=TransferStats(), name="manifest")
    assert read_small(Reader(b"{}"), limit=10, settings=FAST, stats=TransferStats(), name="manifest") == b"{}"


def test_pins_are_64_hex_digits() -> None:
    assert check_pin(None) is None and check_pin("") is None
    assert check_pin("AB" * 32) == "ab" * 32
    with pytest.raises(FetchError, match="64 hex digits"):
        check_pin("sha256:" + "a" * 64)


def test_transfer_settings_from_the_environment() -> None:
    from modelapp_serving.stores.transfer import MiB, settings_from_env

    assert settings_from_env({}).chunk_size == 8 * MiB
    tuned = settings_from_env({"MODELAPP_FETCH_CHUNK_MIB": "16", "MODELAPP_FETCH_WORKERS": "4"})
    assert (tuned.chunk_size, tuned.workers, tuned.window) == (16 * MiB, 4, 5)
    for bad in ({"MODELAPP_FETCH_WORKERS": "many"}, {"MODELAPP_FETCH_CHUNK_MIB": "0"}):
        with pytest.raises(ValueError, match="MODELAPP_FETCH"):
            settings_from_env(bad)
